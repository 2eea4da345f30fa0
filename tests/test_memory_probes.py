"""The memory probes, the verdict and the seed summary on models with known answers; the synthetic tasks."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.memory import probes

def sequences(n=2000, seq=10, seed=0):
    return np.random.default_rng(seed).standard_normal((n, seq, 1)).astype(np.float32)


def test_change_probe_on_the_ideal_model():
    X = sequences()
    ideal = lambda X: X[:, 0, 0] + X[:, -1, 0]  # noqa: E731
    pct, used = probes.change_probe(ideal, X, 0, 1.5, 0.05)
    assert pct == pytest.approx(25.0, abs=3.0)
    assert 0 < used <= len(X)


def test_change_probe_on_a_model_that_ignores_x0():
    X = sequences()
    last_only = lambda X: X[:, -1, 0]  # noqa: E731
    assert probes.change_probe(last_only, X, 0, 1.5, 0.05)[0] == pytest.approx(0.0, abs=1e-9)
    # ... and that uses x[-1] alone: every row moves by exactly +50%.
    assert probes.change_probe(last_only, X, -1, 1.5, 0.05)[0] == pytest.approx(50.0)


def test_change_probe_is_row_by_row_and_skips_near_zero_predictions():
    X = np.ones((3, 4, 1), np.float32)
    X[1] = 0.0  # prediction exactly 0 here: no relative change
    model = lambda X: 2 * X[:, 0, 0]  # noqa: E731
    pct, used = probes.change_probe(model, X, 0, 1.5, 0.05)
    assert used == 2
    assert pct == pytest.approx(50.0)


def test_blinding_probe():
    X = sequences(n=20)
    ideal = lambda X: X[:, 0, 0] + X[:, -1, 0]  # noqa: E731
    assert probes.blind_probe(ideal, X, 10, keep=0, zero=-1) == pytest.approx(0.0, abs=1e-12)
    last_only = lambda X: X[:, -1, 0]  # noqa: E731
    # Ignoring x[0] costs mean((i/10)^2) = 0.285.
    assert probes.blind_probe(last_only, X, 10, keep=0, zero=-1) == pytest.approx(0.285, abs=1e-6)


@pytest.mark.parametrize("change, blind, expected", [
    (25.0, 0.0, True), (20.0, 0.04, True), (10.0, 0.0, False), (25.0, 0.2, False), (float("nan"), 0.0, False),
])
def test_verdict_rule(change, blind, expected):
    assert probes.remembers(change, blind, ideal_pct=25.0, tolerance_pct=7.5, blind_threshold=0.05) is expected


# ------------------------------------------------------------------ tasks

def test_each_task_target_matches_its_definition():
    from stages.lib.memory.tasks import TASKS

    rng = np.random.default_rng(0)
    d = TASKS["first_last"].generate(50, 7, rng)
    np.testing.assert_allclose(d.y, d.X[:, 0, 0] + d.X[:, -1, 0])

    d = TASKS["adding"].generate(500, 30, rng)
    values, marker = d.X[..., 0], d.X[..., 1]
    assert d.X.shape == (500, 30, 2)
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(marker)) == {0.0, 1.0} and (marker.sum(axis=1) == 2).all()
    np.testing.assert_allclose(d.y, [v[m == 1].sum() for v, m in zip(values, marker)], rtol=1e-6)
    # marked positions spread over the whole sequence, as the task demands
    assert marker[:, 0].sum() > 0 and marker[:, -1].sum() > 0
    assert np.var(d.y) == pytest.approx(2 / 12, rel=0.15)  # the 0.167 of predicting the mean

    d = TASKS["sincos"].generate(200, 12, rng)
    assert d.X.shape == (200, 12, 1)
    last, before = d.X[:, -1, 0].astype(float), d.X[:, -2, 0].astype(float)
    # cos at the last step: its size from sin^2 + cos^2 = 1, its sign from the slope of sin there
    np.testing.assert_allclose(np.abs(d.y), np.sqrt(1 - last ** 2), atol=1e-3)  # float32 inputs
    clear = np.abs(d.y) > 0.3
    assert (np.sign(d.y[clear]) == np.sign(last - before)[clear]).all()


def test_tasks_are_seeded():
    from stages.lib.memory.tasks import make_splits

    for task in ("first_last", "adding", "sincos"):
        a = make_splits(task, 9, seed=3, sizes={"train": 20, "val": 5})
        b = make_splits(task, 9, seed=3, sizes={"train": 20, "val": 5})
        np.testing.assert_array_equal(a["train"].X, b["train"].X)
        np.testing.assert_array_equal(a["val"].y, b["val"].y)


def test_truncation_loses_the_first_input_by_construction():
    from stages.lib.memory.probes import truncated

    X = np.random.default_rng(0).standard_normal((40, 8, 1)).astype(np.float32)

    def sum_of_ends(X):  # a perfect first+last model on whatever it is shown
        return X[:, 0, 0] + X[:, -1, 0]

    full, _ = probes.change_probe(sum_of_ends, X, 0, 1.5, 0.05)
    cut, _ = probes.change_probe(truncated(sum_of_ends, 3), X, 0, 1.5, 0.05)
    assert full > 10 and cut == 0.0
    np.testing.assert_array_equal(truncated(lambda X: X.shape[1] * np.ones(len(X)), 3)(X), 3)
    np.testing.assert_array_equal(truncated(lambda X: X.shape[1] * np.ones(len(X)), None)(X), 8)


def test_seeds_summarised_by_median_range_and_majority_verdict():
    from stages.lib.memory.probes import summarise_seeds

    per_seed = [
        {"val_mse": 0.1, "change_first_pct": 24.0, "remembers_first": True, "epochs_run": 10},
        {"val_mse": 0.3, "change_first_pct": 2.0, "remembers_first": False, "epochs_run": 40},
        {"val_mse": 0.2, "change_first_pct": 22.0, "remembers_first": True, "epochs_run": 12},
    ]
    s = summarise_seeds(per_seed)
    assert s["seeds"] == 3
    assert (s["val_mse"], s["val_mse_min"], s["val_mse_max"]) == (0.2, 0.1, 0.3)
    assert (s["change_first_pct"], s["change_first_pct_min"], s["change_first_pct_max"]) == (22.0, 2.0, 24.0)
    assert s["remembers_first"] is True and s["remembers_first_fraction"] == pytest.approx(2 / 3)
    assert s["epochs_run"] == 12 and "epochs_run_min" not in s
    assert summarise_seeds([{"remembers_first": None}])["remembers_first"] is None
    # a tie is not a majority
    tie = summarise_seeds([{"remembers_first": True}, {"remembers_first": False}])
    assert tie["remembers_first"] is False and tie["remembers_first_fraction"] == 0.5


def test_a_seed_with_an_undefined_probe_does_not_blank_the_others():
    from stages.lib.memory.probes import summarise_seeds

    per_seed = [{"change_first_pct": 0.1, "remembers_first": False},
                {"change_first_pct": float("nan"), "remembers_first": False},  # predicted ~0 everywhere
                {"change_first_pct": 0.3, "remembers_first": False}]
    s = summarise_seeds(per_seed)
    assert s["change_first_pct"] == pytest.approx(0.2)
    assert (s["change_first_pct_min"], s["change_first_pct_max"]) == (0.1, 0.3)
    assert np.isnan(summarise_seeds(per_seed[1:2])["change_first_pct"])
