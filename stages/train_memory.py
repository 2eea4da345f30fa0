"""Stage train_memory@<model>: train one registered model on the memory task."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.core import cli
from stages.core.io import read_arrays, save_with, write_csv
from stages.core.params import load_params
from stages.core.tracking import stage_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a name listed in train_memory.models")
    parser.add_argument("--data", type=Path, required=True, help="folder written by the generate stage")
    parser.add_argument("--model-out", type=Path, required=True, help="trained model (.keras)")
    parser.add_argument("--history", type=Path, required=True, help="per-epoch losses (CSV)")
    args = parser.parse_args(argv)

    params = load_params()
    section = params.train_memory
    if args.model not in section.models:
        raise cli.ParamsError(f"params.yaml: train_memory.models: {args.model!r} is not listed (have: {', '.join(section.models)})")
    spec, fit = section.spec(args.model), section.fit
    data = read_arrays(args.data)
    steps, channels = data["X_train"].shape[1:]

    # Imported here, after params and data are known good: TensorFlow takes seconds to load.
    from stages.core.training import seed_everything, train

    run_params = {"seq": int(steps), "model": args.model, "fit": fit.model_dump(), "arch": spec.model_dump()}
    with stage_run("memory", f"train_memory@{args.model}", run_params, inputs=[args.data]) as run:
        facts = spec.describe(steps)
        run.log_metrics(facts)
        seed_everything(fit.seed)
        model = spec.build(steps, channels)
        print(f"train_memory@{args.model}: seq={steps} params={model.count_params()} {facts or ''}".rstrip())
        history = train(model, data["X_train"], data["y_train"], fit, val=(data["X_val"], data["y_val"]))
        save_with(args.model_out, model.save)
        write_csv(args.history, history)
        run.log_history(history)
        run.log_metrics({"epochs_run": len(history), "best_val_loss": history["val_loss"].min()})
        run.log_artifact(args.model_out, "model")
        run.log_artifact(args.history)
        print(f"train_memory@{args.model}: {len(history)} epochs, best val_loss={history['val_loss'].min():.5f}")


if __name__ == "__main__":
    cli.run(main)
