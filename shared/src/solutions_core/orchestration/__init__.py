"""What an orchestrator's tasks call: one function per pipeline stage and one for batch work, each
taking plain JSON-able arguments (task params) and returning a small JSON-able summary (an XCom).

Nothing here imports Airflow or TensorFlow at import time; ``airflow_dags`` builds the DAGs over these
functions and ``kubernetes`` renders pod specs per target. A stage called for a run id reads what
earlier stages left in ``<runs>/<app>/<run_id>/``, so any stage can run in its own process or pod.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from solutions_core.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only; solution.py imports pandas, which DAG parsing avoids
    from solutions_core.solution import Solution, SolutionConfig

logger = logging.getLogger("solutions_core.orchestration")
PRESETS = ("default", "demo", "tiny")
TARGETS = ("cpu", "gpu", "tpu", "edge")


def run_id_for(logical_date: dt.datetime | None, fallback: str) -> str:
    """The run folder name for a DAG run: its logical date (so re-running a date replaces that date's
    run instead of adding one), else the DAG run id, made safe as a folder name."""
    if logical_date is not None:
        return "scheduled-" + logical_date.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", fallback).lstrip(".") or "run"


def make_config(
    solution: "Solution", preset: str = "default", overrides: Mapping[str, Any] | None = None, source: str | None = None
) -> "SolutionConfig":
    """The app's config: a preset (``default``, ``demo`` or ``tiny``, the seconds-long one tests use)
    with ``overrides`` deep-merged in, and ``source`` (data to load instead of generating) if given."""
    from solutions_core.solution import deep_merge

    if preset not in PRESETS:
        raise ValueError(f"Unknown config preset {preset!r}; choose one of {PRESETS}.")
    base = {"default": solution.make_config, "demo": solution.demo_config, "tiny": solution.tiny_config}[preset]()
    merged = deep_merge(base.model_dump(), dict(overrides or {}))
    if source:
        merged["source"] = source
    return solution.make_config(merged)


def settings_for(target: str, home: str | None = None) -> Settings:
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; choose one of {TARGETS}.")
    values: dict[str, Any] = {"target": target}
    if home:
        values["home"] = home
    return Settings(**values)


def run_stage(
    stage: str,
    app: str,
    run_id: str,
    *,
    target: str = "cpu",
    source: str | None = None,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    min_delta: float = 0.0,
    home: str | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one stage of ``app``'s pipeline (``solutions_core.stages.STAGES``) for ``run_id`` in this
    process, with the artifacts earlier stages left in the run folder; returns the stage artifact's
    JSON summary (an XCom). The target selects strategy and precision (``solutions_core.strategy``)."""
    from solutions_core import training
    from solutions_core.registry import get_solution
    from solutions_core.stages import stage as stage_named

    stage_named(stage)  # an unknown name fails before anything is loaded
    solution = get_solution(app)
    config = make_config(solution, preset, overrides, source)
    run = training.PipelineRun(solution, config, settings_for(target, home), run_id, verbose=2, report=report, min_delta=min_delta)
    artifact = run.run_stage(stage)
    return training.strict_json({**artifact.summary(), "run_dir": str(run.run_dir)})


def report_lines(summary: Mapping[str, Any]) -> list[str]:
    """A run report as text: the candidate's test metrics next to the champion's and the baselines'."""
    metric = summary["gate_metric"]
    lines = [f"{summary['app']} run {summary['run_id']}: {summary['status']}"
             + (f" as version {summary['version']}" if summary.get("version") else " (nothing published)")
             + (f": {summary['reason']}" if summary.get("reason") else "")]
    lines.append(f"  candidate {summary['candidate']}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary["test"].items()))
    champion = summary.get("champion_before")
    if champion and champion.get("value") is not None:
        lines.append(f"  champion v{champion['version']}: {metric}={champion['value']:.4f} ({champion['how']})")
    else:
        lines.append("  champion: none before this run")
    for name, metrics in summary.get("baselines", {}).items():
        lines.append(f"  baseline {name}: {metric}={metrics.get(metric, float('nan')):.4f}")
    return lines


def plan_app_batch(app: str, logical_date: dt.date | str, *, shards: int = 1, home: str | None = None) -> list[dict[str, Any]]:
    """The date's batch work cut into shards (``solutions_core.batch.plan_batch``): one JSON-able
    dict per shard, what each mapped shard task gets."""
    from solutions_core.batch import plan_batch
    from solutions_core.registry import get_solution

    if isinstance(logical_date, str):
        logical_date = dt.date.fromisoformat(logical_date[:10])
    plan = plan_batch(get_solution(app), settings_for("cpu", home), logical_date=logical_date, shards=int(shards))
    return [{"plan": plan.to_json(), "shard": index} for index in range(plan.shards)]


def run_app_batch_shard(
    plan: Mapping[str, Any],
    shard: int,
    *,
    target: str = "cpu",
    source: str | None = None,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    home: str | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One shard of a planned date (``solutions_core.batch.run_batch_shard``)."""
    from solutions_core.batch import BatchPlan, run_batch_shard
    from solutions_core.registry import get_solution

    planned = BatchPlan.from_json(dict(plan))
    solution = get_solution(planned.app)
    config = make_config(solution, preset, overrides, source)
    files = run_batch_shard(solution, config, settings_for(target, home), planned, int(shard), report=report)
    return {"app": planned.app, "date": planned.logical_date.isoformat(), "shard": int(shard), "files": [str(f) for f in files]}


def publish_app_batch(plan: Mapping[str, Any], *, home: str | None = None, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every shard's output merged and swapped in as the date's folder (``publish_shards``)."""
    from solutions_core.batch import BatchPlan, publish_shards

    result = publish_shards(settings_for("cpu", home), BatchPlan.from_json(dict(plan)), report=report)
    return {"app": result.app, "date": result.logical_date.isoformat(), "champion_version": result.champion_version,
            "folder": str(result.folder), "files": [str(f) for f in result.files]}


def run_monitor(app: str, logical_date: dt.date | str, *, home: str | None = None, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A day of ``app``'s request log against the version that served most of it
    (``solutions_core.monitoring``); the report lands under ``<runs>/<app>/monitor/<date>/``. Returns
    which columns drifted (an empty list: none), or ``rows: 0`` when nothing was logged that day."""
    from solutions_core.model_registry import ModelRegistry
    from solutions_core.monitoring import monitor_version
    from solutions_core.serving.request_log import read_day, serving_version

    say = report or logger.info
    if isinstance(logical_date, str):
        logical_date = dt.date.fromisoformat(logical_date[:10])
    settings = settings_for("cpu", home)
    try:
        served = read_day(settings.resolved_data_dir(), app, logical_date)
    except FileNotFoundError as nothing:
        say(str(nothing))
        return {"app": app, "date": logical_date.isoformat(), "rows": 0, "drifted": []}
    versions = {version.version: version for version in ModelRegistry(settings.resolved_models_dir()).versions(app)}
    served_by = serving_version(served)
    if served_by not in versions:
        raise FileNotFoundError(f"Version {served_by} of {app}, which served {logical_date}, is no longer in {settings.resolved_models_dir()}.")
    out_dir = settings.resolved_runs_dir() / app / "monitor" / logical_date.isoformat()
    drift, files = monitor_version(versions[served_by], served, label=logical_date.isoformat(), out_dir=out_dir)
    for column in drift.columns:
        say(f"{column.part} {column.name}: {column.measure} {column.value:.4f} (threshold {column.threshold:g}){' DRIFTED' if column.drifted else ''}")
    say(f"report: {files['html']}")
    return {"app": app, "date": logical_date.isoformat(), "rows": drift.rows, "version": served_by,
            "drifted": [f"{column.part}:{column.name}" for column in drift.drifted], "report": str(files["html"])}
