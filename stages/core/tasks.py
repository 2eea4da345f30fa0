"""Synthetic sequence-to-one tasks for the memory experiment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskData:
    """Inputs of shape (n, steps, channels) and one float target per row."""

    X: np.ndarray
    y: np.ndarray


def first_last(n: int, seq: int, rng: np.random.Generator) -> TaskData:
    """The article's task: x ~ N(0, 1) i.i.d., y = x[0] + x[seq - 1]."""
    X = rng.standard_normal((n, seq, 1), dtype=np.float32)
    return TaskData(X=X, y=X[:, 0, 0] + X[:, -1, 0])


TASKS = {"first_last": first_last}


def make_splits(task: str, seq: int, seed: int, sizes: dict[str, int]) -> dict[str, TaskData]:
    """Independent, seeded splits: each split draws from its own child seed, so
    resizing one split leaves the others unchanged."""
    children = np.random.SeedSequence(seed).spawn(len(sizes))
    return {
        name: TASKS[task](n, seq, np.random.default_rng(child))
        for (name, n), child in zip(sizes.items(), children, strict=True)
    }
