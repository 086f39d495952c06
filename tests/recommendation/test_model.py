"""The towers on a tiny log: new items (no interactions at all) get vectors from their text and
category, close to their own kind; the ranker starts as retrieval and learns from held-out lists."""

from __future__ import annotations

import numpy as np
import pytest

from recommendation.data import split, prepare
from recommendation.generate import generate_interactions
from solutions_core.registry import get_solution
from solutions_core.strategy import make_runtime


@pytest.fixture(scope="module")
def fitted():
    from recommendation.model import fit_recommender

    solution = get_solution("recommendation")
    config = solution.make_config(
        {
            "towers": {"embedding_dim": 16, "hidden_units": 32, "text_vocabulary_size": 200},
            "ranking": {"candidates": 30, "epochs": 1},
            "training": {"epochs": 4, "batch_size": 128, "early_stopping_patience": 0},
        }
    )
    tables = generate_interactions(4_000, 150, 300, seed=5, new_item_share=0.4)
    train, valid, _ = split(prepare(tables, config), config)
    runtime = make_runtime("cpu", seed=0)
    runtime.verbose = 0
    return fit_recommender(train, valid, config, runtime), train, config


def test_new_items_get_vectors_near_their_own_category(fitted):
    recommender, train, _ = fitted
    items = recommender.items.reset_index(drop=True)
    vectors = recommender.item_vectors
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    new = ~items["item_id"].isin(train.interactions["item_id"]).to_numpy()
    assert new.sum() >= 5, "the fixture should have items nobody has interacted with"
    # The nearest item with interactions is of the same category far more often than chance would have it.
    trained_rows = np.flatnonzero(~new)
    categories = items["category"].to_numpy()
    hits, chance = [], []
    for row in np.flatnonzero(new):
        nearest = trained_rows[np.argmax(vectors[trained_rows] @ vectors[row])]
        hits.append(categories[nearest] == categories[row])
        chance.append(np.mean(categories[trained_rows] == categories[row]))
    assert np.mean(hits) > 2 * np.mean(chance) and np.mean(hits) > 0.5, (np.mean(hits), np.mean(chance))


def test_ranker_was_trained_and_corrects_retrieval(fitted):
    recommender, _, config = fitted
    assert recommender.ranker is not None
    correction = recommender.ranker.get_layer("rank_correction").get_weights()[0]
    assert np.abs(correction).max() > 0, "the correction layer never moved from its zero start"
    assert {layer.name for layer in recommender.ranker.layers} >= {"feature_cross_0", "retrieval_logit"}


def test_a_batch_of_only_new_users_without_history_gets_popular_items(fitted):
    # With the ranker in the graph, a batch where nobody has any history once failed in a gather
    # (a 500 from /recommend for a new user); every user here must get the popular list.
    import tensorflow as tf

    from recommendation.model import serving_module

    recommender, _, config = fitted
    module = serving_module(recommender, config)
    names = ["user_id", "history", "exclude", *config.columns.user_categorical]
    request = {name: tf.constant(["", ""]) for name in names}
    request["user_id"] = tf.constant(["new-1", "new-2"])
    outputs = module.serve(request)
    assert [s.decode() for s in outputs["strategy"].numpy()] == ["popular", "popular"]
    assert all(row[0] for row in outputs["item_ids"].numpy())
