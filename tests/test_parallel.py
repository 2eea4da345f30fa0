"""A stage's members over the cores (stages/lib/infra/parallel.py), on tiny Python commands."""

from __future__ import annotations

import time

import pytest

from stages.lib.errors import CommandError
from stages.lib.infra.cores import cores
from stages.lib.infra.parallel import Member, prefixed, run_members


def py(code: str) -> list[str]:
    return ["-c", code]


def test_every_member_runs_and_its_lines_carry_its_label(capfd):
    run_members([Member("backtest@x-arima", py("print('3 origins'); print('backtest@x-arima: done')")),
                 Member("backtest@x-lstm", py("import sys; print('warning', file=sys.stderr)"))], jobs=2)
    out, err = capfd.readouterr()
    assert "backtest@x-arima: 3 origins" in out.splitlines()
    assert "backtest@x-arima: done" in out.splitlines()  # not "backtest@x-arima: backtest@x-arima: done"
    assert err.splitlines() == ["backtest@x-lstm: warning"]


def test_members_run_side_by_side_up_to_jobs(tmp_path):
    # Each member records when it ran; with 2 jobs the first two overlap and the third waits for a free one.
    code = ("import sys, time; t = time.time(); time.sleep(0.6); "
            "open(sys.argv[1], 'w').write(f'{t} {time.time()}')")
    run_members([Member(f"m{i}", ["-c", code, str(tmp_path / f"m{i}")]) for i in range(3)], jobs=2)
    spans = [tuple(map(float, (tmp_path / f"m{i}").read_text().split())) for i in range(3)]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # m0 and m1 overlap
    assert spans[2][0] >= min(spans[0][1], spans[1][1]) - 0.05     # m2 starts once one has ended


def test_a_failing_member_stops_the_others_and_names_itself_and_its_error():
    started = time.perf_counter()
    with pytest.raises(CommandError, match=r"^train_memory@tcn: params\.yaml: train_memory\.arch\.tcn: bad$"):
        run_members([Member("train_memory@lstm", py("import time; time.sleep(60)")),
                     Member("train_memory@tcn", py("import sys; print('error: params.yaml: train_memory.arch.tcn: bad', "
                                                   "file=sys.stderr); sys.exit(2)"))], jobs=2)
    assert time.perf_counter() - started < 30, "the sleeping member was stopped, not waited for"


def test_a_member_that_says_nothing_fails_with_its_exit_code():
    with pytest.raises(CommandError, match=r"^m: exited with code 3$"):
        run_members([Member("m", py("import sys; sys.exit(3)"))])


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
