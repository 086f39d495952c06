"""Top-k metrics on hand-checked cases, and the two baselines' behaviour."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recommendation.evaluate import MatrixFactorizationBaseline, PopularityBaseline, top_k_metrics


def test_recall_ndcg_and_coverage_by_hand():
    recommended = [["a", "b", "c"], ["d", "e", "f"]]
    targets = [["b"], ["x", "d"]]
    metrics = top_k_metrics(recommended, targets, [1, 3], catalog_size=10)
    assert metrics["recall_at_1"] == pytest.approx((0 + 0.5) / 2)
    assert metrics["recall_at_3"] == pytest.approx((1 + 0.5) / 2)
    first = (1 / math.log2(3)) / 1.0  # hit at rank 2, one relevant item
    second = 1.0 / (1 + 1 / math.log2(3))  # hit at rank 1, two relevant items
    assert metrics["ndcg_at_3"] == pytest.approx((first + second) / 2)
    assert metrics["coverage_at_3"] == pytest.approx(6 / 10)
    assert metrics["users"] == 2


def test_metrics_refuse_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 recommendation lists for 1 users"):
        top_k_metrics([["a"], ["b"]], [["a"]], [1], 5)
    with pytest.raises(ValueError, match="No users"):
        top_k_metrics([], [], [1], 5)


def log(pairs):
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


def test_popularity_excludes_what_each_user_has_seen():
    baseline = PopularityBaseline().fit(log([("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c")]))
    examples = pd.DataFrame({"exclude": ["a", ""]})
    assert baseline.recommend(examples, 2) == [["b", "c"], ["a", "b"]]


def test_matrix_factorization_follows_co_occurrence():
    # Two groups of users with disjoint tastes: a user of the first group who saw x1 gets x2 before y*.
    pairs = [(f"u{i}", item) for i in range(20) for item in ("x1", "x2", "x3")]
    pairs += [(f"v{i}", item) for i in range(20) for item in ("y1", "y2", "y3")]
    baseline = MatrixFactorizationBaseline(factors=2).fit(log(pairs), ["x1", "x2", "x3", "y1", "y2", "y3"])
    (top,) = baseline.recommend(pd.DataFrame({"exclude": ["x1"]}), 2)
    assert set(top) == {"x2", "x3"}
