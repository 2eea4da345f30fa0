"""MLflow: the only module that knows MLflow exists.

``stage_run`` opens one run for a stage: it locates the store, names the
experiment, sets the tags that tie the run to DVC (``dvc.stage``, ``dvc.exp``,
``git.commit``, ``params.hash``), logs the resolved params, and leaves the run
FAILED when the stage raises (KILLED when it is interrupted).

The store: ``MLFLOW_TRACKING_URI`` when set; otherwise ``mlflow.db`` (SQLite) and
``mlartifacts/`` in the user's repository, found from ``DVC_ROOT`` so that
queued experiments running in temporary copies land in the same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from stages.core import paths


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.store_root() / 'mlflow.db'}"


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


def _experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=f"{artifact_root()}/{name}")
    except mlflow.exceptions.MlflowException:
        # Another stage running in parallel created it first.
        return mlflow.get_experiment_by_name(name).experiment_id


class StageRun:
    """What a stage may log into its run."""

    def __init__(self, mlflow, run_id: str) -> None:
        self._mlflow = mlflow
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        numeric = {k: float(v) for k, v in flatten(metrics, prefix).items()
                   if isinstance(v, (int, float))}
        self._mlflow.log_metrics(numeric)

    def log_history(self, history: pd.DataFrame, prefix: str = "") -> None:
        """Per-epoch losses as metric history, one step per epoch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key=f"{prefix}{column}", value=float(value), timestamp=now, step=int(epoch))
            for column in history.columns if column != "epoch"
            for epoch, value in zip(history["epoch"], history[column], strict=True)
        ]
        self._mlflow.MlflowClient().log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextmanager
def stage_run(experiment: str, stage: str, params: Mapping[str, Any], inputs: list[Path],
              tags: Mapping[str, str] | None = None) -> Iterator[StageRun]:
    """Open an MLflow run for one execution of a DVC stage."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    run_tags = {
        "dvc.stage": os.environ.get("DVC_STAGE", stage),
        "dvc.exp": os.environ.get("DVC_EXP_NAME", "workspace"),
        "git.commit": git_commit(),
        "params.hash": params_hash(params, inputs),
        **(tags or {}),
    }
    started = time.perf_counter()
    run = mlflow.start_run(experiment_id=_experiment_id(mlflow, experiment), run_name=run_tags["dvc.stage"], tags=run_tags)
    status = "FAILED"
    try:
        mlflow.log_params(flatten(params))
        yield StageRun(mlflow, run.info.run_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # Wall time lives in MLflow only: committed files stay byte-identical.
        mlflow.log_metric("wall_time_s", time.perf_counter() - started)
        mlflow.end_run(status=status)
