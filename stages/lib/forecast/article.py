"""The LSTM-vs-ARIMA article's own preprocessing and inversions (brief, section B), to set beside its figures.

Its normalisation looks at the whole series, test period included; the
backtests never do this. Kept apart so that the article stage only wires it.
"""

from __future__ import annotations

import numpy as np

from stages.lib.forecast.series import difference, make_windows


def article_windows(y: np.ndarray, num_steps: int, test_len: int) -> dict[str, np.ndarray | float | int]:
    """The article's preprocessing: differences scaled by the max |difference| of the whole series."""
    z = difference(y, 1)
    scale = float(np.max(np.abs(z)))  # the article's normalisation, test period included
    X, target = make_windows(z / scale, num_steps)
    first_level = num_steps + 1  # window 0 predicts z[num_steps], the step into level num_steps + 1
    return {"X": X, "target": target, "scale": scale, "first_level": first_level, "n_train": len(target) - test_len}


def cumsum_levels(y: np.ndarray, diffs: np.ndarray, first_level: int) -> np.ndarray:
    """The article's inversion: the level before the first prediction plus the running sum of predicted differences."""
    return y[first_level - 1] + np.cumsum(diffs)


def one_step_levels(y: np.ndarray, diffs: np.ndarray, first_level: int) -> np.ndarray:
    """Our inversion: each predicted difference added to the true level before it."""
    return y[first_level - 1:first_level - 1 + len(diffs)] + diffs
