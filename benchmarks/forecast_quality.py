"""The demand-forecasting pipeline end to end (rolling-origin backtest, global model vs seasonal naive,
ETS and Theta trained in the same run), one row per data set and seed.

    .venv/bin/python benchmarks/forecast_quality.py --data generator --seeds 0 1 2
    .venv/bin/python benchmarks/forecast_quality.py --data tourism:M --seeds 0 1 2 --ensemble 3

``generator``: the embedded retail data (500 daily series, 28-day horizon, 3 test origins 14 days
apart). ``tourism:M``: the Tourism competition's 366 monthly series with the official 24-month test
(published seasonal-naive MASE 1.63, ETS 1.53 [Athanasopoulos et al. 2011]). Each run is a fresh
home, so every run trains, scores and publishes from scratch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["generator", "tourism:M"], help="generator, tourism:Y|Q|M, m1:Y|Q|M, or a folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--baselines", nargs="+", default=["seasonal_naive", "ets", "theta"])
    parser.add_argument("--ensemble", type=int, default=None, help="ensemble_members (default: the app's, 1)")
    arguments = parser.parse_args()

    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("demand_forecasting")
    rows = []
    for source in arguments.data:
        for seed in arguments.seeds:
            overrides = {"seed": seed, "baselines": arguments.baselines}
            if arguments.ensemble:
                overrides["ensemble_members"] = arguments.ensemble
            if source != "generator":
                overrides["source"] = source
            config = solution.make_config(overrides)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as home:
                result = run_training(solution, config, Settings(home=Path(home)), verbose=0, report=lambda m: print("  " + m, flush=True))
            seconds = time.perf_counter() - started
            rows.append((source, seed, result.test.metrics, {n: e.metrics for n, e in result.baselines.items()}, seconds))
            print(rows[-1][:3], flush=True)

    names = arguments.baselines
    print("\n| data | seed | windows | MASE: model / " + " / ".join(names) + " | weighted MASE: model / " + " / ".join(names)
          + " | sMAPE model | P10–P90 coverage model" + (" / ets" if "ets" in names else "") + " | s |")
    print("|---|---|---|---|---|---|---|---|")
    for source, seed, model, baselines, seconds in rows:
        mase = " / ".join(f"{baselines[n]['mase']:.3f}" for n in names)
        weighted = " / ".join(f"{baselines[n].get('weighted_mase', float('nan')):.3f}" for n in names)
        coverage = f"{model['coverage_p10_p90']:.2f}" + (f" / {baselines['ets']['coverage_p10_p90']:.2f}" if "ets" in names else "")
        print(f"| {source} | {seed} | {model['windows']:.0f} | **{model['mase']:.3f}** / {mase} | **{model['weighted_mase']:.3f}** / {weighted} "
              f"| {model['smape']:.1f} | {coverage} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
