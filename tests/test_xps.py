"""integration/xps.py, the one home of Dora experiment folders: names, reading, signatures, codec provenance."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from mmd_audiocraft.integration import xps

from .conftest import TINY


def test_sig_specs_and_folders(tmp_path):
    assert xps.sig_of("//sig/ab12cd34") == "ab12cd34" and xps.sig_of("//sig/ab12cd34/") == "ab12cd34"
    assert xps.sig_of("//sig/") is None and xps.sig_of("/data/xps/ab12cd34") is None and xps.sig_of(None) is None
    assert xps.sig_of("//pretrained/facebook/encodec_32khz") is None
    assert xps.xp_folder("ab12cd34", tmp_path) == tmp_path / "xps" / "ab12cd34"
    assert xps.checkpoint_of(tmp_path) == tmp_path / "checkpoint.th"
    assert xps.gap_cache(tmp_path) == tmp_path / "factorization_gap.json"


def test_history_and_argv_reading(tmp_path):
    assert xps.read_history(tmp_path) == [] and xps.read_argv(tmp_path) is None
    (tmp_path / "history.json").write_text('[{"train": {"l1": 1.0}}, {"train": {"l1": 0.5}, "evaluate": {"x": 2}}]')
    (tmp_path / ".argv.json").write_text('["solver=compression/encodec_mmd_tiny"]')
    assert len(xps.read_history(tmp_path)) == 2 and xps.last_logged(tmp_path, "evaluate") == {"x": 2}
    assert xps.last_logged(tmp_path, "valid") is None
    assert xps.read_argv(tmp_path) == ["solver=compression/encodec_mmd_tiny"]
    (tmp_path / "history.json").write_text('[{"train": ')  # being written by the job: not an error here
    assert xps.read_history(tmp_path) == []


def reference_digest(model) -> str:
    """The documented rule written out: sha256 over name|dtype|shape| and the raw bytes of each tensor, by name."""
    h = hashlib.sha256()
    for name in sorted(model.state_dict()):
        t = model.state_dict()[name]
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def test_codec_digest_follows_the_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.BatchNorm1d(4))
    digest = xps.codec_digest(model)
    assert digest == reference_digest(model) and len(digest) == 16
    copy = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.BatchNorm1d(4))
    copy.load_state_dict(model.state_dict())
    assert xps.codec_digest(copy) == digest  # the same weights, loaded twice
    with torch.no_grad():
        copy[0].weight[0, 0, 0] += 1e-6
    assert xps.codec_digest(copy) != digest  # one value changed


def test_provenance_same_changed_accepted(tmp_path):
    spec = "//sig/c0dec000"
    assert xps.check_provenance(tmp_path, spec, "aaaa", accept=False, what="resuming") is None  # nothing recorded
    record = xps.record_provenance(tmp_path, spec, "aaaa")
    assert json.loads((tmp_path / "codec_provenance.json").read_text()) == record
    assert record["sig"] == "c0dec000" and record["sha256"] == "aaaa" and record["accepted"] == []
    assert xps.check_provenance(tmp_path, spec, "aaaa", accept=False, what="resuming") is None
    with pytest.raises(xps.ProvenanceError) as error:
        xps.check_provenance(tmp_path, spec, "bbbb", accept=False, what="resuming")
    assert str(error.value) == (
        "//sig/c0dec000: the codec changed since LM XP " f"{tmp_path.name} trained on it (recorded sha256 aaaa, now "
        "bbbb); resuming would run the LM on codes it was not trained on. Restore that codec, or add "
        "accept_codec_change=true to go on with the new one")
    warning = xps.check_provenance(tmp_path, spec, "bbbb", accept=True, what="evaluating")
    assert warning.endswith("evaluating anyway (accept_codec_change=true): its scores are not comparable with "
                            "earlier ones")
    assert [a["sha256"] for a in xps.read_provenance(tmp_path)["accepted"]] == ["bbbb"]
    # accepted once: later runs go on, still with the warning; another change is refused again
    assert xps.check_provenance(tmp_path, spec, "bbbb", accept=False, what="resuming") is not None
    with pytest.raises(xps.ProvenanceError):
        xps.check_provenance(tmp_path, spec, "cccc", accept=False, what="resuming")
    assert [xps.provenance_status(xps.read_provenance(tmp_path), d) for d in ("aaaa", "bbbb", "cccc")] == [
        "same", "accepted", "changed"]
    assert xps.provenance_status(None, "aaaa") == "unrecorded"


def test_how_an_xp_is_read_is_not_part_of_its_signature(compose):
    base = compose(*TINY).sig
    assert compose(*TINY, "execute_only=evaluate", "execute_inplace=true", "accept_codec_change=true").sig == base
    assert compose(*TINY, "continue_from=//sig/" + base, "execute_only=evaluate").sig != base  # a new XP


def test_a_one_stage_run_keeps_the_xps_argv(compose):
    from mmd_audiocraft.train import main

    trained = compose(*TINY)
    main.init_xp(trained)
    stored = trained.folder.joinpath(".argv.json").read_text()
    main.init_xp(compose(*TINY, "execute_only=evaluate", "execute_inplace=true"))
    assert trained.folder.joinpath(".argv.json").read_text() == stored
    evaluation = compose(*TINY, f"continue_from=//sig/{trained.sig}", "execute_only=evaluate")
    main.init_xp(evaluation)  # a new XP of its own: its argv is stored as given
    assert json.loads(evaluation.folder.joinpath(".argv.json").read_text())[-1] == "execute_only=evaluate"
