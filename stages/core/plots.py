"""Matplotlib figures saved as PNG beside the DVC plot data (Agg backend, no screen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stages.core.io import save_with  # noqa: E402

# Fixed metadata keeps the PNG bytes identical across reruns.
_PNG_META = {"Software": None}


def _save(fig, path: Path) -> None:
    save_with(path, lambda tmp: fig.savefig(tmp, dpi=110, metadata=_PNG_META))
    plt.close(fig)


def loss_curves(histories: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    """Training (dashed) and validation (solid) loss per model, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, history) in enumerate(histories.items()):
        color = f"C{i}"
        ax.plot(history["epoch"], history["loss"], "--", color=color, alpha=0.6, label=f"{name} train")
        if "val_loss" in history:
            ax.plot(history["epoch"], history["val_loss"], "-", color=color, label=f"{name} validation")
    ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def memory_probes(probes: pd.DataFrame, blind: pd.DataFrame, ideal_pct: float, path: Path, title: str) -> None:
    """Left: the +50% change probes per model. Right: blinding predictions vs the kept end."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if probes.empty:  # a task without a first and a last input
        for ax in (left, right):
            ax.axis("off")
        left.text(0.5, 0.5, "no probes: this task has no first and last input", ha="center", va="center")
        fig.suptitle(title)
        _save(fig, path)
        return
    # One bar per model at the median over seeds; the whisker spans the seeds.
    stats = probes.groupby("model", sort=False)[["change_first_pct", "change_last_pct"]].agg(["median", "min", "max"])
    x = np.arange(len(stats))
    for offset, column, label in ((-0.2, "change_first_pct", "x[0] × 1.5"), (0.2, "change_last_pct", "x[-1] × 1.5")):
        median = stats[(column, "median")].to_numpy()
        spread = [median - stats[(column, "min")].to_numpy(), stats[(column, "max")].to_numpy() - median]
        left.bar(x + offset, median, 0.4, yerr=spread, capsize=3, label=label)
    left.axhline(ideal_pct, color="k", ls="--", lw=1, label=f"uses it (+{ideal_pct:g}%)")
    left.axhline(0, color="grey", lw=0.8)
    left.set_xticks(x, stats.index)
    left.set(ylabel="median change of prediction (%)", title="change probe (whiskers: range over seeds)")
    left.legend(fontsize=8)
    for i, (name, rows) in enumerate(blind.groupby("model", sort=False)):
        for end, marker in (("first", "o"), ("last", "s")):
            sel = rows[rows["end"] == end]
            right.plot(sel["target"], sel["prediction"], marker=marker, ls="-" if end == "first" else ":",
                       color=f"C{i}", label=f"{name}: only x[{'0' if end == 'first' else '-1'}] set")
    right.plot([0, 1], [0, 1], color="k", lw=1, ls="--", label="ideal")
    right.set(xlabel="value of the kept end", ylabel="prediction", title="blinding probe")
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def forecast(series: pd.DataFrame, predictions: dict[str, pd.DataFrame], n_train: int, path: Path, title: str) -> None:
    """The actual series, the train/test boundary and each model's test forecasts."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(series["time"], series["value"], color="k", lw=1.5, label="actual")
    boundary = series["time"].iloc[n_train] - 0.5
    ax.axvline(boundary, color="grey", ls="--", lw=1)
    ax.text(boundary, ax.get_ylim()[1], " test →", va="top", fontsize=8, color="grey")
    for i, (name, frame) in enumerate(predictions.items()):
        ax.plot(frame["time"], frame["predicted"], marker="o", ms=3, lw=1, color=f"C{i}", label=name)
    ax.set(xlabel="time", ylabel="value", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
