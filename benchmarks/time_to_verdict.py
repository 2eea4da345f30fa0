"""Time to a memory verdict: this pipeline's budget against the article's recipe, side by side.

Both run as real DVC experiments in temporary copies (`dvc exp run --temp`),
one after the other on the same machine, forced so that no cache answers:

- ours: `dvc exp run -S seq=69` as params.yaml sets it (early stopping at a
  target or on a plateau, batches of 64, every model in train_memory.models);
- article: its two models (the LSTM and the full-kernel convolution), 1000
  epochs each, batches of 256, no early stopping (the best epoch is kept).

Only the memory stages are timed (`generate`, `train_memory`,
`evaluate_memory`): the forecast branch does not depend on `seq`.

    python benchmarks/time_to_verdict.py                  # both, about 16 min on 2 cores
    python benchmarks/time_to_verdict.py --article-epochs 100   # a shorter article run

Prints the wall times, their ratio and each model's verdict; the experiments
it made are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

SEQ = 69
ARTICLE = ["train_memory.models=[lstm,fullconv]", "train_memory.fit.batch_size=256",
           "train_memory.fit.patience=null", "train_memory.fit.target_val_loss=null"]


def run_exp(name: str, settings: list[str]) -> tuple[float, dict]:
    cmd = ["dvc", "exp", "run", "--temp", "-f", "-n", name, "-S", f"seq={SEQ}",
           *[arg for s in settings for arg in ("-S", s)], "evaluate_memory"]
    print("$ " + " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    shown = subprocess.run(["git", "show", f"refs/exps/{exp_ref(name)}:reports/metrics/memory.json"],
                           capture_output=True, text=True, check=True).stdout
    return elapsed, json.loads(shown)


def exp_ref(name: str) -> str:
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], capture_output=True,
                          text=True, check=True).stdout.split()
    (ref,) = [r for r in refs if r.endswith(f"/{name}")]
    return ref.removeprefix("refs/exps/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--article-epochs", type=int, default=1000)
    args = parser.parse_args()
    stamp = time.strftime("%H%M%S")
    names = {"ours": f"bench-ours-{stamp}", "article": f"bench-article-{stamp}"}
    try:
        results = {
            "ours": run_exp(names["ours"], []),
            "article": run_exp(names["article"], [*ARTICLE, f"train_memory.fit.max_epochs={args.article_epochs}"]),
        }
    finally:
        existing = [n for n in names.values()
                    if subprocess.run(["dvc", "exp", "remove", n], capture_output=True).returncode == 0]
        print(f"removed experiments: {', '.join(existing) or 'none'}")
    for label, (seconds, memory) in results.items():
        verdicts = ", ".join(f"{m}: x[0] {memory[m]['change_first_pct']:+.1f}%, remembers={memory[m]['remembers_first']}, "
                             f"{memory[m]['epochs_run']} epochs" for m in memory if isinstance(memory[m], dict)
                             and "remembers_first" in memory[m])
        print(f"{label:>8}: {seconds:6.1f} s  ({verdicts})")
    ratio = results["article"][0] / results["ours"][0]
    print(f"article / ours wall time: {ratio:.1f}x (article recipe at {args.article_epochs} epochs)")


if __name__ == "__main__":
    main()
