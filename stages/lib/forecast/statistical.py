"""The field's classical benchmarks from statsforecast: ETS, Theta and an automatic ARIMA.

Each wraps one statsforecast model behind the project's interface, so the
backtest treats it as any forecaster. statsforecast rather than statsmodels:
statsmodels has ETSModel but no automatic choice of error, trend and season
(it would have to be hand-written), and statsforecast's AutoETS, Theta and
AutoARIMA follow Hyndman's forecast package (ets, thetaf, auto.arima) in
compiled code; on the shipped series they fit in milliseconds to a second
(measured side by side: ``python benchmarks/classical.py``, docs/speed.md).

- ``fit(history)`` selects and estimates the model on ``history`` (statsforecast
  selects at every fit: it is what the library's models do, and it is cheap).
- ``update(history)`` keeps the model and its parameters and conditions on the
  longer history (statsforecast's ``forward``).
- ``predict_interval`` gives the model's own normal intervals.

statsforecast is imported inside the methods, so validating params stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.lib.forecast.base import Forecaster, Intervals, as_array
from stages.lib.forecast.specs import AutoArimaSpec, EtsSpec, Spec, ThetaSpec
from stages.lib.infra import cluster
from stages.lib.infra.cores import cores


# Fitted models by (class, settings, season, history): within one stage process the
# combination's members then reuse the fits their namesakes made at the same
# origins instead of repeating them (an AutoARIMA search is seconds on a seasonal
# series). A fit is a pure function of these, so reuse changes no number.
_FITS: dict[tuple, Any] = {}


def forget_fits() -> None:
    """Empty the fit cache: when no later fit can reuse what it holds (the next series of a panel, a test)."""
    _FITS.clear()


class StatsForecastModel(Forecaster):
    """One statsforecast model; subclasses say which (``model()``) and what it chose (``chosen()``)."""

    has_intervals = True

    def __init__(self, spec: Spec, season_length: int = 1, num_steps: int = 1) -> None:
        super().__init__(spec, season_length, num_steps)
        self.estimated: np.ndarray | None = None  # the history the parameters were estimated on

    def model(self):  # pragma: no cover - interface
        raise NotImplementedError

    def chosen(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def _key(self, history: np.ndarray) -> tuple:
        # refit_every and datasets say when and where it fits, not what a fit is.
        return (type(self).__name__, self.spec.model_dump_json(exclude={"refit_every", "datasets"}), self.m,
                history.tobytes())

    def fit(self, history: np.ndarray) -> StatsForecastModel:
        self.history = self.estimated = as_array(history)
        key = self._key(self.history)
        if key not in _FITS:
            _FITS[key] = self.model().fit(self.history)
        self.fitted_model = _FITS[key]
        return self

    def fit_ahead(self, histories: list[np.ndarray], workers: int) -> None:
        """Fit ``histories`` over ``workers`` processes (or the Dask cluster) into the cache that ``fit`` reads (same fits, same numbers:
        each is a pure function of its history; joblib keeps each worker's BLAS to one thread)."""
        todo = [h for h in map(as_array, histories) if self._key(h) not in _FITS]
        if len(todo) < 2 or cluster.slots(workers) < 2:  # on a cluster, its threads
            return
        fitted = cluster.map_ordered(_fit, todo, (self.model(),), workers, name=f"{type(self).__name__}-refits")
        _FITS.update({self._key(h): model for h, model in zip(todo, fitted, strict=True)})

    def update(self, history: np.ndarray) -> StatsForecastModel:
        self.history = as_array(history)
        return self

    def _forecast(self, horizon: int, levels: list[int] | None = None) -> dict[str, Any]:
        if self.history is self.estimated:
            return self.fitted_model.predict(horizon, level=levels)
        return self.fitted_model.forward(self.history, horizon, level=levels)

    def predict(self, horizon: int) -> np.ndarray:
        return np.asarray(self._forecast(horizon)["mean"], dtype=float)

    def predict_interval(self, horizon: int, levels: list[int]) -> Intervals:
        out = self._forecast(horizon, levels)
        return {level: (np.asarray(out[f"lo-{level}"], dtype=float), np.asarray(out[f"hi-{level}"], dtype=float))
                for level in levels}

    def fitted(self) -> np.ndarray:
        return np.asarray(self.fitted_model.forward(self.history, 1, fitted=True)["fitted"], dtype=float)

    def summary(self) -> dict[str, Any]:
        return {"model": self.chosen()}

    def facts(self) -> dict[str, Any]:
        return {"model": self.chosen(), "library": "statsforecast"}


class Ets(StatsForecastModel):
    """AutoETS: error, trend (damped allowed) and season chosen by AICc, as Hyndman's ets."""

    spec: EtsSpec

    def model(self):
        from statsforecast.models import AutoETS

        return AutoETS(season_length=self.m, model=self.spec.model, damped=self.spec.damped)

    def chosen(self) -> str:
        return str(self.fitted_model.model_["method"])


class Theta(StatsForecastModel):
    """The standard Theta method (Assimakopoulos and Nikolopoulos, as Hyndman's thetaf): SES with drift
    of half the linear trend, on data seasonally adjusted by classical decomposition when a 90% test finds
    a season."""

    spec: ThetaSpec

    def model(self):
        from statsforecast.models import Theta as StandardTheta

        return StandardTheta(season_length=self.m, decomposition_type=self.spec.decomposition)

    def chosen(self) -> str:
        model = self.fitted_model.model_
        # statsforecast falls back to an additive season for data that are not all positive.
        return f"Theta({model['decomposition_type']} season)" if model.get("decompose") else "Theta(no season)"


class AutoArima(StatsForecastModel):
    """statsforecast's AutoARIMA (Hyndman and Khandakar's stepwise search by AICc, drift allowed)."""

    spec: AutoArimaSpec

    def model(self):
        from statsforecast.models import AutoARIMA

        s = self.spec
        return AutoARIMA(season_length=self.m, max_p=s.max_p, max_q=s.max_q, max_P=s.max_P, max_Q=s.max_Q,
                         max_d=s.max_d, max_D=s.max_D, stepwise=s.stepwise, allowdrift=s.allowdrift)

    def prepare(self, histories: list[np.ndarray]) -> None:
        # A seasonal stepwise search costs about 3 s per origin on elnino's 150 points, and the refit
        # origins' searches are independent: they run over the cores first (58 s -> 38 s on elnino with
        # the second core half busy; docs/speed.md). A non-seasonal search costs a tenth of that, less
        # than starting the workers.
        if self.m > 1:
            self.fit_ahead(histories, min(4, cores()))

    def chosen(self) -> str:
        from statsforecast.arima import arima_string

        return arima_string(self.fitted_model.model_).strip()


def _fit(history: np.ndarray, model: Any) -> Any:
    """One statsforecast fit (a module-level function: the pools pickle it by name)."""
    return model.fit(history)
