"""End to end: the real `dvc repro`, `dvc exp run` and the queue on a copy of the project with tiny params.

Every test builds what it needs from fixtures (the module's one baseline run,
the queued sweep) and leaves the workspace as the baseline left it, so the
tests pass in any order and alone.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.tools.horizon import runs_from_exp_show
from tests.project import Project, ran_stages
MEMORY_KEYS = {"val_mse", "change_first_pct", "change_last_pct", "blind_first_mse", "blind_last_mse", "remembers_first"}
FORECAST_KEYS = {"mae", "rmse", "mape", "smape", "mase", "coverage_80", "msis_80"}  # the tiny params: 80% only
FORECAST_STAGES = ("ingest@", "baselines@", "backtest@", "evaluate_forecast@", "article")
BASELINES = ("naive", "seasonal_naive", "drift")
STATISTICAL = ("ets", "theta", "auto_arima", "combination", "naive2", "comb_shd")
FORECASTERS = (*BASELINES, "arima", "lstm", "tcn", "lstm_auto")  # the tiny params leave out tcn_auto
PANEL_MODELS = ("lstm_global", "lstm_series", "nbeats_g")

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    proj = Project(tmp_path_factory.mktemp("project"))
    first = proj.sh("dvc", "repro")
    # The baseline a pull request would be reviewed against.
    proj.sh("git", "add", "-A")
    proj.sh("git", "commit", "-qm", "baseline run")
    return proj.path, proj.sh, first


@pytest.fixture
def project(baseline):
    """The baseline run; whatever a test applies to the workspace (an experiment, an edit) is undone after it."""
    yield baseline
    _, sh, _ = baseline
    sh("git", "reset", "-q", "--hard", "HEAD")
    sh("dvc", "checkout", "--force")


def test_repro_runs_every_stage_and_writes_metrics(project):
    repo, _, first = project
    stages = ran_stages(first.stdout)
    for name in ("generate", "train_memory", "evaluate_memory",
                 "ingest@sales", "ingest@elnino", "baselines@sales", "baselines@elnino",
                 "statistical@sales", "statistical@elnino", "backtest@sales", "backtest@elnino",
                 "evaluate_forecast@sales", "evaluate_forecast@elnino", "article",
                 "ingest_panel@m3_yearly", "panel@m3_yearly", "ingest_panel@m3_quarterly", "panel@m3_quarterly",
                 *(f"panel_model@{p}-{m}" for p in ("m3_yearly", "m3_quarterly") for m in PANEL_MODELS),
                 "evaluate_panel@m3_yearly", "evaluate_panel@m3_quarterly", "report"):
        assert name in stages
    memory = json.loads((repo / "reports/metrics/memory.json").read_text())
    assert memory["seq"] == 6 and memory["probed_positions"] == {"first": 0, "last": 5}
    assert memory["budget"] == "default"  # the budget every verdict was made under
    for model in ("lstm", "fullconv", "tcn"):
        assert MEMORY_KEYS <= set(memory[model])
    assert memory["tcn"]["receptive_field"] >= 6 and memory["tcn"]["receptive_field_shortfall"] == 0
    forecast = json.loads((repo / "reports/metrics/forecast-sales.json").read_text())
    for model in (*FORECASTERS[:-1], *STATISTICAL):
        for step in ("h1", "h2", "h3", "all"):
            assert FORECAST_KEYS <= set(forecast[model][step]), (model, step)
        assert isinstance(forecast[model]["persistence"]["persistent"], bool)
    assert forecast["best"] in (*FORECASTERS, *STATISTICAL) and forecast["naive"]["persistence"]["persistent"] is True
    assert forecast["arima"]["interval"] == "model" and forecast["lstm"]["interval"] == "empirical"
    # The naive one-step MAE by hand: 3 evaluation origins, the last leaves room for 3 steps.
    y = [float(line.split(",")[1]) for line in (repo / "data/raw/sales.csv").read_text().splitlines()[1:]]
    targets = range(len(y) - 3 - 2, len(y) - 3 + 1)
    assert forecast["naive"]["h1"]["mae"] == pytest.approx(sum(abs(y[t] - y[t - 1]) for t in targets) / 3, rel=1e-5)
    seasonal = json.loads((repo / "reports/metrics/forecast-elnino.json").read_text())
    assert seasonal["season_length"] == 12 and seasonal["arima"]["seasonal_order"][3] == 12
    # The deep models' windows: the article's 3 everywhere, two seasons where there is one.
    assert (seasonal["lstm"]["input_size"], seasonal["lstm_auto"]["input_size"]) == (3, 24)
    assert "lstm_auto" not in forecast  # run on elnino only (its `datasets`)
    assert seasonal["ets"]["model"].startswith("ETS(") and seasonal["combination"]["interval"] == "empirical"
    summary = (repo / "reports/summary.md").read_text()
    assert "| forecaster | kind | mean rank | MASE sales | MASE elnino |" in summary
    assert re.search(r"^\| lstm_auto \| keras \| — \| — \| [\d.]+ \|$", summary, flags=re.M)
    assert "| elnino | lstm → lstm_auto | 3 |" in summary
    assert 0 < seasonal["dm_p_windows"]["lstm_auto"] <= 1  # the window claim's test (summary.md's DM column)
    assert json.loads((repo / "reports/metrics/article.json").read_text())["lstm"]["published_mse"] == 2521.3
    for png in ("memory_loss", "memory_probes", "forecast-sales", "forecast-elnino", "panels"):
        assert (repo / f"reports/figures/{png}.png").stat().st_size > 1000
    report = (repo / "reports/forecast.md").read_text()
    assert "### sales: 45 points, no season" in report and "### elnino: 156 points, season 12" in report
    assert "## The article's own protocol (sales)" in report and "★" in report
    # The best's claim carries its test: Diebold-Mariano over the origins, against the runner-up.
    assert seasonal["runner_up"] != seasonal["best"] and 0 < seasonal["dm_p_best_vs_runner_up"] <= 1
    assert f"against the runner-up, {seasonal['runner_up']} (" in report and "Diebold-Mariano test" in report
    # And every other forecaster against the best (forecast.md's last column).
    assert seasonal["dm_p_vs_best"][seasonal["runner_up"]] == seasonal["dm_p_best_vs_runner_up"]
    assert seasonal["best"] not in seasonal["dm_p_vs_best"] and "| against ★ (DM) |" in report
    assert "## Memory experiment" in (repo / "reports/summary.md").read_text()


def test_a_handful_of_m3_series_are_forecast_scored_per_series_and_pooled(project):
    """The tiny params keep 3 series of each of two M3 panels; naive's scores are checked by hand."""
    repo, _, _ = project
    series = pd.read_csv(repo / "data/panel/m3_quarterly/series.csv", dtype={"id": str})
    assert series["id"].nunique() == 3
    metrics = json.loads((repo / "reports/metrics/panel-m3_quarterly.json").read_text())
    assert (metrics["series"], metrics["skipped"], metrics["horizon"], metrics["season_length"]) == (3, 0, 8, 4)
    assert metrics["mase_undefined"] == 0
    scores = pd.read_csv(repo / "reports/panels/m3_quarterly.csv", dtype={"id": str})
    # lstm_series runs on m3_yearly only (its `datasets`).
    assert set(scores["forecaster"]) == {*BASELINES, *STATISTICAL, "lstm_global",
                                         "nbeats_g", "nbeats_g_single"}  # an ensemble of two and its first member
    # The spread over its two members, each alone: mean ± sd, with the first member's own score one of the two
    # (for two members a and b, the mean ± sd / sqrt(2)).
    members = metrics["nbeats_g"]["members"]
    first = metrics["nbeats_g_single"]["smape"]
    other = 2 * members["smape_mean"] - first  # the second member's own score
    assert members["count"] == 2 and members["smape_best"] == pytest.approx(min(first, other), rel=1e-5)
    assert members["smape_sd"] == pytest.approx(abs(first - other) / np.sqrt(2), rel=1e-4, abs=1e-6)
    smapes = []
    for sid, part in series.groupby("id", sort=False):
        y = part["value"].to_numpy()
        test, last = y[-8:], y[-9]
        smapes.append(100 * np.mean(np.abs(test - last) / ((np.abs(test) + abs(last)) / 2)))
        mase = np.mean(np.abs(test - last)) / np.mean(np.abs(y[4:-8] - y[:-12]))  # in-sample seasonal naive scale
        row = scores[(scores["id"] == sid) & (scores["forecaster"] == "naive")].iloc[0]
        assert row["mase"] == pytest.approx(mase, rel=1e-5)
    assert metrics["naive"]["smape"] == pytest.approx(np.mean(smapes), rel=1e-5)
    report = (repo / "reports/panels.md").read_text()
    assert "## M3: 6 series (m3_yearly, m3_quarterly)" in report and "**not comparable**" in report
    assert "| Theta | 13.01 | 12.76 | 1.39 |" in report and "## m3_quarterly" in report
    # The global model ranks among all of them and counts its wins over each baseline.
    assert set(metrics["lstm_global"]) == {"smape", "mase", "mean_rank", "owa", "smape_by_steps",
                                           *(f"wins_{b}" for b in BASELINES)}
    assert set(metrics["lstm_global"]["smape_by_steps"]) == {"h1_6", "h7_8"}  # M3's bands, cut at the horizon 8
    # The tests behind the verdicts: Friedman and the Nemenyi CD over the 3 series, Wilcoxon against the best.
    tests = metrics["significance"]
    assert 0 <= tests["friedman_p"] <= 1 and tests["cd"] > 0 and tests["best"] in metrics
    assert (repo / "reports/figures/cd-m3_quarterly.png").stat().st_size > 1000
    assert "Nemenyi critical difference of mean ranks at 5%" in report
    # The pooled group's diagram: drawn by the report stage, linked from the group's section.
    assert "Over all 6 series of M3 pooled" in report and "([diagram](figures/cd-groups.png))" in report
    assert (repo / "reports/figures/cd-groups.png").stat().st_size > 5000
    with sqlite3.connect(repo / "mlflow.db") as db:
        def keys(run: str) -> set[str]:
            return {k for (k,) in db.execute("select m.key from metrics m join runs r on m.run_uuid = r.run_uuid "
                                             "where r.name = ?", (run,))}
        assert {"series", "ets.smape", "ets.mean_rank", "ets.wins_naive", "lstm_global.smape"} <= keys(
            "evaluate_panel@m3_quarterly")
        assert "ets.fit_s" in keys("panel@m3_quarterly")
        # The global model's training curve (one value per epoch), its windows and its time.
        assert {"loss", "val_loss", "windows", "epochs_run", "fit_s", "calibration_s"} <= keys(
            "panel_model@m3_quarterly-lstm_global")
        # Each member of the N-BEATS ensemble is a child run of its stage's run, with its curves.
        children = db.execute(
            "select r.name from runs r join tags t on t.run_uuid = r.run_uuid where t.key = 'mlflow.parentRunId' "
            "and t.value = (select run_uuid from runs where name = 'panel_model@m3_quarterly-nbeats_g')").fetchall()
        assert sorted(name for (name,) in children) == ["panel_model@m3_quarterly-nbeats_g/seed0-L16-smape",
                                                        "panel_model@m3_quarterly-nbeats_g/seed0-L24-smape"]
        assert {"epochs", "cpu_s", "fit0.loss", "fit0.val_loss", "fit1.loss"} <= keys(
            "panel_model@m3_quarterly-nbeats_g/seed0-L16-smape")
        # The recursive global model's second network, which calibrates its intervals: a child run with its curve.
        (parent,) = db.execute("select t.value from tags t join runs r on t.run_uuid = r.run_uuid where r.name = "
                               "'panel_model@m3_quarterly-lstm_global/calibration' and t.key = 'mlflow.parentRunId'"
                               ).fetchone()
        assert parent == db.execute("select run_uuid from runs where name = 'panel_model@m3_quarterly-lstm_global'"
                                    ).fetchone()[0]
        assert {"fit0.loss", "fit0.val_loss", "epochs_run", "windows"} <= keys(
            "panel_model@m3_quarterly-lstm_global/calibration")


def test_mlflow_store_holds_one_run_per_stage_with_tags(project):
    repo, _, _ = project
    with sqlite3.connect(repo / "mlflow.db") as db:
        runs = db.execute("select r.name, e.name, r.status from runs r join experiments e "
                          "on r.experiment_id = e.experiment_id").fetchall()
        tags = db.execute("select t.key from tags t").fetchall()
        baseline_metrics = {key for (key,) in db.execute(
            "select m.key from metrics m join runs r on m.run_uuid = r.run_uuid where r.name = 'baselines@sales'")}
        budgets = {value for (value,) in db.execute(
            "select p.value from params p join runs r on p.run_uuid = r.run_uuid "
            "where p.key = 'budget' and r.name in ('train_memory@lstm', 'evaluate_memory')")}
    names = {(name, experiment, status) for name, experiment, status in runs}
    assert ("train_memory@lstm", "memory", "FINISHED") in names
    assert ("evaluate_memory", "memory", "FINISHED") in names
    assert ("backtest@sales-arima", "forecast", "FINISHED") in names
    assert ("baselines@sales", "forecast", "FINISHED") in names
    assert ("backtest@elnino-tcn", "forecast", "FINISHED") in names
    assert ("evaluate_forecast@elnino", "forecast", "FINISHED") in names
    assert budgets == {"default"}  # the budget is a param of the runs that make a verdict
    keys = {key for (key,) in tags}
    assert {"dvc.stage", "dvc.exp", "git.commit", "params.hash", "dataset", "forecaster"} <= keys
    assert (repo / "mlartifacts").is_dir()
    # One run for the three baselines of a dataset, their metrics prefixed by name.
    assert {f"{b}.backtest_time_s" for b in BASELINES} <= baseline_metrics


def test_second_repro_runs_nothing(project):
    _, sh, _ = project
    again = sh("dvc", "repro")
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout


# One stage of every kind: each entry point, each forecaster family (statsmodels, statsforecast, Keras with either
# window; the memory models and a dataset's forecasters each run over the cores) and both datasets (the article
# reads sales). Forcing every tiny stage took 146 s of a CI run; these take about half.
FORCED = ("generate", "train_memory", "evaluate_memory", "ingest@elnino", "baselines@elnino",
          "statistical@elnino", "backtest@elnino",
          "evaluate_forecast@elnino", "article", "ingest_panel@m3_quarterly", "panel@m3_quarterly",
          "panel_model@m3_quarterly-lstm_global", "panel_model@m3_yearly-lstm_series", "evaluate_panel@m3_quarterly",
          "report")


def test_forced_repro_is_byte_identical(project):
    repo, sh, _ = project
    files = sorted((repo / "reports").rglob("*.json")) + sorted((repo / "reports/plots").rglob("*.csv"))
    before = {p: p.read_bytes() for p in files}
    done = sh("dvc", "repro", "-f", "-s", *FORCED)
    assert sorted(ran_stages(done.stdout)) == sorted(FORCED)
    changed = [str(p.relative_to(repo)) for p, content in before.items() if p.read_bytes() != content]
    assert changed == []


def test_a_forecaster_param_invalidates_only_its_own_forecast_stages(project):
    """The baselines and the statistical set each share one stage per dataset, the other forecasters a third: an
    LSTM setting re-runs only the third (and what reads it)."""
    repo, sh, _ = project
    original = (repo / "params.yaml").read_text()
    try:
        params = yaml.safe_load(original)
        params["forecasters"]["lstm"]["fit"]["max_epochs"] += 1
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stale = set(json.loads(sh("dvc", "status", "--json").stdout))
    finally:
        (repo / "params.yaml").write_text(original)
    # ingest reads only its dataset's params: an LSTM setting leaves it be.
    assert stale == {"backtest@sales", "backtest@elnino",
                     "evaluate_forecast@sales", "evaluate_forecast@elnino", "article", "report"}
    assert sorted(p.name for p in (repo / "data/forecast/sales/baselines").iterdir()) == sorted(BASELINES)


def test_exp_run_seq_reruns_only_the_memory_branch(project):
    _, sh, _ = project
    done = sh("dvc", "exp", "run", "-S", "seq=5")
    stages = ran_stages(done.stdout)
    assert "generate" in stages and "train_memory" in stages and "evaluate_memory" in stages
    assert not [s for s in stages if s.startswith(FORECAST_STAGES)]
    shown = json.loads(sh("dvc", "exp", "show", "--json").stdout)
    seqs = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                metrics = rev["data"]["metrics"]["reports/metrics/memory.json"]["data"]
                seqs.append(metrics["seq"])
    assert 5 in seqs


def test_bad_param_fails_the_stage_with_one_line(project):
    repo, sh, _ = project
    original = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(re.sub(r"(?m)^seq: .*$", "seq: abc", original))
        done = sh("python", "-m", "stages.generate", "--out", "data/memory/bad", check=False)
        assert done.returncode == 2
        assert done.stderr.strip() == ("error: params.yaml: seq: Input should be a valid integer, "
                                       "unable to parse string as an integer (got 'abc')")
        assert not (repo / "data/memory/bad").exists()
    finally:
        (repo / "params.yaml").write_text(original)


def exp_run(sh, *settings: str):
    """`dvc exp run -S ...` on the committed baseline (the `project` fixture restores it after each test)."""
    return sh("dvc", "exp", "run", *[arg for s in settings for arg in ("-S", s)])


QUEUED_SEQS = (3, 4)
MEMORY_STAGES_WITH_RUNS = ("train_memory@lstm", "train_memory@fullconv", "train_memory@tcn", "evaluate_memory")


def wait_for_queue(sh, timeout_s: float = 900) -> str:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(5)
    raise AssertionError(f"queue still busy after {timeout_s} s:\n{status}")


def experiments(sh) -> dict[str, dict]:
    """Experiment name -> {'rev', 'seq'} from `dvc exp show --json`, read as stages.tools.horizon reads it."""
    shown = json.loads(sh("dvc", "exp", "show", "--json").stdout)
    return {run["name"]: {"rev": run["rev"], "seq": run["params"]["seq"]}
            for run in runs_from_exp_show(shown) if run["experiment"]}


@pytest.fixture(scope="module")
def swept(baseline):
    """A queued sweep of two seqs on two workers, one each (docs/memory.md's Hydra range syntax): 3 and 4.

    Four seqs in two rounds took 200 s of every CI run and tested nothing more.
    """
    _, sh, _ = baseline
    sh("dvc", "exp", "run", "--queue", "-S", "seq=range(3,5)")
    sh("dvc", "queue", "start", "-j", "2", leaves_daemons=True)
    status = wait_for_queue(sh)
    sh("dvc", "queue", "stop")  # a worker that missed its own shutdown would otherwise idle on
    return status


def test_queued_sweep_with_two_workers_lands_every_run(project, swept):
    """Two queued experiments on two workers both succeed, and all their MLflow runs are in the one store."""
    repo, sh, _ = project
    status = swept
    assert "Failed" not in status, status
    names = {name: e for name, e in experiments(sh).items() if e["seq"] in QUEUED_SEQS}
    assert sorted(e["seq"] for e in names.values()) == sorted(QUEUED_SEQS), status
    with sqlite3.connect(repo / "mlflow.db") as db:
        rows = db.execute("select t.value, r.name, r.status from runs r join tags t on r.run_uuid = t.run_uuid "
                          "where t.key = 'dvc.exp'").fetchall()
    for name in names:
        landed = sorted(stage for exp, stage, status in rows if exp == name and status == "FINISHED")
        assert landed == sorted(MEMORY_STAGES_WITH_RUNS), (name, rows)
    # Determinism: the queue and a plain workspace run give byte-identical metrics.
    (queued,) = [e for e in names.values() if e["seq"] == 4]
    sh("dvc", "exp", "run", "-f", "-S", "seq=4", "evaluate_memory")
    for path in ("reports/metrics/memory.json", "reports/plots/memory_probes.csv"):
        assert sh("git", "show", f"{queued['rev']}:{path}").stdout == (repo / path).read_text(), path


def test_horizon_report_collects_the_sweep(project, swept):
    repo, sh, _ = project
    # The tiny params train one seed; the committed ledger of the real searches is left out.
    done = sh("python", "-m", "stages.tools.horizon", "--min-seeds", "1", "--points", "points.csv")
    md = (repo / "reports/horizon.md").read_text()
    for model in ("lstm", "fullconv", "tcn"):
        assert f"horizon: {model} (default budget): " in done.stdout
        for seq in QUEUED_SEQS:
            assert re.search(rf"^\| {model} \| {seq} \| ", md, flags=re.M), (model, seq)
    assert "| model | budget | answer | remembers up to seq | forgets from seq | seqs tried |" in md
    assert (repo / "reports/horizon.png").stat().st_size > 1000


def test_horizon_search_on_two_workers_lands_a_bracket_and_resumes(project):
    """The search queues its points as experiments, two models at once, and a second run queues nothing."""
    repo, sh, _ = project
    search = ("python", "-m", "stages.tools.horizon", "--out", "reports/search.md", "--figure", "search.png",
              "--log", "search.json", "--points", "points.csv", "--min-seeds", "2", "search", "--models", "lstm", "tcn", "--max-seq", "4", "--seeds", "0", "1",
              "--jobs", "2", "--poll", "3", "--max-experiments", "0")
    first = sh(*search, leaves_daemons=True, timeout=900)
    sh("dvc", "queue", "stop")
    queued = re.findall(r"queue seq=(\d+), seeds \[[\d, ]+\] \((hz-default-\w+-\d+(?:-s\d+)?)\)", first.stdout)
    # From min(64, --max-seq) = 4 down to 2 for each model, or done at 4 if it remembers there.
    assert {name for _, name in queued} >= {"hz-default-lstm-4", "hz-default-tcn-4"}, first.stdout
    shown = json.loads(sh("dvc", "exp", "show", "--json", "--all-commits").stdout)
    landed = {run["name"]: run for run in runs_from_exp_show(shown) if run["experiment"]}
    for _, name in queued:
        params = landed[name]["params"]["train_memory"]
        assert params["models"] in (["lstm"], ["tcn"]) and params["seeds"] == [0, 1] and params["budget"] == "default"
    md = (repo / "reports/search.md").read_text()
    for model in ("lstm", "tcn"):
        line = next(line for line in md.splitlines() if line.startswith(f"| {model} | default | "))
        assert "(search unfinished)" not in line and "not yet within" not in line, line
    log = json.loads((repo / "search.json").read_text())
    assert log["default"]["experiments"] == len(queued) and log["default"]["highest"] == 4
    again = sh(*search, leaves_daemons=True, timeout=300)
    assert "queue seq=" not in again.stdout  # resumed from what exists: nothing left to run
    # Every verdict is kept in the ledger, which a fresh clone reports and resumes from.
    kept = (repo / "points.csv").read_text()
    for _, name in queued:
        assert f",{name}," in kept, kept


def test_the_gpu_floor_of_a_search_experiment_is_its_time_less_its_epochs_arithmetic(project):
    """benchmarks/gpu_floor.py search runs one experiment as the search queues it, splits its time with the
    stages' MLflow runs, and removes it again: it never counts among the search's verdicts."""
    repo, sh, _ = project
    done = sh("python", "benchmarks/gpu_floor.py", "search", "--model", "lstm", "--seq", "6", "--seeds", "0",
              "--epochs", "2", "--rounds", "1", timeout=600)
    assert "-S seq=6 -S train_memory.models=[lstm] -S train_memory.seeds=[0]" in done.stdout
    assert "| train_memory@lstm |" in done.stdout and "| evaluate_memory |" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("| lstm | default | 6 | 1 |"))
    epochs, wall, in_runs, outside, removable, left, share = (
        float(c.strip().removesuffix(" s")) for c in row.split("|")[5:12])
    assert 1 <= epochs <= 2  # one seed of the tiny params' at most 2 epochs
    assert 0 < in_runs < wall and outside == pytest.approx(wall - in_runs, abs=0.15)
    assert left == pytest.approx(wall - removable, abs=0.15) and share == pytest.approx(left / wall, abs=0.01)
    own, floor = map(float, re.search(r"epochs: own ([\d.]+) s, floor ([\d.]+) s", done.stdout).groups())
    assert removable == pytest.approx(epochs * max(0.0, own - floor), abs=0.05 + epochs * 0.001)  # rounded epochs
    shown = json.loads(sh("dvc", "exp", "show", "--json", "--all-commits").stdout)
    assert not [run for run in runs_from_exp_show(shown) if run["name"].startswith("gpu-floor-")]


def test_compare_names_params_metrics_verdicts_and_figures(project):
    """The review comment against the committed baseline, after a param change and a re-run without one model."""
    from tests.test_compare import gfm_tables

    repo, sh, _ = project
    base = json.loads(sh("git", "show", "HEAD:reports/metrics/memory.json").stdout)
    # Loose thresholds flip every verdict that was false to true; two seeds give a spread; fullconv is not run.
    exp_run(sh, "seq=5", "train_memory.models=[lstm,tcn]", "train_memory.seeds=[0,1]",
            "evaluate_memory.change_tolerance_pct=1000000", "evaluate_memory.blind_mse_threshold=1000000")
    head = json.loads((repo / "reports/metrics/memory.json").read_text())
    run_url = "https://github.com/o/r/actions/runs/1"
    md = sh("python", "-m", "stages.tools.compare", "--base", "HEAD", "--out", "compare",
            "--details-url", run_url).stdout
    assert md == (repo / "compare/compare.md").read_text()
    full = (repo / "compare/compare-full.md").read_text()
    assert f"[this workflow run]({run_url})" in md and len(md.encode()) <= 60_000
    assert f"| seq | {base['seq']} | 5 |" in md
    assert "| evaluate_memory.blind_mse_threshold | 0.05 | 1000000 |" in md
    flipped = [m for m in ("lstm", "tcn") if not base[m]["remembers_first"] and head[m]["remembers_first"]]
    assert flipped, "the loose thresholds should have flipped a verdict"
    for model in flipped:
        assert f"- {model}: remembers_first false -> true at seq=5" in md
        assert f"| {model} | false → true ✅ |" in md
    # The model this run left out is one line in the comment, and every one of its metrics in the full file.
    assert "Models not run in `workspace`: fullconv" in md
    assert "fullconv." not in md and "absent" not in md + full
    gone = base["fullconv"]["val_mse"]
    assert f"| fullconv.val_mse | {gone:.6g} | — | — | — | not run in `workspace` |" in full
    # lstm's validation MSE: one seed in the base, the median [min, max] of two in the head, in one cell.
    old, new = base["lstm"]["val_mse"], head["lstm"]["val_mse"]
    lo, hi = head["lstm"]["val_mse_min"], head["lstm"]["val_mse_max"]
    mark = "better" if new < old else "worse"
    if abs(new - old) <= 1e-3 * max(abs(old), abs(new)):
        mark = "close"
    pct = f"{100 * (new - old) / abs(old):+,.1f}%"
    spread = f" [{lo:.4g}, {hi:.4g}]" if lo != hi else ""
    short = {"better": "✅", "worse": "❌", "close": "≈"}[mark]
    assert f"| {old:.4g} → {new:.4g}{spread} ({pct}) {short} |" in md
    spread = f" [{lo:.6g}, {hi:.6g}]" if lo != hi else ""
    long = {"better": "✅ better", "worse": "❌ **regression**", "close": "≈ within tolerance"}[mark]
    assert (f"| reports/metrics/memory.json | lstm.val_mse | {old:.6g} | {new:.6g}{spread} | {new - old:+.4g} | "
            f"{pct} | {long} |") in full
    assert "val_mse_min" not in md + full
    for markdown in (md, full):
        assert all(len({len(row) for row in table}) == 1 for table in gfm_tables(markdown))
    pngs = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert "memory_probes.png" in pngs and pngs == re.findall(r"!\[[^]]*\]\(([^)]+)\)", full)
    for png in pngs:
        assert (repo / "compare" / png).stat().st_size > 1000


def test_compare_with_nothing_changed_says_so_in_one_line(project):
    repo, sh, _ = project
    md = sh("python", "-m", "stages.tools.compare", "--base", "HEAD", "--head", "HEAD", "--out", "compare-same").stdout
    assert md == "No changes between `HEAD` and `HEAD`: params, metrics and plots are identical.\n"
    assert (repo / "compare-same/compare-full.md").read_text() == md


def test_compare_two_experiments_by_name(project, swept):
    _, sh, _ = project
    by_seq = {e["seq"]: name for name, e in experiments(sh).items()}
    md = sh("python", "-m", "stages.tools.compare", "--base", by_seq[3], "--head", by_seq[4], "--out", "compare-exps").stdout
    assert f"## `{by_seq[3]}` → `{by_seq[4]}`" in md
    assert "| seq | 3 | 4 |" in md
    assert "#### memory (`reports/metrics/memory.json`)" in md and "| model | remembers x[0] |" in md
    table = sh("dvc", "exp", "show", "--md", "--only-changed").stdout
    assert table.startswith("| Experiment") and "seq" in table.splitlines()[0]


def test_compare_unknown_rev_is_one_line(project):
    _, sh, _ = project
    done = sh("python", "-m", "stages.tools.compare", "--base", "no-such-rev", check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: dvc params diff no-such-rev: ") and done.stderr.count("\n") == 1


def test_adding_task_runs_without_probes(project):
    """A task with two channels and no first/last input: scored on MSE against predicting the mean."""
    repo, sh, _ = project
    done = exp_run(sh, "generate.task=adding")
    assert not [s for s in ran_stages(done.stdout) if s.startswith(FORECAST_STAGES)]
    memory = json.loads((repo / "reports/metrics/memory.json").read_text())
    assert memory["task"] == "adding" and memory["probed_positions"] is None
    assert memory["mean_baseline_mse"] == pytest.approx(2 / 12, rel=0.3)
    for model in ("lstm", "fullconv", "tcn"):
        assert memory[model]["remembers_first"] is None and "change_first_pct" not in memory[model]
    summary = (repo / "reports/summary.md").read_text()
    assert "## Memory experiment: adding problem" in summary and "there are no probes" in summary


def test_truncation_and_seeds(project):
    """Truncated models cannot see x[0]; two seeds give a median, a range and a fraction."""
    repo, sh, _ = project
    exp_run(sh, "train_memory.truncate=3", "train_memory.seeds=[0,1]")
    memory = json.loads((repo / "reports/metrics/memory.json").read_text())
    assert memory["truncate"] == 3
    for model in ("lstm", "fullconv", "tcn"):
        m = memory[model]
        assert m["seeds"] == 2
        assert m["change_first_pct"] == m["change_first_pct_min"] == m["change_first_pct_max"] == 0.0
        assert m["remembers_first"] is False and m["remembers_first_fraction"] == 0.0
        assert m["val_mse_min"] <= m["val_mse"] <= m["val_mse_max"]
        assert sorted(p.name for p in (repo / "reports/plots/memory_loss" / model).iterdir()) == ["seed-0.csv", "seed-1.csv"]
    probes = (repo / "reports/plots/memory_probes.csv").read_text().splitlines()
    assert probes[0].startswith("model,seed,run,") and len(probes) == 1 + 3 * 2


@pytest.mark.parametrize("module", ["stages/lib/config.py", "stages/lib/memory/probes.py",
                                    "stages/lib/forecast/scoring.py", "stages/lib/nn/training.py",
                                    "stages/lib/infra/io.py"])
def test_an_edit_to_a_module_makes_dvc_status_name_every_stage_that_runs_it(project, module):
    """One module of each layer: `dvc status` names every stage whose imports reach it, and only stages whose deps
    cover it (a folder dep also covers a module the stage does not import)."""
    from tests.imports import closure
    from tests.test_dependencies import covered, stages

    repo, sh, _ = project
    sh("dvc", "repro")  # whatever an experiment of an earlier test left in the workspace's outputs
    assert json.loads(sh("dvc", "status", "--json").stdout) == {}
    path = repo / module
    path.write_text(path.read_text() + "\n# an edit that could change an output\n")
    stale = {name.split("@")[0] for name in json.loads(sh("dvc", "status", "--json").stdout)}
    runs_it = {name for name, spec in stages().items() if any(str(p) == module for p in closure(spec["module"]))}
    declared = {name for name, spec in stages().items() if covered(module, spec["deps"])}
    assert runs_it and runs_it <= stale and stale == declared
