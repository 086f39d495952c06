"""From a series' rows to one model request, and the store that lets a request name only the series.

A request to the exported model carries fixed-length arrays (the last ``lookback`` values, the
``horizon`` planned covariates). People and planning systems think in rows instead: dated sales and a
dated plan. ``request_from_rows`` turns rows into a request (padding a short history with unknowns,
filling an unplanned future with neutral defaults: the last known price, no promotion, no holiday,
open); the batch forecast, the ``/forecast`` route and ``:predict`` with only ``series_id`` all use it,
with the history the last training run stored when the caller sends none.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demand_forecasting.config import ForecastConfig
from demand_forecasting.windows import FLAGS, FUTURE_INPUTS, HISTORY_INPUTS, PANDAS_FREQUENCY, future_dates
from solutions_core.solution import FeatureStore

APP = "demand_forecasting"
SALES, SERIES = "demand_sales", "demand_series"
NEUTRAL = {"promotion": 0.0, "holiday": 0.0, "store_open": 1.0}


def _flag_values(frame: pd.DataFrame, flag: str) -> np.ndarray:
    if flag not in frame.columns:
        return np.full(len(frame), NEUTRAL[flag])
    values = frame[flag]
    if flag == "holiday" and not pd.api.types.is_numeric_dtype(values):
        # A holiday's name (the table's form) or a 0/1 flag (a request's form) both mean "a holiday".
        return values.map(lambda v: 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) or v in ("", 0, "0", False) else 1.0).to_numpy(float)
    return pd.to_numeric(values, errors="coerce").fillna(NEUTRAL[flag]).to_numpy(float)


def next_period(last: pd.Timestamp, frequency: str) -> pd.Timestamp:
    return pd.date_range(last, periods=2, freq=PANDAS_FREQUENCY[frequency])[1]


def request_from_rows(
    history: pd.DataFrame,
    future: pd.DataFrame | None,
    static: Mapping[str, Any],
    *,
    lookback: int,
    horizon: int,
    frequency: str,
    start: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """One JSON-ready model request from dated rows.

    ``history``: rows with ``date`` and ``quantity`` (and optionally price and the flags), any order;
    rows on or after ``start`` are ignored. ``future``: planned covariates by ``date`` for the horizon
    (optional; missing dates get neutral values). ``start``: the first forecast date (default: the
    period after the last history row). Unknown values are None (NaN in the model)."""
    if history.empty and start is None:
        raise ValueError("A forecast needs some history or an explicit start date.")
    if "date" not in history.columns or "quantity" not in history.columns:
        raise ValueError("history rows need 'date' and 'quantity'.")
    history = history.assign(date=pd.to_datetime(history["date"])).sort_values("date", kind="stable")
    start = pd.Timestamp(start) if start is not None else next_period(history["date"].iloc[-1], frequency)
    history = history[history["date"] < start]
    # Place rows on the period grid ending just before ``start``, so gaps become unknowns, not shifts.
    grid = pd.date_range(end=start, periods=lookback + 1, freq=PANDAS_FREQUENCY[frequency])[:-1]
    on_grid = history.drop_duplicates("date", keep="last").set_index("date").reindex(grid)
    request: dict[str, Any] = {"forecast_start": start.isoformat()}
    request["history"] = pd.to_numeric(on_grid["quantity"], errors="coerce").to_numpy(float)
    request["history_price"] = pd.to_numeric(on_grid["price"], errors="coerce").to_numpy(float) if "price" in on_grid else np.full(lookback, np.nan)
    known = on_grid["quantity"].notna().to_numpy()
    for flag in FLAGS:
        values = _flag_values(on_grid.reset_index(), flag)
        request[f"history_{flag}"] = np.where(known, values, 0.0 if flag != "store_open" else values)
    dates = future_dates(start, horizon, frequency)
    plan = pd.DataFrame(index=dates)
    if future is not None and not future.empty:
        if "date" not in future.columns:
            raise ValueError("future rows need a 'date'.")
        plan = future.assign(date=pd.to_datetime(future["date"])).drop_duplicates("date", keep="last").set_index("date").reindex(dates)
    known_prices = request["history_price"][~np.isnan(request["history_price"])]
    last_price = known_prices[-1] if known_prices.size else np.nan
    prices = pd.to_numeric(plan["price"], errors="coerce").to_numpy(float) if "price" in plan else np.full(horizon, np.nan)
    request["future_price"] = np.where(np.isnan(prices), last_price, prices)
    for flag in FLAGS:
        request[f"future_{flag}"] = _flag_values(plan.reset_index(), flag) if flag in plan else np.full(horizon, NEUTRAL[flag])
    for name in (*HISTORY_INPUTS, *FUTURE_INPUTS):
        request[name] = [None if np.isnan(v) else float(v) for v in np.asarray(request[name], dtype=float)]
    for column, value in static.items():
        request[column] = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return request


def model_shape(config: ForecastConfig) -> tuple[int, int, str]:
    if config.lookback is None or config.horizon is None or config.frequency is None:
        raise ValueError("This config was not resolved by a training run (lookback, horizon and frequency are unset).")
    return config.lookback, config.horizon, config.frequency


class ForecastStore(FeatureStore):
    """The sales and series tables the last training run stored, indexed for per-series lookups.

    Read-only once opened: a forecast request brings no new sale, so nothing is recorded."""

    def __init__(self, sales: pd.DataFrame, series: pd.DataFrame, config: ForecastConfig):
        self.config = config
        self.sales = {key: frame for key, frame in sales.groupby("series_id", sort=False)} if not sales.empty else {}
        self.series = series.drop_duplicates("series_id").set_index("series_id") if not series.empty else pd.DataFrame()
        self.lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, config: ForecastConfig, contract: Any = None) -> "ForecastStore":
        """The stored tables (in the client's columns, as validated) in the app's names."""
        from demand_forecasting.data import canonical_sales

        folder = Path(data_dir) / APP
        sales = pd.read_parquet(folder / f"{SALES}.parquet") if (folder / f"{SALES}.parquet").exists() else pd.DataFrame()
        if not sales.empty:
            sales = canonical_sales(sales, contract, config)  # series ids as strings too
        series = pd.read_parquet(folder / f"{SERIES}.parquet") if (folder / f"{SERIES}.parquet").exists() else pd.DataFrame()
        if not series.empty:
            series = series.astype({"series_id": str})
        return cls(sales, series, config)

    def knows(self, series_id: str) -> bool:
        return str(series_id) in self.sales

    def static(self, series_id: str) -> dict[str, Any]:
        row = self.series.loc[series_id] if series_id in self.series.index else {}
        return {column: (row.get(column) if len(row) else None) for column in self.config.static_columns}

    def history(self, series_id: str) -> pd.DataFrame:
        return self.sales.get(str(series_id), pd.DataFrame(columns=["date", "quantity"]))

    def request(self, series_id: str, *, start: Any = None, future: pd.DataFrame | None = None) -> dict[str, Any]:
        """A model request for a stored series: its stored history before ``start`` (default: after its
        last row), the stored rows from ``start`` on as the plan unless ``future`` is given."""
        lookback, horizon, frequency = model_shape(self.config)
        rows = self.history(series_id)
        begin = pd.Timestamp(start) if start is not None else None
        if future is None and begin is not None and not rows.empty:
            future = rows[pd.to_datetime(rows["date"]) >= begin]
        request = request_from_rows(rows, future, self.static(series_id), lookback=lookback, horizon=horizon, frequency=frequency, start=begin)
        return {"series_id": str(series_id), **request}

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``:predict`` instances that name only a stored series (and optionally ``forecast_start``) get
        its stored history and plan; instances that bring their own arrays, or name a series the store
        does not know, are left as they are. Changes no state."""
        filled_in = []
        for instance in instances:
            if instance.get("history") is not None or not self.knows(str(instance.get("series_id", ""))):
                filled_in.append(instance)
                continue
            with self.lock:
                filled = self.request(str(instance["series_id"]), start=instance.get("forecast_start"))
            filled.update({key: value for key, value in instance.items() if value is not None})
            filled_in.append(filled)
        return filled_in
