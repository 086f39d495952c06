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


# ---- scoring the pipeline's windows (one row per series and origin) ---------------------------------


def window_metrics(examples: pd.DataFrame, quantiles: Mapping[float, np.ndarray]) -> pd.DataFrame:
    """Per window (series × origin): MASE, sMAPE, pinball per quantile, P10–P90 coverage, over the
    steps that count (censored stock-out steps and unobserved ones do not). ``quantiles`` maps levels
    to [windows, horizon] forecasts and must hold the median."""
    if 0.5 not in quantiles:
        raise ValueError("The median forecast (quantile 0.5) is needed for MASE and sMAPE.")
    actual = np.stack(examples["actual"].to_numpy()).astype(np.float64)
    weight = np.stack(examples["weight"].to_numpy()).astype(np.float64)
    counted = np.maximum(weight.sum(axis=1), 1.0)
    median = np.asarray(quantiles[0.5], dtype=np.float64)
    if median.shape != actual.shape:
        raise ValueError(f"Forecasts of shape {median.shape} for actual values of shape {actual.shape}.")

    def mean_over_steps(values: np.ndarray) -> np.ndarray:
        return (values * weight).sum(axis=1) / counted

    scale = examples["scale"].to_numpy(np.float64)
    denominator = np.abs(actual) + np.abs(median)
    smape_terms = np.where(denominator > 0, 200.0 * np.abs(actual - median) / np.where(denominator > 0, denominator, 1.0), 0.0)
    table = pd.DataFrame(
        {
            "series_id": examples["series_id"].to_numpy(),
            "origin": examples["origin"].to_numpy(),
            "mase": mean_over_steps(np.abs(actual - median)) / scale,
            "smape": mean_over_steps(smape_terms),
        }
    )
    for level, forecast in sorted(quantiles.items()):
        difference = actual - np.asarray(forecast, dtype=np.float64)
        table[f"pinball_p{round(level * 100):02d}"] = mean_over_steps(np.maximum(level * difference, (level - 1) * difference))
    if 0.1 in quantiles and 0.9 in quantiles:
        inside = (actual >= np.asarray(quantiles[0.1])) & (actual <= np.asarray(quantiles[0.9]))
        table["coverage_p10_p90"] = mean_over_steps(inside.astype(np.float64))
        scaled_pinball = sum(table[f"pinball_p{round(q * 100):02d}"] for q in (0.1, 0.5, 0.9)) / 3
        table["scaled_pinball"] = scaled_pinball / scale
    table["volume"] = examples["volume"].to_numpy(np.float64)
    return table


def realized_windows(logged: pd.DataFrame, sales: pd.DataFrame, horizon: int, season: int | None) -> pd.DataFrame:
    """The logged forecasts whose horizon has at least one realized step in ``sales`` (the app's sales
    table as it stands now: history and what sold since), with what scoring needs, computed as the
    backtest computes it: ``actual``/``weight`` per step (stock-outs and unknown steps do not count),
    the MASE ``scale`` from the series' history before the forecast start, the recent ``volume`` and
    the ``origin``."""
    from demand_forecasting.data import infer_frequency
    from demand_forecasting.config import SEASON
    from demand_forecasting.windows import naive_scale, series_arrays, window_targets

    for column in ("series_id", "forecast_start"):
        if column not in logged.columns:
            raise ValueError(f"The request log holds no {column!r}: these are not forecast requests.")
    data = series_arrays(sales, pd.DataFrame({"series_id": []}), [])
    season = season or SEASON[infer_frequency(sales)]
    start = logged["forecast_start"]
    seconds = (pd.to_datetime(start, unit="s") if pd.api.types.is_numeric_dtype(start) else pd.to_datetime(start)).astype("datetime64[ns]")
    seconds = seconds.astype("int64").to_numpy() / 1e9
    row_of = {str(series): index for index, series in enumerate(data.ids)}
    rows, origins, kept = [], [], []
    for index, (series, when) in enumerate(zip(logged["series_id"].astype(str), seconds)):
        row = row_of.get(series)
        if row is None:
            continue
        steps = data.seconds[row, : data.length[row]]
        origin = int(np.searchsorted(steps, when))
        if origin < len(steps) and steps[origin] == when and origin >= 1:
            rows.append(row), origins.append(origin), kept.append(index)
    rows, origins = np.asarray(rows, dtype=np.int64), np.asarray(origins, dtype=np.int64)
    actual, weight = window_targets(data, rows, origins, horizon) if len(rows) else (np.zeros((0, horizon)), np.zeros((0, horizon)))
    realized = weight.sum(axis=1) > 0
    frame = logged.iloc[np.asarray(kept, dtype=np.int64)[realized]].reset_index(drop=True)
    rows, origins = rows[realized], origins[realized]
    frame["origin"] = pd.to_datetime(data.seconds[rows, origins], unit="s")
    frame["actual"] = list(actual[realized])
    frame["weight"] = list(weight[realized])
    frame["scale"] = naive_scale(data, rows, origins, season)
    recent = max(season, 7)
    frame["volume"] = [float(np.nansum(data.quantity[row, max(origin - recent, 0):origin])) for row, origin in zip(rows, origins)]
    return frame


def aggregate_windows(table: pd.DataFrame) -> dict[str, float]:
    """Means over windows (MASE of constant histories left out), the volume-weighted MASE (the series
    that move stock count most, in the spirit of M5's WRMSSE) and the share of windows covered."""
    metrics = {}
    for column in table.columns:
        if column in ("series_id", "origin", "volume"):
            continue
        values = table[column].to_numpy(np.float64)
        finite = np.isfinite(values)
        metrics[column] = float(values[finite].mean()) if finite.any() else float("nan")
    usable = np.isfinite(table["mase"].to_numpy(np.float64)) & (table["volume"].to_numpy() > 0)
    if usable.any():
        metrics["weighted_mase"] = float(np.average(table.loc[usable, "mase"], weights=table.loc[usable, "volume"]))
    metrics["windows"] = float(len(table))
    metrics["series"] = float(table["series_id"].nunique())
    return metrics


def seasonal_naive_windows(examples: pd.DataFrame, horizon: int, season: int) -> np.ndarray:
    """[windows, horizon] seasonal naive forecasts from each window's history (NaN gaps skipped)."""
    forecasts = np.zeros((len(examples), horizon))
    for index, history in enumerate(examples["history"].to_numpy()):
        history = np.asarray(history, dtype=np.float64)
        history = history[~np.isnan(history)]
        forecasts[index] = seasonal_naive_forecast(history, horizon, season) if len(history) else 0.0
    return forecasts
