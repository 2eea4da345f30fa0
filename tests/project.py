"""A throwaway copy of the project, in its own git repository, to run the real `dvc` in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny(params: dict) -> dict:
    """Shrink every budget so that the whole pipeline runs in about a minute."""
    params["seq"] = 6
    params["generate"].update(n_train=64, n_val=32, n_test=64)
    params["train_memory"]["fit"].update(max_epochs=2, batch_size=32)
    # Two of the three datasets: the integer and the dated, seasonal one.
    params["datasets"] = {name: params["datasets"][name] for name in ("sales", "elnino")}
    # 80% intervals only: a split-conformal 95% one needs 19 known errors per step (21 calibration origins).
    params["backtest"].update(n_windows=3, calibration_windows=6, levels=[80])
    forecasters = params["forecasters"]
    forecasters["arima"].update(max_p=1, max_q=1, max_P=1, max_Q=0)
    # One seasonal AutoARIMA search per dataset (its searches cost seconds each); one two-season model.
    params["statistical"]["auto_arima"].update(max_p=1, max_q=1, max_P=1, max_Q=0, refit_every=8)
    params["statistical"]["combination"]["members"] = ["ets", "theta"]
    del forecasters["tcn_auto"]
    for name in ("lstm", "tcn", "lstm_auto"):
        forecasters[name]["fit"].update(max_epochs=2)
    params["article"].update(max_epochs=2, lr_decay_every=1)  # the article's schedule still fires, sooner
    for name in ("lstm", "lstm_auto"):
        forecasters[name]["arch"].update(units=[8, 8], dense=[4])
    forecasters["tcn"]["arch"].update(filters=4)
    # A handful of M3 series through the same ingest: one panel without a season, one with
    # (opted in, as the M3 benchmark's command does).
    params["panels"] = {name: params["panels"][name] for name in ("m3_yearly", "m3_quarterly")}
    params["run_panels"] = ["m3_yearly", "m3_quarterly"]
    params["panel_sample"] = 3
    models = params["panel_models"]
    for name in ("nbeats_i", "lstm_direct", "gru_direct", "tcn_direct"):  # nbeats_g stands for the direct models
        del models[name]
    for name in ("lstm_global", "lstm_series"):
        models[name]["fit"].update(max_epochs=2)
        models[name]["arch"].update(units=[8, 8], dense=[4])
    # An ensemble of two members (two look-backs), each an MLflow child run, scored with its first member alone.
    models["nbeats_g"].update(lookback=[2, 3], loss="smape", batches_per_epoch=2)
    models["nbeats_g"]["fit"].update(max_epochs=2, patience=1, batch_size=32)
    models["nbeats_g"]["arch"].update(stacks=2, units=16)
    return params


def copy_project(dest: Path) -> None:
    """What a fresh clone holds: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def clean_env() -> dict[str, str]:
    """The caller's environment without its MLflow, DVC or tracking settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1",
               PYTHONUNBUFFERED="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return env


class Project:
    """A copy of the repository with tiny params, committed in a new git repository."""

    def __init__(self, path: Path, trim: Callable[[dict], dict] = lambda params: params) -> None:
        """``trim`` shrinks the tiny params further for a test that needs less than the whole pipeline."""
        self.path = path
        self.env = clean_env()
        copy_project(path)
        self.write_params(trim(tiny(self.params())))
        self.sh("git", "init", "-q", "-b", "main")
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-qm", "tiny")

    def sh(self, *cmd: str, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 900, leaves_daemons: bool = False) -> subprocess.CompletedProcess:
        if leaves_daemons:  # e.g. `dvc queue start`
            done = self._run_to_file(cmd, env, timeout)
        else:
            done = subprocess.run(cmd, cwd=self.path, env={**self.env, **(env or {})}, capture_output=True,
                                  text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def _run_to_file(self, cmd, env, timeout) -> subprocess.CompletedProcess:
        # Output through a file, not a pipe: a daemon the command starts inherits
        # it, and reading a pipe waits until every holder exits. A DVC queue
        # worker can miss its own shutdown and never exit (seen once in a
        # two-worker queue: the monitor stopped it mid-task).
        with tempfile.TemporaryFile("w+") as out:
            try:
                done = subprocess.run(cmd, cwd=self.path, env={**self.env, **(env or {})}, stdout=out,
                                      stderr=subprocess.STDOUT, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                # What it printed and what the queue holds: a timeout alone says nothing about where it hung.
                out.seek(0)
                queue = subprocess.run(("dvc", "queue", "status"), cwd=self.path, env=self.env,
                                       capture_output=True, text=True, timeout=120)
                raise AssertionError(f"{' '.join(cmd)} timed out after {timeout} s:\n{out.read()[-4000:]}\n"
                                     f"dvc queue status:\n{queue.stdout[-3000:]}{queue.stderr[-1000:]}") from None
            out.seek(0)
            return subprocess.CompletedProcess(cmd, done.returncode, out.read(), "")

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def write_params(self, params: dict) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def lock_entry(self, stage: str) -> dict | None:
        lock = self.path / "dvc.lock"
        if not lock.exists():
            return None
        return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage)


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
