"""Features, defined once and run inside the exported graph.

Two kinds of features feed the models:
- card history (velocity, amount vs the card's usual, time since last, distance from last, new device):
  these need the card's earlier transactions, so they are computed outside the graph — offline over the
  whole table by ``history.add_history_features``, online per request by ``history.OnlineHistoryStore`` —
  and arrive as model inputs. A test proves both paths agree.
- per-transaction derivations (hour and weekday cycles, log amount, distance from the billing address):
  ``derive_features`` is a TensorFlow function used by every model (Keras layers, the YDF wrapper and the
  scikit-learn baselines all call it), so training and serving cannot skew.

A table without a timestamp, an entity id (card) or an amount simply has fewer features: each derivation
is made only from the columns it needs, and nothing is invented for the ones that are missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraud_detection.config import FraudConfig
from fraud_detection.history import HISTORY_FEATURES
from solutions_core.contracts import Contract

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class FeatureSpec:
    """What the exported model takes (``inputs``: name -> 'string' | 'float' | 'timestamp') and what
    the models see after ``derive_features`` (``numeric`` and ``categorical`` names)."""

    inputs: dict[str, str]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    timestamp: str | None
    amount: str | None
    coordinates: tuple[str, str, str, str] | None  # merchant lat, lon, home lat, lon
    history: bool = True  # card-history features (they need a timestamp, a card id and an amount)
    nullable: tuple[str, ...] = ()  # numeric inputs the contract says may be missing

    def tensor_specs(self) -> dict[str, "tf.TensorSpec"]:
        import tensorflow as tf

        dtypes = {"string": tf.string, "float": tf.float32, "timestamp": tf.float64}
        return {name: tf.TensorSpec([None], dtypes[kind], name=name) for name, kind in self.inputs.items()}


ROLE_TYPES = {"timestamp": ("timestamp",), "amount": ("float", "integer"), "label": None}


def check_roles(contract: Contract, config: FraudConfig) -> None:
    """Every role the config names is a contract column of a fitting type (so ``validate`` checks it
    in the data); a ValueError names the role, the column and the fix."""
    columns = config.columns
    for role in type(columns).model_fields:
        name = getattr(columns, role)
        if name is None:
            if role == "label":
                raise ValueError("columns.label: the label role is required; name the contract's label column.")
            continue
        if name not in contract.columns:
            optional = "" if role == "label" else f", or null if your data has no {role}"
            raise ValueError(
                f"columns.{role}: the config maps the {role!r} role to column {name!r}, which contract "
                f"{contract.name!r} lacks. Set columns.{role} to one of: {', '.join(contract.columns)}{optional}."
            )
        wanted = ROLE_TYPES.get(role)
        if wanted and contract.columns[name].type not in wanted:
            raise ValueError(
                f"columns.{role}: column {name!r} has type {contract.columns[name].type} in contract "
                f"{contract.name!r}; the {role} role needs {' or '.join(wanted)}."
            )
    if isinstance(config.missed_fraud_cost, str) and config.missed_fraud_cost not in contract.columns:
        raise ValueError(
            f"missed_fraud_cost: column {config.missed_fraud_cost!r} is not in contract {contract.name!r}; "
            f"use a number or one of: {', '.join(contract.columns)}."
        )


def build_feature_spec(contract: Contract, config: FraudConfig) -> FeatureSpec:
    check_roles(contract, config)
    columns = config.columns
    history = all(getattr(columns, role) is not None for role in ("timestamp", "card", "amount"))
    inputs: dict[str, str] = {}
    for spec in contract.request_columns():
        if spec.name in config.exclude_features or spec.role != "feature" or spec.name == columns.label:
            continue
        if spec.type == "timestamp":
            inputs[spec.name] = "timestamp"
        elif spec.type == "string":
            inputs[spec.name] = "string"
        else:
            inputs[spec.name] = "float"
    if columns.timestamp is not None:
        inputs[columns.timestamp] = "timestamp"
    if columns.amount is not None:
        inputs[columns.amount] = "float"
    if history:
        for name in HISTORY_FEATURES:
            inputs[name] = "float"
    coordinate_names = (columns.merchant_lat, columns.merchant_lon, columns.home_lat, columns.home_lon)
    coordinates = coordinate_names if all(n and n in contract.columns for n in coordinate_names) else None
    if coordinates:
        for name in coordinates:
            inputs[name] = "float"
    numeric = [n for n, kind in inputs.items() if kind == "float" and n not in (coordinates or ())]
    if columns.amount is not None:
        numeric.append("log_amount")
    if columns.timestamp is not None:
        numeric += ["hour_sin", "hour_cos", "weekday_sin", "weekday_cos"]
    if coordinates:
        numeric.append("distance_from_home_km")
    if not numeric and not any(kind == "string" for kind in inputs.values()):
        raise ValueError(f"contract {contract.name!r} leaves the model no feature: declare feature columns (role: feature) or fewer exclude_features.")
    categorical = [n for n, kind in inputs.items() if kind == "string"]
    nullable = tuple(n for n in numeric if n in contract.columns and contract.columns[n].nullable)
    return FeatureSpec(
        inputs=inputs,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        timestamp=columns.timestamp,
        amount=columns.amount,
        coordinates=coordinates,
        history=history,
        nullable=nullable,
    )


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    import tensorflow as tf

    to_radians = math.pi / 180.0
    lat1, lon1, lat2, lon2 = (tf.cast(v, tf.float32) * to_radians for v in (lat1, lon1, lat2, lon2))
    a = tf.sin((lat2 - lat1) / 2) ** 2 + tf.cos(lat1) * tf.cos(lat2) * tf.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * tf.asin(tf.sqrt(tf.clip_by_value(a, 0.0, 1.0)))


def derive_features(inputs: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """Raw model inputs -> the numeric (float32; missing or infinite values as NaN, which the trees and
    the Keras preprocessing each handle) and categorical (string) features."""
    import tensorflow as tf

    derived: dict[str, Any] = {}
    if spec.timestamp is not None:
        # Epoch seconds stay float64 until the day is taken out (float32 would round them to ~128 s).
        seconds = tf.cast(inputs[spec.timestamp], tf.float64)
        day_fraction = tf.cast(tf.math.floormod(seconds, 86400.0) / 86400.0, tf.float32)
        # 1970-01-01 was a Thursday: shift so Monday is 0.
        weekday = tf.cast(tf.math.floormod(tf.math.floordiv(seconds, 86400.0) + 3.0, 7.0) / 7.0, tf.float32)
        derived.update(
            hour_sin=tf.sin(2 * math.pi * day_fraction),
            hour_cos=tf.cos(2 * math.pi * day_fraction),
            weekday_sin=tf.sin(2 * math.pi * weekday),
            weekday_cos=tf.cos(2 * math.pi * weekday),
        )
    if spec.amount is not None:
        derived["log_amount"] = tf.math.log1p(tf.maximum(tf.cast(inputs[spec.amount], tf.float32), 0.0))
    if spec.coordinates:
        merchant_lat, merchant_lon, home_lat, home_lon = (inputs[n] for n in spec.coordinates)
        derived["distance_from_home_km"] = haversine_km(home_lat, home_lon, merchant_lat, merchant_lon)
    features = {}
    for name in spec.numeric:
        value = derived[name] if name in derived else tf.cast(inputs[name], tf.float32)
        features[name] = tf.where(tf.math.is_finite(value), value, tf.fill(tf.shape(value), float("nan")))
    for name in spec.categorical:
        features[name] = inputs[name]
    return features


def derived_frame(frame: Any, spec: FeatureSpec, batch_size: int = 65536) -> Any:
    """Run ``derive_features`` over a table (for YDF training and the baselines) -> a DataFrame."""
    import pandas as pd
    import tensorflow as tf

    from solutions_core.export import frame_to_inputs

    import numpy as np

    inputs = frame_to_inputs(frame, spec.tensor_specs())
    parts: dict[str, list[Any]] = {}
    for start in range(0, len(frame), batch_size):
        batch = {name: tf.constant(values[start : start + batch_size]) for name, values in inputs.items()}
        for name, tensor in derive_features(batch, spec).items():  # eager: vectorized ops, no tracing
            parts.setdefault(name, []).append(tensor.numpy())

    columns = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    result = pd.DataFrame(columns)
    for name in spec.categorical:
        result[name] = result[name].map(lambda b: b.decode() if isinstance(b, bytes) else b)
    return result
