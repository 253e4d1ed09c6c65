"""Every number README.md, docs/ and examples/ quote from a committed result is read back from that result here, so
a stale number fails CI. A row: the page, the results file (under benchmarks/results/), the text as the page prints
it (a format string; whitespace and line breaks are compared as one space), and a function of the file's JSON that
gives the values. Each results file says how and when it was made (its command and date)."""
from __future__ import annotations

import json
import statistics

import pytest

from .conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def page(path: str) -> str:
    return " ".join((ROOT / path).read_text().split())


def mean(values) -> float:
    return statistics.fmean(values)


QUOTES = [
    # --- README.md ---
    ("README.md", "setup_cold.json", "a cold build took {:.0f} min and {:.1f} GB",
     lambda d: (d["seconds"] / 60, sum(d["bytes"].values()) / 1e9)),
    ("README.md", "make_test.json", "`~/.cache/mmd-audiocraft/corpus/` ({:.0f} MB, as measured in",
     lambda d: (next(b for p, b in d["bytes"].items() if p.endswith("/corpus")) / 1e6,)),
    ("README.md", "demo.json", "checkout: {:.0f} min with the environment and corpus in place (one run on a 2-core "
     "AMD EPYC VM shared with other work, 5-minute load {:.1f} at its end",
     lambda d: (d["seconds"] / 60, d["loadavg"][1])),
    ("README.md", "make_test.json", "`make test` took {:.0f} min with the environment in place",
     lambda d: (d["seconds"] / 60,)),
    ("README.md", "demo.json", "corrected pairwise total correlation from {:.2f} to {:.2f} % of the joint entropy, "
     "at a log-mel L1 of {:.3f} against the baseline's {:.3f}",
     lambda d: (*(d["codecs"][c]["report"]["protocol"]["corrected_pct_joint"] for c in ("baseline", "paper")),
                *(d["codecs"][c]["reconstruction"]["log_mel_l1"] for c in ("paper", "baseline")))),
    ("README.md", "sweep_recommended.json", "from {:.2f} / {:.2f} % (seeds 42 / 43) to {:.2f} / {:.2f} % and cost "
     "log-mel L1 ({:.3f} / {:.3f} against {:.3f} / {:.3f})",
     lambda d: tuple(d["runs"][f"{c} seed={s}"]["evaluate"][k] for k, cs in
                     (("tc_corrected_pct", ("baseline", "paper")), ("log_mel_l1", ("paper", "baseline")))
                     for c in cs for s in (42, 43))),
    ("README.md", "paper_scale_cpu.json", "the paper's macro-batch costs {:.2f}x the stock training step and "
     "{:.2f}x its peak memory",
     lambda d: (d["cases"]["macro"]["step_s_amortised"] / d["cases"]["stock"]["step_s"],
                d["cases"]["macro"]["peak_memory_mb"] / d["cases"]["stock"]["peak_memory_mb"])),
    # --- docs/EVIDENCE.md ---
    # the sweep: one table row per setting, values per seed 42 / 43
    *[("docs/EVIDENCE.md", "sweep_recommended.json",
       f"| {label} | {{:.2f}} / {{:.2f}} | {{:.2f}} / {{:.2f}} | {{:.2f}} | {{:.3f}} / {{:.3f}} | {{}} / {{}} | "
       f"{ratio} |",
       lambda d, s=setting: (
           *(d["runs"][f"{s} seed={x}"]["evaluate"]["tc_corrected_pct"] for x in (42, 43)),
           *(d["runs"][f"{s} seed={x}"]["evaluate"]["entropy_bits"][0] for x in (42, 43)),
           min(mean(d["runs"][f"{s} seed={x}"]["evaluate"]["entropy_bits"][q] for x in (42, 43))
               / mean(d["runs"][f"baseline seed={x}"]["evaluate"]["entropy_bits"][q] for x in (42, 43))
               for q in range(4)),
           *(d["runs"][f"{s} seed={x}"]["evaluate"]["log_mel_l1"] for x in (42, 43)),
           *(f"{g['total_bits']:.3f} ± {g['spread_bits']:.3f}" if len(g["seeds"]) > 1
             else f"{g['total_bits']:.3f} (1 predictor)"
             for g in (d["runs"][f"{s} seed={x}"]["evaluate"]["gap"] for x in (42, 43))),
           *(d["runs"][f"{s} seed={x}"]["training"].get("inde_grad_ratio") for x in (42, 43))))
      for label, setting, ratio in [
          ("baseline (`losses.inde=0`)", "baseline", "-"),
          ("paper (`losses.inde=1000`)", "paper", "{:.2f} / {:.2f}"),
          ("recommended (`inde.grad_ratio=1`)", "grad_ratio=1", "{:.2f} / {:.2f}"),
          ("`inde.grad_ratio=3`", "grad_ratio=3", "{:.2f} / {:.2f}"),
          ("`losses.inde=100`, disjoint estimator", "inde=100 disjoint", "{:.2f} / {:.0f}"),
          ("`losses.inde=10` (a control)", "inde=10", "{:.3f} / {:.3f}")]],
    ("docs/EVIDENCE.md", "sweep_recommended.json",
     "{:.2f}x of the baseline's TC ({:.2f} vs {:.2f} %, means of the two seeds) for {:.0f} % more log-mel L1 "
     "({:.3f} vs {:.3f})",
     lambda d: (lambda tc, mel: (tc("paper") / tc("baseline"), tc("paper"), tc("baseline"),
                                 100 * (mel("paper") / mel("baseline") - 1), mel("paper"), mel("baseline")))(
         lambda s: mean(d["runs"][f"{s} seed={x}"]["evaluate"]["tc_corrected_pct"] for x in (42, 43)),
         lambda s: mean(d["runs"][f"{s} seed={x}"]["evaluate"]["log_mel_l1"] for x in (42, 43)))),
    ("docs/EVIDENCE.md", "sweep_recommended.json",
     "lowers TC on both seeds ({:.2f}x: {:.2f} vs {:.2f} %), for {:.0f} % more log-mel L1 ({:.3f} vs {:.3f})",
     lambda d: (lambda tc, mel: (tc("grad_ratio=1") / tc("baseline"), tc("grad_ratio=1"), tc("baseline"),
                                 100 * (mel("grad_ratio=1") / mel("baseline") - 1), mel("grad_ratio=1"),
                                 mel("baseline")))(
         lambda s: mean(d["runs"][f"{s} seed={x}"]["evaluate"]["tc_corrected_pct"] for x in (42, 43)),
         lambda s: mean(d["runs"][f"{s} seed={x}"]["evaluate"]["log_mel_l1"] for x in (42, 43)))),
    ("docs/EVIDENCE.md", "sweep_recommended.json",
     "The lowest TCs ({:.2f}x and {:.2f}x of the baseline's, seed 43)",
     lambda d: tuple(d["runs"][f"{s} seed=43"]["evaluate"]["tc_corrected_pct"]
                     / mean(d["runs"][f"baseline seed={x}"]["evaluate"]["tc_corrected_pct"] for x in (42, 43))
                     for s in ("grad_ratio=3", "inde=100 disjoint"))),
    ("docs/EVIDENCE.md", "sweep_recommended.json", "whose MMD gradient ended {:.0f}x the reconstruction's",
     lambda d: (d["runs"]["inde=100 disjoint seed=43"]["training"]["inde_grad_ratio"],)),
    ("docs/EVIDENCE.md", "sweep_recommended.json",
     "of about {:.0f} bits of marginal entropy per step. One estimate's std over predictor seeds is up to {:.2f}, "
     "and the baseline's own two codecs read {:.3f} and {:.3f}.",
     lambda d: (mean(sum(d["runs"][f"baseline seed={x}"]["evaluate"]["entropy_bits"]) for x in (42, 43)),
                max(r["evaluate"]["gap"]["spread_bits"] for r in d["runs"].values()),
                *(d["runs"][f"baseline seed={x}"]["evaluate"]["gap"]["total_bits"] for x in (42, 43)))),
    # the factorization gap against converged LMs
    ("docs/EVIDENCE.md", "gap_vs_lm.json", "(2 codebooks of {} codes, {} frames, {} updates of 64 sequences)",
     lambda d: (d["card"], d["frames"], d["steps"])),
    *[("docs/EVIDENCE.md", "gap_vs_lm.json",
       f"| {label} | {{:.3f}} / {{:.3f}} | {{:.3f}} / {{:.3f}} ({{:.3f}}) | {{:.3f}} / {{:.3f}} ({exact}) | "
       f"{{:.3f}} / {{:.3f}} ({exact}) |",
       lambda d, c=case: (lambda cs, runs: (
           *(r["delay_ce"] for r in runs), *(r["unroll_ce"] for r in runs), cs["entropy_rate_bits"],
           *(r["lm_difference"] for r in runs), cs["exact_bits"] * (d["frames"] - 1) / d["frames"],
           *(r["gap"] for r in runs), cs["exact_bits"]))(d["cases"][c], d["cases"][c]["runs"]))
      for label, case, exact in [
          ("z0[t] copies z1[t-1]: one delay step holds both", "delay loses it", "{:.3f}"),
          ("z1[t] copies z0[t]: the delay pattern sees z0[t] first", "delay keeps it", "{:g}")]],
    ("docs/EVIDENCE.md", "gap_vs_lm.json",
     "(the LMs' difference is over {} frames, {} of which hold the link: exact {}/{} x {:.3f}.) Where the LMs "
     "converge, the gap and the LMs' difference differ by at most {:.3f} bits",
     lambda d: (d["frames"], d["frames"] - 1, d["frames"] - 1, d["frames"], d["cases"]["delay loses it"]["exact_bits"],
                max(abs(r["gap"] - r["lm_difference"]) for c in d["cases"].values() for r in c["runs"]))),
    # the demo: one run (`make demo`, written with --out benchmarks/results/demo.json)
    ("docs/EVIDENCE.md", "demo.json",
     "measures everything on the {:.1f} minutes of held-out music. The run below (`benchmarks/results/demo.json`, "
     "made by `{}` on {}) is one run, seed {}, on a {}-core {} VM shared with other work (5-minute load {:.1f} at its "
     "end): {:.0f} min with the environment and corpus in place.",
     lambda d: (d["codecs"]["baseline"]["report"]["audio_seconds"] / 60, d["command"], d["date"], d["seed"],
                d["cores"], d["cpu"], d["loadavg"][1], d["seconds"] / 60)),
    ("docs/EVIDENCE.md", "demo.json",
     "| corrected pairwise TC, % of joint entropy | {} | {} | {} |",
     lambda d: tuple(f"{v:.2f}" if v > 0 else "<= null"
                     for v in (d["codecs"][c]["report"]["protocol"]["corrected_pct_joint"]
                               for c in ("baseline", "paper", "recommended")))),
    ("docs/EVIDENCE.md", "demo.json",
     "| codebook entropies, bits (q0..q3) | {} | {} | {} |",
     lambda d: tuple(" ".join(f"{u['entropy_bits']:.2f}" for u in d["codecs"][c]["report"]["usage"])
                     for c in ("baseline", "paper", "recommended"))),
    ("docs/EVIDENCE.md", "demo.json",
     "| MMD / reconstruction gradient at the encoder, end of training | - | {:.2f} | {:.2f} |",
     lambda d: tuple(d["codecs"][c]["training"]["inde_grad_ratio"] for c in ("paper", "recommended"))),
    ("docs/EVIDENCE.md", "demo.json",
     "| log-mel L1 (lower is better) | {:.3f} | {:.3f} | {:.3f} |",
     lambda d: tuple(d["codecs"][c]["reconstruction"]["log_mel_l1"] for c in ("baseline", "paper", "recommended"))),
    ("docs/EVIDENCE.md", "demo.json",
     "| factorization gap (delay), bits per step, ± std over {} predictor seeds | {} | {} | {} |",
     lambda d: (len(d["codecs"]["baseline"]["gap"]["seeds"]),
                *(("<=0" if g["total_bits"] <= 0 else f"{g['total_bits']:.3f}") + f" ± {g['spread_bits']:.3f}"
                  for g in (d["codecs"][c]["gap"] for c in ("baseline", "paper", "recommended"))))),
    ("docs/EVIDENCE.md", "demo.json",
     "the paper's weight lowers TC the most ({:.2f}x of the baseline's) for the most log-mel L1 ({:+.0f} %), and the "
     "recommended setting lowers it less ({:.2f}x, {:+.0f} % log-mel L1) with every codebook at least as rich as the "
     "baseline's (its smallest ratio: {:.2f}x)",
     lambda d: (lambda tc, mel, usage: (
         tc("paper") / tc("baseline"), 100 * (mel("paper") / mel("baseline") - 1),
         tc("recommended") / tc("baseline"), 100 * (mel("recommended") / mel("baseline") - 1),
         min(r["entropy_bits"] / b["entropy_bits"] for r, b in zip(usage("recommended"), usage("baseline")))))(
         lambda c: d["codecs"][c]["report"]["protocol"]["corrected_pct_joint"],
         lambda c: d["codecs"][c]["reconstruction"]["log_mel_l1"],
         lambda c: d["codecs"][c]["report"]["usage"])),
    ("docs/EVIDENCE.md", "demo.json",
     "(valid CE, bits per code, delay / unroll: baseline {:.2f} / {:.2f}, recommended {:.2f} / {:.2f}). After {} "
     "epochs of 100 updates",
     lambda d: (*(d["codecs"][c]["lm"][p]["ce_bits"] for c in ("baseline", "recommended") for p in ("delay", "unroll")),
                d["codecs"]["baseline"]["lm"]["delay"]["epochs"])),
    ("docs/EVIDENCE.md", "demo.json",
     "10 s of audio take {} steps with the delay pattern and {} with unroll; timed on 0.5 s with one thread and "
     "scaled, {:.1f} s and {:.1f} s in this run",
     lambda d: (lambda lm: (lm["delay"]["sampling"]["steps"], lm["unroll"]["sampling"]["steps"],
                            lm["delay"]["sampling"]["seconds"], lm["unroll"]["sampling"]["seconds"]))(
         d["codecs"]["baseline"]["lm"])),
    # the fine-tune study: stated on examples/finetune_existing_codec.md only (its rows there); this page links to it
    # --- docs/TRAINING.md ---
    # the guard: inde_grad_ratio at the end of the sweep's runs, seeds 42 / 43
    ("docs/TRAINING.md", "sweep_recommended.json", "`inde.grad_ratio=1` reads {:.2f} / {:.2f}, `losses.inde=10` "
     "{:.3f} / {:.3f}, and the paper's weight 1000, above 10 in its first steps, has settled to {:.2f} / {:.2f}",
     lambda d: tuple(d["runs"][f"{c} seed={s}"]["training"]["inde_grad_ratio"]
                     for c in ("grad_ratio=1", "inde=10", "paper") for s in (42, 43))),
    # --- docs/PERFORMANCE.md ---
    # the paper's codec at its real size
    ("docs/PERFORMANCE.md", "paper_scale_cpu.json",
     "batches of {} x 1 s and {} thread, every case's process at {:.3f} of a core or more. One run, {}, on a 2-core "
     "AMD EPYC VM ({} min {} s):",
     lambda d: (d["batch"], d["threads"], min(d["summary"]["cpu_share"].values()), d["date"], int(d["wall_s"] // 60),
                round(d["wall_s"] % 60))),
    *[("docs/PERFORMANCE.md", "paper_scale_cpu.json",
       f"| {label} | {{0:.2f}} | {ratio} | {{2:,.0f}} MB | {mem} |",
       lambda d, c=case: (d["cases"][c]["step_s"], d["summary"]["step_vs_stock"][c], d["cases"][c]["peak_memory_mb"],
                          d["summary"]["peak_memory_vs_stock"][c]))
      for label, case, ratio, mem in [
          ("stock (`losses.inde=0`)", "stock", "1", "1"),
          ("MMD on the live batch", "live", "{1:.3f}", "{3:.2f}"),
          ("macro-batch 32, all pairs, amortised over the 32 steps (all 31 storing steps timed)", "macro",
           "**{1:.2f}**", "**{3:.2f}**"),
          ("macro-batch 32, `inde.block_rows=2048` (2 blocks), amortised", "macro_blocks", "{1:.2f}", "{3:.2f}")]],
    ("docs/PERFORMANCE.md", "paper_scale_cpu.json",
     "The MMD step of the all-pairs cycle took {:.1f} s for {:,} rows x {} dims ({} items x {:.0f} frames): "
     "re-encoding the 32 stored batches (forward, no activations kept) {:.1f} s, the MMD forward {:.1f} s, the "
     "backward through the 32 recomputed encoders {:.1f} s, the rest of the step (the live batch's own step) {:.1f} s. "
     "The loss alone on those rows, forward and backward: {:.2f} s with all pairs, {:.2f} s with blocks of {:,} rows.",
     lambda d: (lambda m: (m["mmd_step_s"], m["mmd_rows"], m["mmd_dim"], m["stored_items"], m["frames_kept_per_item"],
                           *m["mmd_step_parts_s"].values(), m["estimator_alone_s"]["all_pairs"],
                           m["estimator_alone_s"][f"block_rows_{d['block_rows']}"], d["block_rows"]))(
         d["cases"]["macro"])),
    ("docs/PERFORMANCE.md", "paper_scale_cpu.json", "the storing steps cost what the stock step does (median {:.2f} s)",
     lambda d: (d["cases"]["macro"]["storing_step_s_median"],)),
    ("docs/PERFORMANCE.md", "paper_scale_cpu_reduced.json",
     "A reduced run (batch {}, {} of the 31 storing steps timed; `benchmarks/results/paper_scale_cpu_reduced.json`) "
     "read {:.2f}x and {:.2f}x.",
     lambda d: (d["batch"], d["cases"]["macro"]["storing_steps_timed"], d["summary"]["step_vs_stock"]["macro"],
                d["summary"]["peak_memory_vs_stock"]["macro"])),
    # the 8-GPU projection, as bench_paper_scale computed it (rows: its own labels and bases)
    *[("docs/PERFORMANCE.md", "paper_scale_cpu.json", f"| {label} | {{{fmt}}} {{}} | {{}} |",
       lambda d, i=i: (d["projection"][i]["value"], d["projection"][i]["unit"] if i else "",
                       d["projection"][i]["basis"]))
      for i, (label, fmt) in enumerate([
          ("rows per MMD step", ":,"), ("rows tensor", ":.1f"), ("stored batches", ":.1f"),
          ("re-encoding: one batch's encoder activations (recomputed in backward, one batch at a time)", ":.0f"),
          ("re-encoding: graph kept over the 32 passes (quantizer, captured vectors)", ":.0f"),
          ("tiled kernel (tile 8192), forward + backward", ":.0f"), ("total extra for the MMD step", ":,.0f")])],
    ("docs/PERFORMANCE.md", "paper_scale_cpu.json",
     "these {:.1f} GiB come on top of the stock step's peak, and `inde.tile` trades the kernel's {:.0f} MiB of blocks "
     "({:.0f} B x 8,192^2) against speed",
     lambda d: (d["projection"][-1]["value"] / 1024, d["kernel_memory"]["bytes_per_tile2"] * 8192 ** 2 / 2 ** 20,
                d["kernel_memory"]["bytes_per_tile2"])),
    # MusicGen-small on the paper codec
    ("docs/PERFORMANCE.md", "musicgen_small_cpu.json",
     "(`musicgen/musicgen_base_32khz` with `grids/_profile.py`'s overrides: {:.1f} M parameters, {} layers of {})",
     lambda d: (d["lm"]["params_millions"], d["lm"]["layers"], d["lm"]["dim"])),
    ("docs/PERFORMANCE.md", "musicgen_small_cpu.json",
     "It builds, takes its cardinality ({}), number of codebooks ({}) and delays ({}) from the codec, logs a finite "
     "train and valid cross-entropy ({:.2f} / {:.2f} nats",
     lambda d: (d["lm"]["card"], d["lm"]["num_codebooks"], d["lm"]["delays"], d["history"][-1]["train"]["ce"],
                d["history"][-1]["valid"]["ce"])),
    ("docs/PERFORMANCE.md", "musicgen_small_cpu.json",
     "| first update (AdamW allocates its state) | {:.1f} s | | second update | {:.1f} s | | the LM process (import, "
     "build, {} updates, valid) | {:.0f} s | | its peak RSS | {:,.0f} MB | | the codec process (build, save, "
     "preflight) | {:.0f} s, {:,.0f} MB |",
     lambda d: (*d["step_seconds"][:2], len(d["step_seconds"]), d["lm_process_seconds"], d["lm_process_peak_rss_mb"],
                d["codec_process_seconds"], d["codec_process_peak_rss_mb"])),
    ("docs/PERFORMANCE.md", "musicgen_small_cpu.json",
     "One run, {}, on a 2-core AMD EPYC VM (1-minute load {:.1f} at its end; "
     "`benchmarks/results/musicgen_small_cpu.json`)",
     lambda d: (d["date"], d["load_avg_1min_at_end"])),
    # --- docs/LOSS.md ---
    # --- docs/MULTI_GPU.md ---
    # --- docs/MEASURING.md ---
    # the demo's SIGs, in the prose and the commands
    ("docs/MEASURING.md", "demo.json", "`baseline: XP {}`, `paper: XP {}`, `recommended: XP {}`",
     lambda d: tuple(d["codecs"][c]["xp"] for c in ("baseline", "paper", "recommended"))),
    ("docs/MEASURING.md", "demo.json", "mmd-audiocraft measure --model //sig/{} --data",
     lambda d: (d["codecs"]["baseline"]["xp"],)),
    ("docs/MEASURING.md", "demo.json", "mmd-audiocraft compare //sig/{} //sig/{} //sig/{}",
     lambda d: tuple(d["codecs"][c]["xp"] for c in ("baseline", "paper", "recommended"))),
    # the printed excerpt, block by block: `measure`'s table of the demo's own measurement of its baseline codec
    *[("docs/MEASURING.md", "demo.json", "{}",
       lambda d, head=head: (next(b for b in __import__("mmd_audiocraft.apps.measure_table", fromlist=["_"])
                                  .format_table(d["codecs"]["baseline"]["report"]).split("\n\n")
                                  if b.startswith(head)),))
      for head in ("model ", "Codebook usage", "Paper protocol", "MMD^2", "WARNING")],
    *[("docs/MEASURING.md", "demo.json", f'"{key}": {{}}',
       lambda d, key=key: (json.dumps(d["codecs"]["baseline"]["report"]["protocol"][key]),))
      for key in ("pairs", "raw_bits", "null_bits", "corrected_bits", "raw_pct_joint", "null_pct_joint",
                  "corrected_pct_joint", "raw_pct_marginal_sum", "null_pct_marginal_sum",
                  "corrected_pct_marginal_sum")],
    # `compare`'s printed table of the same XPs, block by block
    *[("docs/MEASURING.md", "measure_demo_compare.json", "{}",
       lambda d, i=i: (__import__("mmd_audiocraft.apps.compare", fromlist=["_"]).format_compare_table(d)
                       .split("\n\n")[i],))
      for i in range(4)],
    # reference readings
    *[("docs/MEASURING.md", "demo.json", f"| {label} | demo, one run | {{:.2f}} | {{:.2f}} | {{:.3f}} ± {{:.3f}} |",
       lambda d, c=c: (d["codecs"][c]["report"]["protocol"]["corrected_pct_joint"],
                       d["codecs"][c]["report"]["usage"][0]["entropy_bits"],
                       d["codecs"][c]["gap"]["total_bits"], d["codecs"][c]["gap"]["spread_bits"]))
      for c, label in (("baseline", "baseline (`losses.inde=0`)"), ("paper", "paper (`losses.inde=1000`)"),
                       ("recommended", "recommended (`inde.grad_ratio=1`)"))],
    *[("docs/MEASURING.md", "sweep_recommended.json", "| | sweep, seeds 42 / 43 | {:.2f} / {:.2f} | "
       "{:.2f} / {:.2f} | {:.3f} ± {:.3f} / {:.3f} ± {:.3f} |",
       lambda d, c=c: (*(d["runs"][f"{c} seed={s}"]["evaluate"]["tc_corrected_pct"] for s in (42, 43)),
                       *(d["runs"][f"{c} seed={s}"]["evaluate"]["entropy_bits"][0] for s in (42, 43)),
                       *(v for s in (42, 43) for v in (d["runs"][f"{c} seed={s}"]["evaluate"]["gap"]["total_bits"],
                                                       d["runs"][f"{c} seed={s}"]["evaluate"]["gap"]["spread_bits"]))))
      for c in ("baseline", "paper", "grad_ratio=1")],
    ("docs/MEASURING.md", "sweep_recommended.json", "| `inde.grad_ratio=3` | sweep, seed 43 (codebook 0 collapsed) | "
     "{:.2f} | {:.2f} | {:.3f} ({} predictor) |",
     lambda d: (d["runs"]["grad_ratio=3 seed=43"]["evaluate"]["tc_corrected_pct"],
                d["runs"]["grad_ratio=3 seed=43"]["evaluate"]["entropy_bits"][0],
                d["runs"]["grad_ratio=3 seed=43"]["evaluate"]["gap"]["total_bits"],
                len(d["runs"]["grad_ratio=3 seed=43"]["evaluate"]["gap"]["seeds"]))),
    # runtime
    ("docs/MEASURING.md", "measure_runtime.json", "`measure` per hour of 32 kHz audio on a {}-core {} VM ({} torch "
     "threads), extrapolated from {:.1f} minutes of the demo corpus's 32 kHz held-out music",
     lambda d: (d["cores"], d["cpu"], d["torch_threads"], d["codecs"]["paper"]["measure"]["audio_seconds"] / 60)),
    ("docs/MEASURING.md", "measure_runtime.json", "one run on a machine shared with other work, 1-minute load {:.1f} "
     "at its start; `benchmarks/results/measure_runtime.json`", lambda d: (d["loadavg"][0],)),
    *[("docs/MEASURING.md", "measure_runtime.json", f"{label}: {{:.1f}} M parameters, {codes}) | {{:.1f}} min | "
       "{:.1f} min |",
       lambda d, c=c: (d["codecs"][c]["parameters"] / 1e6,
                       *(d["codecs"][c][m]["seconds"] / d["codecs"][c][m]["audio_seconds"] * 60
                         for m in ("measure", "measure_gap"))))
      for c, label, codes in (("paper", "the paper's (`encodec_mmd_musicgen_32khz`", "4 x 2048 codes"),
                              ("tiny", "the demo's (`encodec_mmd_tiny`",
                               "4 x 128 codes, 16 kHz: the audio is resampled"))],
    # --- docs/GRIDS.md, docs/CLUSTER.md, docs/DATA.md ---
    # --- examples/cluster_walkthrough.md ---
    # --- examples/finetune_existing_codec.md ---
    # (the headline line and both tables: tests/test_finetune.py::test_the_docs_show_the_studys_numbers)
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "corrected pairwise TC at most {}x the source codec's, log-mel L1 at most {:.0f} % worse, every "
     "codebook's entropy at least {}x the source's, on both seeds",
     lambda d: (d["criteria"]["tc_ratio_max"], 100 * (d["criteria"]["log_mel_ratio_max"] - 1),
                d["criteria"]["entropy_ratio_min"])),
    # "no setting met them": the study's list of points meeting every criterion is empty
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "No setting met them within the study's {} updates.",
     lambda d: [d["finetune_budget"]["epochs"] * d["finetune_budget"]["updates"]][:not d["summary"]["meeting"]]),
    # the shipped setting missed the TC bar on both seeds; the closer seed, unrounded
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "(seed {}'s {:.3f}x is {:.4f}x)",
     lambda d: [(s, c["tc_ratio"], c["tc_ratio"])
                for shipped in [d["summary"]["shipped"]]
                for cell in [d["summary"]["table"][shipped["setting"]][str(shipped["updates"])]["seeds"]]
                for s, c in [min(cell.items(), key=lambda sc: sc[1]["tc_ratio"])]
                if c["tc_ratio"] > d["criteria"]["tc_ratio_max"]][0]),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "batches of {} x 1 s) without the loss for {} updates, once per seed ({}, {})",
     lambda d: (d["batch_size"], d["source_budget"]["epochs"] * d["source_budget"]["updates"],
                *d["summary"]["seeds"])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "for {} updates at each setting",
     lambda d: (d["finetune_budget"]["epochs"] * d["finetune_budget"]["updates"],)),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "Every {} updates it measures, on {}:", lambda d: (d["finetune_budget"]["updates"], d["data"])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "Training took {:.0f} min for the two sources and {:.0f} min for the 12 fine-tunes, one thread on a 2-core AMD "
     "EPYC VM (`train_seconds` in the JSON)",
     lambda d: (sum(s["train_seconds"] for s in d["sources"].values()) / 60,
                sum(f["train_seconds"] for f in d["finetunes"].values()) / 60)),
    # (the table per setting and per measurement: tests/test_finetune.py) the gradient ratio at the end, per seed
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "averaged over the last {} updates) at the end, seeds 42 / 43: weight 10 {:.3f} / {:.3f}, weight 100 {:.2f} / "
     "{:.2f}, ratio 0.1 {:.2f} / {:.2f}, weight 1000 {:.2f} / {:.2f}, ratio 1 {:.2f} / {:.2f}; the seeds' TC ratios "
     "agree within {:.2f} at {} updates ({:.2f} at most on the way)",
     lambda d: (lambda t: (
         d["finetune_budget"]["updates"],
         *(d["finetunes"][f"{s} seed={x}"]["trajectory"][-1]["train_inde_grad_ratio"]
           for s in ("inde=10", "inde=100", "grad_ratio=0.1", "inde=1000", "grad_ratio=1") for x in (42, 43)),
         max(abs(t[s]["250"]["seeds"]["42"]["tc_ratio"] - t[s]["250"]["seeds"]["43"]["tc_ratio"]) for s in t),
         max(int(u) for u in t["control"]),
         max(abs(c["seeds"]["42"]["tc_ratio"] - c["seeds"]["43"]["tc_ratio"]) for s in t for c in t[s].values())))(
         d["summary"]["table"])),
    # TC in the order of the gradient ratio on each seed, and lower at the end than 50 updates before in every run
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "in the order of its gradient ratio, and was still falling at {} updates.",
     lambda d: [n for n in [d["finetune_budget"]["epochs"] * d["finetune_budget"]["updates"]]
                if all(r["trajectory"][-1]["tc_corrected_pct"] < r["trajectory"][-2]["tc_corrected_pct"]
                       for r in d["finetunes"].values())
                and all([r["setting"] for r in sorted(runs, key=lambda r: r["trajectory"][-1]["train_inde_grad_ratio"])]
                        == [r["setting"] for r in sorted(runs, key=lambda r: -r["trajectory"][-1]["tc_corrected_pct"])]
                        for seed in d["summary"]["seeds"]
                        for runs in [[r for r in d["finetunes"].values()
                                      if str(r["seed"]) == seed and r["setting"] != "control"]])]),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "whose MMD gradient was at most {:.2f} % of the reconstruction's",
     lambda d: (100 * max(t["train_inde_grad_ratio"] for r in d["finetunes"].values() if r["setting"] == "inde=10"
                          for t in r["trajectory"][1:]),)),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "Every setting ended within {:+.1f} % of its source's log-mel L1",
     lambda d: (100 * (max(c["log_mel_ratio"]["max"] for by in d["summary"]["table"].values()
                           for c in [by[max(by, key=int)]]) - 1),)),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "the strongest went above the {:.0f} % criterion on the way: {:+.1f} % with `{}` (seed {}, after {} "
     "updates), {:+.1f} % with `{}` (seed {}, after {} updates)",
     lambda d: (100 * (d["criteria"]["log_mel_ratio_max"] - 1), *[
         v for k in ("grad_ratio=1", "inde=1000")
         for m, s, u in [max((c["log_mel_ratio"], s, u) for u, cell in d["summary"]["table"][k].items()
                             for s, c in cell["seeds"].items())]
         for v in (100 * (m - 1), " ".join(d["settings"][k]), s, u)])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "The smallest entropy ratio anywhere in the study was {:.2f}x (`{}`, seed {}, after {} updates)",
     lambda d: [(m, " ".join(d["settings"][k]), s, u) for m, k, s, u in [min(
         (c["entropy_ratio_min"], k, s, u) for k, by in d["summary"]["table"].items() for u, cell in by.items()
         for s, c in cell["seeds"].items())]][0]),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "the first codebook keeps {:.2f} / {:.2f} of its codes with no loss and {:.2f} / {:.2f} with `{}`",
     lambda d: (*[d["summary"]["table"][k][str(d["summary"]["shipped"]["updates"])]["seeds"][s]["agreement"][0]
                  for k in ("control", d["summary"]["shipped"]["setting"]) for s in d["summary"]["seeds"]],
                " ".join(d["summary"]["shipped"]["overrides"]))),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "log-mel L1 fell {:.1f} / {:.1f} % between {} and {} updates",
     lambda d: (*[100 * (1 - src["trajectory"][-1]["log_mel_l1"] / src["trajectory"][-2]["log_mel_l1"])
                  for src in d["sources"].values()],
                *[src["trajectory"][i]["updates"] for src in list(d["sources"].values())[:1] for i in (-2, -1)])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "the valid mel loss less than {:.0f} % better over the next {} updates) found a plateau only on "
     "seed {}",
     lambda d: (100 * d["plateau_rule"]["rel"], d["plateau_rule"]["window"] * d["source_budget"]["updates"],
                *[reached[:len(reached) == 1] for reached in  # "only": exactly one source reached it
                  [[name.split("=")[1] for name, src in d["sources"].items() if src["plateau"]["reached"]]]][0])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",  # "two seeds": 0 updates otherwise
     "One codec size, one corpus, two seeds, {} updates",
     lambda d: (d["finetune_budget"]["epochs"] * d["finetune_budget"]["updates"] * (len(d["summary"]["seeds"]) == 2),)),
    # the 32 kHz budget: the study's updates as MMD steps, one every inde.every=32 updates (tests/test_finetune.py
    # checks the config against the study)
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "{} x 32 = 8000 updates, 5 epochs of 1600 (an epoch is {} MMD steps, the study's measuring interval)",
     lambda d: (d["summary"]["shipped"]["updates"], d["finetune_budget"]["updates"])),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "`losses.inde=1000` read {:.2f}-{:.2f} over the study's fine-tunes, the `train_inde_grad_ratio` of the "
     "trajectories in `benchmarks/results/finetune_study.json`",
     lambda d: (min(ratios := [t["train_inde_grad_ratio"] for r in d["finetunes"].values()
                               if r["setting"] == "inde=1000" for t in r["trajectory"][1:]]), max(ratios))),
    ("examples/finetune_existing_codec.md", "finetune_study.json",
     "it read {:.2f}-{:.2f} over the study's fine-tunes at ratio 1, the `train_inde_grad_ratio` of the trajectories "
     "in `benchmarks/results/finetune_study.json`",
     lambda d: (min(ratios := [t["train_inde_grad_ratio"] for r in d["finetunes"].values()
                               if r["setting"] == d["summary"]["shipped"]["setting"] for t in r["trajectory"][1:]]),
                max(ratios))),
]


@pytest.mark.parametrize("where, source, text, values", QUOTES,
                         ids=[f"{q[0]}:{q[2][:40]}" for q in QUOTES])
def test_a_quoted_number_is_its_results_file(where, source, text, values):
    expected = " ".join(text.format(*values(results(source))).split())
    assert expected in page(where), f"{where} should print {expected!r} ({source})"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_a_results_file_says_how_and_when_it_was_made(path):
    data = json.loads(path.read_text())
    assert isinstance(data.get("command"), str) and data["command"], f"{path.name}: no command"
    assert isinstance(data.get("date"), str) and data["date"][:2] == "20", f"{path.name}: no date"


def test_every_results_file_is_quoted():
    quoted = {q[1] for q in QUOTES}
    assert quoted == {p.name for p in RESULTS.glob("*.json")}
