"""The global forecasting model, top to bottom.

One Keras model for all series of a frequency, TiDE-like. Its inputs are a request's raw fields (see
``windows.py``): the last ``lookback`` values (NaN where unknown), their prices and 0/1 flags, the
prices and flags planned for the ``horizon``, the first forecast date and static attributes. Inside the
graph each history is scaled by its own mean absolute value (so big and small series share weights and
a served request needs no outside statistics), prices become relative to the series' recent price, the
dates become a calendar, and residual MLP blocks learn a correction to the seasonal naive forecast,
decoded into every horizon step's quantiles, which cannot cross (the median plus and minus softplus
spreads) and are scaled back to the series' units.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

from demand_forecasting.config import ForecastConfig, season_length
from demand_forecasting.windows import (
    FLAGS,
    FUTURE_INPUTS,
    HISTORY_INPUTS,
    SECONDS_PER_DAY,
    SeriesArrays,
    network_span,
    training_origins,
    window_inputs,
    window_targets,
)

STEP_DAYS = {"D": 1.0, "W": 7.0, "M": 365.2425 / 12, "Q": 365.2425 / 4, "Y": 365.2425}


@functools.cache
def custom_layers() -> dict[str, type]:
    """Defined on first use, so importing the app does not build Keras classes."""
    ops = keras.ops

    class Float32Layer(keras.layers.Layer):
        """Feature arithmetic (scales, prices, calendars, quantile assembly) stays float32 under a mixed
        precision policy: bfloat16's 3 digits would blur prices and series scales, and these layers are
        cheap; the Dense layers between them take the policy's compute dtype."""

        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("dtype", "float32")
            super().__init__(*args, **kwargs)

    class KnownValues(Float32Layer):
        """NaN (unknown) history values → (values with 0 there, 1/0 mask)."""

        def call(self, values: Any) -> Any:
            known = ops.logical_not(ops.isnan(values))
            return ops.where(known, values, ops.zeros_like(values)), ops.cast(known, values.dtype)

    class SeriesScale(Float32Layer):
        """Mean absolute observed value of each history (1 when it is all zeros or empty)."""

        def call(self, history: Any, mask: Any) -> Any:
            total = ops.sum(ops.abs(history) * mask, axis=1, keepdims=True)
            count = ops.sum(mask, axis=1, keepdims=True)
            mean = total / ops.maximum(count, 1.0)
            return ops.where(mean > 0, mean, ops.ones_like(mean))

    class RelativePrice(Float32Layer):
        """Prices divided by the series' mean known past price; unknown prices become 1."""

        def call(self, past_price: Any, future_price: Any) -> Any:
            known = ops.logical_not(ops.isnan(past_price))
            filled = ops.where(known, past_price, ops.zeros_like(past_price))
            count = ops.maximum(ops.sum(ops.cast(known, "float32"), axis=1, keepdims=True), 1.0)
            reference = ops.sum(filled, axis=1, keepdims=True) / count
            reference = ops.where(reference > 0, reference, ops.ones_like(reference))

            def relative(prices: Any) -> Any:
                ratio = prices / reference
                return ops.where(ops.isnan(ratio), ops.ones_like(ratio), ratio)

            return ops.concatenate([relative(past_price), relative(future_price)], axis=1)

    class Calendar(Float32Layer):
        """Time of year (sin, cos) of every forecast step, plus the day of week (one-hot) for daily
        series, from the first forecast day (days since 1970-01-01)."""

        def __init__(self, horizon: int, step_days: float, weekday: bool, **kwargs: Any):
            super().__init__(**kwargs)
            self.horizon, self.step_days, self.weekday = horizon, step_days, weekday

        def call(self, start_day: Any) -> Any:
            steps = ops.arange(self.horizon, dtype="float32") * self.step_days
            days = ops.expand_dims(start_day, -1) + ops.expand_dims(steps, 0)
            angle = 2.0 * np.pi * days / 365.2425
            parts = [ops.sin(angle), ops.cos(angle)]
            if self.weekday:  # 1970-01-01 was a Thursday
                weekday = ops.one_hot(ops.cast(ops.mod(ops.floor(days) + 3.0, 7.0), "int32"), 7)
                parts = [ops.reshape(weekday, [-1, self.horizon * 7]), *parts]
            return ops.concatenate(parts, axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "horizon": self.horizon, "step_days": self.step_days, "weekday": self.weekday}

    class SeasonalNaive(Float32Layer):
        """The last season of the (scaled) history repeated over the horizon: the network learns a
        correction to it instead of a forecast from scratch."""

        def __init__(self, season: int, horizon: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.season, self.horizon = season, horizon

        def call(self, history: Any) -> Any:
            last = history[:, -self.season :]
            repeats = -(-self.horizon // self.season)
            return ops.tile(last, [1, repeats])[:, : self.horizon]

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "season": self.season, "horizon": self.horizon}

    class MonotoneQuantiles(Float32Layer):
        """[batch, horizon·(2k+1)] → [batch, horizon, 2k+1] quantiles in order: the median (``offset``
        plus a learned correction), and spreads below and above it that are positive (softplus), so
        quantiles never cross."""

        def __init__(self, horizon: int, below: int, above: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.horizon, self.below, self.above = horizon, below, above

        def call(self, raw: Any, offset: Any) -> Any:
            raw = ops.reshape(raw, [-1, self.horizon, 1 + self.below + self.above])
            median = raw[..., :1] + ops.expand_dims(offset, -1)
            lower = median - ops.flip(ops.cumsum(ops.softplus(raw[..., 1 : 1 + self.below]), axis=-1), axis=-1)
            upper = median + ops.cumsum(ops.softplus(raw[..., 1 + self.below :]), axis=-1)
            return ops.concatenate([lower, median, upper], axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "horizon": self.horizon, "below": self.below, "above": self.above}

    return {
        "KnownValues": KnownValues,
        "SeriesScale": SeriesScale,
        "RelativePrice": RelativePrice,
        "Calendar": Calendar,
        "SeasonalNaive": SeasonalNaive,
        "MonotoneQuantiles": MonotoneQuantiles,
    }


def build_network(
    config: ForecastConfig, lookback: int, horizon: int, frequency: str, vocabularies: dict[str, list[str]], name: str = "global_forecaster"
) -> keras.Model:
    layers = custom_layers()
    quantiles = sorted(config.quantiles)
    if 0.5 not in quantiles:
        raise ValueError(f"quantiles must include the median 0.5, got {quantiles}.")
    inputs = {name: keras.Input((lookback,), name=name) for name in HISTORY_INPUTS}
    inputs.update({name: keras.Input((horizon,), name=name) for name in FUTURE_INPUTS})
    inputs["start_day"] = keras.Input((), name="start_day")
    for column in vocabularies:
        inputs[column] = keras.Input((), dtype="string", name=column)

    history, mask = layers["KnownValues"](name="known_history")(inputs["history"])
    scale = layers["SeriesScale"](name="series_scale")(history, mask)
    scaled_history = history / scale
    flags = [
        layers["KnownValues"](name=f"{when}_{flag}_known")(inputs[f"{when}_{flag}"])[0]
        for when in ("history", "future")
        for flag in FLAGS
    ]
    parts = [
        scaled_history,
        mask,
        *flags,
        layers["RelativePrice"](name="relative_price")(inputs["history_price"], inputs["future_price"]),
        layers["Calendar"](horizon, STEP_DAYS[frequency], frequency == "D", name="calendar")(inputs["start_day"]),
    ]
    for column, vocabulary in vocabularies.items():
        lookup = keras.layers.StringLookup(vocabulary=vocabulary or ["#none"], name=f"{column}_lookup")
        embedding = keras.layers.Embedding(lookup.vocabulary_size(), config.network.embedding_dim, name=f"{column}_embedding")
        parts.append(embedding(lookup(inputs[column])))
    hidden = keras.layers.Dense(config.network.hidden_units, activation="relu", name="encoder")(keras.layers.Concatenate()(parts))
    for index in range(config.network.residual_blocks):
        inner = keras.layers.Dense(config.network.hidden_units, activation="relu", name=f"block_{index}_dense")(hidden)
        inner = keras.layers.Dropout(config.network.dropout_rate)(inner)
        inner = keras.layers.Dense(config.network.hidden_units, name=f"block_{index}_projection")(inner)
        hidden = keras.layers.LayerNormalization(name=f"block_{index}_norm")(keras.layers.Add()([hidden, inner]))
    below = sum(q < 0.5 for q in quantiles)
    raw = keras.layers.Dense(horizon * len(quantiles), name="decoder")(hidden)
    naive = layers["SeasonalNaive"](min(season_length(config, frequency), lookback), horizon, name="seasonal_naive")(scaled_history)
    scaled = layers["MonotoneQuantiles"](horizon, below, len(quantiles) - 1 - below, name="quantiles")(raw, naive)
    # Back to the series' own units. Not clipped at 0 here: a ReLU on the output has no gradient where a
    # step's quantiles are all negative, so one bad update could leave a horizon step at 0 for every
    # series for good (seen on M3 quarterly). The served module clips instead (demand is never negative).
    forecast = keras.layers.Identity(name="forecast")(scaled * keras.ops.expand_dims(scale, -1))
    return keras.Model(inputs, forecast, name=name)


def quantile_loss(quantiles: list[float]) -> Any:
    levels = np.asarray(sorted(quantiles), dtype=np.float32)

    def loss(actual: Any, forecast: Any) -> Any:
        difference = keras.ops.expand_dims(actual, -1) - forecast
        return keras.ops.mean(keras.ops.maximum(levels * difference, (levels - 1.0) * difference), axis=-1)

    return loss


def model_inputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Request fields → the Keras model's inputs (the first forecast date as epoch days)."""
    features = {name: value for name, value in inputs.items() if name != "forecast_start"}
    features["start_day"] = (np.asarray(inputs["forecast_start"], np.float64) / SECONDS_PER_DAY).astype(np.float32)
    return features


# ---- training --------------------------------------------------------------------------------------


def fit_member(
    trainer: Any,
    data: SeriesArrays,
    train_end: np.ndarray,
    valid: tuple[np.ndarray, np.ndarray],
    config: ForecastConfig,
    frequency: str,
    lookback: int,
    horizon: int,
    seed: int,
    name: str = "global_forecaster",
) -> keras.Model:
    """Train one network on random windows whose targets end before ``train_end`` (per series),
    through the core's fit loop (``trainer.fit``: early stopping on the validation windows as
    ``config.training`` says). Errors are weighted by 1 / each window's scale, so big series do not
    drown small ones, and censored (stock-out) steps do not count."""
    import tensorflow as tf

    from solutions_core.solution import KerasFit

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    vocabularies = {column: sorted(set(values) - {""}) for column, values in data.static.items()}

    def level(history: np.ndarray) -> np.ndarray:
        """Per window: each series' mean level over its known history (1 where there is none), so an
        error of one unit weighs as much on a series selling 2 a day as 1/100 of that on one selling 200.
        (Dividing by the seasonal-naive MAE instead, as MASE does, scored worse on Tourism: 1.63 vs 1.51.)"""
        scale = np.nanmean(np.abs(history), axis=1)
        return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)

    def dataset(rows: np.ndarray, origins: np.ndarray, training: bool, batch: int) -> Any:
        inputs = window_inputs(data, rows, origins, lookback, horizon)
        # Training targets stop where validation starts (a short series' last windows are partly masked).
        actual, weight = window_targets(data, rows, origins, horizon, end=train_end[rows] if training else None)
        with np.errstate(all="ignore"):
            weight = weight / level(inputs["history"].astype(np.float64))[:, None]
        frame = tf.data.Dataset.from_tensor_slices((model_inputs(inputs), actual, weight))
        if training:
            frame = frame.shuffle(len(rows), seed=seed)
        return frame.batch(batch).prefetch(2)

    # Drawn from this member's own generator, so the windows do not depend on when they are drawn.
    train_windows = training_origins(data, train_end, horizon, config.windows_per_series, rng)
    return trainer.fit(
        KerasFit(
            name,
            build=lambda: build_network(config, lookback, horizon, frequency, vocabularies, name=name),
            compile=lambda training: {"optimizer": keras.optimizers.Adam(training.learning_rate), "loss": quantile_loss(config.quantiles)},
            data=lambda training, batch: dataset(*(train_windows if training else valid), training, batch),
        )
    )


def member_lookbacks(config: ForecastConfig, lookback: int, frequency: str, horizon: int) -> list[int]:
    """Members see different spans of the network's history (all of it, half, three quarters, ...):
    their errors differ more than those of seeds alone, so their average gains more. The request may
    carry more history than that (for Theta): the network reads its last steps."""
    span = min(lookback, network_span(config, frequency, horizon))
    fractions = (1.0, 0.5, 0.75, 0.625, 0.875)
    shortest = min(span, max(2 * season_length(config, frequency), 4))
    return [max(shortest, round(span * fractions[index % len(fractions)])) for index in range(config.ensemble_members)]


def fit(
    trainer: Any,
    data: SeriesArrays,
    train_end: np.ndarray,
    valid: tuple[np.ndarray, np.ndarray],
    config: ForecastConfig,
    frequency: str,
    lookback: int,
    horizon: int,
) -> keras.Model:
    """``ensemble_members`` networks (other seeds and lookbacks), each fitted by ``trainer``, averaged
    inside one model whose inputs are the full request: each member reads the last part of the history
    it was trained on. Averaged quantiles stay ordered."""
    lookbacks = member_lookbacks(config, lookback, frequency, horizon)
    members = [
        fit_member(trainer, data, train_end, valid, config, frequency, span, horizon, config.seed + index, name=f"member_{index}")
        for index, span in enumerate(lookbacks)
    ]
    if len(members) == 1 and lookbacks[0] == lookback:
        return members[0]
    # The request's shapes: histories are ``lookback`` long, each member reads its own last steps.
    inputs = {
        name: keras.Input((lookback,) if name in HISTORY_INPUTS else tensor.shape[1:], dtype=tensor.dtype, name=name)
        for name, tensor in members[0].input.items()
    }
    outputs = []
    for member, span in zip(members, lookbacks):
        sliced = {name: (value[:, -span:] if name in HISTORY_INPUTS else value) for name, value in inputs.items()}
        outputs.append(member(sliced))
    combined = keras.layers.Average(name="ensemble")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, combined, name="global_forecaster_ensemble")


# ---- serving ---------------------------------------------------------------------------------------


def request_specs(lookback: int, horizon: int, static_columns: list[str]) -> dict[str, Any]:
    import tensorflow as tf

    specs = {name: tf.TensorSpec([None, lookback], tf.float32, name=name) for name in HISTORY_INPUTS}
    specs.update({name: tf.TensorSpec([None, horizon], tf.float32, name=name) for name in FUTURE_INPUTS})
    specs["forecast_start"] = tf.TensorSpec([None], tf.float64, name="forecast_start")
    specs.update({column: tf.TensorSpec([None], tf.string, name=column) for column in static_columns})
    return specs


def quantile_names(quantiles: list[float]) -> list[str]:
    return [f"p{round(q * 100):02d}" for q in sorted(quantiles)]


def serving_module(
    model: keras.Model | None,
    config: ForecastConfig,
    lookback: int,
    horizon: int,
    static_columns: list[str],
    theta_weight: float = 0.0,
    season: int | None = None,
) -> Any:
    """The exported model: one request per series (its recent history, the covariates planned for the
    horizon, the first forecast date as epoch seconds or a date string) → one output per quantile
    (``p10``, ``p50``, ``p90``: [horizon] values each).

    The forecast is the network's (``model``), the Theta method's computed from the request's history
    inside the graph (``model`` None, ``theta_weight`` 1), or a weighted average of both: so a data set
    on which Theta wins is served Theta, never worse than the client's first statistical try."""
    import tensorflow as tf

    from demand_forecasting.theta import theta_forecast

    if model is None and theta_weight != 1.0:
        raise ValueError("A forecaster without a network must serve Theta alone (theta_weight=1).")
    if not 0.0 <= theta_weight <= 1.0:
        raise ValueError(f"theta_weight must be within [0, 1], got {theta_weight}.")
    names = quantile_names(config.quantiles)
    season = season or 1

    class ForecastModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="demand_forecasting")
            self.model = model
            self.serve = tf.function(self._serve, input_signature=[request_specs(lookback, horizon, static_columns)])

        def _serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            forecast = None
            if model is not None:
                features = {name: value for name, value in inputs.items() if name != "forecast_start"}
                # Days since 1970 fit float32 exactly; epoch seconds would not.
                features["start_day"] = tf.cast(inputs["forecast_start"] / SECONDS_PER_DAY, tf.float32)
                forecast = tf.cast(self.model(features, training=False), tf.float32)
            if theta_weight > 0:
                theta = theta_forecast(inputs["history"], horizon, season, config.quantiles)
                forecast = theta if forecast is None else (1.0 - theta_weight) * forecast + theta_weight * theta
            # Demand is never negative: clipped here, outside the trained network (see build_network).
            forecast = tf.maximum(forecast, 0.0)
            return {name: forecast[:, :, index] for index, name in enumerate(names)}

    return ForecastModule()
