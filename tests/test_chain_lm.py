"""Codec -> MusicGen chaining on CPU: a tiny MMD codec trains one epoch, then a tiny LM trains on its codes
through `compression_model_checkpoint=//sig/SIG`, each in its own `dora -P mmd_audiocraft run` process."""
from __future__ import annotations

import math

import pytest

from .conftest import history

pytestmark = pytest.mark.slow


def test_lm_trains_on_the_codes_of_a_codec_xp(lm_codec, tiny_lm):
    _, codec = lm_codec
    assert (codec / "checkpoint.th").exists() and "inde" in history(codec)[0]["train"]
    lm = tiny_lm
    log = (lm / "solver.log.0").read_text()
    assert f"Loading compression model from checkpoint: //sig/{codec.name}" in log
    (epoch,) = history(lm)
    # cross-entropy over the codec's 128-entry codebooks: finite, and below the uniform guess after training
    assert math.isfinite(epoch["train"]["ce"]) and epoch["valid"]["ce"] < math.log(128)
    assert (lm / "checkpoint.th").exists()
