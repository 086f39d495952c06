"""The DAG factory: one training DAG and one monitor DAG per installed app, one batch DAG per app with
batch work.

Thin wiring only: one task per row of the pipeline's stage table (``solutions_core.stages.STAGES``,
the table ``run_training`` follows too), each calling ``solutions_core.orchestration.run_stage`` /
the batch functions beside it. Apps are found through entry points, so a fork's new app gets its DAG
without editing anything here. Importing this module imports Airflow but neither TensorFlow nor the apps (tasks import
them when they run), so DAG files parse fast.

    validate_data → split_data → train_candidates → score_on_test → gate ⇢ publish → write_report
                                              (the gate skips publish when the candidate does not win;
                                               the report runs either way)
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator, ShortCircuitOperator
from airflow.sdk import DAG, Param, TriggerRule, chain, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from solutions_core.orchestration import (
    PRESETS,
    TARGETS,
    plan_app_batch,
    publish_app_batch,
    report_lines,
    run_app_batch_shard,
    run_id_for,
    run_monitor,
    run_stage,
)
from solutions_core.orchestration.config import OrchestrationConfig, load_orchestration_config
from solutions_core.orchestration.kubernetes import executor_config
from solutions_core.stages import STAGES
from solutions_core.stages import stage as stage_named

logger = logging.getLogger("solutions_core.orchestration")
START_DATE = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)  # fixed (a moving one confuses the scheduler) and early: a run for a logical date before it would run no task at all


def _params(app: str, config: OrchestrationConfig) -> dict[str, Param]:
    defaults = config.app(app)
    return {
        "target": Param(defaults.target, enum=list(TARGETS), description="cpu | gpu | tpu | edge: strategy and precision (and TFLite for edge)."),
        "source": Param(defaults.source, type=["null", "string"], description="Data to load (a path the app's `load` reads); empty: the app's generator."),
        "preset": Param(defaults.preset, enum=list(PRESETS), description="Config to start from: default, demo, or tiny (seconds; smoke tests)."),
        "config": Param({}, type="object", description="Config overrides, deep-merged, e.g. {\"training\": {\"epochs\": 2}}."),
        "min_delta": Param(0.0, type="number", minimum=0, description="How much the candidate must beat the champion by."),
    }


def _task_arguments() -> tuple[dict[str, Any], str, Any]:
    """This task's params, run id (keyed by logical date) and logical date."""
    context = get_current_context()
    logical_date = context.get("logical_date")
    return dict(context["params"]), run_id_for(logical_date, context["run_id"]), logical_date or context["dag_run"].run_after


def _run_training_stage(stage: str, app: str) -> Any:
    from solutions_core.contracts import ContractViolation

    params, run_id, _ = _task_arguments()
    try:
        summary = run_stage(
            stage, app, run_id, target=params["target"], source=params.get("source") or None, preset=params["preset"],
            overrides=params.get("config") or {}, min_delta=float(params.get("min_delta") or 0.0), report=logger.info,
        )
    except ContractViolation as violation:
        # The violation report goes to the task log; failing (not retrying) stops the run before training.
        logger.error("Data contract violated: nothing was trained or published.\n%s", violation)
        raise AirflowFailException(f"{app}: the data violates its contract; see the validation report in this log.") from None
    if stage_named(stage).decides:
        return bool(summary["passed"])  # the gate's ShortCircuitOperator: False skips publish
    if stage == STAGES[-1].name:
        for line in report_lines(summary):
            logger.info(line)
        summary = {key: summary[key] for key in ("app", "run_id", "status", "reason", "version", "gate_metric", "test", "run_dir")}
    return summary


def _plan_batch(app: str) -> list[dict[str, Any]]:
    params, _, logical_date = _task_arguments()
    return plan_app_batch(app, logical_date.date().isoformat(), shards=int(params.get("shards") or 1))


def _run_batch_shard(plan: dict[str, Any], shard: int) -> dict[str, Any]:
    from solutions_core.contracts import ContractViolation

    params, _, _ = _task_arguments()
    try:
        return run_app_batch_shard(
            plan, shard, target=params["target"], source=params.get("source") or None, preset=params["preset"],
            overrides=params.get("config") or {}, report=logger.info,
        )
    except ContractViolation as violation:
        logger.error("Data contract violated: no batch output was written.\n%s", violation)
        raise AirflowFailException(f"{plan['app']}: the batch input violates its contract; see the validation report in this log.") from None


def _publish_batch() -> dict[str, Any]:
    shards = get_current_context()["ti"].xcom_pull(task_ids="plan")
    return publish_app_batch(shards[0]["plan"], report=logger.info)


def _monitor(app: str) -> dict[str, Any]:
    _, _, logical_date = _task_arguments()
    return run_monitor(app, logical_date.date().isoformat(), report=logger.info)


def _drifted() -> bool:
    context = get_current_context()
    result = context["ti"].xcom_pull(task_ids="compare")
    return bool(result["drifted"]) and bool(context["params"].get("retrain", True))


def _verdict() -> None:
    result = get_current_context()["ti"].xcom_pull(task_ids="compare")
    if result["drifted"]:
        raise AirflowFailException(f"{result['app']} drifted on {result['date']}: {', '.join(result['drifted'])}; see {result['report']}.")


def _dag(dag_id: str, description: str, schedule: str | None, default_args: dict[str, Any], params: dict[str, Param],
         tags: list[str], doc: str | None, **extra: Any) -> DAG:
    """What every DAG here shares: a fixed start date without catch-up, and one run at a time (two
    training runs gating against one champion at once could both publish; two batch or monitor runs of
    one app would write the same folders)."""
    return DAG(dag_id=dag_id, description=description, schedule=schedule, start_date=START_DATE, catchup=False, max_active_runs=1,
               default_args=default_args, params=params, tags=["solutions", *tags], doc_md=doc, **extra)


def _default_args(config: OrchestrationConfig) -> dict[str, Any]:
    return {"retries": config.retries, "retry_delay": dt.timedelta(minutes=config.retry_delay_minutes), "owner": "solutions"}


def training_dag(app: str, config: OrchestrationConfig | None = None) -> DAG:
    """``train_<app>``: the core's pipeline, one task per stage; a run's folder is keyed by its logical
    date, so re-running a date replaces that run and publishes at most one version."""
    config = config or OrchestrationConfig()
    schedule = config.app(app)
    with _dag(
        f"train_{app}", f"Retrain {app}: " + " → ".join(stage.name for stage in STAGES), schedule.train_schedule,
        _default_args(config), _params(app, config), [app, "training"], __doc__,
        user_defined_macros={"solutions_run_id": run_id_for},  # a stage pod's --run-id, as the in-process tasks'
    ) as dag:
        tasks = []
        for stage in STAGES:
            extra: dict[str, Any] = {}
            if stage.decides:
                extra["ignore_downstream_trigger_rules"] = False  # skip the after-gate stages, still report
            if stage.always:
                extra["trigger_rule"] = TriggerRule.NONE_FAILED
            if stage.accelerated:
                extra["execution_timeout"] = dt.timedelta(minutes=config.training_timeout_minutes)
            if config.kubernetes.enabled and stage.name in config.kubernetes.accelerated_stages and not stage.decides:
                # Its own pod, on the accelerator of the target the run is triggered with.
                from solutions_core.orchestration.pod_operator import StagePodOperator

                tasks.append(StagePodOperator(task_id=stage.name, doc_md=stage.summary, kubernetes=config.kubernetes, app=app,
                                              stage=stage.name, default_target=schedule.target, **extra))
                continue
            operator = ShortCircuitOperator if stage.decides else PythonOperator
            tasks.append(
                operator(
                    task_id=stage.name,
                    doc_md=stage.summary,
                    python_callable=_run_training_stage,
                    op_kwargs={"stage": stage.name, "app": app},
                    executor_config=executor_config(config.kubernetes, app=app, stage=stage.name, target=schedule.target),
                    **extra,
                )
            )
        chain(*tasks)
    return dag


def batch_dag(app: str, config: OrchestrationConfig | None = None) -> DAG:
    """``batch_<app>``: the app's batch work with the champion for each logical date, fanned out over
    ``shards`` mapped tasks (dynamic task mapping: an executor places each on any worker), then merged and
    published at once (outputs under ``<batch_dir>/<app>/date=<day>/``, replaced on a re-run; the same
    files whatever the number of shards).

        plan (pins the champion, one item per shard) → shard × N → publish (merge, one swap)
    """
    config = config or OrchestrationConfig()
    schedule = config.app(app)
    params = _params(app, config)
    params.pop("min_delta")
    params["shards"] = Param(schedule.batch_shards, type="integer", minimum=1, maximum=256,
                             description="Tasks the date's work is split into (apps whose batch work cannot shard run one).")
    with _dag(
        f"batch_{app}", f"{app}: daily batch work with the champion model", schedule.batch_schedule,
        _default_args(config), params, [app, "batch"], batch_dag.__doc__,
    ) as dag:
        plan = PythonOperator(task_id="plan", python_callable=_plan_batch, op_kwargs={"app": app})
        shards = PythonOperator.partial(
            task_id="shard",
            python_callable=_run_batch_shard,
            executor_config=executor_config(config.kubernetes, app=app, stage="batch", target=schedule.target),
            map_index_template="shard {{ task.op_kwargs['shard'] }}",
        ).expand(op_kwargs=plan.output)
        publish = PythonOperator(task_id="publish", python_callable=_publish_batch)
        plan >> shards >> publish
    return dag


def monitor_dag(app: str, config: OrchestrationConfig | None = None) -> DAG:
    """``monitor_<app>``: the logical date's request log against the training statistics of the version
    that served it; a drifted day triggers ``train_<app>`` (its gate judges the new candidate against
    the champion and the baselines) and fails this run, so the drift shows red.

        compare → drifted? ⇢ retrain (triggers train_<app>) → verdict (fails on drift)
    """
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    config = config or OrchestrationConfig()
    schedule = config.app(app)
    with _dag(
        f"monitor_{app}", f"{app}: drift and skew of a day's served requests against the training data", schedule.monitor_schedule,
        {**_default_args(config), "retries": 0},  # a drift verdict is not retried away
        {"retrain": Param(schedule.retrain_on_drift, type="boolean", description="Trigger train_<app> when the day drifted.")},
        [app, "monitoring"], monitor_dag.__doc__,
    ) as dag:
        compare = PythonOperator(task_id="compare", python_callable=_monitor, op_kwargs={"app": app})
        drifted = ShortCircuitOperator(task_id="drifted", python_callable=_drifted, ignore_downstream_trigger_rules=False)
        retrain = TriggerDagRunOperator(task_id="retrain", trigger_dag_id=f"train_{app}", trigger_run_id="drift__{{ run_id }}",
                                        conf={"preset": schedule.preset, "target": schedule.target})
        verdict = PythonOperator(task_id="verdict", python_callable=_verdict, trigger_rule=TriggerRule.NONE_FAILED)
        chain(compare, drifted, retrain, verdict)
    return dag


def monitor_dags(config_path: str | Path | None = None) -> dict[str, DAG]:
    """``monitor_<app>`` for every installed app (entry points only)."""
    from solutions_core.registry import list_solutions

    config = load_orchestration_config(config_path)
    return {f"monitor_{entry.name}": monitor_dag(entry.name, config) for entry in list_solutions()}


def training_dags(config_path: str | Path | None = None) -> dict[str, DAG]:
    """``train_<app>`` for every installed app (entry points only: no app is imported)."""
    from solutions_core.registry import list_solutions

    config = load_orchestration_config(config_path)
    return {f"train_{entry.name}": training_dag(entry.name, config) for entry in list_solutions()}


def batch_dags(config_path: str | Path | None = None) -> dict[str, DAG]:
    """``batch_<app>`` for every installed app with a ``batch`` part. This imports each
    app's package (pandas, not TensorFlow) to ask, which is why it lives in its own DAG file."""
    from solutions_core.registry import get_solution, list_solutions

    config = load_orchestration_config(config_path)
    return {f"batch_{entry.name}": batch_dag(entry.name, config) for entry in list_solutions() if get_solution(entry.name).batch is not None}
