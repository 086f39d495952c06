"""The global forecaster vs seasonal naive on the last horizon of every series (issue 5, in progress:
before the app joins the core's pipeline, this measures the model on its own).

    .venv/bin/python benchmarks/forecast_quality.py --data generator tourism:M --epochs 20

For competition data the last horizon is the official test set (Tourism monthly: 24 months, 366
series; its published seasonal-naive MASE is 1.63, which this script reproduces). Statistical
baselines (ETS/Theta via statsforecast) join when the app is wired into the pipeline.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["generator", "tourism:M"], help="generator, tourism:Y|Q|M, m1:Y|Q|M")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    from demand_forecasting import model as forecaster
    from demand_forecasting.config import SEASON, ForecastConfig
    from demand_forecasting.data import load_tables
    from demand_forecasting.evaluate import evaluate_forecasts, seasonal_naive_forecast
    from demand_forecasting.generate import generate_sales

    rows = []
    for source in arguments.data:
        started = time.perf_counter()
        if source == "generator":
            tables, frequency = generate_sales(stores=10, products=50, days=730, seed=arguments.seed), "D"
        else:
            tables, frequency = load_tables(source), source.partition(":")[2] or "M"
        sales, series = tables["demand_sales"], tables["demand_series"]
        config = ForecastConfig(seed=arguments.seed, training={"epochs": arguments.epochs, "batch_size": 256, "learning_rate": 2e-3, "early_stopping_patience": 3})
        data = forecaster.series_arrays(sales, series, config.static_columns)
        official = int(series["horizon"].dropna().iloc[0]) if series["horizon"].notna().any() else None
        _, horizon = forecaster.choose_lengths(config, frequency, official)
        end = data.length - horizon  # the last horizon of each series is the test
        model, lookback, horizon = forecaster.fit(data, end, config, frequency, official)
        predicted = forecaster.forecast(model, data, end, lookback, horizon)
        season = SEASON[frequency]
        history = {s: data.quantity[i, : end[i]] for i, s in enumerate(data.ids)}
        actual = {s: data.quantity[i, end[i] : end[i] + horizon] for i, s in enumerate(data.ids)}
        levels = sorted(config.quantiles)
        ours = {s: {q: predicted[i, :, j] for j, q in enumerate(levels)} for i, s in enumerate(data.ids)}
        naive = {s: {0.5: seasonal_naive_forecast(history[s], horizon, season)} for s in data.ids}
        _, model_totals = evaluate_forecasts(history, actual, ours, season)
        _, naive_totals = evaluate_forecasts(history, actual, naive, season)
        rows.append((source, len(data.ids), horizon, lookback, model_totals, naive_totals, time.perf_counter() - started))
        print(rows[-1], flush=True)

    print("\n| data | series | horizon | MASE model / seasonal naive | weighted MASE model / s. naive | sMAPE model / s. naive | P10–P90 coverage | s |")
    print("|---|---|---|---|---|---|---|---|")
    for source, count, horizon, _, ours, naive, seconds in rows:
        print(
            f"| {source} | {count} | {horizon} | {ours['mase']:.3f} / {naive['mase']:.3f} | {ours['weighted_mase']:.3f} / "
            f"{naive['weighted_mase']:.3f} | {ours['smape']:.1f} / {naive['smape']:.1f} | {ours['coverage_p10_p90']:.3f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
