"""Team scale: a real `mlflow server` on a real PostgreSQL, the DVC remote, and a sweep split across workers.

The scenario: one teammate runs the (tiny) pipeline against the shared
server, commits and pushes (git to a bare "origin", data to the default
local-directory DVC remote); a fresh clone pulls and has nothing to re-run;
two workers each run one slice of a `seq` sweep and push their experiments;
a third clone pulls them all and sees both in `dvc exp show` and on the server.

Skipped where PostgreSQL or git is absent. The servers are stopped and their
folders removed when the module ends, also after a failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.project import Project, clean_env, ran_stages
from tests.servers import mlflow_server, postgres, postgres_bin

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.e2e,
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL (initdb, pg_ctl)"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

FORECAST_TARGET = "evaluate_forecast@sales"


def sh(cwd: Path, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env={**clean_env(), **(env or {})}, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with postgres() as database, mlflow_server(database, tmp_path_factory.mktemp("artifacts")) as url:
        yield url


def sales_and_lstm_only(params: dict) -> dict:
    """What the team's tests look at, no more: one dataset, its forecasters, one memory model, no panel.

    The whole tiny pipeline is test_pipeline's; here it cost three minutes of every CI run.
    """
    params["datasets"] = {"sales": params["datasets"]["sales"]}
    params["forecasters"] = {name: spec for name, spec in params["forecasters"].items()
                             if spec.get("datasets") in (None, ["sales"])}
    params["train_memory"]["models"] = ["lstm"]
    params["panels"], params["run_panels"] = {}, []
    params["panel_models"] = {}  # their `datasets` name panels
    return params


@pytest.fixture(scope="module")
def team(tmp_path_factory, server):
    """A project run against the server, committed and pushed to a bare origin and the DVC remote."""
    root = tmp_path_factory.mktemp("team")
    proj = Project(root / "alice", trim=sales_and_lstm_only)
    env = {"MLFLOW_TRACKING_URI": server}
    first = proj.sh("dvc", "repro", env=env)  # the whole pipeline, tiny
    proj.sh("git", "add", "-A")
    proj.sh("git", "commit", "-qm", "pipeline run")
    sh(root, "git", "init", "-q", "--bare", "-b", "main", "origin.git")
    proj.sh("git", "remote", "add", "origin", str(root / "origin.git"))
    proj.sh("git", "push", "-q", "origin", "main")
    pushed = proj.sh("dvc", "push")
    return {"root": root, "proj": proj, "env": env, "first": first, "pushed": pushed}


def runs_of(url: str, experiment: str, where: str = ""):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    return client, client.search_runs([found.experiment_id], filter_string=where, max_results=1000)


def test_the_pipeline_logs_runs_tags_metrics_and_artifacts_to_the_server(team, server):
    proj = team["proj"]
    assert not (proj.path / "mlflow.db").exists(), "MLFLOW_TRACKING_URI alone moves tracking off the local store"
    # A project without panels still gets every output the report stage declares, saying so.
    assert (proj.path / "reports/panels.md").read_text().rstrip().endswith("No panel ran: the M3 benchmark is opt-in (`run_panels` in params.yaml). Its command, and its results on all 3003 series beside the published ones: docs/panels.md.")
    client, runs = runs_of(server, "forecast", "tags.dataset = 'sales'")
    # A run per forecaster, named for it; the tag names the DVC stage that ran it.
    by_stage = {run.info.run_name: run for run in runs}
    expected = {"baselines@sales", *(f"backtest@sales-{f}" for f in ("arima", "lstm", "tcn"))}
    assert expected | {FORECAST_TARGET} <= set(by_stage)
    assert by_stage["backtest@sales-lstm"].data.tags["dvc.stage"] == "backtest@sales"
    for run in by_stage.values():
        assert run.info.status == "FINISHED"
        assert run.data.tags["git.commit"] and run.data.tags["dvc.exp"] == "workspace"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts go through the server"
    lstm = by_stage["backtest@sales-lstm"]
    assert lstm.data.params["forecaster"] == "lstm" and lstm.data.tags["kind"] == "keras"
    history = client.get_metric_history(lstm.info.run_id, "fit0.seed369.loss")  # the first fit's network of seed 369
    assert [m.step for m in history] == [1, 2]  # the tiny params train two epochs
    evaluation = json.loads((proj.path / "reports/metrics/forecast-sales.json").read_text())
    logged = by_stage[FORECAST_TARGET].data.metrics
    assert logged["naive.all.mae"] == pytest.approx(evaluation["naive"]["all"]["mae"])
    names = {a.path for a in client.list_artifacts(lstm.info.run_id)}
    assert {"forecasts.csv", "fitted.csv", "facts.json"} <= names
    local = client.download_artifacts(lstm.info.run_id, "forecasts.csv", str(team["root"]))
    assert Path(local).read_bytes() == (proj.path / "data/forecast/sales/backtest/lstm/forecasts.csv").read_bytes()


def test_a_fresh_clone_pulls_everything_and_reruns_nothing(team):
    root = team["root"]
    assert "files pushed" in team["pushed"].stdout or "pushed" in team["pushed"].stdout.lower()
    sh(root, "git", "clone", "-q", str(root / "origin.git"), "bob")
    bob = root / "bob"
    sh(bob, "dvc", "pull")  # everything dvc.lock names
    again = sh(bob, "dvc", "repro", env=team["env"])
    assert ran_stages(again.stdout) == [], again.stdout
    assert "up to date" in sh(bob, "dvc", "status").stdout
    original = team["proj"].path / "data/forecast/sales/backtest/arima/forecasts.csv"
    assert (bob / "data/forecast/sales/backtest/arima/forecasts.csv").read_bytes() == original.read_bytes()


def test_a_sweep_split_across_two_workers_comes_together(team, server):
    root, env = team["root"], team["env"]
    names = {}
    for worker, seq in (("worker1", 5), ("worker2", 7)):
        sh(root, "git", "clone", "-q", str(root / "origin.git"), worker)
        sh(root / worker, "dvc", "pull")
        name = f"{worker}-seq{seq}"
        # Each worker runs its slice of the sweep and shares it: refs to git, data to the DVC remote.
        sh(root / worker, "dvc", "exp", "run", "-n", name, "-S", f"seq={seq}", env=env)  # only the memory stages and the report re-run
        sh(root / worker, "dvc", "exp", "push", "origin")  # every experiment of this commit (docs/team.md)
        names[name] = seq
    sh(root, "git", "clone", "-q", str(root / "origin.git"), "lead")
    lead = root / "lead"
    sh(lead, "dvc", "pull")
    listed = sh(lead, "dvc", "exp", "list", "origin", "--name-only").stdout.split()
    assert set(names) <= set(listed)
    sh(lead, "dvc", "exp", "pull", "origin")
    shown = json.loads(sh(lead, "dvc", "exp", "show", "--json").stdout)
    seen = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                if revision.get("name") in names:
                    seen[revision["name"]] = data["params"]["params.yaml"]["data"]["seq"]
                    metrics = data["metrics"]["reports/metrics/memory.json"]["data"]
                    assert metrics["seq"] == names[revision["name"]]
    assert seen == names
    sh(lead, "dvc", "exp", "apply", "worker2-seq7")  # its outputs come from the cache exp pull filled
    assert "up to date" in sh(lead, "dvc", "status").stdout
    assert json.loads((lead / "reports/metrics/memory.json").read_text())["seq"] == 7
    _, runs = runs_of(server, "memory", "tags.`dvc.stage` = 'evaluate_memory'")
    assert set(names) <= {run.data.tags["dvc.exp"] for run in runs}


def test_the_local_store_migrates_to_the_server(tmp_path, server):
    from mlflow import MlflowClient

    proj = Project(tmp_path / "carol")
    # The embedded SQLite store: a run for the baselines and one per forecaster (arima, lstm, tcn).
    proj.sh("dvc", "repro", "baselines@sales", "backtest@sales")
    local_uri = f"sqlite:///{proj.path / 'mlflow.db'}"
    moved = proj.sh("python", "-m", "stages.tools.migrate_tracking", "--to", server)
    assert "4 runs copied, 0 already there" in moved.stdout, moved.stdout
    again = proj.sh("python", "-m", "stages.tools.migrate_tracking", "--to", server)
    assert "0 runs copied, 4 already there" in again.stdout, again.stdout

    local, remote = MlflowClient(tracking_uri=local_uri), MlflowClient(tracking_uri=server)
    source_runs = local.search_runs([local.get_experiment_by_name("forecast").experiment_id])
    target = remote.get_experiment_by_name("forecast").experiment_id
    for run in source_runs:
        [copy] = remote.search_runs([target], filter_string=f"tags.`migrated.from_run_id` = '{run.info.run_id}'")
        assert copy.info.run_name == run.info.run_name and copy.info.status == run.info.status
        assert (copy.info.start_time, copy.info.end_time) == (run.info.start_time, run.info.end_time)
        assert copy.data.params == run.data.params and copy.data.metrics == run.data.metrics
        assert run.data.tags.items() <= copy.data.tags.items()
        for key in run.data.metrics:
            old = [(m.step, m.value, m.timestamp) for m in local.get_metric_history(run.info.run_id, key)]
            assert [(m.step, m.value, m.timestamp) for m in remote.get_metric_history(copy.info.run_id, key)] == old
        assert ({a.path for a in remote.list_artifacts(copy.info.run_id)}
                == {a.path for a in local.list_artifacts(run.info.run_id)} != set())


def test_the_servers_are_stopped_and_their_ports_freed_when_a_test_fails(tmp_path):
    import socket
    import urllib.request

    with pytest.raises(RuntimeError, match="a failing test"):
        with postgres() as database, mlflow_server(database, tmp_path / "artifacts") as url:
            ports = [int(database.split(":")[2].split("/")[0]), int(url.rsplit(":", 1)[1])]
            urllib.request.urlopen(f"{url}/health", timeout=5).close()
            raise RuntimeError("a failing test")
    for port in ports:
        with socket.socket() as s:
            # SO_REUSEADDR passes over closed connections in TIME_WAIT, never over a listening socket.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))  # nothing listens there any more
    leftover = subprocess.run(["pgrep", "-f", f"-p {ports[0]}"], capture_output=True, text=True).stdout
    assert leftover == "", "no postgres process is left behind"
