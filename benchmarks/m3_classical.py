"""The classical set on all of M3 through the real stages, intervals included: the measurement behind
docs/m3_classical.md (issue 25's coverage goal: 95% intervals within 5 points of 95% on the M3 panels).

In a throwaway copy of the project (--results/project), whose params run the four M3 panels on every
series (panel_sample null) with no Keras model (panel_models empty; the deep models' run is
benchmarks/m3_deep.py), it runs per panel ingest_panel, panel@ (every forecaster of `baselines:` and
`statistical:`, plus the calibration forecasts of the split-conformal intervals) and evaluate_panel,
then the report stage, and writes --report: each stage's wall time, and the copy's reports/panels.md
(scores, intervals, Friedman tests, critical-difference diagrams) as it came out.

Each stage's result is kept in --results as soon as it is done, and a rerun skips it, so a run cut short
loses only the stage it was in; --fresh starts again (after a change to the code or params.yaml).

    nohup python benchmarks/m3_classical.py > benchmarks/results/m3_classical.log 2>&1 &   # 45 min measured on 2 cores
    python benchmarks/m3_classical.py --panels m3_other --sample 24 --results <dir> --report <file>  # the CI test's
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
import dask_scale  # noqa: E402  (one stage in its own process, its wall time and peak memory; kept results)
from dask_scale import run_stage  # noqa: E402
from project import clean_env, copy_project  # noqa: E402

M3 = ["m3_yearly", "m3_quarterly", "m3_monthly", "m3_other"]
cached = functools.partial(dask_scale.cached, label="m3_classical")


def bench_params(params: dict, panels: list[str], sample: int | None) -> dict:
    """The repository's params with only ``panels`` run, ``sample`` series each (None: all), no Keras model."""
    params["run_panels"], params["panel_sample"], params["panel_models"] = panels, sample, {}
    return params


def make_project(root: Path, panels: list[str], sample: int | None) -> Path:
    """A copy of the project (made once) with this checkout's code and the benchmark's params."""
    copy = root / "project"
    if not copy.exists():
        tmp = root / "project.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        copy_project(tmp)
        tmp.rename(copy)
    shutil.copytree(ROOT / "stages", copy / "stages", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    params = bench_params(yaml.safe_load((ROOT / "params.yaml").read_text()), panels, sample)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return copy


def measure(results: Path, panels: list[str], sample: int | None) -> dict:
    copy = make_project(results, panels, sample)
    env = {**clean_env(), "PIPELINE_TRACKING": "off", "PIPELINE_CORES": "2"}
    m: dict = {}
    for p in panels:
        series = f"data/panel/{p}/series.csv"
        m[f"ingest_{p}"] = cached(results, f"ingest_{p}", lambda p=p, s=series: run_stage(
            copy, ["stages.ingest_panel", "--panel", p, "--out", s], env, copy / s))
        out = f"data/panel/{p}/forecasts.csv"
        m[f"panel_{p}"] = cached(results, f"panel_{p}", lambda p=p, s=series, o=out: run_stage(
            copy, ["stages.panel", "--panel", p, "--series", s, "--out", o], env, copy / o))
        (copy / f"data/panel/{p}/models").mkdir(parents=True, exist_ok=True)
        m[f"evaluate_{p}"] = cached(results, f"evaluate_{p}", lambda p=p, s=series, o=out: run_stage(
            copy, ["stages.evaluate_panel", "--panel", p, "--series", s, "--forecasts", o,
                   "--models", f"data/panel/{p}/models", "--scores", f"reports/panels/{p}.csv",
                   "--metrics", f"reports/metrics/panel-{p}.json", "--cd-figure", f"reports/figures/cd-{p}.png"],
            env, copy / f"reports/panels/{p}.csv"))
    # The report is cheap and reads every panel's metrics: always run again.
    (results / "report.json").unlink(missing_ok=True)
    m["report"] = cached(results, "report", lambda: run_stage(copy, dask_scale.REPORT_ARGS, env,
                                                              copy / "reports/summary.md"))
    return m


def report(m: dict, copy: Path, panels: list[str], sample: int | None, figures: Path, report_path: Path) -> str:
    """--report: the stages' wall times, then the copy's reports/panels.md with its figures beside --report."""
    scope = "every series" if sample is None else f"a sample of {sample} series per panel"
    lines = ["# The classical set on M3, with intervals", "",
             f"Written by `python benchmarks/m3_classical.py` ({scope}; {', '.join(panels)}), through the real "
             "stages in a copy of the project whose params run these panels and no Keras model, on the 2-core "
             "machine. Wall times are one run each; other work shared the machine for part of it, so they are an "
             "upper bound, not a benchmark of speed. Everything under the line below is that copy's "
             "reports/panels.md as the `report` stage wrote it.", "",
             "| stage | wall s | peak MiB |", "|---|---:|---:|"]
    for key, r in m.items():
        if key != "report":
            stage = re.sub(r"^(ingest|panel|evaluate)_", lambda g: {"ingest_": "ingest_panel@", "panel_": "panel@",
                                                                    "evaluate_": "evaluate_panel@"}[g.group(0)], key)
            lines.append(f"| {stage} | {r['wall_s']:.1f} | {r['peak_mb']:.0f} |")
    body = (copy / "reports" / "panels.md").read_text().splitlines()
    body = [line for line in body if not line.startswith("<!--") and not line.startswith("# ")]
    figures.mkdir(parents=True, exist_ok=True)
    for png in sorted((copy / "reports" / "figures").glob("cd-*.png")):
        if png.stem.removeprefix("cd-") in panels or png.stem == "cd-groups":
            shutil.copy2(png, figures / png.name)
    shutil.copy2(copy / "reports" / "figures" / "panels.png", figures / "panels.png")
    # The report's links are relative to reports/; this one's to the folder of --report.
    relative = figures.relative_to(report_path.parent).as_posix()
    text = "\n".join(body).replace("](figures/", f"]({relative}/")
    return "\n".join(lines) + "\n\n---\n" + text + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", nargs="+", default=M3, choices=M3)
    parser.add_argument("--sample", type=int, default=None, help="series per panel (default: all)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "m3_classical")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "m3_classical.md")
    parser.add_argument("--fresh", action="store_true", help="forget the stages already run")
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.results, ignore_errors=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp, settings = args.results / "settings.json", json.dumps({"panels": args.panels, "sample": args.sample})
    if stamp.exists() and stamp.read_text() != settings:
        raise SystemExit(f"{args.results} holds a run with other settings ({stamp.read_text()}); "
                         "give another --results or --fresh")
    stamp.write_text(settings)
    m = measure(args.results, args.panels, args.sample)
    figures = args.report.parent / "figures" / args.report.stem
    args.report.write_text(report(m, args.results / "project", args.panels, args.sample, figures, args.report))
    print(f"m3_classical: wrote {args.report}")


if __name__ == "__main__":
    main()
