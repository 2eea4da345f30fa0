"""Stage preprocess@<dataset>: difference, scale on train only, window, hold out the test part."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli
from stages.core.io import write_arrays, write_json
from stages.core.params import load_params
from stages.core.series import check_length, prepare


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--series", type=Path, required=True, help="CSV written by ingest")
    parser.add_argument("--out", type=Path, required=True, help="folder for the windows (.npy)")
    parser.add_argument("--meta", type=Path, required=True, help="JSON: scale, split, settings")
    args = parser.parse_args(argv)

    params = load_params()
    p, num_steps = params.preprocess, params.num_steps
    series = pd.read_csv(args.series)
    check_length(len(series), params.dataset(args.dataset).file, num_steps, p.test_len, p.diff_order)
    prepared = prepare(series["value"].to_numpy(), num_steps=num_steps, test_len=p.test_len, diff_order=p.diff_order)
    # The scale travels as .npy, exact; the JSON copy is rounded for people to read.
    write_arrays(args.out, {k: np.asarray(v) for k, v in asdict(prepared).items()})
    write_json(args.meta, {"num_steps": num_steps, "diff_order": p.diff_order, "test_len": p.test_len,
                           "n_train": prepared.n_train, "scale": prepared.scale,
                           "train_windows": len(prepared.y_train), "test_windows": len(prepared.y_test)})
    print(f"preprocess@{args.dataset}: {len(prepared.y_train)} training windows, {len(prepared.y_test)} test windows, "
          f"scale={prepared.scale:.4g} (fitted on the first {prepared.n_train} points)")


if __name__ == "__main__":
    cli.run(main)
