"""The in-graph candidate index (recommendation.index): exact and ivf search, exclusions, fill, SavedModel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommendation.index import build_index, exact_top_k

tf = pytest.importorskip("tensorflow")

ITEMS = 2_000
DIMENSION = 16


def clustered(items: int, queries: int, seed: int = 0):
    """Unit-norm items around 40 centers of uneven sizes, and unit-norm queries near random items."""
    generator = np.random.default_rng(seed)
    centers = generator.standard_normal((40, DIMENSION))
    weights = 1.0 / np.arange(1, 41)
    membership = generator.choice(40, size=items, p=weights / weights.sum())
    item_embeddings = centers[membership] + 0.4 * generator.standard_normal((items, DIMENSION))
    item_embeddings /= np.linalg.norm(item_embeddings, axis=1, keepdims=True)
    query_embeddings = item_embeddings[generator.choice(items, queries)] + 0.1 * generator.standard_normal(
        (queries, DIMENSION)
    )
    query_embeddings /= np.linalg.norm(query_embeddings, axis=1, keepdims=True)
    return item_embeddings.astype(np.float32), query_embeddings.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered(ITEMS, 32)


@pytest.fixture(scope="module")
def exact(data):
    return build_index(data[0], "exact")


@pytest.fixture(scope="module")
def ivf(data):
    return build_index(data[0], "ivf")


def no_exclusions(batch: int) -> np.ndarray:
    return np.zeros((batch, 0), dtype=np.int64)


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(found, reference)]))


def test_exact_matches_numpy_reference(data, exact):
    item_embeddings, queries = data
    scores, indices = exact.search(queries, 10, no_exclusions(len(queries)))
    expected_scores, expected_indices = exact_top_k(item_embeddings, queries, 10)
    assert exact.kind == "exact" and exact.size == ITEMS
    assert scores.dtype == tf.float32 and indices.dtype == tf.int64
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-5, atol=1e-5)


def test_auto_picks_exact_under_the_limit_and_ivf_above(data):
    assert build_index(data[0], "auto").kind == "exact"
    assert build_index(data[0], "auto", exact_limit=ITEMS - 1).kind == "ivf"


def test_ivf_default_probe_recall_at_10(data, exact, ivf):
    _, queries = data
    # Only meaningful if ivf really skips lists.
    assert ivf.kind == "ivf" and ivf.probe < ivf.clusters
    _, expected = exact.search(queries, 10, no_exclusions(len(queries)))
    scores, found = ivf.search(queries, 10, no_exclusions(len(queries)))
    assert recall(found.numpy(), expected.numpy()) >= 0.9
    # Best first, and every score is the real dot product of the returned item.
    assert np.all(np.diff(scores.numpy(), axis=1) <= 0)
    np.testing.assert_allclose(
        scores.numpy(), np.einsum("bd,bkd->bk", queries, data[0][found.numpy()]), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_excluded_items_never_come_back(data, exact, ivf, kind):
    item_embeddings, queries = data
    index = exact if kind == "exact" else ivf
    _, best = exact.search(queries, 5, no_exclusions(len(queries)))
    # The 5 best items of every query, plus pads and an out-of-catalog id that must be ignored.
    excluded = np.concatenate(
        [best.numpy(), np.full((len(queries), 2), -1), np.full((len(queries), 1), ITEMS + 7)], axis=1
    ).astype(np.int64)
    _, indices = index.search(queries, 10, excluded)
    indices = indices.numpy()
    for row, banned in zip(indices, excluded):
        assert not set(row.tolist()) & set(banned.tolist())
    assert (indices >= 0).all()
    if kind == "exact":
        np.testing.assert_array_equal(indices, exact_top_k(item_embeddings, queries, 10, excluded)[1])


def test_ivf_pads_never_come_back_and_short_results_are_filled(data):
    item_embeddings, queries = data
    index = build_index(item_embeddings, "ivf", clusters=50, probe=1)
    k = index.max_list + 20  # more than one opened list can hold
    scores, indices = index.search(queries, k, no_exclusions(len(queries)))
    scores, indices = scores.numpy(), indices.numpy()
    assert scores.shape == indices.shape == (len(queries), k)
    for row_scores, row in zip(scores, indices):
        real = row >= 0
        assert real.sum() <= index.max_list and (~real).sum() >= 20
        assert len(set(row[real].tolist())) == real.sum()  # no duplicates, hence no repeated pad slot
        assert (row[~real] == -1).all() and np.isneginf(row_scores[~real]).all()
        assert np.isfinite(row_scores[real]).all() and real[: real.sum()].all()  # fill only at the end


def test_exact_fills_when_exclusions_leave_fewer_than_k():
    item_embeddings, _ = clustered(6, 1, seed=3)
    index = build_index(item_embeddings, "exact")
    scores, indices = index.search(item_embeddings[:1], 5, np.array([[0, 1, 2, -1]], dtype=np.int64))
    assert sorted(indices.numpy()[0, :3].tolist()) == [3, 4, 5]
    assert indices.numpy()[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores.numpy()[0, 3:]).all()


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_saves_and_reloads_inside_a_module(tmp_path: Path, data, exact, ivf, kind):
    _, queries = data
    index = exact if kind == "exact" else ivf

    class Server(tf.Module):
        def __init__(self, index):
            super().__init__()
            self.index = index

        @tf.function(input_signature=[tf.TensorSpec([None, DIMENSION], tf.float32, name="queries")])
        def serve(self, queries):
            excluded = tf.fill([tf.shape(queries)[0], 1], tf.constant(0, tf.int64))
            scores, indices = self.index.search(queries, 10, excluded)
            return {"scores": scores, "indices": indices}

    server = Server(index)
    batches = (queries, queries[:1])  # two batch sizes through one signature: symbolic batch
    # Compared per batch size: batch 1 may take another matmul kernel (last-bit differences).
    before = [server.serve(tf.constant(batch)) for batch in batches]
    tf.saved_model.save(server, str(tmp_path / "model"), signatures={"serve": server.serve})
    del server
    reloaded = tf.saved_model.load(str(tmp_path / "model"))
    # Saved as variables, not folded into the graph as constants.
    assert isinstance(reloaded.index.item_embeddings, tf.Variable)
    assert reloaded.index.item_embeddings.shape == (ITEMS, DIMENSION)
    for batch, expected in zip(batches, before):
        after = reloaded.signatures["serve"](queries=tf.constant(batch))
        assert after["indices"].shape == (len(batch), 10)
        np.testing.assert_array_equal(after["indices"].numpy(), expected["indices"].numpy())
        np.testing.assert_array_equal(after["scores"].numpy(), expected["scores"].numpy())
    assert 0 not in before[0]["indices"].numpy()  # the excluded item


def test_bad_arguments_raise_value_error(data, exact, ivf):
    item_embeddings, queries = data
    with pytest.raises(ValueError, match="empty"):
        build_index(np.zeros((0, DIMENSION), np.float32))
    with pytest.raises(ValueError, match="float32"):
        build_index(item_embeddings.astype(np.float64))
    with pytest.raises(ValueError, match="2-D"):
        build_index(item_embeddings[0])
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(item_embeddings, "hnsw")
    with pytest.raises(ValueError, match="probe"):
        build_index(item_embeddings, "ivf", clusters=10, probe=11)
    with pytest.raises(ValueError, match="clusters"):
        build_index(item_embeddings, "ivf", clusters=ITEMS + 1)
    for index in (exact, ivf):
        with pytest.raises(ValueError, match="k must be"):
            index.search(queries, ITEMS + 1, no_exclusions(len(queries)))
        with pytest.raises(ValueError, match="k must be"):
            index.search(queries, 0, no_exclusions(len(queries)))
        with pytest.raises(ValueError, match="float32"):
            index.search(queries.astype(np.float64), 5, no_exclusions(len(queries)))
        with pytest.raises(ValueError, match=r"\[batch, 16\]"):
            index.search(queries[:, :8], 5, no_exclusions(len(queries)))
    with pytest.raises(ValueError, match="k must be"):
        exact_top_k(item_embeddings, queries, ITEMS + 1)


def test_module_imports_without_tensorflow():
    import recommendation.index as module

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('index_alone', {str(module.__file__)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "assert 'tensorflow' not in sys.modules, 'index.py imported tensorflow at import time'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
