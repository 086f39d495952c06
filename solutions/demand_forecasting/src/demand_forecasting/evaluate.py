"""Forecast metrics (numpy only), per series and aggregated, as the competitions define them.

- MASE: mean absolute error over the horizon, scaled by the in-sample MAE of the seasonal naive
  forecast (Hyndman & Koehler, 2006; the Tourism competition's headline metric).
- sMAPE: 200·|y − ŷ| / (|y| + |ŷ|), averaged (0 where both are 0, as in the M4 convention).
- Weighted scaled error: per-series MASE weighted by each series' share of recent volume, so the series
  that move stock matter most (the spirit of M5's WRMSSE, with absolute errors).
- Pinball (quantile) loss per quantile, and the coverage of the P10–P90 interval (ideal: 0.8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def seasonal_naive_scale(history: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (naive when the history is shorter than 2 seasons).
    NaN when it is zero (a constant history cannot scale errors)."""
    history = np.asarray(history, dtype=np.float64)
    lag = season if len(history) > season else 1
    if len(history) <= lag:
        return float("nan")
    scale = float(np.mean(np.abs(history[lag:] - history[:-lag])))
    return scale if scale > 0 else float("nan")


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    actual, forecast = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    denominator = np.abs(actual) + np.abs(forecast)
    terms = np.where(denominator > 0, 200.0 * np.abs(actual - forecast) / np.where(denominator > 0, denominator, 1.0), 0.0)
    return float(np.mean(terms))


def pinball(actual: np.ndarray, forecast: np.ndarray, quantile: float) -> float:
    difference = np.asarray(actual, dtype=np.float64) - np.asarray(forecast, dtype=np.float64)
    return float(np.mean(np.maximum(quantile * difference, (quantile - 1) * difference)))


def series_metrics(
    history: np.ndarray, actual: np.ndarray, quantiles: Mapping[float, np.ndarray], season: int
) -> dict[str, float]:
    """Metrics of one series' forecast; ``quantiles`` maps 0.1/0.5/0.9 (at least 0.5) to forecasts."""
    if 0.5 not in quantiles:
        raise ValueError("The median forecast (quantile 0.5) is needed for MASE and sMAPE.")
    actual = np.asarray(actual, dtype=np.float64)
    median = np.asarray(quantiles[0.5], dtype=np.float64)
    if median.shape != actual.shape:
        raise ValueError(f"Forecast of {median.shape[0] if median.ndim else 0} steps for {actual.shape[0]} actual values.")
    scale = seasonal_naive_scale(history, season)
    metrics = {
        "mase": float(np.mean(np.abs(actual - median)) / scale) if np.isfinite(scale) else float("nan"),
        "smape": smape(actual, median),
    }
    for quantile, forecast in sorted(quantiles.items()):
        metrics[f"pinball_p{round(quantile * 100):02d}"] = pinball(actual, forecast, quantile)
    if 0.1 in quantiles and 0.9 in quantiles:
        inside = (actual >= np.asarray(quantiles[0.1])) & (actual <= np.asarray(quantiles[0.9]))
        metrics["coverage_p10_p90"] = float(np.mean(inside))
    return metrics


def aggregate(per_series: pd.DataFrame, volume: pd.Series | None = None) -> dict[str, float]:
    """Means over series (NaN MASE of constant histories left out), plus the volume-weighted MASE."""
    totals = {column: float(per_series[column].mean(skipna=True)) for column in per_series.columns}
    if volume is not None:
        weights = volume.reindex(per_series.index).fillna(0.0)
        usable = per_series["mase"].notna() & (weights > 0)
        if usable.any():
            totals["weighted_mase"] = float(np.average(per_series.loc[usable, "mase"], weights=weights[usable]))
    totals["series"] = float(len(per_series))
    return totals


def evaluate_forecasts(
    histories: Mapping[str, np.ndarray],
    actuals: Mapping[str, np.ndarray],
    forecasts: Mapping[str, Mapping[float, np.ndarray]],
    season: int,
    recent: int | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-series table and aggregate metrics for forecasts keyed by series id; volume weights are each
    series' total over its last ``recent`` history points (default: one season, at least 7)."""
    missing = sorted(set(actuals) - set(forecasts))
    if missing:
        raise ValueError(f"No forecast for {len(missing)} series (e.g. {missing[0]!r}).")
    window = recent or max(season, 7)
    rows = {series: series_metrics(histories[series], actuals[series], forecasts[series], season) for series in actuals}
    table = pd.DataFrame.from_dict(rows, orient="index")
    volume = pd.Series({series: float(np.sum(np.asarray(histories[series])[-window:])) for series in actuals})
    return table, aggregate(table, volume)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last season repeated (the last value when the history is shorter than a season)."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) == 0:
        raise ValueError("An empty history has no naive forecast.")
    period = season if len(history) >= season else 1
    last = history[-period:]
    return np.resize(last, horizon) if period > 1 else np.full(horizon, history[-1])


def quantile_columns(quantiles: Sequence[float]) -> list[str]:
    return [f"p{round(q * 100):02d}" for q in quantiles]
