"""`mmd-audiocraft compare`: hand-made XP folders (fast: saturated values, settings, errors), then the README's
command on the `mmd_codec_weights` grid at CPU scale, two of its five codecs really trained and a tiny LM on one.
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mmd_audiocraft.apps import cli
from mmd_audiocraft.apps.compare import AT_NULL, compare

from .conftest import dora_env, history, run_dora, xp_dirs
from .documentation import documented

GRID = "mmd_codec_weights"
TRAINED = (0.0, 1000.0)  # weights of the grid's XPs trained here (the others stay "not run")
TINY_ARGV = ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", "optim.epochs=1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def hand_made_xp(dora_dir: Path, sig: str, argv: list[str], epochs: list[dict]) -> Path:
    """An XP folder as Dora and flashy leave it (argv, history.json), without a run."""
    folder = dora_dir / "xps" / sig
    folder.mkdir(parents=True)
    (folder / ".argv.json").write_text(json.dumps(argv))
    (folder / "history.json").write_text(json.dumps(epochs))
    return folder


# Corrected information values at or below the shuffle-null, beside positive ones and raw/null percentages.
SATURATED = {"inde_heldout": 2.5e-05, "tc_pair_raw_pct": 0.31, "tc_pair_null_pct": 0.42, "tc_pair_pct": -0.11,
             "tc_all_bits": -0.0031, "mi_rest_q0_bits": -0.0123, "mi_rest_q1_bits": 0.0, "mi_rest_q2_bits": 0.25,
             "entropy_q0_bits": 3.5, "entropy_q1_bits": 4.25, "entropy_q2_bits": 4.5, "sisnr": 12.5}


def one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmd-audiocraft compare: error:"), captured.err
    assert captured.out == ""
    return lines[0]


def table_line(out: str, section: str, sig: str) -> list[str]:
    """The cells of `sig`'s row in the table whose title starts with `section` ("" for the first table)."""
    block = out.split(section, 1)[1] if section else out
    block = block.split("\n\n", 2)[1 if not section else 0]
    return [line for line in block.splitlines() if f" {sig} " in line][0].split()


def test_corrected_values_at_or_below_the_null_are_shown_saturated_never_negative(tmp_path, capsys):
    dora_dir = tmp_path / "dora"
    xp = hand_made_xp(dora_dir, "sat0", [*TINY_ARGV, "losses.inde=1000"], [
        {"train": {"inde_grad_ratio": 3.0}, "valid": {"msspec": 0.9}, "evaluate": {"tc_pair_pct": 5.0}},
        {"train": {"inde_grad_ratio": 2.0}, "valid": {"msspec": 0.75, "mel": 1.5, "inde": 0.1},
         "evaluate": SATURATED},
        {"train": {"inde_grad_ratio": 1.5}}])  # an epoch without evaluate: the values come from epoch 2
    assert cli.main(["compare", str(xp), "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"(?<![\w.])-\d", out), out  # no negative number printed...
    (row,) = json.loads((tmp_path / "out.json").read_text())["xps"]
    assert row["evaluate"] == SATURATED and row["epoch"] == 2  # ...the JSON keeps what was logged
    assert sorted(row["at_null"]) == ["mi_rest_q0_bits", "mi_rest_q1_bits", "tc_all_bits", "tc_pair_pct"]
    assert row["train"] == {"inde_grad_ratio": 1.5} and row["valid"]["msspec"] == 0.75
    block = out.split("Independence", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "TC% raw  TC% null  TC% corr  TC all[bits]" in block[1]
    assert block[2].split()[2:] == ["2.50e-05", "0.310", "0.420", AT_NULL, AT_NULL, "3.500", "4.250", "4.500",
                                    AT_NULL, AT_NULL, "0.2500"]
    assert f"{AT_NULL}: a corrected information value at or below its shuffle-null" in out


def test_the_mmd_estimate_may_be_negative_but_information_values_may_not(tmp_path, capsys):
    """inde_heldout is an MMD^2 estimate (unbiased, legitimately below 0): shown as logged; TC is not."""
    xp = hand_made_xp(tmp_path / "dora", "mmd0", [*TINY_ARGV, "losses.inde=0"],
                      [{"evaluate": {"inde_heldout": -2.5e-05, "tc_pair_pct": -0.5}}])
    assert cli.main(["compare", str(xp)]) == 0
    line = [ln for ln in capsys.readouterr().out.split("Independence", 1)[1].splitlines() if "mmd0" in ln][0]
    assert line.split()[2:] == ["-2.50e-05", AT_NULL]


def test_settings_that_differ_are_columns_and_the_plot_is_the_frontier(tmp_path, capsys):
    dora_dir = tmp_path / "dora"
    common = [*TINY_ARGV, "inde.kernel=gaussian"]
    a = hand_made_xp(dora_dir, "aaa1", [*common, "losses.inde=1e3", "inde.estimator=paper"],
                     [{"valid": {"msspec": 0.5}, "evaluate": {"tc_pair_pct": 1.5}}])
    b = hand_made_xp(dora_dir, "bbb2", [*common, "losses.inde=1000.0", 'inde.estimator="disjoint"'],
                     [{"valid": {"msspec": 0.6}, "evaluate": {"tc_pair_pct": 0.5}}])
    result = compare([str(a), str(b), str(a)])  # a repeated input is one row
    assert result["settings"] == ["inde.estimator"]  # 1e3 and 1000.0 are the same weight; kernel is shared
    assert [r["settings"] for r in result["xps"]] == [{"inde.estimator": "paper"}, {"inde.estimator": "disjoint"}]
    assert [r["losses.inde"] for r in result["xps"]] == [1000.0, 1000.0]
    assert all(r["lm"] == [] and r["factorization_gap"] is None for r in result["xps"])
    assert cli.main(["compare", str(a), str(b), "--plot", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"aaa1\s+run\s+paper\s+1000\s+1", out) and re.search(r"bbb2\s+run\s+disjoint\s+1000\s+1", out)
    assert png_size(tmp_path / "f.png") == (768, 576)  # one frontier panel (6.4 x 4.8 in at 120 dpi)


def test_factorization_gap_is_read_from_the_cached_report_and_checked(tmp_path, capsys):
    xp = hand_made_xp(tmp_path / "dora", "gap1", [*TINY_ARGV, "losses.inde=0"], [{"evaluate": {"tc_all_bits": 0.2}}])
    gap = {"total_bits": 0.125, "spread_bits": 0.02, "per_codebook_bits": [0.05, 0.075]}
    (xp / "factorization_gap.json").write_text(json.dumps(gap))
    assert cli.main(["compare", str(xp)]) == 0
    assert "0.125 ± 0.020" in capsys.readouterr().out
    (xp / "factorization_gap.json").write_text(json.dumps({**gap, "total_bits": -0.02}))  # below 0: noise only
    assert cli.main(["compare", str(xp)]) == 0
    out = capsys.readouterr().out
    assert "<=0 ± 0.020" in out and "-0.02" not in out
    (xp / "factorization_gap.json").write_text(json.dumps({"total_bits": "0.1", "spread_bits": 0.0}))
    message = one_line_error(capsys, ["compare", str(xp)])
    assert "factorization_gap.json: 'total_bits' is '0.1', expected a number of bits" in message


def hand_made_lm(dora_dir: Path, sig: str, codec: str, modeling: str, valid_ce: list[float]) -> Path:
    """An LM XP folder: Dora's argv, the config Hydra saves when it runs, one history epoch per valid CE."""
    folder = hand_made_xp(dora_dir, sig, ["solver=musicgen/musicgen_mmd_tiny",
                                          f"compression_model_checkpoint=//sig/{codec}"],
                          [{"train": {"ce": 9.0}, "valid": {"ce": ce}} for ce in valid_ce])
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        f"solver: musicgen\ncompression_model_checkpoint: //sig/{codec}\ncodebooks_pattern:\n  modeling: {modeling}\n")
    return folder


def test_lm_xps_of_the_dora_dir_give_their_last_valid_ce_per_pattern(tmp_path, capsys):
    dora_dir = tmp_path / "dora"
    codec = hand_made_xp(dora_dir, "cod1", [*TINY_ARGV, "losses.inde=0"], [{"evaluate": {"tc_all_bits": 0.1}}])
    other = hand_made_xp(dora_dir, "cod2", [*TINY_ARGV, "losses.inde=10"], [{"evaluate": {"tc_all_bits": 0.1}}])
    hand_made_lm(dora_dir, "lmd1", "cod1", "delay", [3.0, 2.5])
    hand_made_lm(dora_dir, "lmu1", "cod1", "unroll", [2.25])
    hand_made_lm(dora_dir, "lmx1", "cod3", "delay", [1.0])  # another codec's LM
    assert cli.main(["compare", str(codec), str(other)]) == 0
    out = capsys.readouterr().out
    assert "ce delay  ce unroll" in out
    assert table_line(out, "Reconstruction", "cod1")[-2:] == ["2.5000", "2.2500"]
    assert table_line(out, "Reconstruction", "cod2")[-2:] == ["-", "-"]
    rows = compare([str(codec)])["xps"]
    unrecorded = {"codec": "unrecorded", "warning": None, "evaluation": None}  # hand-made: no codec_provenance.json
    assert rows[0]["lm"] == [{"sig": "lmd1", "modeling": "delay", "ce": 2.5, "epoch": 2, **unrecorded},
                             {"sig": "lmu1", "modeling": "unroll", "ce": 2.25, "epoch": 1, **unrecorded}]


def hand_made_evaluation(dora_dir: Path, sig: str, codec: str, lm: str, evaluate: dict) -> Path:
    """An LM's evaluation XP (grid mmd_musicgen_eval): the LM's overrides, continue_from its LM, execute_only."""
    folder = hand_made_xp(dora_dir, sig, ["solver=musicgen/musicgen_mmd_tiny",
                                          f"compression_model_checkpoint=//sig/{codec}", f"continue_from=//sig/{lm}",
                                          "execute_only=evaluate"], [{"evaluate": evaluate}])
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        f"solver: musicgen\ncompression_model_checkpoint: //sig/{codec}\ncontinue_from: //sig/{lm}\n"
        "execute_only: evaluate\ncodebooks_pattern:\n  modeling: delay\n")
    return folder


def test_lm_evaluations_give_the_papers_table_2_columns_per_pattern(tmp_path, capsys):
    dora_dir = tmp_path / "dora"
    codec = hand_made_xp(dora_dir, "cod1", [*TINY_ARGV, "losses.inde=0"], [{"evaluate": {"tc_all_bits": 0.1}}])
    other = hand_made_xp(dora_dir, "cod2", [*TINY_ARGV, "losses.inde=1000"], [{"evaluate": {"tc_all_bits": 0.1}}])
    hand_made_lm(dora_dir, "lmd1", "cod1", "delay", [2.5])
    hand_made_lm(dora_dir, "lmu1", "cod1", "unroll", [2.25])
    hand_made_lm(dora_dir, "lmd2", "cod2", "delay", [2.0])
    table2 = {"fad": 0.59, "kld": 0.46, "kld_pq": 0.46, "kld_qp": 0.5, "text_consistency": 0.37, "duration": 9.0}
    hand_made_evaluation(dora_dir, "ev01", "cod1", "lmd1", {**table2, "fad": 0.95})  # an older evaluation of lmd1
    hand_made_evaluation(dora_dir, "ev02", "cod1", "lmd1", table2)
    hand_made_evaluation(dora_dir, "ev03", "cod1", "lmu1", {"ce": 3.5, "ppl": 33.1, "chroma_cosine": 0.25})
    rows = compare([str(codec), str(other)])["xps"]
    first = {lm["sig"]: lm for lm in rows[0]["lm"]}
    assert set(first) == {"lmd1", "lmu1"}  # evaluation XPs are not LMs of their own
    assert first["lmd1"]["evaluation"] == {"sig": "ev02", "epoch": 1, "fad": 0.59, "kld": 0.46,
                                          "text_consistency": 0.37}  # the last one, Table 2's keys
    assert first["lmu1"]["evaluation"] == {"sig": "ev03", "epoch": 1, "chroma_cosine": 0.25, "ce": 3.5, "ppl": 33.1}
    assert rows[1]["lm"] == [{"sig": "lmd2", "modeling": "delay", "ce": 2.0, "epoch": 1, "codec": "unrecorded",
                              "warning": None, "evaluation": None}]
    assert cli.main(["compare", str(codec), str(other)]) == 0
    out = capsys.readouterr().out
    headers = out.split("LM evaluations", 1)[1].splitlines()[1].split()
    assert headers == ["#", "sig", "FAD", "delay", "KL", "delay", "CLAP%", "delay", "chroma", "unroll", "eval", "ce",
                       "unroll", "eval", "ppl", "unroll"]
    assert table_line(out, "LM evaluations", "cod1")[2:] == ["0.590", "0.460", "37.0", "0.250", "3.5000", "33.10"]
    assert table_line(out, "LM evaluations", "cod2")[2:] == ["-"] * 6


def test_bad_inputs_exit_2_naming_the_input(tmp_path, capsys):
    assert "no/such/xp: no such XP folder, and not a grid of grids/" in one_line_error(
        capsys, ["compare", "no/such/xp"])
    message = one_line_error(capsys, ["compare", "mmd_codec_wieghts"])
    assert "mmd_codec_wieghts: no such XP folder" in message and "mmd_codec_weights" in message  # lists grids
    (tmp_path / "file.txt").write_text("")
    assert "file.txt: not a folder" in one_line_error(capsys, ["compare", str(tmp_path / "file.txt")])
    (tmp_path / "empty").mkdir()
    assert "not a Dora XP folder" in one_line_error(capsys, ["compare", str(tmp_path / "empty")])
    lm = hand_made_xp(tmp_path / "dora", "lm01", ["solver=musicgen/musicgen_mmd_tiny"], [{"valid": {"ce": 2.0}}])
    assert "is a 'musicgen' XP, not a codec" in one_line_error(capsys, ["compare", str(lm)])


def test_an_unknown_sig_names_the_folder_it_looked_for(tmp_path, capsys, monkeypatch):
    """The Dora dir is the main's (a stand-in here: the real one, through AUDIOCRAFT_DORA_DIR, resolves the sigs
    of the end-to-end test below)."""
    from types import SimpleNamespace

    from mmd_audiocraft.apps import compare as module

    monkeypatch.setattr(module, "_main", lambda: SimpleNamespace(dora=SimpleNamespace(dir=tmp_path / "dora")))
    assert one_line_error(capsys, ["compare", "//sig/0000dead"]) == (
        f"mmd-audiocraft compare: error: //sig/0000dead: no XP folder {tmp_path}/dora/xps/0000dead (give the SIG "
        "of an XP of this Dora dir: AUDIOCRAFT_DORA_DIR or audiocraft's team config)")
    assert "expected //sig/SIG with one XP signature" in one_line_error(capsys, ["compare", "//sig/"])


# -- end to end: the grid's XPs, two of them trained ------------------------------------------------------------
def run_compare(args: list[str], dora_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`mmd-audiocraft compare ARGS` in a subprocess, on `dora_dir`, at the grids' CPU scale."""
    return subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.cli", "compare", *args],
                          env=dora_env(dora_dir, MMD_GRID_PROFILE="cpu"), cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def weight_of(argv: list[str]) -> float:
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith("losses.inde=")]
    return float(value)


@pytest.fixture(scope="module")
def weights_grid(tiny_corpus, tmp_path_factory) -> dict:
    """The README's `compare` command on the mmd_codec_weights grid (CPU profile) after training its weight 0 and
    1000 codecs (`dora grid --dry_run --init`, then `dora run -f SIG`) and a tiny LM on the weight-0 codec."""
    work = tmp_path_factory.mktemp("compare")
    dora_dir = work / "dora"
    cpu = {"MMD_GRID_PROFILE": "cpu"}
    run_dora(["grid", GRID, "--dry_run", "--init"], dora_dir, tiny_corpus, env_extra=cpu)
    weights = {xp.name: weight_of(json.loads((xp / ".argv.json").read_text())) for xp in xp_dirs(dora_dir)}
    assert sorted(weights.values()) == [0.0, 10.0, 100.0, 1000.0, 10000.0]
    sig = {w: s for s, w in weights.items()}
    for weight in TRAINED:
        run_dora(["run", "-f", sig[weight]], dora_dir, tiny_corpus)
    run_dora(["run", "solver=musicgen/musicgen_mmd_tiny", f"compression_model_checkpoint=//sig/{sig[0.0]}"],
             dora_dir, tiny_corpus)
    (lm,) = [xp for xp in xp_dirs(dora_dir) if xp.name not in weights]
    gap = {"total_bits": 0.125, "spread_bits": 0.02, "per_codebook_bits": [0.05, 0.0, 0.075, 0.0]}
    (dora_dir / "xps" / sig[1000.0] / "factorization_gap.json").write_text(json.dumps(gap))

    command = documented("README.md", "mmd-audiocraft compare")  # exactly what the README shows
    assert command.words[:3] == ["mmd-audiocraft", "compare", GRID]
    proc = run_compare(command.words[2:], dora_dir, work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    outputs = {flag: work / command.words[command.words.index(flag) + 1] for flag in ("--json", "--plot")}
    return {"dora_dir": dora_dir, "work": work, "weights": weights, "sig": sig, "lm": lm, "gap": gap, "proc": proc,
            "json": outputs["--json"], "png": outputs["--plot"]}


def last_evaluate_epoch(folder: Path) -> int:
    return max(i for i, epoch in enumerate(history(folder)) if "evaluate" in epoch)


@pytest.mark.slow
@pytest.mark.default_stack
def test_grid_rows_carry_exactly_what_the_trained_xps_logged(weights_grid):
    result = json.loads(weights_grid["json"].read_text())
    rows, weights = result["xps"], weights_grid["weights"]
    assert [r["losses.inde"] for r in rows] == [0.0, 10.0, 100.0, 1000.0, 10000.0]  # the grid's order
    assert all(weights[r["sig"]] == r["losses.inde"] for r in rows)
    assert result["settings"] == []  # the grid's XPs differ in the weight only
    out = weights_grid["proc"].stdout
    for row in rows:
        folder = weights_grid["dora_dir"] / "xps" / row["sig"]
        assert row["solver"] == "compression" and Path(row["folder"]) == folder
        meta = table_line(out, "", row["sig"])
        assert meta[3 if row["status"] == "run" else 4] == format(row["losses.inde"], "g")
        if row["losses.inde"] not in TRAINED:
            assert row["status"] == "not run" and row["epoch"] is None and row["evaluate"] == {}
            assert meta[2:4] == ["not", "run"]
            continue
        logged = history(folder)
        index = last_evaluate_epoch(folder)
        assert row["status"] == "run" and row["epoch"] == index + 1
        assert row["evaluate"] == logged[index]["evaluate"] and row["valid"] == logged[index]["valid"]
        assert {"inde_heldout", "tc_all_bits", "mi_rest_q0_bits", "entropy_q3_bits", "sisnr"} <= set(row["evaluate"])
        ratio = logged[-1]["train"].get("inde_grad_ratio")
        assert row["train"] == ({} if ratio is None else {"inde_grad_ratio": ratio})
        assert (ratio is None) == (row["losses.inde"] == 0)  # the ratio is logged with the loss on
        cells = table_line(out, "Independence", row["sig"])
        assert cells[2] == format(row["evaluate"]["inde_heldout"], ".2e")
        for key in ("tc_all_bits", "mi_rest_q3_bits"):
            value = row["evaluate"][key]
            assert (AT_NULL if value <= 0 else format(value, ".4f")) in cells
        assert all(c == "-" or not c.startswith("-") for c in cells[3:])  # only the MMD estimate may be < 0
    assert "Traceback" not in weights_grid["proc"].stderr


@pytest.mark.slow
@pytest.mark.default_stack
def test_lm_cross_entropy_and_cached_factorization_gap_sit_on_their_codec(weights_grid):
    rows = {r["sig"]: r for r in json.loads(weights_grid["json"].read_text())["xps"]}
    sig, lm = weights_grid["sig"], weights_grid["lm"]
    (epoch,) = history(lm)
    assert rows[sig[0.0]]["lm"] == [{"sig": lm.name, "modeling": "delay", "ce": epoch["valid"]["ce"], "epoch": 1,
                                     "codec": "same", "warning": None, "evaluation": None}]
    assert all(r["lm"] == [] for s, r in rows.items() if s != sig[0.0])
    assert rows[sig[1000.0]]["factorization_gap"] == weights_grid["gap"]
    assert all(r["factorization_gap"] is None for s, r in rows.items() if s != sig[1000.0])
    out = weights_grid["proc"].stdout
    assert out.split("Reconstruction", 1)[1].splitlines()[1].split()[-1] == "delay"  # "ce delay" column
    assert table_line(out, "Reconstruction", sig[0.0])[-1] == format(epoch["valid"]["ce"], ".4f")
    gap_row = table_line(out, "Reconstruction", sig[1000.0])
    assert gap_row[-4:] == ["0.125", "±", "0.020", "-"]


@pytest.mark.slow
@pytest.mark.default_stack
def test_plot_is_the_weight_figure_and_json_round_trips(weights_grid):
    assert png_size(weights_grid["png"]) == (1080, 432)  # two panels against the weight (9 x 3.6 in, 120 dpi)
    assert weights_grid["png"].stat().st_size > 20_000
    text = weights_grid["json"].read_text()
    result = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert json.loads(json.dumps(result)) == result and result["schema"] == "mmd-audiocraft/compare/1"
    assert result["inputs"] == [GRID]


@pytest.mark.slow
@pytest.mark.default_stack
def test_xp_folders_and_sig_names_give_the_grids_rows(weights_grid):
    grid = {r["sig"]: r for r in json.loads(weights_grid["json"].read_text())["xps"]}
    sigs = [weights_grid["sig"][w] for w in TRAINED]
    folders = [str(weights_grid["dora_dir"] / "xps" / s) for s in sigs]
    dora_dir, work = weights_grid["dora_dir"], weights_grid["work"]
    for inputs in (folders, [f"//sig/{s}" for s in sigs]):
        proc = run_compare([*inputs, "--json", "again.json"], dora_dir, work)
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows = json.loads((work / "again.json").read_text())["xps"]
        assert [r.pop("input") for r in rows] == inputs
        assert rows == [{k: v for k, v in grid[s].items() if k != "input"} for s in sigs]
