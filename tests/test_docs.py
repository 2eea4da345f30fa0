"""The README stays true to the pipeline and to CI."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_stage_table_matches_dvc_yaml():
    section = README.split("## The pipeline")[1].split("**Models**")[0]
    documented = set(re.findall(r"^\| `(\w+)(?:@[^`]*)?` \|", section, flags=re.M))
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert documented == stages


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert ci in README


def test_readme_lists_every_registered_model():
    from stages.core.models import REGISTRY

    documented = set(re.findall(r"^\| `(\w+)` \| (?!what)", README, flags=re.M))
    assert set(REGISTRY) <= documented


def test_every_committed_report_is_a_declared_output():
    """A stale file under reports/ would show in `dvc plots show` and PR diffs."""
    import subprocess

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        declared = [Path(out.fs_path).relative_to(ROOT) for out in repo.index.outs]
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    undeclared = [f for f in tracked if not any(Path(f) == d or d in Path(f).parents for d in declared)]
    assert undeclared == []
