"""Whole-pipeline speed: `dvc repro -f` per stage, and what a stage's process exit costs.

    python benchmarks/pipeline_speed.py                  # one forced repro, then the exit comparison
    python benchmarks/pipeline_speed.py --repros 3       # three repros, one after the other
    python benchmarks/pipeline_speed.py --repros 0 --exits 10   # only the exit comparison
    python benchmarks/pipeline_speed.py --against HEAD~1 --repros 2   # this checkout against another commit

1. `dvc repro -f` in this repository, with its params (it rewrites the outputs,
   byte-identical but for the saved Keras files): the wall time of each run, and
   per stage the time from its "Running stage" line to the next one (the stage's
   process and DVC's bookkeeping), grouped into the memory branch, the forecast
   branch and the report.
2. The exit of a stage's process, side by side: a child imports what a Keras
   stage imports (pandas, MLflow's SQLite store, TensorFlow) and builds a small
   model, then ends as Python ends a process or with `cli.exit_now`, the two
   alternating; the median time of each and their ratio.

Timings are printed, never written into the repository.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")

CHILD = """
import sys, pandas, mlflow, mlflow.store.tracking.sqlalchemy_store, keras
keras.Sequential([keras.Input((3, 1)), keras.layers.LSTM(8), keras.layers.Dense(1)])(pandas.DataFrame({"x": [0.0] * 3}).to_numpy()[None])
if sys.argv[1] == "exit_now":
    from stages.lib.infra.cli import exit_now
    exit_now(0)
"""


def branch(stage: str) -> str:
    if stage.startswith(("generate", "train_memory", "evaluate_memory")):
        return "memory"
    return "report" if stage == "report" else "forecast"


def timed_repro(root: Path = ROOT) -> tuple[float, dict[str, float]]:
    """One `dvc repro -f` in ``root``, its output followed line by line; wall time and seconds per stage."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []
    with subprocess.Popen(["dvc", "repro", "-f"], cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            found = STAGE_LINE.match(line)
            if found:
                marks.append((found.group(1), time.perf_counter()))
                print(f"  {marks[-1][1] - started:6.1f} s  {found.group(1)}", flush=True)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"dvc repro -f failed ({proc.returncode})")
    ends = [t for _, t in marks[1:]] + [started + total]
    return total, {stage: end - begin for (stage, begin), end in zip(marks, ends, strict=True)}


@contextmanager
def worktree(rev: str | None) -> Iterator[Path | None]:
    """A temporary git worktree of ``rev`` (None: nothing), removed afterwards with its outputs."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), rev], cwd=ROOT, check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def timed_exit(mode: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repros", type=int, default=1, help="forced repros to time (0: none)")
    parser.add_argument("--exits", type=int, default=6, help="child processes per exit variant (0: none)")
    parser.add_argument("--against", metavar="REV", help="also time a git worktree of REV, alternating with this checkout")
    args = parser.parse_args()

    runs, other = [], []
    with worktree(args.against) as base:
        for k in range(args.repros):
            for label, root, into in (("this checkout", ROOT, runs), (args.against, base, other)):
                if root is None:
                    continue
                print(f"dvc repro -f in {label}, run {k + 1} of {args.repros}:", flush=True)
                into.append(timed_repro(root))
                print(f"  total {into[-1][0]:.1f} s", flush=True)
    if other:
        ours, theirs = (statistics.median(total for total, _ in r) for r in (runs, other))
        print(f"\nwhole `dvc repro -f`, median of {len(runs)}: this checkout {ours:.1f} s, {args.against} "
              f"{theirs:.1f} s: {ours / theirs:.2f}x the time")
    if runs:
        print("\n| stage | " + " | ".join(f"run {k + 1}" for k in range(len(runs))) + " |")
        print("|---|" + "---:|" * len(runs))
        for stage in runs[0][1]:
            print(f"| {stage} | " + " | ".join(f"{per.get(stage, float('nan')):.1f} s" for _, per in runs) + " |")
        for name in ("memory", "forecast", "report"):
            sums = [sum(t for s, t in per.items() if branch(s) == name) for _, per in runs]
            print(f"| **{name if name == 'report' else name + ' branch'}** | " + " | ".join(f"{t:.1f} s" for t in sums) + " |")
        print("| **whole `dvc repro -f`** | " + " | ".join(f"{total:.1f} s" for total, _ in runs) + " |")

    if args.exits:
        times: dict[str, list[float]] = {"python": [], "exit_now": []}
        for _ in range(args.exits):
            for mode in times:  # alternating, so both see the same machine load
                times[mode].append(timed_exit(mode))
        python, fast = (statistics.median(v) for v in times.values())
        print(f"\nA Keras stage's imports, then the process exit ({args.exits} each, alternating, median): "
              f"Python's own exit {python:.2f} s, cli.exit_now {fast:.2f} s: {python - fast:.2f} s saved "
              f"per process ({fast / python:.2f}x the time)")


if __name__ == "__main__":
    main()
