"""The production image, built and used: ``deploy/docker/Dockerfile`` built with podman (Debian's
package), then the image trains an app, publishes it and serves it over HTTP on 127.0.0.1.

What this sandbox changes, and nothing else: it reaches no image registry, so the base is a Debian
bookworm root file system made by debootstrap with Python 3.11 and pip (what ``python:3.11-slim-bookworm``
is), trusting this machine's CA certificates (its network passes through a TLS proxy); and its kernel lets
no OCI runtime set cgroups or rlimits, so the build's RUN steps and the commands here run with chroot
isolation (``--isolation chroot``, ``buildah run``) instead of a container runtime. Run by
``make test-image`` (root, Debian: it installs podman and debootstrap), which CI runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.image
REPO = Path(__file__).resolve().parents[1]
BASE = "localhost/solutions-test-base:bookworm-py311"
IMAGE = "localhost/solutions:test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(command: list[str], timeout: float = 900, **options) -> subprocess.CompletedProcess:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **options)
    assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}"
    return finished


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    missing = [tool for tool in ("podman", "buildah", "debootstrap") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: `make test-image` installs them (apt-get install podman debootstrap, as root)."
    rootfs = tmp_path_factory.mktemp("base") / "rootfs"
    run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates", "bookworm", str(rootfs),
         "http://deb.debian.org/debian"])
    (rootfs / "usr" / "lib" / "python3.11" / "EXTERNALLY-MANAGED").unlink(missing_ok=True)  # as in python:*-slim, pip installs system-wide
    (rootfs / "usr" / "local" / "bin" / "python").symlink_to("/usr/bin/python3")
    shutil.copyfile(CA_BUNDLE, rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    archive = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run(["podman", "import", "--change", f"ENV SSL_CERT_FILE={CA_BUNDLE}", "-", BASE], stdin=archive.stdout)
    archive.wait()
    shutil.rmtree(rootfs)
    started = time.perf_counter()
    run(["podman", "build", "--isolation", "chroot", "-f", "deploy/docker/Dockerfile", "--build-arg", f"BASE_IMAGE={BASE}", "-t", IMAGE, "."],
        timeout=1800, cwd=REPO)
    print(f"image built in {time.perf_counter() - started:.0f} s")
    try:
        yield IMAGE
    finally:
        subprocess.run(["podman", "rmi", "-f", IMAGE, BASE], capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def container(image, tmp_path_factory):
    """A working container of the image with a host folder as its SOLUTIONS_HOME (what a pod's volume is)."""
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o777)  # the image runs as uid 10001
    name = run(["buildah", "from", "--volume", f"{home}:/artifacts", image]).stdout.strip()
    try:
        yield name, home
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)


def inside(container: str, *command: str, timeout: float = 900) -> str:
    return run(["buildah", "run", "--isolation", "chroot", container, "--", *command], timeout=timeout).stdout


def test_the_image_lists_every_app_and_runs_as_its_own_user(container):
    name, _ = container
    listed = inside(name, "solutions", "list")
    for app in ("fraud_detection", "vision_qc", "recommendation", "demand_forecasting"):
        if (REPO / "solutions" / app).is_dir():
            assert app in listed
    assert inside(name, "id", "-u").strip() == "10001"
    assert inside(name, "python", "-c", "import tensorflow as tf, airflow; print(tf.__version__)").strip() == "2.21.0"


def test_the_image_trains_publishes_and_serves_over_http(container):
    from solutions_core.demo import free_port

    name, home = container
    app = "fraud_detection" if (REPO / "solutions" / "fraud_detection").is_dir() else sorted(p.name for p in (REPO / "solutions").iterdir())[0]
    # The pod's command for one stage (an Airflow task on Kubernetes), then the rest of the run.
    for stage in ("validate_data", "split_data", "train_candidates", "score_on_test", "gate", "publish", "write_report"):
        printed = inside(name, "solutions", "stage", stage, app, "--run-id", "image", "--preset", "tiny")
    assert json.loads(printed.strip().splitlines()[-1])["status"] == "promoted"
    assert (home / "models" / app / "1" / "saved_model.pb").is_file()

    port = free_port()
    server = subprocess.Popen(
        ["buildah", "run", "--isolation", "chroot", name, "--", "solutions", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{app}", timeout=5) as answer:
                    status = json.loads(answer.read())
                    break
            except OSError:
                time.sleep(1)
        assert status is not None, (server.stdout.read() if server.poll() is not None else "the server never answered")[-3000:]
        assert status["model_version_status"][0]["state"] == "AVAILABLE" and status["model_version_status"][0]["version"] == "1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        # buildah passes the signal on; make sure nothing of the server outlives the test.
        subprocess.run(["pkill", "-f", "--", f"solutions serve --host 127.0.0.1 --port {port}"], capture_output=True)
