"""The Theta method inside the graph: a forecaster that needs no training and is strong on short seasonal
series (it won the M3 competition), computed from a request's history alone, so it can be exported and
served like the network (and used as the network's base forecast).

Theta with θ = 2 is simple exponential smoothing with a drift of half the series' linear trend (Hyndman &
Billah, 2003), applied to the seasonally adjusted series (classical multiplicative decomposition, when a
90 % autocorrelation test at the season lag says the series is seasonal), as in Assimakopoulos &
Nikolopoulos (2000) and statsforecast's ``Theta``. The smoothing weight α is chosen per series from a
grid by the in-sample one-step squared error (statsforecast optimizes it continuously). Unknown history
(NaN: before a series' first row, or gaps) is skipped: the level carries over.

Everything is TensorFlow ops on [batch, lookback] tensors with a static lookback (the loop over time is
unrolled), so the exported SavedModel holds it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

ALPHAS = np.linspace(0.05, 1.0, 20, dtype=np.float32)
Z_90 = 1.2815516  # standard normal quantile of 0.9


def theta_forecast(history: Any, horizon: int, season: int, quantiles: list[float]) -> Any:
    """[batch, lookback] history (NaN = unknown) → [batch, horizon, len(quantiles)] forecasts, quantiles
    ascending (the median the Theta forecast, others from the one-step errors as a normal spread)."""
    import tensorflow as tf

    history = tf.cast(history, tf.float32)
    length = int(history.shape[1])
    known = tf.logical_not(tf.math.is_nan(history))
    mask = tf.cast(known, tf.float32)
    values = tf.where(known, history, tf.zeros_like(history))
    count = tf.reduce_sum(mask, axis=1)  # [b]
    positions = tf.range(length, dtype=tf.float32)

    factors = seasonal_factors(values, mask, count, season, length) if season > 1 else None  # [b, season]
    if factors is not None:
        phase = tf.math.floormod(tf.range(length), season)
        adjusted = values / tf.gather(factors, phase, axis=1)
    else:
        adjusted = values

    # Linear trend by least squares over the known steps.
    mean_t = tf.reduce_sum(mask * positions, axis=1) / tf.maximum(count, 1.0)
    mean_y = tf.reduce_sum(mask * adjusted, axis=1) / tf.maximum(count, 1.0)
    centred_t = (positions[None, :] - mean_t[:, None]) * mask
    slope = tf.reduce_sum(centred_t * (adjusted - mean_y[:, None]), axis=1) / tf.maximum(tf.reduce_sum(centred_t**2, axis=1), 1e-9)
    slope = tf.where(count >= 3.0, slope, tf.zeros_like(slope))

    # SES for every α of the grid at once: [batch, alphas].
    alphas = tf.constant(ALPHAS)[None, :]
    level = tf.zeros_like(adjusted[:, :1]) + tf.zeros_like(alphas)
    started = tf.zeros_like(level, dtype=tf.bool)
    squared = tf.zeros_like(level)
    errors = tf.zeros_like(level)
    for step in range(length):
        y = adjusted[:, step : step + 1]
        here = known[:, step : step + 1]
        counted = tf.logical_and(here, started)
        error = y - level
        squared += tf.where(counted, error**2, tf.zeros_like(error))
        errors += tf.cast(counted, tf.float32)
        smoothed = tf.where(started, level + alphas * error, y + tf.zeros_like(level))
        level = tf.where(here, smoothed, level)
        started = tf.logical_or(started, here)
    best = tf.argmin(squared, axis=1)
    level = tf.gather(level, best, axis=1, batch_dims=1)
    alpha = tf.gather(tf.constant(ALPHAS), best)
    sigma = tf.sqrt(tf.gather(squared, best, axis=1, batch_dims=1) / tf.maximum(tf.gather(errors, best, axis=1, batch_dims=1), 1.0))

    steps = tf.range(1, horizon + 1, dtype=tf.float32)[None, :]
    decay = tf.pow(1.0 - alpha, count)[:, None]
    drift = 0.5 * slope[:, None] * (steps - 1.0 + (1.0 - decay) / alpha[:, None])
    median = level[:, None] + drift
    spread = Z_90 * sigma[:, None] * tf.sqrt(1.0 + alpha[:, None] ** 2 * (steps - 1.0))
    if factors is not None:
        future_phase = tf.math.floormod(tf.range(length, length + horizon), season)
        reseason = tf.gather(factors, future_phase, axis=1)
        median, spread = median * reseason, spread * reseason
    outputs = []
    for q in sorted(quantiles):
        z = float(_normal_quantile(q)) / Z_90
        outputs.append(median + z * spread)
    return tf.stack(outputs, axis=-1)


def seasonal_factors(values: Any, mask: Any, count: Any, season: int, length: int) -> Any:
    """[batch, season] multiplicative factors (mean 1) of a classical decomposition, or all ones for a
    series that is not seasonal by the 90 % autocorrelation test, is too short (under 2 seasons of known
    values, or a lookback under 2 seasons), or has values ≤ 0 (multiplicative factors need positives)."""
    import tensorflow as tf

    batch_ones = tf.ones_like(values[:, :1]) * tf.ones([1, season])
    if length < 2 * season + 1:
        return batch_ones
    # Centred moving average of one season (2×m for an even m), valid only where its window is known.
    weights = np.ones(season + (1 - season % 2), np.float32)
    if season % 2 == 0:
        weights[0] = weights[-1] = 0.5
    weights /= season
    kernel = tf.constant(weights[:, None, None])
    average = tf.nn.conv1d(values[:, :, None], kernel, stride=1, padding="VALID")[:, :, 0]
    full = tf.nn.conv1d(mask[:, :, None], tf.ones_like(kernel), stride=1, padding="VALID")[:, :, 0]
    offset = len(weights) // 2
    span = length - len(weights) + 1
    centre = values[:, offset : offset + span]
    valid = tf.logical_and(full > len(weights) - 0.5, average > 0)
    ratio = tf.where(valid, centre / tf.where(valid, average, tf.ones_like(average)), tf.zeros_like(average))
    phase = tf.math.floormod(tf.range(offset, offset + span), season)
    one_hot = tf.one_hot(phase, season)  # [span, season]
    totals = tf.matmul(ratio, one_hot)
    counts = tf.matmul(tf.cast(valid, tf.float32), one_hot)
    factors = tf.where(counts > 0, totals / tf.maximum(counts, 1.0), tf.ones_like(totals))
    factors = factors / tf.reduce_mean(factors, axis=1, keepdims=True)

    # Autocorrelations r_1..r_m of the known values (pairs where both are known).
    mean = tf.reduce_sum(values * mask, axis=1, keepdims=True) / tf.maximum(count[:, None], 1.0)
    deviation = (values - mean) * mask
    variance = tf.reduce_sum(deviation**2, axis=1)
    acf = [tf.reduce_sum(deviation[:, lag:] * deviation[:, :-lag], axis=1) / tf.maximum(variance, 1e-9) for lag in range(1, season + 1)]
    limit = 1.645 * tf.sqrt((1.0 + 2.0 * tf.add_n([r**2 for r in acf[:-1]])) / tf.maximum(count, 1.0))
    positive = tf.reduce_all(tf.logical_or(mask < 0.5, values > 0), axis=1)
    seasonal = tf.logical_and(tf.logical_and(tf.abs(acf[-1]) > limit, count >= 2.0 * season), positive)
    seasonal = tf.logical_and(seasonal, tf.reduce_all(factors > 0, axis=1))
    return tf.where(seasonal[:, None], factors, batch_ones)


@functools.cache
def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)
