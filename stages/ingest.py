"""Stage ingest@<dataset>: read a raw CSV, validate it, write a clean time/value CSV.

The series is also checked against the backtest it feeds (enough points before
the first origin for every forecaster in params), so a short file stops here,
naming the file, rather than in one of the backtest stages after others ran.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.core import cli
from stages.core.backtest import check_lengths
from stages.core.io import write_csv
from stages.core.params import load_params
from stages.core.series import load_series


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    ds = params.dataset(args.dataset)
    series = load_series(Path(ds.file), ds.time_col, ds.value_col, ds.fill, ds.freq)
    check_lengths(len(series), ds.file, params.backtest, params.all_forecasters, ds.season_length, params.num_steps)
    write_csv(args.out, series, digits=None)  # data, not a report: no rounding
    filled = int(series["filled"].sum())
    note = f", {filled} filled by policy {ds.fill!r}" if filled else ""
    print(f"ingest@{args.dataset}: {len(series)} points from {ds.file}{note}")


if __name__ == "__main__":
    cli.run(main)
