"""The table `mmd-audiocraft measure` prints: one screen summarising a measurement result (a `measure` dict)."""
from __future__ import annotations


def _f(value, spec: str = ".3f", width: int = 8) -> str:
    text = "-" if value is None else format(value, spec)
    return text.rjust(width)


def format_table(result: dict) -> str:
    """The measurement as plain-text tables (codebooks numbered from 0, as in the JSON)."""
    K = result["num_codebooks"]
    lines = []
    delays = f" (delays {' '.join(map(str, result['delays']))})" if result.get("delays") else ""
    lines.append(f"model {result['model']}  ({result['model_info'].get('class', '?')}, {K} codebooks x "
                 f"{result['bins']} codes, {result['model_info'].get('frame_rate', 0):g} Hz)")
    lines.append(f"data  {result.get('data', '?')}: {result['n_files']} file(s), {result['n_segments']} "
                 f"segment(s) of <= {result['segment_seconds']:g} s, {result['audio_seconds']:.1f} s of audio")
    lines.append(f"{result['n_frames']} code tuples, pattern {result['pattern']}{delays}; entropy estimator "
                 f"{result['estimator']}; null = mean over {result['null_shuffles']} per-codebook shuffles; "
                 "corrected = raw - null")
    lines.append("%J = 100 * TC / H(joint) (the paper's text);  %M = 100 * TC / sum_k H(z_k) (authors' code)")

    lines += ["", "Codebook usage", "  codebook  entropy[bits]  max[bits]  used codes  used %  perplexity"]
    for u in result["usage"]:
        lines.append(f"  q{u['codebook']:<7d} {_f(u['entropy_bits'], '.3f', 13)} {_f(u['max_entropy_bits'], '.3f', 10)}"
                     f" {u['used_codes']:>11d} {_f(100 * u['used_fraction'], '.1f', 7)} "
                     f"{_f(u['perplexity'], '.1f', 11)}")

    head = "raw[bits]  null[bits]  corr[bits]  raw %J  corr %J  raw %M  corr %M  distinct"
    lines += ["", "Pairwise mutual information I(z_a; z_b)", f"  pair     {head}"]
    for p in result["pairwise"]:
        lines.append(f"  q{p['a']}-q{p['b']:<4d} {_tc_cells(p)}")

    lines += ["", "Each codebook vs the rest I(z_k; z_-k) (paper appendix E)",
              "  codebook  raw[bits]  null[bits]  corr[bits]  H(z_k)[bits]"]
    for r in result["each_vs_rest"]:
        lines.append(f"  q{r['codebook']:<7d} {_f(r['raw_bits'], '.4f', 9)} {_f(r['null_bits'], '.4f', 11)} "
                     f"{_f(r['corrected_bits'], '.4f', 11)} {_f(r['entropy_bits'], '.3f', 13)}")

    tc = result["total_correlation"]
    lines += ["", f"Total correlation of all {K} codebooks", f"  all      {head}", f"  {'':8s} {_tc_cells(tc)}"]

    proto = result.get("protocol")
    if proto:
        pairs = ", ".join(f"q{a}-q{b}" for a, b in proto["pairs"])
        lines += ["", f"Paper protocol (Section 5.1): TC of {len(proto['pairs'])} random pairs ({pairs}), mean",
                  f"  TC %J raw {_f(proto['raw_pct_joint'], '.3f', 0)} %  <- the number the paper quotes",
                  f"  TC %J null {_f(proto['null_pct_joint'], '.3f', 0)} %, corrected "
                  f"{_f(proto['corrected_pct_joint'], '.3f', 0)} %",
                  f"  TC %M raw {_f(proto['raw_pct_marginal_sum'], '.3f', 0)} %, null "
                  f"{_f(proto['null_pct_marginal_sum'], '.3f', 0)} %, corrected "
                  f"{_f(proto['corrected_pct_marginal_sum'], '.3f', 0)} %",
                  f"  TC bits raw {_f(proto['raw_bits'], '.4f', 0)}, null {_f(proto['null_bits'], '.4f', 0)}, "
                  f"corrected {_f(proto['corrected_bits'], '.4f', 0)}"]
        if proto["raw_pct_joint"] is None or proto["raw_pct_marginal_sum"] is None:
            lines.append("  - : undefined, a chosen pair has zero entropy (codebooks that use a single code)")

    mmd = result.get("mmd") or {}
    lines += ["", f"MMD^2 of per-codebook vectors ({mmd.get('rows', 0)} sampled tuples, {mmd.get('kernel')} "
                  f"kernel, sigmas {', '.join(f'{b:g}' for b in mmd.get('bandwidths', []))})",
              f"  disjoint (unbiased) {_f(mmd.get('disjoint'), '.6g', 0)}   paper estimator "
              f"{_f(mmd.get('paper'), '.6g', 0)}"]
    if mmd.get("note"):
        lines.append(f"  note: {mmd['note']}")

    gap = result.get("factorization_gap")
    if gap:
        per = " ".join(f"{b:+.3f}" for b in gap["per_codebook_bits"])
        lines += ["", f"Factorization gap of the {gap['pattern']} pattern (bits per step; what predicting a step's "
                      "codes in parallel loses, given the past)",
                  f"  total {gap['total_bits']:.4f} +- {gap['spread_bits']:.4f} (std over {len(gap['seeds'])} "
                  f"seeds); per codebook {per}; {gap['test_steps']} test steps, {gap['context_steps']} steps "
                  "of context"]

    lines += _code_drift_lines(result)

    worst = max([p["joint_distinct_fraction"] for p in result["pairwise"]] + [0.0])
    if tc["joint_distinct_fraction"] > 0.5 or worst > 0.5:
        lines += ["", f"WARNING: saturated joint histograms (distinct tuples / tuples: pairs up to {worst:.2f}, "
                      f"all codebooks {tc['joint_distinct_fraction']:.2f}); values near saturation say little "
                      "about dependence: count more frames"]
    return "\n".join(lines)


def _tc_cells(r: dict) -> str:
    return (f"{_f(r['raw_bits'], '.4f', 9)} {_f(r['null_bits'], '.4f', 11)} {_f(r['corrected_bits'], '.4f', 11)} "
            f"{_f(r['raw_pct_joint'], '.3f', 7)} {_f(r['corrected_pct_joint'], '.3f', 8)} "
            f"{_f(r['raw_pct_marginal_sum'], '.3f', 7)} {_f(r['corrected_pct_marginal_sum'], '.3f', 8)} "
            f"{_f(r['joint_distinct_fraction'], '.3f', 9)}")


def _code_drift_lines(result: dict) -> list[str]:
    """Code agreement with the reference codec and code stability, with the reconstructions (when measured)."""
    agreement, stability = result.get("code_agreement"), result.get("code_stability")
    if not agreement and not stability:
        return []
    measured = agreement or stability
    K = len(measured["per_codebook"])
    lines = ["", f"How far the codes moved: fraction of identical codes per codebook, and joint (all {K} codes of a "
                 f"frame), over {measured['n_codec_frames']} codec frames"]
    if agreement:
        lines.append(f"  reference: {agreement['reference']}")
    lines.append(f"  {'codes':<26s}" + "".join(f"q{k}".rjust(8) for k in range(K)) + "   joint")
    rows = ([("= the reference's", agreement)] if agreement else []) + \
        ([("= its own output re-encoded", stability)] if stability else [])
    for name, values in rows:
        cells = "".join(_f(v, ".3f", 8) for v in values["per_codebook"])
        lines.append(f"  {name:<26s}{cells}{_f(values['joint'], '.3f', 8)}")
    lines += ["", "Reconstruction of the measured audio (audiocraft's log-mel L1, lower is better; SI-SNR, higher is "
                  "better)", f"  {'codec':<14s}  mel L1  SI-SNR[dB]  seconds"]
    recon = [("--model", agreement["reconstruction"]["model"] if agreement else stability["reconstruction"])]
    if agreement:
        recon.append(("--reference", agreement["reconstruction"]["reference"]))
    for name, r in recon:
        lines.append(f"  {name:<14s}{_f(r['mel_l1'], '.4f', 8)}{_f(r['sisnr_db'], '.2f', 12)}"
                     f"{_f(r['seconds'], '.1f', 9)}")
    return lines
