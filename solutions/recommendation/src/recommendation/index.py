"""In-graph candidate index for two-tower retrieval: top-k items by dot product, inside a `tf.function`.

`build_index(item_embeddings)` returns a `tf.Module` whose arrays are non-trainable `tf.Variable`s, so
assigning it as an attribute of the served module saves it inside the same SavedModel: the serving
signature goes from query features to item rows with no side store.

Two kinds:

* ``"exact"``: one matmul against every item and `tf.math.top_k`. Always right, cost linear in N.
* ``"ivf"``: an inverted file. Items are clustered with k-means (numpy, on a sample when N is large);
  a query scores the centroids, opens the `probe` best clusters and scores only their items.
  Approximate: an item in a cluster that was not opened cannot come back.

``"auto"`` picks exact up to `exact_limit` items and ivf above it.

`search(queries, k, excluded)` contract, for both kinds:

* `queries` float32 [B, D], `k` a Python int (it sets static output shapes), `excluded` int64 [B, E]
  item rows never to return, padded with -1 (E may be 0; ids outside [0, N) are ignored).
* Returns `(scores [B, k] float32, indices [B, k] int64)`, best first.
* Only real, non-excluded items come back. When fewer than k of them are reachable (ivf opened small
  clusters, or exclusions ate the catalog) the remaining slots hold index -1 and score -inf: callers
  drop them with `indices >= 0`.

This module imports TensorFlow only inside functions, so the package imports without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

KINDS = ("auto", "exact", "ivf")

# k-means on this many points per cluster is enough to place centroids; assigning all N items to the
# nearest centroid afterwards is a single cheap pass.
SAMPLE_POINTS_PER_CLUSTER = 32
# Rows per block when computing distances to every centroid: bounds the [rows, clusters] buffer.
ASSIGN_BLOCK_ROWS = 8192


def default_clusters(size: int) -> int:
    """About 4·sqrt(N) lists, at least ~16 items per list, at most 65,536 lists."""
    clusters = int(round(4 * math.sqrt(size)))
    return max(1, min(clusters, size // 16 if size >= 16 else 1, 65_536))


def default_probe(clusters: int) -> int:
    """Open ~1.5% of the lists, never fewer than 16 (nor more than all of them).

    Measured on clustered synthetic data (benchmarks/retrieval_latency.py): recall@100 vs exact 0.98 at
    1M items (4,000 k-means lists, probe 60; probe 30 gave 0.94). The floor of 16 keeps recall@10 ≥ 0.9
    on small catalogs (8 gave 0.91 at 2,000 items); those are better served exactly ("auto" does).
    """
    return int(min(clusters, max(16, math.ceil(clusters * 0.015))))


def _check_embeddings(item_embeddings) -> np.ndarray:
    if not isinstance(item_embeddings, np.ndarray):
        raise ValueError(f"item_embeddings must be a numpy array, got {type(item_embeddings).__name__}")
    if item_embeddings.ndim != 2:
        raise ValueError(f"item_embeddings must be 2-D [items, dim], got shape {item_embeddings.shape}")
    if item_embeddings.dtype != np.float32:
        raise ValueError(
            f"item_embeddings must be float32, got {item_embeddings.dtype} (use .astype(np.float32))"
        )
    if item_embeddings.shape[0] == 0 or item_embeddings.shape[1] == 0:
        raise ValueError(f"item_embeddings is empty: shape {item_embeddings.shape}; the catalog needs items")
    if not np.isfinite(item_embeddings).all():
        raise ValueError("item_embeddings contains NaN or inf")
    return np.ascontiguousarray(item_embeddings)


def _check_k(k, size: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a Python int, got {type(k).__name__}")
    if not 1 <= k <= size:
        raise ValueError(f"k must be in [1, {size}] (the catalog size), got {k}")
    return int(k)


def exact_top_k(item_embeddings: np.ndarray, queries: np.ndarray, k: int, excluded=None):
    """Reference top-k by dot product in numpy: `(scores [B, k] float32, indices [B, k] int64)`.

    Same contract as `search`: `excluded` rows (padded with -1) never come back; slots that no item can
    fill hold index -1 and score -inf.
    """
    item_embeddings = _check_embeddings(item_embeddings)
    size = item_embeddings.shape[0]
    k = _check_k(k, size)
    queries = np.asarray(queries, dtype=np.float32)
    scores = queries @ item_embeddings.T
    if excluded is not None:
        excluded = np.asarray(excluded, dtype=np.int64)
        rows, columns = np.nonzero((excluded >= 0) & (excluded < size))
        scores[rows, excluded[rows, columns]] = -np.inf
    # Stable sort on (-score, index) so ties resolve the same way every time.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    indices = np.where(np.isneginf(top_scores), -1, order).astype(np.int64)
    return top_scores, indices


def kmeans(
    points: np.ndarray, clusters: int, *, iterations: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on a sample of `points`; returns `(centroids [C, D], assignment of all points [N])`.

    Initialised from random distinct points (k-means++ costs as much as several Lloyd steps at 1M).
    Empty clusters are re-seeded from random points.
    """
    generator = np.random.default_rng(seed)
    size = points.shape[0]
    sample_size = min(size, max(clusters * SAMPLE_POINTS_PER_CLUSTER, 10_000))
    sample = points[np.sort(generator.choice(size, sample_size, replace=False))]
    centroids = sample[generator.choice(sample_size, clusters, replace=False)].copy()
    for _ in range(iterations):
        assignment = nearest_centroid(sample, centroids)
        counts = np.bincount(assignment, minlength=clusters)
        # bincount per dimension is several times faster than np.add.at for the per-cluster sums.
        sums = np.stack(
            [
                np.bincount(assignment, weights=sample[:, column], minlength=clusters)
                for column in range(sample.shape[1])
            ],
            axis=1,
        )
        empty = counts == 0
        means = sums / np.maximum(counts, 1)[:, None]
        centroids = np.where(empty[:, None], centroids, means).astype(np.float32)
        if empty.any():
            centroids[empty] = sample[generator.choice(sample_size, int(empty.sum()), replace=False)]
    return centroids.astype(np.float32), nearest_centroid(points, centroids)


def nearest_centroid(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) for every point, in blocks."""
    # argmin ||x - c||² = argmax (x·c - ||c||²/2). Appending a constant 1 to each point and -||c||²/2 to
    # each centroid makes that a single matmul into a reused buffer: a separate subtraction and fresh
    # [rows, C] allocations per block cost more than the matmul itself.
    clusters, dimension = centroids.shape
    augmented = np.empty((dimension + 1, clusters), dtype=np.float32)
    augmented[:dimension] = centroids.T
    augmented[dimension] = -0.5 * np.einsum("cd,cd->c", centroids, centroids)
    rows = min(ASSIGN_BLOCK_ROWS, points.shape[0])
    block = np.ones((rows, dimension + 1), dtype=np.float32)
    scores = np.empty((rows, clusters), dtype=np.float32)
    assignment = np.empty(points.shape[0], dtype=np.int64)
    for start in range(0, points.shape[0], rows):
        count = min(rows, points.shape[0] - start)
        block[:count, :dimension] = points[start : start + count]
        np.matmul(block[:count], augmented, out=scores[:count])
        assignment[start : start + count] = scores[:count].argmax(axis=1)
    return assignment


def split_large_lists(
    points: np.ndarray, centroids: np.ndarray, assignment: np.ndarray, max_list: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Splits every list longer than `max_list` with a small k-means on its members.

    The index pads all lists to the longest one and a query scans `probe × max_list` slots, so one
    oversized list (k-means on long-tail data makes a few) would multiply the cost of every query.
    """
    centroids, assignment = list(centroids), assignment.copy()
    counts = np.bincount(assignment, minlength=len(centroids))
    target = max(1, max_list // 2)
    for cluster in np.flatnonzero(counts > max_list):
        members = np.flatnonzero(assignment == cluster)
        parts = math.ceil(len(members) / target)
        part_centroids, part_assignment = kmeans(points[members], parts, iterations=5, seed=seed)
        part_counts = np.bincount(part_assignment, minlength=parts)
        if part_counts.max() > max_list:
            # k-means left a part too long (near-duplicate points): fall back to even chunks that share
            # the part's centroid; all chunks of a part score the same and get opened together.
            part_assignment = np.arange(len(members)) * parts // len(members)
            part_centroids = np.repeat(points[members].mean(axis=0, keepdims=True), parts, axis=0)
        new_ids = [cluster] + list(range(len(centroids), len(centroids) + parts - 1))
        centroids[cluster] = part_centroids[0]
        centroids.extend(part_centroids[1:])
        assignment[members] = np.asarray(new_ids)[part_assignment]
    return np.asarray(centroids, dtype=np.float32), assignment


def build_index(
    item_embeddings: np.ndarray,
    kind: str = "auto",
    *,
    clusters: int | None = None,
    probe: int | None = None,
    exact_limit: int = 200_000,
    seed: int = 0,
    iterations: int = 10,
) -> "tf.Module":
    """Builds an exact or ivf index over `item_embeddings` (float32 [N, D]); see the module docstring."""
    item_embeddings = _check_embeddings(item_embeddings)
    size = item_embeddings.shape[0]
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "exact" if size <= exact_limit else "ivf"
    if kind == "exact":
        if clusters is not None or probe is not None:
            raise ValueError("clusters and probe only apply to kind='ivf'")
        return _exact_index_class()(item_embeddings)

    clusters = default_clusters(size) if clusters is None else clusters
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or not 1 <= clusters <= size:
        raise ValueError(f"clusters must be an int in [1, {size}] (the catalog size), got {clusters!r}")
    probe = default_probe(clusters) if probe is None else probe
    if isinstance(probe, bool) or not isinstance(probe, (int, np.integer)) or not 1 <= probe <= clusters:
        raise ValueError(f"probe must be an int in [1, clusters={clusters}], got {probe!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")

    centroids, assignment = kmeans(item_embeddings, int(clusters), iterations=iterations, seed=seed)
    # Lists longer than twice the mean get split, so a query scans at most probe × 2 × N/clusters slots.
    centroids, assignment = split_large_lists(
        item_embeddings, centroids, assignment, max_list=max(2, 2 * math.ceil(size / clusters)), seed=seed
    )
    return _ivf_index_class()(item_embeddings, centroids, assignment, int(probe))


def _sorted_exclusions(excluded, size, stored_rows):
    """Each row of `excluded` as stored rows (via `stored_rows`, caller row → stored row), sorted.

    Pads and ids outside [0, size) become -1, and a -1 column is prepended so that `tf.searchsorted`
    stays valid when E is 0. Candidates are never -1 once pads are masked, so -1 matches nothing real.
    """
    import tensorflow as tf

    excluded = tf.cast(excluded, tf.int64)
    real = (excluded >= 0) & (excluded < size)
    excluded = tf.where(real, tf.gather(stored_rows, tf.where(real, excluded, 0)), tf.constant(-1, tf.int64))
    pad = tf.fill([tf.shape(excluded)[0], 1], tf.constant(-1, tf.int64))
    return tf.sort(tf.concat([pad, excluded], axis=1), axis=1)


def _is_excluded(sorted_excluded, candidates):
    """[B, M] bool: candidate appears in its row of `sorted_excluded` (O(M log E), no [B, M, E] tensor)."""
    import tensorflow as tf

    width = tf.shape(sorted_excluded, out_type=tf.int64)[1]
    position = tf.minimum(tf.searchsorted(sorted_excluded, candidates, out_type=tf.int64), width - 1)
    return tf.equal(tf.gather(sorted_excluded, position, batch_dims=1), candidates)


def _top_k_or_fill(scores, k, ids):
    """top_k over `scores` [B, M] (masked entries already -inf) mapped to `ids`, with -1/-inf fill.

    If M < k the columns are padded with -inf first: top_k needs at least k columns.
    """
    import tensorflow as tf

    columns = scores.shape[1]
    if columns is not None and columns < k:
        batch = tf.shape(scores)[0]
        scores = tf.concat([scores, tf.fill([batch, k - columns], -math.inf)], axis=1)
        ids = tf.concat([ids, tf.fill([batch, k - columns], tf.constant(-1, ids.dtype))], axis=1)
    top_scores, top_positions = tf.math.top_k(scores, k=k, sorted=True)
    top_ids = tf.gather(ids, top_positions, batch_dims=1)
    # A -inf score is a pad, an excluded item or filler: never hand it out as a real item.
    top_ids = tf.where(tf.math.is_inf(top_scores), tf.constant(-1, ids.dtype), top_ids)
    return top_scores, tf.cast(top_ids, tf.int64)


def _check_search_inputs(queries, k, excluded, size, dimension):
    import tensorflow as tf

    k = _check_k(k, size)
    queries = tf.convert_to_tensor(queries)
    if queries.dtype != tf.float32:
        raise ValueError(f"queries must be float32, got {queries.dtype.name}")
    if queries.shape.rank != 2 or queries.shape[1] not in (None, dimension):
        raise ValueError(f"queries must be [batch, {dimension}], got shape {queries.shape}")
    if excluded is None:
        excluded = tf.zeros([tf.shape(queries)[0], 0], tf.int64)
    excluded = tf.convert_to_tensor(excluded)
    if not excluded.dtype.is_integer or excluded.shape.rank != 2:
        raise ValueError(
            f"excluded must be an int64 [batch, E] tensor, got {excluded.dtype.name} {excluded.shape}"
        )
    return queries, k, excluded


def _exact_index_class():
    import tensorflow as tf

    class ExactIndex(tf.Module):
        """Brute force: scores every item; exclusions are scattered to -inf before top_k."""

        kind = "exact"

        def __init__(self, item_embeddings: np.ndarray):
            super().__init__(name="exact_index")
            self.size = int(item_embeddings.shape[0])
            self.dimension = int(item_embeddings.shape[1])
            self.item_embeddings = tf.Variable(item_embeddings, trainable=False, name="item_embeddings")

        def search(self, queries, k: int, excluded=None):
            queries, k, excluded = _check_search_inputs(queries, k, excluded, self.size, self.dimension)
            scores = tf.matmul(queries, self.item_embeddings, transpose_b=True)
            excluded = tf.cast(excluded, tf.int64)
            # (row, item) pairs of the real exclusions; pads and ids outside the catalog are dropped
            # because scatter would fail on them.
            valid = tf.where((excluded >= 0) & (excluded < self.size))
            pairs = tf.stack([valid[:, 0], tf.gather_nd(excluded, valid)], axis=1)
            scores = tf.tensor_scatter_nd_update(
                scores, pairs, tf.fill([tf.shape(pairs)[0]], tf.constant(-math.inf, tf.float32))
            )
            top_scores, top_ids = tf.math.top_k(scores, k=k, sorted=True)
            top_ids = tf.where(tf.math.is_inf(top_scores), -1, top_ids)
            return top_scores, tf.cast(top_ids, tf.int64)

    return ExactIndex


def _ivf_index_class():
    import tensorflow as tf

    class IVFIndex(tf.Module):
        """Inverted file over k-means lists.

        Items are stored sorted by list, so one list is a contiguous block of rows (cache-friendly
        gathers); `item_ids` maps a stored row back to the caller's row, `item_positions` the reverse.
        `lists` is [clusters, max_list] of stored rows, padded with -1. `clusters` counts the lists after
        splitting the long ones, so it can exceed the `clusters` asked of `build_index`. `probe` is read
        when `search` is traced: change it before building a new `tf.function`, not after.
        """

        kind = "ivf"

        def __init__(self, item_embeddings, centroids, assignment, probe: int):
            super().__init__(name="ivf_index")
            self.size = int(item_embeddings.shape[0])
            self.dimension = int(item_embeddings.shape[1])
            self.clusters = int(centroids.shape[0])
            self.probe = probe
            order = np.argsort(assignment, kind="stable")
            counts = np.bincount(assignment, minlength=self.clusters)
            self.max_list = int(counts.max())
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            slots = np.arange(self.max_list)
            lists = np.where(slots < counts[:, None], starts[:, None] + slots, -1).astype(np.int64)
            # caller row → stored row, to translate `excluded` without touching every candidate.
            positions = np.empty(self.size, dtype=np.int64)
            positions[order] = np.arange(self.size)

            self.centroids = tf.Variable(centroids, trainable=False, name="centroids")
            self.item_embeddings = tf.Variable(
                item_embeddings[order], trainable=False, name="item_embeddings"
            )
            self.item_ids = tf.Variable(order.astype(np.int64), trainable=False, name="item_ids")
            self.item_positions = tf.Variable(positions, trainable=False, name="item_positions")
            self.lists = tf.Variable(lists, trainable=False, name="lists")
            self.list_sizes = counts

        def search(self, queries, k: int, excluded=None):
            queries, k, excluded = _check_search_inputs(queries, k, excluded, self.size, self.dimension)
            batch = tf.shape(queries)[0]
            centroid_scores = tf.matmul(queries, self.centroids, transpose_b=True)
            _, opened = tf.math.top_k(centroid_scores, k=self.probe, sorted=False)
            # [B, probe × max_list] stored rows; pads (-1) are scored against row 0, then masked.
            candidates = tf.reshape(tf.gather(self.lists, opened), [batch, self.probe * self.max_list])
            is_pad = candidates < 0
            vectors = tf.gather(self.item_embeddings, tf.maximum(candidates, 0))
            scores = tf.einsum("bd,bmd->bm", queries, vectors)

            # Exclusions arrive as caller rows and candidates are stored rows: compare in stored rows.
            sorted_excluded = _sorted_exclusions(excluded, self.size, self.item_positions)
            drop = is_pad | _is_excluded(sorted_excluded, candidates)
            scores = tf.where(drop, tf.constant(-math.inf, tf.float32), scores)
            top_scores, top_positions = _top_k_or_fill(scores, k, candidates)
            top_ids = tf.where(top_positions >= 0, tf.gather(self.item_ids, tf.maximum(top_positions, 0)), -1)
            return top_scores, top_ids

    return IVFIndex
