"""Pictures of a backtest: fan charts of sample series and the metrics of the model next to the baselines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fan_charts(
    examples: pd.DataFrame,
    quantiles: Mapping[float, np.ndarray],
    baselines: Mapping[str, Mapping[float, np.ndarray]],
    path: Path,
    *,
    count: int = 6,
    seed: int = 0,
) -> Path:
    """For a few windows (the biggest series and random others): the history, the P10–P90 band and
    median, each baseline's median, and what actually happened."""
    plt = _pyplot()
    volume = examples["volume"].to_numpy()
    order = list(np.argsort(-volume)[: count // 2])
    rest = [index for index in np.random.default_rng(seed).permutation(len(examples)) if index not in order]
    chosen = (order + rest)[: min(count, len(examples))]
    columns = 3
    rows = max(1, -(-len(chosen) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows), squeeze=False)
    levels = sorted(quantiles)
    for axis, index in zip(axes.flat, chosen):
        row = examples.iloc[index]
        history = np.asarray(row["history"], dtype=float)
        actual = np.where(np.asarray(row["weight"]) > 0, np.asarray(row["actual"], dtype=float), np.nan)
        past = np.arange(-len(history), 0)
        future = np.arange(len(actual))
        axis.plot(past, history, color="0.3", linewidth=1, label="history")
        axis.plot(future, actual, color="black", linewidth=1.2, label="actual")
        if len(levels) >= 3:
            axis.fill_between(future, quantiles[levels[0]][index], quantiles[levels[-1]][index], alpha=0.3, color="tab:blue",
                              label=f"P{round(levels[0] * 100)}–P{round(levels[-1] * 100)}")
        axis.plot(future, quantiles[0.5][index], color="tab:blue", label="model P50")
        colors = iter(["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"] * 4)
        for name, forecast in baselines.items():
            if 0.5 in forecast:
                axis.plot(future, np.asarray(forecast[0.5])[index], linestyle="--", linewidth=0.9, label=name, color=next(colors))
        axis.axvline(-0.5, color="0.6", linewidth=0.8)
        axis.set_title(f"{row['series_id']} from {pd.Timestamp(row['origin']).date()}", fontsize=9)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(chosen):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_metric_bars(totals: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """MASE, weighted MASE and sMAPE of the model and every baseline (lower is better)."""
    plt = _pyplot()
    metrics = ["mase", "weighted_mase", "smape"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    names = list(totals)
    for axis, metric in zip(axes, metrics):
        values = [totals[name].get(metric, np.nan) for name in names]
        axis.bar(range(len(names)), values, color=["tab:blue" if name == "model" else "0.6" for name in names])
        axis.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        axis.set_title(f"{metric} (lower is better)", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
