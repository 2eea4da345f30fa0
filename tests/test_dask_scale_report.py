"""benchmarks/dask_scale.py's report on made-up measurements, by hand (no cluster: the fast loop runs it)."""

from __future__ import annotations

from tests.project import ROOT


def load_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dask_scale", ROOT / "benchmarks" / "dask_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_report_takes_each_engines_median_and_the_median_of_the_rounds_ratios():
    """Three made-up rounds, by hand: the medians are not the means, the ratios are taken within each round, a
    cached run without the 'identical' field is the reference, and an output that differs says so."""
    bench = load_benchmark()
    walls = {"joblib": [100.0, 90.0, 130.0], "dask1": [200.0, 170.0, 300.0], "dask2": [110.0, 85.0, 150.0]}
    m = {}
    for engine, values in walls.items():
        for r, wall in enumerate(values):
            m[bench.round_key(engine, r)] = {"wall_s": wall, "peak_mb": 100.0, "identical": True,
                                             **({"worker_peak_mb": 250.0 + r} if engine != "joblib" else {})}
    del m["sample_joblib"]["identical"]  # round 0's joblib run, cached before the field existed
    m["sample_dask1-r2"]["identical"] = False
    for key in ("ingest_synthetic", "panel_fast", "panel_volume", "global", "evaluate", "report"):
        m[key] = {"wall_s": 10.0, "peak_mb": 500.0}
    text = bench.report(m, 1000, 10, 0, rounds=3)
    # dask2 against joblib per round: +10.0%, -5.6%, +15.4%; their median is +10.0% (their mean would be +6.6%).
    assert "+10.0% wall time, the median of the rounds' ratios (+10.0%, -5.6%, +15.4%)" in text
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    joblib = rows["| joblib, 2 processes (today's path)"]
    dask1, dask2 = rows["| Dask, 1 worker"], rows["| Dask, 2 workers"]
    assert joblib[1:3] == ["100.0", "90.0–130.0"] and joblib[-1] == "reference; every round byte-identical |"
    assert dask2[1:3] == ["110.0", "85.0–150.0"] and dask2[4] == "0.91×"  # median of 100/110, 90/85, 130/150
    assert dask1[4] == "0.50×" and dask1[5] == "252" and dask1[-1] == "**differs** |"
    # From 1 worker to 2, from the medians: 200 s against 110 s.
    assert f"From 1 worker to 2: {200 / 110:.2f}× the throughput" in text
