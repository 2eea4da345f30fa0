"""Synthetic sequence-to-one tasks for the memory experiment.

Each task maps ``(n, seq, rng)`` to inputs of shape (n, seq, channels) and one
target per row. ``probed`` says whether the task has a "first" and a "last"
input whose influence the change and blinding probes can measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


# Scaling x[0] or x[-1] of the first+last task by 1.5 moves its target by +50% of
# half of it in the median: +25%, what a model that uses that input shows
# (evaluate_memory.ideal_change_pct; the review and the reports read it here).
IDEAL_CHANGE_PCT = 25.0


@dataclass(frozen=True)
class TaskData:
    """Inputs of shape (n, steps, channels) and one float target per row."""

    X: np.ndarray
    y: np.ndarray


def first_last(n: int, seq: int, rng: np.random.Generator) -> TaskData:
    """The article's task: x ~ N(0, 1) i.i.d., y = x[0] + x[seq - 1]."""
    X = rng.standard_normal((n, seq, 1), dtype=np.float32)
    return TaskData(X=X, y=X[:, 0, 0] + X[:, -1, 0])


def adding(n: int, seq: int, rng: np.random.Generator) -> TaskData:
    """The adding problem (Bai, Kolter and Koltun 2018, section 5.2).

    Channel 0: values ~ U[0, 1]. Channel 1: a marker, 0 everywhere except exactly
    two 1s at distinct random positions. Target: the sum of the two marked
    values. Predicting the mean (1.0) scores MSE 2/12 = 0.167.
    """
    values = rng.random((n, seq), dtype=np.float32)
    # The two smallest of n x seq uniform keys give two distinct uniform positions per row.
    marked = np.argsort(rng.random((n, seq)), axis=1)[:, :2]
    marker = np.zeros((n, seq), dtype=np.float32)
    np.put_along_axis(marker, marked, 1.0, axis=1)
    X = np.stack([values, marker], axis=-1)
    return TaskData(X=X, y=(values * marker).sum(axis=1))


def sincos(n: int, seq: int, rng: np.random.Generator) -> TaskData:
    """A smooth sanity task: from sin(w t + phase), t = 0..seq-1, predict cos(w (seq-1) + phase).

    Frequency w ~ U[0.05, 0.5] radians per step and phase ~ U[0, 2 pi) per row.
    """
    w = rng.uniform(0.05, 0.5, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    angle = w * np.arange(seq)[None, :] + phase
    return TaskData(X=np.sin(angle).astype(np.float32)[..., None], y=np.cos(angle[:, -1]).astype(np.float32))


def last_steps(X: np.ndarray, keep: int | None) -> np.ndarray:
    """The last ``keep`` steps of each sequence (all of them for None)."""
    return X if keep is None or keep >= X.shape[1] else X[:, -keep:]


@dataclass(frozen=True)
class Task:
    generate: Callable[[int, int, np.random.Generator], TaskData]
    probed: bool  # has a first and a last input for the change and blinding probes
    description: str


TASKS: dict[str, Task] = {
    "first_last": Task(first_last, probed=True, description="first+last task, y = x[0] + x[seq-1]"),
    "adding": Task(adding, probed=False, description="adding problem, y = sum of the two marked values"),
    "sincos": Task(sincos, probed=False, description="sin-to-cos task, y = cos at the last step"),
}


def make_splits(task: str, seq: int, seed: int, sizes: dict[str, int]) -> dict[str, TaskData]:
    """Independent, seeded splits: each split draws from its own child seed, so
    resizing one split leaves the others unchanged."""
    children = np.random.SeedSequence(seed).spawn(len(sizes))
    return {
        name: TASKS[task].generate(n, seq, np.random.default_rng(child))
        for (name, n), child in zip(sizes.items(), children, strict=True)
    }
