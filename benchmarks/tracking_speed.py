"""Time to log one stage's run: the embedded SQLite store against `mlflow server` on PostgreSQL.

    python benchmarks/tracking_speed.py            # 20 runs per store, alternating; about a minute

Starts a throwaway PostgreSQL and `mlflow server` on loopback (tests/servers.py;
needs PostgreSQL installed), then logs the same run alternately to a fresh
local SQLite store and to the server, through the pipeline's own `stage_run`:
the store check, ~30 params, the tags, 40 epochs of two losses as metric
history, 10 final metrics and a 50 kB artifact, which is what one training
stage logs. Alternating puts both stores under the same machine load. The
first run of each store (schema creation, first connection) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from stages.lib.infra.tracking import stage_run  # noqa: E402
from tests.servers import mlflow_server, postgres  # noqa: E402

PARAMS = {"fit": {f"p{i}": i for i in range(20)}, "arch": {"units": [8, 6], "activation": "softplus"},
          "seq": 70, "model": "lstm", "seed": 0}
HISTORY = pd.DataFrame({"epoch": range(1, 41), "loss": [1 / e for e in range(1, 41)],
                        "val_loss": [1.1 / e for e in range(1, 41)]})


def log_one(uri: str, artifact: Path, k: int) -> float:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    started = time.perf_counter()
    with stage_run("bench", f"bench@{k}", PARAMS, inputs=[artifact], tags={"bench": "tracking_speed"}) as run:
        run.log_history(HISTORY)
        run.log_metrics({f"m{i}": i / 10 for i in range(10)})
        run.log_artifact(artifact)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tracking-speed-"))
    artifact = work / "forecasts.csv"
    artifact.write_text("".join(f"{i},{i * 0.5:.6f},{i * 0.25:.6f}\n" for i in range(2500)))
    local = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["DVC_ROOT"] = str(work)  # the embedded store's artifacts go under work/ too
    with postgres() as database, mlflow_server(database, work / "server-artifacts") as server:
        times: dict[str, list[float]] = {"local SQLite": [], "server (PostgreSQL)": []}
        for k in range(args.runs + 1):
            for name, uri in (("local SQLite", local), ("server (PostgreSQL)", server)):
                times[name].append(log_one(uri, artifact, k))
    print(f"\nOne stage's run logged, {args.runs} runs per store, alternating (first run apart):\n")
    print("| store | first run | median | min | max |\n|---|---:|---:|---:|---:|")
    for name, values in times.items():
        rest = values[1:]
        print(f"| {name} | {values[0]:.3f} s | {statistics.median(rest):.3f} s | {min(rest):.3f} s | {max(rest):.3f} s |")
    local_median, server_median = (statistics.median(v[1:]) for v in times.values())
    print(f"\nserver / local (median): {server_median / local_median:.2f}")


if __name__ == "__main__":
    main()
