"""MLflow: the only module that knows MLflow exists.

``stage_run`` opens one run for a stage: it locates the store, names the
experiment, sets the tags that tie the run to DVC (``dvc.stage``, ``dvc.exp``,
``git.commit``, ``params.hash``), logs the resolved params, and leaves the run
FAILED when the stage raises (KILLED when it is interrupted).

The store: ``MLFLOW_TRACKING_URI`` when set; otherwise ``mlflow.db`` (SQLite) and
``mlartifacts/`` in the user's repository, found from ``DVC_ROOT`` so that
queued experiments running in temporary copies land in the same store.

Before any work the store is checked: one that cannot be reached stops the stage
with a line naming the URI, unless ``PIPELINE_TRACKING=off`` opts out of
tracking. The embedded SQLite store is shared by parallel queue workers, so it
is created once under a file lock, in WAL mode, and writes that still meet
"database is locked" are retried with backoff (measured in
benchmarks/sqlite_concurrency.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.errors import TrackingError
from stages.lib.infra import paths


OFF_SWITCH = "PIPELINE_TRACKING"
# Set by a stage for each member process it starts (stages/lib/infra/parallel.py): the member's run carries it as
# a tag, so that the stage can end the run where the member died before it could (end_orphaned).
MEMBER_ENV, MEMBER_TAG = "PIPELINE_MEMBER_ID", "pipeline.member"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.store_root() / 'mlflow.db'}"


def tracking_enabled() -> bool:
    value = os.environ.get(OFF_SWITCH, "on").strip().lower()
    if value not in ("on", "off"):
        raise TrackingError(f"{OFF_SWITCH}={value!r}: expected 'on' or 'off'")
    return value == "on"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


# How long a write waits for another process's lock, in total, before it fails.
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)


def is_locked_error(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def with_retry(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; on SQLite's "database is locked", back off and try again."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if delay is None or not is_locked_error(exc):
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock between processes (released if one dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_sqlite(db: Path, uri: str) -> None:
    """Create the SQLite store once, in WAL mode, even when workers start together.

    Without the lock, two processes that find no tables both run MLflow's
    schema migrations and one fails with "table already exists". WAL lets
    readers work beside the single writer; it is a property of the file, so it
    is set once here.
    """
    import mlflow

    with file_lock(db.with_name(db.name + "-lock")):
        with sqlite3.connect(db, timeout=30) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        with_retry(mlflow.MlflowClient(tracking_uri=uri).search_experiments, max_results=1)


HINT = f"set {OFF_SWITCH}=off to run without tracking"


def check_server(uri: str) -> None:
    """A tracking server that does not answer fails the stage in seconds, with one line."""
    # MLflow's own client retries for minutes; one short request answers sooner.
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow tracking URI {uri}: cannot reach the server ({reason}); {HINT}") from None


def preflight() -> None:
    """What a stage that only starts others (stages/lib/infra/parallel.py) checks before it starts any:
    the off switch and a server, which need no MLflow import; each member then opens its own run."""
    if tracking_enabled() and is_server(tracking_uri()):
        check_server(tracking_uri())


def check_store(uri: str) -> None:
    """Fail fast, before any training, when the store cannot be used."""
    import mlflow

    if is_server(uri):
        check_server(uri)
        return
    try:
        db = sqlite_path(uri)
        if db is not None:
            prepare_sqlite(db, uri)
        else:
            with_retry(mlflow.MlflowClient(tracking_uri=uri).search_experiments, max_results=1)
    except Exception as exc:
        raise TrackingError(f"MLflow tracking URI {uri}: cannot open the store ({first_line(exc)}); {HINT}") from None


def artifact_root() -> str:
    return (paths.store_root() / "mlartifacts").as_uri()


def file_digest(path: Path) -> str:
    """MD5 of a file, or of a folder's sorted (name, content) pairs."""
    path = Path(path)
    digest = hashlib.md5()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def params_hash(params: Mapping[str, Any], inputs: list[Path]) -> str:
    """Stable hash of a stage's resolved params and the content of its inputs."""
    payload = {"params": params, "inputs": {str(p): file_digest(p) for p in sorted(inputs, key=str)}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "none"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _experiment_id(mlflow, name: str, uri: str) -> str:
    experiment = with_retry(mlflow.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    # A tracking server stores artifacts where its --artifacts-destination says
    # (proxied, so teammates need no storage credentials); a store opened
    # directly keeps them beside the repository, where queued runs find them too.
    location = None if is_server(uri) else f"{artifact_root()}/{name}"
    try:
        return with_retry(mlflow.create_experiment, name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another stage running in parallel created it first.
        return with_retry(mlflow.get_experiment_by_name, name).experiment_id


def end_orphaned(member_id: str, status: str) -> int:
    """End with ``status`` the runs still RUNNING that carry ``member_id``: those of a member process that died
    before its own cleanup could end them (killed after its SIGTERM grace, or aborted by native code). MLflow
    would show them running for ever. How many there were."""
    if not tracking_enabled():
        return 0
    uri = tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return 0  # no store, no run: do not create one
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in with_retry(client.search_experiments)]
    found = with_retry(client.search_runs, experiments,
                       filter_string=f"tags.`{MEMBER_TAG}` = '{member_id}' and attributes.status = 'RUNNING'")
    for run in found:
        with_retry(client.set_terminated, run.info.run_id, status)
    return len(found)


class StageRun:
    """What a stage may log into its run."""

    def __init__(self, mlflow, run_id: str) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        numeric = {k: float(v) for k, v in flatten(metrics, prefix).items()
                   if isinstance(v, (int, float))}
        with_retry(self._mlflow.log_metrics, numeric)

    def log_history(self, history: pd.DataFrame, prefix: str = "") -> None:
        """Per-epoch losses as metric history, one step per epoch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key=f"{prefix}{column}", value=float(value), timestamp=now, step=int(epoch))
            for column in history.columns if column != "epoch"
            for epoch, value in zip(history["epoch"], history[column], strict=True)
        ]
        with_retry(self._mlflow.MlflowClient().log_batch, self.run_id, metrics=metrics)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        with_retry(self._mlflow.log_artifact, str(path), artifact_path=folder)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        with_retry(self._mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_child(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, Any],
                  histories: list[pd.DataFrame] = ()) -> str:
        """A finished child run of this one (an ensemble member): its params, metrics and training curves
        (the i-th curve's keys prefixed ``fit<i>.``). Its id."""
        from mlflow.entities import Metric, Param, RunTag

        client = self._mlflow.MlflowClient()
        parent = with_retry(client.get_run, self.run_id)
        child = with_retry(client.create_run, parent.info.experiment_id, run_name=name,
                           tags={"mlflow.parentRunId": self.run_id, **{k: v for k, v in parent.data.tags.items()
                                                                      if k.startswith(("dvc.", "git."))
                                                                      or k == MEMBER_TAG}})
        now = int(time.time() * 1000)
        entries = [Metric(key=k, value=float(v), timestamp=now, step=0) for k, v in flatten(metrics).items()
                   if isinstance(v, (int, float))]
        entries += [Metric(key=f"fit{i}.{column}", value=float(value), timestamp=now, step=int(epoch))
                    for i, history in enumerate(histories) for column in history.columns if column != "epoch"
                    for epoch, value in zip(history["epoch"], history[column], strict=True)]
        with_retry(client.log_batch, child.info.run_id, metrics=entries,
                   params=[Param(k, str(v)) for k, v in flatten(params).items()], tags=[RunTag("member", name)])
        with_retry(client.set_terminated, child.info.run_id, "FINISHED")
        return child.info.run_id


class UntrackedRun:
    """Stands in for StageRun when tracking is off: logs nothing."""

    run_id = None

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        pass

    def log_history(self, history: pd.DataFrame, prefix: str = "") -> None:
        pass

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_child(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, Any],
                  histories: list[pd.DataFrame] = ()) -> None:
        pass


@contextmanager
def stage_run(experiment: str, stage: str, params: Mapping[str, Any], inputs: list[Path],
              tags: Mapping[str, str] | None = None) -> Iterator[StageRun | UntrackedRun]:
    """Open an MLflow run for one execution of a DVC stage."""
    if not tracking_enabled():
        print(f"{stage}: {OFF_SWITCH}=off, nothing is logged to MLflow")
        yield UntrackedRun()
        return
    import mlflow

    uri = tracking_uri()
    check_store(uri)
    mlflow.set_tracking_uri(uri)
    run_tags = {
        "dvc.stage": os.environ.get("DVC_STAGE", stage),
        "dvc.exp": os.environ.get("DVC_EXP_NAME", "workspace"),
        "git.commit": git_commit(),
        "params.hash": params_hash(params, inputs),
        **({MEMBER_TAG: os.environ[MEMBER_ENV]} if os.environ.get(MEMBER_ENV) else {}),
        **(tags or {}),
    }
    started = time.perf_counter()
    # The run is named for what it did (train_memory@lstm); the tag says which DVC stage ran it,
    # e.g. train_memory, whose members each have a run (stages/lib/infra/parallel.py).
    run = with_retry(mlflow.start_run, experiment_id=_experiment_id(mlflow, experiment, uri),
                     run_name=stage, tags=run_tags)
    status = "FAILED"
    try:
        with_retry(mlflow.log_params, flatten(params))
        yield StageRun(mlflow, run.info.run_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _end(mlflow, stage, run.info.run_id, status, time.perf_counter() - started)


def _end(mlflow, stage: str, run_id: str, status: str, wall_s: float) -> None:
    """Record the wall time and the status, then close the run in this process.

    The status goes through the client, retried: mlflow.end_run forgets the active run before it writes, so its
    own retry after "database is locked" would end nothing and leave the run RUNNING. end_run still runs, so
    that MLflow's exit hook cannot end a failed run as FINISHED. A store that fails here does not replace the
    stage's own error (a traceback and exit 1 instead of its one line, or Ctrl-C's 130): it is told in a line.
    """
    failed = []
    try:
        # Wall time lives in MLflow only: committed files stay byte-identical.
        with_retry(mlflow.log_metric, "wall_time_s", wall_s)
    except Exception as exc:
        failed.append(("its wall time", exc))
    try:
        with_retry(mlflow.MlflowClient().set_terminated, run_id, status)
    except Exception as exc:
        failed.append((f"its status {status}", exc))
    with suppress(Exception):
        mlflow.end_run(status=status)
    if failed and status == "FINISHED":
        raise failed[0][1]  # the stage succeeded: its run must not say otherwise unnoticed
    for what, exc in failed:
        print(f"{stage}: MLflow run {run_id}: could not record {what} ({first_line(exc)})", file=sys.stderr,
              flush=True)


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type where it has no message."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
