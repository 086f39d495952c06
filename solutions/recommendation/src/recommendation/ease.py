"""EASE as a served candidate: the item × item model a client would try first, inside the exported graph.

EASE (Steck, 2019) is a closed-form ridge regression of every item on all the others over the binary
user × item matrix: P = (XᵀX + λI)⁻¹, B = I − P · diag(1/diag(P)). A user's scores are their items'
rows of B summed. On rating logs it is often as good as far larger models, so the app trains it beside
the two towers and exports it when it wins validation: the served model is then never worse than EASE.

The exported ``EaseModule`` has the same signature as the two-tower module (``user_id``, ``history``,
``exclude``, the user features) and the same answers: ``item_ids`` and ``scores`` [batch, top_k] and a
``strategy``. The user's profile is ``history`` (the recent items the towers see too), or ``history``
and ``exclude`` together where validation says so: the app's requests exclude what the user has already
seen, the longer profile, but a client may exclude items the user never touched, so each data set
decides. ``exclude`` is never returned. A user without a
known item in the history gets the most popular items (``popular``): EASE knows nothing of features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from recommendation.config import RecommendationConfig
from recommendation.data import TrainingData
from recommendation.evaluate import EaseBaseline, _top_k_lists, ease_weights, item_gram, top_k_metrics

GATE_K = 10


@dataclass
class EaseRecommender:
    """What the ``ease`` candidate's fit returns: everything ``EaseModule`` needs."""

    items: pd.DataFrame
    weights: np.ndarray  # [items, items] float32, zero diagonal
    popularity: np.ndarray  # training interactions per catalog row
    l2: float
    tried: dict[tuple[float, bool], float] = field(default_factory=dict)  # (λ, profile with exclude) -> valid NDCG@10
    profile_with_exclude: bool = False
    valid: pd.DataFrame | None = field(default=None, repr=False)  # the rows λ was chosen on (the blend's weight too)


def profiles(item_index: dict[str, int], examples: pd.DataFrame, with_exclude: bool = False) -> np.ndarray:
    """[rows, items] 1.0 for the items of each row's ``history`` (and ``exclude`` when ``with_exclude``)."""
    profile = np.zeros((len(examples), len(item_index)), dtype=np.float32)
    for row, history in enumerate(examples["history"]):
        profile[row, [item_index[item] for item in history.split() if item in item_index]] = 1.0
    if with_exclude:
        for row, excluded in enumerate(examples["exclude"]):
            profile[row, [item_index[item] for item in excluded.split() if item in item_index]] = 1.0
    return profile


def excluded_at_minus_infinity(scores: np.ndarray, item_index: dict[str, int], examples: pd.DataFrame) -> np.ndarray:
    for row, excluded in enumerate(examples["exclude"]):
        scores[row, [item_index[item] for item in excluded.split() if item in item_index]] = -np.inf
    return scores


def history_scores(weights: np.ndarray, item_index: dict[str, int], examples: pd.DataFrame, with_exclude: bool = False) -> np.ndarray:
    """Scores from each row's ``history`` (and ``exclude`` when ``with_exclude``) with ``exclude`` at
    -inf: the numpy twin of ``EaseModule``."""
    return excluded_at_minus_infinity(profiles(item_index, examples, with_exclude) @ weights, item_index, examples)


def fit_ease(data: TrainingData, valid: pd.DataFrame, config: RecommendationConfig) -> EaseRecommender:
    """EASE on the training interactions; λ from ``baselines.ease_l2`` or, by default, chosen on the
    validation rows' NDCG@10 (scored as served) among multiples of the mean interactions per item, and
    the profile (``history`` alone, or with ``exclude``) chosen the same way."""
    catalog = data.items["item_id"].astype(str)
    settings = config.baselines
    if len(catalog) > settings.ease_max_items:
        from solutions_core.solution import SkipCandidate

        raise SkipCandidate(f"{len(catalog)} items is above baselines.ease_max_items={settings.ease_max_items} (EASE holds items × items)")
    item_index = {item: index for index, item in enumerate(catalog)}
    gram = item_gram(data.interactions, item_index)
    mean_count = float(np.mean(np.diag(gram))) or 1.0
    multiples = EaseBaseline().l2_multiples  # the baseline's grid: both are chosen the same way
    choices = [settings.ease_l2] if settings.ease_l2 is not None else [multiple * mean_count for multiple in multiples]
    tried: dict[tuple[float, bool], float] = {}
    best_weights = None
    for l2 in choices:
        weights = ease_weights(gram, l2)
        for with_exclude in (False, True):
            scores = history_scores(weights, item_index, valid, with_exclude)
            lists = _top_k_lists(scores, catalog.to_numpy(dtype=object), GATE_K)
            tried[(l2, with_exclude)] = top_k_metrics(lists, list(valid["targets"]), [GATE_K], len(catalog))[f"ndcg_at_{GATE_K}"]
            if tried[(l2, with_exclude)] == max(tried.values()):
                best_weights = weights
    chosen, with_exclude = max(tried, key=tried.get)
    return EaseRecommender(data.items, best_weights, np.asarray(data.popularity, dtype=np.float64), float(chosen), tried, with_exclude, valid)


def request_specs(config: RecommendationConfig) -> dict[str, Any]:
    names = ["user_id", "history", "exclude", *config.columns.user_categorical]
    return {name: tf.TensorSpec([None], tf.string, name=name) for name in names}


class EaseModule(tf.Module):
    """The exported EASE candidate: history multi-hot × B, exclusions at -inf, top-k; popular items
    for a user without a known item in the history. Same signature and outputs as the two towers'."""

    def __init__(self, fitted: EaseRecommender, config: RecommendationConfig, name: str = "recommendation_ease"):
        super().__init__(name=name)
        catalog = fitted.items["item_id"].astype(str).to_numpy(dtype=object)
        self.catalog_size = len(catalog)
        self.top_k = min(config.top_k, self.catalog_size)
        self.weights = tf.Variable(fitted.weights.astype(np.float32), trainable=False, name="ease_weights")
        self.item_ids = tf.Variable(catalog, dtype=tf.string, trainable=False, name="item_ids")
        share = (fitted.popularity + 1.0) / (fitted.popularity + 1.0).sum()
        self.popularity = tf.Variable(share.astype(np.float32), trainable=False, name="popularity")
        self.l2 = tf.Variable(fitted.l2, dtype=tf.float32, trainable=False, name="l2")  # recorded: the λ chosen
        self.profile_with_exclude = tf.Variable(float(fitted.profile_with_exclude), trainable=False, name="profile_with_exclude")
        self.item_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(catalog), tf.range(self.catalog_size, dtype=tf.int64)), default_value=-1
        )
        self.serve = tf.function(self._serve, input_signature=[request_specs(config)])

    def _multi_hot(self, space_separated: Any) -> Any:
        """Space-separated ids -> [batch, items] 1.0 where an id of the catalog is named."""
        tokens = tf.strings.split(space_separated)
        rows = tf.ragged.map_flat_values(self.item_rows.lookup, tokens)
        batch_of = tf.cast(rows.value_rowids(), tf.int64)
        found = rows.flat_values >= 0
        indices = tf.stack([tf.boolean_mask(batch_of, found), tf.boolean_mask(rows.flat_values, found)], axis=1)
        shape = tf.stack([tf.cast(tf.shape(space_separated)[0], tf.int64), tf.constant(self.catalog_size, tf.int64)])
        hits = tf.scatter_nd(indices, tf.ones([tf.shape(indices)[0]], tf.float32), shape)
        return tf.minimum(hits, 1.0)  # an id named twice counts once

    def _serve(self, inputs: dict[str, Any]) -> dict[str, Any]:
        excluded_hot = self._multi_hot(inputs["exclude"])
        profile = tf.maximum(self._multi_hot(inputs["history"]), self.profile_with_exclude * excluded_hot)
        excluded = excluded_hot > 0
        personalized = tf.reduce_any(profile > 0, axis=1)
        scores = tf.matmul(profile, self.weights)
        popular = tf.broadcast_to(self.popularity[None, :], tf.shape(scores))
        scores = tf.where(personalized[:, None], scores, popular)
        scores = tf.where(excluded, tf.constant(-np.inf, tf.float32), scores)
        top = tf.math.top_k(scores, k=self.top_k)
        valid = tf.math.is_finite(top.values)
        item_ids = tf.where(valid, tf.gather(self.item_ids, top.indices), "")
        strategy = tf.where(personalized, "personalized", "popular")
        return {"item_ids": item_ids, "scores": tf.where(valid, top.values, 0.0), "strategy": strategy}


def serving_module(fitted: EaseRecommender, config: RecommendationConfig) -> EaseModule:
    return EaseModule(fitted, config)


# ---- the towers and EASE together -------------------------------------------------------------------

# Weights of the towers' standardized scores against EASE's, tried on validation.
BLEND_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class BlendedRecommender:
    """EASE and the two towers in one model: each user's scores from both, standardized per user (mean
    0, deviation 1 over the catalog) and added with ``weight`` on the towers'. EASE knows which items go
    together in the log; the towers know recency, features and items too new for the log: on the
    generator each alone loses to the EASE baseline, together they beat it."""

    towers: Any  # model.Recommender, without its ranker
    ease: EaseRecommender
    weight: float
    tried: dict[float, float] = field(default_factory=dict)  # weight -> valid NDCG@10


def standardized(scores: np.ndarray) -> np.ndarray:
    """Per row: (scores − mean) / deviation over the catalog; a row of equal scores becomes zeros."""
    mean = scores.mean(axis=1, keepdims=True)
    deviation = scores.std(axis=1, keepdims=True)
    return (scores - mean) / (deviation + 1e-6)


def blend(members: list[Any], config: RecommendationConfig) -> BlendedRecommender:
    """The ensemble's combine: the weight whose blend ranks the validation rows best (NDCG@10, scored as
    the module scores), on the rows EASE chose λ on."""
    from recommendation.model import user_vectors

    towers, ease = members
    towers = towers.without_ranker() if towers.ranker is not None else towers
    if ease.valid is None:
        raise ValueError("The blend needs the validation rows EASE was fitted with.")
    valid = ease.valid
    catalog = ease.items["item_id"].astype(str)
    item_index = {item: index for index, item in enumerate(catalog)}
    ease_part = standardized(profiles(item_index, valid, ease.profile_with_exclude) @ ease.weights)
    tower_part = standardized(user_vectors(towers.user_tower, valid, config) @ towers.item_vectors.T)
    tried = {}
    for weight in BLEND_WEIGHTS:
        scores = excluded_at_minus_infinity(ease_part + weight * tower_part, item_index, valid)
        lists = _top_k_lists(scores, catalog.to_numpy(dtype=object), GATE_K)
        tried[weight] = top_k_metrics(lists, list(valid["targets"]), [GATE_K], len(catalog))[f"ndcg_at_{GATE_K}"]
    return BlendedRecommender(towers, ease, max(tried, key=tried.get), tried)


class BlendModule(tf.Module):
    """The exported blend: EASE's and the towers' scores of the whole catalog, standardized and added,
    exclusions at -inf, top-k. A user without a known item in the history is scored by the towers alone
    (EASE's part is all zeros: from features, or the id); one with nothing known gets popular items.
    Same signature and outputs as the two-tower module."""

    def __init__(self, fitted: BlendedRecommender, config: RecommendationConfig, name: str = "recommendation_blend"):
        super().__init__(name=name)
        self.ease = EaseModule(fitted.ease, config)
        self.user_tower = fitted.towers.user_tower
        self.item_vectors = tf.Variable(fitted.towers.item_vectors.astype(np.float32), trainable=False, name="item_vectors")
        self.weight = tf.Variable(fitted.weight, dtype=tf.float32, trainable=False, name="blend_weight")  # recorded: the weight chosen
        from recommendation.model import known_users_table

        self.known_users = known_users_table(fitted.towers.vocab.users)
        self.user_features = list(config.columns.user_categorical)
        self.serve = tf.function(self._serve, input_signature=[request_specs(config)])

    @staticmethod
    def _standardized(scores: Any) -> Any:
        mean = tf.reduce_mean(scores, axis=1, keepdims=True)
        deviation = tf.math.reduce_std(scores, axis=1, keepdims=True)
        return (scores - mean) / (deviation + 1e-6)

    def _serve(self, inputs: dict[str, Any]) -> dict[str, Any]:
        ease = self.ease
        excluded_hot = ease._multi_hot(inputs["exclude"])
        history_hot = ease._multi_hot(inputs["history"])
        profile = tf.maximum(history_hot, ease.profile_with_exclude * excluded_hot)
        queries = self.user_tower({name: inputs[name] for name in ["user_id", "history", *self.user_features]}, training=False)
        tower_scores = tf.matmul(queries, self.item_vectors, transpose_b=True)
        scores = self._standardized(tf.matmul(profile, ease.weights)) + self.weight * self._standardized(tower_scores)

        from recommendation.model import user_strategy

        has_history = tf.reduce_any(history_hot > 0, axis=1)
        cold, strategy = user_strategy(self.known_users, inputs, has_history, self.user_features)
        popular = tf.broadcast_to(ease.popularity[None, :], tf.shape(scores))
        scores = tf.where(cold[:, None], popular, scores)
        scores = tf.where(excluded_hot > 0, tf.constant(-np.inf, tf.float32), scores)
        top = tf.math.top_k(scores, k=ease.top_k)
        valid = tf.math.is_finite(top.values)
        item_ids = tf.where(valid, tf.gather(ease.item_ids, top.indices), "")
        return {"item_ids": item_ids, "scores": tf.where(valid, top.values, 0.0), "strategy": strategy}


def blend_module(fitted: BlendedRecommender, config: RecommendationConfig) -> BlendModule:
    return BlendModule(fitted, config)
