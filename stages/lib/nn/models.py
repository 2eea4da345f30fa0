"""Keras model builders behind one interface and one registry.

Every model is a pydantic spec (its hyperparameters, validated from params.yaml)
with one verb, ``build(steps, channels, outputs=1) -> keras.Model``, mapping a
window of shape (steps, channels) to ``outputs`` numbers: one for the memory
task and a one-step forecaster, a whole horizon for a direct (multi-output)
forecaster. Both experiments use the same registry: adding a model is one class
and one line in ``REGISTRY``.

Keras is imported inside ``build`` so that validating params stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from stages.lib.errors import ParamsError

Activation = Literal["linear", "tanh", "relu", "softplus", "sigmoid"]


class FitParams(BaseModel):
    """How one Keras model is trained (stages/lib/nn/training.py): the same for every model and task."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: NonNegativeInt | None = None  # the forecast's training seed; memory lists its seeds instead
    max_epochs: PositiveInt = 100
    # "auto" (forecasters only): a fifth of the series, the article's rule.
    batch_size: PositiveInt | Literal["auto"] = 256
    learning_rate: PositiveFloat = 1e-3
    patience: PositiveInt | None = None
    target_val_loss: PositiveFloat | None = None
    clipnorm: PositiveFloat | None = None
    lr_decay_every: PositiveInt | None = None
    lr_decay_factor: float = Field(default=0.1, gt=0.0, le=1.0)


class ModelSpec(BaseModel):
    """Base of every model spec: strict keys, one ``build`` verb."""

    model_config = ConfigDict(extra="forbid")
    # Whether training compiles the model with XLA (stages/lib/nn/training.py). Measured per
    # epoch at seq 70 on a 2-core CPU (benchmarks/epoch_profile.py compare): the recurrent
    # models' loop over the steps runs 2.5 to 2.9x faster compiled, the convolutions 1.2 to
    # 1.7x slower, so only the recurrent models use it.
    xla: ClassVar[bool] = False

    def build(self, steps: int, channels: int, outputs: int = 1):  # pragma: no cover - interface
        raise NotImplementedError

    def check_outputs(self, steps: int, outputs: int) -> None:
        """Raise ValueError naming the key when the model cannot map ``steps`` inputs to ``outputs`` values."""

    def check_hardware(self, key: str = "arch") -> None:
        """Raise ParamsError naming ``key`` (the spec's place in params.yaml) where this machine cannot run the
        spec's arithmetic as asked. A spec with such a need (NBeatsSpec's bfloat16) calls it in ``build`` too; a
        stage that knows the entry calls it first, to name the entry."""

    def describe(self, steps: int) -> dict[str, float]:
        """Facts about the built model worth logging (e.g. receptive field)."""
        return {}


class _RNNSpec(ModelSpec):
    units: list[PositiveInt] = Field(default=[8, 6], min_length=1)
    activation: Activation = "tanh"
    dense: list[PositiveInt] = []
    dense_activation: Activation = "relu"
    output_activation: Activation = "linear"
    xla: ClassVar[bool] = True

    def _layer(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def build(self, steps: int, channels: int, outputs: int = 1):
        import keras

        layer = self._layer()
        # Input length None: the recurrent stack reads any length, as in the article.
        inputs = keras.Input(shape=(None, channels))
        x = inputs
        for i, units in enumerate(self.units):
            last = i == len(self.units) - 1
            x = layer(units, activation=self.activation, return_sequences=not last)(x)
        for units in self.dense:
            x = keras.layers.Dense(units, activation=self.dense_activation)(x)
        return keras.Model(inputs, keras.layers.Dense(outputs, activation=self.output_activation)(x))


class LSTMSpec(_RNNSpec):
    """Stacked LSTM (the article's memory model and its forecaster)."""

    def _layer(self):
        import keras

        return keras.layers.LSTM


class GRUSpec(_RNNSpec):
    """Stacked GRU: same shape as the LSTM with the lighter gate."""

    def _layer(self):
        import keras

        return keras.layers.GRU


class FullConvSpec(ModelSpec):
    """The article's "TCN": one Conv1D whose kernel spans the whole window."""

    filters: PositiveInt = 3
    hidden: PositiveInt = 2
    activation: Activation = "softplus"

    def build(self, steps: int, channels: int, outputs: int = 1):
        import keras

        inputs = keras.Input(shape=(steps, channels))
        x = keras.layers.Conv1D(self.filters, kernel_size=steps, activation=self.activation, padding="valid")(inputs)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(self.hidden, activation=self.activation)(x)
        return keras.Model(inputs, keras.layers.Dense(outputs)(x))

    def describe(self, steps: int) -> dict[str, float]:
        return {"receptive_field": float(steps)}


def receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Steps seen by a TCN with two causal convolutions per residual block."""
    return 1 + 2 * (kernel_size - 1) * sum(dilations)


def auto_dilations(kernel_size: int, steps: int) -> list[int]:
    """Smallest 1, 2, 4, ... whose receptive field covers ``steps``."""
    dilations = [1]
    while receptive_field(kernel_size, dilations) < steps:
        dilations.append(2 * dilations[-1])
    return dilations


class TCNSpec(ModelSpec):
    """Dilated causal TCN (Bai, Kolter and Koltun 2018).

    Written here rather than taken from keras-tcn: keras-tcn 3.5.7 declares a
    hard dependency on ``tensorflow-macos``, which cannot be installed on Linux
    beside the pinned tensorflow-cpu.
    """

    filters: PositiveInt = 16
    kernel_size: int = Field(default=4, ge=2)
    dilations: list[PositiveInt] | Literal["auto"] = "auto"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    norm: Literal["none", "layer"] = "none"
    output_activation: Activation = "linear"

    @field_validator("dilations")
    @classmethod
    def _dilations_grow(cls, dilations: list[int] | str) -> list[int] | str:
        if isinstance(dilations, list) and not dilations:
            raise ValueError("must be 'auto' or a non-empty list")
        if isinstance(dilations, list) and any(b <= a for a, b in zip(dilations, dilations[1:])):
            # Each block must widen the view (Bai et al.); a repeated or shrinking
            # dilation adds parameters but no receptive field.
            raise ValueError("must be strictly increasing")
        return dilations

    def resolved_dilations(self, steps: int) -> list[int]:
        if self.dilations == "auto":
            return auto_dilations(self.kernel_size, steps)
        return list(self.dilations)

    def describe(self, steps: int) -> dict[str, float]:
        rf = receptive_field(self.kernel_size, self.resolved_dilations(steps))
        return {"receptive_field": float(rf), "receptive_field_shortfall": float(max(0, steps - rf))}

    def build(self, steps: int, channels: int, outputs: int = 1):
        import keras

        inputs = keras.Input(shape=(steps, channels))
        x = inputs
        for dilation in self.resolved_dilations(steps):
            skip = x
            for _ in range(2):
                x = keras.layers.Conv1D(self.filters, self.kernel_size, padding="causal", dilation_rate=dilation)(x)
                if self.norm == "layer":
                    x = keras.layers.LayerNormalization()(x)
                x = keras.layers.Activation("relu")(x)
                if self.dropout:
                    x = keras.layers.SpatialDropout1D(self.dropout)(x)
            if skip.shape[-1] != self.filters:
                skip = keras.layers.Conv1D(self.filters, 1)(skip)
            x = keras.layers.Activation("relu")(keras.layers.Add()([x, skip]))
        # Causal padding: the last step is the one that has seen the whole window.
        # Cropping rather than a Lambda keeps the saved model loadable in safe mode.
        x = keras.layers.Flatten()(keras.layers.Cropping1D((steps - 1, 0))(x))
        return keras.Model(inputs, keras.layers.Dense(outputs, activation=self.output_activation)(x))


# ----------------------------------------------------------------- N-BEATS

def trend_basis(size: int, degree: int) -> np.ndarray:
    """N-BEATS' polynomial basis, shape (degree + 1, size): row i is t**i on t = 0, 1/size, ..., (size-1)/size
    (the official implementation's TrendBasis, for the backcast and the forecast alike)."""
    t = np.arange(size, dtype=float) / size
    return np.stack([t ** i for i in range(degree + 1)])


def fourier_frequencies(horizon: int, harmonics: int) -> np.ndarray:
    """The seasonality basis' frequencies, in cycles per horizon: 0, then 1, 1 + 1/harmonics, ... below
    horizon / 2 (the official implementation's SeasonalityBasis)."""
    return np.append(0.0, np.arange(harmonics, harmonics / 2 * horizon, dtype=float) / harmonics)


def seasonality_basis(size: int, horizon: int, harmonics: int, backcast: bool) -> np.ndarray:
    """N-BEATS' Fourier basis, shape (2 * frequencies, size): cosines then sines of the frequencies above, on a
    time grid in units of the horizon (the forecast at t = 0 .. horizon-1, the backcast at t = 0, -1, ...), so a
    frequency means the same period in the look-back as in the forecast."""
    steps = np.arange(size, dtype=float) / horizon
    grid = 2 * np.pi * (-steps if backcast else steps)[None, :] * fourier_frequencies(horizon, harmonics)[:, None]
    return np.concatenate([np.cos(grid), np.sin(grid)])


class NBeatsSpec(ModelSpec):
    """N-BEATS (Oreshkin, Carpov, Chapados and Bengio 2020, arXiv 1905.10437): stacks of fully connected blocks,
    each reading what the blocks before it left of the look-back (backcast residual) and adding its part of the
    forecast (forecast sum): the double residual stacking.

    ``variant: generic`` (N-BEATS-G): ``stacks`` stacks of ``blocks`` blocks with linear backcast and forecast
    heads. ``variant: interpretable`` (N-BEATS-I): a trend stack (polynomial basis of ``degree``) then a
    seasonality stack (Fourier basis with ``harmonics``), each of ``blocks`` blocks; ``share_weights`` shares
    a stack's block weights, as the paper does for N-BEATS-I. Defaults are the paper's (its Table 18); the
    project's smaller CPU settings are in params.yaml beside them.

    Written here: no maintained Keras 3 implementation is on PyPI (the reference code is PyTorch).
    """

    variant: Literal["generic", "interpretable"] = "generic"
    stacks: PositiveInt = 30           # generic only; N-BEATS-I has its two stacks
    blocks: PositiveInt = 1            # per stack (paper: 1 for G, 3 for I)
    layers: PositiveInt = 4            # fully connected layers per block
    units: PositiveInt = 512           # per layer (N-BEATS-I: the trend stack's)
    seasonality_units: PositiveInt = 2048  # N-BEATS-I's seasonality stack
    degree: NonNegativeInt = Field(default=2, le=6)    # polynomial degree of the trend basis (paper and its M3 config: 2)
    harmonics: PositiveInt = 1         # Fourier harmonics of the seasonality basis
    share_weights: bool = False        # the paper shares them within a stack for N-BEATS-I only
    # The hidden layers' arithmetic (their weights stay float32): mixed_bfloat16 multiplies in bfloat16, which
    # CPUs with AMX or AVX512-BF16 (and GPUs from compute capability 8.0) run faster (here 0.69-0.76x the epoch
    # time, docs/speed.md); the heads, the residuals and the forecast sum stay float32, so the forecast is
    # summed at float32's precision from parts rounded to bfloat16's.
    hidden_dtype: Literal["float32", "mixed_bfloat16"] = "float32"

    def check_outputs(self, steps: int, outputs: int) -> None:
        if self.variant == "interpretable" and self.degree + 1 > outputs:
            # More polynomial terms than forecast points: the trend basis' rows are no longer independent.
            raise ValueError(f"arch.degree: {self.degree} needs a horizon of at least {self.degree + 1} points, "
                             f"not {outputs}")
        if self.variant == "interpretable" and len(fourier_frequencies(outputs, self.harmonics)) < 2:
            raise ValueError(f"arch.harmonics: a horizon of {outputs} leaves the seasonality basis no frequency "
                             "above 0")

    def _stack_plan(self, steps: int, outputs: int) -> list[tuple[int, np.ndarray | None, np.ndarray | None]]:
        """(units, backcast basis, forecast basis) per stack; None bases: the generic linear heads."""
        if self.variant == "generic":
            return [(self.units, None, None)] * self.stacks
        return [(self.units, trend_basis(steps, self.degree), trend_basis(outputs, self.degree)),
                (self.seasonality_units, seasonality_basis(steps, outputs, self.harmonics, backcast=True),
                 seasonality_basis(outputs, outputs, self.harmonics, backcast=False))]

    def check_hardware(self, key: str = "arch") -> None:
        if self.hidden_dtype == "mixed_bfloat16" and bfloat16_hardware() is False:
            # Without them TensorFlow would emulate bfloat16 (not measured here; with oneDNN capped at AVX2 the
            # process aborted instead), so it is refused before any training.
            raise ParamsError(f"{key}.hidden_dtype: mixed_bfloat16 needs a GPU or a CPU with bfloat16 instructions "
                              "(AMX or AVX512-BF16), and this machine has neither: set it to float32")

    def build(self, steps: int, channels: int, outputs: int = 1):
        import keras

        self.check_outputs(steps, outputs)
        self.check_hardware()
        inputs = keras.Input(shape=(steps, channels))
        residual = keras.layers.Flatten()(inputs)
        forecast = None
        for units, back_basis, fore_basis in self._stack_plan(steps * channels, outputs):
            shared = _nbeats_block_layers(units, self.layers, back_basis, fore_basis, steps * channels, outputs,
                                          self.hidden_dtype) if self.share_weights else None
            for _ in range(self.blocks):
                block = shared or _nbeats_block_layers(units, self.layers, back_basis, fore_basis, steps * channels,
                                                       outputs, self.hidden_dtype)
                h = residual
                for dense in block["hidden"]:
                    h = dense(h)
                backcast = block["backcast"](block["theta_b"](h)) if back_basis is not None else block["backcast"](h)
                part = block["forecast"](block["theta_f"](h)) if fore_basis is not None else block["forecast"](h)
                residual = keras.layers.Subtract()([residual, backcast])
                forecast = part if forecast is None else keras.layers.Add()([forecast, part])
        return keras.Model(inputs, forecast)


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def bfloat16_hardware(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this machine multiplies bfloat16 natively: a GPU TensorFlow sees, of compute capability 8.0 or
    more (older ones have no bfloat16 arithmetic), or else a CPU whose flags (Linux's ``cpuinfo``) name AMX or
    AVX512-BF16. None where it cannot tell: no x86 ``flags`` line to read (not Linux, or an ARM CPU, whose
    ``Features`` name bfloat16 otherwise)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return any(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
                   >= (8, 0) for gpu in gpus)
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    lines = [line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags") and ":" in line]
    if not lines:
        return None
    return any(flag in BF16_CPU_FLAGS for flags in lines for flag in flags)


def _nbeats_block_layers(units: int, layers: int, back_basis, fore_basis, steps: int, outputs: int,
                         hidden_dtype: str = "float32") -> dict:
    """One block's layers: ``layers`` ReLU layers (computing in ``hidden_dtype``), then linear float32 heads;
    with a basis, the head is theta (its coefficients) times the fixed basis, a Dense layer whose kernel is the
    basis and is not trained."""
    import keras

    block = {"hidden": [keras.layers.Dense(units, activation="relu", dtype=hidden_dtype) for _ in range(layers)]}
    for side, basis, size in (("backcast", back_basis, steps), ("forecast", fore_basis, outputs)):
        if basis is None:
            block[side] = keras.layers.Dense(size)
            continue
        block["theta_" + side[0]] = keras.layers.Dense(basis.shape[0], use_bias=False)
        block[side] = keras.layers.Dense(size, use_bias=False, trainable=False,
                                         kernel_initializer=keras.initializers.Constant(basis.astype("float32")))
    return block


REGISTRY: dict[str, type[ModelSpec]] = {
    "lstm": LSTMSpec,
    "gru": GRUSpec,
    "fullconv": FullConvSpec,
    "tcn": TCNSpec,
    "nbeats": NBeatsSpec,
}
