"""Bad params, bad data and interruptions under the real `dvc`: one line, no output, no lock entry.

Each case breaks one rule in a fresh copy of the project, runs the stage that
reads it through `dvc repro` (or `dvc exp run`), and checks the message, the
exit status, that the stage's outputs were not written, and that dvc.lock did
not record the stage.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.project import Project

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    return Project(tmp_path_factory.mktemp("faults"))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic write that did not complete."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if ".dvc" not in p.parts and ".git" not in p.parts and p.name not in (".gitignore", ".dvcignore"))


def expect_failure(proj: Project, stage: str, outputs: list[str], message: str, *cmd: str) -> None:
    before = proj.lock_entry(stage)
    done = proj.sh(*(cmd or ("dvc", "repro", stage)), check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {message}"], done.stderr[-2000:]
    assert "exited with 2" in done.stderr, "the stage itself exits with status 2"
    for out in outputs:
        assert not (proj.path / out).exists(), f"{out} was written by a failed stage"
    assert proj.lock_entry(stage) == before, f"dvc.lock changed for {stage}"
    assert leftovers(proj.path / "data") == [] if (proj.path / "data").exists() else True


@pytest.fixture
def edited(proj):
    """Edit params.yaml for one test; the original comes back afterwards."""
    original = (proj.path / "params.yaml").read_text()

    def edit(change) -> None:
        params = proj.params()
        change(params)
        proj.write_params(params)

    yield edit
    (proj.path / "params.yaml").write_text(original)


PARAM_CASES = [
    ("generate", ["data/memory/dataset"], lambda p: p.update(seq=1),
     "params.yaml: seq: Input should be greater than or equal to 2 (got 1)"),
    ("generate", ["data/memory/dataset"], lambda p: p["generate"].update(task="copy"),
     "params.yaml: generate.task: Input should be 'first_last', 'adding' or 'sincos' (got 'copy')"),
    ("baselines@sales", ["data/forecast/sales/baselines"],
     lambda p: p.update(num_steps=0), "params.yaml: num_steps: Input should be greater than 0 (got 0)"),
    ("backtest@sales", ["data/forecast/sales/backtest"],
     lambda p: p["forecasters"]["arima"].update(order=[1, -1, 0]),
     "params.yaml: forecasters.arima: order: every term must be 0 or more (got [1, -1, 0])"),
    ("train_memory", ["data/memory/models"],
     lambda p: p["train_memory"]["fit"].update(learning_rate=-0.01),
     "params.yaml: train_memory.fit.learning_rate: Input should be greater than 0 (got -0.01)"),
    ("train_memory", ["data/memory/models"],
     lambda p: p["train_memory"]["arch"]["tcn"].update(dilations=[1, 4, 2]),
     "params.yaml: train_memory.arch.tcn.dilations: must be strictly increasing (got [1, 4, 2])"),
    ("train_memory", ["data/memory/models"],
     lambda p: p["train_memory"].update(models=["lstm", "transformer"]),
     "params.yaml: train_memory.models.1: Input should be 'lstm', 'gru', 'fullconv', 'tcn' or 'nbeats' (got 'transformer')"),
]


@pytest.mark.parametrize("stage, outputs, change, message", PARAM_CASES, ids=[c[0] + ":" + c[3].split(":")[1].strip()
                                                                            for c in PARAM_CASES])
def test_bad_param_stops_the_stage(proj, edited, stage, outputs, change, message):
    edited(change)
    expect_failure(proj, stage, outputs, message)


def test_series_too_short_for_the_backtest_stops_its_backtest(proj, edited):
    edited(lambda p: p["backtest"].update(n_windows=38))
    # ARIMA needs 10 points before its first origin.
    expect_failure(proj, "backtest@sales", ["data/forecast/sales/backtest"],
                   "data/raw/sales.csv: 45 points is too short for backtest.horizon=3, n_windows=38, step_size=1, "
                   "calibration_windows=6 with forecaster 'arima' (needs at least 56: 10 before the first origin)")


def test_exp_run_with_a_non_integer_seq(proj):
    expect_failure(proj, "generate", ["data/memory/dataset"],
                   "params.yaml: seq: Input should be a valid integer, unable to parse string as an integer (got 'abc')",
                   "dvc", "exp", "run", "-S", "seq=abc")
    proj.sh("git", "checkout", "--", "params.yaml")


CSV_CASES = {
    "empty": (b"", "data/raw/broken.csv: file is empty"),
    "misnamed column": (b"month,sale\n1,2\n", "data/raw/broken.csv: line 1: column 'sales' not found in the header (columns: month, sale)"),
    "non-numeric": (b"month,sales\n1,266\n2,14o.5\n", "data/raw/broken.csv: line 3: value '14o.5' in column 'sales' is not a number"),
    "blank": (b"month,sales\n1,266\n2,\n", "data/raw/broken.csv: line 3: missing value '' in column 'sales' (or set a fill policy for the dataset in params.yaml)"),
    "NaN": (b"month,sales\n1,266\n2,NaN\n", "data/raw/broken.csv: line 3: missing value 'NaN' in column 'sales' (or set a fill policy for the dataset in params.yaml)"),
    "duplicate": (b"month,sales\n1,266\n1,270\n", "data/raw/broken.csv: line 3: duplicate time 1 in column 'month'"),
    "unsorted": (b"month,sales\n2,266\n1,270\n", "data/raw/broken.csv: line 3: time 1 is before the previous row's 2 (rows must be sorted)"),
    "gap": (b"month,sales\n1,266\n3,270\n", "data/raw/broken.csv: line 3: gap in column 'month', 1 is followed by 3 (expected 2; or set a fill policy for the dataset in params.yaml)"),
    "encoding": ("month,sales\n1,266\n2,27\u00e9\n".encode("latin-1"), "data/raw/broken.csv: line 3: byte 0xe9 is not UTF-8 text (save the file as UTF-8 CSV)"),
    "delimiter": (b"month;sales\n1;266\n", "data/raw/broken.csv: line 1: column 'month' not found in the header (columns: month;sales); the file seems to use ';' between fields, but it must be comma-separated"),
    "ragged row": (b"month,sales\n1,266\n2,270,x\n", "data/raw/broken.csv: line 3: expected 2 fields, found 3"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_malformed_csv_stops_ingest(proj, edited, case):
    content, message = CSV_CASES[case]
    bad = proj.path / "data/raw/broken.csv"
    bad.write_bytes(content)
    edited(lambda p: p["datasets"].update(broken={"file": "data/raw/broken.csv", "time_col": "month",
                                                    "value_col": "sales"}))
    try:
        expect_failure(proj, "ingest@broken", ["data/forecast/broken/series.csv"], message)
    finally:
        bad.unlink()


def test_missing_csv_is_named(proj, edited):
    # DVC refuses a stage whose dependency is missing before the stage runs, so
    # the stage's own message is checked by running it directly.
    edited(lambda p: p["datasets"].update(gone={"file": "data/raw/gone.csv", "time_col": "month", "value_col": "sales"}))
    done = proj.sh("python", "-m", "stages.ingest", "--dataset", "gone", "--out", "data/forecast/gone/series.csv", check=False)
    assert (done.returncode, done.stderr) == (2, "error: data/raw/gone.csv: file not found\n")
    assert not (proj.path / "data/forecast/gone").exists()


def test_unreachable_tracking_server_stops_before_training(proj):
    proj.sh("dvc", "repro", "generate")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    done = proj.sh("dvc", "repro", "train_memory", check=False, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode != 0
    assert time.perf_counter() - started < 60
    # Checked once by the stage, before it starts any model's process.
    errors = [line for line in done.stderr.splitlines() if "cannot reach the server" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: MLflow tracking URI {uri}: cannot reach the server")
    assert "train_memory@" not in done.stdout + done.stderr, "a model started before the store was checked"
    assert not (proj.path / "data/memory/models").exists()
    # Opting out runs the stage without tracking.
    done = proj.sh("dvc", "repro", "train_memory", env={"MLFLOW_TRACKING_URI": uri, "PIPELINE_TRACKING": "off"})
    assert "train_memory@fullconv: PIPELINE_TRACKING=off, nothing is logged to MLflow" in done.stdout
    assert (proj.path / "data/memory/models/fullconv/seed-0.keras").is_file()


def run_status(proj: Project, run_name: str) -> list[str]:
    with sqlite3.connect(proj.path / "mlflow.db") as db:
        return [status for (status,) in db.execute("select status from runs where name = ? order by start_time",
                                                   (run_name,))]


def wait_for_group(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process group {pgid} still running after {timeout:.0f} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_training_leaves_nothing_and_repro_recovers(proj, edited, sig):
    # The stage trains its models side by side; the signal reaches them all.
    stage, models, run = "train_memory", "data/memory/models", "train_memory@lstm"
    proj.sh("dvc", "repro", "generate")
    edited(lambda p: p["train_memory"]["fit"].update(max_epochs=5000, patience=None, target_val_loss=None))
    before = proj.lock_entry(stage)
    runs_before = run_status(proj, run) if (proj.path / "mlflow.db").exists() else []
    # Its own session, like a terminal's foreground job: the signal reaches dvc and the stage.
    child = subprocess.Popen(["dvc", "repro", stage], cwd=proj.path, env=proj.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    # If training never prints its third epoch, stop waiting rather than hang the suite.
    watchdog = threading.Timer(300, lambda: os.killpg(child.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in child.stdout:
            seen.append(line)
            if line.startswith(f"{run}: Epoch 3/"):
                break
        else:
            raise AssertionError("training never started:\n" + "".join(seen[-30:]))
        os.killpg(child.pid, sig)
        rest, _ = child.communicate(timeout=120)
        seen.append(rest)
        # On SIGTERM dvc exits at once while its stage is still cleaning up (MLflow's
        # KILLED status, the temporary folder): wait for the whole process group,
        # as a scheduler waits for its job, before looking at what was left.
        wait_for_group(child.pid, timeout=120)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()  # reaped: a zombie would still hold DVC's lock for the next case
    assert child.returncode != 0
    assert not (proj.path / models).exists()
    assert leftovers(proj.path / "data") == []
    assert proj.lock_entry(stage) == before
    # The stage's own lines say where a run left RUNNING stopped (CI met it once, 1 in ~40).
    assert run_status(proj, run)[len(runs_before):] == ["KILLED"], "".join(seen[-60:])
    # A plain `dvc repro` afterwards completes normally.
    (proj.path / "params.yaml").write_text(proj.sh("git", "show", "HEAD:params.yaml").stdout)
    proj.sh("dvc", "repro", stage)
    assert (proj.path / models / "lstm/seed-0.keras").is_file()
    assert proj.lock_entry(stage) != before
    assert run_status(proj, run)[-1] == "FINISHED"


def test_a_dropped_interrupt_after_the_last_check_still_fails_the_stage():
    """Work that ends before any check still exits 130: DVC ignores SIGINT while its stage
    runs and would otherwise go on to the next stage as if nobody had pressed Ctrl-C."""
    import sys
    import textwrap

    from tests.project import ROOT

    script = textwrap.dedent("""
        import signal
        from stages.lib.infra import cli

        class Finaliser:
            def __del__(self):
                signal.raise_signal(signal.SIGTERM)

        def main(argv):
            Finaliser()  # freed at once: Python drops its KeyboardInterrupt
            print("done")

        cli.run(main)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout == "done\n"
    assert done.returncode == 130
    assert done.stderr.splitlines() == [
        "signal 15 arrived while Python was freeing an object; stopping at the next step", "interrupted"]
