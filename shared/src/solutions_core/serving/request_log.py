"""The request log: a sample of the answered requests and their answers, as Parquet under
``<data_dir>/request_log/<app>/date=<YYYY-MM-DD>/part-*.parquet`` (what ``solutions monitor --date``
reads, and what outcomes that arrive later are joined to).

The batch thread serializes each answered batch to one JSON line (orjson, in C: ~0.4 µs a row) and
queues the bytes, so no request object outlives its answer; a writer thread turns the lines into Arrow
columns with Arrow's JSON reader (C++, without the GIL) every ``convert_seconds`` and writes them every
``flush_seconds`` or ``flush_rows``, one file per app and day, renamed into place whole. Keeping the
request dicts until the writer built columns in Python cost 9 % of fraud's one-row throughput and
doubled its p99 at c=64 (``benchmarks/serving_load.py``; README, "What the request log costs").
``close`` (server shutdown) writes what is left; a hot reload changes nothing here (one log per server,
whatever version answered).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger("solutions_core.serving")
FOLDER = "request_log"
VERSION_COLUMN, TIME_COLUMN = "model_version", "logged_at"
OUTPUTS_KEY = "solutions.outputs"  # in each Parquet file's metadata: which of its columns are the model's answers


def log_folder(data_dir: Path, app: str, day: dt.date | None = None) -> Path:
    folder = Path(data_dir) / FOLDER / app
    return folder / f"date={day.isoformat()}" if day else folder


class RequestLog:
    def __init__(self, data_dir: Path, rate: float = 1.0, *, flush_seconds: float = 1.0, flush_rows: int = 20_000,
                 convert_seconds: float = 0.1):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"The request log's sampling rate must be between 0 and 1, got {rate}.")
        self.data_dir = Path(data_dir)
        self.rate = rate
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.convert_seconds = min(convert_seconds, flush_seconds)
        self._queue: collections.deque = collections.deque()
        self._queued_rows = 0
        # Converted but not yet written: Arrow tables per (app, day), no Python object per row.
        self._converted: dict[tuple[str, dt.date], list[tuple[Any, list[str]]]] = collections.defaultdict(list)
        self._converted_rows = 0
        self._last_write = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.written_rows = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def record(self, app: str, version: int, received: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
        """Queue one answered batch as a JSON line (called by the batch thread)."""
        if self.rate < 1.0 and random.random() >= self.rate:
            return
        now = time.time()
        try:
            line = orjson.dumps({"t": int(now * 1e6), "v": int(version), "rows": received, "outputs": outputs},
                                option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)
        except TypeError:  # a value JSON cannot hold (an int beyond 64 bits): the log must not fail a request
            logger.warning("A request of %s could not be logged: a value is not JSON-serializable.", app)
            return
        self._queue.append((app, dt.datetime.fromtimestamp(now, dt.timezone.utc).date(), len(received), line))
        self._queued_rows += len(received)
        if self._queued_rows >= self.flush_rows:
            self._wake.set()

    def _run(self) -> None:
        # Converting every tenth of a second keeps each burst of work short (on a busy core a second's
        # worth at once showed in the p99 of the requests answered meanwhile); files are written once a
        # second, so a day is not thousands of tiny files.
        while not self._stop.is_set():
            self._wake.wait(self.convert_seconds)
            self._wake.clear()
            try:
                with self._lock:
                    self._convert()
                    if self._converted_rows >= self.flush_rows or time.monotonic() - self._last_write >= self.flush_seconds:
                        self._write_converted()
            except Exception:  # the log must not take the server down; what failed is in the server's log
                logger.exception("Could not write the request log")

    def flush(self) -> list[Path]:
        """Write everything queued so far: one Parquet file per app and day."""
        with self._lock:
            self._convert()
            return self._write_converted()

    def _convert(self) -> None:
        entries = []
        while self._queue:
            entries.append(self._queue.popleft())
        self._queued_rows = 0
        groups: dict[tuple[str, dt.date], list[bytes]] = collections.defaultdict(list)
        for app, day, _, line in entries:
            groups[(app, day)].append(line)
        for key, lines in groups.items():
            self._converted[key].append(_table(lines))
        self._converted_rows += sum(entry[2] for entry in entries)

    def _write_converted(self) -> list[Path]:
        converted, self._converted = self._converted, collections.defaultdict(list)
        self._converted_rows, self._last_write = 0, time.monotonic()
        written = []
        for (app, day), parts in converted.items():
            written += self._write(app, day, parts)
        return written

    def _write(self, app: str, day: dt.date, parts: list[tuple[Any, list[str]]]) -> list[Path]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            groups = [(pa.concat_tables([table for table, _ in parts], promote_options="permissive"),
                       list(dict.fromkeys(name for _, outputs in parts for name in outputs)))]
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a field changed type within the second: a file per part
            groups = parts
        folder = log_folder(self.data_dir, app, day)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for table, outputs in groups:
            name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
            temporary = folder / f".{name}"
            pq.write_table(table.replace_schema_metadata({OUTPUTS_KEY: json.dumps(outputs)}), temporary)
            os.replace(temporary, folder / name)  # readers see whole files only
            written.append(folder / name)
            self.written_rows += table.num_rows
        return written

    def close(self) -> None:
        """Stop the writer and write what is queued (server shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def _table(lines: list[bytes]) -> tuple[Any, list[str]]:
    """JSON lines as one Arrow table, and the names of its output columns."""
    import pyarrow as pa

    try:
        columns, outputs = _arrow_columns(b"\n".join(lines))
    except (pa.ArrowInvalid, pa.ArrowTypeError, _NotFlat):
        # Fields whose type changes from one request to another, or nested objects (an image's
        # {"b64": ...}): column by column in Python, each such value as its JSON.
        columns, outputs = _python_columns(lines)
    return pa.table(columns), outputs


class _NotFlat(Exception):
    """A request field holds objects: the Python path writes them as JSON text."""


def _arrow_columns(text: bytes) -> tuple[dict[str, Any], list[str]]:
    """The lines' rows as columns, by Arrow's JSON reader and list kernels (no Python per row)."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    lines = pj.read_json(io.BytesIO(text), read_options=pj.ReadOptions(block_size=max(len(text) + 1, 1 << 20)))
    rows = lines.column("rows").combine_chunks()
    if not pa.types.is_struct(rows.type.value_type):
        raise _NotFlat()
    parents = pc.list_parent_indices(rows)
    flat = pc.list_flatten(rows)
    columns: dict[str, Any] = {}
    for index, field in enumerate(flat.type):
        if _nested_objects(field.type):
            raise _NotFlat()
        columns[field.name] = flat.field(index)
    # A request field named as an output is what the client sent; it is kept, the output is not.
    outputs = []
    if "outputs" in lines.column_names and pa.types.is_struct(lines.column("outputs").type):
        answers = lines.column("outputs").combine_chunks()
        for index, field in enumerate(answers.type):
            if field.name not in columns:
                columns[field.name] = pc.list_flatten(answers.field(index))
                outputs.append(field.name)
    columns[VERSION_COLUMN] = pc.take(lines.column("v"), parents)
    columns[TIME_COLUMN] = pc.take(lines.column("t"), parents).cast(pa.timestamp("us"))
    return columns, outputs


def _nested_objects(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return True
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _nested_objects(kind.value_type)


def _python_columns(lines: list[bytes]) -> tuple[dict[str, Any], list[str]]:
    import pyarrow as pa

    entries = [orjson.loads(line) for line in lines]
    fields = list(dict.fromkeys(name for entry in entries for row in entry["rows"] for name in row))
    columns: dict[str, Any] = {name: _column([row.get(name) for entry in entries for row in entry["rows"]]) for name in fields}
    outputs = [name for name in dict.fromkeys(name for entry in entries for name in entry["outputs"]) if name not in columns]
    for name in outputs:
        columns[name] = _output_column([np.asarray(entry["outputs"][name]) for entry in entries])
    counts = [len(entry["rows"]) for entry in entries]
    columns[VERSION_COLUMN] = pa.array(np.repeat([int(entry["v"]) for entry in entries], counts), pa.int64())
    columns[TIME_COLUMN] = pa.array(np.repeat(np.array([entry["t"] for entry in entries], dtype="int64"), counts).astype("datetime64[us]"))
    return columns, outputs


def _column(values: list[Any]) -> Any:
    """A request field's values as one Arrow array: as they are when Arrow takes them (numbers,
    strings, nulls); else each as JSON (an image's {"b64": ...}, a field sent as a number by one client
    and a string by another)."""
    import pyarrow as pa

    try:
        if not any(isinstance(value, dict) for value in values):
            return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array([None if value is None else value if isinstance(value, str) else _json_text(value) for value in values], pa.string())


def _json_text(value: Any) -> str:
    plain = _plain(value)
    return plain if isinstance(value, dict) else json.dumps(plain)  # _plain writes a dict as its JSON already


def _output_column(parts: list[np.ndarray]) -> Any:
    """An output's per-request arrays joined: numbers stay arrays (rows of lists when an answer has a
    shape, e.g. top-k scores), bytes become text."""
    import pyarrow as pa

    joined = np.concatenate([part.reshape((-1,) + part.shape[1:]) if part.ndim else part.reshape(1) for part in parts])
    if joined.dtype.kind in "OS":
        return pa.array(_plain(joined))
    if joined.ndim == 1:
        return pa.array(joined)
    return pa.array(joined.tolist())


def _plain(value: Any) -> Any:
    """One value as Parquet can hold it: numpy scalars as Python ones, arrays as lists, bytes as text,
    an image's {"b64": ...} as its JSON."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()] if value.dtype.kind in "OS" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def read_day(data_dir: Path, app: str, day: dt.date) -> Any:
    """One day of an app's request log as a table (FileNotFoundError when nothing was logged)."""
    folder = log_folder(data_dir, app, day)
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"No request log for {app} on {day} in {folder}: was the server logging (SOLUTIONS_REQUEST_LOG_RATE > 0)?")
    return _read_parts(parts)


def read_log(data_dir: Path, app: str) -> Any:
    """Every logged day of an app (FileNotFoundError when nothing was logged)."""
    parts = sorted(log_folder(data_dir, app).glob("date=*/part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"No request log for {app} in {log_folder(data_dir, app)}.")
    return _read_parts(parts)


def _read_parts(parts: list[Path]) -> Any:
    """The parts as one table; ``attrs["outputs"]`` names the model's outputs among its columns."""
    import pandas as pd
    import pyarrow.parquet as pq

    outputs: dict[str, None] = {}
    for part in parts:
        written = (pq.read_schema(part).metadata or {}).get(OUTPUTS_KEY.encode())
        outputs.update(dict.fromkeys(json.loads(written) if written else []))
    table = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    table.attrs["outputs"] = list(outputs)
    return table


def output_names(logged: Any) -> list[str]:
    """The model outputs among a logged table's columns (as the log wrote them down)."""
    return [name for name in logged.attrs.get("outputs", []) if name in logged.columns]


def serving_version(logged: Any) -> int | None:
    """The version that answered most of the logged rows (None for a table without versions)."""
    if VERSION_COLUMN not in logged.columns or not len(logged):
        return None
    return int(logged[VERSION_COLUMN].mode().iloc[0])
