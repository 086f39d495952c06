"""Metadata inside a .tflite file, so an edge device needs no file beside the model.

A TFLite model is a flatbuffer whose root ``Model`` table has a ``metadata`` list: each entry has a
name and the index of a buffer in ``Model.buffers``. The converter already writes a few entries there
(``min_runtime_version``, ``CONVERSION_METADATA``); we add one more, ``solutions_metadata``, holding a
UTF-8 JSON document (labels, decision threshold, input description, versions). The runtime ignores
metadata it does not know, so the model runs exactly as before.

Both writing and reading use ai-edge-litert's generated schema module and the ``flatbuffers`` package,
never TensorFlow: reading must work on a device that has only ai-edge-litert, and writing with the
ai-edge-litert schema keeps fields that TensorFlow's older copy of the schema does not know yet (its
object API would drop them silently when the model is written back).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METADATA_NAME = "solutions_metadata"
TFLITE_FILE_IDENTIFIER = b"TFL3"

# Offsets 0 and 1 in ``Buffer.offset`` mean "not used" (schema.fbs); larger ones address data stored
# after the flatbuffer, which models over 2 GB use.
_SMALLEST_EXTERNAL_OFFSET = 2


def _content(path_or_bytes: str | Path | bytes | bytearray | memoryview) -> bytes:
    """The file's bytes, checked to be a TFLite flatbuffer before any parsing: the flatbuffers reader
    does no validation, so garbage would otherwise fail later with an obscure error or wrong data."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        content = bytes(path_or_bytes)
        source = f"{len(content)} bytes"
    elif isinstance(path_or_bytes, (str, Path)):
        content = Path(path_or_bytes).read_bytes()
        source = str(path_or_bytes)
    else:
        raise ValueError(f"Expected a .tflite path or its bytes, got {type(path_or_bytes).__name__}.")
    if len(content) < 8 or content[4:8] != TFLITE_FILE_IDENTIFIER:
        raise ValueError(
            f"Not a TFLite model ({source}): the flatbuffer file identifier {TFLITE_FILE_IDENTIFIER!r} "
            f"is missing at bytes 4..8 (found {content[4:8]!r})."
        )
    return content


def _model(content: bytes) -> Any:
    """The read-only flatbuffer view of the model (ai-edge-litert only, no TensorFlow)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.Model.GetRootAs(content, 0)


def _text(value: Any) -> str:
    """Flatbuffer strings come back as bytes from the reader and as bytes or str from the object API."""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (a threshold from a metric, a shape) become plain JSON numbers/lists;
    anything else is an error now rather than a file the device cannot read."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _payload(metadata: Mapping[str, Any]) -> bytes:
    """Strict JSON (no NaN/Infinity, which other JSON parsers on devices reject), keys sorted so the
    same metadata always gives the same bytes."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"Metadata must be a dict (a JSON object), got {type(metadata).__name__}.")
    try:
        text = json.dumps(
            dict(metadata), ensure_ascii=False, sort_keys=True, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"Metadata must be JSON-serializable with finite numbers: {error}") from error
    return text.encode("utf-8")


def _buffers_in_use(model: Any, except_name: str) -> set[int]:
    """Buffer indices used by tensors and by metadata entries not called ``except_name``."""
    used = {0}  # buffer 0 is the schema's empty sentinel, never ours to overwrite
    for subgraph in model.subgraphs or []:
        used.update(tensor.buffer for tensor in subgraph.tensors or [])
    used.update(model.metadataBuffer or [])  # the deprecated list of metadata buffers, if any
    used.update(entry.buffer for entry in model.metadata or [] if _text(entry.name) != except_name)
    return used


def embed_metadata(tflite_bytes: bytes, metadata: Mapping[str, Any], name: str = METADATA_NAME) -> bytes:
    """Return the model with ``metadata`` stored as UTF-8 JSON in a buffer referenced by a metadata
    entry called ``name``.

    An existing entry of that name is replaced, not duplicated (re-embedding after a threshold change
    must not leave two answers in the file); its buffer is reused when nothing else points at it, so
    the file does not grow with each re-embedding. All other metadata entries (the converter's own)
    and all tensors, operators and signatures are written back unchanged.
    """
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    if not isinstance(name, str) or not name:
        raise ValueError(f"The metadata name must be a non-empty string, got {name!r}.")
    payload = _payload(metadata)
    content = _content(tflite_bytes)
    model = schema.ModelT.InitFromObj(_model(content))

    # Re-serializing inlines every buffer, so data stored after the flatbuffer (models over 2 GB)
    # would be lost or would not fit; refuse clearly rather than write a broken model.
    buffers = model.buffers or []
    external = [index for index, buffer in enumerate(buffers) if buffer.offset >= _SMALLEST_EXTERNAL_OFFSET]
    large_options = [
        operator
        for subgraph in model.subgraphs or []
        for operator in subgraph.operators or []
        if operator.largeCustomOptionsOffset >= _SMALLEST_EXTERNAL_OFFSET
    ]
    if external or large_options:
        raise ValueError(
            f"This model keeps data outside the flatbuffer (buffers {external[:5]}"
            f"{'...' if len(external) > 5 else ''}, {len(large_options)} large custom options), as "
            "converters do for models over 2 GB; embedding metadata would have to move it. Convert without "
            "external buffers, or ship the metadata beside such a model."
        )

    if model.buffers is None:
        model.buffers = [schema.BufferT()]
    entries = list(model.metadata or [])
    same_name = [index for index, entry in enumerate(entries) if _text(entry.name) == name]
    in_use = _buffers_in_use(model, except_name=name)
    # Buffers only the old entries of this name point at are emptied and the first one reused, so
    # re-embedding does not grow the file (tensor buffer indices must not shift, so none is removed).
    old_buffers = {entries[index].buffer for index in same_name}
    freed = sorted((old_buffers - in_use) & set(range(len(model.buffers))))
    for index in freed:
        model.buffers[index] = schema.BufferT()
    if freed:
        buffer_index = freed[0]
    else:
        model.buffers.append(schema.BufferT())
        buffer_index = len(model.buffers) - 1
    model.buffers[buffer_index] = schema.BufferT(data=np.frombuffer(payload, dtype=np.uint8))

    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = buffer_index
    if same_name:  # keep the entry's place; drop duplicates a careless tool may have written
        entries[same_name[0]] = entry
        entries = [item for index, item in enumerate(entries) if index not in same_name[1:]]
    else:
        entries.append(entry)
    model.metadata = entries

    builder = flatbuffers.Builder(len(content) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def list_metadata(path_or_bytes: str | Path | bytes) -> list[str]:
    """Names of the model's metadata entries, in file order (ai-edge-litert only, no TensorFlow)."""
    model = _model(_content(path_or_bytes))
    return [_text(model.Metadata(index).Name()) for index in range(model.MetadataLength())]


def read_metadata(path_or_bytes: str | Path | bytes, name: str = METADATA_NAME) -> dict[str, Any]:
    """The JSON document stored under ``name``, from a .tflite path or its bytes.

    Needs only ai-edge-litert's schema module, numpy and the standard library, so a device reads the
    labels and threshold from the model it runs, with no TensorFlow and no side file.
    """
    content = _content(path_or_bytes)
    model = _model(content)
    names = [_text(model.Metadata(index).Name()) for index in range(model.MetadataLength())]
    if name not in names:
        raise KeyError(f"The model has no metadata entry {name!r}; its entries are {names}.")
    # The last entry wins, as with repeated keys in JSON, should a tool have written the name twice.
    buffer_index = model.Metadata(len(names) - 1 - names[::-1].index(name)).Buffer()
    if not 0 <= buffer_index < model.BuffersLength():
        raise ValueError(
            f"Metadata entry {name!r} points at buffer {buffer_index}, but the model has "
            f"{model.BuffersLength()} buffers: the file is damaged."
        )
    buffer = model.Buffers(buffer_index)
    if buffer.DataLength():
        data = buffer.DataAsNumpy().tobytes()
    elif buffer.Offset() >= _SMALLEST_EXTERNAL_OFFSET:  # large models keep data after the flatbuffer
        data = content[buffer.Offset() : buffer.Offset() + buffer.Size()]
    else:
        data = b""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Metadata entry {name!r} is not a UTF-8 JSON document ({len(data)} bytes: {data[:32]!r}...): "
            f"{error}. Entries written by embed_metadata are; the converter's own ones are binary."
        ) from error
    if not isinstance(document, dict):
        raise ValueError(f"Metadata entry {name!r} holds JSON {type(document).__name__}, not an object.")
    return document
