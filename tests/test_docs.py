"""The README stays true to the pipeline and to CI."""

from __future__ import annotations

import re
import shutil
import subprocess
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
    # The horizon report is collected across experiments by `python -m stages.horizon`, not by a stage.
    collected = {"reports/horizon.md", "reports/horizon.png"}
    undeclared = [f for f in tracked if f not in collected
                  and not any(Path(f) == d or d in Path(f).parents for d in declared)]
    assert undeclared == []


WORKFLOW = ROOT / ".github/workflows/review.yml"


def test_review_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint")
    assert actionlint, "actionlint is in requirements-dev.txt"
    done = subprocess.run([actionlint, "-color=false", str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_review_workflow_runs_the_tested_commands():
    """Its steps are the README install, `dvc repro` and the compare command the tests exercise."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compare"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    readme = (ROOT / "README.md").read_text()
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
    assert install in runs and install in readme
    assert "\ndvc repro\n" in f"\n{runs}\n"
    assert 'python -m stages.compare --base "origin/$BASE_REF" --out compare' in runs
    assert "compare/compare.md" in runs
