"""Top-k metrics on hand-checked cases, and the baselines' behaviour (popularity, PureSVD, EASE)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recommendation.evaluate import EaseBaseline, MatrixFactorizationBaseline, PopularityBaseline, served_lists, top_k_metrics


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


def random_log(users=40, items=12, seed=0):
    generator = np.random.default_rng(seed)
    pairs = {(f"u{u}", f"i{i}") for u in range(users) for i in generator.choice(items, size=generator.integers(2, 7), replace=False)}
    return log(sorted(pairs)), [f"i{i}" for i in range(items)]


def test_ease_is_the_closed_form_ridge_regression_of_each_item_on_the_others():
    """Column j of B minimizes ||X_j - X B_j||² + λ||B_j||² with B_jj = 0: the ridge regression of item j
    on every other item, without intercept (Steck 2019, eq. 2-4)."""
    interactions, items = random_log()
    l2 = 3.0
    baseline = EaseBaseline(l2=l2).fit(interactions, items)
    assert np.allclose(np.diag(baseline.weights), 0.0)
    matrix = np.zeros((interactions["user_id"].nunique(), len(items)))
    users = {user: row for row, user in enumerate(interactions["user_id"].unique())}
    for user, item in zip(interactions["user_id"], interactions["item_id"]):
        matrix[users[user], items.index(item)] = 1.0
    for column in (0, 5, 11):
        others = [index for index in range(len(items)) if index != column]
        features = matrix[:, others]
        ridge = np.linalg.solve(features.T @ features + l2 * np.eye(len(others)), features.T @ matrix[:, column])
        assert np.allclose(baseline.weights[others, column], ridge, atol=1e-4)


def test_ease_never_returns_seen_items_and_follows_co_occurrence():
    pairs = [(f"u{i}", item) for i in range(20) for item in ("x1", "x2", "x3")]
    pairs += [(f"v{i}", item) for i in range(20) for item in ("y1", "y2", "y3")]
    baseline = EaseBaseline(l2=1.0).fit(log(pairs), ["x1", "x2", "x3", "y1", "y2", "y3"])
    (top,) = baseline.recommend(pd.DataFrame({"exclude": ["x1 x2"]}), 5)
    assert top[0] == "x3" and "x1" not in top and "x2" not in top and len(top) == 4


def test_ease_chooses_lambda_on_validation_scaled_to_the_data():
    interactions, items = random_log(users=60, seed=1)
    valid = pd.DataFrame({"exclude": ["i0 i1", "i2 i3 i4"], "targets": [["i5"], ["i6"]]})
    baseline = EaseBaseline(l2_multiples=(0.5, 1.0, 2.0)).fit(interactions, items, valid=valid)
    mean_count = len(interactions) / len(items)
    assert sorted(baseline.tried) == pytest.approx([0.5 * mean_count, mean_count, 2 * mean_count])
    assert baseline.chosen_l2 in baseline.tried
    assert baseline.tried[baseline.chosen_l2] == max(baseline.tried.values())
    with pytest.raises(ValueError, match="max_items=5"):
        EaseBaseline(max_items=5).fit(interactions, items)


def test_served_lists_pad_to_k_as_the_module_does():
    served = served_lists([["a", "b"], []], 3)
    assert served["item_ids"].tolist() == [["a", "b", ""], ["", "", ""]]
    assert served["scores"][0, 0] > served["scores"][0, 1] > 0 and served["scores"][0, 2] == 0
