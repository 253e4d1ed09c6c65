"""Evaluating an XP's own checkpoint evaluates what it names (issue 30, item 1).

A trained tiny codec is evaluated the two ways the refusal of a bare `execute_only=evaluate` names, each run as
typed: in place (`execute_inplace=true`, which Dora leaves out of signatures so it lands in the same XP) and as
a new XP (`continue_from=//sig/SIG`). The new XP logs exactly the source's last evaluation; the in-place run
prints the same values and leaves the source XP as it was (checkpoint, history, Dora argv), so a later
`dora run -f SIG` resumes training. A run that would load no trained weights is refused before the solver is
built.
"""
from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from .conftest import TINY, history, run_dora, xp_dirs
from .documentation import documented, dora_args

pytestmark = [pytest.mark.slow, pytest.mark.default_stack]  # Dora folders and configs: stack-independent


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """(dora dir, XP folder) of a tiny codec trained one epoch, whose evaluate stage ran."""
    dora_dir = tmp_path_factory.mktemp("evaluate_only") / "dora"
    run_dora(["run", *TINY], dora_dir, tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    assert "evaluate" in history(xp)[-1]
    return dora_dir, xp


def refusal(proc) -> str:
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("mmd_audiocraft: config error:")]
    return line[len("mmd_audiocraft: config error: "):]


def advised_commands(line: str) -> list[list[str]]:
    """The `dora -P mmd_audiocraft run ...` commands a refusal names, as argument lists after `run`."""
    return [cmd.split()[4:] for cmd in re.findall(r"`(dora -P mmd_audiocraft run [^`]+)`", line)]


def test_bare_execute_only_is_refused_and_both_advised_forms_evaluate_the_trained_checkpoint(trained, tiny_corpus):
    dora_dir, xp = trained
    sig = xp.name
    before = {name: digest(xp / name) for name in ("checkpoint.th", "history.json", ".argv.json")}
    logged = history(xp)[-1]["evaluate"]

    bare = run_dora(["run", "-f", sig, "execute_only=evaluate"], dora_dir, tiny_corpus, check=False)
    assert bare.returncode != 0
    line = refusal(bare)
    assert line.startswith("execute_only=evaluate runs one stage of a trained model, and continue_from is not set")
    inplace, new_xp = advised_commands(line)
    assert inplace == ["-f", sig, "execute_only=evaluate", "execute_inplace=true"]
    assert new_xp == ["-f", sig, f"continue_from=//sig/{sig}", "execute_only=evaluate"]
    for advised, needle in ((inplace, "execute_inplace"), (new_xp, "continue_from")):  # what docs/RUNS.md shows
        shown = dora_args(documented("docs/RUNS.md", "execute_only=evaluate", needle))
        assert " ".join(shown).replace("SIG", sig) == " ".join(["run", *advised])

    # the second form: a new XP whose history holds the evaluation, equal to the source's last one
    run_dora(["run", *new_xp], dora_dir, tiny_corpus)
    (evaluation,) = [d for d in xp_dirs(dora_dir) if d != xp]
    (epoch,) = history(evaluation)
    assert set(epoch) == {"evaluate"}
    assert epoch["evaluate"].keys() == logged.keys()
    differ = {k: (v, epoch["evaluate"][k]) for k, v in logged.items() if epoch["evaluate"][k] != v}
    assert differ.pop("duration")  # wall-clock seconds; every other metric is deterministic: equal exactly
    assert differ == {}, differ

    # the first form: in the source XP, on its own checkpoint; prints the same summary, changes nothing there
    proc = run_dora(["run", *inplace], dora_dir, tiny_corpus)
    assert [d.name for d in xp_dirs(dora_dir)] == sorted([sig, evaluation.name])  # no third XP
    assert {name: digest(xp / name) for name in before} == before  # `-f SIG` still resumes training
    summary = (xp / "evaluate.log.0").read_text()
    assert "Evaluate Summary" in summary and "Evaluate Summary" in proc.stderr + proc.stdout
    logged_line = [ln for ln in summary.splitlines() if "Evaluate Summary" in ln][-1]
    for key in ("sisnr", "tc_all_bits", "entropy_q3_bits"):  # printed by the solver's formatter, at its precision
        printed = float(re.search(rf"\b{key}=([-0-9.e]+)", logged_line).group(1))
        assert printed == pytest.approx(logged[key], abs=1e-3), (key, logged_line)


def test_execute_inplace_in_an_xp_without_checkpoint_is_refused_before_building(trained, tiny_corpus, tmp_path):
    dora_dir, xp = trained
    empty = tmp_path / "dora"
    shutil.copytree(dora_dir, empty)
    (empty / "xps" / xp.name / "checkpoint.th").unlink()
    (empty / "xps" / xp.name / "evaluate.log.0").unlink(missing_ok=True)  # the other test's in-place run
    proc = run_dora(["run", "-f", xp.name, "execute_only=evaluate", "execute_inplace=true"], empty, tiny_corpus,
                    check=False)
    assert proc.returncode != 0
    line = refusal(proc)
    assert line.startswith(f"execute_only=evaluate execute_inplace=true: this XP ({xp.name}) has no checkpoint.th, "
                           "so there are no trained weights to run")
    log = empty / "xps" / xp.name / "evaluate.log.0"
    assert "Model hash" not in proc.stderr + (log.read_text() if log.exists() else "")  # no solver was built
