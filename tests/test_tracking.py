"""The MLflow run of a stage: store location, tags, params, FAILED on error."""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest

from stages.lib.infra import tracking

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "train_memory")
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
    with tracking.stage_run("memory", "train_memory@lstm", {"fit": {"lr": 0.1}, "seq": 5}, inputs=[data]) as run:
        run.log_history(pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}))
        run.log_metrics({"lstm": {"val_mse": 0.5, "remembers_first": True}})
        run.log_artifact(data)
    client, found = runs(store)
    (r,) = found
    assert r.info.status == "FINISHED"
    # Named for the member it ran, tagged with the DVC stage that ran it.
    assert (r.info.run_name, r.data.tags["dvc.stage"]) == ("train_memory@lstm", "train_memory")
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


@pytest.mark.parametrize("body, status", [(None, "FINISHED"), (KeyboardInterrupt, "KILLED")])
def test_a_locked_store_as_the_run_ends_still_records_its_status(store, monkeypatch, body, status):
    # mlflow.end_run forgets the active run before it writes: retried after "database is locked", it ended
    # nothing, and an interrupted stage's run stayed RUNNING.
    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0, 0.0))
    original, calls = mlflow.MlflowClient.set_terminated, []

    def locked_once(self, run_id, *args, **kwargs):
        calls.append(run_id)
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return original(self, run_id, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", locked_once)
    with pytest.raises(KeyboardInterrupt) if body else contextlib.nullcontext():
        with tracking.stage_run("memory", "s", {}, inputs=[]):
            if body:
                raise body
    _, (r,) = runs(store)
    assert r.info.status == status and len(calls) >= 2
    assert mlflow.active_run() is None


def test_a_store_that_fails_as_an_interrupted_run_ends_does_not_replace_the_interrupt(store, monkeypatch, capsys):
    """The wall time's write fails: the status is still recorded. The status write fails too: Ctrl-C still
    leaves as Ctrl-C (exit 130, not a traceback), the failure is told in one line, and no run is left active
    for MLflow's exit hook to end as FINISHED."""
    def broken(*args, **kwargs):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(mlflow, "log_metric", broken)
    with pytest.raises(KeyboardInterrupt), tracking.stage_run("memory", "s", {}, inputs=[]):
        raise KeyboardInterrupt
    _, (r,) = runs(store)
    assert r.info.status == "KILLED"
    err = capsys.readouterr().err
    assert f"s: MLflow run {r.info.run_id}: could not record its wall time (disk I/O error)\n" in err
    assert "its status" not in err

    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", broken)
    with pytest.raises(KeyboardInterrupt), tracking.stage_run("memory", "t", {}, inputs=[]):
        raise KeyboardInterrupt
    assert "could not record its status KILLED (disk I/O error)" in capsys.readouterr().err
    assert mlflow.active_run() is None
    # A stage that succeeded but whose run cannot be ended fails: its run would say otherwise.
    with pytest.raises(RuntimeError, match="disk I/O error"), tracking.stage_run("memory", "u", {}, inputs=[]):
        pass
    assert mlflow.active_run() is None


def test_params_hash_changes_with_params_and_input_content(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("1")
    base = tracking.params_hash({"a": 1}, [f])
    assert base == tracking.params_hash({"a": 1}, [f])
    assert base != tracking.params_hash({"a": 2}, [f])
    f.write_text("2")
    assert base != tracking.params_hash({"a": 1}, [f])


def test_unreachable_server_fails_fast_naming_the_uri(store, monkeypatch):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.perf_counter()
    with pytest.raises(tracking.TrackingError) as info, tracking.stage_run("memory", "s", {}, inputs=[]):
        raise AssertionError("the body must not run")
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert message.startswith(f"MLflow tracking URI {uri}: cannot reach the server")
    assert "PIPELINE_TRACKING=off" in message and "\n" not in message


def test_unusable_store_fails_naming_the_uri(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://x")
    with pytest.raises(tracking.TrackingError, match=r"^MLflow tracking URI nosuchscheme://x: cannot open the store"):
        with tracking.stage_run("memory", "s", {}, inputs=[]):
            pass


def test_tracking_off_runs_the_stage_and_logs_nothing(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # would fail if it were used
    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    ran = []
    with tracking.stage_run("memory", "s", {"a": 1}, inputs=[]) as run:
        run.log_metrics({"x": 1.0})
        run.log_history(pd.DataFrame({"epoch": [1], "loss": [1.0]}))
        ran.append(True)
    assert ran == [True]
    assert not (store / "mlflow.db").exists()


def test_bad_off_switch_value_is_named(monkeypatch):
    monkeypatch.setenv("PIPELINE_TRACKING", "maybe")
    with pytest.raises(tracking.TrackingError, match=r"PIPELINE_TRACKING='maybe': expected 'on' or 'off'"):
        tracking.tracking_enabled()


def test_locked_database_is_retried_then_succeeds(monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.with_retry(flaky) == "ok" and len(calls) == 3


def test_locked_database_gives_up_after_the_last_retry(monkeypatch):
    monkeypatch.setattr(tracking, "RETRY_DELAYS_S", (0.0, 0.0))
    calls = []

    def locked():
        calls.append(1)
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="database is locked"):
        tracking.with_retry(locked)
    assert len(calls) == 3


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("no such table")

    with pytest.raises(ValueError):
        tracking.with_retry(broken)
    assert calls == [1]


def _log_two_runs(root: str) -> None:
    import os

    os.environ["DVC_ROOT"] = root
    for i in range(2):
        with tracking.stage_run("memory", f"worker@{i}", {"i": i}, inputs=[]) as run:
            run.log_metrics({"x": float(i)})


def test_workers_starting_together_on_a_fresh_store_all_land(store):
    # Plain MLflow loses every run here: each process finds no tables and runs
    # the schema migrations at once (benchmarks/sqlite_concurrency.py).
    import multiprocessing as mp

    context = mp.get_context("spawn")
    procs = [context.Process(target=_log_two_runs, args=(str(store),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    _, found = runs(store)
    assert sorted(r.info.status for r in found) == ["FINISHED"] * 6


def test_migration_refuses_an_unreachable_destination_in_one_line(tmp_path, capsys):
    import socket

    from stages.tools import migrate_tracking
    from stages.lib.infra import cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    source = tmp_path / "mlflow.db"
    source.touch()
    with pytest.raises(SystemExit) as stopped:
        cli.run(migrate_tracking.main, ["--from", f"sqlite:///{source}", "--to", f"http://127.0.0.1:{port}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: MLflow tracking URI http://127.0.0.1:{port}: cannot reach the server") and err.count("\n") == 1


def test_migration_refuses_a_missing_source_and_the_same_store(tmp_path, capsys):
    from stages.tools import migrate_tracking
    from stages.lib.infra import cli

    missing = f"sqlite:///{tmp_path / 'none.db'}"
    for argv, message in ((["--from", missing, "--to", "http://127.0.0.1:1"], f"error: {missing}: no such SQLite store\n"),
                          (["--from", missing, "--to", missing], f"error: --from and --to are the same store ({missing})\n")):
        with pytest.raises(SystemExit) as stopped:
            cli.run(migrate_tracking.main, argv)
        assert stopped.value.code == 2 and capsys.readouterr().err == message


def test_migration_redoes_a_copy_an_interruption_cut_short(tmp_path, monkeypatch):
    from stages.tools import migrate_tracking

    source, dest = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", source)
    artifact = tmp_path / "facts.json"
    artifact.write_text("{}")
    with tracking.stage_run("forecast", "backtest@x-naive", {"horizon": 3}, inputs=[]) as run:
        run.log_history(pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.25]}))
        run.log_artifact(artifact)
    client = mlflow.MlflowClient(source)
    [original] = client.search_runs([client.get_experiment_by_name("forecast").experiment_id])
    # An interruption after the copy's run was created, before it was complete.
    target = mlflow.MlflowClient(dest)
    partial = target.create_run(target.create_experiment("forecast"),
                                tags={migrate_tracking.COPYING_TAG: original.info.run_id}).info.run_id
    counts = migrate_tracking.migrate(source, dest, progress=lambda _: None)
    assert counts == {"copied": 1, "skipped": 0}
    assert target.get_run(partial).info.lifecycle_stage == "deleted"
    [copy] = target.search_runs([target.get_experiment_by_name("forecast").experiment_id])
    assert copy.data.tags[migrate_tracking.MIGRATED_TAG] == original.info.run_id
    assert migrate_tracking.COPYING_TAG not in copy.data.tags
    assert [m.value for m in target.get_metric_history(copy.info.run_id, "loss")] == [0.5, 0.25]
    assert [a.path for a in target.list_artifacts(copy.info.run_id)] == ["facts.json"]
    assert migrate_tracking.migrate(source, dest, progress=lambda _: None) == {"copied": 0, "skipped": 1}
