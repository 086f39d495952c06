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


@dataclass(frozen=True)
class BatchPlan:
    """One date's batch work cut into ``shards``: all run with the same champion version, each writes its
    own folder under ``<batch_dir>/<app>/.shards/``, and ``publish_shards`` merges them in one swap."""

    app: str
    logical_date: dt.date
    champion_version: int
    shards: int
    token: str

    def shard_folder(self, settings: Settings, index: int) -> Path:
        return settings.resolved_batch_dir() / self.app / ".shards" / f"date={self.logical_date.isoformat()}-{self.token}" / f"shard-{index}"

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "date": self.logical_date.isoformat(), "champion_version": self.champion_version, "shards": self.shards, "token": self.token}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "BatchPlan":
        return cls(value["app"], dt.date.fromisoformat(value["date"]), int(value["champion_version"]), int(value["shards"]), str(value["token"]))


def plan_batch(solution: Solution, settings: Settings, *, logical_date: dt.date, shards: int = 1) -> BatchPlan:
    """Pin the champion for one date's work and say how many shards do it. Apps whose ``Batch`` is not
    ``shardable`` get one shard whatever is asked. Leftovers of earlier failed attempts at this date are
    removed (their outputs were never published)."""
    if solution.batch is None:
        raise ValueError(f"{solution.name} has no batch work (its Solution sets no `batch` part).")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}.")
    champion = ModelRegistry(settings.resolved_models_dir()).champion(solution.name)
    if champion is None:
        raise FileNotFoundError(
            f"No published version of {solution.name} in {settings.resolved_models_dir()}: batch work needs a champion; "
            f"train one first (`solutions train {solution.name}`)."
        )
    leftovers = settings.resolved_batch_dir() / solution.name / ".shards"
    for old in leftovers.glob(f"date={logical_date.isoformat()}-*"):
        shutil.rmtree(old, ignore_errors=True)
    count = shards if solution.batch.shardable else 1
    return BatchPlan(solution.name, logical_date, champion.version, count, uuid.uuid4().hex[:12])


def run_batch_shard(
    solution: Solution, config: SolutionConfig, settings: Settings, plan: BatchPlan, index: int, *, report: Callable[[str], None] | None = None
) -> list[Path]:
    """Shard ``index`` of ``plan``: the app's batch work on the rows ``BatchContext.in_shard`` gives it,
    with the plan's champion, into the shard's own folder (replaced if a retry runs it again)."""
    say = report or (lambda message: logger.info(message))
    if not 0 <= index < plan.shards:
        raise ValueError(f"shard {index} is not one of the plan's {plan.shards} shards.")
    pinned = [v for v in ModelRegistry(settings.resolved_models_dir()).versions(solution.name) if v.version == plan.champion_version]
    if not pinned:
        raise FileNotFoundError(f"Version {plan.champion_version} of {solution.name}, the one this batch run planned with, is gone.")
    champion = pinned[0]
    tables, contracts = input_tables(solution, config, settings)
    published = champion.metadata().get("config")
    champion_config = solution.make_config(published) if published else config
    say(f"batch {solution.name} {plan.logical_date} shard {index + 1}/{plan.shards}: champion v{champion.version}; "
        + ", ".join(f"{name} {len(frame):,} rows" for name, frame in tables.items()))
    folder = plan.shard_folder(settings, index)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        context = BatchContext(
            solution.name, champion_config, contracts, settings=settings, champion=champion, tables=tables,
            logical_date=plan.logical_date, output_dir=folder, predict_batch_size=solution.predict_batch_size,
            shard=(index, plan.shards),
        )
        written = [Path(path) for path in solution.batch.run(context)]
        outside = [path for path in written if folder.resolve() not in path.resolve().parents]
        if outside:
            raise ValueError(f"{solution.name}.batch wrote outside its output folder: {outside}; write into context.output_dir.")
        unknown = [path for path in written if path.suffix != ".parquet"]
        if unknown and plan.shards > 1:
            raise ValueError(f"{solution.name}.batch wrote {unknown}: sharded work merges Parquet tables only.")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return written


def publish_shards(settings: Settings, plan: BatchPlan, *, report: Callable[[str], None] | None = None) -> BatchResult:
    """Merge every shard's tables (each file: the shards' rows in one canonical order, so any number of
    shards gives the same file) and swap them in as the date's folder at once; then refresh the DuckDB
    views. A missing shard is an error and publishes nothing."""
    say = report or (lambda message: logger.info(message))
    folders = [plan.shard_folder(settings, index) for index in range(plan.shards)]
    missing = [index for index, folder in enumerate(folders) if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"Shards {missing} of {plan.app} {plan.logical_date} have no output (run {plan.token}); nothing was published.")
    app_folder = settings.resolved_batch_dir() / plan.app
    staging = app_folder / f".staging-{plan.logical_date.isoformat()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        names = sorted({path.relative_to(folder) for folder in folders for path in folder.rglob("*") if path.is_file()})
        for name in names:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            parts = [folder / name for folder in folders if (folder / name).exists()]
            if name.suffix == ".parquet":
                frames = [pd.read_parquet(part) for part in parts]
                # Shards with no rows add nothing (and their column types may be bare: object, no columns).
                frames = [frame for frame in frames if len(frame)] or [max(frames, key=lambda frame: len(frame.columns))]
                canonical_order(pd.concat(frames, ignore_index=True)).to_parquet(target, index=False)
            else:
                shutil.copyfile(parts[0], target)
        destination = date_folder(settings, plan.app, plan.logical_date)
        publish_folder(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_shards(settings, plan)
    files = [destination / name for name in names]
    refresh_views(app_folder)
    for file in files:
        say(f"  wrote {file}")
    return BatchResult(plan.app, plan.logical_date, plan.champion_version, destination, files)


def remove_shards(settings: Settings, plan: BatchPlan) -> None:
    """The plan's shard folders, and ``.shards/`` itself once nothing else is in it."""
    attempt = plan.shard_folder(settings, 0).parent
    shutil.rmtree(attempt, ignore_errors=True)
    if attempt.parent.is_dir() and not any(attempt.parent.iterdir()):
        attempt.parent.rmdir()


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by every column, left to right (stable): the order shards cannot change."""
    if frame.empty or not len(frame.columns):
        return frame.reset_index(drop=True)
    try:
        return frame.sort_values(list(frame.columns), kind="mergesort", ignore_index=True)
    except TypeError:  # columns of lists or mixed types have no order: keep the shards' order
        return frame.reset_index(drop=True)


def run_batch(
    solution: Solution,
    config: SolutionConfig,
    settings: Settings | None = None,
    *,
    logical_date: dt.date | None = None,
    report: Callable[[str], None] | None = None,
    shards: int = 1,
) -> BatchResult:
    """Run the app's batch work for one logical date with the champion; replaces that date's outputs.
    ``config`` says where the input comes from (``source``); the work itself runs with the champion's
    config as it was published (the shape its requests need). ``shards`` > 1 runs the shards one after
    another here: the batch DAG runs them as parallel tasks instead; the output is the same."""
    settings = settings or Settings()
    logical_date = logical_date or dt.date.today()
    plan = plan_batch(solution, settings, logical_date=logical_date, shards=shards)
    try:
        for index in range(plan.shards):
            run_batch_shard(solution, config, settings, plan, index, report=report)
        return publish_shards(settings, plan, report=report)
    finally:
        remove_shards(settings, plan)
