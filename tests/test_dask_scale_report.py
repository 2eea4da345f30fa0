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
    for key in ("ingest_synthetic", "panel_fast", "panel_volume", "global", "evaluate", "evaluate_volume", "report",
                "ingest_synthetic_classical", "classical_evaluate"):
        m[key] = {"wall_s": 10.0, "peak_mb": 500.0, "tree_peak_mb": 700.0}
    del m["global"]["tree_peak_mb"]  # cached before the stage's whole tree was measured: shown as unknown
    m["classical_joblib"] = {"wall_s": 400.0, "peak_mb": 300.0, "tree_peak_mb": 900.0}
    m["classical_dask2"] = {"wall_s": 420.0, "peak_mb": 250.0, "tree_peak_mb": 250.0, "worker_peak_mb": 380.0,
                            "identical": True}
    m["panel_fast_dask2"] = {"wall_s": 12.0, "peak_mb": 450.0, "tree_peak_mb": 450.0, "worker_peak_mb": 390.0,
                             "identical": False}
    text = bench.report(m, 1000, 10, 0, rounds=3, classical=40)
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
    # The whole set's run on 40 series: measured shares of its 400 s, and the cluster against it (420 / 400).
    assert "On the cluster: +5.0% wall time against joblib, worker peak 380 MiB, forecasts byte-identical" in text
    assert "measured: ingest_panel 2.5%, evaluate_panel 2.5%, report 2.5%." in text
    # The 1000-series projection scales that run: 1000 * 400 / 40 s; the nine forecasters' evaluation against it.
    assert "| panel@, the whole classical set (projected from the 40-series run on joblib) | 10000 | — | — |" in text
    assert "ingest_panel 0.1%, evaluate_panel 0.1%, report 0.1% (evaluate_panel on the nine" in text
    assert rows["| panel_model (one N-BEATS-G network, global)"][2:] == ["500", "— |"]
    assert rows["| panel@ on joblib, 2 processes"][2:] == ["300", "900 |"]
    assert "fast four's forecasts are **different from joblib's**. A worker's peak stays between 250 and 390 MiB " \
           "over every cluster run here, from 10 to 1,000 series" in text
    # On the cluster the workers are not the stage's children: the last column adds them.
    assert rows["| panel@ on Dask, 2 workers"][3] == "250 + 2 workers × 380 |"
