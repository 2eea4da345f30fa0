"""Stage generate: fixed-seed train/val/test sets of the memory task."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.config import load_params
from stages.lib.infra import cli
from stages.lib.infra.io import write_arrays
from stages.lib.memory.tasks import make_splits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for X_*.npy and y_*.npy")
    args = parser.parse_args(argv)

    params = load_params()
    g = params.generate
    splits = make_splits(g.task, params.seq, g.seed, {"train": g.n_train, "val": g.n_val, "test": g.n_test})
    arrays = {f"{kind}_{split}": getattr(data, kind) for split, data in splits.items() for kind in ("X", "y")}
    write_arrays(args.out, arrays)
    print(f"generate: task={g.task} seq={params.seq} " + " ".join(f"{s}={len(d.y)}" for s, d in splits.items()))


if __name__ == "__main__":
    cli.run(main)
