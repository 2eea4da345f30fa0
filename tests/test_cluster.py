"""The panel stage on a real Dask cluster: a `dask scheduler` and `dask worker` processes on loopback
(tests/servers.py), against the same stage run on this machine.

Marked ``dask`` (pytest.ini): the fast loop leaves them out (-m "not dask"), CI runs them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servers import dask_cluster, free_port

pytestmark = pytest.mark.dask
ROOT = Path(__file__).resolve().parents[1]


def write_panel(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` random-walk series of 25 to 60 yearly points, in ingest_panel's CSV form."""
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"id": f"s{i}", "time": range(1, k + 1), "value": 100 + rng.normal(size=k).cumsum()})
              for i, k in enumerate(rng.integers(25, 60, size=n))]
    pd.concat(frames).to_csv(path, index=False)
    return path


def stage(series: Path, out: Path, address: str | None = None,
          command: tuple[str, ...] = ("stages.panel", "--panel", "m3_yearly")) -> subprocess.Popen:
    """The panel stage of M3 yearly (the classical set of params.yaml; or ``command``) in its own process."""
    # Unbuffered: the tests read the progress lines as they come.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_TRACKING": "off", "PIPELINE_CORES": "2",
           "PYTHONUNBUFFERED": "1"}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    if address:
        env["DASK_SCHEDULER_ADDRESS"] = address
    return subprocess.Popen([sys.executable, "-m", *command, "--series", str(series),
                             "--out", str(out)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    """Read the stage's stdout until a line containing ``text``; the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the stage ended before printing {text!r}: {''.join(lines)}")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict[str, Path]:
    """A small and a larger panel, each forecast once on this machine (joblib, 2 processes)."""
    root = tmp_path_factory.mktemp("local")
    runs = {}
    for name, n in (("small", 12), ("large", 120)):
        series, out = write_panel(root / f"{name}.csv", n, seed=n), root / f"{name}-forecasts.csv"
        code, _, err = finish(stage(series, out))
        assert code == 0, err
        runs[name] = series, out
    return runs


def ran_on_workers(address: str, prefix: str) -> bool:
    """Whether tasks whose key starts with ``prefix`` ran on the cluster's workers (the scheduler keeps each key
    prefix's longest compute time after its tasks are gone)."""
    from distributed import Client

    with Client(address, timeout="10s") as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: prefix in dask_scheduler.task_prefixes
            and dask_scheduler.task_prefixes[prefix].max_exec_time > 0)


def busy_worker_pid(address: str) -> int:
    """The pid of a worker in the middle of a task (waiting up to 10 s for one)."""
    from distributed import Client

    with Client(address, timeout="10s") as client:
        for _ in range(100):
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                return client.run(os.getpid, workers=busy[:1])[busy[0]]
            time.sleep(0.1)
    raise AssertionError("no worker was running a task")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_panel_on_the_cluster_is_byte_for_byte_the_local_run_with_progress_and_the_dashboard_once(
        local, tmp_path, workers):
    series, expected = local["small"]
    with dask_cluster(workers=workers) as cluster:
        address = cluster.address
        code, out, err = finish(stage(series, tmp_path / "forecasts.csv", address))
        assert code == 0, err
        assert ran_on_workers(address, "panel@m3_yearly")  # the series ran on the workers, not in the stage
        # The dashboard it names serves Dask's diagnostic UI (without bokeh: "Dask needs bokeh" and nothing else).
        link = re.search(r"dashboard (http://\S+)", out).group(1)
        with urllib.request.urlopen(link, timeout=30) as response:
            assert response.status == 200 and b"<title>Dask Diagnostic UI</title>" in response.read()
    assert (tmp_path / "forecasts.csv").read_bytes() == expected.read_bytes()
    # The stage connects first (an unreachable scheduler stops it before anything else), then says where it runs.
    lines = out.splitlines()
    assert lines[0].startswith("Dask cluster") and lines[1].endswith(f"the Dask cluster {address}")
    announced = [line for line in lines if line.startswith("Dask cluster")]
    assert len(announced) == 1 and f"{workers} workers" in announced[0] and "dashboard http://" in announced[0]
    assert "panel@m3_yearly: 12/12 series" in out and err == ""


def test_a_per_series_keras_model_on_the_cluster_is_byte_for_byte_the_local_run(tmp_path):
    """panel_model in per_series mode (params.yaml's lstm_series: a network per series, seeded) trains each
    series' network on a worker: the same forecasts as on this machine, whichever worker trained which."""
    series = write_panel(tmp_path / "series.csv", 4, seed=4)
    command = ("stages.panel_model", "--panel", "m3_yearly", "--model", "lstm_series")
    code, _, err = finish(stage(series, tmp_path / "local.csv", command=command))
    assert code == 0, err
    with dask_cluster(workers=2) as cluster:
        code, out, err = finish(stage(series, tmp_path / "cluster.csv", cluster.address, command))
        assert code == 0, err
        # The dashboard groups the tasks under the whole stage name, model included.
        assert ran_on_workers(cluster.address, "panel_model@m3_yearly:lstm_series")
    assert "4/4 series" in out
    forecasts = pd.read_csv(tmp_path / "cluster.csv")
    assert len(forecasts) == 4 * 6 and forecasts["forecast"].notna().all()
    assert (tmp_path / "cluster.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_a_worker_killed_mid_run_loses_no_series_and_changes_no_number(local, tmp_path):
    series, expected = local["large"]
    with dask_cluster(workers=2) as cluster:
        process = stage(series, tmp_path / "forecasts.csv", cluster.address)
        # The first chunks are done: the run is under way, its progress line as on this machine, time left included.
        progress = wait_for_line(process, "/120 series")[-1]
        assert re.fullmatch(r"panel@m3_yearly: \d+/120 series, \d+:\d\d so far, about \d+:\d\d left\n", progress)
        os.kill(busy_worker_pid(cluster.address), signal.SIGKILL)  # its chunk is lost with it
        code, out, err = finish(process)
    assert code == 0, err
    assert "120/120 series" in out
    assert (tmp_path / "forecasts.csv").read_bytes() == expected.read_bytes()


def test_a_scheduler_that_cannot_import_the_project_is_one_line(local, tmp_path):
    series, _ = local["small"]
    with dask_cluster(workers=1, scheduler_path=False) as cluster:
        code, _, err = finish(stage(series, tmp_path / "forecasts.csv", cluster.address))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: DASK_SCHEDULER_ADDRESS={cluster.address}: the scheduler cannot import the project's stages package "
        "(it unpickles every task); start it in the repository root with PYTHONPATH=. (docs/team.md)"]
    assert not (tmp_path / "forecasts.csv").exists()


def test_a_worker_running_several_tasks_at_once_is_refused_by_name(local, tmp_path):
    series, _ = local["small"]
    with dask_cluster(workers=1, nthreads=2) as cluster:
        code, _, err = finish(stage(series, tmp_path / "forecasts.csv", cluster.address))
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: DASK_SCHEDULER_ADDRESS={cluster.address}: worker tcp://127.0.0.1:")
    assert line.endswith("runs 2 tasks at once; start every worker with --nthreads 1 (and --nworkers N for N "
                         "cores: docs/team.md)")
    assert not (tmp_path / "forecasts.csv").exists()


@pytest.mark.parametrize("command", [("stages.panel", "--panel", "m3_yearly"),
                                     ("stages.panel_model", "--panel", "m3_yearly", "--model", "lstm_series")])
def test_an_unreachable_scheduler_is_one_line_naming_it_and_nothing_is_written(tmp_path, command):
    # A panel file that does not exist: the stage checks the cluster before it reads the panel, so the error is
    # the cluster's, not the file's (the classical set's stage, and a per-series Keras model's).
    series = tmp_path / "never-read.csv"
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = finish(stage(series, tmp_path / "forecasts.csv", address, command))
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: DASK_SCHEDULER_ADDRESS={address}: no Dask scheduler answered within 5 s (OSError); "
        "start one (docs/team.md) or unset DASK_SCHEDULER_ADDRESS to run here"]
    assert not (tmp_path / "forecasts.csv").exists()


def test_a_scheduler_lost_mid_run_stops_with_one_line_writes_nothing_and_the_next_run_completes(local, tmp_path):
    series, expected = local["large"]
    out_file = tmp_path / "forecasts.csv"
    with dask_cluster(workers=2) as cluster:
        address = cluster.address
        process = stage(series, out_file, address)
        wait_for_line(process, "/120 series")
        os.killpg(cluster.scheduler.pid, signal.SIGKILL)
        code, _, err = finish(process)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: DASK_SCHEDULER_ADDRESS={address}: lost the Dask scheduler mid-run (FutureCancelledError); "
        "nothing written, run the stage again"]
    assert not out_file.exists()
    code, _, err = finish(stage(series, out_file))  # the next run (here, on this machine) completes
    assert code == 0, err
    assert out_file.read_bytes() == expected.read_bytes()


def test_ctrl_c_cancels_the_stages_tasks_on_the_cluster_and_writes_nothing(local, tmp_path):
    from distributed import Client

    series, _ = local["large"]
    with dask_cluster(workers=2) as cluster:
        address = cluster.address
        process = stage(series, tmp_path / "forecasts.csv", address)
        wait_for_line(process, "/120 series")
        process.send_signal(signal.SIGINT)
        code, _, err = finish(process)
        with Client(address, timeout="10s") as client:
            deadline = time.monotonic() + 10
            while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
            left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert left == 0  # none of the stage's tasks is left queued or running on the cluster
    assert not (tmp_path / "forecasts.csv").exists()


def test_a_worker_with_other_code_is_refused_by_name(tmp_path, local):
    import shutil

    series, _ = local["small"]
    other = tmp_path / "checkout"
    shutil.copytree(ROOT / "stages", other / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    with (other / "stages" / "panel.py").open("a") as f:
        f.write("# an edit the stage's checkout does not have\n")
    with dask_cluster(workers=1, pythonpath=other) as cluster:
        address = cluster.address
        code, _, err = finish(stage(series, tmp_path / "forecasts.csv", address))
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: DASK_SCHEDULER_ADDRESS={address}: worker tcp://127.0.0.1:")
    assert "runs other stages code than this stage" in line and line.endswith("restart it from this checkout")
    assert not (tmp_path / "forecasts.csv").exists()


def test_the_arima_order_grid_on_the_cluster_chooses_by_the_same_aics(monkeypatch):
    from stages.lib.forecast import arima
    from stages.lib.infra import cluster as engine

    rng = np.random.default_rng(3)
    y = rng.normal(size=80).cumsum()
    candidates = [((p, 1, q), (0, 0, 0, 0), "n") for p in range(3) for q in range(3)] * 3  # 27: over the threshold
    here = [arima._aic(y, *c) for c in candidates]
    with dask_cluster(workers=2) as running:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", running.address)
        monkeypatch.setenv("PIPELINE_CORES", "2")
        try:
            there = arima.grid_aics(y, candidates)
        finally:
            engine._disconnect()
    assert there == here


def test_autoarimas_refits_on_the_cluster_forecast_as_the_local_ones(monkeypatch):
    from stages.lib.forecast import statistical
    from stages.lib.forecast.specs import AutoArimaSpec
    from stages.lib.infra import cluster as engine

    rng = np.random.default_rng(5)
    y = 50 + 10 * np.tile(np.sin(np.arange(12) * np.pi / 6), 6) + rng.normal(size=72).cumsum()
    histories = [y[:n] for n in (60, 63, 66)]
    spec = AutoArimaSpec(kind="auto_arima", max_p=1, max_q=1, max_P=1, max_Q=1)

    def forecasts() -> list[np.ndarray]:
        model = statistical.AutoArima(spec, 12, 3)
        return [model.fit(h).predict(4) for h in histories]

    here = forecasts()
    statistical.forget_fits()
    with dask_cluster(workers=2) as running:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", running.address)
        try:
            statistical.AutoArima(spec, 12, 3).fit_ahead(histories, workers=2)  # the fits, on the workers
            assert len(statistical._FITS) == 3  # came back as fitted models, into the cache that fit() reads
            there = forecasts()
        finally:
            engine._disconnect()
            statistical.forget_fits()
    for a, b in zip(here, there):
        np.testing.assert_array_equal(a, b)


def test_a_cluster_left_without_workers_is_said_once_and_again_after_workers_came_back(capsys):
    """Every worker died or was stopped: Dask keeps the stage's tasks for workers to come (an autoscaling
    cluster's way), and the stage says so once rather than waiting without a word. A scripted client: the
    cluster's worker count over the watcher's looks (no cluster needed for what the watcher decides)."""
    import threading

    from stages.lib.infra import cluster as engine

    class Scripted:
        """A worker count per look; ``None`` a look the scheduler does not answer."""

        def __init__(self, counts):
            self.counts, self.looks, self.status = list(counts), 0, "running"

        def nthreads(self):
            self.looks += 1
            if not self.counts:
                self.status = "closed"  # the stage closed its client: the watcher stops
                raise OSError("closed")
            count = self.counts.pop(0)
            if count is None:
                raise TimeoutError("a busy scheduler")  # the watcher looks again
            return {f"w{i}": 1 for i in range(count)}

    # Two workers, then none for five looks (said once, after 3 looks' patience; a look unanswered among them),
    # then one back, none again.
    client = Scripted([2, 0, 0, None, 0, 0, 0, 1, 0, 0, 0, 0])
    engine._watch_workers(client, "tcp://h:8786", threading.Event(), every=0.01, patience=0.025)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and client.looks == 13
    assert re.fullmatch(r"Dask cluster tcp://h:8786: no worker for \d+ s, the stage's tasks wait for one: start one "
                        r"\(dask worker tcp://h:8786, docs/team.md\) or press Ctrl-C", lines[0])
    stop = threading.Event()
    stop.set()  # the stage's loop ended: the watcher looks no more
    engine._watch_workers(Scripted([0] * 10), "tcp://h:8786", stop, every=0.01, patience=0.0)
    assert capsys.readouterr().out == ""
