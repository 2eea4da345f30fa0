"""Collect a `seq` sweep into reports/horizon.md and reports/horizon.png: how far back each model remembers.

    dvc exp run --queue -S 'seq=range(10,151,10)' -S 'train_memory.seeds=[0,1,2]'
    dvc queue start -j 2          # wait for `dvc queue status` to show them all done
    python -m stages.horizon      # reads `dvc exp show --json`

For each model it plots the x[0] change probe against `seq` (median over seeds,
whiskers from the lowest to the highest seed) and reports the horizon: the
largest `seq` at which the model still remembers x[0] (majority of seeds), with
the training budget each verdict was made under. Only `first_last` runs count;
when several experiments share a `seq`, the newest wins.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from stages.core import cli
from stages.core.io import save_with, write_text

MEMORY_METRICS = "reports/metrics/memory.json"
ROW_KEYS = ["change_first_pct", "change_first_pct_min", "change_first_pct_max", "blind_first_mse",
            "remembers_first", "remembers_first_fraction", "seeds", "epochs_run", "samples_seen"]


# ------------------------------------------------------------ pure parts

def runs_from_exp_show(shown: list[dict]) -> list[dict]:
    """Every baseline commit and experiment in `dvc exp show --json` with its name, rev, params and metrics."""
    runs = []
    for commit in shown:
        entries = [(commit.get("data") or {}, commit.get("name") or commit.get("rev"), commit.get("rev"), False)]
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                entries.append((data, data.get("name") or exp.get("name"), data.get("rev") or rev.get("rev"), True))
        for data, name, rev, experiment in entries:
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
            memory = ((data.get("metrics") or {}).get(MEMORY_METRICS) or {}).get("data")
            if params and memory:
                runs.append({"name": name, "rev": rev, "experiment": experiment, "timestamp": data.get("timestamp") or "",
                             "params": params, "memory": memory})
    return runs


def horizon_table(runs: list[dict]) -> pd.DataFrame:
    """One row per (seq, model) from first_last runs; the newest run wins a seq."""
    rows = []
    for run in runs:
        params, memory = run["params"], run["memory"]
        if memory.get("task", "first_last") != "first_last" or memory.get("probed_positions") is None:
            continue
        fit = params.get("train_memory", {}).get("fit", {})
        for model in params.get("train_memory", {}).get("models", []):
            result = memory.get(model)
            if not isinstance(result, dict):
                continue
            rows.append({
                "seq": int(memory["seq"]), "model": model, "experiment": run["name"], "timestamp": run["timestamp"],
                "truncate": memory.get("truncate"),
                **{key: result.get(key, result.get(key.removesuffix("_min").removesuffix("_max"))) for key in ROW_KEYS},
                "max_epochs": fit.get("max_epochs"), "batch_size": fit.get("batch_size"),
                "patience": fit.get("patience"), "target_val_loss": fit.get("target_val_loss"),
            })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("timestamp").drop_duplicates(["seq", "model"], keep="last")
    return frame.sort_values(["model", "seq"], kind="stable").reset_index(drop=True)


def horizons(table: pd.DataFrame) -> dict[str, dict]:
    """Per model: the largest seq that still remembers, and the smallest larger seq that does not."""
    out = {}
    for model, rows in table.groupby("model", sort=False):
        remembered = rows.loc[rows["remembers_first"] == True, "seq"]  # noqa: E712 (None is neither)
        largest = int(remembered.max()) if len(remembered) else None
        forgot = rows.loc[(rows["remembers_first"] == False) & (rows["seq"] > (largest or 0)), "seq"]  # noqa: E712
        out[model] = {"remembers_up_to": largest, "forgets_from": int(forgot.min()) if len(forgot) else None,
                      "seqs": sorted(int(s) for s in rows["seq"])}
    return out


def render(table: pd.DataFrame, found: dict[str, dict]) -> str:
    lines = ["# Memory horizon", "",
             "<!-- Written by `python -m stages.horizon` from `dvc exp show`; do not edit by hand. -->", "",
             "How far back each model remembers x[0] on the first+last task: the x[0] change probe (ideal +25%) "
             "and the verdict `remembers_first` (majority of seeds) at each swept `seq`. The horizon is the "
             "largest `seq` at which the model still remembers; it means nothing without the training budget, "
             "so the budget of every verdict is in the table.", "", "## Horizons", "",
             "| model | remembers up to seq | forgets from seq | seqs swept |", "|---|---:|---:|---|"]
    for model, h in found.items():
        up = h["remembers_up_to"] if h["remembers_up_to"] is not None else "never (in the swept range)"
        lines.append(f"| {model} | {up} | {h['forgets_from'] if h['forgets_from'] is not None else '—'} | "
                     f"{', '.join(map(str, h['seqs']))} |")
    lines += ["", "## Every verdict and its budget", "",
              "| model | seq | x[0] Δpred median [min, max] | blind x[0] MSE | remembers (seeds) | epochs run | "
              "samples seen | budget (max epochs, batch, patience, target) | experiment |",
              "|---|---:|---|---:|---|---:|---:|---|---|"]
    for row in table.itertuples():
        fraction = row.remembers_first_fraction
        seeds = f"{'yes' if row.remembers_first else 'no'} ({fraction:.0%} of {int(row.seeds)})" if pd.notna(fraction) else (
            "yes" if row.remembers_first else "no")
        budget = f"{row.max_epochs}, {row.batch_size}, {row.patience}, {row.target_val_loss}"
        change = (f"{row.change_first_pct:+.1f}% [{row.change_first_pct_min:+.1f}, {row.change_first_pct_max:+.1f}]"
                  if pd.notna(row.change_first_pct) else "n/a (every prediction near 0)")
        lines.append(f"| {row.model} | {row.seq} | {change} | {row.blind_first_mse:.3f} | {seeds} | {row.epochs_run} | "
                     f"{row.samples_seen} | {budget} | {row.experiment} |")
    lines += ["", "Wall time per stage is in MLflow (`wall_time_s` of the runs tagged with each `dvc.exp`)."]
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path, ideal: float = 25.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
        median = rows["change_first_pct"].to_numpy()
        spread = [median - rows["change_first_pct_min"].to_numpy(), rows["change_first_pct_max"].to_numpy() - median]
        ax.errorbar(rows["seq"], median, yerr=spread, marker="o", capsize=3, color=f"C{i}", label=model)
    ax.axhline(ideal, color="k", ls="--", lw=1, label=f"uses x[0] (+{ideal:g}%)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="seq", ylabel="x[0] × 1.5 → change of prediction (%)",
           title="Memory horizon: x[0] change probe against seq (whiskers: range over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_with(path, lambda p: fig.savefig(p, dpi=100, metadata={"Software": None}))
    plt.close(fig)


# ------------------------------------------------------------ command

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/horizon.md"))
    parser.add_argument("--figure", type=Path, default=Path("reports/horizon.png"))
    parser.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD")
    args = parser.parse_args(argv)

    shown = cli.dvc_json("exp", "show", *(["--all-commits"] if args.all_commits else [])) or []
    table = horizon_table(runs_from_exp_show(shown))
    if table.empty:
        raise cli.CommandError("no first_last experiment with memory metrics in `dvc exp show`: run the sweep first")
    found = horizons(table)
    write_text(args.out, render(table, found))
    plot(table, args.figure)
    for model, h in found.items():
        print(f"horizon: {model}: remembers up to seq={h['remembers_up_to']}, forgets from seq={h['forgets_from']}")
    print(f"horizon: wrote {args.out} and {args.figure} from {table['seq'].nunique()} seq values")


if __name__ == "__main__":
    cli.run(main)
