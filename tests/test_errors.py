"""Errors name their cause first, and the library works where the entry points do: a codec loads from `//sig/`
in a process without `USER`; a checkpoint write that fails on a full disk says "no space left on device" and the
path, and leaves the previous checkpoint intact."""
from __future__ import annotations

import pytest

from .conftest import RESULTS, SMALL_CODEC, dora_env, run_driver, seeded_solver

pytestmark = pytest.mark.slow


def test_a_library_call_loads_a_codec_by_signature_without_user(trained_codec, tmp_path):
    """audiocraft's config interpolates ${oc.env:USER}; the Dora main and the CLI give it a default, and so does
    the library's loader (one place: integration/seams.py, ensure_user)."""
    dora_dir, xp = trained_codec
    code = ("import json, os\nassert 'USER' not in os.environ\n"
            "from mmd_audiocraft.integration.loaders import load_compression_model\n"
            f"loaded = load_compression_model('//sig/{xp.name}')\n"
            "out = {'info': loaded.info, 'kind': loaded.kind, 'user': os.environ['USER']}\n"
            f"print({RESULTS!r} + json.dumps(out))")
    env = dora_env(dora_dir)  # without USER
    env.pop("LOGNAME", None)
    out = run_driver(["-c", code], env, tmp_path)  # fails (with the output's tail) unless the call succeeds
    assert out["kind"] == "checkpoint" and out["info"]["num_codebooks"] == 4 and out["info"]["bins"] == 128
    assert out["user"]  # the default the loader set


def test_a_checkpoint_write_on_a_full_disk_names_the_cause_first_and_keeps_the_previous_one(compose, one_thread):
    """A real ENOSPC: flashy writes `checkpoint.th.tmp` then renames it; that temporary path is made a link to
    /dev/full, where every write fails with "No space left on device"."""
    from mmd_audiocraft.integration.errors import CheckpointWriteError

    xp = compose(*SMALL_CODEC, "losses.inde=1000")
    solver = seeded_solver(xp)
    with xp.enter():
        xp.folder.mkdir(parents=True, exist_ok=True)
        solver.save_checkpoints()
        checkpoint = solver.checkpoint_path()
        before = checkpoint.read_bytes()
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        tmp.symlink_to("/dev/full")
        with pytest.raises(CheckpointWriteError) as error:
            solver.save_checkpoints()
    first_line = str(error.value).splitlines()[0]
    assert first_line.startswith("[Errno 28] no space left on device (ENOSPC) while writing the checkpoint "), \
        first_line
    assert f"the previous checkpoint {checkpoint} is intact" in first_line
    assert "run the same command again, the run resumes from it" in first_line
    assert checkpoint.read_bytes() == before  # untouched
    assert not tmp.exists() and not tmp.is_symlink()  # the partial temporary file is gone
    solver.save_checkpoints()  # with room again, the next write succeeds
    assert checkpoint.read_bytes() != b""
