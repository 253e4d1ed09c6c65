"""One options object from the config to the math: every `inde` key of config/mmd_config.yaml takes effect through
`IndeOptions.from_config` (composed as `dora -P mmd_audiocraft run` composes it), a bad value is refused naming
the key, an unknown key is refused with or without `+` (naming the closest valid key and the YAML file), and
settings that cannot act while `losses.inde` is 0 are reported."""
from __future__ import annotations

import dataclasses
import logging

import pytest
from omegaconf import OmegaConf

from mmd_audiocraft.core.kernels import Kernel
from mmd_audiocraft.core.options import LossOptions
from mmd_audiocraft.integration.errors import ConfigError
from mmd_audiocraft.integration.evaluation import EvaluateOptions
from mmd_audiocraft.integration.guard import GuardOptions
from mmd_audiocraft.integration.options import IndeOptions

from .conftest import ROOT, SMALL_CODEC, run_dora, seeded_solver

YAML = ROOT / "config" / "mmd_config.yaml"


def yaml_keys(node, prefix="inde.") -> list[str]:
    """The leaf keys of a YAML node, dotted."""
    out = []
    for key, value in node.items():
        out += yaml_keys(value, f"{prefix}{key}.") if OmegaConf.is_dict(value) else [f"{prefix}{key}"]
    return out


# key -> (an override that changes it, what the options then hold, a bad value or None, what the refusal says)
EVERY_KEY = {
    "inde.kernel": ("inverse", lambda o: o.loss.kernel.name == "inverse", "laplace",
                    "inde.kernel='laplace' is unknown"),
    "inde.bandwidths": ("[1.0,5.0]", lambda o: o.loss.kernel.bandwidths == (1.0, 5.0), "[1.0,-5.0]",
                        "inde.bandwidths must be finite and > 0"),
    "inde.bandwidth_mode": ("variance", lambda o: o.loss.kernel.bandwidth_mode == "variance", "std",
                            "inde.bandwidth_mode='std' is unknown"),
    "inde.median_heuristic": ("true", lambda o: o.loss.kernel.median_heuristic, "3",
                              "inde.median_heuristic=3: expected true or false"),
    "inde.estimator": ("disjoint", lambda o: o.loss.estimator == "disjoint", "split", "inde.estimator='split'"),
    "inde.max_rows": ("512", lambda o: o.loss.max_rows == 512, "1", "inde.max_rows=1 is not valid"),
    "inde.block_rows": ("256", lambda o: o.loss.block_rows == 256, "1", "inde.block_rows=1 is not valid"),
    "inde.clamp": ("true", lambda o: o.loss.clamp, "2", "inde.clamp=2 is not valid"),
    "inde.tile": ("64", lambda o: o.loss.tile == 64, "0", "inde.tile=0 is not valid"),
    "inde.source": ("residual", lambda o: o.source == "residual", "logits", "inde.source='logits': expected one of"),
    "inde.codebooks_pattern.modeling": ("parallel", lambda o: o.codebooks_pattern["modeling"] == "parallel", "zigzag",
                                        "inde.codebooks_pattern.modeling='zigzag': expected one of"),
    "inde.codebooks_pattern.delay.delays": ("[0,2,3,4]", lambda o: o.codebooks_pattern["delay"]["delays"] ==
                                            [0, 2, 3, 4], None, None),
    "inde.codebooks_pattern.delay.flatten_first": ("2", lambda o: o.codebooks_pattern["delay"]["flatten_first"] == 2,
                                                   None, None),
    "inde.codebooks_pattern.delay.empty_initial": ("1", lambda o: o.codebooks_pattern["delay"]["empty_initial"] == 1,
                                                   None, None),
    "inde.macro_batch": ("32", lambda o: o.macro_batch == 32, "0", "inde.macro_batch=0: expected an int >= 1"),
    "inde.every": ("32", lambda o: o.every == 32, "0", "inde.every=0: expected an int >= 1"),
    "inde.global": ("true", lambda o: o.global_rows, "2", "inde.global=2: expected true or false"),
    "inde.grad_ratio": ("1", lambda o: o.grad_ratio == 1, "-1", "inde.grad_ratio=-1: expected null or > 0"),
    "inde.grad_ratio_ema": ("0.5", lambda o: o.grad_ratio_ema == 0.5, "1.0", "inde.grad_ratio_ema=1.0: expected"),
    "inde.guard.warmup_steps": ("7", lambda o: o.guard.warmup_steps == 7, "-1", "inde.guard.warmup_steps=-1"),
    "inde.guard.min_entropy_fraction": ("0.25", lambda o: o.guard.min_entropy_fraction == 0.25, "1.5",
                                        "inde.guard.min_entropy_fraction=1.5"),
    "inde.guard.min_drop_bits": ("2.0", lambda o: o.guard.min_drop_bits == 2.0, "-1.0",
                                 "inde.guard.min_drop_bits=-1.0"),
    "inde.guard.baseline_entropy": ("[4.0,5.0,5.5,6.0]", lambda o: o.guard.baseline_entropy == (4.0, 5.0, 5.5, 6.0),
                                    "[-1.0]", "inde.guard.baseline_entropy="),
    "inde.guard.ema_decay": ("0.5", lambda o: o.guard.ema_decay == 0.5, "1.0", "inde.guard.ema_decay=1.0"),
    "inde.guard.max_grad_ratio": ("3.0", lambda o: o.guard.max_grad_ratio == 3.0, "0.0",
                                  "inde.guard.max_grad_ratio=0.0"),
    "inde.guard.max_grad_ratio_steps": ("20", lambda o: o.guard.max_grad_ratio_steps == 20, "0",
                                        "inde.guard.max_grad_ratio_steps=0"),
    "inde.guard.action": ("reduce", lambda o: o.guard.action == "reduce", "ignore", "inde.guard.action='ignore'"),
    "inde.evaluate.metrics": ("false", lambda o: not o.evaluate.metrics, "2", "inde.evaluate.metrics=2"),
    "inde.evaluate.max_rows": ("512", lambda o: o.evaluate.max_rows == 512, "1", "inde.evaluate.max_rows=1"),
    "inde.evaluate.null_shuffles": ("5", lambda o: o.evaluate.null_shuffles == 5, "0",
                                    "inde.evaluate.null_shuffles=0"),
    "inde.evaluate.seed": ("3", lambda o: o.evaluate.seed == 3, "-1", "inde.evaluate.seed=-1"),
}


def test_the_yaml_node_and_the_options_have_the_same_keys_and_defaults():
    node = OmegaConf.load(YAML).inde
    assert set(node) == set(IndeOptions.config_keys())
    assert set(node.guard) == {f.name for f in dataclasses.fields(GuardOptions)}
    assert set(node.evaluate) == {f.name for f in dataclasses.fields(EvaluateOptions)}
    assert set(LossOptions.config_keys()) <= set(node)  # the loss's keys sit flat in the node
    assert IndeOptions.from_config(OmegaConf.load(YAML)) == IndeOptions()  # the YAML defaults are the dataclasses'


def test_every_key_of_the_yaml_is_covered_here():
    assert sorted(EVERY_KEY) == sorted(yaml_keys(OmegaConf.load(YAML).inde))


@pytest.mark.parametrize("key", sorted(EVERY_KEY))
def test_every_inde_key_takes_effect_and_a_bad_value_is_refused_naming_it(compose, key):
    value, holds, bad, message = EVERY_KEY[key]
    default = IndeOptions.from_config(compose(*SMALL_CODEC, "losses.inde=1000").cfg)
    options = IndeOptions.from_config(compose(*SMALL_CODEC, "losses.inde=1000", f"{key}={value}").cfg)
    assert holds(options) and not holds(default)
    if bad is not None:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(").replace("[", r"\[")):
            IndeOptions.from_config(compose(*SMALL_CODEC, "losses.inde=1000", f"{key}={bad}").cfg)


def test_the_kernel_reaches_the_math_as_one_object(compose):
    options = IndeOptions.from_config(compose(*SMALL_CODEC, "losses.inde=1000", "inde.kernel=inverse",
                                              "inde.bandwidths=[3.0]", "inde.bandwidth_mode=variance").cfg)
    assert options.loss.kernel == Kernel("inverse", (3.0,), "variance", False)
    assert options.weight == 1000.0 and isinstance(options.weight, float)


@pytest.mark.parametrize("override,message", [
    ("+inde.macrobatch=4", "inde.macrobatch=4 is not an option of the independence loss: did you mean "
                           "inde.macro_batch? Every key of the `inde` node is listed, with its default, in "
                           "config/mmd_config.yaml"),
    ("+inde.guard.actoin=stop", "inde.guard.actoin='stop' is not an option of the independence loss: did you mean "
                                "inde.guard.action?"),
    ("+inde.evaluate.maxrows=10", "did you mean inde.evaluate.max_rows?"),
    ("+inde.codebooks_pattern.dealy={delays:[0,1,2,3]}", "inde.codebooks_pattern.dealy="),
])
def test_an_unknown_key_is_refused_naming_the_closest_key_and_the_yaml(compose, override, message):
    with pytest.raises(ConfigError) as error:
        IndeOptions.from_config(compose(*SMALL_CODEC, override).cfg)
    assert message in str(error.value)


def test_without_plus_hydra_refuses_the_unknown_key_itself(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="macrobatch"):
        compose(*SMALL_CODEC, "inde.macrobatch=4")


@pytest.mark.slow
def test_a_dora_run_with_an_unknown_key_stops_before_training_with_one_line(tmp_path, tiny_corpus):
    """The advice Hydra gives for `inde.macrobatch=4` is `+inde.macrobatch=4`: following it trains nothing."""
    proc = run_dora(["run", *SMALL_CODEC, "losses.inde=1000", "+inde.macrobatch=4"], tmp_path / "dora", tiny_corpus,
                    check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("mmd_audiocraft: config error: inde.macrobatch=4 is not an option of the independence loss: did you "
            "mean inde.macro_batch?") in output
    assert "Traceback" not in output and "Train Summary" not in output


@pytest.mark.slow
def test_an_unknown_loss_is_refused_before_the_solver_is_built(compose, monkeypatch):
    """audiocraft builds a loss for every `losses` key and fails on an unknown one with a bare KeyError, after
    the data; the preflight names it and the closest loss first."""
    from audiocraft.solvers import builders

    from mmd_audiocraft.integration.preflight import check_before_build

    monkeypatch.setattr(builders, "get_audio_datasets", lambda *a, **k: pytest.fail("data built before the check"))
    xp = compose(*SMALL_CODEC, "+losses.msspc=1")
    with pytest.raises(ConfigError, match=r"losses\.msspc=1: audiocraft's compression solver has no loss named "
                                          r"'msspc': did you mean losses\.msspec\?"):
        check_before_build(xp.cfg, world_size=1)
    check_before_build(compose(*SMALL_CODEC, "losses.inde=1000").cfg, world_size=1)  # the shipped keys pass


@pytest.mark.slow
@pytest.mark.parametrize("weight,expected", [(0, ["inde.grad_ratio=1", "inde.guard.action=reduce"]), (1000, [])])
def test_settings_that_need_the_loss_are_reported_when_it_is_off(compose, caplog, one_thread, weight, expected):
    caplog.set_level(logging.WARNING)
    seeded_solver(compose(*SMALL_CODEC, f"losses.inde={weight}", "inde.grad_ratio=1", "inde.guard.action=reduce",
                          "inde.kernel=inverse"))
    warnings = [r.getMessage() for r in caplog.records if "only with the independence loss on" in r.getMessage()]
    if not expected:
        assert warnings == []
        return
    (warning,) = warnings
    assert warning.startswith(", ".join(expected) + " act only with the independence loss on, and losses.inde is 0")
    assert "losses.inde=1000 inde.grad_ratio=1" in warning  # how to turn the weight-free mode on
    assert "inde.kernel" not in warning  # the loss's own keys shape the valid/evaluate metrics: they act
