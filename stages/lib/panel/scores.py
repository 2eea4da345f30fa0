"""The competition protocol (the M-competitions'): each series' last ``horizon`` points are held out and
forecast from one origin; sMAPE and MASE per series, and their aggregates over a panel or a group of panels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.forecast.scoring import mase, smape


def holdout(y: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The competition protocol: the last ``horizon`` points are the test, everything before the history."""
    y = np.asarray(y, dtype=float)
    return y[:-horizon], y[-horizon:]


# ------------------------------------------------------------------ scoring

def score_series(y: np.ndarray, forecasts: dict[str, np.ndarray], horizon: int, season_length: int) -> dict[str, dict]:
    """sMAPE and MASE of each forecaster on one series, as in Hyndman's recomputation of the M3 results:
    MASE is scaled by the in-sample MAE of the seasonal naive forecast."""
    train, test = holdout(y, horizon)
    return {name: {"smape": smape(test, f), "mase": mase(test, f, train, season_length)}
            for name, f in forecasts.items()}


def aggregate(scores: pd.DataFrame, baselines: list[str], rank_by: str = "smape") -> dict[str, dict]:
    """Per forecaster over the series: mean sMAPE, mean MASE, mean rank and wins against each baseline.

    ``scores`` has one row per series and forecaster (columns ``id, forecaster,
    smape, mase``). Ranks are per series by ``rank_by`` (1 = best, ties share the
    mean rank); a win is a strictly lower ``rank_by`` than the baseline's on a
    series, as a share of the series.
    """
    wide = scores.pivot(index="id", columns="forecaster", values=rank_by)
    names = list(dict.fromkeys(scores["forecaster"]))
    ranks = wide[names].rank(axis=1, method="average").mean(axis=0)
    means = scores.groupby("forecaster", sort=False)[["smape", "mase"]].mean()
    out = {}
    for name in names:
        out[name] = {"smape": float(means.loc[name, "smape"]), "mase": float(means.loc[name, "mase"]),
                     "mean_rank": float(ranks[name]),
                     **{f"wins_{b}": float((wide[name] < wide[b]).mean()) for b in baselines if b != name}}
    return out


def pooled(panels: list[dict], names: list[str]) -> dict[str, dict]:
    """Aggregates over several panels' series from each panel's metrics (``series`` and a dict of aggregates per
    forecaster name), weighted by its series; for the ``names`` that every panel ran.

    Exact for every aggregate here, because each is a mean over series (a rank
    and a win are decided within one series).
    """
    total = sum(p["series"] for p in panels)
    out = {}
    for name in [n for n in names if all(n in p for p in panels)]:
        keys = [k for k in panels[0][name] if all(k in p[name] for p in panels)]
        out[name] = {k: sum(p["series"] * p[name][k] for p in panels) / total for k in keys}
    return out
