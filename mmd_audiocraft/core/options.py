"""The independence loss's options: one object whose fields are exactly the loss keys of the `inde` config node.

`independence_loss`, `MMDIndependenceLoss` and the solver all build from :class:`LossOptions`, and the `inde`
node of `config/mmd_config.yaml` lists the same keys (a test keeps them equal). Adding an
option is one field here and one line there; the solver reads it through :meth:`LossOptions.from_config`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .kernels import make_kernel

MMD_ESTIMATORS = ("paper", "disjoint")  # how the factorized sample is built (see shuffle.factorized_sample)


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """How the MMD^2 between codes predicted together and their factorized copy is estimated.

    Fields (see :func:`~mmd_audiocraft.core.mmd.mmd2_unbiased` and :func:`~mmd_audiocraft.core.loss.independence_loss`):
        kernel, bandwidths, bandwidth_mode, median_heuristic: the kernel (paper eq. 7's k; sigmas in the
            paper's units, None = the kernel's default list).
        estimator: "paper" (Algorithm 1: the same rows shuffled) or "disjoint" (exactly unbiased).
        max_rows: random subset of rows per estimate (None = all).
        block_rows: block U-statistic over random blocks of about this many rows (None = all pairs).
        clamp: max(MMD^2, 0) (zeroes the gradient near independence).
        tile: row-tile size of the tiled estimator (None = the device's default).

    Raises ValueError at construction naming the field (with `prefix`, e.g. "inde.", when built by
    :meth:`from_config`), its value and what was expected.
    """
    kernel: str = "gaussian"
    bandwidths: tuple[float, ...] | None = None
    bandwidth_mode: str = "sigma"
    median_heuristic: bool = False
    estimator: str = "paper"
    max_rows: int | None = None
    block_rows: int | None = None
    clamp: bool = False
    tile: int | None = None
    prefix: dataclasses.InitVar[str] = ""

    def __post_init__(self, prefix: str) -> None:
        if self.bandwidths is not None and not isinstance(self.bandwidths, (int, float)):
            object.__setattr__(self, "bandwidths", tuple(float(b) for b in self.bandwidths))
        try:
            make_kernel(self.kernel, self.bandwidths, self.bandwidth_mode, warn=False)
        except ValueError as exc:
            keys = " / ".join(f"{prefix}{k}" for k in ("kernel", "bandwidths", "bandwidth_mode"))
            raise ValueError(f"{keys}: {exc}") from None
        checks = [
            ("estimator", self.estimator in MMD_ESTIMATORS, f"one of {MMD_ESTIMATORS}"),
            ("max_rows", _optional_int(self.max_rows, 2), "None or an int >= 2"),
            ("block_rows", _optional_int(self.block_rows, 2), "None or an int >= 2"),
            ("tile", _optional_int(self.tile, 1), "None or an int >= 1"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"{prefix}{key}={getattr(self, key)!r} is not valid: expected {expected}")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The option names: the loss keys of the `inde` node."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, node: Mapping, prefix: str = "inde.") -> LossOptions:
        """The options of a dict-like node (e.g. the `inde` OmegaConf node); its other keys are ignored and
        missing ones take their defaults. Errors name `prefix + key`."""
        values = {key: node[key] for key in cls.fields() if key in node}
        if isinstance(values.get("bandwidths"), Sequence) and not isinstance(values["bandwidths"], str):
            values["bandwidths"] = [float(b) for b in values["bandwidths"]]
        return cls(**values, prefix=prefix)

    def as_kwargs(self) -> dict:
        return {key: getattr(self, key) for key in self.fields()}


def _optional_int(value, low: int) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= low)
