"""benchmarks/panel_xla.py, XLA against plain training for the panels' direct models, in a tiny version through
the same code: ten M3 monthly series, N-BEATS-G, two epochs each way, one round."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stages.lib.config import load_params
from tests.project import ROOT


def test_the_benchmark_times_both_ways_and_its_ratio_is_their_quotient():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/panel_xla.py"), "--models", "nbeats_g",
                           "--sample", "10", "--epochs", "2", "--rounds", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("m3_monthly: 10 series, horizon 18; 2 epochs a run, 1 rounds")
    row = next(line for line in lines if line.startswith("| nbeats_g |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    plain, xla = (float(c.removesuffix(" s")) for c in cells[2:4])
    assert int(cells[1]) == load_params().panel_model("nbeats_g").batches_per_epoch and plain > 0 and xla > 0
    # The ratio is computed before the two are rounded to the millisecond: the rounding's slack.
    assert float(cells[4].removesuffix("x")) == pytest.approx(xla / plain, abs=0.01 + 0.001 / plain)


def test_an_unknown_model_is_one_line_naming_the_key():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/panel_xla.py"), "--models", "nbeats_x"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "nbeats_x" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def _no_bfloat16() -> bool:
    from stages.lib.nn.models import bfloat16_hardware

    return bfloat16_hardware() is False


@pytest.mark.skipif("_no_bfloat16()", reason="this machine has no bfloat16 arithmetic: the stage refuses it here")
def test_the_bf16_variant_times_nbeats_with_bfloat16_hidden_layers():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/panel_xla.py"), "--models", "nbeats_i",
                           "--variant", "bf16", "--sample", "10", "--epochs", "2", "--rounds", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "| plain | bf16 hidden | bf16 hidden / plain |" in lines[1]
    cells = [c.strip() for c in next(line for line in lines if line.startswith("| nbeats_i |")).split("|")[1:-1]]
    plain, bf16 = (float(c.removesuffix(" s")) for c in cells[2:4])
    assert float(cells[4].removesuffix("x")) == pytest.approx(bf16 / plain, abs=0.01 + 0.001 / plain)


def test_the_bf16_variant_of_a_model_that_is_not_nbeats_is_one_line_naming_it():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/panel_xla.py"), "--models", "tcn_direct",
                           "--variant", "bf16", "--sample", "10"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "tcn_direct" in last and "hidden_dtype" in last
    assert "Traceback" not in done.stderr
