"""Evaluation figure: spectrogram, the head's curve, gold and predicted marks."""

from __future__ import annotations

import numpy as np


def timestamp_figure(items: list[dict], frame_unit_s: float, head: str, hop_s: float = 0.01):
    """``items``: dicts with features [M, F], scores [T], gold [s], pred [s], prompt.

    Returns a matplotlib Figure with one row per item (Agg backend, no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.6 * len(items)), squeeze=False)
    for ax, it in zip(axes[:, 0], items):
        feats = np.asarray(it["features"])
        dur = feats.shape[1] * hop_s
        ax.imshow(feats, origin="lower", aspect="auto", extent=(0, dur, 0, feats.shape[0]), cmap="magma")
        ax.set_ylabel("mel")
        curve_ax = ax.twinx()
        scores = np.asarray(it["scores"], dtype=np.float64)
        curve = np.exp(scores) if head == "poisson" else 1 / (1 + np.exp(-scores))
        t = (np.arange(scores.size) + 0.5) * frame_unit_s
        curve_ax.plot(t, curve, color="cyan", lw=1.0)
        curve_ax.set_ylabel("intensity" if head == "poisson" else "p(event)")
        for g in it["gold"]:
            ax.axvline(g, color="lime", lw=1.2, ls="-")
        for p in it["pred"]:
            ax.axvline(p, color="red", lw=1.0, ls="--")
        ax.set_xlim(0, dur)
        ax.set_title(it["prompt"][:110], fontsize=8)
    axes[-1, 0].set_xlabel("seconds (green: gold, red dashed: predicted)")
    fig.tight_layout()
    return fig
