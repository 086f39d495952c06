"""Fraud champion vs the baselines on the generator's time-split holdout, over several seeds.

    .venv/bin/python benchmarks/fraud_quality.py --size 200000 --seeds 0 1 2

Each seed is a full `run_training` (new data, new models) in a temporary home; the table shows the
chosen candidate's test AUPRC next to the HistGradientBoosting and logistic-regression baselines
trained in the same run, and the ratio champion / HistGradientBoosting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    arguments = parser.parse_args()

    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("fraud_detection")
    rows = []
    for seed in arguments.seeds:
        with tempfile.TemporaryDirectory() as home:
            started = time.perf_counter()
            config = solution.make_config({"size": arguments.size, "seed": seed})
            result = run_training(solution, config, Settings(home=home), verbose=0)
            candidates = {c.name: c.valid.gate_value for c in result.candidates}
            rows.append(
                {
                    "seed": seed,
                    "chosen": result.candidate,
                    "valid": candidates,
                    "test_auprc": result.test.metrics["auprc"],
                    "hgb_auprc": result.baselines["hist_gradient_boosting"].metrics["auprc"],
                    "logreg_auprc": result.baselines["logistic_regression"].metrics["auprc"],
                    "test_frauds": int(round(result.test.metrics["fraud_rate"] * config.size * config.test_fraction)),
                    "seconds": time.perf_counter() - started,
                }
            )
            print(rows[-1], flush=True)
    print(f"\nsize={arguments.size:,}")
    print("| seed | chosen (valid AUPRC of each) | champion test AUPRC | HistGB | LogReg | champion / HistGB | s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        valid = ", ".join(f"{name} {value:.3f}" for name, value in row["valid"].items())
        print(
            f"| {row['seed']} | {row['chosen']} ({valid}) | {row['test_auprc']:.3f} | {row['hgb_auprc']:.3f} | "
            f"{row['logreg_auprc']:.3f} | {row['test_auprc'] / row['hgb_auprc']:.3f} | {row['seconds']:.0f} |"
        )
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    print(f"| mean | | {mean('test_auprc'):.3f} | {mean('hgb_auprc'):.3f} | {mean('logreg_auprc'):.3f} | "
          f"{mean('test_auprc') / mean('hgb_auprc'):.3f} | |")


if __name__ == "__main__":
    main()
