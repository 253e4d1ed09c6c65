"""The `inde` config node (and `losses.inde`), parsed once into typed options for the solver.

`config/mmd_config.yaml` lists every key with its default; :meth:`IndeOptions.from_config` reads them all, refuses
keys it does not know (a `+inde.<typo>` override composes in Hydra and would otherwise be ignored), and
validates every value, before the solver builds its data or model. The loss's keys become one
:class:`~mmd_audiocraft.core.options.LossOptions` (the kernel one :class:`~mmd_audiocraft.core.kernels.Kernel`),
the guard's a :class:`~mmd_audiocraft.integration.guard.GuardOptions`, the evaluate stage's an
:class:`~mmd_audiocraft.integration.evaluation.EvaluateOptions`; the rest configure the solver. Adding a key is a
field here (or in one of those) and a line of the YAML: tests/test_options.py keeps the two equal.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from ..core.options import LossOptions
from ..core.validation import is_int_at_least, is_number
from .capture import SOURCES
from .errors import ConfigError
from .evaluation import EvaluateOptions
from .guard import GuardOptions

YAML = "config/mmd_config.yaml"  # where every `inde` key is listed with its default (mmd_audiocraft.config)
# audiocraft's codebooks_pattern schema (model/lm/default.yaml): the modelings its provider builder knows; the
# node of the chosen modeling is passed to that provider, which checks its own keys (codebooks_pattern.py)
MODELINGS = ("delay", "parallel", "unroll", "coarse_first", "musiclm")
DEFAULT_PATTERN = {"modeling": "delay", "delay": {"delays": None, "flatten_first": 0, "empty_initial": 0}}
# solver keys whose config names are not Python names
FIELD_OF_KEY = {"global": "global_rows"}


@dataclasses.dataclass(frozen=True)
class IndeOptions:
    """Everything `losses.inde` and the `inde` node configure.

    Fields:
        weight: `losses.inde`, the raw weight of the independence loss (paper: 1000); 0 = the stock step.
        loss: the estimate (kernel, estimator, rows, tiles): its keys sit flat in the `inde` node.
        source: which per-codebook vectors: "quantized" (paper), "residual" after each stage, or each stage's "input".
        codebooks_pattern: the LM's decoding schema (audiocraft's `codebooks_pattern` node), as a plain dict.
        macro_batch, every: the MMD over this many stored batches, re-encoded every `every` steps (paper: 32, 32).
        global_rows: `inde.global`, the MMD over every process's rows.
        grad_ratio, grad_ratio_ema: the weight-free mode (MMD gradient = grad_ratio x the reconstruction's EMA
            norm at the encoder output) and the decay of that EMA.
        guard, evaluate: the `inde.guard` and `inde.evaluate` nodes.
    """
    weight: float = 0.0
    loss: LossOptions = LossOptions()
    source: str = "quantized"
    codebooks_pattern: dict = dataclasses.field(default_factory=lambda: _plain(DEFAULT_PATTERN))
    macro_batch: int = 1
    every: int = 1
    global_rows: bool = False
    grad_ratio: float | None = None
    grad_ratio_ema: float = 0.9
    guard: GuardOptions = GuardOptions()
    evaluate: EvaluateOptions = EvaluateOptions()

    def __post_init__(self) -> None:
        checks = [
            ("losses.inde", "weight", is_number(self.weight) and self.weight >= 0, "a weight >= 0"),
            ("inde.source", "source", self.source in SOURCES, f"one of {SOURCES}"),
            ("inde.codebooks_pattern.modeling", None, self.codebooks_pattern.get("modeling") in MODELINGS,
             f"one of {MODELINGS}"),
            ("inde.macro_batch", "macro_batch", is_int_at_least(self.macro_batch, 1), "an int >= 1"),
            ("inde.every", "every", is_int_at_least(self.every, 1), "an int >= 1"),
            ("inde.global", "global_rows", isinstance(self.global_rows, bool), "true or false"),
            ("inde.grad_ratio", "grad_ratio", self.grad_ratio is None or (is_number(self.grad_ratio) and
                                                                          self.grad_ratio > 0), "null or > 0"),
            ("inde.grad_ratio_ema", "grad_ratio_ema", is_number(self.grad_ratio_ema) and 0 <= self.grad_ratio_ema < 1,
             "a decay in [0, 1)"),
        ]
        for key, field, ok, expected in checks:
            if not ok:
                value = getattr(self, field) if field else self.codebooks_pattern.get("modeling")
                raise ConfigError(f"{key}={value!r}: expected {expected}")
        object.__setattr__(self, "weight", float(self.weight))

    # -- the config's keys ------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The keys of the `inde` node: the loss's (flat), then the solver's, under their config names."""
        key_of = {field: key for key, field in FIELD_OF_KEY.items()}
        solver = [key_of.get(f.name, f.name) for f in dataclasses.fields(cls) if f.name not in ("weight", "loss")]
        return (*LossOptions.config_keys(), *solver)

    @classmethod
    def from_config(cls, cfg: Mapping) -> IndeOptions:
        """The options of a composed config (`losses.inde` and the `inde` node; defaults where absent).

        Raises ConfigError naming the key, its value and what was expected; for a key the node does not have,
        the closest valid key and the YAML file that lists them all."""
        weight = (cfg.get("losses") or {}).get("inde", 0.0)
        node = cfg.get("inde")
        if node is None:
            if weight:
                raise ConfigError("losses.inde > 0 but the config has no `inde` node: run through "
                                  "`dora -P mmd_audiocraft`, whose config provides its defaults")
            node = {}
        _refuse_unknown(node, cls.config_keys(), "inde.")
        for name, klass in (("guard", GuardOptions), ("evaluate", EvaluateOptions)):
            _refuse_unknown(node.get(name) or {}, [f.name for f in dataclasses.fields(klass)], f"inde.{name}.")
        pattern = _plain(node.get("codebooks_pattern") or DEFAULT_PATTERN)
        if not isinstance(pattern, dict):
            raise ConfigError(f"inde.codebooks_pattern={pattern!r}: expected a node like the LM's codebooks_pattern "
                              f"({YAML})")
        _refuse_unknown(pattern, ("modeling", *MODELINGS), "inde.codebooks_pattern.")
        solver = {FIELD_OF_KEY.get(key, key): _plain(node[key]) for key in cls.config_keys()
                  if key in node and key not in LossOptions.config_keys() and key not in
                  ("guard", "evaluate", "codebooks_pattern")}
        try:
            return cls(weight=weight or 0.0,
                       loss=LossOptions.from_config(node, prefix="inde."),
                       guard=GuardOptions(**_plain(node.get("guard") or {})),
                       evaluate=EvaluateOptions(**_plain(node.get("evaluate") or {})),
                       codebooks_pattern=pattern, **solver)
        except ConfigError:
            raise
        except ValueError as exc:  # the messages of LossOptions, Kernel, GuardOptions and EvaluateOptions
            raise ConfigError(str(exc)) from None

    # -- what acts ----------------------------------------------------------------------------------------
    def settings_without_effect(self) -> list[str]:
        """`inde.<key>=<value>` for the settings, changed from their defaults, that act only when the loss is on
        (training with `losses.inde` > 0: macro-batch, every, global, the weight-free mode, the guard), when it is
        off. (The loss's own keys act with the loss off too: they shape the valid and evaluate metrics.)"""
        if self.weight > 0:
            return []
        default, changed = IndeOptions(), []
        for key in ("macro_batch", "every", "global", "grad_ratio", "grad_ratio_ema"):
            field = FIELD_OF_KEY.get(key, key)
            if getattr(self, field) != getattr(default, field):
                changed.append(f"inde.{key}={getattr(self, field)}")
        for field in dataclasses.fields(GuardOptions):
            value = getattr(self.guard, field.name)
            if value != getattr(default.guard, field.name):
                changed.append(f"inde.guard.{field.name}={value}")
        return changed


def _refuse_unknown(node: Mapping, known, prefix: str) -> None:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{prefix.rstrip('.')}={node!r}: expected a node of keys ({YAML} lists them)")
    for key in node:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.5)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise ConfigError(f"{prefix}{key}={node[key]!r} is not an option of the independence loss: {hint}Every "
                              f"key of the `{prefix.rstrip('.')}` node is listed, with its default, in {YAML}")


def _plain(value):
    """A plain Python copy (dicts and lists) of an OmegaConf node or of plain containers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value
