"""The EASE candidate inside the exported graph: the same scores as numpy, exclusions, cold start,
and a SavedModel that reloads with the same answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recommendation.data import prepare, split
from recommendation.ease import EaseModule, fit_ease, history_scores
from recommendation.generate import generate_interactions
from solutions_core.registry import get_solution


@pytest.fixture(scope="module")
def fitted():
    solution = get_solution("recommendation")
    config = solution.make_config({"top_k": 15})
    train, valid, test = split(prepare(generate_interactions(4_000, 150, 120, seed=2), config), config)
    return fit_ease(train, valid, config), config, test


def outputs_of(module, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    inputs = {name: tf.constant(rows[name].astype(str).to_numpy(dtype=object)) for name in ("user_id", "history", "exclude", "region", "age_group")}
    return {name: value.numpy() for name, value in module.serve(inputs).items()}


def test_lambda_is_chosen_on_validation_and_weights_have_a_zero_diagonal(fitted):
    recommender, _, _ = fitted
    assert len(recommender.tried) == 12 and (recommender.l2, recommender.profile_with_exclude) in recommender.tried
    assert recommender.tried[(recommender.l2, recommender.profile_with_exclude)] == max(recommender.tried.values())
    assert np.allclose(np.diag(recommender.weights), 0.0)


def test_graph_scores_match_numpy_and_respect_exclusions(fitted):
    recommender, config, test = fitted
    module = EaseModule(recommender, config)
    rows = test.head(20).copy()
    outputs = outputs_of(module, rows)
    catalog = recommender.items["item_id"].astype(str).tolist()
    expected = history_scores(recommender.weights, {item: row for row, item in enumerate(catalog)}, rows, recommender.profile_with_exclude)
    for position, (ids, scores) in enumerate(zip(outputs["item_ids"], outputs["scores"])):
        ids = [value.decode() for value in ids]
        excluded = set(rows["exclude"].iloc[position].split())
        assert not excluded & set(ids)
        best = np.sort(expected[position][np.isfinite(expected[position])])[::-1][: len(ids)]
        assert np.allclose(scores, best, atol=1e-4), "the graph ranks by the same scores as numpy"
        assert np.allclose([expected[position][catalog.index(item)] for item in ids], scores, atol=1e-4)
    assert set(outputs["strategy"].astype(str)) == {"personalized"}


def test_cold_users_get_popular_items_and_the_saved_model_answers_the_same(fitted, tmp_path):
    recommender, config, test = fitted
    module = EaseModule(recommender, config)
    rows = pd.concat([test.head(3), pd.DataFrame([{"user_id": "new", "history": "", "exclude": "", "region": "north", "age_group": ""}])], ignore_index=True)
    before = outputs_of(module, rows)
    assert before["strategy"].astype(str).tolist() == ["personalized"] * 3 + ["popular"]
    most_popular = recommender.items["item_id"].to_numpy()[np.argsort(-recommender.popularity, kind="stable")][:5]
    assert set(v.decode() for v in before["item_ids"][3][:5]) <= set(recommender.items["item_id"].to_numpy()[np.argsort(-recommender.popularity)][:8])
    assert before["item_ids"][3][0].decode() in set(most_popular)
    tf.saved_model.save(module, str(tmp_path / "ease"), signatures={"serving_default": module.serve})
    after = outputs_of(tf.saved_model.load(str(tmp_path / "ease")), rows)
    assert (after["item_ids"] == before["item_ids"]).all() and np.allclose(after["scores"], before["scores"])


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """Tiny towers and EASE on the same split, blended as the ensemble does."""
    from recommendation.ease import blend
    from recommendation.model import fit_recommender
    from solutions_core.strategy import make_runtime
    from solutions_core.training import Trainer

    solution = get_solution("recommendation")
    config = solution.make_config({**solution.tiny_config().model_dump(), "ranking": {"enabled": False}})
    train, valid, test = split(prepare(generate_interactions(4_000, 150, 120, seed=2), config), config)
    trainer = Trainer(make_runtime("cpu", seed=0), config.training, tmp_path_factory.mktemp("tensorboard"), "two_tower")
    towers = fit_recommender(train, valid, config, trainer)
    return blend([towers, fit_ease(train, valid, config)], config), config, test


def test_the_blend_weight_is_chosen_on_validation_and_the_graph_scores_as_numpy(blended, tmp_path):
    from recommendation.ease import BLEND_WEIGHTS, BlendModule, profiles, standardized
    from recommendation.model import user_vectors

    recommender, config, test = blended
    assert set(recommender.tried) == set(BLEND_WEIGHTS) and recommender.tried[recommender.weight] == max(recommender.tried.values())
    module = BlendModule(recommender, config)
    rows = test.head(12).copy()
    outputs = outputs_of(module, rows)
    catalog = recommender.ease.items["item_id"].astype(str).tolist()
    index = {item: row for row, item in enumerate(catalog)}
    ease = recommender.ease
    expected = standardized(profiles(index, rows, ease.profile_with_exclude) @ ease.weights)
    expected += recommender.weight * standardized(user_vectors(recommender.towers.user_tower, rows, config) @ recommender.towers.item_vectors.T)
    for position, (ids, scores) in enumerate(zip(outputs["item_ids"], outputs["scores"])):
        ids = [value.decode() for value in ids]
        assert not set(rows["exclude"].iloc[position].split()) & set(ids), "exclusions are never returned"
        np.testing.assert_allclose([expected[position][index[item]] for item in ids], scores, atol=1e-3)
        assert np.all(np.diff(scores) <= 1e-6), "best first"
    # A new user known by features only is scored by the towers; one with nothing known gets popular items.
    strangers = pd.DataFrame([
        {"user_id": "new", "history": "", "exclude": "", "region": "north", "age_group": "25-34"},
        {"user_id": "new", "history": "", "exclude": "", "region": "", "age_group": ""},
    ])
    cold = outputs_of(module, strangers)
    assert cold["strategy"].astype(str).tolist() == ["features", "popular"]
    tf.saved_model.save(module, str(tmp_path / "blend"), signatures={"serving_default": module.serve})
    after = outputs_of(tf.saved_model.load(str(tmp_path / "blend")), rows)
    assert (after["item_ids"] == outputs["item_ids"]).all() and np.allclose(after["scores"], outputs["scores"], atol=1e-5)
