"""The recommender vs popularity and matrix factorization (PureSVD), on the generator and MovieLens-100K.

    .venv/bin/python benchmarks/recommendation_quality.py --data generator movielens --seeds 0 1 2

Each (data, seed) is a full `run_training` in a temporary home: leave-latest-out split, the two-tower
retriever and the DCN re-ranker (the better on validation NDCG@10 is exported), then the test split
scored through the exported SavedModel, with both baselines trained in the same run on the same history.
MovieLens-100K is read in place from the installed recbole package (config:
solutions/recommendation/configs/movielens-100k.yaml); the seed changes model initialization and
shuffling there, not the data.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MOVIELENS_CONFIG = Path(__file__).resolve().parents[1] / "solutions" / "recommendation" / "configs" / "movielens-100k.yaml"
METRICS = ("recall_at_10", "ndcg_at_10", "recall_at_100", "coverage_at_10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=["generator", "movielens"], default=["generator", "movielens"])
    parser.add_argument("--size", type=int, default=None, help="Generator interactions (default: the app's).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    arguments = parser.parse_args()

    import yaml

    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("recommendation")
    repo = Path(__file__).resolve().parents[1]
    rows = []
    for data in arguments.data:
        for seed in arguments.seeds:
            overrides = yaml.safe_load(MOVIELENS_CONFIG.read_text()) if data == "movielens" else {}
            if data == "generator" and arguments.size:
                overrides["size"] = arguments.size
            overrides["seed"] = seed
            with tempfile.TemporaryDirectory() as home:
                started = time.perf_counter()
                settings = Settings(home=home, contracts_dir=repo / "data_contracts")
                result = run_training(solution, solution.make_config(overrides), settings, verbose=0)
                rows.append(
                    {
                        "data": data,
                        "seed": seed,
                        "chosen": result.candidate,
                        "valid": {c.name: c.valid.gate_value for c in result.candidates},
                        "model": result.test.metrics,
                        **{name: evaluation.metrics for name, evaluation in result.baselines.items()},
                        "seconds": time.perf_counter() - started,
                    }
                )
            print(rows[-1], flush=True)

    header = " | ".join(f"{m} model / MF / pop" for m in METRICS)
    print(f"\n| data | seed | chosen (valid NDCG@10 of each) | {header} | s |")
    print("|---|---|---|" + "---|" * len(METRICS) + "---|")
    for row in rows:
        valid = ", ".join(f"{name} {value:.3f}" for name, value in row["valid"].items())
        cells = " | ".join(
            f"{row['model'][m]:.3f} / {row['matrix_factorization'][m]:.3f} / {row['popularity'][m]:.3f}" for m in METRICS
        )
        print(f"| {row['data']} | {row['seed']} | {row['chosen']} ({valid}) | {cells} | {row['seconds']:.0f} |")
    for data in arguments.data:
        group = [row for row in rows if row["data"] == data]
        mean = {
            source: {m: sum(row[source][m] for row in group) / len(group) for m in METRICS}
            for source in ("model", "matrix_factorization", "popularity")
        }
        cells = " | ".join(
            f"**{mean['model'][m]:.3f}** / {mean['matrix_factorization'][m]:.3f} / {mean['popularity'][m]:.3f}" for m in METRICS
        )
        ratio = mean["model"]["ndcg_at_10"] / mean["matrix_factorization"]["ndcg_at_10"]
        print(f"| {data} | mean | NDCG@10 model / MF = {ratio:.2f} | {cells} | |")


if __name__ == "__main__":
    main()
