"""Figures: reliability diagrams and per-example entropy histograms (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(curves: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """Accuracy against mean confidence per bin, one line per method, with the diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, bins in curves.items():
        filled = [b for b in bins if b["count"]]
        ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled],
                marker="o", label=name)
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(fontsize="small")
    return _save(fig, plt, path)


def entropy_plot(histograms: dict[str, dict], path: str | Path, title: str) -> Path:
    """Per-example entropy (bits) histograms, one step line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, hist in histograms.items():
        ax.stairs(hist["counts"], hist["edges"], label=name)
    ax.set(xlabel="entropy of the calibrated distribution (bits)", ylabel="examples",
           title=title)
    ax.legend(fontsize="small")
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
