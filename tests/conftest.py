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


# The two end-to-end modules take most of a run (test_pipeline about 14 min, test_team 5 on the 2-core
# machine). pytest.ini runs the tests on two xdist workers, one file per worker at a time and in
# collection order (--dist loadfile --no-loadscope-reorder): these two go first, so that each has a
# worker and the short files fill in behind test_team.
FIRST = ("tests/test_pipeline.py", "tests/test_team.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return FIRST.index(path) if path in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order stays as collected


@pytest.fixture
def raw_params() -> dict:
    """The repository's params.yaml as a plain mapping, to edit in a test."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())
