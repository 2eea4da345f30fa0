"""The README and docs/ stay true to the pipeline, to CI and to each other."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def doc(name: str) -> str:
    return (DOCS / name).read_text()


def section(text: str, heading: str) -> str:
    """The body of one `## heading` section, up to the next heading of the same level."""
    assert f"\n## {heading}\n" in text, f"no section '## {heading}'"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def prose(text: str) -> str:
    """The Markdown without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", prose(text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def test_docs_stage_table_matches_dvc_yaml():
    table = section(doc("pipeline.md"), "Stages")
    documented = set(re.findall(r"^\| `(\w+)(?:@[^`]*)?` \|", table, flags=re.M))
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert documented == stages


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert ci in README


def test_docs_list_every_registered_model():
    from stages.lib.nn.models import REGISTRY

    table = section(doc("pipeline.md"), "Models")
    documented = set(re.findall(r"^\| `(\w+)` \| (?!what)", table, flags=re.M))
    assert set(REGISTRY) <= documented


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_markdown_link_points_to_a_file_that_exists(page):
    """Links to .md files (and their #anchors, and anchors within the page) resolve."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if path and not path.endswith(".md"):
            continue
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if ROOT in linked.parents else linked}")
        elif anchor and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading for #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_module_exists(page):
    """`python -m stages...` in the docs names a module that is there (the tools live in stages/tools/)."""
    modules = set(re.findall(r"python -m (stages(?:\.\w+)+)\b(?!\.)", page.read_text()))
    missing = sorted(m for m in modules if not (ROOT / (m.replace(".", "/") + ".py")).is_file())
    assert missing == []


def test_every_committed_report_is_a_declared_output():
    """A stale file under reports/ would show in `dvc plots show` and PR diffs."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        declared = [Path(out.fs_path).relative_to(ROOT) for out in repo.index.outs]
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    # The horizon report and the searches' log are collected across experiments by
    # `python -m stages.tools.horizon`, not by a stage (docs/pipeline.md, Outputs).
    collected = {"reports/horizon.md", "reports/horizon.png", "reports/horizon_search.json", "reports/horizon_points.csv",
                 # The folder of the panels' per-series scores, a dependency of the report stage (its pooled
                 # tests): kept in git so that it exists when no panel runs (run_panels: []).
                 "reports/panels/.gitkeep"}
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
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
    assert install in runs and install in README
    assert "\ndvc repro\n" in f"\n{runs}\n"
    assert 'python -m stages.tools.compare --base "origin/$BASE_REF" --out compare' in runs
    assert "compare/compare.md" in runs
