"""Features, defined once and run inside the exported graph.

Two kinds of features feed the models:
- card history (velocity, amount vs the card's usual, time since last, distance from last, new device):
  these need the card's earlier transactions, so they are computed outside the graph — offline over the
  whole table by ``history.add_history_features``, online per request by ``history.OnlineHistoryStore`` —
  and arrive as model inputs. A test proves both paths agree.
- per-transaction derivations (hour and weekday cycles, log amount, distance from the billing address):
  ``derive_features`` is a TensorFlow function used by every model (Keras layers, the YDF wrapper and the
  scikit-learn baselines all call it), so training and serving cannot skew.
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
    timestamp: str
    amount: str
    coordinates: tuple[str, str, str, str] | None  # merchant lat, lon, home lat, lon

    def tensor_specs(self) -> dict[str, "tf.TensorSpec"]:
        import tensorflow as tf

        dtypes = {"string": tf.string, "float": tf.float32, "timestamp": tf.float64}
        return {name: tf.TensorSpec([None], dtypes[kind], name=name) for name, kind in self.inputs.items()}


def build_feature_spec(contract: Contract, config: FraudConfig) -> FeatureSpec:
    columns = config.columns
    for role in ("timestamp", "amount", "card", "label"):
        name = getattr(columns, role)
        if name not in contract.columns:
            raise ValueError(
                f"Config maps the {role!r} role to column {name!r}, which contract {contract.name!r} lacks. "
                f"Set columns.{role} in your config to one of: {', '.join(contract.columns)}."
            )
    inputs: dict[str, str] = {}
    for spec in contract.request_columns():
        if spec.name in config.exclude_features or spec.role != "feature":
            continue
        if spec.type == "timestamp":
            inputs[spec.name] = "timestamp"
        elif spec.type == "string":
            inputs[spec.name] = "string"
        else:
            inputs[spec.name] = "float"
    inputs[columns.timestamp] = "timestamp"
    inputs[columns.amount] = "float"
    for name in HISTORY_FEATURES:
        inputs[name] = "float"
    coordinate_names = (columns.merchant_lat, columns.merchant_lon, columns.home_lat, columns.home_lon)
    coordinates = coordinate_names if all(n and n in contract.columns for n in coordinate_names) else None
    if coordinates:
        for name in coordinates:
            inputs[name] = "float"
    numeric = [n for n, kind in inputs.items() if kind == "float" and n not in (coordinates or ())]
    numeric += ["log_amount", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos"]
    if coordinates:
        numeric.append("distance_from_home_km")
    categorical = [n for n, kind in inputs.items() if kind == "string"]
    return FeatureSpec(
        inputs=inputs,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        timestamp=columns.timestamp,
        amount=columns.amount,
        coordinates=coordinates,
    )


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    import tensorflow as tf

    to_radians = math.pi / 180.0
    lat1, lon1, lat2, lon2 = (tf.cast(v, tf.float32) * to_radians for v in (lat1, lon1, lat2, lon2))
    a = tf.sin((lat2 - lat1) / 2) ** 2 + tf.cos(lat1) * tf.cos(lat2) * tf.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * tf.asin(tf.sqrt(tf.clip_by_value(a, 0.0, 1.0)))


def derive_features(inputs: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """Raw model inputs -> the numeric (float32, NaN replaced by 0) and categorical (string) features."""
    import tensorflow as tf

    seconds = tf.cast(inputs[spec.timestamp], tf.float64)
    day_fraction = tf.cast(tf.math.floormod(seconds, 86400.0) / 86400.0, tf.float32)
    # 1970-01-01 was a Thursday: shift so Monday is 0.
    weekday = tf.cast(tf.math.floormod(tf.math.floordiv(seconds, 86400.0) + 3.0, 7.0) / 7.0, tf.float32)
    derived: dict[str, Any] = {
        "log_amount": tf.math.log1p(tf.maximum(tf.cast(inputs[spec.amount], tf.float32), 0.0)),
        "hour_sin": tf.sin(2 * math.pi * day_fraction),
        "hour_cos": tf.cos(2 * math.pi * day_fraction),
        "weekday_sin": tf.sin(2 * math.pi * weekday),
        "weekday_cos": tf.cos(2 * math.pi * weekday),
    }
    if spec.coordinates:
        merchant_lat, merchant_lon, home_lat, home_lon = (inputs[n] for n in spec.coordinates)
        derived["distance_from_home_km"] = haversine_km(home_lat, home_lon, merchant_lat, merchant_lon)
    features = {}
    for name in spec.numeric:
        value = derived[name] if name in derived else tf.cast(inputs[name], tf.float32)
        features[name] = tf.where(tf.math.is_nan(value), tf.zeros_like(value), value)
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
