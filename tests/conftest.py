"""Shared fixtures. TensorFlow's C++ logs are silenced before any test imports it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# CI explores the same examples every run, so a red build always reproduces;
# locally each run draws new ones (FUZZ_EXAMPLES=4000 for a longer search).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture
def raw_params() -> dict:
    """The repository's params.yaml as a plain mapping, to edit in a test."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())
