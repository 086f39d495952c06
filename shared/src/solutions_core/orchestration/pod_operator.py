"""A training stage in its own pod, on the accelerator of the target the DAG run was triggered with.

``StagePodOperator`` is the cncf.kubernetes provider's KubernetesPodOperator; only its pod is chosen at
run time: ``build_pod_request_obj`` renders the pod (``kubernetes.render_pod``) for the run's ``target``
param, so triggering ``train_<app>`` with ``{"target": "tpu"}`` asks for a TPU node even when the YAML
config's default target is ``cpu``. The pod runs ``solutions stage STAGE APP --run-id ...`` on the run's
folder (shared through ``kubernetes.volume_claim``). Imported only when Kubernetes is enabled.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from solutions_core.orchestration.config import KubernetesConfig
from solutions_core.orchestration.kubernetes import as_model, render_pod

# The stage's arguments from the run's params, rendered by Airflow at run time. The run id is keyed by
# the logical date, as the in-process tasks' (``orchestration.run_id_for``).
ARGUMENTS = [
    "--run-id", "{{ solutions_run_id(logical_date, run_id) }}",
    "--target", "{{ params.target }}",
    "--preset", "{{ params.preset }}",
    "--overrides", "{{ (params.config or {}) | tojson }}",
    "--min-delta", "{{ params.min_delta | default(0.0) }}",
    "{{ '--source=' ~ params.source if params.source else '--source=' }}",
]


class StagePodOperator(KubernetesPodOperator):
    """One stage of ``app``'s pipeline in a pod with the trigger-time target's resources."""

    def __init__(self, *, kubernetes: KubernetesConfig, app: str, stage: str, default_target: str, **kwargs: Any):
        self.solutions_kubernetes = kubernetes
        self.solutions_app = app
        self.solutions_stage = stage
        self.solutions_default_target = default_target
        super().__init__(
            image=kubernetes.image,
            namespace=kubernetes.namespace,
            name=f"{app}-{stage}".replace("_", "-"),
            cmds=["solutions", "stage", stage, app],
            arguments=list(ARGUMENTS),
            do_xcom_push=False,  # the stage's artifacts live in the run folder; the next task reads them there
            get_logs=True,
            on_finish_action="delete_succeeded_pod",
            **kwargs,
        )

    def target(self, context: Any) -> str:
        params = (context or {}).get("params") or {}
        return str(params.get("target") or self.solutions_default_target)

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> Any:
        manifest = render_pod(self.solutions_kubernetes, app=self.solutions_app, stage=self.solutions_stage, target=self.target(context))
        self.full_pod_spec = as_model(manifest)
        return super().build_pod_request_obj(context, dry_run=dry_run)
