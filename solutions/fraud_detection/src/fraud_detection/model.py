"""The fraud models, top to bottom.

1. A Keras model: raw transaction inputs → in-graph derived features → normalization and embeddings
   → an MLP → fraud probability.
2. YDF gradient boosted trees on the same derived features, exported to TensorFlow through ydf-tf.
3. ``FraudServingModule``: what gets exported. It takes raw inputs (transaction fields plus card
   history), returns ``fraud_probability`` and the ``decision`` at a threshold tuned on validation data
   (stored as a variable in the SavedModel, so the API and TF Serving return the same decision).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from fraud_detection.config import FraudConfig
from fraud_detection.features import FeatureSpec, derive_features, derived_frame
from solutions_core.export import frame_to_inputs
from solutions_core.solution import TrainingConfig


class DeriveFeatures(keras.layers.Layer):
    """Runs ``derive_features`` inside the Keras graph (so it is part of the exported model)."""

    def __init__(self, spec: FeatureSpec, **kwargs: Any):
        super().__init__(trainable=False, **kwargs)
        self.spec = spec

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return derive_features(inputs, self.spec)


def build_keras_model(train: pd.DataFrame, spec: FeatureSpec, config: FraudConfig) -> keras.Model:
    """A Functional model over raw inputs; normalization and vocabularies are adapted on ``train``."""
    settings = config.keras_model
    dtypes = {"string": "string", "float": "float32", "timestamp": "float64"}
    inputs = {name: keras.Input(shape=(), dtype=dtypes[kind], name=name) for name, kind in spec.inputs.items()}
    derived = DeriveFeatures(spec, name="derive_features")(inputs)

    train_derived = derived_frame(train, spec)
    numeric_matrix = train_derived[list(spec.numeric)].to_numpy(dtype="float32")
    # Heavy-tailed counts and amounts: a signed log keeps the normalizer's statistics meaningful.
    numeric_matrix = np.sign(numeric_matrix) * np.log1p(np.abs(numeric_matrix))
    normalizer = keras.layers.Normalization(axis=-1, name="numeric_normalization")
    normalizer.adapt(numeric_matrix)
    stacked = keras.layers.Lambda(
        lambda tensors: tf.stack([tf.sign(t) * tf.math.log1p(tf.abs(t)) for t in tensors], axis=-1),
        name="signed_log",
    )([derived[name] for name in spec.numeric])
    parts = [normalizer(stacked)]

    for name in spec.categorical:
        counts = train_derived[name].value_counts()
        vocabulary = [str(v) for v in counts.index[: settings.max_vocabulary] if str(v) != ""]
        lookup = keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1, name=f"{name}_lookup")
        embedding = keras.layers.Embedding(len(vocabulary) + 1, settings.embedding_dim, name=f"{name}_embedding")
        parts.append(embedding(lookup(derived[name])))

    hidden = keras.layers.Concatenate(name="features")(parts)
    for index, units in enumerate(settings.hidden_units):
        hidden = keras.layers.Dense(units, activation="relu", name=f"dense_{index}")(hidden)
        hidden = keras.layers.Dropout(settings.dropout_rate, name=f"dropout_{index}")(hidden)
    base_rate = float(np.clip(train[config.columns.label].mean(), 1e-5, 0.5))
    probability = keras.layers.Dense(
        1,
        activation="sigmoid",
        # Start at the base rate so the first epochs are not spent unlearning a 50 % prior.
        bias_initializer=keras.initializers.Constant(math.log(base_rate / (1 - base_rate))),
        dtype="float32",  # keep the output in float32 under mixed precision
        name="fraud_probability",
    )(hidden)
    return keras.Model(inputs, probability, name="fraud_mlp")


def keras_compile_options(training: TrainingConfig) -> dict[str, Any]:
    return {
        "optimizer": keras.optimizers.Adam(learning_rate=training.learning_rate),
        "loss": keras.losses.BinaryCrossentropy(),
        "metrics": [keras.metrics.AUC(curve="PR", name="auprc")],
    }


def make_dataset(frame: pd.DataFrame, spec: FeatureSpec, label: str, training: bool, batch_size: int) -> tf.data.Dataset:
    features = frame_to_inputs(frame, spec.tensor_specs())
    labels = frame[label].to_numpy(dtype="float32")
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    if training:
        dataset = dataset.shuffle(min(len(frame), 100_000), seed=0, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_gradient_boosted_trees(
    train: pd.DataFrame, valid: pd.DataFrame, spec: FeatureSpec, config: FraudConfig, verbose: int = 0
) -> Any:
    """YDF GBT on the same derived features the Keras model sees; validation drives early stopping."""
    import ydf

    settings = config.gradient_boosted_trees
    label = config.columns.label
    train_table = derived_frame(train, spec).assign(**{label: train[label].to_numpy()})
    valid_table = derived_frame(valid, spec).assign(**{label: valid[label].to_numpy()})
    learner = ydf.GradientBoostedTreesLearner(
        label=label,
        task=ydf.Task.CLASSIFICATION,
        num_trees=settings.num_trees,
        max_depth=settings.max_depth,
        shrinkage=settings.shrinkage,
        min_examples=settings.min_examples,
        early_stopping=settings.early_stopping,
        random_seed=config.seed,
    )
    return learner.train(train_table, valid=valid_table, verbose=1 if verbose else 0)


class FraudServingModule(tf.Module):
    """The exported model: raw inputs → ``fraud_probability`` (float32) and ``decision`` (int64).

    ``scorers`` are Keras models (raw inputs) and/or YDF tf.Modules (derived features); with several,
    the probability is their average (a blend).
    """

    def __init__(self, spec: FeatureSpec, scorers: list[Any], threshold: float = 0.5, name: str = "fraud_detection"):
        super().__init__(name=name)
        self.scorers = list(scorers)
        self.threshold = tf.Variable(threshold, dtype=tf.float32, trainable=False, name="threshold")
        self._spec = spec

        def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            derived = None
            probabilities = []
            for scorer in self.scorers:
                if isinstance(scorer, keras.Model):
                    probabilities.append(tf.reshape(tf.cast(scorer(inputs, training=False), tf.float32), [-1]))
                else:
                    derived = derived if derived is not None else derive_features(inputs, self._spec)
                    probabilities.append(tf.reshape(tf.cast(scorer(derived), tf.float32), [-1]))
            probability = tf.add_n(probabilities) / float(len(probabilities))
            return {
                "fraud_probability": probability,
                "decision": tf.cast(probability >= self.threshold, tf.int64),
            }

        self.serve = tf.function(serve, input_signature=[spec.tensor_specs()])


def serving_module(spec: FeatureSpec, fitted: Any) -> FraudServingModule:
    """Wrap one fitted model (or a list of them, for a blend) for export."""
    models = fitted if isinstance(fitted, list) else [fitted]
    scorers = [m if isinstance(m, keras.Model) else m.to_tensorflow_function() for m in models]
    return FraudServingModule(spec, scorers)
