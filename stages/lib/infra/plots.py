"""Matplotlib figures saved as PNG beside the DVC plot data (Agg backend, no screen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stages.lib.infra.io import save_with  # noqa: E402

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


def _time_ticks(ax, times: pd.Series, start: int, count: int = 6) -> None:
    """Label positions start..end with the series' own time labels (integers or dates)."""
    positions = np.unique(np.linspace(start, len(times) - 1, count).round().astype(int))
    ax.set_xticks(positions, [str(times.iloc[p]) for p in positions], fontsize=7)
    ax.set_xlim(start - 0.5, len(times) - 0.5)  # set_xticks widens the view to its ticks


def backtest(series: pd.DataFrame, forecasts: dict[str, pd.DataFrame], fitted: dict[str, pd.DataFrame],
             levels: list[int], path: Path, title: str, best: str | None = None) -> None:
    """One panel per forecaster: the series, the in-sample fit of its last history, and its
    one-step backtest forecasts with their intervals; the evaluation windows shaded."""
    n = len(forecasts)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), sharex=True, squeeze=False)
    y = series["value"].to_numpy()
    # Zoom on the backtest with as much history again before it: the whole series would hide the forecasts.
    first = min(int(frame["origin"].min()) for frame in forecasts.values())
    start = max(0, first - (len(y) - first))
    for ax, (name, frame) in zip(axes.flat, forecasts.items()):
        one = frame[frame["h"] == 1]
        evaluation = one[one["window"] == "evaluation"]
        ax.axvspan(evaluation["index"].min() - 0.5, evaluation["index"].max() + 0.5, color="0.92", lw=0)
        ax.plot(np.arange(len(y)), y, color="k", lw=1.2, label="actual")
        fit = fitted[name]["fitted"].to_numpy()
        ax.plot(np.arange(len(fit)), fit, color="C0", lw=0.8, alpha=0.6, label="in-sample fit (last history)")
        for level, alpha in zip(sorted(levels, reverse=True), (0.18, 0.32, 0.45)):
            ax.fill_between(one["index"], one[f"lo{level}"], one[f"hi{level}"], color="C3", alpha=alpha, lw=0,
                            label=f"{level}% interval")
        ax.plot(one["index"], one["forecast"], color="C3", marker="o", ms=2.5, lw=1, label="one-step forecast")
        interval = str(frame["interval"].iloc[0])
        ax.set_title(f"{name}{'  (best)' if name == best else ''}  [{interval} intervals]", fontsize=9,
                     fontweight="bold" if name == best else "normal")
        ax.grid(alpha=0.3)
        window = y[start:]
        pad = 0.15 * (window.max() - window.min() or 1.0)
        ax.set_ylim(window.min() - pad, window.max() + pad)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        _time_ticks(ax, series["time"], start)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _save(fig, path)


def panel_scores(smape: dict[str, dict[str, float]], reference: dict[str, tuple[str, float]], path: Path,
                 title: str) -> None:
    """One plot per panel (or pooled group): each forecaster's mean sMAPE, best at the top; a dashed line
    where a published reference stands (``reference``: panel -> (label, sMAPE))."""
    if not smape:  # DVC expects the file: it says why it is empty
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no panels in params.yaml", ha="center", va="center")
        _save(fig, path)
        return
    n = len(smape)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 0.35 * max(len(s) for s in smape.values()) + 1.6), squeeze=False)
    for ax, (panel, scores) in zip(axes.flat, smape.items()):
        names = sorted(scores, key=scores.get, reverse=True)  # barh draws the first at the bottom
        values = [scores[name] for name in names]
        ax.barh(names, values, color=["C2" if v == min(values) else "C0" for v in values])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
        if panel in reference:
            label, value = reference[panel]
            ax.axvline(value, color="k", ls="--", lw=1, label=label)
            ax.legend(fontsize=7, loc="upper right")  # beside the best, shortest bars
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("mean sMAPE (%)", fontsize=8)
        ax.set_xlim(0, max(values + [reference.get(panel, ("", 0))[1]]) * 1.25)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
