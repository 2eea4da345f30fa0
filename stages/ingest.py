"""Stage ingest@<dataset>: read a raw CSV, validate it, write a clean time/value CSV.

It reads only the dataset's own params: whether the series is long enough for
a forecaster's backtest is checked by that forecaster's stage, which reads its
params (and by `python -m stages.tools.check` for all of them, before a run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.config import load_params
from stages.lib.forecast.series import load_series
from stages.lib.infra import cli
from stages.lib.infra.io import write_csv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    ds = params.dataset(args.dataset)
    series = load_series(Path(ds.file), ds.time_col, ds.value_col, ds.fill, ds.freq)
    write_csv(args.out, series, digits=None)  # data, not a report: no rounding
    filled = int(series["filled"].sum())
    note = f", {filled} filled by policy {ds.fill!r}" if filled else ""
    print(f"ingest@{args.dataset}: {len(series)} points from {ds.file}{note}")


if __name__ == "__main__":
    cli.run(main)
