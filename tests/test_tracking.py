"""The MLflow run of a stage: store location, tags, params, FAILED on error."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.core import tracking

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train_memory@lstm")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc")
    return tmp_path


def runs(store):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("memory")
    return client, client.search_runs([experiment.experiment_id])


def test_store_follows_dvc_root(store):
    assert tracking.tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"


def test_run_has_tags_params_history_and_artifacts(store, tmp_path):
    data = tmp_path / "input.txt"
    data.write_text("x")
    with tracking.stage_run("memory", "fallback-name", {"fit": {"lr": 0.1}, "seq": 5}, inputs=[data]) as run:
        run.log_history(pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}))
        run.log_metrics({"lstm": {"val_mse": 0.5, "remembers_first": True}})
        run.log_artifact(data)
    client, found = runs(store)
    (r,) = found
    assert r.info.status == "FINISHED"
    assert r.data.tags["dvc.stage"] == "train_memory@lstm"
    assert r.data.tags["dvc.exp"] == "exp-abc"
    assert len(r.data.tags["params.hash"]) == 16
    assert "git.commit" in r.data.tags
    assert r.data.params == {"fit.lr": "0.1", "seq": "5"}
    assert r.data.metrics["lstm.val_mse"] == 0.5 and r.data.metrics["lstm.remembers_first"] == 1.0
    assert [m.value for m in client.get_metric_history(r.info.run_id, "loss")] == [3.0, 2.0, 1.0]
    assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["input.txt"]
    assert r.info.artifact_uri.startswith((store / "mlartifacts").as_uri())


def test_failing_stage_leaves_run_failed(store):
    with pytest.raises(RuntimeError), tracking.stage_run("memory", "s", {}, inputs=[]):
        raise RuntimeError("boom")
    _, (r,) = runs(store)
    assert r.info.status == "FAILED"


def test_interrupted_stage_leaves_run_killed(store):
    with pytest.raises(KeyboardInterrupt), tracking.stage_run("memory", "s", {}, inputs=[]):
        raise KeyboardInterrupt
    _, (r,) = runs(store)
    assert r.info.status == "KILLED"


def test_params_hash_changes_with_params_and_input_content(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("1")
    base = tracking.params_hash({"a": 1}, [f])
    assert base == tracking.params_hash({"a": 1}, [f])
    assert base != tracking.params_hash({"a": 2}, [f])
    f.write_text("2")
    assert base != tracking.params_hash({"a": 1}, [f])
