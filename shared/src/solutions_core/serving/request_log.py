"""The request log: a sample of the answered requests and their answers, as Parquet under
``<data_dir>/request_log/<app>/date=<YYYY-MM-DD>/part-*.parquet`` (what ``solutions monitor --date``
reads, and what labels that arrive later are joined to).

The batch thread only appends a reference to the request and its outputs to a queue (no copy, no
conversion); a writer thread turns the queue into rows every ``flush_seconds`` or ``flush_rows`` and
writes one file per app and day, renamed into place whole. ``close`` (server shutdown) writes what is
left; a hot reload changes nothing here (one log per server, whatever version answered).
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

logger = logging.getLogger("solutions_core.serving")
FOLDER = "request_log"
VERSION_COLUMN, TIME_COLUMN = "model_version", "logged_at"


def log_folder(data_dir: Path, app: str, day: dt.date | None = None) -> Path:
    folder = Path(data_dir) / FOLDER / app
    return folder / f"date={day.isoformat()}" if day else folder


class RequestLog:
    def __init__(self, data_dir: Path, rate: float = 1.0, *, flush_seconds: float = 1.0, flush_rows: int = 20_000):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"The request log's sampling rate must be between 0 and 1, got {rate}.")
        self.data_dir = Path(data_dir)
        self.rate = rate
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._queue: collections.deque = collections.deque()
        self._queued_rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self.written_rows = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def record(self, app: str, version: int, received: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
        """Queue one answered request (called by the batch thread; O(1), nothing converted here)."""
        if self.rate < 1.0 and random.random() >= self.rate:
            return
        self._queue.append((time.time(), app, version, received, outputs))
        self._queued_rows += len(received)
        if self._queued_rows >= self.flush_rows:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the log must not take the server down; what failed is in the server's log
                logger.exception("Could not write the request log")

    def flush(self) -> list[Path]:
        """Write everything queued so far: one Parquet file per app and day. Built column by column
        (a list per field, outputs joined as arrays, pyarrow writing): per-row dicts here cost a
        third of the server's 256-row throughput (measured), as this thread shares the GIL."""
        with self._write_lock:
            entries = []
            while self._queue:
                entries.append(self._queue.popleft())
            self._queued_rows = 0
            groups: dict[tuple[str, dt.date], list[tuple]] = collections.defaultdict(list)
            for entry in entries:
                groups[(entry[1], dt.datetime.fromtimestamp(entry[0], dt.timezone.utc).date())].append(entry)
            written = [self._write(app, day, group) for (app, day), group in groups.items()]
            self.written_rows += sum(len(entry[3]) for entry in entries)
            return written

    def _write(self, app: str, day: dt.date, entries: list[tuple]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = list(dict.fromkeys(name for entry in entries for name in (entry[3][0] if entry[3] else {})))
        columns: dict[str, Any] = {}
        for name in fields:
            columns[name] = _column([instance.get(name) for entry in entries for instance in entry[3]])
        outputs = list(dict.fromkeys(name for entry in entries for name in entry[4]))
        for name in outputs:
            if name in columns:
                continue  # a request field of the same name is what the client sent; keep it
            columns[name] = _output_column([np.asarray(entry[4][name]) for entry in entries])
        counts = [len(entry[3]) for entry in entries]
        columns[VERSION_COLUMN] = pa.array(np.repeat([int(entry[2]) for entry in entries], counts), pa.int64())
        stamps = np.repeat(np.array([int(entry[0] * 1e6) for entry in entries], dtype="int64"), counts)
        columns[TIME_COLUMN] = pa.array(stamps.astype("datetime64[us]"))
        folder = log_folder(self.data_dir, app, day)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
        temporary = folder / f".{name}"
        pq.write_table(pa.table(columns), temporary)
        os.replace(temporary, folder / name)  # readers see whole files only
        return folder / name

    def close(self) -> None:
        """Stop the writer and write what is queued (server shutdown)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def _column(values: list[Any]) -> Any:
    """A request field's values as one Arrow array: as they are when Arrow takes them (numbers,
    strings, nulls); else each as JSON (an image's {"b64": ...}, a field sent as a number by one client
    and a string by another)."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if value is None else value if isinstance(value, str) else json.dumps(_plain(value)) for value in values], pa.string())


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
    import pandas as pd

    folder = log_folder(data_dir, app, day)
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"No request log for {app} on {day} in {folder}: was the server logging (SOLUTIONS_REQUEST_LOG_RATE > 0)?")
    return pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)


def read_log(data_dir: Path, app: str) -> Any:
    """Every logged day of an app (FileNotFoundError when nothing was logged)."""
    import pandas as pd

    parts = sorted(log_folder(data_dir, app).glob("date=*/part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"No request log for {app} in {log_folder(data_dir, app)}.")
    return pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)


def serving_version(logged: Any) -> int | None:
    """The version that answered most of the logged rows (None for a table without versions)."""
    if VERSION_COLUMN not in logged.columns or not len(logged):
        return None
    return int(logged[VERSION_COLUMN].mode().iloc[0])
