"""benchmarks/gpu_floor.py, the part of an epoch a GPU would not remove, in tiny versions through the same
code: ten M3 monthly series and N-BEATS-G (``panel``), the memory LSTM at a short seq (``memory``), two epochs
of each network, one round."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stages.lib.config import load_params
from stages.lib.errors import CommandError
from tests.project import ROOT

SCRIPT = str(ROOT / "benchmarks/gpu_floor.py")


def test_the_floor_network_keeps_the_entrys_input_and_output_and_almost_none_of_its_weights():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_floor import floor_network

    spec = load_params().panel_model("nbeats_g")
    own, floor = spec.model_spec().build(36, 1, 18), floor_network(36, 18)
    assert own.input_shape == floor.input_shape == (None, 36, 1)
    assert own.output_shape == floor.output_shape == (None, 18)
    assert floor.count_params() == 36 * 18 + 18 and floor.count_params() * 100 < own.count_params()


def test_the_benchmark_times_both_networks_and_its_share_is_their_quotient():
    done = subprocess.run([sys.executable, SCRIPT, "panel", "--models", "nbeats_g", "--panels", "m3_monthly", "--sample", "10",
                           "--epochs", "2", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| nbeats_g | m3_monthly |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "10" and int(cells[3]) == load_params().panel_model("nbeats_g").batches_per_epoch
    own, floor, draws = (float(cells[i].removesuffix(" s")) for i in (4, 5, 7))
    assert own > 0 and floor > 0 and draws > 0
    # The share is computed before the two are rounded to the millisecond: the rounding's slack.
    assert float(cells[6]) == pytest.approx(floor / own, abs=0.01 + 0.001 / own)


@pytest.mark.parametrize("budget", ["default", "article"])
def test_the_memory_mode_times_a_memory_model_as_its_stage_trains_it(budget):
    done = subprocess.run([sys.executable, SCRIPT, "memory", "--models", "lstm", "--seqs", "8", "--epochs", "2",
                           "--rounds", "1", "--budget", budget], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith(f"| lstm | {budget} | 8 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3] == ("yes" if load_params().train_memory.spec("lstm").xla else "no")
    own, floor = (float(cells[i].removesuffix(" s")) for i in (4, 5))
    assert own > 0 and floor > 0
    assert float(cells[6]) == pytest.approx(floor / own, abs=0.01 + 0.001 / own)


def test_an_experiments_time_splits_into_its_runs_the_rest_and_what_a_gpu_could_remove():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_floor import experiment_time

    # 200 s in all, of which stage runs of 150 and 20 s; 3 seeds of 40 epochs at 1.2 s, 0.2 s on the floor network.
    split = experiment_time(200.0, [150.0, 20.0], 120, 1.2, 0.2)
    assert split.in_runs == 170.0 and split.outside == 30.0
    assert split.removable == pytest.approx(120.0) and split.left == pytest.approx(80.0)
    # A floor network slower than the model (noise on a tiny one) removes nothing; it never adds time.
    assert experiment_time(50.0, [40.0], 10, 0.1, 0.12).left == 50.0


def test_an_experiments_runs_and_epochs_are_read_from_the_mlflow_store(tmp_path, monkeypatch):
    import mlflow

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_floor import experiment_runs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    memory = client.create_experiment("memory")

    def logged(name, exp, start, end, metrics=()):
        run = client.create_run(memory, start_time=start, tags={"dvc.exp": exp}, run_name=name)
        for key, value in metrics:
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, end_time=end)

    logged("train_memory@gru", "gpu-floor-gru-147-1", 1_000, 91_000,
           [("seed42.epochs_run", 40), ("seed43.epochs_run", 18), ("seed42.loss", 0.3)])
    logged("evaluate_memory", "gpu-floor-gru-147-1", 92_000, 98_500)
    logged("train_memory@gru", "hz-default-gru-147", 0, 500_000, [("seed0.epochs_run", 40)])  # another experiment
    seconds, epochs = experiment_runs("gpu-floor-gru-147-1", "gru")
    assert seconds == {"train_memory@gru": 90.0, "evaluate_memory": 6.5} and epochs == 58
    with pytest.raises(CommandError, match=r"^no MLflow run is tagged dvc\.exp = gpu-floor-gru-64-2: "):
        experiment_runs("gpu-floor-gru-64-2", "gru")
    unfinished = client.create_run(memory, start_time=0, tags={"dvc.exp": "gpu-floor-gru-64-3"}, run_name="evaluate_memory")
    with pytest.raises(CommandError, match=r"^MLflow run evaluate_memory of experiment gpu-floor-gru-64-3 has not ended$"):
        experiment_runs("gpu-floor-gru-64-3", "gru")
    assert unfinished.info.end_time is None


@pytest.mark.parametrize("args, named", [(["panel", "--models", "nbeats_x"], "nbeats_x"),
                                         (["panel", "--models", "lstm_global"], "lstm_global"),
                                         (["memory", "--models", "nbeats_g"], "nbeats_g"),
                                         (["search", "--model", "nbeats_g", "--seq", "8"], "nbeats_g")])
def test_a_model_it_cannot_time_is_one_line_naming_it(args, named):
    done = subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and named in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_a_search_timing_without_dvc_on_path_is_one_line_saying_so(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "search", "--model", "gru", "--seq", "8"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("dvc is not on PATH: activate the environment "
                                                                                  "the README installs (.venv)")
    assert "Traceback" not in done.stderr
