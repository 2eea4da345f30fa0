"""Concurrent writers on the embedded SQLite MLflow store: plain MLflow against stage_run.

Starts WORKERS processes at the same instant on a fresh store (as `dvc queue
start -j N` does) and has each log RUNS runs shaped like a stage's: params,
a per-epoch history, metrics, an artifact, end. Counts the runs that failed and
the runs that landed in the store, for two ways of writing:

- plain: mlflow's fluent API on ``sqlite:///mlflow.db``, nothing else;
- plain, store made first: the same, on a store one process created beforehand
  (steady-state lock contention without the start-up race);
- stage_run: this project's ``tracking.stage_run`` (store created once under a
  file lock, WAL mode, retries with backoff on "database is locked").

    python benchmarks/sqlite_concurrency.py --workers 4 --runs 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

EPOCHS = 40


def plain_worker(root: str, start_at: float, runs: int, queue: mp.Queue) -> None:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    time.sleep(max(0.0, start_at - time.time()))
    failures = 0
    for i in range(runs):
        try:
            experiment = mlflow.get_experiment_by_name("memory")
            experiment_id = (experiment.experiment_id if experiment
                             else mlflow.create_experiment("memory", artifact_location=f"file://{root}/mlartifacts"))
            run = mlflow.start_run(experiment_id=experiment_id, tags={"worker": str(os.getpid())})
            mlflow.log_params({f"p{k}": k for k in range(20)})
            now = int(time.time() * 1000)
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
                Metric("loss", 1.0 / (e + 1), now, e) for e in range(EPOCHS)])
            mlflow.log_metrics({"val_mse": 0.1, "epochs_run": EPOCHS})
            mlflow.end_run()
        except Exception as exc:  # counted, not fatal: the point is how often it happens
            failures += 1
            queue.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
            try:
                mlflow.end_run(status="FAILED")
            except Exception:
                pass
    queue.put(("failures", failures))


def stage_run_worker(root: str, start_at: float, runs: int, queue: mp.Queue) -> None:
    os.environ["DVC_ROOT"] = root
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from stages.lib.infra import tracking

    time.sleep(max(0.0, start_at - time.time()))
    failures = 0
    for i in range(runs):
        try:
            with tracking.stage_run("memory", f"bench@{i}", {f"p{k}": k for k in range(20)}, inputs=[]) as run:
                run.log_history(pd.DataFrame({"epoch": range(1, EPOCHS + 1), "loss": [1.0 / e for e in range(1, EPOCHS + 1)]}))
                run.log_metrics({"val_mse": 0.1, "epochs_run": EPOCHS})
        except Exception as exc:
            failures += 1
            queue.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
            traceback.print_exc(limit=1)
    queue.put(("failures", failures))


def count_finished(root: str) -> int:
    import sqlite3

    with sqlite3.connect(Path(root) / "mlflow.db") as db:
        try:
            return db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def trial(worker, workers: int, runs: int, precreate: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as root:
        if precreate:
            import mlflow

            mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db").search_experiments()
        queue: mp.Queue = mp.Queue()
        start_at = time.time() + 3.0  # every process imports mlflow first, then all start together
        procs = [mp.Process(target=worker, args=(root, start_at, runs, queue)) for _ in range(workers)]
        began = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - began - 3.0
        failures, errors = 0, []
        while not queue.empty():
            kind, value = queue.get()
            if kind == "failures":
                failures += value
            else:
                errors.append(value)
        return {"failed": failures, "finished": count_finished(root), "expected": workers * runs,
                "seconds": round(elapsed, 1), "errors": sorted(set(errors))[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    variants = (("plain", plain_worker, False), ("plain, store made first", plain_worker, True),
                ("stage_run", stage_run_worker, False))
    for name, worker, precreate in variants:
        for t in range(args.trials):
            result = trial(worker, args.workers, args.runs, precreate)
            print(f"{name:>23} trial {t + 1}: {result['finished']}/{result['expected']} runs FINISHED, "
                  f"{result['failed']} failed, {result['seconds']} s  {result['errors']}", flush=True)


if __name__ == "__main__":
    mp.set_start_method("spawn")
    main()
