"""Training on many machines: MultiWorkerMirroredStrategy from ``TF_CONFIG``, with two real worker
processes on 127.0.0.1 (CPU, collectives over gRPC) running the same entry point a Kubernetes Job runs
(``solutions train``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solutions_core.model_registry import ModelVersion
from solutions_core.strategy import cluster_from_environment, cluster_from_indexed_job


def tf_config(workers: list[str], index: int, chief: str | None = None, task_type: str = "worker") -> dict[str, str]:
    cluster: dict[str, list[str]] = {"worker": workers}
    if chief:
        cluster["chief"] = [chief]
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_tf_config_names_the_cluster_and_the_chief():
    workers = ["10.0.0.1:2222", "10.0.0.2:2222"]
    first, second = (cluster_from_environment(tf_config(workers, index)) for index in (0, 1))
    assert first is not None and second is not None
    assert first.size == 2 and first.is_chief and not second.is_chief
    # With a "chief" task, worker 0 is an ordinary worker.
    with_chief = cluster_from_environment(tf_config(workers, 0, chief="10.0.0.9:2222"))
    assert with_chief is not None and with_chief.size == 3 and not with_chief.is_chief
    chief = cluster_from_environment(tf_config(workers, 0, chief="10.0.0.9:2222", task_type="chief"))
    assert chief is not None and chief.is_chief


def test_one_task_or_no_tf_config_is_one_process():
    assert cluster_from_environment({}) is None
    assert cluster_from_environment(tf_config(["10.0.0.1:2222"], 0)) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "TF_CONFIG is not a valid cluster description"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 5}}), "not in its cluster"),
        (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}), "parameter servers"),
    ],
)
def test_a_bad_tf_config_is_a_clear_error(value, message):
    with pytest.raises(ValueError, match=message):
        cluster_from_environment({"TF_CONFIG": value})


def test_an_indexed_job_pod_gets_its_tf_config():
    hosts = "train-0.workers:2222, train-1.workers:2222"
    made = cluster_from_indexed_job({"SOLUTIONS_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": "1"})
    assert made is not None
    cluster = cluster_from_environment({"TF_CONFIG": made})
    assert cluster is not None and cluster.tasks == {"worker": ["train-0.workers:2222", "train-1.workers:2222"]}
    assert cluster.task_index == 1 and not cluster.is_chief
    assert cluster_from_indexed_job({"JOB_COMPLETION_INDEX": "0"}) is None
    with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX"):
        cluster_from_indexed_job({"SOLUTIONS_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": "2"})


# ---- two real workers -------------------------------------------------------------------------------


def train(home: Path, settings: list[str], extra_env: dict[str, str]) -> subprocess.Popen:
    from tiny_app import server_environment

    environment = {**os.environ, **server_environment(), "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
    command = [sys.executable, "-m", "solutions_core.cli", "train", "tiny_app", "--home", str(home), "-q"]
    for setting in settings:
        command += ["--set", setting]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"a training process did not finish in {timeout} s:\n{output[-3000:]}") from None
    assert process.returncode == 0, output[-3000:]
    return " ".join(output.split())  # the console wraps long lines


def train_with_two_workers(home: Path, settings: list[str]) -> tuple[str, str]:
    from solutions_core.demo import free_port

    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    processes = [train(home, settings, tf_config(workers, index)) for index in range(2)]
    try:
        return finish(processes[0]), finish(processes[1])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


def warmup_outputs(version: Path) -> np.ndarray:
    """The version's answers to its own warm-up request (the run's golden instances)."""
    import pandas as pd

    from solutions_core.export import load_signature, predict_frame
    from solutions_core.serving.models import WARMUP_FILE

    instances = json.loads((version / "assets.extra" / WARMUP_FILE).read_text())["instances"]
    outputs = predict_frame(load_signature(version), pd.DataFrame(instances), 256)
    return np.concatenate([np.asarray(values, dtype=np.float64).ravel() for name, values in sorted(outputs.items()) if np.asarray(values).dtype.kind == "f"])


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_evaluates_gates_and_publishes(tmp_path):
    """Two workers sharing one home (as pods sharing a volume would): both take the same Keras steps, each
    on half of every global batch; only the chief writes a run folder and publishes, the worker follows
    its verdict into the refit; the result matches one process trained at the same global batch. A
    rejected run lets the worker stop instead of waiting for steps that never come."""
    settings = ["size=2000", "candidates=[mlp]", "gate.beat_baselines=false", "refit_on_all_data=true",
                "training.epochs=2", "training.early_stopping_patience=0"]
    shared = tmp_path / "shared"
    chief_output, worker_output = train_with_two_workers(shared, settings)

    versions = sorted((shared / "models" / "tiny_app").iterdir())
    assert [version.name for version in versions] == ["1"], chief_output
    runs = list((shared / "runs" / "tiny_app").iterdir())
    assert len(runs) == 1  # the worker's run folder was a temporary one
    report = json.loads((runs[0] / "report.json").read_text())
    metadata = ModelVersion("tiny_app", 1, versions[0]).metadata()
    assert metadata["runtime"]["workers"] == 2 and metadata["runtime"]["task"] == "worker 0"
    assert metadata["runtime"]["replicas"] == 2 and metadata["refit_on_all_data"] is True
    assert "worker 1 of 2 trained in step with the chief" in worker_output and "then the refit" in worker_output

    # Same steps on both workers: each worker's epoch is ceil(train rows / global batch) steps, half
    # of what one process takes at the per-worker batch: each saw its shard of every global batch.
    (mlp,) = [candidate for candidate in report["candidates"] if candidate["name"] == "mlp"]
    train_rows = json.loads((runs[0] / "artifacts" / "split_data.json").read_text())["sizes"]["train"]
    global_batch = 2 * 64  # two workers at the tiny app's batch of 64
    expected = 2 * -(-train_rows // global_batch)
    assert mlp["keras_steps"] == expected, mlp
    assert f"({expected} Keras steps" in worker_output

    single = tmp_path / "single"
    finish(train(single, [*settings, "training.batch_size=128"], {}))
    alone = ModelVersion("tiny_app", 1, single / "models" / "tiny_app" / "1")
    single_report = json.loads(next((single / "runs" / "tiny_app").glob("*/report.json")).read_text())
    difference = np.max(np.abs(warmup_outputs(versions[0]) - warmup_outputs(alone.path)))
    print(f"test AUROC: two workers {report['test']['auroc']:.4f}, one process {single_report['test']['auroc']:.4f}; "
          f"largest difference of their answers {difference:.4f}; {expected} steps per worker")
    assert abs(single_report["test"]["auroc"] - report["test"]["auroc"]) < 0.02
    assert difference < 0.05, difference

    # A candidate the gate rejects: the chief tells the worker there is no refit, and both end.
    chief_output, worker_output = train_with_two_workers(shared, [*settings, "gate.beat_baselines=true", "gate.baseline_margin=1"])
    assert "rejected" in chief_output
    assert "then the refit" not in worker_output and "worker 1 of 2 trained in step" in worker_output
    assert [version.name for version in sorted((shared / "models" / "tiny_app").iterdir())] == ["1"]
