"""The production image and manifests, checked without building anything: the Dockerfile linted by
hadolint, and the manifests pointing at what the image provides and taken whole by the kubernetes
client's models. The image itself is built and used in tests/test_image.py (`make test-image`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"


def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    linted = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_installs_the_lock_and_serves_beyond_loopback():
    text = DOCKERFILE.read_text()
    assert "uv sync --frozen --all-packages" in text  # the locked environment, not a second dependency list
    assert 'tensorflow[and-cuda]==${TENSORFLOW_VERSION}' in text and "ARG VARIANT=cpu" in text
    assert '"--host", "0.0.0.0"' in text  # a pod's port is reached from outside the pod
    assert "\nUSER " in text and "USER root" not in text
    lock = (REPO / "uv.lock").read_text()
    version = text.split("ARG TENSORFLOW_VERSION=")[1].split()[0]
    assert f'name = "tensorflow"\nversion = "{version}"' in lock  # the GPU extra matches the locked TensorFlow


def test_the_serving_manifest_runs_the_images_command():
    documents = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "serving.yaml").read_text()) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # No entrypoint in the image (Airflow's task pods bring their own command): args are the command.
    assert "ENTRYPOINT" not in DOCKERFILE.read_text()
    assert container["args"][:2] == ["solutions", "serve"] and "0.0.0.0" in container["args"]
    ports = {p["containerPort"] for p in container["ports"]}
    assert {8501, 8500} <= ports


def test_the_training_job_is_what_the_core_renders_and_kubernetes_takes_it_whole():
    """deploy/kubernetes/training-job.yaml: two pods of an indexed Job train together; each finds the
    cluster from its completion index, and pod 0 is the chief."""
    from solutions_core.orchestration.config import KubernetesConfig
    from solutions_core.orchestration.kubernetes import as_model, training_job
    from solutions_core.strategy import cluster_from_environment, cluster_from_indexed_job

    shipped = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "training-job.yaml").read_text()) if d]
    rendered = training_job(KubernetesConfig(volume_claim="solutions-home"), app="fraud_detection", target="cpu", workers=2)
    assert shipped == rendered
    service, job = (as_model(document) for document in shipped)
    assert type(service).__name__ == "V1Service" and type(job).__name__ == "V1Job"
    assert service.spec.cluster_ip == "None" and service.spec.selector == {"job-name": job.metadata.name}
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == job.spec.parallelism == 2
    pod = job.spec.template.spec
    assert pod.subdomain == service.metadata.name and job.spec.template.metadata.labels["job-name"] == job.metadata.name
    container = pod.containers[0]
    assert container.command[:3] == ["solutions", "train", "fraud_detection"]
    environment = {variable.name: variable.value for variable in container.env}
    # Kubernetes names an indexed Job's pods <job>-<index>; under the headless Service they resolve as <job>-<index>.<service>.
    assert environment["SOLUTIONS_WORKER_HOSTS"].split(",") == [f"{job.metadata.name}-{index}.{service.metadata.name}:2222" for index in range(2)]
    clusters = [cluster_from_environment({"TF_CONFIG": cluster_from_indexed_job({**environment, "JOB_COMPLETION_INDEX": str(index)})}) for index in range(2)]
    assert [cluster.is_chief for cluster in clusters] == [True, False]
    assert container.ports[0].container_port == 2222


def test_a_manifest_with_a_field_kubernetes_does_not_know_is_refused():
    import pytest

    from solutions_core.orchestration.config import KubernetesConfig
    from solutions_core.orchestration.kubernetes import as_model, training_job

    _, job = training_job(KubernetesConfig(), app="fraud_detection", target="gpu", workers=3)
    job["spec"]["paralelism"] = 3
    with pytest.raises(ValueError, match=r"\.spec\.paralelism"):
        as_model(job)
    with pytest.raises(ValueError, match="at least 1"):
        training_job(KubernetesConfig(), app="fraud_detection", target="cpu", workers=0)


def test_every_shipped_manifest_is_taken_whole_by_the_kubernetes_models():
    from solutions_core.orchestration.kubernetes import as_model

    documents = [d for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = sorted(type(as_model(document)).__name__ for document in documents)
    assert {"V1Deployment", "V1Service", "V1Job"} <= set(kinds), kinds
