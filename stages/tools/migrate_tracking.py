"""Copy every MLflow experiment and run from one tracking store to another, e.g. the local SQLite store to a team server.

    python -m stages.tools.migrate_tracking --to http://mlflow.example:5000
    python -m stages.tools.migrate_tracking --from sqlite:///mlflow.db --to http://mlflow.example:5000 --experiment forecast

Each run keeps its name, status, start and end times, params, tags, the full
history of every metric (steps and timestamps) and its artifacts, and gets the
tag ``migrated.from_run_id`` once it is complete. Runs already copied (found
by that tag) are skipped, and a copy cut short (still tagged
``migrated.copying_from``) is deleted and made again, so an interrupted
migration is finished by running it again.
Deleted runs and experiments stay behind.

Written on MLflow's client API rather than with mlflow-export-import: its
current release (databricks-mlflow-export-import 1.2.1) pins tabulate 0.9.0
against the 0.10 the pinned set holds and pulls the deprecated databricks-cli
and the Databricks cloud extras, for the few calls this copy needs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from stages.lib.infra import cli, paths, tracking

MIGRATED_TAG = "migrated.from_run_id"
COPYING_TAG = "migrated.copying_from"  # only on a copy that is not complete yet
BATCH = 500  # metrics per log_batch call, under MLflow's 1000-entity limit


def copied_runs(client, experiment_id: str) -> set[str]:
    """Source run ids already present in a destination experiment."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{MIGRATED_TAG}` != ''", max_results=50000)
    return {run.data.tags[MIGRATED_TAG] for run in runs}


def discard_partial_copies(client, experiment_id: str) -> int:
    """Delete the copies an interrupted migration left half-made; how many."""
    partial = client.search_runs([experiment_id], filter_string=f"tags.`{COPYING_TAG}` != ''", max_results=50000)
    for run in partial:
        client.delete_run(run.info.run_id)
    return len(partial)


def destination_experiment(client, source_experiment) -> str:
    found = client.get_experiment_by_name(source_experiment.name)
    if found is not None:
        return found.experiment_id
    tags = {k: v for k, v in source_experiment.tags.items() if not k.startswith("mlflow.")}
    return client.create_experiment(source_experiment.name, tags=tags or None)


def copy_run(source, dest, run, experiment_id: str) -> str:
    """Copy one run with its params, tags, metric histories and artifacts; the new run's id."""
    from mlflow.entities import Metric, Param

    tags = {**run.data.tags, COPYING_TAG: run.info.run_id}
    new = dest.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
    run_id = new.info.run_id
    params = [Param(k, v) for k, v in run.data.params.items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        dest.log_batch(run_id, params=params[i:i + 100])
    metrics = [Metric(m.key, m.value, m.timestamp, m.step)
               for key in run.data.metrics for m in source.get_metric_history(run.info.run_id, key)]
    for i in range(0, len(metrics), BATCH):
        dest.log_batch(run_id, metrics=metrics[i:i + BATCH])
    with tempfile.TemporaryDirectory() as folder:
        if source.list_artifacts(run.info.run_id):
            local = source.download_artifacts(run.info.run_id, "", folder)
            dest.log_artifacts(run_id, local)
    dest.set_terminated(run_id, status=run.info.status, end_time=run.info.end_time)
    # Marked complete last: a copy interrupted before this line is found and redone.
    dest.set_tag(run_id, MIGRATED_TAG, run.info.run_id)
    dest.delete_tag(run_id, COPYING_TAG)
    return run_id


def migrate(source_uri: str, dest_uri: str, experiments: list[str] | None = None,
            progress=print) -> dict[str, int]:
    """Copy the experiments (all when None); counts of runs copied and skipped."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    source, dest = MlflowClient(tracking_uri=source_uri), MlflowClient(tracking_uri=dest_uri)
    counts = {"copied": 0, "skipped": 0}
    chosen = [e for e in source.search_experiments(view_type=ViewType.ACTIVE_ONLY)
              if experiments is None or e.name in experiments]
    missing = sorted(set(experiments or []) - {e.name for e in chosen})
    if missing:
        raise tracking.TrackingError(f"{source_uri}: no experiment named {', '.join(map(repr, missing))}")
    for experiment in chosen:
        runs = source.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=50000,
                                  order_by=["attributes.start_time ASC"])
        target = destination_experiment(dest, experiment)
        if discard_partial_copies(dest, target):
            progress(f"migrate: {experiment.name}: deleted the incomplete copies of an interrupted migration")
        done = copied_runs(dest, target)
        for k, run in enumerate(runs, 1):
            if run.info.run_id in done:
                counts["skipped"] += 1
                continue
            copy_run(source, dest, run, target)
            counts["copied"] += 1
            progress(f"migrate: {experiment.name}: run {k}/{len(runs)} {run.info.run_name}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", default=None,
                        help="source tracking URI (default: this repository's local store, sqlite:///mlflow.db)")
    parser.add_argument("--to", dest="dest", required=True, help="destination tracking URI, e.g. http://host:5000")
    parser.add_argument("--experiment", action="append", help="copy only this experiment (repeatable)")
    args = parser.parse_args(argv)

    source = args.source or f"sqlite:///{paths.store_root() / 'mlflow.db'}"
    if source == args.dest:
        raise tracking.TrackingError(f"--from and --to are the same store ({source})")
    if tracking.sqlite_path(source) is not None and not tracking.sqlite_path(source).exists():
        raise tracking.TrackingError(f"{source}: no such SQLite store")
    for uri in (args.dest, source):  # the destination first: an unreachable server stops before the source is opened
        tracking.check_store(uri)
    counts = migrate(source, args.dest, args.experiment)
    print(f"migrate: {counts['copied']} runs copied, {counts['skipped']} already there, from {source} to {args.dest}")


if __name__ == "__main__":
    cli.run(main)
