"""Atomic writes: an output appears complete or not at all.

A stage that fails or is interrupted must not leave a half-written file that a
later step could mistake for a result, so everything is written to a temporary
name beside its destination and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path (same suffix) that replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces the folder ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tidy(value: Any, digits: int = 6) -> Any:
    """Round floats to ``digits`` significant digits for readable, stable diffs."""
    if isinstance(value, dict):
        return {k: tidy(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tidy(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return None  # JSON has no NaN; null reads as "undefined"
        return float(f"{value:.{digits}g}")
    return value


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(tidy(obj), indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: Path, frame: pd.DataFrame, digits: int | None = 6) -> None:
    """Reports round to ``digits`` significant digits; data passes ``None`` and keeps every digit."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=None if digits is None else f"%.{digits}g", lineterminator="\n")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """One .npy per array: np.save is byte-stable, unlike a zipped .npz."""
    with atomic_dir(folder) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)


def read_arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted(Path(folder).glob("*.npy"))}


def save_with(path: Path, save: Callable[[Path], None]) -> None:
    """Write with a library's own saver (a Keras model, a figure) atomically."""
    with atomic_path(path) as tmp:
        save(tmp)
