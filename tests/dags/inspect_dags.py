"""Loads dags/ with Airflow's DagBag and prints what the integrity tests check, as JSON (run in a
subprocess by test_dag_integrity.py so Airflow is configured by that process's environment only)."""

import json
import sys
import time

started = time.perf_counter()
from airflow.models import DagBag  # noqa: E402

imported_airflow = time.perf_counter() - started
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "params": sorted(dag.params.keys()),
        "schedule": str(getattr(dag.timetable, "description", None) or dag.timetable),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": {
            task.task_id: {
                "downstream": sorted(task.downstream_task_ids),
                "operator": type(task).__name__,
                "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
                "retries": task.retries,
                "executor_config": task.executor_config,
                "trigger_dag_id": getattr(task, "trigger_dag_id", None),
            }
            for task in dag.tasks
        },
    }

from solutions_core.orchestration.airflow_dags import training_dag  # noqa: E402
from solutions_core.orchestration.config import OrchestrationConfig  # noqa: E402

from solutions_core.registry import list_solutions  # noqa: E402


def pods_by_target(dag, task_id: str) -> dict:
    """The pod the provider's KubernetesPodOperator would create for a run triggered with each target:
    its templates rendered from that run's params, as the kubernetes client serializes it."""
    import copy
    import datetime as dt
    import types

    from kubernetes.client import ApiClient

    pods = {}
    for target in ("cpu", "gpu", "tpu"):
        task = copy.copy(dag.get_task(task_id))
        params = {**{name: param.value for name, param in dag.params.items()}, "target": target, "config": {"training": {"epochs": 1}}}
        instance = types.SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, map_index=-1, try_number=1)
        context = {"params": params, "logical_date": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), "run_id": "manual__1", "dag": dag, "task": task, "ti": instance}
        task.render_template_fields(context)
        pods[target] = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context, dry_run=True))
    return pods


def serialized(executor_config: dict) -> dict:
    from kubernetes.client import ApiClient

    return {key: ApiClient().sanitize_for_serialization(value) | {"model": type(value).__name__} for key, value in executor_config.items()}


on_cluster = training_dag(list_solutions()[0].name, OrchestrationConfig.model_validate(
    {"kubernetes": {"enabled": True, "volume_claim": "solutions-home"}, "defaults": {"target": "cpu"}}))
print(json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "parse_seconds": {stat.file: stat.duration.total_seconds() for stat in bag.dagbag_stats},
    "airflow_import_seconds": imported_airflow,
    "tensorflow_imported": "tensorflow" in sys.modules,
    "dags": dags,
    "cluster": {
        "operators": {task.task_id: [cls.__module__ + "." + cls.__name__ for cls in type(task).__mro__[:2]] for task in on_cluster.tasks},
        "executor_config": {task.task_id: serialized(task.executor_config) for task in on_cluster.tasks},
        "train_candidates": pods_by_target(on_cluster, "train_candidates"),
    },
}, default=str))
