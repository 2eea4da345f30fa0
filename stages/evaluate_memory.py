"""Stage evaluate_memory: held-out error and memory probes for every model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core import cli, metrics
from stages.core.io import read_arrays, write_csv, write_json
from stages.core.params import EvaluateMemoryParams, load_params
from stages.core.tracking import stage_run


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
    parser.add_argument("--models", type=Path, required=True, help="folder of <model>.keras")
    parser.add_argument("--histories", type=Path, required=True, help="folder of <model>.csv")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--probes", type=Path, required=True, help="probe values per model (CSV, DVC plot)")
    parser.add_argument("--blinding", type=Path, required=True, help="blinding predictions (CSV, DVC plot)")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNGs")
    args = parser.parse_args(argv)

    params = load_params()
    p, names = params.evaluate_memory, params.train_memory.models
    data = read_arrays(args.data)
    X_test, seq = data["X_test"], data["X_test"].shape[1]

    import keras

    from stages.core import plots
    from stages.core.training import predictor

    run_params = {"seq": seq, "models": names, "evaluate": p.model_dump()}
    inputs = [args.data, args.histories, *(args.models / f"{n}.keras" for n in names)]
    with stage_run("memory", "evaluate_memory", run_params, inputs) as run:
        results: dict[str, dict] = {}
        histories, blinding = {}, []
        for name in names:
            model = keras.saving.load_model(args.models / f"{name}.keras")
            predict = predictor(model)
            history = pd.read_csv(args.histories / f"{name}.csv")
            probes = probe_model(predict, X_test, p)
            results[name] = {
                "val_mse": metrics.mse(data["y_val"], predict(data["X_val"])),
                "test_mse": metrics.mse(data["y_test"], predict(X_test)),
                **probes,
                "remembers_first": verdict(probes, p),
                # The budget the verdict was made under.
                "epochs_run": len(history),
                "best_epoch": int(history["val_loss"].idxmin()) + 1,
                "samples_seen": len(history) * len(data["y_train"]),
            }
            histories[name] = history
            blinding.append(blinding_table(name, predict, X_test, p.blind_rows))
            print(f"evaluate_memory: {name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                         for k, v in results[name].items()))

        report = {"seq": seq, "probed_positions": {"first": 0, "last": seq - 1}, **results}
        probes_frame = pd.DataFrame([{"model": n, **{k: r[k] for k in ("change_first_pct", "change_last_pct",
                                     "blind_first_mse", "blind_last_mse")}} for n, r in results.items()])
        blinding_frame = pd.concat(blinding, ignore_index=True)
        write_json(args.metrics, report)
        write_csv(args.probes, probes_frame)
        write_csv(args.blinding, blinding_frame)
        loss_png, probes_png = args.figures / "memory_loss.png", args.figures / "memory_probes.png"
        plots.loss_curves(histories, loss_png, f"memory task, seq={seq}")
        plots.memory_probes(probes_frame, blinding_frame, p.ideal_change_pct, probes_png, f"memory probes, seq={seq}")

        for name, values in results.items():
            run.log_metrics(values, prefix=f"{name}.")
        for path in (args.metrics, args.probes, args.blinding, loss_png, probes_png):
            run.log_artifact(path)


if __name__ == "__main__":
    cli.run(main)
