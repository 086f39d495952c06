"""A task's Kubernetes pod, rendered from the orchestration config per target: the accelerator's
resource requests and limits (``nvidia.com/gpu``, ``google.com/tpu``), node selectors and tolerations.

The rendered pod is a plain manifest dict (what ``kubectl`` takes). The KubernetesExecutor wants a
``kubernetes.client.V1Pod`` as ``executor_config={"pod_override": ...}``; ``executor_config`` builds one
when the kubernetes client is installed (it comes with the cncf.kubernetes provider, which a cluster
deployment installs; this repo does not need it), else it carries the dict under ``pod_spec``.
"""

from __future__ import annotations

import json
from typing import Any

from solutions_core.orchestration.config import KubernetesConfig

BASE_CONTAINER = "base"  # the KubernetesExecutor merges overrides into the container of this name


def render_pod(config: KubernetesConfig, *, app: str, stage: str, target: str) -> dict[str, Any]:
    """The pod manifest for one task: ``stage`` of ``app``, trained for ``target``."""
    pod_target = target if stage in config.accelerated_stages else "cpu"
    if pod_target not in config.targets:
        raise ValueError(f"No pod resources for target {pod_target!r} in the kubernetes config; it has {sorted(config.targets)}.")
    resources = config.targets[pod_target]
    container: dict[str, Any] = {
        "name": BASE_CONTAINER,
        "image": config.image,
        "env": [{"name": "SOLUTIONS_TARGET", "value": target}],
        "resources": {
            "requests": {name: str(value) for name, value in resources.requests.items()},
            "limits": {name: str(value) for name, value in resources.limits.items()},
        },
    }
    spec: dict[str, Any] = {"containers": [container]}
    if resources.node_selector:
        spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in resources.tolerations]
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": config.namespace,
            "labels": {"app.kubernetes.io/part-of": "solutions", "solutions/app": app, "solutions/stage": stage, "solutions/target": pod_target},
        },
        "spec": spec,
    }


def executor_config(config: KubernetesConfig, *, app: str, stage: str, target: str) -> dict[str, Any]:
    """A task's ``executor_config``: empty unless Kubernetes is enabled in the config."""
    if not config.enabled:
        return {}
    pod = render_pod(config, app=app, stage=stage, target=target)
    try:
        from kubernetes.client import ApiClient
    except ImportError:
        return {"pod_spec": pod}

    class _Response:  # ApiClient.deserialize reads a response's .data
        data = json.dumps(pod)

    return {"pod_override": ApiClient().deserialize(_Response(), "V1Pod")}
