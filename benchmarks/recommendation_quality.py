"""The recommender vs popularity, matrix factorization (PureSVD) and EASE, on the generator and MovieLens-100K.

    .venv/bin/python benchmarks/recommendation_quality.py --data generator movielens movielens-interactions-only --seeds 0 1 2

Each (data, seed) is a full `run_training` in a temporary home: leave-latest-out split, the two-tower
retriever and the DCN re-ranker (the better on validation NDCG@10 is exported), then the test split
scored through the exported SavedModel, with the baselines trained in the same run on the same history.
MovieLens-100K is read in place from the installed recbole package, with the committed configs
solutions/recommendation/configs/movielens-100k.yaml (ratings, user and movie features) and
movielens-100k-interactions-only.yaml (ratings of 4-5 as implicit positives, ids alone); the seed changes
model initialization and shuffling there, not the data. The gate column says whether the run would
publish (the model must beat the best baseline of the run on NDCG@10).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = Path(__file__).resolve().parents[1] / "solutions" / "recommendation" / "configs"
DATA = {"generator": None, "movielens": CONFIGS / "movielens-100k.yaml", "movielens-interactions-only": CONFIGS / "movielens-100k-interactions-only.yaml"}
METRICS = ("recall_at_10", "ndcg_at_10", "recall_at_100", "coverage_at_10")
BASELINES = ("ease", "matrix_factorization", "popularity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
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
            overrides = yaml.safe_load(DATA[data].read_text()) if DATA[data] else {}
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
                        "status": result.status,
                        "valid": {c.name: c.valid.gate_value for c in result.candidates},
                        "model": result.test.metrics,
                        **{name: evaluation.metrics for name, evaluation in result.baselines.items()},
                        "seconds": time.perf_counter() - started,
                    }
                )
            print(rows[-1], flush=True)

    header = " | ".join(f"{m} model / EASE / MF / pop" for m in METRICS)
    print(f"\n| data | seed | chosen (valid NDCG@10 of each) | {header} | gate | s |")
    print("|---|---|---|" + "---|" * len(METRICS) + "---|---|")
    for row in rows:
        valid = ", ".join(f"{name} {value:.3f}" for name, value in row["valid"].items())
        cells = " | ".join(" / ".join(f"{row[source][m]:.3f}" if source in row else "-" for source in ("model", *BASELINES)) for m in METRICS)
        print(f"| {row['data']} | {row['seed']} | {row['chosen']} ({valid}) | {cells} | {row['status']} | {row['seconds']:.0f} |")
    for data in arguments.data:
        group = [row for row in rows if row["data"] == data]
        sources = [source for source in ("model", *BASELINES) if all(source in row for row in group)]
        mean = {source: {m: sum(row[source][m] for row in group) / len(group) for m in METRICS} for source in sources}
        cells = " | ".join(" / ".join(f"{mean[source][m]:.3f}" for source in sources) for m in METRICS)
        best = max((source for source in sources if source != "model"), key=lambda source: mean[source]["ndcg_at_10"])
        ratio = mean["model"]["ndcg_at_10"] / mean[best]["ndcg_at_10"]
        print(f"| {data} | mean | NDCG@10 model / best baseline ({best}) = {ratio:.2f} | {cells} | | |")


if __name__ == "__main__":
    main()
