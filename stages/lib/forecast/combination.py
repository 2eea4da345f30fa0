"""The mean of several forecasters' point forecasts: the combination benchmark.

Equal-weight combinations of ETS, ARIMA and Theta are among the strongest
simple benchmarks in the M4 results. Each member is refitted and updated with
the combination; the combination has no intervals of its own, so the backtest
gives it empirical ones from its past errors, as for every forecaster without.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.lib.forecast.base import Forecaster, as_array
from stages.lib.forecast.specs import CombinationSpec


class Combination(Forecaster):
    spec: CombinationSpec

    def __init__(self, spec: CombinationSpec, season_length: int = 1, num_steps: int = 1) -> None:
        from stages.lib.forecast import registry  # the registry lists this class: imported here, not at the top

        super().__init__(spec, season_length, num_steps)
        # Every member with its statistical: entry's settings (or its kind's defaults), refitted as often as the
        # combination.
        self.members = {name: registry.build(spec.member_spec(name), season_length, num_steps)
                        for name in spec.members}

    def prepare(self, histories: list[np.ndarray]) -> None:
        for member in self.members.values():
            member.prepare(histories)

    def fit(self, history: np.ndarray) -> Combination:
        self.history = as_array(history)
        for member in self.members.values():
            member.fit(self.history)
        return self

    def update(self, history: np.ndarray) -> Combination:
        self.history = as_array(history)
        for member in self.members.values():
            member.update(self.history)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        return np.mean([member.predict(horizon) for member in self.members.values()], axis=0)

    def fitted(self) -> np.ndarray:
        return np.mean([member.fitted() for member in self.members.values()], axis=0)

    def summary(self) -> dict[str, Any]:
        return {"members": "mean of " + ", ".join(self.members)}

    def facts(self) -> dict[str, Any]:
        return {"members": {kind: member.summary() for kind, member in self.members.items()}}
