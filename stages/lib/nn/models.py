"""Keras model builders behind one interface and one registry.

Every model is a pydantic spec (its hyperparameters, validated from params.yaml)
with one verb, ``build(steps, channels) -> keras.Model``, mapping a window of
shape (steps, channels) to one number. Both experiments use the same registry:
adding a model is one class and one line in ``REGISTRY``.

Keras is imported inside ``build`` so that validating params stays cheap.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

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

    def build(self, steps: int, channels: int):  # pragma: no cover - interface
        raise NotImplementedError

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

    def build(self, steps: int, channels: int):
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
        outputs = keras.layers.Dense(1, activation=self.output_activation)(x)
        return keras.Model(inputs, outputs)


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

    def build(self, steps: int, channels: int):
        import keras

        inputs = keras.Input(shape=(steps, channels))
        x = keras.layers.Conv1D(self.filters, kernel_size=steps, activation=self.activation, padding="valid")(inputs)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(self.hidden, activation=self.activation)(x)
        outputs = keras.layers.Dense(1)(x)
        return keras.Model(inputs, outputs)

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

    def build(self, steps: int, channels: int):
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
        outputs = keras.layers.Dense(1, activation=self.output_activation)(x)
        return keras.Model(inputs, outputs)


REGISTRY: dict[str, type[ModelSpec]] = {
    "lstm": LSTMSpec,
    "gru": GRUSpec,
    "fullconv": FullConvSpec,
    "tcn": TCNSpec,
}
