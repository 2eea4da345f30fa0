"""Stage train_memory: train the registered models of train_memory.models on the memory task, once per seed.

``--model NAME`` trains one model into ``--model-out`` and ``--history``;
``--all`` trains every listed model into ``--model-out/<model>`` and
``--history/<model>``, each model as its own ``--model`` process, as many at
once as there are cores (stages/lib/infra/parallel.py). Either way each model
has its own MLflow run, train_memory@<model>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.config import load_params
from stages.lib.errors import ParamsError
from stages.lib.infra import cli
from stages.lib.infra.io import atomic_dir, read_arrays, write_csv
from stages.lib.infra.parallel import Member, run_members
from stages.lib.infra.paths import seed_file
from stages.lib.infra.tracking import stage_run
from stages.lib.memory.tasks import TASKS, last_steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a name listed in train_memory.models")
    which.add_argument("--all", action="store_true", help="every model of train_memory.models, over the cores")
    parser.add_argument("--data", type=Path, required=True, help="folder written by the generate stage")
    parser.add_argument("--model-out", type=Path, required=True,
                        help="folder: one seed-<s>.keras per seed (with --all: one such folder per model)")
    parser.add_argument("--history", type=Path, required=True,
                        help="folder: per-epoch losses, one seed-<s>.csv per seed (with --all: one such folder per model)")
    args = parser.parse_args(argv)

    params = load_params()
    section = params.train_memory
    if args.all:
        # The order of train_memory.models is the order they start in: the slowest (lstm) first.
        with atomic_dir(args.model_out) as models, atomic_dir(args.history) as histories:
            run_members([Member(f"train_memory@{m}", ["-m", "stages.train_memory", "--model", m, "--data", str(args.data),
                                                     "--model-out", str(models / m), "--history", str(histories / m)])
                         for m in section.models])
        return
    if args.model not in section.models:
        raise ParamsError(f"params.yaml: train_memory.models: {args.model!r} is not listed (have: {', '.join(section.models)})")
    spec, fit = section.spec(args.model), section.resolved_fit()
    data = read_arrays(args.data)
    seq = data["X_train"].shape[1]
    X_train, X_val = last_steps(data["X_train"], section.truncate), last_steps(data["X_val"], section.truncate)
    steps, channels = X_train.shape[1:]

    # Imported here, after params and data are known good: TensorFlow takes seconds to load.
    from stages.lib.nn.training import FreshBatches, seed_everything, train

    task = TASKS[params.generate.task]

    def training_data(seed: int):
        """The fixed training set, or the article's fresh samples every epoch, drawn from the seeds."""
        if section.fresh_batches() is None:
            return X_train, data["y_train"]

        def draw(n, rng):
            fresh = task.generate(n, seq, rng)
            return last_steps(fresh.X, section.truncate), fresh.y

        return FreshBatches(draw, section.fresh_batches(), fit.batch_size, seed=(params.generate.seed, seed)), None

    run_params = {"seq": int(seq), "truncate": section.truncate, "seeds": section.seeds, "model": args.model,
                  "budget": section.budget, "samples_per_epoch": section.samples_per_epoch(len(data["y_train"])),
                  "fit": fit.model_dump(exclude={"seed"}), "arch": spec.model_dump()}
    with stage_run("memory", f"train_memory@{args.model}", run_params, inputs=[args.data]) as run, \
            atomic_dir(args.model_out) as models, atomic_dir(args.history) as histories:
        facts = spec.describe(steps)
        run.log_metrics(facts)
        seen = f" (last {steps} steps)" if steps < seq else ""
        for seed in section.seeds:
            seed_everything(seed)
            model = spec.build(steps, channels)
            print(f"train_memory@{args.model}: seed {seed}, seq={seq}{seen}, {section.budget} budget, "
                  f"{model.count_params()} weights "
                  f"{facts or ''}".rstrip())
            history = train(model, *training_data(seed), fit, val=(X_val, data["y_val"]), xla=spec.xla)
            model.save(models / seed_file(seed, ".keras"))
            write_csv(histories / seed_file(seed, ".csv"), history)
            run.log_history(history, prefix=f"seed{seed}.")
            # Whether XLA ran (Keras falls back for a layer it cannot compile), not only whether it was asked for.
            run.log_metrics({f"seed{seed}.epochs_run": len(history), f"seed{seed}.best_val_loss": history["val_loss"].min(),
                             f"seed{seed}.xla": int(model.jit_compile)})
            print(f"train_memory@{args.model}: seed {seed}: {len(history)} epochs{', XLA' if model.jit_compile else ''}, "
                  f"best val_loss={history['val_loss'].min():.5f}")
        for path in sorted(models.iterdir()):
            run.log_artifact(path, "model")
        for path in sorted(histories.iterdir()):
            run.log_artifact(path, "history")


if __name__ == "__main__":
    cli.run(main)
