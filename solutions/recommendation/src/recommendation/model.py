"""The recommendation models, top to bottom.

1. Two towers (keras-rs retrieval): a user tower (id + categorical features + mean of the recent
   history's item vectors) and an item tower (id + categorical features + the item text through a
   keras-hub WordPiece tokenizer and TransformerEncoder), each ending in a unit vector. Trained with an
   in-batch softmax: every other item in the batch is a negative, corrected for popularity sampling
   (logQ, ``keras_rs.layers.SamplingProbabilityCorrection``) and for accidental hits. Ids are randomly
   replaced by the unknown id during training so the towers also work from features, text and history
   alone: that is how new users and brand-new items get sensible vectors.
2. A DCN ranker (``keras_rs.layers.FeatureCross``) that re-scores the retrieved candidates from user
   and item features, the retrieval score, popularity and the candidate's similarity to the user's
   history. It learns from the lists retrieval returns for interactions the towers never saw (each
   user's last training interaction), so it is trained on what it will be shown — always a user with
   a history, so users without one keep retrieval's order.
3. ``RecommenderModule``: what gets exported. The item vectors of the whole catalog and the candidate
   index live inside it, so one signature maps a user to top-k item ids and scores. Exclusions (items
   already seen) are applied inside the search; a user with nothing known gets popular items.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import keras_hub
import keras_rs
import numpy as np
import pandas as pd
import tensorflow as tf

from recommendation.config import RecommendationConfig
from recommendation.data import TrainingData

UNKNOWN = "#unknown"  # never a real id: maps to the lookups' out-of-vocabulary row
TEXT_RESERVED = ["[PAD]", "[UNK]"]


# ---- layers ---------------------------------------------------------------------------------------


@functools.cache
def custom_layers() -> dict[str, type]:
    """Defined on first use so that importing the app does not build Keras classes at import time."""

    class HistoryTokens(keras.layers.Layer):
        """"i1 i7 i42" -> the last ``length`` ids as a [batch, length] string tensor, padded with ""."""

        def __init__(self, length: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.length = length

        def call(self, history: Any) -> Any:
            tokens = tf.strings.split(tf.reshape(history, [-1]))
            return tokens[:, -self.length :].to_tensor(default_value="", shape=[None, self.length])

        def compute_output_shape(self, input_shape: Any) -> tuple:
            return (input_shape[0], self.length)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "length": self.length}

    class MaskedMean(keras.layers.Layer):
        """Mean of vectors [batch, steps, dim] where ``keep`` [batch, steps] is true (zeros if none)."""

        def call(self, vectors: Any, keep: Any) -> Any:
            weights = keras.ops.expand_dims(keras.ops.cast(keep, vectors.dtype), -1)
            total = keras.ops.sum(vectors * weights, axis=1)
            return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)

    class InBatchLogits(keras.layers.Layer):
        """Scores of every user against every item of the batch, the diagonal being the positives,
        corrected for how often popular items appear as negatives and for duplicate items."""

        def __init__(self, temperature: float, **kwargs: Any):
            super().__init__(**kwargs)
            self.temperature = temperature
            self.correction = keras_rs.layers.SamplingProbabilityCorrection()
            self.remove_hits = keras_rs.layers.RemoveAccidentalHits()

        def call(self, user_vectors: Any, item_vectors: Any, sampling_probability: Any, item_keys: Any) -> Any:
            logits = keras.ops.matmul(user_vectors, keras.ops.transpose(item_vectors)) / self.temperature
            logits = self.correction(logits, keras.ops.reshape(sampling_probability, [-1]))
            labels = keras.ops.eye(keras.ops.shape(logits)[0], dtype=logits.dtype)
            return self.remove_hits(logits, labels, keras.ops.reshape(item_keys, [-1]))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "temperature": self.temperature}

    return {"HistoryTokens": HistoryTokens, "MaskedMean": MaskedMean, "InBatchLogits": InBatchLogits}


def in_batch_softmax(labels: Any, logits: Any) -> Any:
    """Cross-entropy of each row's own item (the diagonal) against the batch; ``labels`` are unused."""
    targets = keras.ops.eye(keras.ops.shape(logits)[0], dtype=logits.dtype)
    return keras.losses.categorical_crossentropy(targets, logits, from_logits=True)


# ---- vocabularies ---------------------------------------------------------------------------------


@dataclass
class Vocabularies:
    """What the lookups know, computed from training data only (everything else is 'unknown')."""

    users: list[str]
    items: list[str]  # items with training interactions; catalog items without any are 'new'
    user_features: dict[str, list[str]]
    item_features: dict[str, list[str]]
    text: list[str]


def vocabularies(data: TrainingData, config: RecommendationConfig) -> Vocabularies:
    interactions = data.interactions
    text = data.items["text"].tolist()
    text_vocabulary = TEXT_RESERVED[:]
    if any(text):
        text_vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            # a dataset, not a list: a list of strings is read as file names
            tf.data.Dataset.from_tensor_slices([t for t in text if t]), config.towers.text_vocabulary_size, lowercase=True, reserved_tokens=TEXT_RESERVED
        )
    return Vocabularies(
        users=sorted(interactions["user_id"].unique().tolist()),
        items=sorted(interactions["item_id"].unique().tolist()),
        user_features={c: sorted(set(interactions[c]) - {""}) for c in config.columns.user_categorical},
        item_features={c: sorted(set(data.items[c]) - {""}) for c in config.columns.item_categorical},
        text=list(text_vocabulary),
    )


def _lookup(vocabulary: list[str], name: str) -> Any:
    # Index 0 is the out-of-vocabulary row: unknown ids, "" and the training-time UNKNOWN all land there.
    return keras.layers.StringLookup(vocabulary=vocabulary or [UNKNOWN + "-empty"], num_oov_indices=1, name=name)


def _embedded(lookup: Any, dimension: int, name: str) -> Any:
    return keras.layers.Embedding(lookup.vocabulary_size(), dimension, name=name)


# ---- towers ---------------------------------------------------------------------------------------


def user_inputs(config: RecommendationConfig) -> dict[str, Any]:
    names = ["user_id", "history", *config.columns.user_categorical]
    return {name: keras.Input(shape=(), dtype="string", name=name) for name in names}


def item_inputs(config: RecommendationConfig) -> dict[str, Any]:
    names = ["item_id", "text", *config.columns.item_categorical]
    return {name: keras.Input(shape=(), dtype="string", name=name) for name in names}


def build_towers(vocab: Vocabularies, config: RecommendationConfig) -> tuple[Any, Any]:
    """(user tower, item tower): Functional models from raw strings to unit vectors."""
    layers = custom_layers()
    towers = config.towers
    item_lookup = _lookup(vocab.items, "item_lookup")
    item_id_embedding = _embedded(item_lookup, towers.id_embedding_dim, "item_id_embedding")  # shared by both towers

    # User tower.
    inputs = user_inputs(config)
    user_lookup = _lookup(vocab.users, "user_lookup")
    parts = [_embedded(user_lookup, towers.id_embedding_dim, "user_id_embedding")(user_lookup(inputs["user_id"]))]
    history = layers["HistoryTokens"](towers.history_length, name="history_tokens")(inputs["history"])
    history_rows = item_lookup(history)
    # Padding and unknown items (index 0) carry no taste.
    parts.append(layers["MaskedMean"](name="history_mean")(item_id_embedding(history_rows), keras.ops.greater(history_rows, 0)))
    parts += _categorical(inputs, vocab.user_features, towers.feature_embedding_dim, "user")
    user_tower = keras.Model(inputs, _unit_vector(parts, config, "user"), name="user_tower")

    # Item tower.
    inputs = item_inputs(config)
    parts = [item_id_embedding(item_lookup(inputs["item_id"]))]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocab.text, sequence_length=towers.text_length, lowercase=True, oov_token="[UNK]", name="text_tokenizer"
    )
    tokens = tokenizer(inputs["text"])
    embedded = keras_hub.layers.TokenAndPositionEmbedding(
        len(vocab.text), towers.text_length, towers.feature_embedding_dim * 2, name="text_embedding"
    )(tokens)
    for index in range(towers.text_encoder_layers):
        embedded = keras_hub.layers.TransformerEncoder(
            intermediate_dim=towers.feature_embedding_dim * 4, num_heads=towers.text_heads, name=f"text_encoder_{index}"
        )(embedded, padding_mask=keras.ops.greater(tokens, 0))
    parts.append(layers["MaskedMean"](name="text_mean")(embedded, keras.ops.greater(tokens, 0)))
    parts += _categorical(inputs, vocab.item_features, towers.feature_embedding_dim, "item")
    item_tower = keras.Model(inputs, _unit_vector(parts, config, "item"), name="item_tower")
    return user_tower, item_tower


def _categorical(inputs: dict[str, Any], vocabularies: dict[str, list[str]], dimension: int, prefix: str) -> list[Any]:
    """An embedding per categorical input column (``vocabularies`` names the columns)."""
    parts = []
    for column, vocabulary in vocabularies.items():
        lookup = _lookup(vocabulary, f"{prefix}_{column}_lookup")
        parts.append(_embedded(lookup, dimension, f"{prefix}_{column}_embedding")(lookup(inputs[column])))
    return parts


def _unit_vector(parts: list[Any], config: RecommendationConfig, prefix: str) -> Any:
    """A tower's head: concatenated parts → hidden layer → projection → unit length (cosine scores)."""
    hidden = keras.layers.Dense(config.towers.hidden_units, activation="relu", name=f"{prefix}_hidden")(keras.layers.Concatenate()(parts))
    projection = keras.layers.Dense(config.towers.embedding_dim, name=f"{prefix}_projection")(hidden)
    # float32 vectors whatever the precision policy: the index and the logits compare them to each other.
    return keras.layers.UnitNormalization(name=f"{prefix}_vector", dtype="float32")(projection)


def build_retrieval_model(user_tower: Any, item_tower: Any, config: RecommendationConfig) -> Any:
    """The training graph: both towers, then in-batch logits. Only the towers are exported."""
    inputs = {**user_inputs(config), **item_inputs(config)}
    inputs["sampling_probability"] = keras.Input(shape=(), dtype="float32", name="sampling_probability")
    inputs["item_key"] = keras.Input(shape=(), dtype="int64", name="item_key")
    user_vectors = user_tower({name: inputs[name] for name in user_tower.input})
    item_vectors = item_tower({name: inputs[name] for name in item_tower.input})
    logits = custom_layers()["InBatchLogits"](config.towers.temperature, name="in_batch_logits")(
        user_vectors, item_vectors, inputs["sampling_probability"], inputs["item_key"]
    )
    return keras.Model(inputs, logits, name="two_tower")


# ---- training data --------------------------------------------------------------------------------


def catalog_columns(items: pd.DataFrame, config: RecommendationConfig) -> dict[str, np.ndarray]:
    names = ["item_id", "text", *config.columns.item_categorical]
    return {name: items[name].astype(str).to_numpy(dtype=object) for name in names}


def retrieval_examples(data: TrainingData, frame: pd.DataFrame, config: RecommendationConfig) -> dict[str, np.ndarray]:
    """Training-model inputs for (user, item) pairs in ``frame`` (needs user_id, item_id, history, user features)."""
    rows = pd.Index(data.items["item_id"]).get_indexer(frame["item_id"])
    if (rows < 0).any():
        raise ValueError("Some interactions name items missing from the catalog.")
    catalog = catalog_columns(data.items, config)
    examples = {name: values[rows] for name, values in catalog.items()}
    for name in ["user_id", "history", *config.columns.user_categorical]:
        examples[name] = frame[name].astype(str).to_numpy(dtype=object)
    probability = (data.popularity + 1.0) / (data.popularity + 1.0).sum()
    examples["sampling_probability"] = probability[rows].astype(np.float32)
    examples["item_key"] = rows.astype(np.int64)
    return examples


def make_dataset(examples: dict[str, np.ndarray], config: RecommendationConfig, training: bool, batch_size: int) -> Any:
    """(inputs, unused labels) batches; in training, ids are dropped to UNKNOWN at ``id_dropout_rate``."""
    count = len(examples["item_id"])
    dataset = tf.data.Dataset.from_tensor_slices((examples, np.zeros(count, np.float32)))
    if training:
        dataset = dataset.shuffle(min(count, 100_000), seed=config.seed, reshuffle_each_iteration=True)
        rate = config.towers.id_dropout_rate

        def drop_ids(inputs: dict[str, Any], labels: Any) -> tuple[dict[str, Any], Any]:
            inputs = dict(inputs)
            for name in ("user_id", "item_id"):
                dropped = tf.random.uniform(tf.shape(inputs[name])) < rate
                inputs[name] = tf.where(dropped, tf.constant(UNKNOWN), inputs[name])
            return inputs, labels

        # Whole batches only: the in-batch softmax compares each row with the rest of its batch.
        return dataset.batch(batch_size, drop_remainder=count >= batch_size).map(drop_ids, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    return dataset.batch(batch_size).prefetch(2)


def valid_examples(data: TrainingData, valid: pd.DataFrame) -> pd.DataFrame:
    """Validation rows as (user, held-out item) pairs for the validation loss."""
    exploded = valid.explode("targets").rename(columns={"targets": "item_id"})
    return exploded[exploded["item_id"].isin(data.items["item_id"])].reset_index(drop=True)


def fit_towers(data: TrainingData, valid: pd.DataFrame, config: RecommendationConfig, trainer: Any) -> tuple[Any, Any, Vocabularies]:
    """The towers through the core's fit loop: validated on the held-out validation pairs, early
    stopping as ``config.training`` says (val_loss by default)."""
    from solutions_core.solution import KerasFit

    vocab = vocabularies(data, config)
    examples = {
        True: retrieval_examples(data, data.interactions, config),
        False: retrieval_examples(data, valid_examples(data, valid), config),
    }
    model = trainer.fit(
        KerasFit(
            "towers",
            build=lambda: build_retrieval_model(*build_towers(vocab, config), config),
            compile=lambda training: {"optimizer": keras.optimizers.Adam(training.learning_rate), "loss": in_batch_softmax},
            data=lambda training, global_batch: make_dataset(examples[training], config, training, global_batch),
        )
    )
    return model.get_layer("user_tower"), model.get_layer("item_tower"), vocab


def item_vectors(item_tower: Any, items: pd.DataFrame, config: RecommendationConfig, batch_size: int = 4096) -> np.ndarray:
    """Vectors of the whole catalog (new items included), computed once at export."""
    catalog = catalog_columns(items, config)
    parts = []
    for start in range(0, len(items), batch_size):
        batch = {name: tf.constant(values[start : start + batch_size]) for name, values in catalog.items()}
        parts.append(np.asarray(item_tower(batch, training=False)))
    return np.concatenate(parts).astype(np.float32)


def user_vectors(user_tower: Any, frame: pd.DataFrame, config: RecommendationConfig, batch_size: int = 4096) -> np.ndarray:
    names = ["user_id", "history", *config.columns.user_categorical]
    parts = []
    for start in range(0, len(frame), batch_size):
        chunk = frame.iloc[start : start + batch_size]
        batch = {name: tf.constant(chunk[name].astype(str).to_numpy(dtype=object)) for name in names}
        parts.append(np.asarray(user_tower(batch, training=False)))
    return np.concatenate(parts).astype(np.float32)


# ---- ranking --------------------------------------------------------------------------------------

# Numbers the ranker sees beside the categorical features. None is an id: ids let a ranker memorize
# its own training pairs, which is exactly what it must not do to re-order lists it has never seen.
RANK_NUMBERS = ("retrieval_score", "log_popularity", "last_similarity", "history_similarity")


def ranker_inputs(config: RecommendationConfig) -> dict[str, Any]:
    names = [*config.columns.user_categorical, *config.columns.item_categorical]
    inputs = {name: keras.Input(shape=(), dtype="string", name=name) for name in names}
    inputs.update({name: keras.Input(shape=(), dtype="float32", name=name) for name in RANK_NUMBERS})
    return inputs


def build_ranker(vocab: Vocabularies, config: RecommendationConfig, numbers: dict[str, np.ndarray]) -> Any:
    """DCN-v2: explicit feature crosses (keras-rs FeatureCross) then a deep layer, one logit out.
    ``numbers`` (training values of RANK_NUMBERS) adapt the normalization."""
    settings, towers = config.ranking, config.towers
    inputs = ranker_inputs(config)
    parts = _categorical(inputs, {**vocab.user_features, **vocab.item_features}, towers.feature_embedding_dim, "rank")
    stacked = keras.layers.Concatenate(name="rank_numbers")([keras.layers.Reshape((1,))(inputs[name]) for name in RANK_NUMBERS])
    normalization = keras.layers.Normalization(name="rank_normalization")
    normalization.adapt(np.stack([numbers[name] for name in RANK_NUMBERS], axis=1))
    parts.append(normalization(stacked))
    features = keras.layers.Concatenate(name="rank_features")(parts)
    crossed = features
    for index in range(settings.cross_layers):
        crossed = keras_rs.layers.FeatureCross(projection_dim=settings.projection_dim, name=f"feature_cross_{index}")(features, crossed)
    deep = keras.layers.Dense(settings.deep_units, activation="relu", name="rank_deep")(crossed)
    # A correction on top of retrieval's own logit, starting at zero: the untrained ranker orders a
    # list exactly as retrieval does, and training moves it only where the held-out lists say so.
    correction = keras.layers.Dense(1, kernel_initializer="zeros", name="rank_correction")(deep)
    retrieval_logit = keras.layers.Rescaling(1.0 / towers.temperature, name="retrieval_logit")(keras.layers.Reshape((1,))(inputs["retrieval_score"]))
    logit = keras.layers.Add(name="rank_logit", dtype="float32")([correction, retrieval_logit])  # float32 out under any policy
    return keras.Model(inputs, keras.layers.Reshape((), dtype="float32")(logit), name="dcn_ranker")


def split_ranking_holdout(data: TrainingData, per_user: int) -> tuple[TrainingData, pd.DataFrame]:
    """Each user's last ``per_user`` training interactions (with a history before them, and never a
    user's only one) are held out of the towers' training: retrieval on them then looks exactly like
    retrieval at serving time, with scores the towers did not memorize, and the ranker learns from
    those lists."""
    frame = data.interactions
    from_end = frame.groupby("user_id", sort=False).cumcount(ascending=False)
    held = (from_end < per_user) & (frame["history"] != "")
    rest = frame[~held].reset_index(drop=True)
    popularity = rest["item_id"].value_counts().reindex(data.items["item_id"]).fillna(0).to_numpy(dtype=np.float64)
    return TrainingData(rest, data.items, data.users, popularity), frame[held].reset_index(drop=True)


def rank_numbers(scores: np.ndarray, candidates: np.ndarray, history_rows: list[list[int]], vectors: np.ndarray, log_popularity: np.ndarray) -> dict[str, np.ndarray]:
    """RANK_NUMBERS for [users, candidates]: the same arithmetic as ``RecommenderModule._rank_numbers``."""
    candidate_vectors = vectors[candidates]  # [users, candidates, dim]
    last = np.zeros(candidates.shape, np.float32)
    best = np.zeros(candidates.shape, np.float32)
    for row, history in enumerate(history_rows):
        if history:
            similarities = candidate_vectors[row] @ vectors[history].T  # [candidates, history]
            last[row] = similarities[:, -1]
            best[row] = similarities.max(axis=1)
    return {
        "retrieval_score": scores.astype(np.float32),
        "log_popularity": log_popularity[candidates].astype(np.float32),
        "last_similarity": last,
        "history_similarity": best,
    }


def ranker_examples(
    held: pd.DataFrame, seen: pd.DataFrame, items: pd.DataFrame, user_tower: Any, vectors: np.ndarray, log_popularity: np.ndarray, config: RecommendationConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The lists retrieval returns for the held-out interactions (seen items excluded, as in serving),
    labelled 1 for the held-out item; lists that missed it teach nothing about order and are dropped.
    Flat arrays, list after list (``ranking.candidates`` rows each)."""
    row_of = pd.Index(items["item_id"])
    users = user_vectors(user_tower, held, config)
    scores = users @ vectors.T
    earlier = seen.groupby("user_id", sort=False)["item_id"].agg(list)
    for row, (user, history) in enumerate(zip(held["user_id"], held["history"])):
        excluded = row_of.get_indexer([*earlier.get(user, []), *history.split()])
        scores[row, excluded[excluded >= 0]] = -np.inf
    width = min(config.ranking.candidates, len(vectors))
    candidates = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    positive = row_of.get_indexer(held["item_id"])
    labels = (candidates == positive[:, None]).astype(np.float32)
    keep = labels.any(axis=1)
    candidates, labels, held, scores = candidates[keep], labels[keep], held[keep], scores[keep]
    history_rows = [
        [r for r in row_of.get_indexer(text.split()) if r >= 0][-config.towers.history_length :] for text in held["history"]
    ]
    numbers = rank_numbers(np.take_along_axis(scores, candidates, axis=1), candidates, history_rows, vectors, log_popularity)
    examples = {name: values.reshape(-1) for name, values in numbers.items()}
    for name in config.columns.user_categorical:
        examples[name] = np.repeat(held[name].astype(str).to_numpy(dtype=object), width)
    for name in config.columns.item_categorical:
        examples[name] = items[name].astype(str).to_numpy(dtype=object)[candidates.reshape(-1)]
    return examples, labels.reshape(-1)


def listwise_softmax(width: int) -> Any:
    """Cross-entropy of each list's held-out item against the rest of its list (rows come in lists of
    ``width`` consecutive candidates): the ranker is judged on order within a list, as it is used."""

    def loss(labels: Any, logits: Any) -> Any:
        return keras.losses.categorical_crossentropy(
            keras.ops.reshape(labels, [-1, width]), keras.ops.reshape(logits, [-1, width]), from_logits=True
        )

    return loss


def fit_ranker(held: pd.DataFrame, data: TrainingData, user_tower: Any, vectors: np.ndarray, vocab: Vocabularies, config: RecommendationConfig, trainer: Any) -> Any:
    """The ranker through the core's fit loop: ``ranking.epochs`` epochs over whole lists, no
    validation (the candidates compete on validation afterwards) and no early stopping."""
    from solutions_core.solution import KerasFit

    examples, labels = ranker_examples(held, data.interactions, data.items, user_tower, vectors, log_popularity_of(data.popularity), config)
    if not labels.sum():
        return None  # retrieval found none of the held-out items: nothing to learn an order from
    width = min(config.ranking.candidates, len(vectors))
    lists = {name: values.reshape(-1, width) for name, values in examples.items()}

    def flatten(features: dict[str, Any], targets: Any) -> tuple[dict[str, Any], Any]:
        return {name: tf.reshape(values, [-1]) for name, values in features.items()}, tf.reshape(targets, [-1])

    def dataset(training: bool, global_batch: int) -> Any:
        return (
            tf.data.Dataset.from_tensor_slices((lists, labels.reshape(-1, width)))
            .shuffle(len(labels) // width, seed=config.seed)  # whole lists: the loss compares within a list
            .batch(max(8, global_batch // width))
            .map(flatten)
        )

    return trainer.fit(
        KerasFit(
            "ranker",
            build=lambda: build_ranker(vocab, config, examples),
            compile=lambda training: {"optimizer": keras.optimizers.Adam(training.learning_rate), "loss": listwise_softmax(width)},
            data=dataset,
            validation=False,
            training=config.training.model_copy(update={"epochs": config.ranking.epochs, "early_stopping_patience": 0, "steps_per_epoch": None}),
        )
    )


def log_popularity_of(popularity: np.ndarray) -> np.ndarray:
    return np.log1p(np.asarray(popularity, dtype=np.float64)).astype(np.float32)


# ---- the fitted bundle and the exported module ------------------------------------------------------


@dataclass
class Recommender:
    """What the candidate's fit returns: everything the exported module needs."""

    user_tower: Any
    item_tower: Any
    vocab: Vocabularies
    items: pd.DataFrame
    item_vectors: np.ndarray
    popularity: np.ndarray
    ranker: Any | None = None

    def without_ranker(self) -> "Recommender":
        return Recommender(self.user_tower, self.item_tower, self.vocab, self.items, self.item_vectors, self.popularity, None)


def fit_recommender(data: TrainingData, valid: pd.DataFrame, config: RecommendationConfig, trainer: Any) -> Recommender:
    """The candidate's fit: the towers (on all training interactions but the ranker's held-out ones),
    the catalog's vectors, then the ranker on retrieval's lists for the held-out interactions."""
    tower_data, held = split_ranking_holdout(data, config.ranking.holdout_per_user) if config.ranking.enabled else (data, None)
    user_tower, item_tower, vocab = fit_towers(tower_data, valid, config, trainer)
    vectors = item_vectors(item_tower, data.items, config)
    ranker = None
    if held is not None and len(held):
        ranker = fit_ranker(held, tower_data, user_tower, vectors, vocab, config, trainer)
    return Recommender(user_tower, item_tower, vocab, data.items, vectors, data.popularity, ranker)


def request_specs(config: RecommendationConfig) -> dict[str, Any]:
    names = ["user_id", "history", "exclude", *config.columns.user_categorical]
    return {name: tf.TensorSpec([None], tf.string, name=name) for name in names}


def known_users_table(users: list[str]) -> Any:
    """user id -> 1 for the ids the towers were trained on, 0 for any other."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(users or [UNKNOWN], dtype=tf.string), tf.ones([max(1, len(users))], tf.int64)),
        default_value=0,
    )


def user_strategy(known_users: Any, inputs: dict[str, Any], has_history: Any, user_features: list[str]) -> tuple[Any, Any]:
    """(cold, strategy) per request row: "personalized" for a known id or a history,
    "features" when only the user's features are known, "popular" (cold) when nothing is."""
    known_id = known_users.lookup(inputs["user_id"]) > 0
    has_features = tf.zeros_like(known_id)
    for name in user_features:
        has_features = has_features | (inputs[name] != "")
    personalized = known_id | has_history
    cold = ~personalized & ~has_features
    return cold, tf.where(personalized, "personalized", tf.where(cold, "popular", "features"))


class RecommenderModule(tf.Module):
    """The exported model: a user -> ``item_ids`` [batch, top_k] and ``scores``, best first, plus the
    ``strategy`` used per user: "personalized" (known id or a history), "features" (only the user's
    features are known) or "popular" (nothing is: the cold-start fallback).

    Inputs, all strings: ``user_id``; ``history`` (recent item ids, space-separated, oldest first;
    "" for none); ``exclude`` (item ids never to return, space-separated, e.g. everything seen); and the
    user features in ``columns.user_categorical`` ("" when unknown).
    """

    def __init__(self, fitted: Recommender, config: RecommendationConfig, name: str = "recommendation"):
        super().__init__(name=name)
        from recommendation.index import build_index

        settings = config.index
        self.user_tower = fitted.user_tower
        self.ranker = fitted.ranker
        catalog_size = len(fitted.items)
        self.top_k = min(config.top_k, catalog_size)
        self.retrieve_k = min(max(self.top_k, config.ranking.candidates if fitted.ranker is not None else 0), catalog_size)
        self.index = build_index(
            fitted.item_vectors, settings.kind, clusters=settings.clusters, probe=settings.probe, exact_limit=settings.exact_limit, seed=config.seed
        )
        self.item_ids = tf.Variable(fitted.items["item_id"].astype(str).to_numpy(dtype=object), dtype=tf.string, trainable=False, name="item_ids")
        self.item_features = {
            column: tf.Variable(fitted.items[column].astype(str).to_numpy(dtype=object), dtype=tf.string, trainable=False, name=f"item_{column}")
            for column in config.columns.item_categorical
        }
        share = (fitted.popularity + 1.0) / (fitted.popularity + 1.0).sum()
        self.popularity = tf.Variable(share.astype(np.float32), trainable=False, name="popularity")
        self.item_rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(fitted.items["item_id"].astype(str).to_numpy(dtype=object)), tf.range(catalog_size, dtype=tf.int64)
            ),
            default_value=-1,
        )
        self.known_users = known_users_table(fitted.vocab.users)
        self.user_features = list(config.columns.user_categorical)
        self.history_length = config.towers.history_length
        if fitted.ranker is not None:  # the ranker's similarity features need the item vectors themselves
            self.item_vectors = tf.Variable(fitted.item_vectors, trainable=False, name="item_vectors")
            self.log_popularity = tf.Variable(log_popularity_of(fitted.popularity), trainable=False, name="log_popularity")
        self.serve = tf.function(self._serve, input_signature=[request_specs(config)])

    def _rows(self, space_separated: Any) -> Any:
        """Space-separated ids -> [batch, n] catalog rows, -1 for padding and unknown ids."""
        tokens = tf.strings.split(space_separated)
        rows = tf.ragged.map_flat_values(self.item_rows.lookup, tokens)
        return rows.to_tensor(default_value=-1)

    def _serve(self, inputs: dict[str, Any]) -> dict[str, Any]:
        user_inputs_ = {name: inputs[name] for name in ["user_id", "history", *self.user_features]}
        queries = self.user_tower(user_inputs_, training=False)
        excluded = self._rows(inputs["exclude"])
        scores, rows = self.index.search(queries, self.retrieve_k, excluded)
        if self.ranker is not None:
            scores, rows = self._rerank(inputs, scores, rows)
        scores, rows = scores[:, : self.top_k], rows[:, : self.top_k]

        has_history = tf.reduce_any(self._rows(inputs["history"]) >= 0, axis=1)
        cold, strategy = user_strategy(self.known_users, inputs, has_history, self.user_features)
        popular_scores, popular_rows = tf.cond(
            tf.reduce_any(cold), lambda: self._popular(excluded, tf.shape(queries)[0]), lambda: (tf.zeros_like(scores), tf.zeros_like(rows))
        )
        scores = tf.where(cold[:, None], popular_scores, scores)
        rows = tf.where(cold[:, None], popular_rows, rows)
        valid = rows >= 0
        item_ids = tf.where(valid, tf.gather(self.item_ids, tf.maximum(rows, 0)), "")
        return {"item_ids": item_ids, "scores": tf.where(valid, scores, 0.0), "strategy": strategy}

    def _rerank(self, inputs: dict[str, Any], scores: Any, rows: Any) -> tuple[Any, Any]:
        """Re-score every retrieved candidate of users with a history with the ranker and re-sort
        (padding stays last)."""
        batch, width = tf.shape(rows)[0], tf.shape(rows)[1]
        valid = rows >= 0
        safe_rows = tf.maximum(rows, 0)
        flat = {name: tf.reshape(tf.repeat(inputs[name][:, None], width, axis=1), [-1]) for name in self.user_features}
        for name, values in self.item_features.items():
            flat[name] = tf.reshape(tf.gather(values, safe_rows), [-1])
        numbers = self._rank_numbers(inputs["history"], tf.where(valid, scores, 0.0), safe_rows)
        flat.update({name: tf.reshape(values, [-1]) for name, values in numbers.items()})
        # Logits, not probabilities: they include retrieval's logit (cosine / temperature), and a
        # sigmoid would saturate to 1.0 at the top of the list and tie the best candidates.
        ranked = tf.reshape(self.ranker(flat, training=False), [batch, width])
        # The ranker learned only from users with a history (its similarity features need one): a user
        # without any (new, or known by features alone) keeps retrieval's order and scores.
        has_history = tf.reduce_any(self._rows(inputs["history"]) >= 0, axis=1)
        ranked = tf.where(has_history[:, None], ranked, scores)
        ranked = tf.where(valid, ranked, -np.inf)
        order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
        return tf.gather(ranked, order, batch_dims=1), tf.gather(rows, order, batch_dims=1)

    def _rank_numbers(self, history: Any, scores: Any, rows: Any) -> dict[str, Any]:
        """RANK_NUMBERS in the graph: the same arithmetic as ``rank_numbers`` at training time."""
        tokens = tf.strings.split(history)
        history_rows = tf.ragged.map_flat_values(self.item_rows.lookup, tokens)
        history_rows = tf.ragged.boolean_mask(history_rows, history_rows >= 0)[:, -self.history_length :]
        count = history_rows.row_lengths()
        history_rows = history_rows.to_tensor(default_value=0)
        # At least one column: a batch of only new users has no history at all, and the gather of
        # the last item below needs an index to point at (masked out by has_history).
        history_rows = tf.pad(history_rows, [[0, 0], [0, tf.maximum(1 - tf.shape(history_rows)[1], 0)]])
        present = tf.sequence_mask(count, tf.shape(history_rows)[1])
        history_vectors = tf.gather(self.item_vectors, history_rows)  # [batch, history, dim]
        candidate_vectors = tf.gather(self.item_vectors, rows)  # [batch, candidates, dim]
        similarities = tf.einsum("bcd,bhd->bch", candidate_vectors, history_vectors)
        has_history = (count > 0)[:, None]
        best = tf.reduce_max(tf.where(present[:, None, :], similarities, -np.inf), axis=2)
        last_index = tf.maximum(count - 1, 0)
        last = tf.gather(similarities, last_index, axis=2, batch_dims=1)
        return {
            "retrieval_score": scores,
            "log_popularity": tf.gather(self.log_popularity, rows),
            "last_similarity": tf.where(has_history, last, 0.0),
            "history_similarity": tf.where(has_history, best, 0.0),
        }

    def _popular(self, excluded: Any, batch: Any) -> tuple[Any, Any]:
        """Most popular items per row, minus that row's exclusions."""
        share = tf.tile(self.popularity[None, :], [batch, 1])
        hits = tf.where(excluded >= 0)
        share = tf.tensor_scatter_nd_update(
            share, tf.stack([hits[:, 0], tf.gather_nd(excluded, hits)], axis=1), tf.fill([tf.shape(hits)[0]], -1.0)
        )
        top = tf.math.top_k(share, k=self.top_k)
        rows = tf.where(top.values >= 0, tf.cast(top.indices, tf.int64), -1)
        return top.values, rows


def serving_module(fitted: Recommender, config: RecommendationConfig) -> RecommenderModule:
    return RecommenderModule(fitted, config)
