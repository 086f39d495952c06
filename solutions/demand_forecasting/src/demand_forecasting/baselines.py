"""Baselines scored on the same backtest windows as the model: seasonal naive (always; the yardstick
of MASE) and statsforecast's AutoETS and OptimizedTheta, fitted per window on the history before its
origin, with their 80 % intervals as P10/P90.

The statistical models are the slow part of a run (about 0.1–0.2 s per window on one core), so they fit
on the last ``baseline_history`` steps only, and a config can leave them out (the demo keeps Theta).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from demand_forecasting.config import ForecastConfig, season_length
from demand_forecasting.evaluate import seasonal_naive_forecast, seasonal_naive_windows
from demand_forecasting.windows import SeriesArrays

STATISTICAL = ("ets", "theta")
KNOWN = ("seasonal_naive", *STATISTICAL)
# Steps the statistical models fit on by default: a year of days, three of weeks, ten of months or more.
BASELINE_HISTORY = {"D": 365, "W": 156, "M": 120, "Q": 60, "Y": 60}


def check_names(names: list[str]) -> None:
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise ValueError(f"Unknown baselines {unknown}; choose from {list(KNOWN)}.")


def statistical_forecasts(
    data: SeriesArrays,
    rows: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    season: int,
    names: list[str],
    history_steps: int,
) -> dict[str, dict[float, np.ndarray]]:
    """{baseline: {0.1, 0.5, 0.9: [windows, horizon]}} for the windows (series ``rows`` at ``origins``)."""
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, OptimizedTheta, SeasonalNaive

    factories = {"ets": lambda: AutoETS(season_length=season), "theta": lambda: OptimizedTheta(season_length=season)}
    chosen = [name for name in names if name in STATISTICAL]
    if not chosen:
        return {}
    pieces = []
    for window, (row, origin) in enumerate(zip(rows, origins)):
        values = data.quantity[row, max(0, origin - history_steps) : origin]
        values = values[~np.isnan(values)]
        if values.size < 2:  # too short for any model: repeat what little there is
            values = np.resize(values if values.size else np.zeros(1), 2)
        pieces.append(pd.DataFrame({"unique_id": window, "ds": np.arange(values.size), "y": values}))
    frame = pd.concat(pieces, ignore_index=True)
    models = [factories[name]() for name in chosen]
    engine = StatsForecast(models=models, freq=1, n_jobs=1, fallback_model=SeasonalNaive(season_length=season))
    predicted = engine.forecast(df=frame, h=horizon, level=[80]).sort_values(["unique_id", "ds"], kind="stable")
    fallback, flat, ceiling = fallback_forecasts(data, rows, origins, horizon, season, history_steps)
    out = {}
    for name, model in zip(chosen, models):
        column = repr(model)
        grids = {}
        for level, suffix in ((0.1, "-lo-80"), (0.5, ""), (0.9, "-hi-80")):
            values = predicted[column + suffix].to_numpy(np.float64).reshape(len(rows), horizon)
            # A window whose fit failed (NaN: a history of 2 points), diverged (far beyond anything the
            # series ever did) or had nothing to fit (a flat history) gets the seasonal naive forecast,
            # the constant of a flat series, instead of 0 or a blow-up.
            broken = ~np.isfinite(values).all(axis=1) | (np.abs(values) > ceiling[:, None]).any(axis=1) | flat
            values = np.where(broken[:, None], fallback, values)
            grids[level] = np.clip(values, 0.0, None)  # demand is never negative
        out[name] = grids
    return out


def fallback_forecasts(
    data: SeriesArrays, rows: np.ndarray, origins: np.ndarray, horizon: int, season: int, history_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: the seasonal naive forecast, whether the history is flat (constant), and a ceiling
    no sane forecast passes (10 × the largest absolute value the history had, at least 1)."""
    forecasts = np.zeros((len(rows), horizon))
    flat = np.zeros(len(rows), bool)
    ceiling = np.ones(len(rows))
    for window, (row, origin) in enumerate(zip(rows, origins)):
        values = data.quantity[row, max(0, origin - history_steps) : origin]
        values = values[~np.isnan(values)]
        if values.size == 0:
            continue
        forecasts[window] = seasonal_naive_forecast(values, horizon, season)
        flat[window] = bool(np.all(values == values[0]))
        ceiling[window] = max(1.0, 10.0 * float(np.max(np.abs(values))))
    return forecasts, flat, ceiling


def baseline_forecasts(
    data: SeriesArrays,
    test: pd.DataFrame,
    rows: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    frequency: str,
    config: ForecastConfig,
) -> dict[str, dict[float, Any]]:
    check_names(config.baselines)
    forecasts: dict[str, dict[float, Any]] = {}
    if "seasonal_naive" in config.baselines:
        forecasts["seasonal_naive"] = {0.5: seasonal_naive_windows(test, horizon, season_length(config, frequency))}
    history_steps = config.baseline_history or max(BASELINE_HISTORY[frequency], 4 * horizon)
    forecasts.update(statistical_forecasts(data, rows, origins, horizon, season_length(config, frequency), config.baselines, history_steps))
    return forecasts
