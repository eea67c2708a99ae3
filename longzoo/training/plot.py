"""The loss plot that the manifest and the card point to."""

from __future__ import annotations

from pathlib import Path

from longzoo.records import LossCurve


def plot_loss(curve: LossCurve, path: Path) -> None:
    """Train and eval MLM loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key, style in (("train", "-"), ("eval", "o-")):
        points = getattr(curve, key)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{key} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("MLM loss (nats per token)")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
