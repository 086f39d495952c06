"""From long tables to forecast windows, and the rolling-origin backtest layout (pure numpy/pandas).

A *window* is what one forecast sees and what it is scored against: a series' last ``lookback`` steps
before a forecast *origin* (its first forecast step) with their covariates, the covariates known in
advance for the ``horizon`` steps from the origin, and the actual values of those steps. Its inputs are
exactly the exported model's request fields, so the same rows feed training, evaluation and serving.

The backtest takes several origins near the end of every series (rolling origin): the model is fitted
once on what precedes the validation origin, validation picks the candidate, and the test origins
score it (and the baselines and the champion) on the most recent periods, each forecast seeing only the
history before its own origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from demand_forecasting.config import ForecastConfig, season_length

FLAGS = ("promotion", "holiday", "store_open")  # known in advance, 0/1 per step
HISTORY_INPUTS = ("history", "history_price", *(f"history_{flag}" for flag in FLAGS))
FUTURE_INPUTS = ("future_price", *(f"future_{flag}" for flag in FLAGS))
DEFAULT_HORIZON = {"D": 28, "W": 13, "M": 18, "Q": 8, "Y": 6, "O": 8}
PANDAS_FREQUENCY = {"Y": "YS", "Q": "QS", "M": "MS", "W": "W-MON", "D": "D", "O": "D"}
SECONDS_PER_DAY = 86_400.0
NEUTRAL_FLAGS = {"promotion": 0.0, "holiday": 0.0, "store_open": 1.0}


@dataclass
class SeriesArrays:
    """One frequency's series as [series, time] arrays, aligned at each series' first row (NaN quantity
    = not observed)."""

    ids: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    flags: np.ndarray  # [series, time, len(FLAGS)]
    seconds: np.ndarray  # epoch seconds of each step
    censored: np.ndarray  # stock-out steps: sales below demand
    length: np.ndarray  # rows per series
    static: dict[str, np.ndarray]


def series_arrays(sales: pd.DataFrame, series: pd.DataFrame, static_columns: list[str]) -> SeriesArrays:
    sales = sales.sort_values(["series_id", "date"], kind="stable")
    groups = sales.groupby("series_id", sort=True)
    ids = np.asarray(list(groups.groups), dtype=object)
    sizes = groups.size().to_numpy()
    shape = (len(ids), int(sizes.max()))
    # Scatter all rows at once: row r of series s goes to column r - first row of s.
    series_index = np.repeat(np.arange(len(ids)), sizes)
    step_index = np.arange(len(sales)) - np.repeat(np.cumsum(sizes) - sizes, sizes)

    def scatter(values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        array = np.full(shape, fill, dtype=dtype)
        array[series_index, step_index] = values
        return array

    flags = np.zeros((*shape, len(FLAGS)), np.float32)
    flags[series_index, step_index, 0] = sales["promotion"].fillna(0).to_numpy(np.float32)
    flags[series_index, step_index, 1] = sales["holiday"].notna().to_numpy(np.float32)
    flags[series_index, step_index, 2] = sales["store_open"].fillna(1).to_numpy(np.float32)
    attributes = series.drop_duplicates("series_id").set_index("series_id").reindex(ids)
    static = {
        column: attributes[column].fillna("").astype(str).to_numpy(dtype=object)
        for column in static_columns
        if column in attributes
    }
    return SeriesArrays(
        ids=ids,
        quantity=scatter(sales["quantity"].to_numpy(np.float64), np.nan, np.float64),
        price=scatter(pd.to_numeric(sales["price"], errors="coerce").to_numpy(np.float64), np.nan, np.float64),
        flags=flags,
        seconds=scatter(sales["date"].astype("datetime64[ns]").astype("int64").to_numpy() / 1e9, np.nan, np.float64),
        censored=scatter(sales["stockout"].fillna(0).to_numpy() == 1, False, bool),
        length=sizes.astype(np.int64),
        static=static,
    )


# History a request carries for the in-graph Theta, as much as the statistical baselines fit on, so the
# served model never sees less of a series than they do (benchmarks/theta_history.py, M3 quarterly,
# Theta alone: MASE 1.127 on 32 quarters, 1.115 on 48 or more). Daily requests keep the network's span:
# a year of days in every request would cost more than Theta, weak on daily retail data, can win back.
THETA_HISTORY = {"D": 0, "W": 156, "M": 120, "Q": 60, "Y": 60, "O": 60}


def network_span(config: ForecastConfig, frequency: str, horizon: int) -> int:
    """History steps the network reads (the last of the request's ``lookback``): the config's
    ``network_lookback``, else four horizons and at least two seasons. Not more by default: on M3
    quarterly the network reading 60 quarters (short series padded) scored MASE 1.39 on validation,
    reading 32 1.22."""
    return config.network_lookback or max(4 * horizon, 2 * season_length(config, frequency), 8)


def resolve_lengths(config: ForecastConfig, frequency: str, official: int | None) -> tuple[int, int]:
    """(lookback, horizon): the config's, else the data's official horizon (else a default per
    frequency) and a request history of the network's span or Theta's history, the longer."""
    horizon = config.horizon or official or DEFAULT_HORIZON[frequency]
    lookback = config.lookback or max(network_span(config, frequency, horizon), THETA_HISTORY[frequency])
    return lookback, horizon


def window_inputs(data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, lookback: int, horizon: int) -> dict[str, np.ndarray]:
    """Model inputs for forecasts of series ``rows`` from ``origins`` (indices of the first forecast
    step). History before a series' first row is NaN (unknown); future steps must exist in the arrays."""
    rows, origins = np.asarray(rows), np.asarray(origins)
    past = origins[:, None] + np.arange(-lookback, 0)[None, :]
    future, inside = future_steps(data, rows, origins, horizon)
    known = past >= 0
    past = np.clip(past, 0, None)
    row_index = rows[:, None]
    inputs = {
        "history": np.where(known, data.quantity[row_index, past], np.nan),
        "history_price": np.where(known, data.price[row_index, past], np.nan),
        "future_price": np.where(inside, data.price[row_index, future], np.nan),
    }
    for position, flag in enumerate(FLAGS):
        inputs[f"history_{flag}"] = np.where(known, data.flags[row_index, past, position], 0.0)
        # Past a series' last row (a training window of a short series) the plan is neutral.
        inputs[f"future_{flag}"] = np.where(inside, data.flags[row_index, future, position], NEUTRAL_FLAGS[flag])
    inputs = {name: values.astype(np.float32) for name, values in inputs.items()}
    inputs["forecast_start"] = data.seconds[rows, origins]
    for column, values in data.static.items():
        inputs[column] = values[rows]
    return inputs


def future_steps(data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(column of each forecast step in the arrays, clipped to them; whether the step is inside the series)."""
    future = np.asarray(origins)[:, None] + np.arange(horizon)[None, :]
    inside = future < data.length[np.asarray(rows)][:, None]
    return np.minimum(future, data.quantity.shape[1] - 1), inside


def window_targets(
    data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, horizon: int, end: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(actual values [n, horizon], weight [n, horizon]: 0 on censored or unobserved steps, on steps past
    the series' end and, when ``end`` is given (per window), on steps at or after it)."""
    rows = np.asarray(rows)
    future, inside = future_steps(data, rows, origins, horizon)
    actual = np.where(inside, data.quantity[rows[:, None], future], np.nan)
    counted = inside & ~np.isnan(actual) & ~data.censored[rows[:, None], future]
    if end is not None:
        counted &= (np.asarray(origins)[:, None] + np.arange(horizon)[None, :]) < np.asarray(end)[:, None]
    return np.nan_to_num(actual).astype(np.float32), counted.astype(np.float32)


def naive_scale(data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, season: int) -> np.ndarray:
    """MASE denominators: each series' in-sample MAE of the seasonal naive forecast over all its
    history before the origin (the naive one-step forecast when that history is under two seasons).
    NaN where it is 0 (a constant history cannot scale errors)."""
    scales = np.full(len(rows), np.nan)
    for index, (row, origin) in enumerate(zip(rows, origins)):
        history = data.quantity[row, :origin]
        history = history[~np.isnan(history)]
        lag = season if len(history) > season else 1
        if len(history) > lag:
            value = float(np.mean(np.abs(history[lag:] - history[:-lag])))
            scales[index] = value if value > 0 else np.nan
    return scales


def examples_frame(data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, lookback: int, horizon: int, season: int) -> pd.DataFrame:
    """One row per (series, origin): the request fields (list-valued per step) plus what scoring
    needs: ``actual``/``weight`` per step, the MASE ``scale``, recent ``volume`` and the origin's date."""
    inputs = window_inputs(data, rows, origins, lookback, horizon)
    actual, weight = window_targets(data, rows, origins, horizon)
    frame = pd.DataFrame({"series_id": data.ids[rows]})
    for name, values in inputs.items():
        frame[name] = list(values) if values.ndim == 2 else values
    frame["origin"] = pd.to_datetime(inputs["forecast_start"], unit="s")
    frame["actual"] = list(actual)
    frame["weight"] = list(weight)
    frame["scale"] = naive_scale(data, rows, origins, season)
    recent = max(season, 7)
    history = inputs["history"][:, -recent:]
    frame["volume"] = np.nansum(history, axis=1)
    return frame


@dataclass
class Backtest:
    """Where each split's forecasts start, as (rows, origins) index pairs, and where training ends."""

    train_end: np.ndarray  # per series: training targets lie before this step
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def backtest_layout(data: SeriesArrays, horizon: int, config: ForecastConfig, official_start: np.ndarray | None = None) -> Backtest:
    """Test origins: the official test start where the data has one, else ``backtest_origins`` origins
    ``backtest_stride`` apart ending with the last full horizon of each series. Validation: one horizon
    before the first test origin. Training targets end at the validation origin."""
    stride = config.backtest_stride or max(1, horizon // 2)
    count = config.backtest_origins
    test_rows, test_origins, valid_rows, valid_origins = [], [], [], []
    train_end = np.zeros(len(data.ids), np.int64)
    for row, length in enumerate(data.length):
        if official_start is not None and official_start[row] >= 0:
            origins = [int(official_start[row])]
        else:
            origins = [int(length) - horizon - k * stride for k in range(count)][::-1]
        origins = [origin for origin in origins if origin >= 1 and origin + horizon <= length]
        if not origins:
            continue
        test_rows += [row] * len(origins)
        test_origins += origins
        valid_origin = origins[0] - horizon
        train_end[row] = max(valid_origin, 0)
        if valid_origin >= 1:
            valid_rows.append(row)
            valid_origins.append(valid_origin)
    if not test_rows:
        raise ValueError(f"No series is long enough to backtest: each needs more than horizon={horizon} steps.")
    if not valid_rows:
        raise ValueError(f"No series is long enough for a validation window before its test: each needs more than 2 × horizon={horizon} steps.")
    as_arrays = lambda r, o: (np.asarray(r, np.int64), np.asarray(o, np.int64))  # noqa: E731
    return Backtest(train_end, as_arrays(valid_rows, valid_origins), as_arrays(test_rows, test_origins))


def training_origins(data: SeriesArrays, end: np.ndarray, horizon: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random forecast origins per series, each with at least one step of history and one
    target before ``end`` (exclusive). A short series' windows are padded: unknown history before its
    first row, and targets at or after ``end`` masked (``window_targets(..., end=)``), so every series
    with two steps before ``end`` trains the model instead of being dropped."""
    last = end - 1
    usable = np.flatnonzero(last >= 1)
    if usable.size == 0:
        raise ValueError(f"No series is long enough to train on: each needs at least 2 steps before its validation window (horizon={horizon}).")
    rows = np.repeat(usable, count)
    origins = 1 + np.floor(rng.random(rows.size) * last[rows]).astype(np.int64)  # uniform on 1..last
    return rows, origins


def future_dates(start: pd.Timestamp, horizon: int, frequency: str) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start), periods=horizon, freq=PANDAS_FREQUENCY[frequency])
