"""The independence loss's options: one object, from the `inde` config node to the estimator.

:class:`LossOptions` holds the estimate's settings and the kernel as one :class:`~mmd_audiocraft.core.kernels.Kernel`;
`independence_loss`, `MMDIndependenceLoss` and the solver all take it whole, and the estimator receives the kernel
whole. In the config, its keys sit flat in the `inde` node (`config/mmd_config.yaml`): the kernel's fields under
their own names (its `name` as `inde.kernel`), then the other fields. Adding a kernel parameter is one field of
`Kernel`, one line of the YAML and the math; adding a loss option is one field here and one line of the YAML
(tests/test_options.py keeps the YAML and the options equal).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .kernels import Kernel
from .validation import is_int_at_least

MMD_ESTIMATORS = ("paper", "disjoint")  # how the factorized sample is built (see shuffle.factorized_sample)
# config key -> Kernel field: the kernel's name is `inde.kernel`, its other fields keep their names
KERNEL_KEYS = {"kernel": "name", **{f.name: f.name for f in dataclasses.fields(Kernel) if f.name != "name"}}


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """How the MMD^2 between codes predicted together and their factorized copy is estimated.

    Fields (see :func:`~mmd_audiocraft.core.mmd.mmd2_unbiased` and
    :func:`~mmd_audiocraft.core.loss.independence_loss`):
        kernel: a :class:`Kernel` (or a kernel name, with its default bandwidths): paper eq. (7)'s k.
        estimator: "paper" (Algorithm 1: the same rows shuffled) or "disjoint" (exactly unbiased).
        max_rows: random subset of rows per estimate (None = all).
        block_rows: block U-statistic over random blocks of about this many rows (None = all pairs).
        clamp: max(MMD^2, 0) (zeroes the gradient near independence).
        tile: row-tile size of the tiled estimator (None = the device's default).

    Raises ValueError at construction naming the field, its value and what was expected.
    """
    kernel: Kernel = Kernel()
    estimator: str = "paper"
    max_rows: int | None = None
    block_rows: int | None = None
    clamp: bool = False
    tile: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", Kernel.of(self.kernel))
        checks = [
            ("estimator", self.estimator in MMD_ESTIMATORS, f"one of {MMD_ESTIMATORS}"),
            ("max_rows", _optional_int(self.max_rows, 2), "None or an int >= 2"),
            ("block_rows", _optional_int(self.block_rows, 2), "None or an int >= 2"),
            ("clamp", isinstance(self.clamp, bool), "true or false"),
            ("tile", _optional_int(self.tile, 1), "None or an int >= 1"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r} is not valid: expected {expected}")

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The keys of the `inde` node that these options read: the kernel's, then the others."""
        return (*KERNEL_KEYS, *(f.name for f in dataclasses.fields(cls) if f.name != "kernel"))

    @classmethod
    def from_config(cls, node: Mapping, prefix: str = "inde.") -> LossOptions:
        """The options of a dict-like node holding (some of) :meth:`config_keys`; missing keys take their
        defaults, other keys are not read (the caller refuses unknown ones). ValueError names `prefix + key`."""
        def value(key):
            item = node[key]
            is_list = hasattr(item, "__iter__") and not isinstance(item, (str, bytes, Mapping))
            return tuple(item) if is_list else item

        kernel = {field: value(key) for key, field in KERNEL_KEYS.items() if key in node}
        others = {key: value(key) for key in cls.config_keys() if key not in KERNEL_KEYS and key in node}
        try:
            return cls(kernel=Kernel(**kernel), **others)
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None

    def as_config(self) -> dict:
        """The inverse of :meth:`from_config`: the flat config values, by key."""
        kernel = {key: getattr(self.kernel, field) for key, field in KERNEL_KEYS.items()}
        return {**kernel, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "kernel"}}


def _optional_int(value, low: int) -> bool:
    return value is None or is_int_at_least(value, low)
