"""Bar chart of I(z_k; z_-k) per codebook for one or more codecs, like the paper's Figures 4 and 5.

matplotlib is imported only when plotting (Agg backend, no display needed), so the metrics stay importable
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_each_vs_rest"]


def plot_each_vs_rest(report_or_reports: dict | Sequence[dict], path: str | Path,
                      labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Write a PNG: raw I(z_k; rest) bars per codebook, models side by side, shuffle-null as black ticks.

    A red footnote names the models whose joint histogram is saturated (joint_distinct_fraction > 0.5).
    """
    reports = [report_or_reports] if isinstance(report_or_reports, dict) else list(report_or_reports)
    if not reports:
        raise ValueError("report_or_reports: expected at least one independence report")
    for i, r in enumerate(reports):
        if not isinstance(r, dict) or "each_vs_rest" not in r:
            raise ValueError(f"report_or_reports[{i}]: expected a dict from independence_report")
    if labels is None:
        labels = [f"model {i}" for i in range(len(reports))]
    labels = list(labels)
    if len(labels) != len(reports):
        raise ValueError(f"labels: expected {len(reports)} labels, got {len(labels)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = max(len(r["each_vs_rest"]) for r in reports)
    if K == 0:
        raise ValueError("report_or_reports: each_vs_rest is empty (fewer than two codebooks)")
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * K + 2.0), 3.6))
    null_drawn = False
    top = 0.0
    saturated = []
    for i, (r, label) in enumerate(zip(reports, labels)):
        rows = r["each_vs_rest"]
        xs = [row["codebook"] + (i - (len(reports) - 1) / 2) * width for row in rows]
        ax.bar(xs, [row["raw_bits"] for row in rows], width=width * 0.95, label=label)
        top = max([top] + [row["raw_bits"] for row in rows] + [row.get("null_bits") or 0.0 for row in rows])
        frac = max(row.get("joint_distinct_fraction", 0.0) for row in rows)
        if frac > 0.5:
            saturated.append(f"{label}: {frac:.2f}")
        for x, row in zip(xs, rows):
            if row.get("null_bits") is not None:
                ax.hlines(row["null_bits"], x - width * 0.45, x + width * 0.45, colors="black", linewidth=2,
                          label=None if null_drawn else "shuffle-null (independent codes)")
                null_drawn = True
    ax.set_xticks(range(K))
    ax.set_xticklabels([str(k) for k in range(K)])  # 0-based, like the JSON and tables
    ax.set_xlabel("codebook k")
    est = reports[0].get("estimator", "")
    ax.set_ylabel(f"I(z_k; other codebooks) [bits]{' (' + est + ')' if est else ''}")
    ax.set_title(title or "Mutual information between each codebook and all others")
    ax.set_ylim(0.0, max(top, 1e-3) * 1.3)  # headroom for the legend
    ax.legend(fontsize=8, loc="upper right", ncol=min(3, len(reports) + 1))
    if saturated:  # every joint tuple seen ~once: values say nothing about dependence
        fig.text(0.01, 0.01, "saturated joint histogram (distinct tuples / frames) - " + ", ".join(saturated),
                 fontsize=7, color="firebrick")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0.0, 0.05 if saturated else 0.0, 1.0, 1.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return path
