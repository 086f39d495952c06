"""The production image and manifests, checked where this machine can check them: the Dockerfile linted
by hadolint (no image is built here: this sandbox has a docker client but no daemon, and no registry to
pull a base image from), and the manifests pointing at what the image provides."""

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
