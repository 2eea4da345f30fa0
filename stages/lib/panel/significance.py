"""Is a difference between forecasters real? Tests over the series of a panel (Demšar 2006's protocol).

- The Friedman test: do the forecasters' ranks over the series differ at all?
- The Nemenyi critical difference (CD): two mean ranks further apart than CD differ at the 5% level; the
  pairwise Nemenyi p-values come from scikit-posthocs, which also draws the critical-difference diagram.
- The Wilcoxon signed-rank test on the per-series errors of two forecasters, for a claim "A beats B".

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


def cd_diagram(errors: pd.DataFrame, path: Path, title: str) -> None:
    """The critical-difference diagram: mean ranks on an axis, forecasters not significantly different
    (pairwise Nemenyi, 5%) joined by a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    complete = errors.dropna()
    ranks = complete.rank(axis=1).mean()
    pvalues = sp.posthoc_nemenyi_friedman(complete.to_numpy())
    pvalues.index = pvalues.columns = complete.columns
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ranks) + 1.5))
    sp.critical_difference_diagram(ranks, pvalues, ax=ax, alpha=ALPHA)
    cd = critical_difference(len(ranks), len(complete))
    ax.set_title(f"{title}\nmean rank over {len(complete)} series (1 = best); bars join forecasters not "
                 f"significantly different (Nemenyi, 5%; CD = {cd:.2f})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
