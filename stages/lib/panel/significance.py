"""Is a difference between forecasters real? Tests over the series of a panel (Demšar 2006's protocol).

- The Friedman test: do the forecasters' ranks over the series differ at all?
- The Nemenyi critical difference (CD): two mean ranks further apart than CD differ at the 5% level; the
  pairwise Nemenyi p-values come from scikit-posthocs, which also draws the critical-difference diagram.
- The Wilcoxon signed-rank test on the per-series errors of two forecasters, for a claim "A beats B".
- The Diebold-Mariano test on one series' rolling origins, for a claim "A beats B" on a single series.

scikit-posthocs rather than autorank: it gives the pairwise Nemenyi p-values and the CD diagram from them
with one small dependency (seaborn), while autorank chooses its tests itself (a normality check may switch
it to ANOVA) and pulls in baycomp; here the tests are fixed, Friedman and Nemenyi, as the forecasting
literature reports them. The CD itself is one line of scipy (the studentized range), the formula every
CD diagram prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ALPHA = 0.05


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for k forecasters over n series:
    q_alpha * sqrt(k (k + 1) / (6 n)), q_alpha the studentized range quantile over sqrt(2)."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6.0 * n)))


def friedman(errors: pd.DataFrame, alpha: float = ALPHA) -> dict:
    """The Friedman test and the Nemenyi CD over ``errors`` (one row per series, one column per forecaster,
    lower is better; rows with a missing value left out). Ties share their mean rank."""
    from scipy.stats import friedmanchisquare

    complete = errors.dropna()
    n, k = complete.shape
    if k < 3 or n < 2:
        # scipy's test needs three groups; two forecasters are compared by Wilcoxon instead.
        return {"series": n, "forecasters": k}
    statistic, p_value = friedmanchisquare(*(complete[c].to_numpy() for c in complete.columns))
    return {"series": int(n), "forecasters": int(k), "statistic": float(statistic), "p_value": float(p_value),
            "cd": critical_difference(k, n, alpha),
            "mean_ranks": complete.rank(axis=1).mean().to_dict()}


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired per-series errors; None where every pair is equal."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if not np.any(a[keep] != b[keep]):
        return None
    return float(wilcoxon(a[keep], b[keep]).pvalue)


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> float | None:
    """Two-sided p-value of the Diebold-Mariano test (1995) that two forecasters' expected losses are equal,
    from their losses at consecutive origins of one series (at least 2); None where every pair is equal.

    A forecast ``horizon`` steps ahead from consecutive origins shares its targets with the next
    ``horizon`` - 1 origins, so the loss differences are autocorrelated up to that lag: their mean's variance
    sums the autocovariances up to lag ``horizon`` - 1 (falling back to the variance alone where that sum is
    not positive). With the 10 origins of a backtest the asymptotic normal is far off, so the statistic takes
    Harvey, Leybourne and Newbold's (1997) correction and a t distribution with T - 1 degrees of freedom.

    Written here rather than imported: statsmodels has no Diebold-Mariano test, and the PyPI packages that do
    (dieboldmariano, diebold-mariano-test) are one-author projects that would add a dependency for what is a
    dozen lines of numpy and scipy, checked by hand in tests/test_significance.py.
    """
    from scipy.stats import t as student

    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[np.isfinite(d)]
    n, h = len(d), max(1, int(horizon))
    if n < 2:
        raise ValueError(f"a Diebold-Mariano test needs the losses of at least 2 origins, got {n}")
    if not np.any(d):
        return None
    centred = d - d.mean()
    gamma = [float(centred[k:] @ centred[: n - k]) / n for k in range(min(h, n))]
    variance = gamma[0] + 2 * sum(gamma[1:])
    variance = variance if variance > 0 else gamma[0]
    if variance == 0:
        return 0.0  # one forecaster better by the same amount at every origin
    correction = np.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 1e-12) / n)
    statistic = correction * d.mean() / np.sqrt(variance / n)
    return float(2 * student.sf(abs(statistic), n - 1))


def against_best(errors: pd.DataFrame) -> tuple[str, dict[str, float | None]]:
    """The forecaster with the lowest mean error, and each other's Wilcoxon p-value against it."""
    best = errors.mean().idxmin()
    return best, {name: wilcoxon_p(errors[name].to_numpy(), errors[best].to_numpy())
                  for name in errors.columns if name != best}


def significance(errors: pd.DataFrame) -> dict:
    """The tests behind a panel's verdicts, on per-series sMAPE (``errors``: a row per series, a column per
    forecaster): Friedman with the Nemenyi critical difference of mean ranks (5%), and each forecaster's Wilcoxon
    signed-rank p-value against the best mean sMAPE."""
    test = friedman(errors)
    best, pvalues = against_best(errors)
    return {"friedman_statistic": test.get("statistic"), "friedman_p": test.get("p_value"), "cd": test.get("cd"),
            "best": best, "wilcoxon_p_vs_best": pvalues}


def p_text(p_value: float) -> str:
    """``p = 0.012``; a p-value that underflows to 0 (a statistic of thousands over 3003 series) as a bound."""
    return f"p = {p_value:.2g}" if p_value > 0 else "p < 1e-300"


def verdict(p_value: float | None, alpha: float = ALPHA) -> str:
    """How a report words a test's outcome."""
    if p_value is None:
        return "identical"
    return p_text(p_value) + ("" if p_value < alpha else ", not significant at 5%")


def _draw_cd(ax, errors: pd.DataFrame, title: str) -> None:
    import scikit_posthocs as sp

    complete = errors.dropna()
    ranks = complete.rank(axis=1).mean()
    pvalues = sp.posthoc_nemenyi_friedman(complete.to_numpy())
    pvalues.index = pvalues.columns = complete.columns
    sp.critical_difference_diagram(ranks, pvalues, ax=ax, alpha=ALPHA)
    cd = critical_difference(len(ranks), len(complete))
    ax.set_title(f"{title}\nmean rank over {len(complete)} series (1 = best); bars join forecasters not "
                 f"significantly different (Nemenyi, 5%; CD = {cd:.2f})", fontsize=9)


def cd_diagram(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Critical-difference diagrams, one under another, each titled by its key (a panel, or a pooled group):
    mean ranks on an axis, forecasters not significantly different (pairwise Nemenyi, 5%) joined by a bar.
    No table: a figure that says so (DVC expects the file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    if not tables:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no group of panels ran (`run_panels` in params.yaml)", ha="center", va="center")
    else:
        heights = [0.35 * t.shape[1] + 1.5 for t in tables.values()]
        fig, axes = plt.subplots(len(tables), 1, figsize=(8, sum(heights)), squeeze=False,
                                 gridspec_kw={"height_ratios": heights})
        for ax, (name, table) in zip(axes.flat, tables.items()):
            _draw_cd(ax, table, name)
        fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
