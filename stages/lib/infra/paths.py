"""Locations that are not passed on a stage's command line.

Input and output paths of stages are written once, in dvc.yaml, and reach the
code as arguments. What is left is the repository root (for params.yaml) and the
MLflow store, which lives in the user's repository even when DVC runs a queued
experiment in a temporary copy.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def params_file() -> Path:
    """params.yaml of the copy being run (a queued experiment edits its own copy)."""
    return ROOT / "params.yaml"


def store_root() -> Path:
    """Where the embedded MLflow store lives.

    DVC sets DVC_ROOT to the user's repository, also for experiments that run in
    temporary copies, so every run lands in one store.
    """
    return Path(os.environ.get("DVC_ROOT") or ROOT).resolve()


def seed_file(seed: int, suffix: str) -> str:
    """File of one training seed inside a model's folder (saved models, loss histories)."""
    return f"seed-{seed}{suffix}"
