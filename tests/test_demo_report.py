"""What the demo reports: its table says it is one run, and its figure names the codecs as the table does and
uses the table's reconstruction measure (held-out log-mel L1)."""
from __future__ import annotations

from mmd_audiocraft.apps.demo import run


def result(tc_pct: float, log_mel: float) -> dict:
    usage = [{"codebook": k, "entropy_bits": 5.0} for k in range(4)]
    return {"report": {"protocol": {"corrected_pct_joint": tc_pct, "raw_pct_joint": tc_pct + 0.4,
                                    "null_pct_joint": 0.4}, "usage": usage, "each_vs_rest": []},
            "reconstruction": {"log_mel_l1": log_mel, "si_snr_db": -40.0}, "training": {}, "gap": None, "lm": None}


RESULTS = {"baseline": result(5.33, 0.847), "paper": result(-0.1, 0.845), "recommended": result(2.95, 0.748)}


def test_the_figure_names_the_codecs_and_plots_the_tables_log_mel_l1():
    points = run.figure_points(RESULTS)
    assert [(p.name, p.legend) for p in points] == [(n, n) for n in ("baseline", "paper", "recommended")]
    assert [p.reconstruction for p in points] == [0.847, 0.845, 0.748]
    assert [p.independence for p in points] == [5.33, -0.1, 2.95]
    assert [p.at_null for p in points] == [False, True, False]  # drawn at 0, open marker


def test_the_figure_is_written(tmp_path):
    path = run.plot_figure(RESULTS, tmp_path / "demo_results.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_says_it_is_one_run_whose_numbers_move(capsys):
    run.print_table(RESULTS, seed=42)
    out = capsys.readouterr().out
    first = out.strip().splitlines()[0]
    assert first.startswith("One run (seed 42)") and "docs/EVIDENCE.md" in out
    assert out.index("One run") < out.index("log-mel L1")
