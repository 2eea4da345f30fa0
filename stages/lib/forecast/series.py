"""Univariate series: loading and validation, differencing, windows.

The statistics fitted on a series (the scaler, the differencing origin) belong
to the forecasters (stages/lib/forecast/), which fit them on the history
before each backtest origin only.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.errors import DataError


# ------------------------------------------------------------------ loading

FILL_POLICIES = ("none", "ffill", "linear")
ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?)?)?$")
OTHER_DELIMITERS = (";", "\t", "|")


def load_series(path: Path, time_col: str, value_col: str, fill: str = "none", freq: str | None = None) -> pd.DataFrame:
    """Read and validate a CSV of one time column and one value column.

    The time column holds integer periods 1, 2, 3, ... when ``freq`` is None, or
    dates at a regular pandas period frequency ``freq`` (``M`` monthly, ``Q``,
    ``Y``, ``W``, ``D``): each date stands for its period, so ``1998-01`` and
    ``1998-01-15`` are both January 1998.

    Returns a frame with columns ``time``, ``value`` and ``filled`` (1 where the
    fill policy supplied the value). Rows are reported by their line number in
    the file (the header is line 1). With ``fill="none"`` a blank value or a
    missing period is an error; ``ffill`` repeats the previous value and
    ``linear`` interpolates between its neighbours.

    Parsed by hand rather than with pandas.read_csv: pandas coerces bad cells to
    NaN or object columns and loses the line a problem came from.
    """
    rows = read_rows(path)
    header = [h.strip() for h in rows[0]]
    ti, vi = column_positions(header, (time_col, value_col), path)
    times, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: expected {len(header)} fields, found {len(row)}")
        parse = parse_int if freq is None else period_parser(freq)
        times.append((parse(row[ti], path, line, time_col), line))
        values.append(parse_float(row[vi], path, line, value_col, allow_missing=fill != "none"))
    if not values:
        raise DataError(f"{path}: no data rows after the header")
    label = (lambda t: t) if freq is None else (lambda t: str(pd.Period(ordinal=t, freq=freq)))
    check_order(times, path, time_col, allow_gaps=fill != "none", label=label)
    frame = fill_missing(path, [t for t, _ in times], values, fill, label)
    frame["time"] = frame["time"].map(label)
    return frame


def read_rows(path: Path) -> list[list[str]]:
    return list(iter_rows(path))


def iter_rows(path: Path) -> Iterator[list[str]]:
    """The CSV's rows one at a time, the checks of the whole file done before the first: a panel of millions of
    points never holds all its rows as lists of strings at once (ingest_panel peaked at 1350 MiB for 2.3 M
    points with them)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate the byte-order mark spreadsheet programs write
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text "
                        "(save the file as UTF-8 CSV)") from None
    if "\x00" in text:
        raise DataError(f"{path}: contains NUL bytes: not a text CSV file")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    lines = text.splitlines()
    del raw, text  # the lines hold what is left to read
    try:
        yield from csv.reader(lines)
    except csv.Error as exc:
        raise DataError(f"{path}: not readable as CSV ({exc})") from None


def column_positions(header: list[str], columns: tuple[str, ...], path: Path) -> list[int]:
    """Where each of ``columns`` is in the header row; a missing one stops with the columns there are."""
    for col in columns:
        if col not in header:
            raise DataError(f"{path}: line 1: column {col!r} not found in the header "
                            f"(columns: {', '.join(header)}){delimiter_hint(header)}")
    return [header.index(col) for col in columns]


def delimiter_hint(header: list[str]) -> str:
    for sep in OTHER_DELIMITERS:
        if len(header) == 1 and sep in header[0]:
            return f"; the file seems to use {sep!r} between fields, but it must be comma-separated"
    return ""


def check_order(times: list[tuple[int, int]], path: Path, col: str, allow_gaps: bool,
                 label: Callable[[int], object] = lambda t: t, owner: str = "dataset") -> None:
    """Times are period numbers here (dates already turned into period ordinals); ``label`` names them;
    ``owner`` is the params.yaml entry whose ``fill`` lets the gap through (a dataset or a panel)."""
    for (before, _), (t, line) in zip(times, times[1:]):
        if t == before:
            raise DataError(f"{path}: line {line}: duplicate time {label(t)} in column {col!r}")
        if t < before:
            raise DataError(f"{path}: line {line}: time {label(t)} is before the previous row's {label(before)} "
                            "(rows must be sorted)")
        if t != before + 1 and not allow_gaps:
            raise DataError(f"{path}: line {line}: gap in column {col!r}, {label(before)} is followed by {label(t)} "
                            f"(expected {label(before + 1)}; or set a fill policy for the {owner} in params.yaml)")


def fill_missing(path: Path, times: list[int], values: list[float], fill: str,
          label: Callable[[int], object] = lambda t: t) -> pd.DataFrame:
    """Put every period from first to last on the index and fill what is missing."""
    observed = pd.Series(values, index=times, dtype=float)
    full = observed.reindex(range(times[0], times[-1] + 1))
    missing = full.isna()
    if fill == "ffill":
        full = full.ffill()
    elif fill == "linear":
        full = full.interpolate(method="linear", limit_area="inside")
    if full.isna().any():
        first = int(full.index[full.isna()][0])
        raise DataError(f"{path}: time {label(first)}: missing value that fill policy {fill!r} cannot fill "
                        "(no value before it" + (" or after it)" if fill == "linear" else ")"))
    return pd.DataFrame({"time": full.index.to_numpy(), "value": full.to_numpy(), "filled": missing.to_numpy().astype(int)})


def parse_int(cell: str, path: Path, line: int, col: str) -> int:
    try:
        return int(cell.strip())
    except ValueError:
        raise DataError(f"{path}: line {line}: time {cell!r} in column {col!r} is not an integer period") from None


def period_parser(freq: str) -> Callable[[str, Path, int, str], int]:
    """A parser of one date cell into the ordinal of its period at ``freq``."""

    def parse(cell: str, path: Path, line: int, col: str) -> int:
        try:
            # ISO dates only: pandas alone would read "January" as January of the year 1.
            if not ISO_DATE.match(cell.strip()):
                raise ValueError(cell)
            return pd.Period(cell.strip(), freq=freq).ordinal
        except (ValueError, TypeError):
            raise DataError(f"{path}: line {line}: time {cell!r} in column {col!r} is not a date "
                            f"(expected ISO dates such as {pd.Period('2000-01-01', freq=freq)!s})") from None

    return parse


def parse_float(cell: str, path: Path, line: int, col: str, allow_missing: bool = False,
                owner: str = "dataset") -> float:
    missing = not cell.strip() or cell.strip().lower() in ("nan", "na", "n/a", "null")
    if missing:
        if allow_missing:
            return float("nan")
        raise DataError(f"{path}: line {line}: missing value {cell.strip()!r} in column {col!r} "
                        f"(or set a fill policy for the {owner} in params.yaml)")
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}: line {line}: value {cell!r} in column {col!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{path}: line {line}: value {cell!r} in column {col!r} is not a finite number")
    return value


# ------------------------------------------------------------ differencing

def difference(y: np.ndarray, order: int) -> np.ndarray:
    """The ``order``-th difference; element j belongs to time j + order."""
    return np.diff(np.asarray(y, dtype=float), n=order)


def undifference_next(diff_value: float | np.ndarray, past: np.ndarray, order: int) -> float | np.ndarray:
    """Level at time t from its ``order``-th difference and the true levels before t.

    Since diff_t = sum_k (-1)^k C(order, k) y_{t-k}, the level is
    y_t = diff_t - sum_{k>=1} (-1)^k C(order, k) y_{t-k}.
    ``past`` may be 1-D (one origin) or 2-D (one row of past levels per origin).
    """
    past = np.asarray(past, dtype=float)
    level = np.asarray(diff_value, dtype=float).copy()
    for k in range(1, order + 1):
        level = level - (-1) ** k * comb(order, k) * past[..., -k]
    return level


# ---------------------------------------------------------------- windows

def make_windows(z: np.ndarray, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``num_steps`` past values (n, num_steps, 1) and the next value (n,)."""
    z = np.asarray(z, dtype=np.float32)
    n = len(z) - num_steps
    if n < 1:
        return np.empty((0, num_steps, 1), np.float32), np.empty((0,), np.float32)
    idx = np.arange(num_steps)[None, :] + np.arange(n)[:, None]
    return z[idx][..., None], z[num_steps:]
