"""End to end: the real `dvc repro` and `dvc exp run` on a copy of the project with tiny params."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MEMORY_KEYS = {"val_mse", "change_first_pct", "change_last_pct", "blind_first_mse", "blind_last_mse", "remembers_first"}
FORECAST_KEYS = {"mse", "rmse", "mae", "mape", "mase"}
FORECAST_STAGES = ("ingest@", "preprocess@", "train_forecast@", "arima@", "evaluate_forecast@")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def tiny(params: dict) -> dict:
    """Shrink every budget so that the whole pipeline runs in about a minute."""
    params["seq"] = 6
    params["generate"].update(n_train=64, n_val=32, n_test=64)
    params["train_memory"]["fit"].update(max_epochs=2, batch_size=32)
    params["train_forecast"]["fit"].update(max_epochs=2)
    params["train_forecast"]["arch"]["lstm"].update(units=[8, 8], dense=[4])
    params["train_forecast"]["arch"]["tcn"].update(filters=4)
    return params


def copy_project(dest: Path) -> None:
    """What a fresh clone holds: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = tmp_path_factory.mktemp("project")
    copy_project(repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny(yaml.safe_load((repo / "params.yaml").read_text())),
                                                     sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")

    def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    sh("git", "init", "-q", "-b", "main")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "tiny")
    first = sh("dvc", "repro")
    return repo, sh, first


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def test_repro_runs_every_stage_and_writes_metrics(project):
    repo, _, first = project
    stages = ran_stages(first.stdout)
    for name in ("generate", "train_memory@lstm", "train_memory@fullconv", "train_memory@tcn", "evaluate_memory",
                 "ingest@sales", "preprocess@sales", "train_forecast@sales-lstm", "train_forecast@sales-tcn",
                 "arima@sales", "evaluate_forecast@sales", "report"):
        assert name in stages
    memory = json.loads((repo / "reports/metrics/memory.json").read_text())
    assert memory["seq"] == 6 and memory["probed_positions"] == {"first": 0, "last": 5}
    for model in ("lstm", "fullconv", "tcn"):
        assert MEMORY_KEYS <= set(memory[model])
    forecast = json.loads((repo / "reports/metrics/forecast-sales.json").read_text())
    for model in ("lstm", "tcn", "arima", "naive", "drift"):
        assert FORECAST_KEYS <= set(forecast[model])
    assert forecast["naive"]["mse"] == pytest.approx(1125.1, abs=0.1)  # the brief's figure
    for png in ("memory_loss", "memory_probes", "forecast-sales", "forecast_loss-sales"):
        assert (repo / f"reports/figures/{png}.png").stat().st_size > 1000
    assert "## Memory experiment" in (repo / "reports/summary.md").read_text()


def test_mlflow_store_holds_one_run_per_stage_with_tags(project):
    repo, _, _ = project
    with sqlite3.connect(repo / "mlflow.db") as db:
        runs = db.execute("select r.name, e.name, r.status from runs r join experiments e "
                          "on r.experiment_id = e.experiment_id").fetchall()
        tags = db.execute("select t.key from tags t").fetchall()
    names = {(name, experiment, status) for name, experiment, status in runs}
    assert ("train_memory@lstm", "memory", "FINISHED") in names
    assert ("evaluate_memory", "memory", "FINISHED") in names
    assert ("arima@sales", "forecast", "FINISHED") in names
    assert ("train_forecast@sales-tcn", "forecast", "FINISHED") in names
    keys = {key for (key,) in tags}
    assert {"dvc.stage", "dvc.exp", "git.commit", "params.hash"} <= keys
    assert (repo / "mlartifacts").is_dir()


def test_second_repro_runs_nothing(project):
    _, sh, _ = project
    again = sh("dvc", "repro")
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout


def test_forced_repro_is_byte_identical(project):
    repo, sh, _ = project
    files = sorted((repo / "reports").rglob("*.json")) + sorted((repo / "reports/plots").rglob("*.csv"))
    before = {p: p.read_bytes() for p in files}
    sh("dvc", "repro", "-f")
    changed = [str(p.relative_to(repo)) for p, content in before.items() if p.read_bytes() != content]
    assert changed == []


def test_exp_run_seq_reruns_only_the_memory_branch(project):
    _, sh, _ = project
    done = sh("dvc", "exp", "run", "-S", "seq=5")
    stages = ran_stages(done.stdout)
    assert "generate" in stages and "train_memory@lstm" in stages and "evaluate_memory" in stages
    assert not [s for s in stages if s.startswith(FORECAST_STAGES)]
    shown = json.loads(sh("dvc", "exp", "show", "--json").stdout)
    seqs = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                metrics = rev["data"]["metrics"]["reports/metrics/memory.json"]["data"]
                seqs.append(metrics["seq"])
    assert 5 in seqs


def test_bad_param_fails_the_stage_with_one_line(project):
    repo, sh, _ = project
    original = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(re.sub(r"(?m)^seq: .*$", "seq: abc", original))
        done = sh("python", "-m", "stages.generate", "--out", "data/memory/bad", check=False)
        assert done.returncode == 2
        assert done.stderr.strip() == ("error: params.yaml: seq: Input should be a valid integer, "
                                       "unable to parse string as an integer (got 'abc')")
        assert not (repo / "data/memory/bad").exists()
    finally:
        (repo / "params.yaml").write_text(original)
