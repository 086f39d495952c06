"""Export and reload serving modules, and turn tables into the tensors their signatures take.

Every model, Keras or not, is exported as a ``tf.Module`` whose ``serving_default`` signature takes raw
features by name, so the same SavedModel runs in our server, in TF Serving, and in a notebook.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SIGNATURE = "serving_default"


def save_module(module: Any, path: Path) -> Path:
    import tensorflow as tf

    path = Path(path)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve})
    return path


def load_signature(path: Path, custom_ops: Iterable[str] = ()) -> Any:
    """Load a SavedModel's serving signature, first importing modules that register its custom ops."""
    import tensorflow as tf

    for module_name in custom_ops:
        importlib.import_module(module_name)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures[SIGNATURE]
    signature._loaded_object = loaded  # keep the resources (tables, trees) alive with the function
    return signature


def input_specs(function: Any) -> dict[str, Any]:
    """name -> tf.TensorSpec of a signature or a tf.function with an input signature."""
    structured = getattr(function, "structured_input_signature", None)
    if structured is None:
        structured = (function.input_signature, {})
    args, kwargs = structured
    specs = dict(kwargs)
    for arg in args:
        if isinstance(arg, Mapping):
            specs.update(arg)
    return specs


def decode_b64(value: Any) -> Any:
    """TF Serving's JSON encoding of binary strings: ``{"b64": "<base64>"}`` -> bytes."""
    import base64
    import binascii

    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ValueError('binary values must be {"b64": "<base64 string>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as problem:
            raise ValueError(f"invalid base64 data ({problem})") from problem
    return value


def to_tensor_value(values: Any, dtype: Any, shape: Any = None) -> np.ndarray:
    """Convert a column (pandas Series, list or array) to the numpy array a spec wants.

    Timestamps become epoch seconds for numeric specs; ``{"b64": ...}`` values become bytes for string
    specs; missing strings become "" and missing numbers NaN (the model's preprocessing handles both).
    A spec of rank > 1 (e.g. images ``[None, H, W, C]``) takes one nested list or array per row; a row
    of the wrong shape is a ValueError naming the expected shape.
    """
    import tensorflow as tf

    rank = len(shape) if shape is not None and shape.rank is not None else 1
    if rank > 1:
        try:
            array = np.asarray([np.asarray(row, dtype=dtype.as_numpy_dtype) for row in values])
        except (TypeError, ValueError) as problem:
            raise ValueError(f"expected nested lists of numbers ({problem})") from problem
        expected = [d for d in shape.as_list()[1:]]
        if array.ndim != rank or any(e is not None and e != a for e, a in zip(expected, array.shape[1:])):
            wanted = "x".join("?" if d is None else str(d) for d in expected)
            raise ValueError(f"each value must have shape {wanted}, got {'x'.join(map(str, array.shape[1:]))}")
        return array
    series = values if isinstance(values, pd.Series) else pd.Series(list(values) if not isinstance(values, np.ndarray) else values)
    if dtype == tf.string:
        decoded = series.map(decode_b64) if series.dtype == object else series
        return decoded.where(decoded.notna(), "").map(lambda v: v if isinstance(v, bytes) else str(v)).to_numpy(dtype=object)
    if pd.api.types.is_datetime64_any_dtype(series):
        seconds = series.astype("datetime64[ns]").astype("int64") / 1e9
        return seconds.to_numpy(dtype=dtype.as_numpy_dtype)
    if series.dtype == object and len(series) and isinstance(series.iloc[0], str):
        parsed = pd.to_datetime(series, errors="coerce", utc=False)
        if parsed.notna().all():
            return (parsed.astype("datetime64[ns]").astype("int64") / 1e9).to_numpy(dtype=dtype.as_numpy_dtype)
    numeric = pd.to_numeric(series, errors="coerce")
    if dtype.is_integer:
        return numeric.fillna(0).to_numpy(dtype=dtype.as_numpy_dtype)
    return numeric.to_numpy(dtype=dtype.as_numpy_dtype)


def frame_to_inputs(frame: pd.DataFrame, specs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [name for name in specs if name not in frame.columns]
    if missing:
        raise ValueError(f"The model needs columns that the data lacks: {', '.join(missing)}.")
    return {name: to_tensor_value(frame[name], spec.dtype, spec.shape) for name, spec in specs.items()}


def predict_frame(function: Any, frame: pd.DataFrame, batch_size: int = 8192) -> dict[str, np.ndarray]:
    """Run a signature (or the module's serve function) over a table in batches -> output arrays."""
    import tensorflow as tf

    specs = input_specs(function)
    inputs = frame_to_inputs(frame, specs)
    is_signature = hasattr(function, "structured_outputs") and not hasattr(function, "input_signature")
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(frame), batch_size):
        batch = {name: tf.constant(array[start : start + batch_size]) for name, array in inputs.items()}
        outputs = function(**batch) if is_signature else function(batch)
        for name, tensor in outputs.items():
            chunks.setdefault(name, []).append(np.asarray(tensor))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def max_abs_difference(left: Mapping[str, np.ndarray], right: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference between matching numeric outputs (inf if the keys differ)."""
    if set(left) != set(right):
        return float("inf")
    worst = 0.0
    for name in left:
        a, b = np.asarray(left[name]), np.asarray(right[name])
        if a.shape != b.shape:
            return float("inf")
        if a.dtype.kind in "OSU" or b.dtype.kind in "OSU":
            # JSON carries text where TensorFlow returns bytes: compare them as text.
            def text(values: np.ndarray) -> np.ndarray:
                return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])(values)

            if not np.array_equal(text(a), text(b)):
                return float("inf")
            continue
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)))
    return worst


def convert_to_tflite(saved_model_dir: Path, out_path: Path, *, quantize: str = "dynamic", representative_data: Any = None) -> Path:
    """Convert a SavedModel to TFLite: ``float32``, ``float16``, ``dynamic`` (int8 weights) or
    ``int8`` (full integer; needs ``representative_data``: a callable yielding input lists).

    Models built on custom TF ops (e.g. YDF trees) cannot run on TFLite; that is a ValueError that says so.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if quantize in ("dynamic", "int8", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if representative_data is None:
            raise ValueError("Full-integer int8 conversion needs representative data from training.")
        converter.representative_dataset = representative_data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        flatbuffer = converter.convert()
    except Exception as problem:  # the converter raises several types; all mean "not convertible"
        raise ValueError(
            f"{saved_model_dir} cannot be converted to TFLite ({type(problem).__name__}: "
            f"{str(problem).splitlines()[0][:300]}). Models that use custom ops (YDF trees) serve only as SavedModels."
        ) from problem
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flatbuffer)
    return out_path
