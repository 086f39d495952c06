"""The daily forecast for planning: every series' quantiles for the horizon after a logical date, as
one long table (series, date, step, p10/p50/p90) that downstream planning reads from Parquet/DuckDB.

Only rows dated on or before the logical date count as history, so re-running an old date reproduces
its forecast; rows after it are read as the plan (prices, promotions, holidays, openings), neutral
where there are none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from demand_forecasting.config import ForecastConfig
from demand_forecasting.data import SALES, SERIES
from demand_forecasting.online import model_shape, next_period, request_from_rows
from demand_forecasting.windows import future_dates


def forecast_table(
    tables: Mapping[str, pd.DataFrame],
    config: ForecastConfig,
    predict: Callable[[pd.DataFrame], Mapping[str, np.ndarray]],
    logical_date: dt.date,
    *,
    model_version: int | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Forecasts of every series of the model's frequency that has a known value in the ``lookback``
    periods up to ``logical_date``; ``predict`` runs the exported signature over request rows. No such
    series is an error, unless ``allow_empty`` (one shard of many): then an empty table."""
    lookback, horizon, frequency = model_shape(config)
    sales = tables[SALES].assign(date=lambda frame: pd.to_datetime(frame["date"]), series_id=lambda frame: frame["series_id"].astype(str))
    series = tables[SERIES].astype({"series_id": str}).drop_duplicates("series_id").set_index("series_id")
    if "frequency" in series.columns:
        sales = sales[sales["series_id"].map(series["frequency"]).fillna(frequency) == frequency]
    cutoff = pd.Timestamp(logical_date)
    start = next_period(cutoff, frequency) if frequency == "D" else _next_period_start(cutoff, frequency)
    requests = []
    for series_id, rows in sales.groupby("series_id", sort=True):
        static = series.loc[series_id].to_dict() if series_id in series.index else {}
        request = request_from_rows(
            rows[rows["date"] <= cutoff], rows[rows["date"] >= start], {c: static.get(c) for c in config.static_columns},
            lookback=lookback, horizon=horizon, frequency=frequency, start=start,
        )
        if any(value is not None for value in request["history"]):
            requests.append({"series_id": series_id, **request})
    if not requests and allow_empty:
        return pd.DataFrame({"series_id": pd.Series(dtype=object), "forecast_date": pd.Series(dtype="datetime64[ns]"),
                             "date": pd.Series(dtype="datetime64[ns]"), "step": pd.Series(dtype=np.int64)})
    if not requests:
        raise ValueError(f"No series has a known value in the {lookback} periods up to {logical_date}: nothing to forecast.")
    outputs = predict(pd.DataFrame(requests))
    names = sorted(outputs)
    dates = future_dates(start, horizon, frequency)
    count = len(requests)
    table = pd.DataFrame(
        {
            "series_id": np.repeat([r["series_id"] for r in requests], horizon),
            "forecast_date": pd.Timestamp(logical_date),
            "date": np.tile(dates.to_numpy(), count),
            "step": np.tile(np.arange(1, horizon + 1), count),
        }
    )
    for name in names:
        table[name] = np.asarray(outputs[name], dtype=np.float64).reshape(-1)
    if model_version is not None:
        table["model_version"] = int(model_version)
    return table


def _next_period_start(cutoff: pd.Timestamp, frequency: str) -> pd.Timestamp:
    """The first period that starts after ``cutoff`` (period-start dates, as the tables use)."""
    period = {"W": "W-MON", "M": "M", "Q": "Q", "Y": "Y"}[frequency]
    if frequency == "W":
        return (cutoff + pd.offsets.Week(weekday=0)).normalize()
    return (cutoff.to_period(period) + 1).start_time
