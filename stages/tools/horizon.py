"""How far back each model remembers: search for the boundary, and report it.

    python -m stages.tools.horizon search --models lstm gru fullconv tcn --budget default
    python -m stages.tools.horizon search --models lstm fullconv --budget article --include 68 69
    python -m stages.tools.horizon      # reports/horizon.md and reports/horizon.png from what exists

`search` locates, per model and budget, the largest `seq` at which the majority
of the seeds remember x[0] and the smallest larger `seq` at which they do not,
to within 10% of `seq` (2 under 20); then it adds seeds (and seqs) until the
50% horizon's 90% interval is within --width of it or --max-experiments is
spent (`next_refinement`). Every probe point is an ordinary queued
DVC experiment (`dvc exp run --queue -S seq=...`), so its MLflow runs, its
metrics and `dvc exp show` are as for any experiment. Before it queues a point
the search reads the experiments that exist (`dvc exp show --json`): it reuses
any run with the same model, budget and seeds, and a search that was stopped
resumes where it was. The next point is a pure function of the verdicts so far
(`next_seq`).

Experiments are local to the clone that ran them (until `dvc exp push`), so
every verdict found is also kept in a committed ledger,
reports/horizon_points.csv: a fresh clone reports from it and resumes a
search without running the finished points again. An experiment of the same
point with as many seeds, or more, wins over the ledger's row.

The report plots, per model and budget, the x[0] change probe against `seq`
(median over seeds, whiskers from the lowest to the highest seed) and gives the
bracket, with the budget each verdict was made under. Only `first_last` runs
count; when several experiments share a model, budget and `seq`, the one with
the most seeds wins, then the newest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.config import ARTICLE_FIT, EvaluateMemoryParams
from stages.lib.errors import CommandError
from stages.lib.infra import cli
from stages.lib.infra.io import read_json, save_with, write_json, write_text
from stages.lib.memory.tasks import IDEAL_CHANGE_PCT

MEMORY_METRICS = "reports/metrics/memory.json"
SEARCH_LOG = Path("reports/horizon_search.json")  # wall time and range of each budget's search, committed
LEDGER = Path("reports/horizon_points.csv")  # every verdict found, committed: experiments stay in their clone
SEQ_MIN, SEQ_MAX, SEQ_START = 2, 1000, 64
BLIND_THRESHOLD = EvaluateMemoryParams().blind_mse_threshold  # the verdict's, as params.yaml ships it
ROW_KEYS = ["change_first_pct", "change_first_pct_min", "change_first_pct_max", "blind_first_mse",
            "remembers_first", "remembers_first_fraction", "seeds", "epochs_run", "samples_seen"]
BUDGET_KEYS = ["max_epochs", "batch_size", "patience", "target_val_loss"]
LEDGER_COLUMNS = ["budget", "model", "seq", "experiment", "timestamp", "seed_list", *ROW_KEYS, *BUDGET_KEYS]


# ------------------------------------------------------------ the search (pure)

def tolerance(seq: int) -> float:
    """How tight a bracket must be: 10% of seq, or 2 steps under seq 20."""
    return max(2.0, 0.1 * seq)


def bracket(verdicts: Mapping[int, bool]) -> tuple[int | None, int | None]:
    """The largest seq that remembers, and the smallest larger seq that does not (None where there is none).

    A verdict that disagrees with its neighbours (a seed flipped) moves the
    bracket only if it is a "remembers" above every other: the boundary is where
    remembering stops for good.
    """
    remembered = [seq for seq, ok in verdicts.items() if ok]
    lo = max(remembered) if remembered else None
    forgot = [seq for seq, ok in verdicts.items() if not ok and seq > (lo or 0)]
    return lo, (min(forgot) if forgot else None)


def next_seq(verdicts: Mapping[int, bool], lowest: int = SEQ_MIN, highest: int = SEQ_MAX,
             start: int = SEQ_START, include: tuple[int, ...] = ()) -> int | None:
    """The next seq to try from the verdicts so far, or None when the search is over.

    Points asked for by name (``include``) come first; then from ``start`` the
    search doubles up while the model remembers and halves down while it does
    not, until a bracket exists, and then bisects it geometrically (the
    tolerance is relative) until it is within ``tolerance``. It is over when the
    bracket is tight, when the model forgets at ``lowest``, or when it remembers
    at ``highest``.
    """
    for seq in sorted(include):
        if seq not in verdicts:
            return seq
    if not verdicts:
        return min(start, highest)
    lo, hi = bracket(verdicts)
    if lo is None:
        smallest = min(verdicts)
        return None if smallest <= lowest else max(lowest, smallest // 2)
    if hi is None:
        return None if lo >= highest else min(highest, 2 * lo)
    if hi - lo <= tolerance(lo):
        return None
    return min(max(round(math.sqrt(lo * hi)), lo + 1), hi - 1)


def outcome(verdicts: Mapping[int, bool], lowest: int = SEQ_MIN, highest: int = SEQ_MAX) -> str:
    """The search's answer in words."""
    if not verdicts:
        return "not run"
    lo, hi = bracket(verdicts)
    if lo is None:
        down_to = min(verdicts)
        return f"forgets at every seq tried, down to {down_to}" + ("" if down_to <= lowest else " (search unfinished)")
    if hi is None:
        return f"remembers at every seq tried, up to {lo}" + ("" if lo >= highest else " (search unfinished)")
    done = "" if hi - lo <= tolerance(lo) else " (bracket not yet within 10%)"
    return f"remembers up to {lo}, forgets at {hi}{done}"


# ------------------------------------------------------------ the horizon with a confidence interval (pure)

# The interval a located horizon should reach (issue 25): within 15% of it either side, 90% confidence.
INTERVAL_LEVEL = 0.90
WIDTH_GOAL = 0.15
BOOTSTRAP_DRAWS = 2000


def seed_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """Per seq of one model and budget: seeds that remembered x[0] (``k``) out of those trained (``n``)."""
    frame = rows[rows["remembers_first_fraction"].notna()]
    n = frame["seeds"].astype(int).to_numpy()
    k = (frame["remembers_first_fraction"].to_numpy() * n).round().astype(int)
    return pd.DataFrame({"seq": frame["seq"].astype(int).to_numpy(), "k": k, "n": n}).sort_values("seq", ignore_index=True)


def remember_curve(seq: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The probability that a seed remembers x[0] at each seq: the isotonic (non-increasing in seq) least-squares
    fit to the seed shares, weighted by seeds. Isotonic rather than logistic: at a budget where every seed below
    some seq remembers and every one above forgets, the logistic fit has no maximum (its slope runs to infinity),
    and the isotonic one is still defined."""
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0).fit(
        np.log(seq), k / n, sample_weight=n).predict(np.log(seq))


def fifty_point(seq: np.ndarray, p: np.ndarray) -> float | None:
    """The seq where the fitted probability crosses 50%, interpolated in log seq between the two seqs around it;
    None where it never crosses (the model remembers, or forgets, at every seq tried)."""
    above = np.flatnonzero(p >= 0.5)
    if len(above) == 0 or above[-1] == len(p) - 1:
        return None
    i = above[-1]  # the last seq at or above 50%; the next is below (p does not increase)
    x0, x1 = np.log(seq[i]), np.log(seq[i + 1])
    t = (p[i] - 0.5) / (p[i] - p[i + 1])
    return float(np.exp(x0 + t * (x1 - x0)))


def horizon_interval(points: pd.DataFrame, draws: int = BOOTSTRAP_DRAWS, level: float = INTERVAL_LEVEL,
                     seed: int = 0) -> dict:
    """The 50% horizon of the isotonic curve and its interval, from a bootstrap over the seeds: each draw
    resamples every seq's seeds with replacement (k ~ Binomial(n, k/n)) and refits the curve. The interval is at
    least as wide as the gap between the tested seqs around the horizon: where every seed agrees at every seq,
    the seeds carry no spread, and the grid is the only limit on the answer."""
    seq, k, n = points["seq"].to_numpy(), points["k"].to_numpy(), points["n"].to_numpy()
    point = fifty_point(seq, remember_curve(seq, k, n))
    if point is None:
        return {"horizon": None, "method": "isotonic"}
    rng = np.random.default_rng(seed)
    found = [isotonic_crossing(seq, rng.binomial(n, k / n), n) for _ in range(draws)]
    return {**bounds(seq, n, point, np.array(found), level, grid=True), "method": "isotonic"}


def isotonic_crossing(seq: np.ndarray, k: np.ndarray, n: np.ndarray) -> float:
    """The isotonic curve's 50% point of one bootstrap draw. A draw whose curve never crosses 50% puts the
    horizon outside the seqs tried: below the first (every seed forgets) or beyond the last (every seed
    remembers). It counts, as 0 or infinity. Shares that already fall with seq are their own isotonic fit, so
    they skip the regression (most draws at a clean transition, and every separated one)."""
    shares = k / n
    p = shares if np.all(np.diff(shares) <= 0) else remember_curve(seq, k, n)
    at = fifty_point(seq, p)
    return at if at is not None else (np.inf if p[-1] >= 0.5 else 0.0)


def bounds(seq: np.ndarray, n: np.ndarray, point: float, found: np.ndarray, level: float, grid: bool) -> dict:
    """The interval of a horizon ``point`` from its bootstrap draws ``found`` (0 and infinity: outside the seqs
    tried); with ``grid``, never narrower than the gap between the tried seqs around the point (a curve that
    says nothing between the seqs tried, as the isotonic one, cannot place its crossing more finely)."""
    tail = (1 - level) / 2
    lo, hi = np.quantile(found, [tail, 1 - tail], method="inverted_cdf")
    below, above = seq[seq <= point], seq[seq > point]
    if grid:
        lo, hi = min(lo, below.max() if len(below) else point), max(hi, above.min() if len(above) else point)
    half = max(point - lo, hi - point) / point
    return {"horizon": point, "low": float(lo), "high": float(hi), "half_width": float(half),
            "within_goal": bool(half <= WIDTH_GOAL),
            "outside_share": float(np.mean((found == 0.0) | (found == np.inf))),
            "seeds": int(n.min()) if n.min() == n.max() else f"{n.min()}-{n.max()}"}


def separated(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per row of ``k`` (draws × seqs, seqs ascending): whether the seeds are separated in seq, so that the
    logistic fit has no maximum: every seed that remembers sits at or below every one that forgets (or at or
    above it), which includes all remembering or all forgetting."""
    k, idx = np.atleast_2d(k), np.arange(np.shape(n)[-1])
    ones, zeros = k > 0, k < n
    last_one = np.where(ones, idx, -1).max(axis=1)
    first_one = np.where(ones, idx, len(idx)).min(axis=1)
    last_zero = np.where(zeros, idx, -1).max(axis=1)
    first_zero = np.where(zeros, idx, len(idx)).min(axis=1)
    return (last_one <= first_zero) | (last_zero <= first_one)


def logistic_fit(seq: np.ndarray, k: np.ndarray, n: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood logistic fits of P(remember) = 1 / (1 + exp(-(a + b (log seq - mean)))) to the seed
    counts, one per row of ``k`` (draws × seqs): rows of [a, b], NaN where the seeds are separated (no maximum)
    or Newton's method did not settle. Written out rather than statsmodels' GLM (tests/test_horizon.py checks
    they agree): the bootstrap refits 2000 draws at every report and every look of a search, and Newton's
    method on two parameters runs all the draws at once as arrays."""
    from scipy.special import expit, logit

    k = np.atleast_2d(k).astype(float)
    x = np.log(seq) - np.log(seq).mean()
    ok = ~separated(k, n)
    a = logit(np.clip(k.sum(axis=1) / n.sum(), 1e-3, 1 - 1e-3))
    b = np.zeros(len(k))
    settled = np.zeros(len(k), dtype=bool)
    for _ in range(iterations):
        p = expit(a[:, None] + b[:, None] * x)
        w, r = n * p * (1 - p), k - n * p
        haa, hab, hbb = w.sum(axis=1), (w * x).sum(axis=1), (w * x * x).sum(axis=1)
        ga, gb = r.sum(axis=1), (r * x).sum(axis=1)
        det = np.where(ok, haa * hbb - hab ** 2, 1.0)
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = np.where(ok, a + da, a), np.where(ok, b + db, b)
        settled = np.abs(da) + np.abs(db) < 1e-9
        if settled[ok].all():
            break
    good = ok & settled & np.isfinite(a) & np.isfinite(b)
    return np.where(good[:, None], np.column_stack([a, b]), np.nan)


def logistic_curve(seq: np.ndarray, ab: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """The fitted probability that a seed remembers, for one fit [a, b] of ``logistic_fit`` to ``seq`` (its log
    seq centred on their mean), at each of ``at`` (default: ``seq`` itself)."""
    from scipy.special import expit

    return expit(ab[0] + ab[1] * (np.log(seq if at is None else at) - np.log(seq).mean()))


def logistic_crossing(seq: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """The seq where each fit [a, b] crosses 50%: NaN where there is no fit or it does not fall with seq."""
    a, b = np.atleast_2d(ab).T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        at = np.exp(np.log(seq).mean() - a / b)
    return np.where(b < 0, at, np.nan)


def deviance_p(seq: np.ndarray, k: np.ndarray, n: np.ndarray, ab: np.ndarray) -> float:
    """The deviance goodness-of-fit test of one logistic fit: the chance of a deviance this large if the
    logistic curve were right (chi-squared, seqs - 2 degrees of freedom); NaN with two seqs or fewer (the curve
    then goes through every share)."""
    from scipy.special import xlogy
    from scipy.stats import chi2

    if len(seq) <= 2:
        return float("nan")
    expected = n * logistic_curve(seq, ab)
    deviance = 2 * np.sum(xlogy(k, k / expected) + xlogy(n - k, (n - k) / (n - expected)))
    return float(chi2.sf(deviance, len(seq) - 2))


def logistic_interval(points: pd.DataFrame, draws: int = BOOTSTRAP_DRAWS, level: float = INTERVAL_LEVEL,
                      seed: int = 0) -> dict:
    """The 50% horizon of the logistic fit in log seq, with its interval from the same bootstrap over the seeds
    as ``horizon_interval``. It is located only where the fit exists (the seeds are not separated), falls
    with seq and crosses 50% within the seqs tried; ``why`` says otherwise.

    A bootstrap draw with no logistic fit (its seeds separate, or its fit rises with seq) counts with the
    isotonic curve's crossing, which for separated seeds is the middle of the gap (in log seq) where the step
    the logistic fit tends to lies; ``fallback_share`` says how many draws did. A crossing outside the seqs
    tried counts as 0 or infinity, as there. The interval is not widened to the grid: the curve's form places
    its crossing between the seqs tried (``simulated_coverage`` checks what that interval is worth)."""
    seq, k, n = points["seq"].to_numpy(), points["k"].to_numpy(), points["n"].to_numpy()
    ab = logistic_fit(seq, k, n)[0]
    if np.isnan(ab).any():
        return {"horizon": None, "method": "logistic", "why": "the seeds are separated in seq: no logistic fit"}
    point = float(logistic_crossing(seq, ab)[0])
    if np.isnan(point) or not seq.min() <= point <= seq.max():
        return {"horizon": None, "method": "logistic", "why": "the fit does not cross 50% within the seqs tried"}
    rng = np.random.default_rng(seed)
    found, fallback = logistic_draws(seq, rng.binomial(n, k / n, size=(draws, len(seq))), n)
    return {**bounds(seq, n, point, found, level, grid=False), "method": "logistic",
            "fit_p": deviance_p(seq, k, n, ab), "params": ab, "fallback_share": fallback}


def logistic_draws(seq: np.ndarray, redrawn: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, float]:
    """The 50% point of the logistic fit to each row of ``redrawn`` (0 or infinity outside the seqs tried; the
    isotonic crossing where a row has no falling fit), and the share of rows that had none."""
    found = logistic_crossing(seq, logistic_fit(seq, redrawn, n))
    missing = np.flatnonzero(np.isnan(found))
    for row in missing:
        found[row] = isotonic_crossing(seq, redrawn[row], n)
    found = np.where(found < seq.min(), 0.0, np.where(found > seq.max(), np.inf, found))
    return found, len(missing) / len(found)


def simulated_coverage(seq: np.ndarray, n: np.ndarray, ab: np.ndarray, reps: int, draws: int, level: float,
                       rng: np.random.Generator) -> float:
    """How often the logistic interval covers the truth at this design: the share of ``reps`` seed sets, drawn
    from the fitted curve ``ab`` at the same seqs with as many seeds at each, whose bootstrap interval
    (``draws`` draws) covers that curve's 50% point. A percentile bootstrap of a ratio under-covers when the
    seeds are few; this says by how much here. Sets whose own fit is not located are left out: the report
    would not use the logistic horizon for them."""
    truth = float(logistic_crossing(seq, ab)[0])
    covered = []
    for k in rng.binomial(n, logistic_curve(seq, ab), size=(reps, len(seq))):
        at = float(logistic_crossing(seq, logistic_fit(seq, k, n)[0])[0])
        if np.isnan(at) or not seq.min() <= at <= seq.max():
            continue
        found, _ = logistic_draws(seq, rng.binomial(n, k / n, size=(draws, len(seq))), n)
        interval = bounds(seq, n, at, found, level, grid=False)
        covered.append(interval["low"] <= truth <= interval["high"])
    return float(np.mean(covered)) if covered else float("nan")


FIT_LEVEL = 0.05  # the deviance test's level below which the logistic curve is judged not to fit the seeds
# The logistic interval is used where its simulated coverage at the design is within 5 points of its level (the
# tolerance issue 25 sets for interval coverage), from this many simulated seed sets of 400 bootstrap draws each.
COVERAGE_TOLERANCE, COVERAGE_REPS, COVERAGE_DRAWS = 0.05, 200, 400


def horizon_estimate(points: pd.DataFrame, draws: int = BOOTSTRAP_DRAWS, level: float = INTERVAL_LEVEL,
                     seed: int = 0, coverage_reps: int = COVERAGE_REPS) -> dict:
    """The horizon the report and the search use, with both fits beside it (``isotonic``, ``logistic``): the
    logistic one where it is located, its deviance test does not reject it at 5%, and its interval's simulated
    coverage at this design is within 5 points of the level; the isotonic one otherwise. The rule was fixed
    before either was compared with the goal: a curve with two parameters pools the seeds of every seq into
    the 50% point, so where it fits and its interval is honest it is the sharper estimate (the isotonic
    curve's crossing rests on the two or three seqs nearest it and jumps from one to another across a flat
    stretch); where the seeds separate cleanly it has no maximum, where it does not fit its interval would be
    the model's, not the seeds', and where the seeds are too few its interval is too narrow (with 3 seeds per
    seq a nominal 90% interval covers about 75 to 80%)."""
    iso = horizon_interval(points, draws, level, seed)
    fitted = logistic_interval(points, draws, level, seed)
    if fitted["horizon"] is not None and coverage_reps:
        rng = np.random.default_rng(seed + 1)
        fitted["coverage"] = simulated_coverage(points["seq"].to_numpy(), points["n"].to_numpy(), fitted["params"],
                                                coverage_reps, COVERAGE_DRAWS, level, rng)
    fitted["usable"] = usable = (fitted["horizon"] is not None and fitted["fit_p"] >= FIT_LEVEL
                                 and fitted.get("coverage", level) >= level - COVERAGE_TOLERANCE)
    return {**(fitted if usable else iso), "isotonic": iso, "logistic": fitted}


def seeds_to_goal(half_width: float, trained: int, width: float = WIDTH_GOAL) -> int | None:
    """A planning estimate: about how many seeds in all would bring a horizon's interval of ±``half_width``
    (from ``trained`` seeds) within ±``width``, if it narrows as 1 / sqrt(seeds) as a bootstrap interval of
    shares does: trained × (half_width / width)². None where the interval is unbounded. The seeds go where the
    search puts them (near the horizon); a curve that is flat over a wide range of seq, a model that remembers
    about half the time from one seq to another several times larger, needs many."""
    if not np.isfinite(half_width):
        return None
    return math.ceil(trained * (half_width / width) ** 2)


def next_refinement(points: pd.DataFrame, h: dict, width: float = WIDTH_GOAL, lowest: int = SEQ_MIN,
                    highest: int = SEQ_MAX) -> int | None:
    """Where to add seeds next for a horizon ``h`` (horizon_estimate of ``points``: seq, k, n) to reach ±``width``,
    or None where it is within it, or cannot be: outside lowest..highest, or so small that the whole seqs next
    to it are already further apart than the goal (seq 4 and 5 around a horizon of 4.4 are ±14%, 2 and 3 ±40%).

    Where bootstrap draws put the horizon outside the seqs tried, a seq one goal's width beyond them comes
    first. An isotonic interval is never narrower than the gap between the seqs tried around the horizon (and a
    logistic fit learns most from seqs near its crossing), so next a seq is added where that gap is wider than
    the goal: halfway (in log seq) from the horizon to the goal's edge, below and then above. Once both
    neighbours lie within the goal, seeds go where a seed's verdict is least certain: among the seqs within the
    goal's band, the largest binomial variance of the share, p (1 - p) / n, where p is the fitted curve in use
    (``h["method"]``; the seqs next to the horizon when none is in the band)."""
    seq, k, n = points["seq"].to_numpy(), points["k"].to_numpy(), points["n"].to_numpy()
    if h.get("horizon") is None:  # every seed remembers, or forgets, at every seq tried: widen the range
        fitted = remember_curve(seq, k, n)
        target = 2 * int(seq.max()) if fitted[-1] >= 0.5 else int(seq.min()) // 2
        return target if lowest <= target <= highest and target not in seq else None
    if h["half_width"] <= width:
        return None
    point = h["horizon"]
    # Draws that put the horizon outside the seqs tried (every seed forgetting at each, or remembering): a seq
    # further out, one goal's width beyond the last.
    if h["low"] <= 0 and (target := max(lowest, round(seq.min() * (1 - width)))) not in seq:
        return int(target)
    if not np.isfinite(h["high"]) and (target := min(highest, round(seq.max() * (1 + width)))) not in seq:
        return int(target)
    below, above = seq[seq <= point], seq[seq > point]
    if h.get("method") != "logistic" and len(below) and len(above) and above.min() - below.max() <= 1 \
            and max(point - below.max(), above.min() - point) > point * width:
        return None  # seqs are whole numbers: next to each other around a small horizon, no seed narrows the
        # isotonic interval more (the logistic one is not held to the grid, and seeds still narrow it)
    if not len(below) or below.max() < point * (1 - width):
        target = max(lowest, round(point * (1 - width) ** 0.5))
        if target not in seq and target < point:
            return int(target)
    if not len(above) or above.min() > point * (1 + width):
        target = min(highest, round(point * (1 + width) ** 0.5))
        if target not in seq and target > point:
            return int(target)
    fitted = logistic_curve(seq, h["params"]) if h.get("method") == "logistic" else remember_curve(seq, k, n)
    band = (seq >= point * (1 - width)) & (seq <= point * (1 + width))
    if not band.any():
        band = np.isin(seq, [below.max(), above.min()])
    variance = np.where(band, fitted * (1 - fitted) / n, -1.0)
    return int(seq[np.argmax(variance)])


def new_seeds(used: set[int], count: int) -> tuple[int, ...]:
    """The next ``count`` training seeds after every seed used at a seq."""
    start = max(used, default=-1) + 1
    return tuple(range(start, start + count))


def confident_horizons(table: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """Per (model, budget): the 50% horizon with its 90% interval (``horizon`` None where it is not located)."""
    return {(model, budget): {**horizon_estimate(seed_outcomes(rows)), "points": seed_outcomes(rows)}
            for (budget, model), rows in table.groupby(["budget", "model"], sort=False)}


# ------------------------------------------------------------ pure parts

# Experiments that benchmarks/gpu_floor.py runs to time a search point: they repeat one (same seq and seeds), and
# as the newest of runs sharing seeds they would replace its row in the ledger while they exist.
TIMING_PREFIX = "gpu-floor-"


def runs_from_exp_show(shown: list[dict]) -> list[dict]:
    """Every baseline commit and finished experiment in `dvc exp show --json` with its name, rev, params and metrics
    (not a timing run's, ``TIMING_PREFIX``)."""
    runs = []
    for commit in shown:
        entries = [(commit.get("data") or {}, commit.get("name") or commit.get("rev"), commit.get("rev"), False)]
        for exp in commit.get("experiments") or []:
            if (exp.get("executor") or {}).get("state") in ("queued", "running", "failed"):
                continue  # not finished: its metrics are still the baseline's
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                entries.append((data, data.get("name") or exp.get("name"), data.get("rev") or rev.get("rev"), True))
        for data, name, rev, experiment in entries:
            if experiment and str(name).startswith(TIMING_PREFIX):
                continue
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
            memory = ((data.get("metrics") or {}).get(MEMORY_METRICS) or {}).get("data")
            # Metrics of another seq than the params are stale (a workspace not yet reproduced).
            if params and memory and params.get("seq", memory.get("seq")) == memory.get("seq"):
                runs.append({"name": name, "rev": rev, "experiment": experiment, "timestamp": data.get("timestamp") or "",
                             "params": params, "memory": memory})
    return runs


def experiment_states(shown: list[dict]) -> dict[str, str]:
    """Name -> queued, running, failed or success, for every experiment in `dvc exp show --json`."""
    states = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            name = exp.get("name") or next((rev.get("name") for rev in exp.get("revs") or []), None)
            if name:
                states[name] = (exp.get("executor") or {}).get("state") or "success"
    return states


def horizon_table(runs: list[dict], min_seeds: int = 1, known: pd.DataFrame | None = None,
                  combine: bool = True) -> pd.DataFrame:
    """One row per (budget, model, seq) from first_last runs with at least ``min_seeds`` seeds, and from the rows
    ``known`` before (the ledger): runs of disjoint seeds add up (``per_seq``; ``combine`` False: one row per
    such run, as the ledger keeps them); of runs sharing seeds, the one with the most seeds wins, then the newest."""
    rows = [] if known is None else known.assign(truncate=None).to_dict("records")
    for run in runs:
        params, memory = run["params"], run["memory"]
        if memory.get("task", "first_last") != "first_last" or memory.get("probed_positions") is None:
            continue
        train = params.get("train_memory", {})
        budget = train.get("budget", "default")  # experiments from before the param existed ran the default
        fit = train.get("fit", {}) if budget == "default" else ARTICLE_FIT.model_dump()
        for model in train.get("models", []):
            result = memory.get(model)
            if not isinstance(result, dict):
                continue
            rows.append({
                "budget": budget, "seq": int(memory["seq"]), "model": model, "experiment": run["name"],
                "timestamp": run["timestamp"], "truncate": memory.get("truncate"),
                "seed_list": tuple(train.get("seeds", [0])),
                **{key: result.get(key, result.get(key.removesuffix("_min").removesuffix("_max"))) for key in ROW_KEYS},
                "max_epochs": fit.get("max_epochs"), "batch_size": fit.get("batch_size"),
                "patience": fit.get("patience"), "target_val_loss": fit.get("target_val_loss"),
            })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # A truncated model cannot see x[0]: no horizon to find. A verdict of fewer seeds is a coin toss beside a majority.
    frame = frame[frame["truncate"].isna() & (frame["seeds"] >= min_seeds)]
    if frame.empty:
        return frame
    frame = disjoint_seeds(frame)
    frame = frame.sort_values(["budget", "model", "seq", "timestamp"], kind="stable").reset_index(drop=True)
    return per_seq(frame[LEDGER_COLUMNS]) if combine else frame[LEDGER_COLUMNS]


def disjoint_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (budget, model, seq), the experiments whose seeds do not overlap: the one with the most seeds first,
    then the newest; an experiment sharing a seed with one kept is a rerun of it and is left out."""
    keep = []
    ordered = frame.sort_values(["seeds", "timestamp"], ascending=False, kind="stable")
    for _, rows in ordered.groupby(["budget", "model", "seq"], sort=False):
        taken: set[int] = set()
        for index, seeds in rows["seed_list"].items():
            if taken.isdisjoint(seeds):
                keep.append(index)
                taken.update(seeds)
    return frame.loc[sorted(keep)]


def per_seq(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (budget, model, seq): the experiments of disjoint seeds there added up (the seed share and the
    majority verdict over all their seeds; the probe's median as their seed-weighted mean, its range over all)."""
    def merged(rows: pd.DataFrame) -> dict:
        first = rows.iloc[0].to_dict()
        if len(rows) == 1:
            return first
        n = rows["seeds"].astype(int)
        # Whole seeds: the ledger keeps shares to 6 digits, and 2/3 * 3 + 2/3 * 3 + 0 + 0 must be 4 of 12, not more.
        k = (rows["remembers_first_fraction"] * n).round().astype(int)
        share = float(k.sum() / n.sum())
        return {**first, "experiment": "+".join(rows["experiment"]), "timestamp": max(rows["timestamp"]),
                "seed_list": tuple(sorted(s for seeds in rows["seed_list"] for s in seeds)),
                "change_first_pct": float((rows["change_first_pct"] * n).sum() / n.sum()),
                "change_first_pct_min": float(rows["change_first_pct_min"].min()),
                "change_first_pct_max": float(rows["change_first_pct_max"].max()),
                "blind_first_mse": float((rows["blind_first_mse"] * n).sum() / n.sum()),
                "remembers_first": bool(2 * k.sum() > n.sum()), "remembers_first_fraction": share, "seeds": int(n.sum()),
                "epochs_run": int(rows["epochs_run"].max()), "samples_seen": int(rows["samples_seen"].max())}
    if frame.empty:
        return frame
    rows = [merged(group) for _, group in frame.groupby(["budget", "model", "seq"], sort=False)]
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS).reset_index(drop=True)


def read_ledger(path: Path) -> pd.DataFrame | None:
    """The verdicts kept in ``path`` (None when there is none); seeds are written "0 1 2"."""
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype={"experiment": str, "timestamp": str}, keep_default_na=True)
    missing = [c for c in LEDGER_COLUMNS if c not in frame.columns]
    if missing:
        raise CommandError(f"{path}: missing column(s) {', '.join(missing)}; it is written by this command, "
                           "do not edit it by hand")
    frame["timestamp"] = frame["timestamp"].fillna("")
    frame["seed_list"] = frame["seed_list"].map(lambda text: tuple(int(s) for s in str(text).split()))
    frame["remembers_first"] = frame["remembers_first"].astype(bool)
    return frame[LEDGER_COLUMNS]


def write_ledger(table: pd.DataFrame, path: Path) -> None:
    """Keep every verdict of ``table`` in ``path``, merged under a lock with what another search wrote meanwhile."""
    with locked(path):
        rows = [row for t in (read_ledger(path), table) if t is not None for row in t.to_dict("records")]
        merged = horizon_table([], known=pd.DataFrame(rows, columns=LEDGER_COLUMNS), combine=False)
        out = merged.assign(seed_list=merged["seed_list"].map(lambda seeds: " ".join(map(str, seeds))))
        save_with(path, lambda p: out.to_csv(p, index=False, lineterminator="\n"))


def verdicts_of(table: pd.DataFrame, model: str, budget: str, seeds: tuple[int, ...] | None = None) -> dict[int, bool]:
    """seq -> majority verdict of one model at one budget (only runs with exactly these seeds, if given)."""
    if table.empty:
        return {}
    rows = table[(table["model"] == model) & (table["budget"] == budget)]
    if seeds is not None:
        rows = rows[rows["seed_list"].map(lambda listed: listed == tuple(seeds))]
    return {int(row.seq): bool(row.remembers_first) for row in rows.itertuples() if pd.notna(row.remembers_first)}


def horizons(table: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """Per (model, budget): the bracket, the seqs tried and the answer in words."""
    out = {}
    for (budget, model), rows in table.groupby(["budget", "model"], sort=False):
        verdicts = verdicts_of(table, model, budget)
        lo, hi = bracket(verdicts)
        out[(model, budget)] = {"remembers_up_to": lo, "forgets_from": hi, "seqs": sorted(verdicts),
                                "answer": outcome(verdicts)}
    return out


def article_claim(table: pd.DataFrame) -> str:
    """One sentence: does "the LSTM remembers up to 68 and forgets at 69" reproduce at the article's budget?"""
    verdicts = verdicts_of(table, "lstm", "article")
    if 68 not in verdicts or 69 not in verdicts:
        return ("The article's claim (its LSTM remembers x[0] up to seq 68 and forgets it at 69) is not tested yet: "
                "run the article-budget search with `--include 68 69`.")
    rows = table[(table["model"] == "lstm") & (table["budget"] == "article")].set_index("seq")

    def said(seq: int) -> str:
        row = rows.loc[seq]
        word = "remembers" if row.remembers_first else "forgets"
        return f"{word} x[0] at seq {seq} ({round(row.remembers_first_fraction * row.seeds)} of {int(row.seeds)} seeds)"

    holds = verdicts[68] and not verdicts[69]
    verdict = "reproduces" if holds else "does not reproduce"
    lo, hi = bracket(verdicts)
    where = (f"its boundary at this budget lies between seq {lo} and {hi}" if lo is not None and hi is not None
             else outcome(verdicts))
    return (f"**\"Remembers up to 68, forgets at 69\" {verdict}** at the article's budget: its LSTM {said(68)} and "
            f"{said(69)}; {where}.")


def render(table: pd.DataFrame, found: dict[tuple[str, str], dict], searches: dict | None = None,
           confident: dict[tuple[str, str], dict] | None = None) -> str:
    searches = searches or {}
    lines = ["# Memory horizon", "",
             "<!-- Written by `python -m stages.tools.horizon` from `dvc exp show` and reports/horizon_points.csv; "
             "do not edit by hand. -->", "",
             "How far back each model remembers x[0] on the first+last task: the x[0] change probe (ideal "
             f"+{IDEAL_CHANGE_PCT:g}%) "
             "and the verdict `remembers_first` (majority of seeds) at each `seq` the search tried. The horizon "
             "is the bracket between the largest `seq` at which the model still remembers and the smallest larger "
             "one at which it does not; it means nothing without the training budget, so every verdict sits beside "
             "its budget. `default`: params.yaml's `train_memory.fit` (a fixed set of 2000 samples, early stopping); "
             "`article`: the article's recipe (1000 epochs of 768 fresh samples in batches of 256, the best "
             "validation checkpoint).", "", article_claim(table), "", *confidence_section(table, confident), "## Horizons", "",
             "| model | budget | answer | remembers up to seq | forgets from seq | seqs tried |",
             "|---|---|---|---:|---:|---|"]
    for (model, budget), h in found.items():
        lines.append(f"| {model} | {budget} | {h['answer']} | {h['remembers_up_to'] or '—'} | "
                     f"{h['forgets_from'] or '—'} | {', '.join(map(str, h['seqs']))} |")
    if searches:
        lines += ["", "## The searches", "",
                  "| budget | models | seq range searched | experiments with a verdict | queued by the search | wall time |",
                  "|---|---|---|---:|---:|---:|"]
        for budget, info in sorted(searches.items()):
            lines.append(f"| {budget} | {', '.join(info['models'])} | {info['lowest']} to {info['highest']} | "
                         f"{int((table['budget'] == budget).sum())} | {info['experiments']} | "
                         f"{info['wall_s'] / 60:.0f} min |")
        lines += ["", "The range's upper end is 1000 unless the search was given a lower `--max-seq`: "
                  "training time grows linearly with `seq`, so a cap is the price of an affordable search, "
                  "and \"remembers at every seq tried\" then stops there. Wall time: the sum over the search "
                  "command's runs (a resumed search adds up), on the machine that ran it."]
    for budget, rows in table.groupby("budget", sort=False):
        lines += ["", f"## Every verdict at the {budget} budget", "",
                  "| model | seq | x[0] Δpred median [min, max] | blind x[0] MSE | remembers (seeds) | epochs run | "
                  "samples seen | budget (max epochs, batch, patience, target) | experiment |",
                  "|---|---:|---|---:|---|---:|---:|---|---|"]
        for row in rows.itertuples():
            fraction = row.remembers_first_fraction
            seeds = f"{'yes' if row.remembers_first else 'no'} ({fraction:.0%} of {int(row.seeds)})" if pd.notna(fraction) else (
                "yes" if row.remembers_first else "no")
            budget_text = ", ".join("—" if pd.isna(v) else f"{v:g}" for v in (row.max_epochs, row.batch_size, row.patience,
                                                                               row.target_val_loss))
            change = (f"{row.change_first_pct:+.1f}% [{row.change_first_pct_min:+.1f}, {row.change_first_pct_max:+.1f}]"
                      if pd.notna(row.change_first_pct) else "n/a (every prediction near 0)")
            lines.append(f"| {row.model} | {row.seq} | {change} | {row.blind_first_mse:.3f} | {seeds} | {row.epochs_run} | "
                         f"{row.samples_seen} | {budget_text} | {row.experiment} |")
    lines += ["", "Where several experiments of disjoint seeds share a seq (`a+b` in the experiment column), their seeds "
              "add up: the share and the majority verdict are over all of them, the Δpred median is their "
              "seed-weighted mean, its range the widest. Wall time per stage is in MLflow (`wall_time_s` of the "
              "runs tagged with each `dvc.exp`)."]
    return "\n".join(lines) + "\n"


def interval_text(h: dict, tried: list[int]) -> str:
    low = f"below {min(tried)}" if h["low"] <= 0 else f"{h['low']:.0f}"
    high = f"beyond {max(tried)}" if not np.isfinite(h["high"]) else f"{h['high']:.0f}"
    return f"{low} to {high}"


def confidence_section(table: pd.DataFrame, confident: dict[tuple[str, str], dict] | None = None) -> list[str]:
    """The horizon as the seq where half the seeds remember, with its 90% bootstrap interval, and both fits
    (``confident``: ``confident_horizons(table)`` where the caller has it already)."""
    lines = ["## Horizons with a confidence interval", "",
             "Whether a network learns the task at a given `seq` is a chance event over its training seeds. "
             "Per model and budget, the probability that a seed remembers x[0] is fitted to every seed's verdict "
             "in log `seq` in two ways: a logistic curve (two parameters, maximum likelihood) and an isotonic one "
             "(any non-increasing curve). The horizon is the `seq` where the curve crosses 50%, and its "
             f"{INTERVAL_LEVEL:.0%} interval comes from {BOOTSTRAP_DRAWS} bootstrap draws over the seeds (each "
             "`seq`'s seeds resampled, the curve refitted). The logistic horizon is the one used where it exists "
             "(the seeds do not separate cleanly in `seq`), its deviance test does not reject it at "
             f"{FIT_LEVEL:.0%} (a chi-squared approximation, rough with 3 seeds per `seq`), and its interval is "
             f"honest at this design: drawn {COVERAGE_REPS} times from the fitted curve with as many seeds per `seq`, "
             f"its {INTERVAL_LEVEL:.0%} interval covers the curve's own 50% point at least "
             f"{INTERVAL_LEVEL - COVERAGE_TOLERANCE:.0%} of the time (with few seeds it covers less than it says). "
             "It pools the seeds of every `seq` into the 50% point, where the isotonic curve's crossing rests on "
             "the few `seq`s nearest it; the isotonic one is used otherwise. A bootstrap draw with no falling "
             "logistic fit counts with its isotonic crossing (the share of such draws is given). An isotonic "
             "interval is never narrower than the gap between the `seq`s tried around the horizon (that curve "
             "says nothing between them). 'below 16' means that in more than 5% of the draws the curve crosses "
             f"50% below the first `seq` tried (every seed forgets there). The goal: within ±{WIDTH_GOAL:.0%} "
             "of the horizon.", "",
             "Where it is not, the last column estimates how many seeds in all would bring it there if the "
             "interval narrows as 1/√seeds (`seeds_to_goal`: the seeds trained so far × (half-width / goal)²), "
             "a planning figure, not a promise.", "",
             f"| model | budget | seeds per seq | fit | horizon (50%) | {INTERVAL_LEVEL:.0%} interval | half-width | "
             f"within ±{WIDTH_GOAL:.0%} | seeds trained | seeds for ±{WIDTH_GOAL:.0%} (estimate) |",
             "|---|---|---:|---|---:|---|---:|---|---:|---:|"]
    both = ["Both fits side by side (the one used in bold; deviance p: the logistic curve's goodness of fit, "
            "small where it does not fit the seeds; coverage: its interval's, simulated at this design; draws "
            "without a fit: bootstrap draws counted with their isotonic crossing):", "",
            "| model | budget | isotonic horizon | isotonic interval | logistic horizon | logistic interval | "
            f"deviance p | coverage of a {INTERVAL_LEVEL:.0%} interval | draws without a fit |",
            "|---|---|---:|---|---:|---|---:|---:|---:|"]
    within = []
    for (model, budget), h in (confident or confident_horizons(table)).items():
        tried = h["points"]["seq"].tolist()
        within += [f"{model} ({budget})"] if h.get("within_goal") else []
        both.append(f"| {model} | {budget} | {fit_cells(h, 'isotonic', tried)} | {fit_cells(h, 'logistic', tried)} | "
                    f"{logistic_checks(h['logistic'])} |")
        if h["horizon"] is None:
            p = h["points"]
            fitted = remember_curve(p["seq"].to_numpy(), p["k"].to_numpy(), p["n"].to_numpy())
            lines.append(f"| {model} | {budget} | {int(p['n'].min())} | — | not located: most seeds "
                         f"{'remember' if fitted[-1] >= 0.5 else 'forget'} at every seq tried | — | — | — | "
                         f"{int(p['n'].sum())} | — |")
            continue
        trained = int(h["points"]["n"].sum())
        needed = seeds_to_goal(h["half_width"], trained)
        estimate = "—" if h["within_goal"] else ("unbounded" if needed is None else f"about {needed}")
        lines.append(f"| {model} | {budget} | {h['seeds']} | {h['method']} | {h['horizon']:.1f} | "
                     f"{interval_text(h, tried)} | {half_text(h)} | {'yes' if h['within_goal'] else '**no**'} | "
                     f"{trained} | {estimate} |")
    return [*lines, "", f"Located to the goal's width: {', '.join(within) or 'none'}. Once a model is bracketed, "
            "`search` adds seeds (three more at a time) where the interval is least certain, and seqs where the "
            "grid is coarser than the goal, until the interval is within the goal or `--max-experiments` is spent; "
            "several experiments at one seq add up their seeds.", "", *both, ""]


def logistic_checks(fit: dict) -> str:
    """The deviance p, simulated coverage and share of draws without a fit of a logistic horizon: three cells."""
    if fit.get("horizon") is None:
        return "— | — | —"
    number = lambda x, fmt: "—" if x is None or not np.isfinite(x) else format(x, fmt)  # noqa: E731
    return (f"{number(fit['fit_p'], '.2f')} | {number(fit.get('coverage'), '.0%')} | "
            f"{number(fit['fallback_share'], '.1%')}")


def half_text(h: dict) -> str:
    return "unbounded" if not np.isfinite(h["half_width"]) else f"±{h['half_width']:.0%}"


def fit_cells(h: dict, method: str, tried: list[int]) -> str:
    """Two table cells for one fit of a horizon: the 50% point and its interval with its half-width, in bold
    where it is the one used; why not, where it is not located."""
    fit = h[method]
    if fit.get("horizon") is None:
        return f"— | {fit.get('why', 'not located')}"
    bold = "**" if h["method"] == method and h["horizon"] is not None else ""
    return f"{bold}{fit['horizon']:.1f}{bold} | {interval_text(fit, tried)} ({half_text(fit)})"


def seed_dots(points: pd.DataFrame, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One dot per seed for the figure: at each seq, ``k`` dots just above 1 (remembers) and ``n - k`` just
    below 0 (forgets), spread a little in seq and height so that 45 seeds at one seq can be counted by eye;
    the spread is drawn from a fixed generator, so the figure is the same every time."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(points["seq"].to_numpy(), points["n"].to_numpy())
    remembers = np.concatenate([np.arange(n) < k for k, n in zip(points["k"], points["n"])])
    x = seq * np.exp(rng.uniform(-0.04, 0.04, len(seq)))
    y = np.where(remembers, 1.03, -0.03) + np.where(remembers, 1, -1) * rng.uniform(0, 0.14, len(seq))
    return x, y


def plot(table: pd.DataFrame, path: Path, ideal: float = IDEAL_CHANGE_PCT,
         blind_threshold: float = BLIND_THRESHOLD, confident: dict[tuple[str, str], dict] | None = None) -> None:
    """Per budget: the x[0] change probe (top) and the x[0] blinding MSE (bottom) against seq, log scale.

    A filled marker is a seq the model remembers at (majority of seeds), a hollow one a seq it forgets at.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    budgets = list(dict.fromkeys(table["budget"]))
    fig, axes = plt.subplots(3, len(budgets), figsize=(6 * len(budgets), 10), squeeze=False, sharex=True)
    confident = confident or confident_horizons(table)
    models = sorted(table["model"].unique())
    for col, budget in enumerate(budgets):
        top, bottom = axes[0, col], axes[1, col]
        for model, rows in table[table["budget"] == budget].groupby("model"):
            color = f"C{models.index(model)}"
            median = rows["change_first_pct"].to_numpy()
            spread = [median - rows["change_first_pct_min"].to_numpy(), rows["change_first_pct_max"].to_numpy() - median]
            top.errorbar(rows["seq"], median, yerr=spread, capsize=3, color=color, label=model)
            bottom.plot(rows["seq"], rows["blind_first_mse"], color=color, label=model)
            h = confident[(model, budget)]
            points = h["points"]
            chance = axes[2, col]
            chance.scatter(*seed_dots(points), s=6, color=color, alpha=0.5, linewidths=0)
            chance.scatter(points["seq"], points["k"] / points["n"], s=25 * points["n"], color=color, alpha=0.6)
            seq = points["seq"].to_numpy()
            logistic = h["method"] == "logistic"
            chance.step(seq, remember_curve(seq, points["k"].to_numpy(), points["n"].to_numpy()), where="mid",
                        color=color, lw=0.8 if logistic else 1.5, ls=":" if logistic else "-",
                        label=None if logistic else f"{model} (isotonic)")
            if logistic:
                grid = np.geomspace(seq.min(), seq.max(), 200)
                chance.plot(grid, logistic_curve(seq, h["params"], grid), color=color, label=f"{model} (logistic)")
            if h["horizon"] is not None:
                high = h["high"] if np.isfinite(h["high"]) else points["seq"].max()
                low = h["low"] if h["low"] > 0 else points["seq"].min()
                chance.errorbar([h["horizon"]], [0.5], xerr=[[h["horizon"] - low], [high - h["horizon"]]],
                                fmt="D", color=color, capsize=4)
            remembers = rows["remembers_first"].astype(bool).to_numpy()
            for ax, y in ((top, median), (bottom, rows["blind_first_mse"].to_numpy())):
                ax.scatter(rows["seq"][remembers], y[remembers], color=color, zorder=3)
                ax.scatter(rows["seq"][~remembers], y[~remembers], facecolor="white", edgecolor=color, zorder=3)
        top.axhline(ideal, color="k", ls="--", lw=1, label=f"uses x[0] (+{ideal:g}%)")
        top.axhline(0, color="grey", lw=0.8)
        top.set(title=f"{budget} budget: x[0] × 1.5 → change of prediction (%)", xscale="log")
        bottom.axhline(blind_threshold, color="k", ls="--", lw=1, label=f"verdict threshold ({blind_threshold:g})")
        bottom.set(title="blinding: MSE against x[0] (ignoring it: about 0.29)", xscale="log", yscale="log")
        chance = axes[2, col]
        chance.axhline(0.5, color="k", ls=":", lw=1)
        chance.set_title("dots: one per seed (top: remembers x[0], bottom: forgets)\n"
                         "circles: share per seq; line: the fit used (dotted: the isotonic\n"
                         f"curve beside a logistic fit); ◆ horizon, {INTERVAL_LEVEL:.0%} interval", fontsize=10)
        chance.set(xlabel="seq (log scale)", xscale="log", ylim=(-0.2, 1.2))
        for ax in (top, bottom, chance):
            ax.xaxis.set_major_locator(FixedLocator([2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Memory horizon: median over seeds, whiskers from the lowest to the highest seed")
    fig.tight_layout()
    save_with(path, lambda p: fig.savefig(p, dpi=100, metadata={"Software": None}))
    plt.close(fig)


# ------------------------------------------------------------ commands

def exp_name(budget: str, model: str, seq: int, point_seeds: tuple[int, ...] = (), seeds: tuple[int, ...] = ()) -> str:
    """A search experiment's name; ``-s<first seed>`` where ``point_seeds`` are more seeds than the search's
    ``seeds`` at a seq (``in_flight`` reads it back)."""
    return f"hz-{budget}-{model}-{seq}" + (f"-s{point_seeds[0]}" if point_seeds and point_seeds != seeds else "")


def point_settings(budget: str, model: str, seq: int, point_seeds: tuple[int, ...]) -> list[str]:
    """The `-S` options of one search experiment: ``model`` alone at ``seq`` with ``point_seeds`` and ``budget``."""
    return ["-S", f"seq={seq}", "-S", f"train_memory.models=[{model}]",
            "-S", f"train_memory.seeds=[{','.join(map(str, point_seeds))}]", "-S", f"train_memory.budget={budget}",
            "-S", "train_memory.truncate=null"]


def transient(message: str) -> bool:
    """Whether a dvc failure is another dvc process's doing, gone if tried again.

    Another process (a second search, a queue worker) holds the repository
    lock; or a queue worker removed its temporary workspace under .dvc/tmp/exps
    while `dvc exp show` was reading it (seen in CI as "directory
    '.../.dvc/tmp/exps/tmpXXXX/.dvc' does not exist").
    """
    message = message.lower()
    return ("lock" in message or ("does not exist" in message and "tmp/exps" in message.replace("\\", "/"))
            or "no answer in" in message)  # a show killed as hung (`show_timeout`)


def waiting_out_other_dvc(call, tries: int = 10, pause: float = 3.0):
    """``call()``, tried again while the failure is transient (see `transient`)."""
    for attempt in range(tries):
        try:
            return call()
        except CommandError as exc:
            if not transient(str(exc)) or attempt == tries - 1:
                raise
            time.sleep(pause * (1 + attempt))


def dvc(*args: str) -> None:
    """Run one dvc command; a failure becomes one CommandError line.

    Output goes through a file, not a pipe: `dvc queue start` leaves workers
    that inherit it, and reading a pipe waits until every holder exits.
    """
    def once() -> None:
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(["dvc", *args], stdout=out, stderr=subprocess.STDOUT, text=True)
            out.seek(0)
            said = out.read()
        if done.returncode != 0:
            reason = next((line for line in said.splitlines() if line.startswith("ERROR")), said.strip())
            raise CommandError(f"dvc {' '.join(args)}: {reason or 'failed'}")

    waiting_out_other_dvc(once)


# `dvc exp show` can wait for ever on the experiments' lock as a queue worker finishes (DVC issue 8762; seen
# once in CI: the search sat 13 minutes on a queue whose experiments had all ended). A show this many times
# slower than the slowest one before it, and at least HUNG_FLOOR_S, is taken as hung: killed and tried again.
HUNG_FACTOR, HUNG_FLOOR_S = 5.0, 120.0


def show_timeout(slowest_s: float) -> float | None:
    """How long the next `dvc exp show` may take before it counts as hung; no limit before one has answered
    (a large repository's first show may be slow, and nothing measures it yet)."""
    return max(HUNG_FLOOR_S, HUNG_FACTOR * slowest_s) if slowest_s > 0 else None


def shown_runs(all_commits: bool, timeout: float | None = None) -> tuple[list[dict], dict[str, str]]:
    """Every run in `dvc exp show --json` (every commit's, or HEAD's), and every experiment's state."""
    shown = waiting_out_other_dvc(lambda: cli.dvc_json("exp", "show", *(["--all-commits"] if all_commits else []),
                                                       timeout=timeout) or [])
    return runs_from_exp_show(shown), experiment_states(shown)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock beside ``path`` (two searches share the log and the ledger)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def record_search(log_file: Path, budget: str, models: list[str], highest: int, ran: int, wall_s: float,
                  before: dict) -> None:
    """Add this run of the search to the budget's entry of the log, under a lock (two searches share the file)."""
    with locked(log_file):
        log = read_json(log_file) if log_file.exists() else {}
        log[budget] = {"models": sorted(set(before.get("models", [])) | set(models)), "lowest": SEQ_MIN,
                       "highest": max(highest, before.get("highest", 0)),
                       "experiments": before.get("experiments", 0) + ran,
                       "wall_s": round(before.get("wall_s", 0.0) + wall_s, 1)}
        write_json(log_file, log)


def in_flight(states: Mapping[str, str], budget: str, model: str, seeds: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """The (seq, seeds) of a model's search experiments queued or running, read from their names
    (``exp_name``, with ``-s<first seed>`` for more seeds at a seq; every experiment of a search has as many
    seeds as ``seeds``)."""
    name = re.compile(rf"hz-{re.escape(budget)}-{re.escape(model)}-(\d+)(?:-s(\d+))?")
    flying = []
    for exp, state in sorted(states.items()):
        if state in ("queued", "running") and (found := name.fullmatch(exp)):
            first = found.group(2)
            flying.append((int(found.group(1)),
                           seeds if first is None else tuple(range(int(first), int(first) + len(seeds)))))
    return flying


def refinement(table: pd.DataFrame, model: str, budget: str, seeds: tuple[int, ...], width: float,
               max_experiments: int, highest: int,
               flying: list[tuple[int, tuple[int, ...]]] = ()) -> tuple[int | None, tuple[int, ...]]:
    """The next experiment that narrows a bracketed model's horizon interval (``next_refinement``): its seq and
    seeds (``seeds`` at a new seq, the next unused ones at a seq tried), or None when the interval is within
    ±``width`` or the model has ``max_experiments`` experiments at this budget.

    ``flying`` (``in_flight``) are experiments queued or running: they count against ``max_experiments`` and
    their seeds are used, so a second queue worker gets more seeds where the finished verdicts say, rather
    than idling until the first experiment ends."""
    rows = table[(table["model"] == model) & (table["budget"] == budget)]
    if rows.empty or len(rows) + len(flying) >= max_experiments:
        return None, seeds
    points = seed_outcomes(per_seq(rows))
    target = next_refinement(points, horizon_estimate(points), width, highest=highest)
    if target is None:
        return None, seeds
    used = {s for listed in rows.loc[rows["seq"] == target, "seed_list"] for s in listed}
    used |= {s for seq, listed in flying if seq == target for s in listed}
    return target, (new_seeds(used, len(seeds)) if used else seeds)


def search(models: list[str], budget: str, seeds: tuple[int, ...], include: tuple[int, ...], highest: int,
           jobs: int, poll_s: float, all_commits: bool, log_file: Path = SEARCH_LOG,
           ledger: Path = LEDGER, width: float = WIDTH_GOAL, max_experiments: int = 0) -> list[dict]:
    """Queue the next point of every unfinished model until each is bracketed, resuming from what exists; then,
    up to ``max_experiments`` per model (0: no refinement), more seeds where the horizon's interval is least
    certain until it is within ±``width`` (``refinement``).

    Its wall time and the experiments it queued are added to ``log_file``, and the verdicts found to ``ledger``, at
    every look at the queue and when it stops, however it stops, so an interrupted search loses none of its time.
    Returns the runs it last read.
    """
    started, ran = time.monotonic(), 0
    before = (read_json(log_file) if log_file.exists() else {}).get(budget, {})
    workers_started, slowest = False, 0.0
    try:
        while True:
            asked = time.monotonic()
            runs, states = shown_runs(all_commits, show_timeout(slowest))
            slowest = max(slowest, time.monotonic() - asked)  # tries killed as hung included: an upper bound
            keep(runs, ledger)
            table = horizon_table(runs, known=read_ledger(ledger), combine=False)  # one row per experiment
            pending, todo, steps = [], [], []
            for model in models:
                seq = next_seq(verdicts_of(table, model, budget, seeds), highest=highest, include=include)
                if seq is not None:  # bracketing: one point at a time, each chosen by the verdicts before it
                    steps.append((model, seq, exp_name(budget, model, seq), seeds))
                    continue
                # Bracketed: add seeds until the 50% horizon's interval is within ±width, or the budget is spent.
                flying = in_flight(states, budget, model, seeds)
                pending += [(model, seq, exp_name(budget, model, seq, listed, seeds), listed) for seq, listed in flying]
                # Nothing in flight: this choice is the one to queue, and is not bootstrapped a second time below.
                first = None if flying else refinement(table, model, budget, seeds, width, max_experiments, highest)
                if flying or first[0] is not None:
                    steps.append((model, None, "", (flying, first)))
            # The queue workers are shared among the models still searching: a model left alone gets them all.
            slots = max(1, jobs // max(1, len(steps)))
            for model, seq, name, point_seeds in steps:
                if seq is None:
                    flying, first = point_seeds
                    if len(flying) >= slots:
                        continue
                    seq, point_seeds = first or refinement(table, model, budget, seeds, width, max_experiments,
                                                           highest, flying)
                    if seq is None:
                        continue
                    name = exp_name(budget, model, seq, point_seeds, seeds)
                state = states.get(name)
                if state == "failed":
                    raise CommandError(f"experiment {name} failed: see `dvc queue logs {name}`, "
                                       f"then `dvc exp remove {name}` to let the search run it again")
                (pending if state in ("queued", "running") else todo).append((model, seq, name, point_seeds))
            if not pending and not todo:
                break
            # While refining, where the interval stands now (the progress a user waits on): once per model and
            # look, however many of its points are queued (each estimate is a bootstrap of a few seconds).
            refining = {model for model, seq, _, _ in steps if seq is None} & {model for model, *_ in todo}
            now = {model: f"; now {estimate_line(table, model, budget)}" for model in refining}
            for model, seq, name, point_seeds in todo:
                print(f"horizon search: {budget}: {model}: queue seq={seq}, seeds {list(point_seeds)} ({name})"
                      f"{now.get(model, '')}", flush=True)
                dvc("exp", "run", "--queue", "--name", name, *point_settings(budget, model, seq, point_seeds))
                ran += 1
            if todo or not workers_started or any(states.get(name) == "queued" for _, _, name, _ in pending):
                # Workers stop when the queue is empty; starting them again is harmless (`dvc queue start`
                # skips a worker that answers). Again at every look while something waits in the queue: a worker
                # that was shutting down as a point was queued answers the start, then exits and leaves the
                # point queued with no worker (the search then waited for ever, seen once in CI).
                dvc("queue", "start", "-j", str(jobs))
                workers_started = True
            record_search(log_file, budget, models, highest, ran, time.monotonic() - started, before)
            waiting = ", ".join(f"{model}@{seq}" for model, seq, _, _ in pending + todo)
            print(f"horizon search: {budget}: waiting for {waiting} ({(time.monotonic() - started) / 60:.0f} min)",
                  flush=True)
            time.sleep(poll_s)
    finally:
        record_search(log_file, budget, models, highest, ran, time.monotonic() - started, before)
    for model in models:
        print(f"horizon search: {budget}: {model}: {outcome(verdicts_of(table, model, budget, seeds), highest=highest)}")
        if max_experiments and (line := estimate_line(table, model, budget)):
            print(f"horizon search: {budget}: {model}: {line}")
    return runs  # what the report needs: no second `dvc exp show`


def estimate_line(table: pd.DataFrame, model: str, budget: str) -> str:
    """The 50% horizon of ``model`` at ``budget`` from ``table``'s experiments, with its interval, in one line;
    empty where it has no experiments or no horizon yet."""
    rows = table[(table["model"] == model) & (table["budget"] == budget)]
    h = horizon_estimate(seed_outcomes(per_seq(rows))) if not rows.empty else {}
    if h.get("horizon") is None:
        return ""
    return (f"50% horizon {h['horizon']:.1f}, 90% interval {h['low']:.0f} to {h['high']:.0f} "
            f"({half_text(h)}, {h['method']} fit) from {len(rows)} experiments, {int(rows['seeds'].sum())} seeds")


def keep(runs: list[dict], ledger: Path) -> None:
    """Add the verdicts of the experiments among ``runs`` to the ledger (not a commit's or the workspace's own)."""
    found = horizon_table([run for run in runs if run["experiment"]], combine=False)
    if not found.empty:
        write_ledger(found, ledger)


def report(runs: list[dict], out: Path, figure: Path, log_file: Path = SEARCH_LOG, min_seeds: int = 3,
           ledger: Path = LEDGER) -> None:
    keep(runs, ledger)
    table = horizon_table(runs, min_seeds, known=read_ledger(ledger))
    if table.empty:
        raise CommandError(f"no first_last experiment of {min_seeds} or more seeds with memory metrics in "
                           f"`dvc exp show` or {ledger}: run the search first")
    found = horizons(table)
    searches = read_json(log_file) if log_file.exists() else {}
    confident = confident_horizons(table)  # the bootstraps and coverage simulations, once for text and figure
    write_text(out, render(table, found, searches, confident))
    plot(table, figure, confident=confident)
    for (model, budget), h in found.items():
        print(f"horizon: {model} ({budget} budget): {h['answer']}")
    print(f"horizon: wrote {out} and {figure} from {len(table)} verdicts")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/horizon.md"))
    parser.add_argument("--figure", type=Path, default=Path("reports/horizon.png"))
    parser.add_argument("--log", type=Path, default=SEARCH_LOG, help="wall time and range of each budget's search")
    parser.add_argument("--points", type=Path, default=LEDGER, help="the committed ledger of every verdict found")
    parser.add_argument("--min-seeds", type=int, default=3, help="leave out verdicts of fewer seeds (default 3)")
    # Every commit's experiments by default: a search resumed after a commit still
    # finds the points it ran (they stay tied to the commit they were queued from).
    parser.add_argument("--head-only", dest="all_commits", action="store_false",
                        help="only the experiments of HEAD, not of every commit")
    commands = parser.add_subparsers(dest="command")
    find = commands.add_parser("search", help="queue experiments until every model's boundary is bracketed")
    find.add_argument("--models", nargs="+", required=True, help="registered model names")
    find.add_argument("--budget", choices=["default", "article"], default="default")
    find.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds of every point")
    find.add_argument("--include", nargs="*", type=int, default=[], help="seqs to run whatever the search decides")
    find.add_argument("--max-seq", type=int, default=SEQ_MAX, help="upper end of the search (default 1000)")
    find.add_argument("--jobs", type=int, default=2, help="queue workers on this machine")
    find.add_argument("--poll", type=float, default=60.0, help="seconds between looks at the queue")
    find.add_argument("--width", type=float, default=WIDTH_GOAL,
                      help=f"once bracketed, add seeds until the 90%% interval is within ± this share of the horizon "
                           f"(default {WIDTH_GOAL})")
    find.add_argument("--max-experiments", type=int, default=40,
                      help="experiments per model and budget the seed refinement may reach (0: bracket only)")
    args = parser.parse_args(argv)

    if args.command == "search":
        from stages.lib.nn.models import REGISTRY

        unknown = [m for m in args.models if m not in REGISTRY]
        if unknown:
            raise CommandError(f"--models: unknown model(s) {', '.join(unknown)} (have: {', '.join(REGISTRY)})")
        if not SEQ_MIN <= args.max_seq <= SEQ_MAX or any(not SEQ_MIN <= s <= args.max_seq for s in args.include):
            raise CommandError(f"--max-seq and --include: seq must lie in {SEQ_MIN}..{SEQ_MAX}")
        if not 0 < args.width < 1 or args.max_experiments < 0:
            raise CommandError("--width must lie between 0 and 1 (a share of the horizon) and --max-experiments be 0 or more")
        runs = search(args.models, args.budget, tuple(args.seeds), tuple(args.include), args.max_seq, args.jobs,
                      args.poll, args.all_commits, args.log, args.points, args.width, args.max_experiments)
    else:
        runs, _ = shown_runs(args.all_commits)
    report(runs, args.out, args.figure, args.log, args.min_seeds, args.points)


if __name__ == "__main__":
    cli.run(main)
