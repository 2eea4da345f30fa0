"""The competition protocol (the M-competitions'): each series' last ``horizon`` points are held out and
forecast from one origin; sMAPE and MASE per series, and their aggregates over a panel (the report pools
a group of panels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.forecast.scoring import mase, mean_ranks, smape, spread, symmetric_ratio


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


def undefined_mase(scores: pd.DataFrame) -> int:
    """Series whose MASE is undefined for every forecaster: a history that is flat (its in-sample seasonal naive
    error is 0) or no longer than a season (it has none). The mean MASE leaves them out; the count says how many."""
    return int(scores.groupby("id", sort=False)["mase"].apply(lambda s: s.isna().all()).sum())


def aggregate(scores: pd.DataFrame, baselines: list[str], rank_by: str = "smape") -> dict[str, dict]:
    """Per forecaster over the series: mean sMAPE, mean MASE, mean rank and wins against each baseline.

    ``scores`` has one row per series and forecaster (columns ``id, forecaster,
    smape, mase``). Ranks are per series by ``rank_by`` (1 = best, ties share the
    mean rank); a win is a strictly lower ``rank_by`` than the baseline's on a
    series, as a share of the series.
    """
    wide = scores.pivot(index="id", columns="forecaster", values=rank_by)
    names = list(dict.fromkeys(scores["forecaster"]))
    ranks = mean_ranks(wide[names].T.to_dict())  # each series ranks the forecasters, as a dataset does
    means = scores.groupby("forecaster", sort=False)[["smape", "mase"]].mean()
    out = {}
    for name in names:
        out[name] = {"smape": float(means.loc[name, "smape"]), "mase": float(means.loc[name, "mase"]),
                     "mean_rank": float(ranks[name]),
                     **{f"wins_{b}": float((wide[name] < wide[b]).mean()) for b in baselines if b != name}}
    return out


# M3's bands of steps ahead (Makridakis and Hibon 2000 tabulate sMAPE over 1-6, 7-12 and 13-18).
BANDS = ((1, 6), (7, 12), (13, 18))


def smape_by_band(values: dict[str, np.ndarray], predicted: dict[str, dict[str, np.ndarray]], horizon: int
                  ) -> dict[str, dict[str, float]]:
    """Per forecaster, the sMAPE over every series' points of each band of steps ahead that the horizon reaches
    (``h1_6``, ``h7_12``, ``h13_18``; a band cut by the horizon, e.g. 7-8 for a horizon of 8, is named as cut)."""
    names = list(next(iter(predicted.values()))) if predicted else []
    out: dict[str, dict[str, float]] = {}
    for name in names:
        actual = np.stack([values[sid][-horizon:] for sid in predicted])
        forecast = np.stack([f[name] for f in predicted.values()])
        points = 100.0 * symmetric_ratio(actual, forecast)
        out[name] = {f"h{lo}_{min(hi, horizon)}": float(points[:, lo - 1:min(hi, horizon)].mean())
                     for lo, hi in BANDS if lo <= horizon}
    return out


def owa(summary: dict[str, dict], reference: str = "naive2") -> dict[str, float]:
    """The M4 competition's overall weighted average: each forecaster's mean sMAPE and mean MASE relative to
    Naive2's, averaged (1 = as good as Naive2, lower is better); empty where Naive2 did not run."""
    if reference not in summary:
        return {}
    base = summary[reference]
    return {name: 0.5 * (agg["smape"] / base["smape"] + agg["mase"] / base["mase"]) for name, agg in summary.items()}


def member_spread(scores: pd.DataFrame, members: list[str], configs: list) -> dict:
    """What an ensemble buys, from its members' per-series scores (``scores``: id, forecaster, smape) under the
    names ``members``, in order, and their ``configs`` (MemberConfig: seed, lookback, loss): the mean and sample sd
    over the members of each one's mean sMAPE over the series (whatever they differ in: the counts of seeds,
    look-backs and losses say what), and the best of them."""
    alone = scores[scores["forecaster"].isin(members)].groupby("forecaster")["smape"].mean().reindex(members)
    return {"count": len(members), **spread(alone, "smape"), "seeds": len({c.seed for c in configs}),
            "lookbacks": len({c.lookback for c in configs}), "losses": len({c.loss for c in configs})}
