"""Validate params.yaml, every dataset and every panel without training: run it before a long sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.config import load_params
from stages.lib.forecast.backtest import check_lengths
from stages.lib.panel.load import min_length, read_panel, screen
from stages.lib.forecast.series import load_series
from stages.lib.infra import cli


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    for name, ds in params.datasets.items():
        series = load_series(Path(ds.file), ds.time_col, ds.value_col, ds.fill, ds.freq)
        check_lengths(len(series), ds.file, params.backtest_for(name), params.forecasters_of(name), ds.season_length, params.num_steps)
        print(f"check: dataset {name}: {len(series)} points, ok")
    for name, spec in params.panels.items():
        # Every series of the panel, whatever panel_sample keeps: a sweep may set it to null.
        panel, source = read_panel(spec)
        need = min_length(params.panel_specs(name).values(), spec.horizon, spec.season_length, params.num_steps,
                          spec.short_series)
        kept, skipped = screen(panel, need, spec.short_series, name)
        note = f", {len(skipped)} too short and skipped" if skipped else ""
        print(f"check: panel {name}: {kept['id'].nunique()} series from {source}{note}, ok")
    print(f"check: params.yaml ok (seq={params.seq}, num_steps={params.num_steps}, "
          f"memory models: {', '.join(params.train_memory.models)}, forecasters: {', '.join(params.all_forecasters)})")


if __name__ == "__main__":
    cli.run(main)
