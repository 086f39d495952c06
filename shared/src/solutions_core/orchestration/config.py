"""How the DAGs are scheduled and where their tasks run, from one YAML file (``dags/orchestration.yaml``
by default, or ``$SOLUTIONS_ORCHESTRATION_CONFIG``). Read at DAG parse time, so it stays cheap: YAML and
pydantic only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from solutions_core.stages import STAGES

ENVIRONMENT_VARIABLE = "SOLUTIONS_ORCHESTRATION_CONFIG"


class TargetResources(BaseModel):
    """One target's pod: resource requests/limits (e.g. ``nvidia.com/gpu``, ``google.com/tpu``), node
    selectors and tolerations."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)


def _default_targets() -> dict[str, TargetResources]:
    cpu = TargetResources(requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "8Gi"})
    return {
        "cpu": cpu,
        "edge": cpu,  # edge models are built (converted, parity-checked) on CPU nodes
        "gpu": TargetResources(
            requests={"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
            limits={"memory": "16Gi", "nvidia.com/gpu": 1},
            node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        "tpu": TargetResources(
            requests={"google.com/tpu": 4},
            limits={"google.com/tpu": 4},
            node_selector={"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice", "cloud.google.com/gke-tpu-topology": "2x2"},
            tolerations=[{"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    }


class KubernetesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Run on Kubernetes: the accelerated stages each in a pod of the target the run was triggered with "
        "(KubernetesPodOperator), the other tasks with a CPU pod override (for the KubernetesExecutor).",
    )
    image: str = Field(default="solutions:latest", description="The image the pods run: deploy/docker/Dockerfile (VARIANT=gpu for GPU pods).")
    namespace: str = "default"
    service_account: str | None = None
    volume_claim: str | None = Field(
        default=None,
        description="A PersistentVolumeClaim (ReadWriteMany) mounted at /solutions as SOLUTIONS_HOME in every pod, so "
        "the stages of a run, each in its own pod, share its folder and the model registry.",
    )
    accelerated_stages: list[str] = Field(
        default_factory=lambda: [stage.name for stage in STAGES if stage.accelerated] + ["batch"],
        description="Stages that get the target's accelerator; the others get the cpu pod.",
    )
    targets: dict[str, TargetResources] = Field(default_factory=_default_targets)


class AppSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_schedule: str | None = "@weekly"
    batch_schedule: str | None = "@daily"
    batch_shards: int = Field(default=1, ge=1, le=256, description="Tasks a date's batch work is split into (the DAG's `shards` param).")
    monitor_schedule: str | None = Field(default="@daily", description="When monitor_<app> compares the day's request log with the champion's training statistics.")
    retrain_on_drift: bool = Field(default=True, description="A drifted day triggers train_<app> (whose gate then judges the new candidate).")
    target: str = Field(default="cpu", pattern="^(cpu|gpu|tpu|edge)$")
    preset: str = Field(default="default", pattern="^(default|demo|tiny)$")
    source: str | None = None


class OrchestrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: AppSchedule = Field(default_factory=AppSchedule)
    apps: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-app overrides of `defaults`.")
    retries: int = Field(default=2, ge=0)
    retry_delay_minutes: float = Field(default=5, ge=0)
    training_timeout_minutes: float = Field(default=240, gt=0)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)

    def app(self, name: str) -> AppSchedule:
        return AppSchedule.model_validate({**self.defaults.model_dump(), **self.apps.get(name, {})})


def load_orchestration_config(path: str | Path | None = None) -> OrchestrationConfig:
    """``path``, else ``$SOLUTIONS_ORCHESTRATION_CONFIG``, else the defaults in code."""
    chosen = path or os.environ.get(ENVIRONMENT_VARIABLE)
    if not chosen:
        return OrchestrationConfig()
    file = Path(chosen)
    if not file.exists():
        raise ValueError(f"Orchestration config {file} does not exist (from {'the argument' if path else ENVIRONMENT_VARIABLE}).")
    loaded = yaml.safe_load(file.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"Orchestration config {file} must hold a mapping (defaults, apps, kubernetes, ...).")
    return OrchestrationConfig.model_validate(loaded)
