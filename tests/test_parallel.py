"""A stage's members over the cores (stages/lib/infra/parallel.py), on tiny Python commands."""

from __future__ import annotations

import os
import signal
import time

import pytest

from stages.lib.errors import CommandError
from stages.lib.infra.cores import cores
from stages.lib.infra import interrupts
from stages.lib.infra.parallel import Member, exit_reason, member_env, prefixed, run_members


@pytest.fixture(autouse=True)
def own_store(tmp_path, monkeypatch):
    """A member killed by a signal has its MLflow run looked up: in this test's store, never the repository's."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_TRACKING", raising=False)


def py(code: str) -> list[str]:
    return ["-c", code]


def test_every_member_runs_and_its_lines_carry_its_label(capfd):
    run_members([Member("backtest@x-arima", py("print('3 origins'); print('backtest@x-arima: done')")),
                 Member("backtest@x-lstm", py("import sys; print('warning', file=sys.stderr)"))], jobs=2)
    out, err = capfd.readouterr()
    assert "backtest@x-arima: 3 origins" in out.splitlines()
    assert "backtest@x-arima: done" in out.splitlines()  # not "backtest@x-arima: backtest@x-arima: done"
    assert err.splitlines() == ["backtest@x-lstm: warning"]


# Each of the first two members waits for the other to have started (it fails alone after 20 s); the
# third records whether one of them had finished when it started.
HANDSHAKE = """
import pathlib, sys, time
here, me = pathlib.Path(sys.argv[1]), sys.argv[2]
(here / f"start-{me}").touch()
if me == "2":
    (here / "third-saw").write_text(str(sorted(p.name for p in here.glob("done-*"))))
    sys.exit(0)
other = here / f"start-{1 - int(me)}"
deadline = time.monotonic() + 20
while not other.exists():
    if time.monotonic() > deadline:
        sys.exit(f"member {me} ran alone")
    time.sleep(0.02)
(here / f"done-{me}").touch()
"""


def test_members_run_side_by_side_up_to_jobs(tmp_path):
    run_members([Member(f"m{i}", ["-c", HANDSHAKE, str(tmp_path), str(i)]) for i in range(3)], jobs=2)
    assert (tmp_path / "done-0").exists() and (tmp_path / "done-1").exists()  # the first two ran together
    assert (tmp_path / "third-saw").read_text() != "[]"  # the third waited for a free slot


def test_a_failing_member_stops_the_others_and_names_itself_and_its_error(tmp_path, capfd):
    pid_file = tmp_path / "sleeper.pid"
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    failing = ("import os, sys, time\n"
               f"while not os.path.exists({str(pid_file)!r}): time.sleep(0.02)\n"
               "print('error: params.yaml: train_memory.arch.tcn: bad', file=sys.stderr); sys.exit(2)")
    started = time.perf_counter()
    with pytest.raises(CommandError, match=r"^train_memory@tcn: params\.yaml: train_memory\.arch\.tcn: bad$"):
        run_members([Member("train_memory@lstm", py(sleeper)), Member("train_memory@tcn", py(failing))], jobs=2)
    assert time.perf_counter() - started < 30, "the sleeping member was stopped, not waited for"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended and reaped, not left running
    assert "error:" not in capfd.readouterr().err  # the stage says it once, in its own error line


def test_a_member_that_says_nothing_fails_with_its_exit_code():
    with pytest.raises(CommandError, match=r"^m: exited with code 3$"):
        run_members([Member("m", py("import sys; sys.exit(3)"))])


def test_an_exit_status_is_told_as_a_code_or_a_signal():
    assert exit_reason(3) == "exited with code 3"
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(-(signal.SIGRTMIN + 2)) == f"killed by signal {signal.SIGRTMIN + 2}"  # no name


def test_a_members_thread_settings_are_its_share_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "4")
    env = member_env(1)
    assert (env["PIPELINE_CORES"], env["OPENBLAS_NUM_THREADS"], env["TF_NUM_INTEROP_THREADS"]) == ("1", "1", "4")


def test_a_second_signal_while_stopping_does_not_cut_the_cleanup_short():
    """Ctrl-C reaches a stage and its members, and the stage then sends its members SIGTERM: the
    second signal must not interrupt the cleanup (MLflow's KILLED status, the temporary folder)."""
    interrupts.reset()
    try:
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            interrupts._on_signal(signal.SIGINT, None)
        interrupts._on_signal(signal.SIGTERM, None)  # while the first unwinds: nothing raised
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            interrupts.check()  # the work itself still stops
    finally:
        interrupts.reset()


def test_a_line_is_prefixed_once():
    assert prefixed("train_memory@lstm: seed 0", "train_memory@lstm") == "train_memory@lstm: seed 0"
    assert prefixed("32/32 - 0s - loss: 1.1", "train_memory@lstm") == "train_memory@lstm: 32/32 - 0s - loss: 1.1"


def test_each_member_gets_its_share_of_the_cores(monkeypatch, capfd):
    # Two members on a 4-core budget: each member's own pools (the ARIMA grid) get 2.
    monkeypatch.setenv("PIPELINE_CORES", "4")
    code = "import os; print(os.environ['PIPELINE_CORES'])"
    run_members([Member("a", py(code)), Member("b", py(code))], jobs=2)
    assert sorted(capfd.readouterr().out.splitlines()) == ["a: 2", "b: 2"]


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_core_count_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("PIPELINE_CORES", value)
    with pytest.raises(CommandError, match=rf"^PIPELINE_CORES='{value}': expected a whole number of cores, 1 or more$"):
        cores()


# A member that opens its MLflow run, says so, then dies as native code or the OOM killer would end it: no cleanup.
DIES_IN_ITS_RUN = """
import os, pathlib, signal, sys, time
from stages.lib.infra import tracking
with tracking.stage_run("memory", sys.argv[1], {{}}, inputs=[]):
    {before}
    pathlib.Path(sys.argv[2]).touch()
    {end}
"""


def member_runs(store):
    import sqlite3

    with sqlite3.connect(store / "mlflow.db") as db:
        return dict(db.execute("select name, status from runs"))


def test_a_member_killed_in_its_run_has_the_run_ended_by_the_stage(tmp_path, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    code = DIES_IN_ITS_RUN.format(before="pass", end="os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(CommandError, match=r"^train_memory@lstm: killed by SIGKILL$"):
        run_members([Member("train_memory@lstm", py(code) + ["train_memory@lstm", str(tmp_path / "started")])])
    assert member_runs(tmp_path) == {"train_memory@lstm": "FAILED"}
    assert "train_memory@lstm: killed by SIGKILL, its MLflow run was left RUNNING: ended as FAILED" in capfd.readouterr().err


def test_a_member_killed_after_its_sigterm_grace_has_its_run_ended_killed(tmp_path, monkeypatch):
    """One member fails; the other, deaf to SIGTERM, is killed a grace later: its run ends KILLED, not RUNNING.
    A member that ends normally has its own status, and its run is left as it set it."""
    import importlib

    pytest.importorskip("mlflow")
    parallel = importlib.import_module("stages.lib.infra.parallel")
    monkeypatch.setattr(parallel, "KILL_AFTER_S", 1.0)
    deaf = DIES_IN_ITS_RUN.format(before="signal.signal(signal.SIGTERM, signal.SIG_IGN)", end="time.sleep(120)")
    done = DIES_IN_ITS_RUN.format(before="pass", end="pass")
    failing = (f"import os, sys, time\nwhile not os.path.exists({str(tmp_path / 'deaf')!r}): time.sleep(0.05)\n"
               "sys.exit('error: broken')")
    started = time.perf_counter()
    with pytest.raises(CommandError, match=r"^c: broken$"):
        run_members([Member("a", py(deaf) + ["a", str(tmp_path / "deaf")]),
                     Member("b", py(done) + ["b", str(tmp_path / "done")]), Member("c", py(failing))], jobs=2)
    assert time.perf_counter() - started < 60
    assert member_runs(tmp_path) == {"a": "KILLED", "b": "FINISHED"}
