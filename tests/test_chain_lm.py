"""Codec -> MusicGen chaining on CPU: a tiny MMD codec trains one epoch, then a tiny LM trains on its codes
through `compression_model_checkpoint=//sig/SIG`, each in its own `dora -P mmd_audiocraft run` process."""
from __future__ import annotations

import math

import pytest

from .conftest import history, run_dora, xp_dirs

pytestmark = pytest.mark.slow


def test_lm_trains_on_the_codes_of_a_codec_xp(tmp_path, tiny_corpus, lm_codec):
    dora_dir, codec = lm_codec
    assert (codec / "checkpoint.th").exists() and "inde" in history(codec)[0]["train"]

    run_dora(["run", "solver=musicgen/musicgen_mmd_tiny", f"compression_model_checkpoint=//sig/{codec.name}"],
             dora_dir, tiny_corpus)
    (lm,) = [xp for xp in xp_dirs(dora_dir) if xp != codec]
    log = (lm / "solver.log.0").read_text()
    assert f"Loading compression model from checkpoint: //sig/{codec.name}" in log
    (epoch,) = history(lm)
    # cross-entropy over the codec's 128-entry codebooks: finite, and below the uniform guess after training
    assert math.isfinite(epoch["train"]["ce"]) and epoch["valid"]["ce"] < math.log(128)
    assert (lm / "checkpoint.th").exists()
