"""Differencing, its inverse, windows, and loading integer and dated series."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stages.lib.forecast.series import (
    DataError,
    difference,
    load_series,
    make_windows,
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


def test_dated_series_at_a_monthly_frequency(tmp_path):
    frame = load_series(write(tmp_path, "m,v\n1999-11,1\n1999-12-31,2\n2000-01-15,3\n"), "m", "v", freq="M")
    assert frame["time"].tolist() == ["1999-11", "1999-12", "2000-01"]  # each date stands for its month
    assert frame["value"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("text, message", [
    ("m,v\n2000-01,1\n2000-03,2\n", "line 3: gap in column 'm', 2000-01 is followed by 2000-03 (expected 2000-02"),
    ("m,v\n2000-01,1\n2000-01-20,2\n", "line 3: duplicate time 2000-01 in column 'm'"),
    ("m,v\n2000-02,1\n2000-01,2\n", "line 3: time 2000-01 is before the previous row's 2000-02"),
    ("m,v\n2000-01,1\nJanuary,2\n", "line 3: time 'January' in column 'm' is not a date"),
])
def test_dated_series_rules_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=re.escape(message)):
        load_series(write(tmp_path, text), "m", "v", freq="M")


def test_dated_series_fill_policy_labels_missing_months(tmp_path):
    frame = load_series(write(tmp_path, "m,v\n2000-01,1\n2000-03,3\n"), "m", "v", fill="linear", freq="M")
    assert frame["time"].tolist() == ["2000-01", "2000-02", "2000-03"]
    assert frame["value"].tolist() == [1, 2, 3] and frame["filled"].tolist() == [0, 1, 0]


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
