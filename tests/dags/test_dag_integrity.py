"""The DAG files: they load with no import errors, parse fast without TensorFlow, and wire the
core's stages as expected (the Airflow-free parts are tested directly)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

from solutions_core.stages import STAGES as STAGE_TABLE  # noqa: E402  (no TensorFlow, no pandas)

STAGES = [stage.name for stage in STAGE_TABLE]
# Seconds per file (Airflow's own import timeout is 30 s). training.py imports neither TensorFlow nor
# pandas (≈ 0.3–1 s on a busy 2-core machine); batch.py imports each app to ask whether it has batch
# work, which pulls in pandas (≈ 1–7 s there, depending on load).
PARSE_SECONDS_LIMIT = {"training.py": 5.0, "batch.py": 15.0, "monitoring.py": 5.0}


def registered() -> list[str]:
    from solutions_core.registry import list_solutions

    return [entry.name for entry in list_solutions()]


@pytest.fixture(scope="module")
def loaded(airflow_env) -> dict:
    finished = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("inspect_dags.py")), str(REPO / "dags")],
        env=airflow_env, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_every_dag_file_loads_without_import_errors(loaded):
    assert loaded["import_errors"] == {}
    assert set(loaded["parse_seconds"]) == {"training.py", "batch.py", "monitoring.py"}


def test_dag_files_parse_fast_and_never_import_tensorflow(loaded):
    print("parse seconds per file:", loaded["parse_seconds"], "(airflow import", round(loaded["airflow_import_seconds"], 1), "s)")
    assert not loaded["tensorflow_imported"]
    for file, seconds in loaded["parse_seconds"].items():
        assert seconds < PARSE_SECONDS_LIMIT[file], f"{file} took {seconds:.1f} s to parse"


def test_one_training_dag_per_app_and_batch_dags_for_apps_with_batch_work(loaded):
    from solutions_core.registry import get_solution

    apps = registered()
    with_batch = [app for app in apps if get_solution(app).batch is not None]
    assert {"fraud_detection", "recommendation", "demand_forecasting"} & set(apps) <= set(with_batch)  # those a fork kept
    assert set(loaded["dags"]) == {f"train_{app}" for app in apps} | {f"batch_{app}" for app in with_batch} | {f"monitor_{app}" for app in apps}


def test_training_dags_chain_the_core_stages(loaded):
    """The DAG is the pipeline's own stage table, task for task (the table run_training follows)."""
    assert STAGES == ["validate_data", "split_data", "train_candidates", "score_on_test", "gate", "publish", "write_report"]
    for app in registered():
        dag = loaded["dags"][f"train_{app}"]
        tasks = dag["tasks"]
        assert sorted(tasks) == sorted(STAGES)
        for before, after in zip(STAGES, STAGES[1:]):
            assert tasks[before]["downstream"] == [after], (app, before)
        assert tasks["write_report"]["downstream"] == []
        # The gate skips publish when the candidate loses; the report runs either way.
        assert tasks["gate"]["operator"] == "ShortCircuitOperator"
        assert tasks["write_report"]["trigger_rule"] == "none_failed"
        assert all(task["retries"] >= 1 for task in tasks.values())
        assert {"target", "source", "preset", "config"} <= set(dag["params"])
        assert dag["catchup"] is False and dag["max_active_runs"] == 1
        assert all(task["executor_config"] == {} for task in tasks.values())  # Kubernetes is off by default


def test_monitor_dags_compare_then_trigger_training_on_drift_and_fail(loaded):
    for app in registered():
        dag = loaded["dags"][f"monitor_{app}"]
        tasks = dag["tasks"]
        assert [tasks[name]["downstream"] for name in ("compare", "drifted", "retrain", "verdict")] == [["drifted"], ["retrain"], ["verdict"], []]
        assert tasks["drifted"]["operator"] == "ShortCircuitOperator" and tasks["retrain"]["operator"] == "TriggerDagRunOperator"
        assert tasks["retrain"]["trigger_dag_id"] == f"train_{app}"
        assert tasks["verdict"]["trigger_rule"] == "none_failed"  # it runs (and fails on drift) when no retraining was asked
        assert "retrain" in dag["params"] and "0 0 * * *" in dag["schedule"]


def test_batch_dags_fan_out_over_mapped_shards_then_publish_once_daily(loaded):
    for dag_id in (d for d in loaded["dags"] if d.startswith("batch_")):
        dag = loaded["dags"][dag_id]
        tasks = dag["tasks"]
        assert sorted(tasks) == ["plan", "publish", "shard"]
        assert tasks["plan"]["downstream"] == ["shard"] and tasks["shard"]["downstream"] == ["publish"]
        assert tasks["shard"]["operator"] == "MappedOperator"  # dynamic task mapping: one task instance per shard
        assert "shards" in dag["params"]
        assert "0 0 * * *" in dag["schedule"], dag["schedule"]  # @daily


def test_on_a_cluster_the_train_stage_gets_a_pod_of_the_target_the_run_was_triggered_with(loaded):
    """The same DAG (its YAML default target: cpu) triggered with target gpu or tpu: the provider's
    KubernetesPodOperator builds a pod with that accelerator, running the stage's CLI command on the
    run's folder in the shared volume."""
    cluster = loaded["cluster"]
    operator, base = cluster["operators"]["train_candidates"]
    assert base == "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator", operator
    assert cluster["operators"]["gate"][0].endswith("ShortCircuitOperator")  # decides in the scheduler's worker
    pods = cluster["train_candidates"]
    limits = {target: pod["spec"]["containers"][0]["resources"].get("limits", {}) for target, pod in pods.items()}
    assert limits["gpu"]["nvidia.com/gpu"] == "1" and limits["tpu"]["google.com/tpu"] == "4"
    assert "nvidia.com/gpu" not in limits["cpu"] and "google.com/tpu" not in limits["cpu"]
    assert pods["gpu"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pods["tpu"]["spec"]["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2"
    for target, pod in pods.items():
        container = pod["spec"]["containers"][0]
        assert container["command"][:3] == ["solutions", "stage", "train_candidates"]
        arguments = container["args"]
        assert arguments[arguments.index("--target") + 1] == target
        assert arguments[arguments.index("--run-id") + 1] == "scheduled-20261201T000000"  # keyed by the logical date, as in-process tasks
        assert json.loads(arguments[arguments.index("--overrides") + 1]) == {"training": {"epochs": 1}}
        assert {"name": "SOLUTIONS_HOME", "value": "/solutions"} in container["env"]
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "solutions-home"
        assert pod["spec"]["restartPolicy"] == "Never"
    # The other stages: the KubernetesExecutor's pod_override, a CPU pod (copying files needs no GPU).
    publish = cluster["executor_config"]["publish"]["pod_override"]
    assert publish["model"] == "V1Pod" and "nvidia.com/gpu" not in publish["spec"]["containers"][0]["resources"]["limits"]


# ---- the Airflow-free parts ------------------------------------------------------------------


def test_pod_specs_per_target():
    from solutions_core.orchestration.config import KubernetesConfig
    from solutions_core.orchestration.kubernetes import executor_config, render_pod

    config = KubernetesConfig(enabled=True, image="registry.example.com/solutions:1.2", namespace="ml")
    tpu = render_pod(config, app="recommendation", stage="train_candidates", target="tpu")
    container = tpu["spec"]["containers"][0]
    assert tpu["kind"] == "Pod" and tpu["metadata"]["namespace"] == "ml"
    assert container["name"] == "base" and container["image"] == "registry.example.com/solutions:1.2"
    assert container["resources"]["limits"]["google.com/tpu"] == "4"
    assert tpu["spec"]["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2"
    assert {"name": "SOLUTIONS_TARGET", "value": "tpu"} in container["env"]
    assert tpu["metadata"]["labels"]["solutions/app"] == "recommendation"
    cpu = render_pod(config, app="fraud_detection", stage="validate_data", target="gpu")
    assert cpu["metadata"]["labels"]["solutions/target"] == "cpu" and "nodeSelector" not in cpu["spec"]
    assert executor_config(KubernetesConfig(), app="fraud_detection", stage="train_candidates", target="gpu") == {}
    assert type(executor_config(config, app="fraud_detection", stage="publish", target="gpu")["pod_override"]).__name__ == "V1Pod"
    with pytest.raises(ValueError, match="No pod resources"):
        render_pod(KubernetesConfig(targets={"cpu": {}}), app="x", stage="train_candidates", target="gpu")


def test_orchestration_config_file_and_errors(tmp_path):
    from solutions_core.orchestration.config import load_orchestration_config

    shipped = load_orchestration_config(REPO / "dags" / "orchestration.yaml")
    assert set(shipped.apps) <= set(registered()), "settings for an app that is not installed"
    if "vision_qc" in registered():
        assert shipped.app("vision_qc").target == "edge"
    assert shipped.app("an_app_without_settings").target == shipped.defaults.target
    with pytest.raises(ValueError, match="does not exist"):
        load_orchestration_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  target: quantum\n")
    with pytest.raises(ValueError):
        load_orchestration_config(bad)


def test_run_folders_are_keyed_by_logical_date_and_presets_merge():
    from solutions_core.orchestration import make_config, run_id_for
    from solutions_core.registry import get_solution

    date = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    assert run_id_for(date, "manual__anything") == run_id_for(date, "scheduled__other") == "scheduled-20261120T000000"
    assert run_id_for(None, "manual__2026-11-20T10:00:00+00:00") == "manual__2026-11-20T10_00_00_00_00"
    solution = get_solution(registered()[0])
    config = make_config(solution, "tiny", {"training": {"epochs": 2}}, source="/data/day.parquet")
    tiny = solution.tiny_config().model_dump(exclude={"training", "source"})
    assert config.model_dump(exclude={"training", "source"}) == tiny and config.training.epochs == 2
    assert config.training.steps_per_epoch == solution.tiny_config().training.steps_per_epoch
    assert config.source == "/data/day.parquet"
    with pytest.raises(ValueError, match="preset"):
        make_config(solution, "huge")
