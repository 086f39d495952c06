"""Kubernetes for the suite, rendered from the orchestration config: a stage's pod per target (the
accelerator's resource requests and limits, ``nvidia.com/gpu`` or ``google.com/tpu``, node selectors,
tolerations, the shared volume), and a multi-worker training Job.

Renderers return plain manifest dicts (what ``kubectl apply`` takes); ``as_model`` turns one into the
kubernetes client's model (``V1Pod``, ``V1Job``, ...), which is what Airflow's KubernetesExecutor
(``executor_config={"pod_override": V1Pod}``) and KubernetesPodOperator take, and which checks every
field's name and type. The client comes with ``apache-airflow-providers-cncf-kubernetes``.
"""

from __future__ import annotations

import json
from typing import Any

from solutions_core.orchestration.config import KubernetesConfig

BASE_CONTAINER = "base"  # the KubernetesExecutor and KubernetesPodOperator merge into the container of this name
HOME = "/solutions"  # where the shared volume is mounted, as SOLUTIONS_HOME
WORKER_PORT = 2222  # TensorFlow's conventional port for a worker's gRPC server


def render_pod(config: KubernetesConfig, *, app: str, stage: str, target: str) -> dict[str, Any]:
    """The pod manifest for one task: ``stage`` of ``app``, trained for ``target``."""
    pod_target = target if stage in config.accelerated_stages else "cpu"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": config.namespace, "labels": _labels(app, stage, pod_target)},
        "spec": _pod_spec(config, target=target, pod_target=pod_target),
    }


def _labels(app: str, stage: str, target: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "solutions", "solutions/app": app, "solutions/stage": stage, "solutions/target": target}


def _pod_spec(config: KubernetesConfig, *, target: str, pod_target: str, command: list[str] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    if pod_target not in config.targets:
        raise ValueError(f"No pod resources for target {pod_target!r} in the kubernetes config; it has {sorted(config.targets)}.")
    resources = config.targets[pod_target]
    variables = {"SOLUTIONS_TARGET": target, **(env or {})}
    container: dict[str, Any] = {
        "name": BASE_CONTAINER,
        "image": config.image,
        "resources": {
            "requests": {name: str(value) for name, value in resources.requests.items()},
            "limits": {name: str(value) for name, value in resources.limits.items()},
        },
    }
    if command:
        container["command"] = command
    spec: dict[str, Any] = {"containers": [container]}
    if config.volume_claim:
        variables["SOLUTIONS_HOME"] = HOME
        container["volumeMounts"] = [{"name": "solutions-home", "mountPath": HOME}]
        spec["volumes"] = [{"name": "solutions-home", "persistentVolumeClaim": {"claimName": config.volume_claim}}]
    container["env"] = [{"name": name, "value": value} for name, value in variables.items()]
    if resources.node_selector:
        spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in resources.tolerations]
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    return spec


def as_model(manifest: dict[str, Any], model: str | None = None) -> Any:
    """``manifest`` as the kubernetes client's model (``V1Pod`` for a Pod, ...): every field checked by
    name and type, as the API server would. Needs the kubernetes client."""
    try:
        from kubernetes.client import ApiClient
    except ImportError:
        raise ValueError(
            "Running on Kubernetes needs the kubernetes client: install apache-airflow-providers-cncf-kubernetes "
            "(it brings the client and the KubernetesPodOperator)."
        ) from None

    class _Response:  # ApiClient.deserialize reads a response's .data
        data = json.dumps(manifest)

    client = ApiClient()
    built = client.deserialize(_Response(), model or f"V1{manifest['kind']}")
    # The client's models drop keys they do not know; a manifest must survive the round trip whole.
    lost = _differences(manifest, client.sanitize_for_serialization(built))
    if lost:
        raise ValueError(f"The {manifest.get('kind', 'manifest')} has fields Kubernetes does not know or with the wrong type: {', '.join(lost)}.")
    return built


def _differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path or "."]
        return [difference for key, value in expected.items() for difference in _differences(value, actual.get(key), f"{path}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [path]
        return [difference for index, (a, b) in enumerate(zip(expected, actual)) for difference in _differences(a, b, f"{path}[{index}]")]
    return [] if expected == actual else [path]


def executor_config(config: KubernetesConfig, *, app: str, stage: str, target: str) -> dict[str, Any]:
    """A task's ``executor_config`` for the KubernetesExecutor: empty unless Kubernetes is enabled."""
    if not config.enabled:
        return {}
    return {"pod_override": as_model(render_pod(config, app=app, stage=stage, target=target))}


def training_job(config: KubernetesConfig, *, app: str, target: str, workers: int, name: str | None = None, arguments: list[str] | None = None) -> list[dict[str, Any]]:
    """``solutions train APP`` on ``workers`` pods at once, as an indexed Job and the headless Service
    that gives each pod a stable name (``<job>-<index>.<service>``). Each pod turns its
    ``JOB_COMPLETION_INDEX`` and ``SOLUTIONS_WORKER_HOSTS`` into ``TF_CONFIG``
    (``solutions_core.strategy.cluster_from_indexed_job``); pod 0 is the chief, the one that publishes.
    A Kubeflow ``TFJob`` running the same command works too: the operator sets ``TF_CONFIG`` itself."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    job = name or f"train-{app.replace('_', '-')}"
    hosts = ",".join(f"{job}-{index}.{job}:{WORKER_PORT}" for index in range(workers))
    command = ["solutions", "train", app, "--target", target, "--quiet", *(arguments or [])]
    spec = _pod_spec(config, target=target, pod_target=target, command=command, env={"SOLUTIONS_WORKER_HOSTS": hosts} if workers > 1 else {})
    spec["containers"][0]["ports"] = [{"name": "tf-worker", "containerPort": WORKER_PORT}]
    spec |= {"subdomain": job, "restartPolicy": "Never"}
    labels = {**_labels(app, "train", target), "job-name": job}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": job, "namespace": config.namespace, "labels": dict(labels)},
        # Headless: DNS names for the Job's pods, no load balancing (workers talk to each other directly).
        "spec": {"clusterIP": "None", "selector": {"job-name": job}, "ports": [{"name": "tf-worker", "port": WORKER_PORT}]},
    }
    job_manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job, "namespace": config.namespace, "labels": dict(labels)},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,  # all at once: the workers wait for each other at the first step
            "backoffLimit": 0,  # a lost worker fails the run; retrying is the scheduler's call
            "template": {"metadata": {"labels": dict(labels)}, "spec": spec},
        },
    }
    return [service, job_manifest]
