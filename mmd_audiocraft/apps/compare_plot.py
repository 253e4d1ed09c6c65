"""The figure of `mmd-audiocraft compare --plot`: the paper's Figure 2 (independence and reconstruction against
the MMD weight) when the XPs differ only in `losses.inde`, else the reconstruction / independence frontier.

matplotlib is imported only when plotting (Agg backend, no display needed).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .compare import WEIGHT_KEY, CompareInputError, is_at_null, label, metric

__all__ = ["plot_compare", "plot_frontier", "draw_frontier", "FrontierPoint", "INDEPENDENCE_PLOT_KEYS",
           "RECONSTRUCTION_PLOT_KEYS"]

# first present wins: the paper plots the protocol's TC in % of joint entropy; the total correlation of all
# codebooks when no pair had entropy (tiny or collapsed codecs)
INDEPENDENCE_PLOT_KEYS = (("tc_pair_pct", "pairwise TC, corrected [% of joint H]"),
                          ("tc_all_bits", "total correlation, corrected [bits]"))
# the paper's Figure 2 reads MSSpec; then the other reconstruction losses of the valid stage, then SI-SNR
RECONSTRUCTION_PLOT_KEYS = (("valid_msspec", "multi-scale spectral loss (valid)"), ("valid_mel", "mel loss (valid)"),
                            ("valid_l1", "L1 (valid)"), ("sisnr", "-SI-SNR [dB] (evaluate)"))


def _first_present(rows: list[dict], choices) -> tuple[str, str] | None:
    for key, name in choices:
        if any(metric(r, key) is not None for r in rows):
            return key, name
    return None


def plot_compare(result: dict, path: str | Path) -> Path:
    """Write a PNG of a `compare` result and return its path.

    Only XPs with an evaluate stage are drawn. Same settings but `losses.inde`: two panels, corrected
    independence and reconstruction against the weight (symlog x axis, linear below 1, so weight 0 shows);
    otherwise one scatter, reconstruction against corrected independence, each point labelled by its settings.
    Corrected values at or below the shuffle-null are drawn at 0 as open markers. Raises CompareInputError
    when no XP has an evaluate stage.
    """
    rows = [r for r in result["xps"] if r["status"] == "run"]
    if not rows:
        raise CompareInputError("--plot: no XP has an evaluate stage yet, nothing to plot")
    independence = _first_present(rows, INDEPENDENCE_PLOT_KEYS)
    reconstruction = _first_present(rows, RECONSTRUCTION_PLOT_KEYS)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_weight = not result["settings"] and all(r[WEIGHT_KEY] is not None for r in rows)
    if by_weight:
        rows = sorted(rows, key=lambda r: r[WEIGHT_KEY])
        fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
        for ax, chosen in zip(axes, (independence, reconstruction)):
            _weight_panel(ax, rows, chosen)
        fig.suptitle(f"codec XPs against the MMD weight ({len(rows)} XPs)", fontsize=10)
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        _frontier(ax, rows, result["settings"], independence, reconstruction)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return path


def _points(rows: list[dict], key: str) -> list[tuple[int, float, bool]]:
    """(row index, value to draw, at null) of the rows that logged `key`; at-null values are drawn at 0."""
    out = []
    for i, r in enumerate(rows):
        value = metric(r, key)
        if value is not None:
            at_null = is_at_null(key, value)
            out.append((i, 0.0 if at_null else float(value), at_null))
    return out


def _weight_panel(ax, rows: list[dict], chosen: tuple[str, str] | None) -> None:
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel(f"{WEIGHT_KEY} (symlog: linear below 1)")
    ax.grid(alpha=0.3)
    if chosen is None:
        ax.text(0.5, 0.5, "not logged by these XPs", ha="center", va="center", transform=ax.transAxes)
        return
    key, name = chosen
    points = _points(rows, key)
    xs = [rows[i][WEIGHT_KEY] for i, _, _ in points]
    ax.plot(xs, [v for _, v, _ in points], "-", color="tab:blue", alpha=0.5)
    for (_, value, at_null), x in zip(points, xs):
        ax.plot([x], [value], "o", color="tab:blue", markerfacecolor="white" if at_null else "tab:blue")
    if any(at_null for _, _, at_null in points):
        name += "\n(open: at or below the shuffle-null)"
    ax.set_ylabel(name, fontsize=9)


def _frontier(ax, rows: list[dict], settings: list[str], independence, reconstruction) -> None:
    if independence is None or reconstruction is None:
        missing = "independence" if independence is None else "reconstruction"
        ax.grid(alpha=0.3)
        ax.text(0.5, 0.5, f"no {missing} metric logged by these XPs", ha="center", va="center",
                transform=ax.transAxes)
        return
    (ikey, iname), (rkey, rname) = independence, reconstruction
    points = [FrontierPoint(rows[i]["sig"], f"{rows[i]['sig']}: {label(rows[i], settings)}", x, metric(rows[i], rkey),
                            at_null) for i, x, at_null in _points(rows, ikey) if metric(rows[i], rkey) is not None]
    draw_frontier(ax, points, iname, rname)


@dataclasses.dataclass
class FrontierPoint:
    """One codec on the reconstruction / independence plane: `name` annotates the point, `legend` explains it;
    `at_null`: the independence value is at or below the shuffle-null (drawn at 0, open marker)."""
    name: str
    legend: str
    independence: float
    reconstruction: float
    at_null: bool = False


def draw_frontier(ax, points: list[FrontierPoint], independence_label: str, reconstruction_label: str) -> None:
    """Reconstruction against independence, one labelled point per codec (`compare --plot`, the demo's figure)."""
    ax.grid(alpha=0.3)
    ax.margins(0.15)  # room for the names next to the points
    for n, point in enumerate(points):
        x = 0.0 if point.at_null else point.independence
        color = f"C{n % 10}"
        ax.plot([x], [point.reconstruction], "o", color=color, markerfacecolor="white" if point.at_null else color,
                label=point.legend)
        ax.annotate(point.name, (x, point.reconstruction), fontsize=7, textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(independence_label + "\n(open marker: at or below the shuffle-null)", fontsize=9)
    ax.set_ylabel(reconstruction_label, fontsize=9)
    ax.set_title("reconstruction / independence frontier", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)


def plot_frontier(points: list[FrontierPoint], independence_label: str, reconstruction_label: str,
                  path: str | Path) -> Path:
    """:func:`draw_frontier` alone in a PNG at `path` (returned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    draw_frontier(ax, points, independence_label, reconstruction_label)
    return _save(fig, path)
