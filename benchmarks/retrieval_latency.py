"""Retrieval latency (two-tower candidate index): single-query top-k over N items, exact vs ivf.

    .venv/bin/python benchmarks/retrieval_latency.py [--items 1000000] [--dim 32] [--k 100]
        [--queries 300] [--threads 2] [--clusters C] [--probe P] [--excluded E] [--sweep 20 40 60]

Synthetic catalog: unit-norm items from a mixture of Gaussian clusters with long-tail sizes (Zipf-like
weights, seeded), queries drawn near random items (so popular regions get more queries, as in traffic).
Each index is timed on batch-size-1 calls of a `tf.function` with an input signature, after warm-up,
with TF intra-op threads set from --threads. Recall@k of ivf is measured against the exact index's
answers on the same queries. The last row times the recommended kind through a SavedModel round trip
(`serve` signature), which is how it is served. Ratios are against exact, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np

P95_GOAL_MS = 20.0
RECALL_GOAL = 0.95


def clustered_catalog(items: int, dim: int, queries: int, seed: int = 0):
    """Unit-norm item embeddings from ~items/400 (2,500 at 1M) Gaussian clusters with long-tail sizes,
    and unit-norm queries drawn near random items."""
    generator = np.random.default_rng(seed)
    mixture = max(1, items // 400)
    weights = 1.0 / np.arange(1, mixture + 1) ** 0.9
    weights /= weights.sum()
    centers = generator.standard_normal((mixture, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    # Clusters differ in spread too: some tight, some diffuse.
    spread = generator.uniform(0.2, 0.6, size=mixture).astype(np.float32) / np.sqrt(dim)
    membership = generator.choice(mixture, size=items, p=weights)
    item_embeddings = centers[membership] + spread[membership, None] * generator.standard_normal(
        (items, dim), dtype=np.float32
    )
    item_embeddings /= np.linalg.norm(item_embeddings, axis=1, keepdims=True)
    anchors = item_embeddings[generator.choice(items, size=queries)]
    noise = generator.standard_normal((queries, dim), dtype=np.float32)
    query_embeddings = anchors + (0.3 / np.sqrt(dim)) * noise
    query_embeddings /= np.linalg.norm(query_embeddings, axis=1, keepdims=True)
    return item_embeddings.astype(np.float32), query_embeddings.astype(np.float32)


def excluded_rows(items: int, queries: int, count: int, seed: int = 1) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return generator.integers(0, items, size=(queries, count), dtype=np.int64)


def timed_search(search, query_embeddings, excluded, warmup: int = 20):
    """Runs `search` one query at a time; returns (ms per call [Q], indices [Q, k])."""
    import tensorflow as tf

    queries = [tf.constant(query_embeddings[i : i + 1]) for i in range(len(query_embeddings))]
    exclusions = [tf.constant(excluded[i : i + 1]) for i in range(len(excluded))]
    for i in range(min(warmup, len(queries))):
        search(queries[i], exclusions[i])
    milliseconds, results = [], []
    for query, exclusion in zip(queries, exclusions):
        start = time.perf_counter()
        _, indices = search(query, exclusion)
        indices = indices.numpy()
        milliseconds.append((time.perf_counter() - start) * 1000.0)
        results.append(indices[0])
    return np.array(milliseconds), np.stack(results)


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    hits = [len(np.intersect1d(row[row >= 0], truth[truth >= 0])) / max(1, (truth >= 0).sum())
            for row, truth in zip(found, reference)]
    return float(np.mean(hits))


def search_signature(dim: int):
    import tensorflow as tf

    return [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None, None], tf.int64)]


def compiled_search(index, dim: int, k: int):
    import tensorflow as tf

    @tf.function(input_signature=search_signature(dim))
    def search(queries, excluded):
        return index.search(queries, k, excluded)

    return search


def float16_exact_search(item_embeddings: np.ndarray, k: int):
    """Exact with half-size item storage: upcast per call (CPU has no fast float16 matmul)."""
    import tensorflow as tf

    module = tf.Module()
    module.items = tf.Variable(item_embeddings.astype(np.float16), trainable=False)
    dim = item_embeddings.shape[1]

    @tf.function(input_signature=search_signature(dim))
    def search(queries, excluded):
        scores = tf.matmul(queries, tf.cast(module.items, tf.float32), transpose_b=True)
        top_scores, top_ids = tf.math.top_k(scores, k=k)
        return top_scores, tf.cast(top_ids, tf.int64)

    return search


def saved_model_search(index, dim: int, k: int, directory: Path):
    """Saves a tiny module wrapping `index` with a `serve` signature, reloads it, returns its search."""
    import tensorflow as tf

    class Server(tf.Module):
        def __init__(self, index):
            super().__init__()
            self.index = index

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="queries")])
        def serve(self, queries):
            excluded = tf.zeros([tf.shape(queries)[0], 0], tf.int64)
            scores, indices = self.index.search(queries, k, excluded)
            return {"scores": scores, "indices": indices}

    server = Server(index)
    tf.saved_model.save(server, str(directory), signatures={"serve": server.serve})
    serve = tf.saved_model.load(str(directory)).signatures["serve"]

    def search(queries, excluded):
        outputs = serve(queries=queries)
        return outputs["scores"], outputs["indices"]

    return search


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clusters", type=int, default=None, help="ivf lists (default: the index's)")
    parser.add_argument("--probe", type=int, default=None,
                        help="ivf lists opened per query (default: the index's)")
    parser.add_argument("--excluded", type=int, default=0,
                        help="random excluded ids per query (not in the SavedModel row)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[],
                        help="also time ivf at these probe values")
    parser.add_argument("--float16", action="store_true", help="also time exact with float16 item storage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from recommendation.index import build_index, default_clusters

    start = time.perf_counter()
    item_embeddings, query_embeddings = clustered_catalog(args.items, args.dim, args.queries, args.seed)
    excluded = excluded_rows(args.items, args.queries, args.excluded)
    print(f"catalog: {args.items:,} items × {args.dim}, {args.queries} queries, k={args.k}, "
          f"threads={args.threads}, excluded/query={args.excluded} "
          f"({time.perf_counter() - start:.1f} s to generate)")

    rows = []  # (label, build s, ms per call, indices)

    start = time.perf_counter()
    exact = build_index(item_embeddings, "exact")
    exact_build = time.perf_counter() - start
    exact_search = compiled_search(exact, args.dim, args.k)
    exact_ms, exact_indices = timed_search(exact_search, query_embeddings, excluded)
    rows.append(("exact", exact_build, exact_ms, exact_indices))

    if args.float16 and args.excluded == 0:
        ms, indices = timed_search(float16_exact_search(item_embeddings, args.k), query_embeddings, excluded)
        rows.append(("exact float16 storage", 0.0, ms, indices))

    start = time.perf_counter()
    ivf = build_index(item_embeddings, "ivf", clusters=args.clusters, probe=args.probe, seed=args.seed)
    ivf_build = time.perf_counter() - start
    sizes = ivf.list_sizes
    requested_clusters = args.clusters or default_clusters(args.items)
    print(f"ivf: {ivf.clusters} lists, probe {ivf.probe}, list size median {int(np.median(sizes))} "
          f"max {ivf.max_list} (padded tensor {ivf.clusters}×{ivf.max_list}), built in {ivf_build:.1f} s")
    ivf_ms, ivf_indices = timed_search(compiled_search(ivf, args.dim, args.k), query_embeddings, excluded)
    rows.append((f"ivf (probe {ivf.probe})", ivf_build, ivf_ms, ivf_indices))

    chosen_probe = ivf.probe
    for probe in args.sweep:
        ivf.probe = probe  # probe is a Python int read at trace time: a fresh tf.function sees it
        ms, indices = timed_search(compiled_search(ivf, args.dim, args.k), query_embeddings, excluded)
        rows.append((f"ivf (probe {probe})", 0.0, ms, indices))
    ivf.probe = chosen_probe

    exact_p95 = np.percentile(exact_ms, 95)
    ivf_p95 = np.percentile(ivf_ms, 95)
    ivf_recall = recall(ivf_indices, exact_indices)
    ivf_ok = ivf_p95 <= P95_GOAL_MS and ivf_recall >= RECALL_GOAL
    # Exact loses no recall, so prefer it while its p95 stays under half the goal: the cores are shared
    # and a p95 that just scrapes the goal here misses it under load. Past that, ivf if it meets both.
    recommended = exact if exact_p95 <= P95_GOAL_MS / 2 or not ivf_ok else ivf

    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        search = saved_model_search(recommended, args.dim, args.k, Path(directory) / "index")
        round_trip = time.perf_counter() - start
        no_exclusions = np.full((args.queries, 0), -1, dtype=np.int64)
        ms, indices = timed_search(search, query_embeddings, no_exclusions)
        saved_reference = exact_indices if args.excluded == 0 else None
        rows.append((f"{recommended.kind} via SavedModel serve", round_trip, ms,
                     indices if saved_reference is not None else None))

    print()
    print(f"| index | build s | p50 ms | p95 ms | × exact p95 | recall@{args.k} vs exact |")
    print("|---|---|---|---|---|---|")
    for label, build_seconds, ms, indices in rows:
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        measured = "n/a" if indices is None else f"{recall(indices, exact_indices):.4f}"
        if label == "exact":
            measured = "1.0000 (definition)"
        print(f"| {label} | {build_seconds:.1f} | {p50:.2f} | {p95:.2f} | {p95 / exact_p95:.2f} "
              f"| {measured} |")
    def verdict(p95: float) -> str:
        return "meets" if p95 <= P95_GOAL_MS else "misses"

    print()
    print(f"ivf p95 / exact p95 = {ivf_p95 / exact_p95:.2f}; goal p95 ≤ {P95_GOAL_MS:g} ms"
          f" (exact {verdict(exact_p95)} it, ivf {verdict(ivf_p95)} it),"
          f" ivf recall@{args.k} {ivf_recall:.4f} (goal ≥ {RECALL_GOAL}). Recommended: {recommended.kind}"
          + (f" (clusters={requested_clusters} → {ivf.clusters} lists after splitting long ones,"
             f" probe={ivf.probe})" if recommended is ivf else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
