"""Stage evaluate_memory: held-out error and memory probes for every model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.config import load_params
from stages.lib.infra import cli
from stages.lib.infra.io import read_arrays, write_csv, write_json
from stages.lib.infra.paths import seed_file
from stages.lib.infra.tracking import stage_run
from stages.lib.memory.probes import (PROBE_COLUMNS, blinding_table, mse, probe_model, summarise_seeds, truncated,
                                      verdict)
from stages.lib.memory.tasks import TASKS, last_steps


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

    from stages.lib.infra import plots
    from stages.lib.nn.training import predictor

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
                    "val_mse": mse(data["y_val"], predict(data["X_val"])),
                    "test_mse": mse(data["y_test"], predict(X_test)),
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
            "mean_baseline_mse": mse(data["y_test"], np.full(len(data["y_test"]), data["y_train"].mean())),
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
