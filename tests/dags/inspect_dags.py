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
            }
            for task in dag.tasks
        },
    }

from solutions_core.orchestration.airflow_dags import training_dag  # noqa: E402
from solutions_core.orchestration.config import OrchestrationConfig  # noqa: E402

from solutions_core.registry import list_solutions  # noqa: E402

on_cluster = training_dag(list_solutions()[0].name, OrchestrationConfig.model_validate({"kubernetes": {"enabled": True}, "defaults": {"target": "gpu"}}))
print(json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "parse_seconds": {stat.file: stat.duration.total_seconds() for stat in bag.dagbag_stats},
    "airflow_import_seconds": imported_airflow,
    "tensorflow_imported": "tensorflow" in sys.modules,
    "dags": dags,
    "cluster_executor_config": {task.task_id: task.executor_config for task in on_cluster.tasks},
}, default=str))
