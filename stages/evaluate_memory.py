"""Stage evaluate_memory: held-out error and memory probes for every model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli, metrics
from stages.core.io import read_arrays, write_csv, write_json
from stages.core.params import EvaluateMemoryParams, load_params
from stages.core.paths import seed_file
from stages.core.tasks import TASKS, last_steps
from stages.core.tracking import stage_run

PROBE_COLUMNS = ["change_first_pct", "change_last_pct", "blind_first_mse", "blind_last_mse"]
SPREAD_KEYS = {"val_mse", "test_mse", *PROBE_COLUMNS}  # reported with their range over seeds


def probe_model(predict: metrics.Predict, X: np.ndarray, p: EvaluateMemoryParams) -> dict[str, float | int]:
    """The change and blinding probes at the first and the last position."""
    first, last = 0, X.shape[1] - 1
    change_first, n_first = metrics.change_probe(predict, X, first, p.change_factor, p.min_abs_pred)
    change_last, n_last = metrics.change_probe(predict, X, last, p.change_factor, p.min_abs_pred)
    return {
        "change_first_pct": change_first,
        "change_last_pct": change_last,
        "change_rows_used": min(n_first, n_last),
        "blind_first_mse": metrics.blind_probe(predict, X, p.blind_rows, keep=first, zero=last),
        "blind_last_mse": metrics.blind_probe(predict, X, p.blind_rows, keep=last, zero=first),
    }


def truncated(predict: metrics.Predict, keep: int | None) -> metrics.Predict:
    return lambda X: predict(last_steps(X, keep))


def summarise_seeds(per_seed: list[dict]) -> dict:
    """One model's results over its seeds: the median of each measure, its range, and the verdict.

    ``remembers_first`` is the majority verdict; ``remembers_first_fraction`` the
    fraction of seeds whose verdict is true. Counts (epochs run, samples seen)
    report the median, the budget a typical seed was given. A seed whose probe is
    undefined (every prediction near 0, so no relative change) is left out of
    that probe's median and range rather than making them undefined too.
    """
    summary: dict = {"seeds": len(per_seed)}
    for key in per_seed[0]:
        values = [row[key] for row in per_seed]
        if key == "remembers_first":
            if values[0] is None:
                summary[key] = None
            else:
                fraction = sum(values) / len(values)
                summary[key], summary[f"{key}_fraction"] = fraction > 0.5, fraction
        elif key in SPREAD_KEYS:
            values = np.array(values, dtype=float)
            if np.isnan(values).all():
                summary[key] = summary[f"{key}_min"] = summary[f"{key}_max"] = float("nan")
            else:
                summary[key] = float(np.nanmedian(values))
                summary[f"{key}_min"], summary[f"{key}_max"] = float(np.nanmin(values)), float(np.nanmax(values))
        else:
            median = float(np.median(values))
            summary[key] = int(median) if median.is_integer() else median
    return summary


def verdict(probes: dict[str, float], p: EvaluateMemoryParams) -> bool:
    return metrics.remembers(probes["change_first_pct"], probes["blind_first_mse"], p.ideal_change_pct,
                             p.change_tolerance_pct, p.blind_mse_threshold)


def blinding_table(name: str, predict: metrics.Predict, X: np.ndarray, rows: int) -> pd.DataFrame:
    """Prediction against the kept end, for the blinding plot."""
    frames = []
    for end, keep, zero in (("first", 0, X.shape[1] - 1), ("last", X.shape[1] - 1, 0)):
        blind, values = metrics.blinding_inputs(X, rows, keep=keep, zero=zero)
        frames.append(pd.DataFrame({"model": name, "end": end, "target": values, "prediction": predict(blind)}))
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="folder of <model>/seed-<s>.keras")
    parser.add_argument("--histories", type=Path, required=True, help="folder of <model>/seed-<s>.csv")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--probes", type=Path, required=True, help="probe values per model (CSV, DVC plot)")
    parser.add_argument("--blinding", type=Path, required=True, help="blinding predictions (CSV, DVC plot)")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNGs")
    args = parser.parse_args(argv)

    params = load_params()
    p, names = params.evaluate_memory, params.train_memory.models
    task = TASKS[params.generate.task]
    data = read_arrays(args.data)
    X_test, seq = data["X_test"], data["X_test"].shape[1]

    import keras

    from stages.core import plots
    from stages.core.training import predictor

    seeds = params.train_memory.seeds
    budget = params.train_memory.budget
    run_params = {"task": params.generate.task, "seq": seq, "models": names, "seeds": seeds, "budget": budget,
                  "evaluate": p.model_dump()}
    inputs = [args.data, args.histories, *(args.models / n for n in names)]
    with stage_run("memory", "evaluate_memory", run_params, inputs) as run:
        results: dict[str, dict] = {}
        histories, blinding, probe_rows = {}, [], []
        for name in names:
            per_seed = []
            for seed in seeds:
                model = keras.saving.load_model(args.models / name / seed_file(seed, ".keras"))
                # Probes perturb the full sequence; a truncated model sees only its tail.
                predict = truncated(predictor(model), params.train_memory.truncate)
                history = pd.read_csv(args.histories / name / seed_file(seed, ".csv"))
                # Probes need a first and a last input; the other tasks are scored on error only.
                probes = probe_model(predict, X_test, p) if task.probed else {}
                per_seed.append({
                    "val_mse": metrics.mse(data["y_val"], predict(data["X_val"])),
                    "test_mse": metrics.mse(data["y_test"], predict(X_test)),
                    **probes,
                    "remembers_first": verdict(probes, p) if task.probed else None,
                    # The budget the verdict was made under.
                    "epochs_run": len(history),
                    "best_epoch": int(history["val_loss"].idxmin()) + 1,
                    "samples_seen": len(history) * params.train_memory.samples_per_epoch(len(data["y_train"])),
                })
                label = name if len(seeds) == 1 else f"{name} s{seed}"
                histories[label] = history
                if task.probed:
                    probe_rows.append({"model": name, "seed": seed, "run": label, **probes})
                    if seed == seeds[0]:  # one seed per model keeps the blinding plot readable
                        blinding.append(blinding_table(name, predict, X_test, p.blind_rows))
            # What the architecture can see: a TCN's receptive field and how far it falls short of the input.
            steps = last_steps(X_test, params.train_memory.truncate).shape[1]
            results[name] = {**summarise_seeds(per_seed), **params.train_memory.spec(name).describe(steps)}
            print(f"evaluate_memory: {name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                         for k, v in results[name].items()))

        report = {
            # The budget every verdict below was made under (train_memory.budget).
            "task": params.generate.task, "seq": seq, "truncate": params.train_memory.truncate, "budget": budget,
            "probed_positions": {"first": 0, "last": seq - 1} if task.probed else None,
            # What a model that learned nothing scores: predict the training mean.
            "mean_baseline_mse": metrics.mse(data["y_test"], np.full(len(data["y_test"]), data["y_train"].mean())),
            **results,
        }
        probes_frame = pd.DataFrame(probe_rows, columns=["model", "seed", "run", *PROBE_COLUMNS])
        blinding_frame = (pd.concat(blinding, ignore_index=True) if blinding
                          else pd.DataFrame(columns=["model", "end", "target", "prediction"]))
        write_json(args.metrics, report)
        write_csv(args.probes, probes_frame)
        write_csv(args.blinding, blinding_frame)
        loss_png, probes_png = args.figures / "memory_loss.png", args.figures / "memory_probes.png"
        plots.loss_curves(histories, loss_png, f"memory task, seq={seq}")
        plots.memory_probes(probes_frame, blinding_frame, p.ideal_change_pct, probes_png,
                            f"memory probes, {params.generate.task} task, seq={seq}")

        for name, values in results.items():
            run.log_metrics(values, prefix=f"{name}.")
        for path in (args.metrics, args.probes, args.blinding, loss_png, probes_png):
            run.log_artifact(path)


if __name__ == "__main__":
    cli.run(main)
