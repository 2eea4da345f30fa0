"""Property: the ingest stage accepts a CSV correctly or rejects it with one line, never a traceback."""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stages import ingest
from stages.lib.infra import cli
from stages.lib.config import load_params, parse_params

CELLS = st.one_of(
    st.integers(-5, 60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "NA", "abc", "1,5", '"7"', "1e3", "-0", "٣", "\ufeff1"]),
    st.text(max_size=6),
)


@st.composite
def csv_texts(draw) -> bytes:
    """Mostly well-formed series with a few corruptions, sometimes plain noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80))
    n = draw(st.integers(0, 25))
    start = draw(st.integers(-3, 3))
    rows = [[str(start + i), repr(draw(st.floats(-1e6, 1e6)))] for i in range(n)]
    for _ in range(draw(st.integers(0, 3))):  # corruptions
        if not rows:
            break
        i = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["cell", "time", "drop", "swap", "dup", "extra", "short"]))
        if kind == "cell":
            rows[i] = [rows[i][0], draw(CELLS)]
        elif kind == "time":
            rows[i] = [draw(CELLS), *rows[i][1:]]
        elif kind == "drop":
            rows.pop(i)
        elif kind == "swap":
            j = draw(st.integers(0, len(rows) - 1))
            rows[i], rows[j] = rows[j], rows[i]
        elif kind == "dup":
            rows.insert(i, list(rows[i]))
        elif kind == "extra":
            rows[i].append("x")
        else:
            rows[i] = rows[i][:1]
    header = draw(st.sampled_from([["month", "sales"], ["sales", "month"], ["month", "value"], ["Month", "sales"]]))
    if header == ["sales", "month"]:
        rows = [r[::-1] for r in rows]
    sep = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    body = "\n".join(sep.join(r) for r in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    try:
        return body.encode(encoding)
    except UnicodeEncodeError:
        return body.encode("utf-8")


def run_ingest(raw_params: dict, data: bytes, fill: str) -> tuple[int, str, Path, Path]:
    folder = Path(tempfile.mkdtemp())
    source, out = folder / "in.csv", folder / "out" / "series.csv"
    source.write_bytes(data)
    raw_params["datasets"] = {"fuzz": {"file": str(source), "time_col": "month", "value_col": "sales", "fill": fill}}
    raw_params["article"]["dataset"] = "fuzz"
    # The smallest backtest (one origin, one step: 4 points for an LSTM on one
    # past level), so that the accepted path is explored on short files too; the
    # length rule has its own tests.
    raw_params["backtest"] = {"horizon": 1, "n_windows": 1, "step_size": 1, "calibration_windows": 0, "levels": [80]}
    raw_params["num_steps"] = 1
    lstm = {**raw_params["forecasters"]["lstm"], "diff_order": 0}
    raw_params["forecasters"] = {"lstm": lstm}
    params = parse_params(raw_params)
    errors = io.StringIO()
    original = ingest.load_params
    ingest.load_params = lambda: params
    try:
        from contextlib import redirect_stderr, redirect_stdout

        with redirect_stderr(errors), redirect_stdout(io.StringIO()):
            try:
                cli.run(ingest.main, ["--dataset", "fuzz", "--out", str(out)])
                code = 0
            except SystemExit as exc:
                code = int(exc.code)
    finally:
        ingest.load_params = original
    return code, errors.getvalue(), source, out


# The missing-value markers of docs/pipeline.md (blank cells count too): a fill policy may fill them.
MISSING_MARKERS = {"nan", "na", "n/a", "null"}


def observed_pairs(data: bytes) -> set[tuple[int, float]]:
    """(time, value) pairs of the rows a correct reader would have taken."""
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]]
    ti, vi = header.index("month"), header.index("sales")
    pairs = set()
    for row in rows[1:]:
        if len(row) == len(header) and row[vi].strip() and row[vi].strip().lower() not in MISSING_MARKERS:
            try:
                pairs.add((int(row[ti].strip()), float(row[vi])))
            except ValueError:
                pass
    return pairs


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=csv_texts(), fill=st.sampled_from(["none", "none", "ffill", "linear"]))
def test_ingest_accepts_correctly_or_fails_in_one_line(raw_params_session, data, fill):
    code, stderr, source, out = run_ingest(dict(raw_params_session), data, fill)
    event("accepted" if code == 0 else "rejected")
    if code == 0:
        import pandas as pd

        frame = pd.read_csv(out, float_precision="round_trip")
        times = frame["time"].tolist()
        assert times == list(range(times[0], times[0] + len(times))), "accepted times must be consecutive"
        assert all(math.isfinite(v) for v in frame["value"])
        kept = {(t, v) for t, v, filled in zip(frame["time"], frame["value"], frame["filled"]) if not filled}
        assert kept == observed_pairs(data), "every observed point kept, nothing invented"
        if fill == "none":
            assert frame["filled"].sum() == 0
    else:
        assert code == 2, stderr
        assert stderr.startswith(f"error: {source}: ") and stderr.count("\n") == 1, stderr
        assert "Traceback" not in stderr
        assert not out.exists()
        assert not out.parent.exists() or list(out.parent.iterdir()) == [], "no temporary file left behind"


@pytest.fixture(scope="session")
def raw_params_session():
    return load_params().model_dump(mode="json")
