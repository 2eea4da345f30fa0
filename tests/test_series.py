"""Differencing, its inverse, windows and the train-only scaler."""

from __future__ import annotations

import numpy as np
import pytest

from stages.core.series import (
    DataError,
    difference,
    load_series,
    make_windows,
    min_length,
    prepare,
    levels_from_diffs,
    undifference_next,
)


def test_difference_by_hand():
    y = np.array([1.0, 4.0, 9.0, 16.0])
    np.testing.assert_array_equal(difference(y, 1), [3, 5, 7])
    np.testing.assert_array_equal(difference(y, 2), [2, 2])
    np.testing.assert_array_equal(difference(y, 0), y)


@pytest.mark.parametrize("order", [1, 2])
def test_undifference_inverts_difference(order):
    y = np.random.default_rng(0).normal(size=30).cumsum()
    d = difference(y, order)
    for t in range(order, len(y)):
        assert undifference_next(d[t - order], y[:t], order) == pytest.approx(y[t])


def test_make_windows_by_hand():
    X, y = make_windows(np.arange(6.0), 3)
    assert X.shape == (3, 3, 1)
    np.testing.assert_array_equal(X[:, :, 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(y, [3, 4, 5])


def test_scaler_is_fitted_on_train_only():
    # A huge jump inside the test part must not change the scale.
    y = np.concatenate([np.arange(20.0), [1000.0, 1001.0, 1002.0]])
    prepared = prepare(y, num_steps=3, test_len=3, diff_order=1)
    assert prepared.scale == pytest.approx(1.0)  # max |diff| over the training part
    assert prepared.n_train == 20
    assert np.abs(prepared.X_train).max() <= 1.0
    assert prepared.y_test.max() == pytest.approx(981.0)  # the jump 1000 - 19, scaled by the train scale


def test_prepare_split_sizes_and_targets():
    y = np.arange(45.0) ** 1.5
    p = prepare(y, num_steps=3, test_len=10, diff_order=1)
    assert len(p.y_test) == 10
    assert len(p.y_train) == 45 - 10 - 1 - 3
    # Every training target is a difference of training levels only.
    z = difference(y, 1) / p.scale
    np.testing.assert_allclose(p.y_train, z[3:3 + len(p.y_train)], rtol=1e-6)
    assert 3 + len(p.y_train) + 1 == p.n_train


@pytest.mark.parametrize("order", [0, 1, 2])
def test_perfect_diff_predictions_give_exact_levels(order):
    y = np.random.default_rng(1).normal(size=40).cumsum() + 50
    p = prepare(y, num_steps=4, test_len=6, diff_order=order)
    levels = levels_from_diffs(p.y_test, y, p.n_train, p.scale, order)
    np.testing.assert_allclose(levels, y[-6:], rtol=1e-5)


def test_min_length_matches_prepare():
    need = min_length(num_steps=3, test_len=10, diff_order=1)
    p = prepare(np.arange(float(need)), num_steps=3, test_len=10, diff_order=1)
    assert len(p.y_train) >= 2


def write(tmp_path, text: str):
    path = tmp_path / "s.csv"
    path.write_text(text)
    return path


def test_load_series_accepts_a_good_file(tmp_path):
    frame = load_series(write(tmp_path, "t,v\n1,10\n2,11.5\n3,9\n"), "t", "v")
    assert frame["value"].tolist() == [10, 11.5, 9]
    assert frame["time"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("text, message", [
    ("", "file is empty"),
    ("t,v\n", "no data rows"),
    ("t,x\n1,2\n", "column 'v' not found"),
    ("t,v\n1,2\n2,abc\n", "line 3: value 'abc' in column 'v' is not a number"),
    ("t,v\n1,2\n2,\n", "line 3: missing value '' in column 'v'"),
    ("t,v\n1,2\n2,NA\n", "line 3: missing value 'NA' in column 'v'"),
    ("t,v\n1,2\n2,inf\n", "line 3: value 'inf' in column 'v' is not a finite number"),
    ("t,v\n1.5,2\n", "line 2: time '1.5' in column 't' is not an integer period"),
    ("t;v\n1;2\n", "line 1: column 't' not found .*seems to use ';' between fields"),
    ("t\tv\n1\t2\n", r"seems to use '\\t' between fields"),
    ("t,v\n1,2\n1,3\n", "line 3: duplicate time 1"),
    ("t,v\n2,2\n1,3\n", "line 3: time 1 is before"),
    ("t,v\n1,2\n3,3\n", "line 3: gap in column 't'"),
    ("t,v\n1,2\n2,nan\n", "line 3: missing value 'nan'"),
    ("t,v\n1,2\n2,3,4\n", "line 3: expected 2 fields"),
])
def test_load_series_rejects_bad_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        load_series(path, "t", "v")
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_series_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_series(tmp_path / "nope.csv", "t", "v")


def test_check_length_names_the_source_and_the_params():
    from stages.core.series import check_length

    need = min_length(num_steps=3, test_len=10, diff_order=1)
    check_length(need, "s.csv", num_steps=3, test_len=10, diff_order=1)  # just long enough
    with pytest.raises(DataError, match=rf"^s\.csv: {need - 1} points is too short for num_steps=3, "
                                        rf"preprocess\.test_len=10, preprocess\.diff_order=1 \(needs at least {need}\)$"):
        check_length(need - 1, "s.csv", num_steps=3, test_len=10, diff_order=1)


def test_load_series_accepts_a_byte_order_mark(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufefft,v\n1,10\n2,11\n".encode("utf-8"))
    assert load_series(path, "t", "v")["value"].tolist() == [10, 11]


def test_load_series_names_the_line_of_a_non_utf8_byte(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("t,v\n1,10\n2,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3: byte 0xe9 is not UTF-8 text"):
        load_series(path, "t", "v")


def test_load_series_rejects_binary_files(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"t,v\n\x00\x01\x02")
    with pytest.raises(DataError, match="NUL bytes"):
        load_series(path, "t", "v")


@pytest.mark.parametrize("fill, expected", [
    ("ffill", [1.0, 1.0, 1.0, 4.0, 5.0]),
    ("linear", [1.0, 2.0, 3.0, 4.0, 5.0]),
])
def test_fill_policy_fills_gaps_and_blanks_and_counts_them(tmp_path, fill, expected):
    # time 2 has a blank value, time 3 is missing altogether
    frame = load_series(write(tmp_path, "t,v\n1,1\n2,\n4,4\n5,5\n"), "t", "v", fill=fill)
    assert frame["time"].tolist() == [1, 2, 3, 4, 5]
    assert frame["value"].tolist() == expected
    assert frame["filled"].tolist() == [0, 1, 1, 0, 0]


def test_fill_policy_cannot_invent_a_first_value(tmp_path):
    with pytest.raises(DataError, match=r"time 1: missing value that fill policy 'ffill' cannot fill"):
        load_series(write(tmp_path, "t,v\n1,\n2,3\n"), "t", "v", fill="ffill")
    with pytest.raises(DataError, match=r"time 3: missing value that fill policy 'linear' cannot fill"):
        load_series(write(tmp_path, "t,v\n1,1\n2,3\n3,\n"), "t", "v", fill="linear")


def test_fill_policy_still_rejects_unsorted_times(tmp_path):
    with pytest.raises(DataError, match="line 3: time 1 is before"):
        load_series(write(tmp_path, "t,v\n2,1\n1,3\n"), "t", "v", fill="linear")
