"""End-to-end serving latency of the exported recommender over a large catalog: one user per call
through the reloaded SavedModel signature (user tower → candidate index → ranker → top-k), as served.

    .venv/bin/python benchmarks/recommendation_latency.py --items 1000000 --queries 200 --threads 2

The towers and the ranker come from a short training run on generated data; the catalog is then
replaced by ``--items`` synthetic items (clustered unit vectors, as in retrieval_latency.py), so the
model and index are the app's own code at the size the issue names. Each call sends a known user
with their history and seen items to exclude. Printed: p50/p95 ms per call for the retrieval-only and
the re-ranked module, the index kind, and the SavedModel's size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()

    import numpy as np
    import pandas as pd
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(arguments.threads)

    from retrieval_latency import clustered_catalog

    from recommendation.model import Recommender, RecommenderModule
    from solutions_core.export import load_signature, save_module
    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.strategy import make_runtime
    from solutions_core.training import Trainer, context_for

    solution = get_solution("recommendation")
    config = solution.make_config({"size": 20_000, "users": 800, "items": 600, "training": {"epochs": 2}, "ranking": {"epochs": 1}})
    context = context_for(solution, config, Settings(contracts_dir=Path(__file__).resolve().parents[1] / "data_contracts"))
    started = time.perf_counter()
    (candidate,) = solution.models.candidates(context)
    with tempfile.TemporaryDirectory() as work:
        tables = solution.data.generate(context, Path(work))
        splits = solution.data.split(context, solution.data.prepare(context, tables))
        trainer = Trainer(make_runtime("cpu", seed=0), config.training, Path(work) / "tensorboard", candidate.name)
        fitted = candidate.fit(splits, trainer)  # the towers, then the ranker, through the core's fit loop
    train, test = splits.train, splits.test
    print(f"trained the towers and the ranker on {len(train):,} interactions in {time.perf_counter() - started:.0f} s")

    # The big catalog: the trained items' features cycled, with synthetic clustered vectors.
    vectors, _ = clustered_catalog(arguments.items, fitted.item_vectors.shape[1], 1)
    repeats = -(-arguments.items // len(fitted.items))
    items = pd.concat([fitted.items] * repeats, ignore_index=True).iloc[: arguments.items].copy()
    items["item_id"] = [f"big{index:07d}" for index in range(arguments.items)]
    popularity = np.random.default_rng(0).pareto(1.2, size=arguments.items)
    big = Recommender(fitted.user_tower, fitted.item_tower, fitted.vocab, items, vectors, popularity, fitted.ranker)

    rng = np.random.default_rng(1)
    users = test.sample(min(arguments.queries, len(test)), replace=True, random_state=1).reset_index(drop=True)
    item_ids = items["item_id"].to_numpy()
    histories = [" ".join(item_ids[rng.integers(0, arguments.items, size=20)]) for _ in range(len(users))]
    features = list(config.columns.user_categorical)
    rows = []
    for name, bundle in (("retrieval only", big.without_ranker()), ("retrieval + DCN ranker", big)):
        started = time.perf_counter()
        module = RecommenderModule(bundle, config)
        build_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            path = save_module(module, Path(folder) / "model")
            size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
            signature = load_signature(path)
            timings = []
            for index in range(len(users)):
                request = {
                    "user_id": tf.constant([str(users.loc[index, "user_id"])]),
                    "history": tf.constant([histories[index]]),
                    "exclude": tf.constant([histories[index]]),
                    **{column: tf.constant([str(users.loc[index, column])]) for column in features},
                }
                began = time.perf_counter()
                outputs = signature(**request)
                outputs["item_ids"].numpy()
                timings.append((time.perf_counter() - began) * 1000)
        timed = np.asarray(timings[10:])  # the first calls warm up
        rows.append((name, module.index.kind, build_seconds, size_mb, np.percentile(timed, 50), np.percentile(timed, 95)))
        print(rows[-1], flush=True)

    print(f"\n{arguments.items:,} items, top-{config.top_k}, {len(users)} single-user calls, {arguments.threads} threads")
    print("| module | index | build s | SavedModel MB | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for name, kind, build, size, p50, p95 in rows:
        print(f"| {name} | {kind} | {build:.1f} | {size:.0f} | {p50:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
