"""Scheduled batch work with the champion (the app's ``Batch`` part), the same from the CLI and from Airflow.

    input tables (``--source`` or the data store) → validate against the contracts → the app's ``batch``
    hook writes files into a staging folder → the folder replaces ``<batch_dir>/<app>/date=<day>/`` →
    DuckDB views over every date (``<batch_dir>/<app>/batch.duckdb``).

Outputs are keyed by the logical date, so re-running a date replaces that date's files instead of adding
a second copy, and a failed run leaves the previous outputs in place.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from solutions_core.data import DataStore
from solutions_core.model_registry import ModelRegistry
from solutions_core.settings import Settings
from solutions_core.solution import BatchContext, Solution, SolutionConfig

logger = logging.getLogger("solutions_core.batch")
DUCKDB_FILE = "batch.duckdb"


@dataclass
class BatchResult:
    app: str
    logical_date: dt.date
    champion_version: int
    folder: Path
    files: list[Path]


def date_folder(settings: Settings, app: str, logical_date: dt.date) -> Path:
    return settings.resolved_batch_dir() / app / f"date={logical_date.isoformat()}"


def input_tables(solution: Solution, config: SolutionConfig, settings: Settings) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """``config.source`` when given (e.g. the day's new transactions), else what the last training run
    stored; every table is checked against its contract before any work is done. Returns the tables and
    the contracts they were checked against."""
    from solutions_core.solution import Context
    from solutions_core.training import contracts_for, validate

    contracts = contracts_for(solution, config, settings)
    if config.source:
        tables = solution.data.load(Context(solution.name, config, contracts), config.source)
    else:
        store = DataStore(settings.resolved_data_dir())
        missing = [name for name in contracts if not store.exists(solution.name, name)]
        if missing:
            raise FileNotFoundError(
                f"No stored table(s) {missing} for {solution.name} in {store.data_dir}: train it first "
                f"(`solutions train {solution.name}`) or give a source (`--set source=...`)."
            )
        tables = {name: store.read(solution.name, name) for name in contracts}
    validate(tables, contracts)  # raises ContractViolation listing every failed rule
    return tables, contracts


def publish_folder(staging: Path, destination: Path) -> None:
    """Swap ``staging`` in as ``destination``: the old folder is renamed aside first (a rename each, so
    a reader sees the old outputs or the new ones, never a mix), then deleted."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    retired = destination.parent / f".retired-{destination.name}-{uuid.uuid4().hex[:8]}"
    if destination.exists():
        os.rename(destination, retired)
    os.rename(staging, destination)
    shutil.rmtree(retired, ignore_errors=True)


def refresh_views(app_folder: Path) -> Path:
    """One DuckDB view per output file name over every date (``date`` is a column), e.g.
    ``duckdb artifacts/batch/fraud_detection/batch.duckdb "select * from scores"``."""
    import duckdb

    database = app_folder / DUCKDB_FILE
    stems = sorted({file.stem for file in app_folder.glob("date=*/*.parquet")})
    connection = duckdb.connect(str(database))
    try:
        for stem in stems:
            pattern = str(app_folder / "date=*" / f"{stem}.parquet").replace("'", "''")
            connection.execute(
                f"CREATE OR REPLACE VIEW \"{stem}\" AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
            )
    finally:
        connection.close()
    return database


def run_batch(
    solution: Solution,
    config: SolutionConfig,
    settings: Settings | None = None,
    *,
    logical_date: dt.date | None = None,
    report: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run the app's batch work for one logical date with the champion; replaces that date's outputs.
    ``config`` says where the input comes from (``source``); the work itself runs with the champion's
    config as it was published (the shape its requests need)."""
    settings = settings or Settings()
    say = report or (lambda message: logger.info(message))
    logical_date = logical_date or dt.date.today()
    if solution.batch is None:
        raise ValueError(f"{solution.name} has no batch work (its Solution sets no `batch` part).")
    champion = ModelRegistry(settings.resolved_models_dir()).champion(solution.name)
    if champion is None:
        raise FileNotFoundError(
            f"No published version of {solution.name} in {settings.resolved_models_dir()}: batch work needs a champion; "
            f"train one first (`solutions train {solution.name}`)."
        )
    tables, contracts = input_tables(solution, config, settings)
    published = champion.metadata().get("config")
    champion_config = solution.make_config(published) if published else config
    say(f"batch {solution.name} {logical_date}: champion v{champion.version}; "
        + ", ".join(f"{name} {len(frame):,} rows" for name, frame in tables.items()))
    app_folder = settings.resolved_batch_dir() / solution.name
    app_folder.mkdir(parents=True, exist_ok=True)
    staging = app_folder / f".staging-{logical_date.isoformat()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        context = BatchContext(
            solution.name, champion_config, contracts, settings=settings, champion=champion, tables=tables,
            logical_date=logical_date, output_dir=staging, predict_batch_size=solution.predict_batch_size,
        )
        written = [Path(path) for path in solution.batch.run(context)]
        outside = [path for path in written if staging.resolve() not in path.resolve().parents]
        if outside:
            raise ValueError(f"{solution.name}.batch wrote outside its output folder: {outside}; write into context.output_dir.")
        destination = date_folder(settings, solution.name, logical_date)
        publish_folder(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [destination / path.relative_to(staging) for path in written]
    refresh_views(app_folder)
    for file in files:
        say(f"  wrote {file}")
    return BatchResult(solution.name, logical_date, champion.version, destination, files)
