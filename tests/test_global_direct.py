"""Direct multi-horizon global models: N-BEATS' blocks and bases, N-BEATS' window sampling, the validation
split, the losses, the median ensemble, and a panel model trained end to end (seeded, deterministic, learning)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.config import parse_params
from stages.lib.errors import ParamsError
from stages.lib.forecast.global_direct import (WindowPool, fit_member, mase_denominators, median_ensemble,
                                               validation_split)
from stages.lib.forecast.specs import MemberConfig, PanelKerasSpec, member_configs
from stages.lib.nn.models import FitParams, NBeatsSpec, fourier_frequencies, seasonality_basis, trend_basis


# ------------------------------------------------------------------ N-BEATS

@pytest.mark.parametrize("arch", [{"variant": "generic", "stacks": 3, "units": 16},
                                  {"variant": "interpretable", "blocks": 2, "units": 8, "seasonality_units": 8,
                                   "degree": 2, "share_weights": True}])
def test_nbeats_maps_a_look_back_to_the_whole_horizon(arch):
    model = NBeatsSpec(**arch).build(12, 1, 6)
    out = np.asarray(model(np.random.default_rng(0).normal(size=(5, 12, 1)).astype(np.float32)))
    assert out.shape == (5, 6) and np.all(np.isfinite(out))


def test_shared_weights_make_the_interpretable_stacks_smaller():
    shared = NBeatsSpec(variant="interpretable", blocks=3, units=8, seasonality_units=8, share_weights=True)
    own = shared.model_copy(update={"share_weights": False})
    # Three blocks of one stack share one set of trainable weights: a third as many.
    assert shared.build(12, 1, 6).count_params() < own.build(12, 1, 6).count_params() / 2


def _no_bfloat16() -> bool:
    from stages.lib.nn.models import bfloat16_hardware

    return bfloat16_hardware() is False


NO_BFLOAT16 = pytest.mark.skipif("_no_bfloat16()", reason="this machine has no bfloat16 arithmetic: the stage "
                                                          "refuses mixed_bfloat16 here (tested below)")


@NO_BFLOAT16
@pytest.mark.parametrize("variant", ["generic", "interpretable"])
def test_bfloat16_hidden_layers_multiply_in_bfloat16_and_keep_the_rest_float32(variant):
    import keras

    keras.utils.set_random_seed(0)
    arch = NBeatsSpec(variant=variant, stacks=2, units=16, seasonality_units=16, blocks=2, share_weights=True)
    plain, mixed = arch.build(12, 1, 6), arch.model_copy(update={"hidden_dtype": "mixed_bfloat16"}).build(12, 1, 6)
    policies = {layer.name: layer.dtype_policy.name for layer in mixed.layers}
    hidden = [name for name, layer in ((n, mixed.get_layer(n)) for n in policies)
              if getattr(layer, "activation", None) is not None and layer.activation.__name__ == "relu"]
    assert hidden and all(policies[name] == "mixed_bfloat16" for name in hidden)
    assert {p for name, p in policies.items() if name not in hidden} == {"float32"}  # heads, residuals, the sum
    assert {w.dtype for w in mixed.weights} == {"float32"} and mixed.count_params() == plain.count_params()
    # The same weights give the same forecast to bfloat16's precision (8 bits of mantissa), in float32.
    mixed.set_weights(plain.get_weights())
    x = np.random.default_rng(0).normal(size=(64, 12, 1)).astype(np.float32)
    out, ref = np.asarray(mixed(x)), np.asarray(plain(x))
    assert out.dtype == np.float32
    # Not the float32 network, but within bfloat16's rounding (2^-8 relative, on inputs of up to 3 in size):
    # measured over five seeds, the mean error 0.3-0.6% of the mean forecast, the largest at most 4.3%.
    error, scale = np.abs(out - ref), np.abs(ref).mean()
    assert 0 < error.mean() < 0.02 * scale and error.max() < 0.1 * scale


def test_bfloat16_hardware_reads_the_cpus_flags(tmp_path, monkeypatch):
    import tensorflow as tf

    from stages.lib.nn import models

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # no GPU, whatever runs this
    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("fpu sse2 avx2 avx512f", False), ("fpu avx2 avx512f avx512_bf16", True),
                            ("fpu avx512f amx_tile amx_bf16", True)):
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert models.bfloat16_hardware(str(cpuinfo)) is expected
    assert models.bfloat16_hardware(str(tmp_path / "absent")) is None  # not Linux: unknown, not refused
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")  # ARM names no x86 flags: unknown
    assert models.bfloat16_hardware(str(cpuinfo)) is None


def test_bfloat16_hidden_layers_on_a_cpu_without_bfloat16_are_one_line_naming_the_key(monkeypatch):
    from stages.lib.nn import models

    arch = NBeatsSpec(stacks=1, units=8, hidden_dtype="mixed_bfloat16")
    monkeypatch.setattr(models, "bfloat16_hardware", lambda: False)
    with pytest.raises(ParamsError, match=r"^arch\.hidden_dtype: mixed_bfloat16 needs a GPU or a CPU with bfloat16 "
                                          r"instructions \(AMX or AVX512-BF16\), and this machine has neither: set "
                                          r"it to float32$"):
        arch.build(12, 1, 6)
    assert NBeatsSpec(stacks=1, units=8).build(12, 1, 6) is not None  # float32 builds anywhere
    monkeypatch.setattr(models, "bfloat16_hardware", lambda: None)  # unknown: built, as asked
    assert arch.build(12, 1, 6) is not None


def test_the_panel_model_stage_refuses_bfloat16_without_the_hardware_naming_the_entry(raw_params, monkeypatch):
    from stages import panel_model
    from stages.lib.nn import models

    raw_params["panel_models"]["nbeats_g"]["arch"]["hidden_dtype"] = "mixed_bfloat16"
    spec = parse_params(raw_params).panel_model("nbeats_g")
    monkeypatch.setattr(models, "bfloat16_hardware", lambda: False)
    series = [("N1", np.arange(40.0))]
    with pytest.raises(ParamsError, match=r"^params\.yaml: panel_models\.nbeats_g: arch\.hidden_dtype: mixed_bfloat16 "
                                          r"needs a GPU or a CPU with bfloat16 instructions"):
        panel_model.forecast_direct("nbeats_g", spec, series, 6, 1, 12, "panel_model@m3_yearly-nbeats_g", run=None)


def test_an_unknown_hidden_dtype_is_refused_naming_the_key(raw_params):
    raw_params["panel_models"]["nbeats_g"]["arch"]["hidden_dtype"] = "float16"
    with pytest.raises(ParamsError, match=r"^params\.yaml: panel_models\.nbeats_g: arch\.hidden_dtype: Input should be "
                                          r"'float32' or 'mixed_bfloat16'"):
        parse_params(raw_params)


def _keras_basis_output(basis: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """theta through the fixed-basis head the blocks use (a Dense layer whose kernel is the basis)."""
    import keras

    from stages.lib.nn.models import _nbeats_block_layers

    block = _nbeats_block_layers(4, 1, basis, basis, basis.shape[1], basis.shape[1])
    inputs = keras.Input(shape=(basis.shape[0],))
    model = keras.Model(inputs, block["forecast"](inputs))
    assert not block["forecast"].trainable_weights  # the basis is not learnt
    return np.asarray(model(theta[None].astype(np.float32)))[0]


def test_a_trend_stack_of_degree_two_reproduces_a_quadratic_exactly():
    horizon = 8
    t = np.arange(horizon) / horizon
    quadratic = 3.0 - 2.0 * t + 5.0 * t ** 2
    basis = trend_basis(horizon, 2)
    assert basis.shape == (3, horizon)
    np.testing.assert_allclose(basis[2], t ** 2)
    # theta = the coefficients: the basis head returns the polynomial itself.
    np.testing.assert_allclose(_keras_basis_output(basis, np.array([3.0, -2.0, 5.0])), quadratic, rtol=1e-5, atol=1e-5)
    # and a cubic is not in its span: degree 2 cannot fit it.
    residual = np.linalg.lstsq(basis.T, t ** 3, rcond=None)[1]
    assert residual[0] > 1e-4


def test_a_seasonality_stack_reproduces_a_sinusoid_of_its_frequencies():
    horizon = 18
    freqs = fourier_frequencies(horizon, harmonics=1)
    np.testing.assert_array_equal(freqs, np.arange(9))  # 0 .. horizon/2 - 1 cycles per horizon
    basis = seasonality_basis(horizon, horizon, 1, backcast=False)
    assert basis.shape == (18, horizon)
    # Two cycles per horizon (a period of 9 steps), amplitude 1.5 and a phase: 1.5 cos(2 pi 2 t/18 - 0.4).
    steps = np.arange(horizon)
    wave = 1.5 * np.cos(2 * np.pi * 2 * steps / horizon - 0.4)
    theta = np.zeros(18)
    theta[2], theta[9 + 2] = 1.5 * np.cos(0.4), 1.5 * np.sin(0.4)
    np.testing.assert_allclose(_keras_basis_output(basis, theta), wave, atol=1e-5)
    # The backcast's grid runs backwards in the same units: the same frequency has the same period in it.
    back = seasonality_basis(27, horizon, 1, backcast=True)
    np.testing.assert_allclose(back[2, :9], back[2, 9:18], atol=1e-12)


def test_nbeats_blocks_that_do_not_fit_the_horizon_are_refused_naming_the_key(raw_params):
    raw_params["panel_models"]["nbeats_i"]["arch"]["degree"] = 6
    with pytest.raises(ParamsError, match=r"^params\.yaml: panel_models\.nbeats_i\.arch\.degree: 6 needs a horizon of "
                                          r"at least 7 points, not 6 \(on panel m3_yearly\)$"):
        parse_params(raw_params)


# ------------------------------------------------------------------ windows and validation

def test_windows_by_hand_padding_scale_and_targets():
    y = np.array([2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    pool = WindowPool([y], lookback=3, horizon=2)
    inputs, targets, real, _ = pool.windows(np.array([0, 0]), np.array([1, 4]))
    # Origin 1: one real input (2), padded on the left with the first value; targets 4, 6.
    np.testing.assert_array_equal(inputs, [[2, 2, 2], [4, 6, 8]])
    np.testing.assert_array_equal(real, [[False, False, True], [True, True, True]])
    np.testing.assert_array_equal(targets, [[4, 6], [10, 12]])
    X, t, w, scale = pool.scaled(np.array([0, 0]), np.array([1, 4]))
    # Each window divided by the mean |value| of its real inputs only: 2, then 6.
    np.testing.assert_allclose(scale, [2.0, 6.0])
    np.testing.assert_allclose(X[1, :, 0], [4 / 6, 1, 8 / 6], rtol=1e-6)
    np.testing.assert_allclose(t[1], [10 / 6, 2], rtol=1e-6)
    np.testing.assert_array_equal(w, [1, 1])
    # Origins with all targets real: 1 .. 4; history_limit 1 horizon keeps the last 2 origins.
    assert (pool.lo[0], pool.hi[0]) == (1, 4)
    limited = WindowPool([y], lookback=3, horizon=2, history_limit=1)
    assert (limited.lo[0], limited.hi[0]) == (3, 4)
    X, t, _ = limited.draw(200, np.random.default_rng(0))
    # First target over last input is scale-free: origin 3 gives 8 / 6, origin 4 gives 10 / 8; nothing earlier.
    ratios = t[:, 0] / X[:, -1, 0]
    early, late = np.isclose(ratios, 8 / 6, rtol=1e-5), np.isclose(ratios, 10 / 8, rtol=1e-5)
    assert np.all(early | late) and early.any() and late.any()
    # The forecast's input: the last 3 values.
    X_last, scale_last = pool.last()
    np.testing.assert_allclose(X_last[0, :, 0] * scale_last[0], [8, 10, 12], rtol=1e-6)


def test_draws_are_reproducible_from_the_generator_and_stay_inside_each_series():
    series = [np.arange(1.0, 21.0), 100 + np.arange(1.0, 9.0)]
    pool = WindowPool(series, lookback=4, horizon=3, history_limit=2)
    first = pool.draw(64, np.random.default_rng([5, 1, 0]))
    again = pool.draw(64, np.random.default_rng([5, 1, 0]))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    X, y, _ = first
    # Both series are arithmetic with step 1: inputs and targets continue each other, whatever the scale.
    levels = np.concatenate([X[..., 0], y], axis=1)
    steps = np.diff(levels, axis=1)
    np.testing.assert_allclose(steps[:, -3:], steps[:, -1:].repeat(3, axis=1), rtol=1e-4)


def test_the_validation_split_keeps_every_validation_point_out_of_training_and_scaling():
    horizon = 4
    histories = [np.arange(1.0, 15.0), np.arange(1.0, 7.0)]  # the second is too short to validate on
    parts, validated, held = validation_split(histories, horizon)
    np.testing.assert_array_equal(parts[0], np.arange(1.0, 11.0))
    np.testing.assert_array_equal(validated, [0])
    np.testing.assert_array_equal(held, [[11, 12, 13, 14]])
    pool = WindowPool(parts, lookback=5, horizon=horizon)
    # Every origin a training window can have: no input or target reaches the held-out points (11 and more).
    assert (pool.lo[0], pool.hi[0]) == (1, 6)
    inputs, targets, _, _ = pool.windows(np.zeros(6, dtype=int), np.arange(1, 7))
    assert inputs.max() == 6 and np.nanmax(targets) == 10
    X, y, _ = pool.draw(500, np.random.default_rng(0))
    # Series 0 is 1..10 here: a window's first target over its last input is (c + 1) / c for an origin c <= 6.
    assert np.min(y[:, 0] / X[:, -1, 0]) >= 7 / 6 - 1e-6
    X_val, scale = WindowPool([parts[0]], 5, horizon).last()
    np.testing.assert_allclose(scale, [np.mean([6, 7, 8, 9, 10])])  # the scale of the inputs before the held-out


def test_the_mase_weights_turn_the_absolute_error_into_the_mase():
    y = np.array([10.0, 12.0, 11.0, 15.0, 14.0, 18.0, 17.0, 21.0])
    denom = mase_denominators([y], season_length=2)
    np.testing.assert_allclose(denom, [np.mean(np.abs(y[2:] - y[:-2]))])
    pool = WindowPool([y], lookback=3, horizon=2, mase_scale=denom)
    X, t, w, scale = pool.scaled(np.array([0]), np.array([5]))
    forecast = np.array([16.0, 20.0])
    # The weighted absolute error on scaled values equals the MASE on the original scale.
    weighted = w[0] * np.mean(np.abs(t[0] - forecast / scale[0]))
    assert weighted == pytest.approx(np.mean(np.abs(y[5:7] - forecast)) / denom[0], rel=1e-5)


def test_the_median_ensemble_by_hand():
    members = [np.array([[1.0, 10.0]]), np.array([[3.0, -2.0]]), np.array([[2.0, 4.0]]), np.array([[100.0, 5.0]])]
    np.testing.assert_array_equal(median_ensemble(members[:3]), [[2.0, 4.0]])
    np.testing.assert_array_equal(median_ensemble(members), [[2.5, 4.5]])  # an even count: the mean of the middle two
    configs = member_configs([0, 1], [12, 18], ["smape", "mase"])
    assert [c.label for c in configs[:4]] == ["seed0-L12-smape", "seed0-L12-mase", "seed0-L18-smape", "seed0-L18-mase"]
    assert len(configs) == 8


# ------------------------------------------------------------------ a member, trained

def seasonal_panel(n: int = 6, length: int = 48) -> list[np.ndarray]:
    t = np.arange(length)
    rng = np.random.default_rng(1)
    return [(50 + 10 * i) * (1 + 0.2 * np.sin(2 * np.pi * t / 6 + i)) + 0.1 * t + rng.normal(scale=0.3, size=length)
            for i in range(n)]


def train_member(loss: str = "smape", seed: int = 3, refit: bool = True):
    fit = FitParams(seed=seed, max_epochs=8, batch_size=64, learning_rate=0.01, patience=3)
    arch = NBeatsSpec(stacks=2, units=32)
    return fit_member(MemberConfig(seed, 12, loss), seasonal_panel(), horizon=6, season_length=6,
                      build=lambda steps, outputs: arch.build(steps, 1, outputs), fit=fit, batches_per_epoch=10,
                      history_limit=None, refit=refit)


def test_a_direct_member_is_seeded_deterministic_and_learns():
    first, again = train_member(), train_member()
    np.testing.assert_array_equal(first.forecast, again.forecast)  # same seed and data: the same numbers
    assert first.forecast.shape == (6, 6) and np.all(np.isfinite(first.forecast))
    validation, refit = first.histories
    assert validation["loss"].iloc[-1] < 0.5 * validation["loss"].iloc[0]  # it learnt
    assert first.epochs == int(validation["val_loss"].idxmin()) + 1 and len(refit) == first.epochs
    assert not np.array_equal(train_member(seed=4).forecast, first.forecast)


@pytest.mark.parametrize(("start", "level"), [("mean", lambda x: 1.0), ("last", lambda x: x[:, -1, 0])])
def test_the_forecast_starts_from_the_look_backs_mean_or_its_last_value(start, level):
    import keras

    from stages.lib.forecast.global_direct import from_the_window

    silent = keras.Sequential([keras.Input((5, 1)), keras.layers.Flatten(), keras.layers.Dense(3, kernel_initializer="zeros")])
    X = np.array([[0.5, 1.0, 1.5, 0.8, 1.2], [1.0, 1.0, 1.0, 1.0, 0.4]], dtype=np.float32)[..., None]
    out = np.asarray(from_the_window(silent, start)(X))
    # A network that adds nothing forecasts the start at every step: 1 (a scaled window's mean level) or x[-1].
    np.testing.assert_allclose(out, np.broadcast_to(np.reshape(level(X), (-1, 1)), (2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="start: 'first' is not one of mean, last"):
        from_the_window(silent, "first")
    # A recurrent network's input has no fixed length (the registry's LSTM and GRU): the same start.
    any_length = keras.Sequential([keras.Input((None, 1)), keras.layers.GlobalAveragePooling1D(),
                                   keras.layers.Dense(3, kernel_initializer="zeros")])
    out = np.asarray(from_the_window(any_length, start)(X))
    np.testing.assert_allclose(out, np.broadcast_to(np.reshape(level(X), (-1, 1)), (2, 3)), rtol=1e-6)


@pytest.mark.parametrize("name", ["lstm_direct", "gru_direct", "tcn_direct"])
def test_the_shipped_recurrent_and_convolutional_direct_models_train_seeded_and_deterministic(name):
    from stages.lib.config import load_params
    from stages.lib.forecast.global_direct import fit_entry_member

    shipped = load_params().panel_model(name)
    # The shipped entry (its architecture, loss, look-back of 3 horizons, refit), trained briefly.
    spec = shipped.model_copy(update={"batches_per_epoch": 5,
                                      "fit": shipped.fit.model_copy(update={"max_epochs": 6, "batch_size": 64,
                                                                            "learning_rate": 0.01})})
    config = spec.members(horizon=6, season_length=6, num_steps=3)[0]
    assert config.lookback == 18 and spec.refit

    def member():
        return fit_entry_member(spec, config, seasonal_panel(), horizon=6, season_length=6)

    first, again = member(), member()
    np.testing.assert_array_equal(first.forecast, again.forecast)
    assert first.forecast.shape == (6, 6) and np.all(np.isfinite(first.forecast))
    validation, refit = first.histories
    assert validation["loss"].min() < validation["loss"].iloc[0]  # it learnt
    assert len(refit) == first.epochs == int(validation["val_loss"].idxmin()) + 1


def test_a_dropped_interrupt_stops_the_ensemble_before_its_next_member():
    """Ctrl-C whose first exception was dropped (a finaliser ran when it came) still stops the ensemble: the member
    being trained is the last."""
    import signal

    from stages.lib.forecast.global_direct import fit_ensemble
    from stages.lib.infra import interrupts

    spec = PanelKerasSpec.model_validate(direct(lookback=[2, 3], seeds=None, loss="smape", batches_per_epoch=2,
                                                fit={"seed": 0, "max_epochs": 2, "batch_size": 32}))
    done = []

    def on_member(i, member):
        done.append(i)
        try:
            interrupts._on_signal(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass  # dropped, as Python drops it inside a finaliser

    try:
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            fit_ensemble(spec, seasonal_panel(), horizon=6, season_length=6, num_steps=3, on_member=on_member)
    finally:
        interrupts.reset()
    assert done == [0]  # the second member never started


@pytest.mark.parametrize("loss", ["mse", "mape", "mase"])
def test_every_loss_trains(loss):
    member = train_member(loss=loss, refit=False)
    assert len(member.histories) == 1 and np.all(np.isfinite(member.forecast))
    assert member.histories[0]["loss"].iloc[-1] < member.histories[0]["loss"].iloc[0]


# ------------------------------------------------------------------ params

def direct(**changes) -> dict:
    settings = {"kind": "keras", "model": "nbeats", "mode": "global", "output": "direct", "lookback": [2, 3],
                "loss": ["smape", "mase"], "seeds": [0, 1],
                "fit": {"seed": 0, "max_epochs": 3, "batch_size": 32}, "arch": {"stacks": 2, "units": 8}}
    return {**settings, **changes}


def test_an_ensemble_is_every_seed_look_back_and_loss_and_adds_its_first_member_to_the_scores():
    spec = PanelKerasSpec.model_validate(direct())
    members = spec.members(horizon=6, season_length=1, num_steps=3)
    assert len(members) == 8 and {m.lookback for m in members} == {12, 18}
    assert spec.scored_names("nb", 6) == ["nb", "nb_single"]
    single = PanelKerasSpec.model_validate(direct(lookback=2, loss="smape", seeds=None))
    assert single.scored_names("nb", 6) == ["nb"] and single.members(6, 1, 3)[0].seed == 0


@pytest.mark.parametrize(("changes", "message"), [
    ({"loss": "huber"}, r"panel_models\.x\.loss: 'huber' is not a loss: use one of mse, smape, mape, mase"),
    ({"seeds": []}, r"panel_models\.x\.seeds: an ensemble needs at least one member"),
    ({"lookback": []}, r"panel_models\.x: lookback: an ensemble needs at least one member"),
    ({"output": "recursive"}, r"panel_models\.x: lookback: only for output: direct"),
    ({"output": "recursive", "lookback": None, "loss": "mse", "seeds": None, "model": "lstm", "arch": {},
      "start": "last"}, r"panel_models\.x: start: only for output: direct"),
    ({"start": "first"}, r"panel_models\.x\.start: Input should be 'mean' or 'last'"),
    ({"mode": "per_series"}, r"panel_models\.x: output: direct is for mode: global"),
    # The global recursive model never retrains: a refit: true would be accepted and ignored.
    ({"output": "recursive", "lookback": None, "loss": "mse", "seeds": None, "model": "lstm", "arch": {},
      "refit": True}, r"panel_models\.x: refit: the global recursive model never retrains; refit is for output: "
                        r"direct or mode: per_series$"),
])
def test_bad_direct_settings_are_named_by_their_key(raw_params, changes, message):
    raw_params["panel_models"]["x"] = direct(**changes)
    with pytest.raises(ParamsError, match=r"^params\.yaml: " + message):
        parse_params(raw_params)


def test_a_look_back_longer_than_every_history_stops_the_stage(tmp_path, monkeypatch, raw_params, capsys):
    import pandas as pd
    import yaml

    from stages import panel_model
    from stages.lib.infra import cli, paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panel_models"] = {"x": direct(lookback=[2, 9], seeds=None, loss="smape")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    frames = [pd.DataFrame({"id": sid, "time": range(1, 31), "value": 100.0 + np.arange(30)}) for sid in ("a", "b")]
    pd.concat(frames).to_csv(tmp_path / "series.csv", index=False)
    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit) as stopped:
        cli.run(panel_model.main, ["--panel", "m3_yearly", "--model", "x", "--series", str(tmp_path / "series.csv"),
                                   "--out", str(out)])
    assert stopped.value.code == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: params.yaml: panel_models.x.lookback: a look-back of 54 values is longer than every series' history "
        "on this panel (the longest has 24 points)")


def test_the_stage_writes_the_ensemble_and_its_first_member_alone(tmp_path, monkeypatch, raw_params):
    import pandas as pd
    import yaml

    from stages import panel_model
    from stages.lib.infra import cli, paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panel_models"] = {"x": direct(lookback=[2, 3], seeds=None, loss="smape", batches_per_epoch=3)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    rng = np.random.default_rng(2)
    values = {sid: 100 + rng.normal(size=30).cumsum() for sid in ("a", "b", "c")}
    pd.concat(pd.DataFrame({"id": sid, "time": range(1, 31), "value": v}) for sid, v in values.items()).to_csv(
        tmp_path / "series.csv", index=False)
    out = tmp_path / "x.csv"
    cli.run(panel_model.main, ["--panel", "m3_yearly", "--model", "x", "--series", str(tmp_path / "series.csv"),
                               "--out", str(out)])
    table = pd.read_csv(out, dtype={"id": str})
    assert list(table["forecaster"].unique()) == ["x", "x_single", "x_member2"] and len(table) == 3 * 3 * 6
    # The first member alone is the same network trained outside the stage; the ensemble of two is their mean.
    spec = parse_params(raw_params).panel_model("x")
    arch = spec.model_spec()
    histories = [v[:-6] for v in values.values()]
    members = [fit_member(config, histories, horizon=6, season_length=1, fit=spec.fit,
                          build=lambda steps, outputs: arch.build(steps, 1, outputs), batches_per_epoch=3,
                          history_limit=None, refit=True) for config in spec.members(6, 1, 3)]
    single = table[table["forecaster"] == "x_single"]["forecast"].to_numpy().reshape(3, 6)
    ensemble = table[table["forecaster"] == "x"]["forecast"].to_numpy().reshape(3, 6)
    np.testing.assert_allclose(single, members[0].forecast, rtol=1e-6)
    second = table[table["forecaster"] == "x_member2"]["forecast"].to_numpy().reshape(3, 6)
    np.testing.assert_allclose(second, members[1].forecast, rtol=1e-6)  # the other member alone, for the spread
    np.testing.assert_allclose(ensemble, (members[0].forecast + members[1].forecast) / 2, rtol=1e-6)


def test_the_stage_gives_the_ensemble_intervals_calibrated_on_its_validation_forecasts(tmp_path, monkeypatch, capsys,
                                                                                      raw_params):
    """The 80% and 95% intervals of the ensemble and of its first member alone, by hand: each series' validation
    forecast (the validation fit's, at its best epoch) errs on the series' last horizon before the test; scaled by
    that history's naive MAE, the ceil((n + 1) level)-th smallest at each step is the radius, times the series'
    own scale. The other members alone get none; a series too short to validate on gets the others' radius; a
    series the fallback forecast gets none."""
    import math

    import pandas as pd
    import yaml

    from stages import panel_model
    from stages.lib.infra import cli, paths

    monkeypatch.setenv("PIPELINE_TRACKING", "off")
    raw_params["panel_models"] = {"x": direct(lookback=[2, 3], seeds=None, loss="smape", batches_per_epoch=3)}
    raw_params["statistical"] = {}  # the baselines alone beside it in evaluate_panel (fast)
    raw_params["panels"]["m3_yearly"]["short_series"] = "fallback"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.setattr(paths, "params_file", lambda: tmp_path / "params.yaml")
    rng = np.random.default_rng(4)
    values = {f"s{i:02d}": 100 + rng.normal(size=30).cumsum() for i in range(24)}
    # 12 points of history: trained on, but 6 before the validation horizon are too few to validate on (7);
    # 7 points: too few to train on (horizon + 2), so the fallback forecasts it.
    values["mid"], values["short"] = 100 + rng.normal(size=18).cumsum(), 100 + rng.normal(size=13).cumsum()
    pd.concat(pd.DataFrame({"id": sid, "time": range(1, len(v) + 1), "value": v}) for sid, v in values.items()).to_csv(
        tmp_path / "series.csv", index=False)
    out = tmp_path / "models" / "x.csv"
    cli.run(panel_model.main, ["--panel", "m3_yearly", "--model", "x", "--series", str(tmp_path / "series.csv"),
                               "--out", str(out)])
    assert ("panel_model@m3_yearly-x: 2 fallback forecasts get no interval (no forecaster of their kind in the set)"
            in capsys.readouterr().out)  # the short series under x and x_single (the members get none anyway)
    table = pd.read_csv(out, dtype={"id": str})

    spec = parse_params(raw_params).panel_model("x")
    arch = spec.model_spec()
    histories = [v[:-6] for sid, v in values.items() if sid != "short"]
    members = [fit_member(config, histories, horizon=6, season_length=1, fit=spec.fit,
                          build=lambda steps, outputs: arch.build(steps, 1, outputs), batches_per_epoch=3,
                          history_limit=None, refit=True) for config in spec.members(6, 1, 3)]
    assert list(members[0].validated) == list(range(24))  # "mid" (index 24) trains but is not validated on
    held = np.stack([h[-6:] for h in histories[:24]])
    part_scale = np.array([np.mean(np.abs(np.diff(h[:-6]))) for h in histories[:24]])  # naive MAE before validation
    own_scale = np.array([np.mean(np.abs(np.diff(h))) for h in histories])
    for name, val in (("x", np.median([m.val_forecast for m in members], axis=0)), ("x_single", members[0].val_forecast)):
        rows = table[(table["forecaster"] == name) & (table["id"] != "short")]
        forecast = rows["forecast"].to_numpy().reshape(25, 6)
        errors = np.sort(np.abs(held - val) / part_scale[:, None], axis=0)
        for level in (80, 95):
            radius = errors[math.ceil(25 * level / 100) - 1]  # one per step
            np.testing.assert_allclose(rows[f"lo{level}"].to_numpy().reshape(25, 6),
                                       forecast - radius * own_scale[:, None], rtol=1e-6)
            np.testing.assert_allclose(rows[f"hi{level}"].to_numpy().reshape(25, 6),
                                       forecast + radius * own_scale[:, None], rtol=1e-6)
    assert table[table["forecaster"] == "x_member2"]["lo80"].isna().all()
    assert table[table["id"] == "short"][["lo80", "hi80", "lo95", "hi95"]].isna().all().all()

    # evaluate_panel scores them beside the classical set's: coverage over the test points.
    import json

    from stages import evaluate_panel, panel
    classical = tmp_path / "forecasts.csv"
    cli.run(panel.main, ["--panel", "m3_yearly", "--series", str(tmp_path / "series.csv"), "--out", str(classical)])
    cli.run(evaluate_panel.main, ["--panel", "m3_yearly", "--series", str(tmp_path / "series.csv"),
                                  "--forecasts", str(classical), "--models", str(tmp_path / "models"),
                                  "--scores", str(tmp_path / "scores.csv"), "--metrics", str(tmp_path / "m.json"),
                                  "--cd-figure", str(tmp_path / "cd.png")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    for name in ("x", "x_single"):
        rows = table[(table["forecaster"] == name) & table["lo80"].notna()]
        for level in (80, 95):
            inside = ((rows["actual"] >= rows[f"lo{level}"]) & (rows["actual"] <= rows[f"hi{level}"])).mean()
            assert metrics[name][f"coverage_{level}"] == pytest.approx(inside)
            assert metrics[name][f"interval_series_{level}"] == 25 and metrics[name][f"msis_{level}"] > 0
    assert "coverage_80" in metrics["naive"]
