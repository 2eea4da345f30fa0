"""Stage report: the headline tables of both experiments in reports/summary.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.core import cli
from stages.core.io import read_json, write_text
from stages.core.params import load_params
from stages.core.tasks import TASKS

MEMORY_COLUMNS = [
    ("val_mse", "val MSE", "{:.4f}"),
    ("test_mse", "test MSE", "{:.4f}"),
    ("change_first_pct", "x[0] ×1.5 → Δpred", "{:+.1f}%"),
    ("change_last_pct", "x[-1] ×1.5 → Δpred", "{:+.1f}%"),
    ("blind_first_mse", "blind x[0] MSE", "{:.3f}"),
    ("blind_last_mse", "blind x[-1] MSE", "{:.3f}"),
    ("remembers_first", "remembers x[0]", "{}"),
    ("remembers_first_fraction", "seeds remembering", "{:.0%}"),
    ("seeds", "seeds", "{}"),
    ("epochs_run", "epochs", "{}"),
]
FORECAST_COLUMNS = [("mse", "MSE", "{:.1f}"), ("rmse", "RMSE", "{:.2f}"), ("mae", "MAE", "{:.2f}"),
                    ("mape", "MAPE", "{:.2f}%"), ("mase", "MASE", "{:.3f}")]


def fmt(template: str, value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return template.format(value)


def table(rows: dict[str, dict], columns: list[tuple[str, str, str]], bold: str | None = None) -> list[str]:
    lines = ["| model | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, values in rows.items():
        label = f"**{name}**" if name == bold else name
        lines.append(f"| {label} | " + " | ".join(fmt(t, values.get(k)) for k, _, t in columns) + " |")
    return lines


def memory_section(m: dict, models: list[str]) -> list[str]:
    rows = {name: m[name] for name in models if name in m}
    task = TASKS[m.get("task", "first_last")]
    if task.probed:
        text = ("Probes on held-out sequences. A model that uses x[i] moves its prediction by about +25% when x[i] "
                "is multiplied by 1.5, and has a blinding MSE near 0; one that ignores it moves by about 0% and has "
                "a blinding MSE near 0.285.")
    else:
        text = "This task has no first and last input, so there are no probes: compare the MSE with the baseline."
    text += (" Each row is the median over the model's training seeds (`train_memory.seeds`); the verdict is the "
             "majority of the seeds' verdicts.")
    baseline = m.get("mean_baseline_mse")
    text += f" Predicting the training mean scores test MSE {baseline:.4g}." if baseline is not None else ""
    return [f"## Memory experiment: {task.description}, seq={m['seq']}", "", text, "",
            *table(rows, MEMORY_COLUMNS), ""]


def forecast_section(name: str, f: dict, baselines: list[str]) -> list[str]:
    rows = {k: v for k, v in f.items() if isinstance(v, dict)}
    best = min(rows, key=lambda k: rows[k]["mse"])
    best_baseline = min((b for b in baselines if b in rows), key=lambda k: rows[k]["mse"])
    beaten = [k for k in rows if k not in baselines and rows[k]["mse"] < rows[best_baseline]["mse"]]
    verdict = (f"{', '.join(beaten)} beat the best baseline ({best_baseline})." if beaten
               else f"No model beat the {best_baseline} baseline.")
    filled = f" {f['filled_points']} points were filled by the dataset's fill policy." if f.get("filled_points") else ""
    return [f"### {name}: last {f['n_test']} points, one step ahead (trained on {f['n_train']})", "",
            *table(rows, FORECAST_COLUMNS, bold=best), "", f"Lowest MSE: **{best}**. {verdict}{filled}", ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="folder of memory.json and forecast-<dataset>.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    params = load_params()
    lines = ["# Summary", "", "<!-- Written by the `report` stage of `dvc repro`; do not edit by hand. -->", "",
             *memory_section(read_json(args.metrics / "memory.json"), params.train_memory.models), "## Forecast experiment", ""]
    for name in params.datasets:
        lines += forecast_section(name, read_json(args.metrics / f"forecast-{name}.json"),
                                  params.evaluate_forecast.baselines)
    write_text(args.out, "\n".join(lines).rstrip() + "\n")
    print(f"report: wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
