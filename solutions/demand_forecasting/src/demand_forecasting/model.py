"""The global forecasting model, top to bottom (issue 5, in progress: trained and evaluated here; the
core's pipeline, serving and batch forecasts come next).

One Keras model for all series of a frequency, TiDE-like: each series' recent history is scaled by its
own mean absolute value **inside the graph** (so big and small series share weights and a served
request needs no outside statistics), concatenated with the past and future covariates (price relative
to the series' recent price, promotion, holiday, store open, calendar from the dates) and static
embeddings, passed through residual MLP blocks, and decoded into every horizon step's quantiles, which
cannot cross (the median plus and minus softplus spreads) and are scaled back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from demand_forecasting.config import SEASON, ForecastConfig

STEP_FLAGS = ("promotion", "holiday", "store_open")  # known in advance, 0/1 per step
DEFAULT_HORIZON = {"D": 28, "W": 13, "M": 18, "Q": 8, "Y": 6}
SECONDS_PER_DAY = 86_400.0


# ---- windows ---------------------------------------------------------------------------------------


@dataclass
class SeriesArrays:
    """One frequency's series as padded [series, time] arrays (NaN quantity = not observed)."""

    ids: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    flags: np.ndarray  # [series, time, len(STEP_FLAGS)]
    days: np.ndarray  # epoch days of each step
    censored: np.ndarray  # stock-out steps: sales below demand
    length: np.ndarray  # observed steps per series (aligned at the start)
    static: dict[str, np.ndarray]


def series_arrays(sales: pd.DataFrame, series: pd.DataFrame, static_columns: list[str]) -> SeriesArrays:
    sales = sales.sort_values(["series_id", "date"], kind="stable")
    groups = sales.groupby("series_id", sort=True)
    ids = np.asarray(list(groups.groups), dtype=object)
    longest = int(groups.size().max())
    shape = (len(ids), longest)
    quantity, price = np.full(shape, np.nan), np.full(shape, np.nan)
    flags = np.zeros((*shape, len(STEP_FLAGS)), np.float32)
    days, censored = np.zeros(shape), np.zeros(shape, bool)
    length = np.zeros(len(ids), np.int64)
    for row, (_, frame) in enumerate(groups):
        count = len(frame)
        length[row] = count
        quantity[row, :count] = frame["quantity"].to_numpy(np.float64)
        price[row, :count] = frame["price"].to_numpy(np.float64)
        flags[row, :count, 0] = frame["promotion"].to_numpy(np.float32)
        flags[row, :count, 1] = frame["holiday"].notna().to_numpy(np.float32)
        flags[row, :count, 2] = frame["store_open"].to_numpy(np.float32)
        days[row, :count] = frame["date"].astype("int64").to_numpy() / 1e9 / SECONDS_PER_DAY
        censored[row, :count] = frame["stockout"].to_numpy() == 1
    attributes = series.set_index("series_id").reindex(ids)
    static = {column: attributes[column].fillna("").astype(str).to_numpy(dtype=object) for column in static_columns if column in attributes}
    return SeriesArrays(ids, quantity, price, flags, days, censored, length, static)


def windows(data: SeriesArrays, origins: np.ndarray, rows: np.ndarray, lookback: int, horizon: int) -> dict[str, np.ndarray]:
    """Model inputs (and targets) for forecast origins (the first forecast step's index) of series
    ``rows``. History before a series' start is padding with mask 0."""
    offsets_past = np.arange(-lookback, 0)
    offsets_future = np.arange(horizon)
    past = origins[:, None] + offsets_past[None, :]
    future = origins[:, None] + offsets_future[None, :]
    valid_past = past >= 0
    past = np.clip(past, 0, None)
    take = lambda array, index: array[rows[:, None], index]  # noqa: E731
    history = np.where(valid_past, take(data.quantity, past), 0.0)
    mask = valid_past & ~np.isnan(take(data.quantity, past))
    history = np.where(mask, history, 0.0)
    inputs = {
        "history": history.astype(np.float32),
        "history_mask": mask.astype(np.float32),
        "past_price": np.where(valid_past, take(data.price, past), np.nan).astype(np.float32),
        "past_flags": np.where(valid_past[..., None], data.flags[rows[:, None], past], 0.0).astype(np.float32),
        "future_price": take(data.price, future).astype(np.float32),
        "future_flags": data.flags[rows[:, None], future].astype(np.float32),
        "future_days": take(data.days, future).astype(np.float32),
    }
    for column, values in data.static.items():
        inputs[column] = values[rows]
    return inputs


def targets(data: SeriesArrays, origins: np.ndarray, rows: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(actual values [n, horizon], weight [n, horizon]: 0 on censored or unobserved steps)."""
    future = origins[:, None] + np.arange(horizon)[None, :]
    actual = data.quantity[rows[:, None], future]
    weight = (~np.isnan(actual) & ~data.censored[rows[:, None], future]).astype(np.float32)
    return np.nan_to_num(actual).astype(np.float32), weight


# ---- the network -----------------------------------------------------------------------------------


@functools.cache
def custom_layers() -> dict[str, type]:
    """Defined on first use, so importing the app does not build Keras classes."""
    ops = keras.ops

    class SeriesScale(keras.layers.Layer):
        """Mean absolute observed value of each history (1 when it is all zeros or empty)."""

        def call(self, history: Any, mask: Any) -> Any:
            total = ops.sum(ops.abs(history) * mask, axis=1, keepdims=True)
            count = ops.sum(mask, axis=1, keepdims=True)
            mean = total / ops.maximum(count, 1.0)
            return ops.where(mean > 0, mean, ops.ones_like(mean))

    class RelativePrice(keras.layers.Layer):
        """Prices divided by the series' mean observed past price; unknown prices become 1."""

        def call(self, past_price: Any, future_price: Any) -> Any:
            known = ops.logical_not(ops.isnan(past_price))
            filled = ops.where(known, past_price, ops.zeros_like(past_price))
            reference = ops.sum(filled, axis=1, keepdims=True) / ops.maximum(ops.sum(ops.cast(known, "float32"), axis=1, keepdims=True), 1.0)
            reference = ops.where(reference > 0, reference, ops.ones_like(reference))

            def relative(prices: Any) -> Any:
                ratio = prices / reference
                return ops.where(ops.isnan(ratio), ops.ones_like(ratio), ratio)

            return ops.concatenate([relative(past_price), relative(future_price)], axis=1)

    class Calendar(keras.layers.Layer):
        """Day of week (one-hot) and time of year (sin, cos) of every forecast step, from epoch days."""

        def call(self, days: Any) -> Any:
            weekday = ops.one_hot(ops.cast(ops.mod(ops.floor(days) + 3.0, 7.0), "int32"), 7)  # 1970-01-01 was a Thursday
            angle = 2.0 * np.pi * days / 365.2425
            year = ops.stack([ops.sin(angle), ops.cos(angle)], axis=-1)
            return ops.concatenate([weekday, year], axis=-1)  # [batch, horizon, 9]

    class SeasonalNaive(keras.layers.Layer):
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

    class MonotoneQuantiles(keras.layers.Layer):
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
        "SeriesScale": SeriesScale,
        "RelativePrice": RelativePrice,
        "Calendar": Calendar,
        "SeasonalNaive": SeasonalNaive,
        "MonotoneQuantiles": MonotoneQuantiles,
    }


def build_network(config: ForecastConfig, lookback: int, horizon: int, vocabularies: dict[str, list[str]], season: int = 1) -> Any:
    layers = custom_layers()
    quantiles = sorted(config.quantiles)
    if 0.5 not in quantiles:
        raise ValueError(f"quantiles must include the median 0.5, got {quantiles}.")
    inputs = {
        "history": keras.Input((lookback,), name="history"),
        "history_mask": keras.Input((lookback,), name="history_mask"),
        "past_price": keras.Input((lookback,), name="past_price"),
        "past_flags": keras.Input((lookback, len(STEP_FLAGS)), name="past_flags"),
        "future_price": keras.Input((horizon,), name="future_price"),
        "future_flags": keras.Input((horizon, len(STEP_FLAGS)), name="future_flags"),
        "future_days": keras.Input((horizon,), name="future_days"),
    }
    for column in vocabularies:
        inputs[column] = keras.Input((), dtype="string", name=column)
    scale = layers["SeriesScale"](name="series_scale")(inputs["history"], inputs["history_mask"])
    parts = [
        inputs["history"] / scale,
        inputs["history_mask"],
        keras.layers.Flatten()(inputs["past_flags"]),
        keras.layers.Flatten()(inputs["future_flags"]),
        layers["RelativePrice"](name="relative_price")(inputs["past_price"], inputs["future_price"]),
        keras.layers.Flatten()(layers["Calendar"](name="calendar")(inputs["future_days"])),
    ]
    for column, vocabulary in vocabularies.items():
        lookup = keras.layers.StringLookup(vocabulary=vocabulary or ["#none"], name=f"{column}_lookup")
        parts.append(keras.layers.Embedding(lookup.vocabulary_size(), config.network.embedding_dim, name=f"{column}_embedding")(lookup(inputs[column])))
    hidden = keras.layers.Dense(config.network.hidden_units, activation="relu", name="encoder")(keras.layers.Concatenate()(parts))
    for index in range(config.network.residual_blocks):
        inner = keras.layers.Dense(config.network.hidden_units, activation="relu", name=f"block_{index}_dense")(hidden)
        inner = keras.layers.Dropout(config.network.dropout_rate)(inner)
        inner = keras.layers.Dense(config.network.hidden_units, name=f"block_{index}_projection")(inner)
        hidden = keras.layers.LayerNormalization(name=f"block_{index}_norm")(keras.layers.Add()([hidden, inner]))
    below = sum(q < 0.5 for q in quantiles)
    raw = keras.layers.Dense(horizon * len(quantiles), name="decoder")(hidden)
    naive = layers["SeasonalNaive"](min(season, lookback), horizon, name="seasonal_naive")(inputs["history"] / scale)
    scaled = layers["MonotoneQuantiles"](horizon, below, len(quantiles) - 1 - below, name="quantiles")(raw, naive)
    # Back to the series' own units; demand is never negative.
    forecast = keras.layers.ReLU(name="forecast")(scaled * keras.ops.expand_dims(scale, -1))
    return keras.Model(inputs, forecast, name="global_forecaster")


def quantile_loss(quantiles: list[float]) -> Any:
    levels = np.asarray(sorted(quantiles), dtype=np.float32)

    def loss(actual: Any, forecast: Any) -> Any:
        difference = keras.ops.expand_dims(actual, -1) - forecast
        return keras.ops.mean(keras.ops.maximum(levels * difference, (levels - 1.0) * difference), axis=-1)

    return loss


# ---- training --------------------------------------------------------------------------------------


def choose_lengths(config: ForecastConfig, frequency: str, official: int | None) -> tuple[int, int]:
    horizon = config.horizon or official or DEFAULT_HORIZON[frequency]
    lookback = config.lookback or max(4 * horizon, 2 * SEASON[frequency], 8)
    return lookback, horizon


def training_windows(data: SeriesArrays, end: np.ndarray, lookback: int, horizon: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random forecast origins per series, each with its whole horizon before ``end`` (exclusive) and
    at least one observed step of history."""
    rows, origins = [], []
    for row in range(len(data.ids)):
        last = int(end[row]) - horizon
        if last < 1:
            continue
        chosen = rng.integers(max(1, min(last, 2)), last + 1, size=count) if last > 1 else np.ones(count, np.int64)
        rows.append(np.full(count, row))
        origins.append(chosen)
    if not rows:
        raise ValueError(f"No series is long enough to train on: each needs more than horizon={horizon} steps of history.")
    return np.concatenate(rows), np.concatenate(origins)


def fit(data: SeriesArrays, end: np.ndarray, config: ForecastConfig, frequency: str, official: int | None = None, verbose: int = 0) -> tuple[Any, int, int]:
    """Train on each series' steps before ``end`` (the last horizon of that is validation)."""
    import tensorflow as tf

    lookback, horizon = choose_lengths(config, frequency, official)
    rng = np.random.default_rng(config.seed)
    keras.utils.set_random_seed(config.seed)
    vocabularies = {column: sorted(set(values) - {""}) for column, values in data.static.items()}
    model = build_network(config, lookback, horizon, vocabularies, SEASON[frequency])
    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate), loss=quantile_loss(config.quantiles))

    def dataset(rows: np.ndarray, origins: np.ndarray, training: bool) -> Any:
        inputs = windows(data, origins, rows, lookback, horizon)
        actual, weight = targets(data, origins, rows, horizon)
        # Errors count relative to each series' scale, so big series do not drown small ones.
        scale = np.sum(np.abs(inputs["history"]) * inputs["history_mask"], axis=1) / np.maximum(inputs["history_mask"].sum(axis=1), 1)
        weight = weight / np.where(scale > 0, scale, 1.0)[:, None]
        frame = tf.data.Dataset.from_tensor_slices((inputs, actual, weight))
        if training:
            frame = frame.shuffle(len(rows), seed=config.seed)
        return frame.batch(config.training.batch_size).prefetch(2)

    valid_end = end - horizon
    rows, origins = training_windows(data, valid_end, lookback, horizon, config.windows_per_series, rng)
    valid_rows = np.flatnonzero(valid_end - 1 >= 1)
    callbacks = []
    if config.training.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.training.early_stopping_patience, restore_best_weights=True))
    model.fit(
        dataset(rows, origins, True),
        validation_data=dataset(valid_rows, valid_end[valid_rows], False),
        epochs=config.training.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )
    return model, lookback, horizon


def forecast(model: Any, data: SeriesArrays, origins: np.ndarray, lookback: int, horizon: int, batch_size: int = 1024) -> np.ndarray:
    """[series, horizon, quantiles] from each series' origin."""
    rows = np.arange(len(data.ids))
    inputs = windows(data, origins, rows, lookback, horizon)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0))
