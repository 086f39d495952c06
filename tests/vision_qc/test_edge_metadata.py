"""Metadata embedded in .tflite files: it round-trips, leaves the converter's entries and the model's
behaviour untouched, replaces rather than duplicates, and reads on a device without TensorFlow.

The models are tiny Keras networks converted once per module (float32 and full-integer int8), so the
checks run on real converter output, metadata entries included, in a few seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from vision_qc.edge_metadata import METADATA_NAME, embed_metadata, list_metadata, read_metadata

INPUT_SHAPE = (1, 8, 8, 3)

METADATA = {
    "labels": ["good", "defect"],
    "threshold": 0.4375,
    "input": {"normalization": {"scale": 1 / 127.5, "offset": -1.0}, "shape": list(INPUT_SHAPE)},
    "image_size": 8,
    "note": "Prüfung — 検査 ✓",
    "version": {"model": 3, "app": "vision_qc", "created_at": None, "nested": [[1, 2], {"deep": True}]},
}


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """quantization -> converter output of the same tiny network (no metadata of ours yet)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE[1:])
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    features = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(1, activation="sigmoid")(features)
    network = keras.Model(inputs, outputs)

    float_converter = tf.lite.TFLiteConverter.from_keras_model(network)
    int8_converter = tf.lite.TFLiteConverter.from_keras_model(network)
    int8_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    int8_converter.representative_dataset = lambda: (
        [rng.random(INPUT_SHAPE, dtype=np.float32)] for _ in range(8)
    )
    int8_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    int8_converter.inference_input_type = tf.int8
    int8_converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # "Statistics for quantized inputs were expected": not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        return {"float32": float_converter.convert(), "int8": int8_converter.convert()}


def run_model(content: bytes, image: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def images_for(content: bytes) -> list[np.ndarray]:
    """A few inputs in the model's own input dtype (int8 for the full-integer model)."""
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=content).get_input_details()[0]
    rng = np.random.default_rng(1)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        return [rng.integers(info.min, info.max, size=INPUT_SHAPE, endpoint=True).astype(detail["dtype"])
                for _ in range(3)]
    return [rng.random(INPUT_SHAPE, dtype=np.float32) for _ in range(3)]


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_round_trip_keeps_converter_entries_and_outputs(models, quantization):
    original = models[quantization]
    converter_entries = list_metadata(original)
    assert converter_entries and METADATA_NAME not in converter_entries  # e.g. min_runtime_version

    embedded = embed_metadata(original, METADATA)

    assert read_metadata(embedded) == METADATA
    assert read_metadata(embedded)["note"] == "Prüfung — 検査 ✓"
    assert list_metadata(embedded) == converter_entries + [METADATA_NAME]
    for entry in converter_entries:  # the converter's (binary) payloads are untouched
        assert _entry_bytes(embedded, entry) == _entry_bytes(original, entry)
    for image in images_for(original):
        before, after = run_model(original, image), run_model(embedded, image)
        assert after.dtype == before.dtype and after.tobytes() == before.tobytes()


def _entry_bytes(content: bytes, name: str) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for index in range(model.MetadataLength()):
        if model.Metadata(index).Name().decode() == name:
            return model.Buffers(model.Metadata(index).Buffer()).DataAsNumpy().tobytes()
    raise AssertionError(f"no entry {name}")


def test_embedding_again_replaces_the_entry_without_growing_the_file(models):
    first = embed_metadata(models["int8"], METADATA)
    second = embed_metadata(first, {"threshold": 0.25, "note": "tärkeä"})

    assert list_metadata(second).count(METADATA_NAME) == 1
    assert list_metadata(second) == list_metadata(first)
    assert read_metadata(second) == {"note": "tärkeä", "threshold": 0.25}
    # the old entry's buffer is reused, so the file holds one document, not both
    assert len(second) < len(first)
    assert len(embed_metadata(second, METADATA)) == len(first)


def test_other_names_coexist(models):
    content = embed_metadata(embed_metadata(models["float32"], METADATA), {"owner": "line 7"}, name="site")

    assert read_metadata(content) == METADATA
    assert read_metadata(content, name="site") == {"owner": "line 7"}
    assert list_metadata(content)[-2:] == [METADATA_NAME, "site"]


def test_read_from_file_path_and_bytes(models, tmp_path):
    content = embed_metadata(models["float32"], METADATA)
    path = tmp_path / "model.tflite"
    path.write_bytes(content)

    assert read_metadata(path) == read_metadata(str(path)) == read_metadata(content) == METADATA
    assert read_metadata(bytearray(content)) == METADATA
    assert list_metadata(path) == list_metadata(content)


def test_embedding_is_deterministic_and_accepts_numpy_values(models):
    metadata = {"threshold": np.float32(0.5), "shape": np.array(INPUT_SHAPE), "labels": ["good", "defect"]}

    content = embed_metadata(models["float32"], metadata)

    assert content == embed_metadata(models["float32"], dict(reversed(list(metadata.items()))))
    expected = {"threshold": 0.5, "shape": list(INPUT_SHAPE), "labels": ["good", "defect"]}
    assert read_metadata(content) == expected


def test_missing_entry_is_a_key_error_naming_the_entries(models):
    with pytest.raises(KeyError, match="min_runtime_version"):
        read_metadata(models["float32"])  # converter output carries no metadata of ours yet
    with pytest.raises(KeyError, match=METADATA_NAME):
        read_metadata(embed_metadata(models["float32"], METADATA), name="absent")


def test_bad_inputs_are_value_errors(models, tmp_path):
    with pytest.raises(ValueError, match="TFL3"):
        read_metadata(b"definitely not a flatbuffer")
    with pytest.raises(ValueError, match="TFL3"):
        list_metadata(b"")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="garbage.tflite"):
        read_metadata(garbage)
    with pytest.raises(ValueError, match="TFL3"):
        embed_metadata(b"PK\x03\x04 a zip file", METADATA)
    with pytest.raises(ValueError, match="JSON"):
        embed_metadata(models["float32"], {"threshold": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        embed_metadata(models["float32"], {"when": object()})
    with pytest.raises(ValueError, match="dict"):
        embed_metadata(models["float32"], ["good", "defect"])
    with pytest.raises(ValueError, match="not a UTF-8 JSON document"):
        read_metadata(models["float32"], name="min_runtime_version")  # the converter's binary entry


def test_read_metadata_does_not_import_tensorflow(models, tmp_path):
    """As on a device: importing the module, listing and reading must not pull in TensorFlow."""
    path = tmp_path / "edge.tflite"
    path.write_bytes(embed_metadata(models["int8"], METADATA))
    code = (
        "import json, sys\n"
        "from vision_qc.edge_metadata import list_metadata, read_metadata\n"
        f"metadata = read_metadata({str(path)!r})\n"
        f"names = list_metadata({str(path)!r})\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print(json.dumps({'metadata': metadata, 'names': names}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["metadata"] == METADATA and printed["names"][-1] == METADATA_NAME


def test_models_with_data_outside_the_flatbuffer_are_refused(models):
    """Models over 2 GB keep buffers after the flatbuffer (offset/size); re-serializing would lose them."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(models["float32"], 0))
    model.buffers.append(schema.BufferT(offset=1 << 31, size=16))
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")

    with pytest.raises(ValueError, match="outside the flatbuffer"):
        embed_metadata(bytes(builder.Output()), METADATA)


def test_metadata_stored_outside_the_flatbuffer_is_read(models):
    """How a model over 2 GB stores a buffer: data appended after the flatbuffer, found by offset and
    size. A device must still read the metadata of such a file."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    payload = json.dumps(METADATA).encode()

    def build(offset: int) -> bytes:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(models["float32"], 0))
        model.buffers.append(schema.BufferT(offset=offset, size=len(payload)))
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    flatbuffer = build(offset=2)  # any offset > 1 gives the same layout; the real one is its length
    content = build(offset=len(flatbuffer)) + payload

    assert read_metadata(content) == METADATA
