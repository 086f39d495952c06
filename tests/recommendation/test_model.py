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
def fitted(tmp_path_factory):
    """The app's own candidate, fitted through the core's Trainer as a run fits it (recording what
    it is asked to fit)."""
    from solutions_core.solution import Context, Splits
    from solutions_core.training import Trainer

    class RecordingTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.specs = []

        def fit(self, spec):
            self.specs.append(spec)
            return super().fit(spec)

    solution = get_solution("recommendation")
    config = solution.make_config(
        {
            "towers": {"embedding_dim": 16, "hidden_units": 32, "text_vocabulary_size": 200},
            "ranking": {"candidates": 30, "epochs": 1},
            "training": {"epochs": 4, "batch_size": 128, "early_stopping_patience": 0},
        }
    )
    tables = generate_interactions(4_000, 150, 300, seed=5, new_item_share=0.4)
    train, valid, test = split(prepare(tables, config), config)
    candidate = next(c for c in solution.models.candidates(Context(solution.name, config, {})) if c.name == "two_tower_dcn")
    trainer = RecordingTrainer(make_runtime("cpu", seed=0), config.training, tmp_path_factory.mktemp("tensorboard"), candidate.name)
    return candidate.fit(Splits(train, valid, test), trainer), train, config, trainer


def test_new_items_get_vectors_near_their_own_category(fitted):
    recommender, train, _, _ = fitted
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
    recommender, _, config, _ = fitted
    assert recommender.ranker is not None
    correction = recommender.ranker.get_layer("rank_correction").get_weights()[0]
    assert np.abs(correction).max() > 0, "the correction layer never moved from its zero start"
    assert {layer.name for layer in recommender.ranker.layers} >= {"feature_cross_0", "retrieval_logit"}


def test_a_batch_of_only_new_users_without_history_gets_popular_items(fitted):
    # With the ranker in the graph, a batch where nobody has any history once failed in a gather
    # (a 500 from /recommend for a new user); every user here must get the popular list.
    import tensorflow as tf

    from recommendation.model import serving_module

    recommender, _, config, _ = fitted
    module = serving_module(recommender, config)
    names = ["user_id", "history", "exclude", *config.columns.user_categorical]
    request = {name: tf.constant(["", ""]) for name in names}
    request["user_id"] = tf.constant(["new-1", "new-2"])
    outputs = module.serve(request)
    assert [s.decode() for s in outputs["strategy"].numpy()] == ["popular", "popular"]
    assert all(row[0] for row in outputs["item_ids"].numpy())


def test_towers_and_ranker_go_through_the_core_fit_loop(fitted):
    """The towers follow config.training (validated: early stopping on val_loss when patience is set);
    the ranker trains ranking.epochs epochs on whole lists, unvalidated, without early stopping."""
    _, _, config, trainer = fitted
    towers, ranker = trainer.specs
    assert (towers.name, towers.validation, towers.training) == ("towers", True, None)
    assert (ranker.name, ranker.validation) == ("ranker", False)
    assert ranker.training.epochs == config.ranking.epochs
    assert ranker.training.early_stopping_patience == 0 and ranker.training.steps_per_epoch is None
    assert ranker.training.learning_rate == config.training.learning_rate
    assert (trainer.log_dir / "towers").is_dir() and (trainer.log_dir / "ranker").is_dir()
    # Batches: the towers' rows at the global batch (whole batches in training), the ranker's whole
    # lists, max(8, global_batch // width) of them.
    (inputs, _), = towers.data(True, 64).take(1)
    assert inputs["item_id"].shape[0] == 64
    (features, labels), = ranker.data(True, 64).take(1)
    width = config.ranking.candidates
    assert labels.shape[0] == 8 * width and features["retrieval_score"].shape[0] == 8 * width
    assert float(labels.numpy().reshape(-1, width).sum(axis=1).min()) == 1.0  # one held-out item per list


def test_retrieval_alone_is_an_ensemble_of_the_fitted_recommender(fitted):
    from solutions_core.solution import Context

    recommender, _, config, _ = fitted
    solution = get_solution("recommendation")
    ensembles = {ensemble.name: ensemble for ensemble in solution.models.ensembles(Context(solution.name, config, {}))}
    ensemble = ensembles["two_tower"]
    assert (ensemble.name, ensemble.members) == ("two_tower", ("two_tower_dcn",))
    retrieval = ensemble.combine([recommender])
    assert retrieval.ranker is None and recommender.ranker is not None
    assert retrieval.user_tower is recommender.user_tower and retrieval.item_vectors is recommender.item_vectors
    alone = solution.make_config({"ranking": {"enabled": False}})
    context = Context(solution.name, alone, {})
    assert [c.name for c in solution.models.candidates(context)] == ["two_tower", "ease_in_graph"]
    no_ease = Context(solution.name, solution.make_config({"ranking": {"enabled": False}, "ease_candidate": False}), {})
    assert [c.name for c in solution.models.candidates(no_ease)] == ["two_tower"]
    assert [e.name for e in solution.models.ensembles(context)] == ["towers_ease_blend"]  # no ranker to drop
    assert solution.models.ensembles(no_ease) == []


def test_the_ranker_reorders_only_users_with_a_history(fitted):
    """The ranker learned from users with a history only; without one (a new user known by features)
    its similarity features are far outside what it saw (logits of ~1e6 once), so such users keep
    retrieval's order and scores, while a user with a history is re-scored."""
    import tensorflow as tf

    from recommendation.model import serving_module

    recommender, train, config, _ = fitted
    ranked, retrieval = serving_module(recommender, config), serving_module(recommender.without_ranker(), config)
    row = train.interactions[train.interactions["history"] != ""].iloc[0]
    features = {name: [str(row[name])] * 2 for name in config.columns.user_categorical}
    request = {"user_id": ["new-1", str(row["user_id"])], "history": ["", row["history"]], "exclude": ["", ""], **features}
    request = {name: tf.constant(values) for name, values in request.items()}
    with_ranker, without = ranked.serve(request), retrieval.serve(request)
    assert [s.decode() for s in with_ranker["strategy"].numpy()] == ["features", "personalized"]
    np.testing.assert_array_equal(with_ranker["item_ids"].numpy()[0], without["item_ids"].numpy()[0])
    np.testing.assert_allclose(with_ranker["scores"].numpy()[0], without["scores"].numpy()[0], rtol=1e-6)
    assert np.abs(with_ranker["scores"].numpy()).max() < 1e3
    assert not np.allclose(with_ranker["scores"].numpy()[1], without["scores"].numpy()[1]), "the ranker re-scores users with a history"
