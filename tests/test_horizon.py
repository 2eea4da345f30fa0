"""Collecting a seq sweep: the newest run per seq, the horizon, the budget beside each verdict."""

from __future__ import annotations

from stages.horizon import horizon_table, horizons, render, runs_from_exp_show


def run(seq: int, remembers: dict[str, bool], timestamp: str = "2026-01-01T00:00:00", task: str = "first_last") -> dict:
    memory = {"task": task, "seq": seq, "probed_positions": {"first": 0, "last": seq - 1}}
    for model, verdict in remembers.items():
        memory[model] = {"change_first_pct": 24.0 if verdict else 0.5, "change_first_pct_min": 20.0 if verdict else 0.0,
                         "change_first_pct_max": 25.0 if verdict else 1.0, "blind_first_mse": 0.01 if verdict else 0.3,
                         "remembers_first": verdict, "remembers_first_fraction": 1.0 if verdict else 0.0, "seeds": 3,
                         "epochs_run": 40, "samples_seen": 80000}
    params = {"seq": seq, "train_memory": {"models": list(remembers), "fit": {"max_epochs": 40, "batch_size": 64,
                                                                            "patience": 10, "target_val_loss": 0.005}}}
    return {"params": {"params.yaml": {"data": params}}, "metrics": {"reports/metrics/memory.json": {"data": memory}},
            "timestamp": timestamp}


def exp_show(*runs: tuple[str, dict]) -> list[dict]:
    base_name, base = runs[0]
    return [{"rev": "abc", "name": base_name, "data": base,
             "experiments": [{"name": name, "revs": [{"rev": name, "data": {**data, "name": name}}]} for name, data in runs[1:]]}]


def test_horizon_is_the_largest_seq_that_remembers():
    shown = exp_show(
        ("main", run(70, {"lstm": False, "tcn": True})),
        ("exp-10", run(10, {"lstm": True, "tcn": True})),
        ("exp-40", run(40, {"lstm": True, "tcn": True})),
        ("exp-50", run(50, {"lstm": False, "tcn": True})),
        ("exp-adding", run(20, {"lstm": True, "tcn": True}, task="adding")),  # not a probe task: left out
    )
    table = horizon_table(runs_from_exp_show(shown))
    assert sorted(table["seq"].unique()) == [10, 40, 50, 70]
    found = horizons(table)
    assert found["lstm"] == {"remembers_up_to": 40, "forgets_from": 50, "seqs": [10, 40, 50, 70]}
    assert found["tcn"]["remembers_up_to"] == 70 and found["tcn"]["forgets_from"] is None
    md = render(table, found)
    assert "| lstm | 40 | 50 | 10, 40, 50, 70 |" in md
    assert "| lstm | 50 | +0.5% [+0.0, +1.0] | 0.300 | no (0% of 3) | 40 | 80000 | 40, 64, 10, 0.005 | exp-50 |" in md


def test_newest_run_wins_a_seq():
    shown = exp_show(
        ("main", run(70, {"lstm": False})),
        ("old", run(30, {"lstm": False}, timestamp="2026-01-01T00:00:00")),
        ("new", run(30, {"lstm": True}, timestamp="2026-02-01T00:00:00")),
    )
    table = horizon_table(runs_from_exp_show(shown))
    (row,) = table[table["seq"] == 30].itertuples()
    assert row.experiment == "new" and bool(row.remembers_first) is True


def test_never_remembering_is_said_in_words():
    table = horizon_table(runs_from_exp_show(exp_show(("main", run(70, {"lstm": False})))))
    found = horizons(table)
    assert found["lstm"]["remembers_up_to"] is None
    assert "| lstm | never (in the swept range) | 70 | 70 |" in render(table, found)
