"""An LM XP records the codec it trained on, and nothing scores it on another one silently (issue 30, item 3).

The tiny LM of the session (trained on `//sig/CODEC`) is copied with its codec into a fresh Dora dir; the codec's
weights are then changed behind the same signature (as a retrained codec would be). Resuming the LM, evaluating
it in place and evaluating it as a new XP are each refused in one line naming both weight digests;
`accept_codec_change=true` goes on with a warning in the log, and `compare` shows that warning.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from .conftest import dora_env, run_dora

pytestmark = [pytest.mark.slow, pytest.mark.default_stack]  # Dora folders and configs: stack-independent
REFUSAL = "mmd_audiocraft: config error: compression_model_checkpoint="


def codec_digest_of(folder) -> str:
    """The digest the plugin reports, computed here on the codec as `measure` loads it."""
    from mmd_audiocraft.integration.loaders import load_compression_model
    from mmd_audiocraft.integration.xps import codec_digest

    return codec_digest(load_compression_model(str(folder), trust_checkpoint=True).model)


def refusal(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith(REFUSAL)]
    return line


@pytest.fixture
def moved_codec(lm_codec, tiny_lm, tmp_path):
    """(dora dir, codec folder, LM folder, recorded digest, new digest): copies of the session's codec and LM,
    the codec's weights then changed in place (its signature kept)."""
    dora_dir = tmp_path / "dora"
    codec = dora_dir / "xps" / lm_codec[1].name
    lm = dora_dir / "xps" / tiny_lm.name
    shutil.copytree(lm_codec[1], codec)
    shutil.copytree(tiny_lm, lm)
    record = json.loads((lm / "codec_provenance.json").read_text())
    assert record["sig"] == codec.name and record["codec"] == f"//sig/{codec.name}"
    assert record["sha256"] == codec_digest_of(codec)  # the weights the LM trained on
    state = torch.load(codec / "checkpoint.th", map_location="cpu", weights_only=False)
    weights = state["best_state"]["model"]
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[name] = weights[name] + 0.05
    torch.save(state, codec / "checkpoint.th")
    new = codec_digest_of(codec)
    assert new != record["sha256"]
    return dora_dir, codec, lm, record["sha256"], new


def test_resume_and_both_evaluations_refuse_a_changed_codec_naming_both_digests(moved_codec, tiny_corpus):
    dora_dir, codec, lm, recorded, new = moved_codec
    runs = {"resuming": ["-f", lm.name],
            "in place": ["-f", lm.name, "execute_only=valid", "execute_inplace=true"],
            "new XP": ["-f", lm.name, f"continue_from=//sig/{lm.name}", "execute_only=valid"]}
    for what, args in runs.items():
        line = refusal(run_dora(["run", *args], dora_dir, tiny_corpus, check=False))
        assert line == (f"{REFUSAL}//sig/{codec.name}: the codec changed since LM XP {lm.name} trained on it "
                        f"(recorded sha256 {recorded}, now {new}); "
                        f"{'resuming' if what == 'resuming' else 'evaluating'} would run the LM on codes it was "
                        "not trained on. Restore that codec, or add accept_codec_change=true to go on with the "
                        "new one"), what
    assert json.loads((lm / "codec_provenance.json").read_text())["accepted"] == []


def test_accepting_the_change_warns_in_the_log_and_in_compare(moved_codec, tiny_corpus):
    dora_dir, codec, lm, recorded, new = moved_codec
    run_dora(["run", "-f", lm.name, "execute_only=valid", "execute_inplace=true", "accept_codec_change=true"],
             dora_dir, tiny_corpus)
    log = (lm / "valid.log.0").read_text()
    assert re.search(rf"WARNING.*the codec changed since LM XP {lm.name} trained on it \(recorded sha256 "
                     rf"{recorded}, now {new}\); evaluating anyway \(accept_codec_change=true\)", log)
    assert [a["sha256"] for a in json.loads((lm / "codec_provenance.json").read_text())["accepted"]] == [new]

    out = dora_dir.parent / "compare.json"
    proc = subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.cli", "compare", str(codec), "--json",
                           str(out)], env=dora_env(dora_dir, tiny_corpus), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["xps"]
    (entry,) = row["lm"]
    assert entry["sig"] == lm.name and entry["codec"] == "accepted"
    assert (f"warning: LM {lm.name} trained on codec weights sha256 {recorded}; {codec.name} now has {new} "
            "(accepted with accept_codec_change=true)") in proc.stdout


def test_the_same_codec_passes_and_compare_says_so(lm_codec, tiny_lm, tiny_corpus, tmp_path):
    dora_dir = tmp_path / "dora"
    shutil.copytree(lm_codec[1], dora_dir / "xps" / lm_codec[1].name)
    shutil.copytree(tiny_lm, dora_dir / "xps" / tiny_lm.name)
    run_dora(["run", "-f", tiny_lm.name, "execute_only=valid", "execute_inplace=true"], dora_dir, tiny_corpus)
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.cli", "compare",
                           str(dora_dir / "xps" / lm_codec[1].name), "--json", str(out)],
                          env=dora_env(dora_dir, tiny_corpus), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["xps"]
    assert [(lm["sig"], lm["codec"], lm["warning"]) for lm in row["lm"]] == [(tiny_lm.name, "same", None)]
    assert "warning:" not in proc.stdout
