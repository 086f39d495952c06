"""Production serving over real HTTP and gRPC on 127.0.0.1: TF Serving's whole contract (official
protos), batching, limits, metrics, the API key, labels, canary and rollback, hot reload under load."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest

from solutions_core.demo import ServerProcess, http_json
from solutions_core.model_registry import ModelRegistry
from tiny_app import APP, server_environment

NAME = APP.name


def post(url: str, data: bytes, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as problem:
        return problem.code, json.loads(problem.read()), dict(problem.headers)


def get_text(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as problem:
        return problem.code, problem.read().decode()


@pytest.fixture(scope="module")
def instance(tiny_run):
    return tiny_run.golden_instances[0]


# -- TF Serving's REST contract ----------------------------------------------------------------------


def test_metadata_and_status_parse_into_the_official_protos(tiny_server):
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

    _, metadata = http_json("GET", f"{tiny_server.url}/v1/models/{NAME}/metadata")
    signatures = json_format.ParseDict(metadata["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap())
    assert "serving_default" in signatures.signature_def
    json_format.ParseDict(metadata["model_spec"], model_pb2.ModelSpec())
    _, status = http_json("GET", f"{tiny_server.url}/v1/models/{NAME}")
    parsed = json_format.ParseDict(status, get_model_status_pb2.GetModelStatusResponse())
    assert parsed.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_columnar_answer_with_one_output_is_the_bare_list_and_nan_tokens_are_numbers(tiny_server, instance):
    columns = {name: [value] for name, value in instance.items()}
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:predict", {"inputs": columns})
    assert status == 200 and isinstance(body["outputs"], dict) and len(body["outputs"]) >= 2
    # NaN / Infinity are numbers in TF Serving's JSON: accepted where the contract allows nulls or
    # floats, refused with a 400 naming the field otherwise (never a parse error).
    numeric = next(name for name, value in instance.items() if isinstance(value, float))
    raw = json.dumps({"instances": [instance]}).replace(json.dumps(instance[numeric]), "NaN", 1).encode()
    status, body, _ = post(f"{tiny_server.url}/v1/models/{NAME}:predict", raw)
    assert status in (200, 400), body
    assert status == 200 or numeric in body["error"], body
    assert "not valid JSON" not in body.get("error", "")


def test_classify_answers_class_scores_like_tf_serving(tiny_server, instance):
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:classify", {"examples": [instance, instance]})
    assert status == 200, body
    _, predicted = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:predict", {"instances": [instance]})
    probability = predicted["predictions"][0]["probability"]
    assert len(body["result"]) == 2
    (zero, p0), (one, p1) = body["result"][0]
    assert (zero, one) == ("0", "1") and p1 == pytest.approx(probability, abs=1e-6) and p0 == pytest.approx(1 - probability, abs=1e-6)
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:regress", {"examples": [instance]})
    assert status == 400 and "regress" in body["error"]


def test_paths_outside_the_model_root_are_not_found(tiny_server):
    for path in ("/v1/models/..%2F..%2Fetc", "/v1/models/%2e%2e/versions/1", "/v1/models/../../etc/passwd"):
        status, body = http_json("GET", f"{tiny_server.url}{path}")
        assert status == 404 and "error" in body, (path, body)


# -- gRPC with the official stub -----------------------------------------------------------------------


def test_grpc_predict_metadata_status_and_errors(tiny_server, instance):
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    channel = grpc.insecure_channel(f"127.0.0.1:{tiny_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    for name, value in instance.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto([value]))
    response = stub.Predict(request, timeout=30)
    _, rest = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:predict", {"instances": [instance]})
    assert tf.make_ndarray(response.outputs["probability"])[0] == pytest.approx(rest["predictions"][0]["probability"], abs=1e-6)
    assert response.model_spec.version.value >= 1

    metadata = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": NAME}, metadata_field=["signature_def"]), timeout=30
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert set(instance) >= set(signatures.signature_def["serving_default"].inputs) != set()  # requests may carry lookup keys too

    classify = classification_pb2.ClassificationRequest(model_spec={"name": NAME})
    example = classify.input.example_list.examples.add()
    for name, value in instance.items():
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode())
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.float_list.value.append(value)
    classes = stub.Classify(classify, timeout=30).result.classifications[0].classes
    assert [c.label for c in classes] == ["0", "1"] and classes[1].score == pytest.approx(rest["predictions"][0]["probability"], abs=1e-4)

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": NAME}), timeout=30
    )
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE

    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as missing:
        stub.Predict(request, timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = NAME
    request.inputs[next(iter(instance))].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 3.0]))  # lengths disagree
    with pytest.raises(grpc.RpcError) as invalid:
        stub.Predict(request, timeout=30)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


# -- batching, metrics ---------------------------------------------------------------------------------


def test_concurrent_requests_share_batches_and_metrics_count_them(tiny_server, instance):
    body = json.dumps({"instances": [instance]}).encode()
    url = f"{tiny_server.url}/v1/models/{NAME}:predict"
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(url, body)[0], range(200)))
    assert answers == [200] * 200
    status, text = get_text(f"{tiny_server.url}/monitoring/prometheus/metrics")
    assert status == 200
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}
    answered = sum(v for k, v in lines.items() if k.startswith("solutions_requests_total{") and f'model="{NAME}"' in k and 'status="200"' in k)
    assert answered >= 200
    calls = sum(v for k, v in lines.items() if k.startswith("solutions_batch_size_count") and f'model="{NAME}"' in k)
    rows = sum(v for k, v in lines.items() if k.startswith("solutions_batch_size_sum") and f'model="{NAME}"' in k)
    assert rows >= 200 and calls < rows, "16 concurrent clients should have shared signature calls"
    assert any(k.startswith("solutions_model_version_in_service") and f'model="{NAME}"' in k for k in lines)


@pytest.fixture(scope="module")
def strict_server(tiny_run, tiny_home, tmp_path_factory):
    """A server with small limits, a tiny batch queue and an API key."""
    home = tmp_path_factory.mktemp("strict")
    shutil.copytree(tiny_home / "models", home / "models")
    environment = {
        **server_environment(),
        "SOLUTIONS_API_KEY": "s3cret",
        "SOLUTIONS_MAX_BODY_BYTES": "20000",
        "SOLUTIONS_MAX_INSTANCES": "50",
        "SOLUTIONS_MAX_STRING_LENGTH": "100",
        "SOLUTIONS_MAX_BATCH_SIZE": "1",
        "SOLUTIONS_MAX_ENQUEUED_BATCHES": "1",
    }
    with ServerProcess(home, extra_env=environment) as running:
        running.wait_ready([NAME])
        yield running


AUTH = {"Authorization": "Bearer s3cret"}


def test_api_key_guards_every_route_but_health(strict_server, instance):
    url = f"{strict_server.url}/v1/models/{NAME}:predict"
    body = json.dumps({"instances": [instance]}).encode()
    status, answer, headers = post(url, body)
    assert status == 401 and "API key" in answer["error"]
    assert get_text(f"{strict_server.url}/v1/models/{NAME}")[0] == 401
    assert get_text(f"{strict_server.url}/monitoring/prometheus/metrics")[0] == 401
    assert get_text(f"{strict_server.url}/healthz")[0] == 200
    assert post(url, body, {"Authorization": "Bearer wrong"})[0] == 401
    assert post(url, body, AUTH)[0] == 200
    assert post(url, body, {"x-api-key": "s3cret"})[0] == 200


def read_reply(connection: socket.socket) -> str:
    """A whole HTTP answer: headers and body may come in separate packets (one recv saw only headers)."""
    reply = b""
    while True:
        head, _, body = reply.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(body) >= length:
            return reply.decode()
        chunk = connection.recv(4096)
        if not chunk:
            return reply.decode()
        reply += chunk


def test_hostile_bodies_are_refused_fast_with_a_json_4xx(strict_server, instance):
    url = f"{strict_server.url}/v1/models/{NAME}:predict"
    # A body that announces 10^9 bytes is refused from its headers, before it is sent.
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=5) as connection:
        connection.sendall(
            f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode()
        )
        reply = read_reply(connection)
    assert reply.startswith("HTTP/1.1 413") and '"error"' in reply
    assert time.perf_counter() - started < 0.5
    # Bigger than the limit without announcing it (chunked): refused once the limit is crossed.
    chunk = json.dumps({"instances": [instance] * 400}).encode()
    with socket.create_connection(("127.0.0.1", strict_server.port), timeout=5) as connection:
        connection.sendall(
            f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
        )
        reply = read_reply(connection)
    assert reply.startswith("HTTP/1.1 413") and "larger" in reply
    # Too many instances, a long string.
    status, answer, _ = post(url, json.dumps({"instances": [instance] * 60}).encode(), AUTH)
    assert status == 400 and "Too many instances" in answer["error"]
    text_field = next(name for name, value in instance.items() if isinstance(value, str))
    status, answer, _ = post(url, json.dumps({"instances": [{**instance, text_field: "x" * 500}]}).encode(), AUTH)
    assert status == 400 and text_field in answer["error"] and "limit" in answer["error"]
    assert post(url, json.dumps({"instances": [instance]}).encode(), AUTH)[0] == 200


def test_a_full_queue_answers_503_with_retry_after(strict_server, instance):
    url = f"{strict_server.url}/v1/models/{NAME}:predict"
    body = json.dumps({"instances": [instance]}).encode()
    with concurrent.futures.ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(lambda _: post(url, body, AUTH), range(400)))
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503}, statuses
    refused = [(answer, headers) for status, answer, headers in answers if status == 503]
    assert refused, "a queue bounded to one row must refuse some of 48 concurrent clients"
    assert all(
        "Overloaded" in answer["error"] and {k.lower(): v for k, v in headers.items()}.get("retry-after") == "1"
        for answer, headers in refused
    )
    assert get_text(f"{strict_server.url}/healthz")[0] == 200


# -- versions you can steer ----------------------------------------------------------------------------


def solutions_cli(home, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "solutions_core.cli", *arguments, "--home", str(home)],
        capture_output=True, text=True, env={**__import__("os").environ, **server_environment()}, timeout=120,
    )


def served(server) -> dict[str, str]:
    _, body = http_json("GET", f"{server.url}/v1/models/{NAME}")
    return {v["version"]: v["state"] for v in body["model_version_status"]}


def wait_until(condition, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def test_labels_canary_split_and_rollback_without_restart(tiny_run, tiny_home, tmp_path, instance):
    shutil.copytree(tiny_home / "models", tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.champion(NAME)
    second = registry.publish(NAME, first.path, first.metadata())
    key = next(name for name, value in instance.items() if isinstance(value, str))
    with ServerProcess(tmp_path, extra_env=server_environment()) as server:
        server.wait_ready([NAME])
        assert wait_until(lambda: served(server).get(str(second.version)) == "AVAILABLE")
        assert served(server).get(str(first.version)) != "AVAILABLE"  # latest 1: the older one is retired

        result = solutions_cli(tmp_path, "label", NAME, "canary", str(first.version), "--percent", "50", "--key", key)
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: served(server).get(str(first.version)) == "AVAILABLE")  # a labelled version loads
        status, body = http_json("GET", f"{server.url}/v1/models/{NAME}/labels/canary")
        assert status == 200 and body["model_version_status"][0]["version"] == str(first.version)

        # Un-versioned traffic splits by the key's hash, and one key always lands on one version.
        versions = {}
        for index in range(40):
            value = f"entity-{index}"
            answers = {version_of(server, {**instance, key: value}) for _ in range(3)}
            assert len(answers) == 1, f"key {value} was not sticky: {answers}"
            versions[value] = answers.pop()
        assert set(versions.values()) == {first.version, second.version}

        result = solutions_cli(tmp_path, "rollback", NAME)
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: all(version_of(server, {**instance, key: f"entity-{i}"}) == first.version for i in range(10)))
        status, body = http_json("POST", f"{server.url}/v1/models/{NAME}/labels/stable:predict", {"instances": [instance]})
        assert status == 200
        status, body = http_json("POST", f"{server.url}/v1/models/{NAME}/labels/canary:predict", {"instances": [instance]})
        assert status == 404 and "canary" in body["error"]  # the rollback ended the canary
        assert solutions_cli(tmp_path, "rollback", NAME).returncode == 1  # nothing older than v1

        # Deleting a served version retires it (TF Serving's policy follows the disk).
        assert solutions_cli(tmp_path, "label", NAME, "stable", "--remove").returncode == 0
        assert wait_until(lambda: version_of(server, instance) == second.version)
        shutil.rmtree(second.path)
        assert wait_until(lambda: served(server).get(str(second.version)) == "END")
        assert version_of(server, instance) == first.version


def version_of(server, instance) -> int:
    """Which version answered an un-versioned request: TF Serving's predict answer does not say, the
    per-version request counter does (the tests send one request at a time)."""
    before = version_counts(server)
    status, body = http_json("POST", f"{server.url}/v1/models/{NAME}:predict", {"instances": [instance]})
    assert status == 200, body
    after = version_counts(server)
    changed = [version for version, count in after.items() if count > before.get(version, 0)]
    assert len(changed) == 1, (before, after)
    return int(changed[0])


def version_counts(server) -> dict[str, float]:
    _, text = get_text(f"{server.url}/metrics")
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("solutions_requests_total{") and f'model="{NAME}"' in line and 'api="predict"' in line:
            version = line.split('version="')[1].split('"')[0]
            counts[version] = counts.get(version, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_hot_reload_under_load_fails_no_request(tiny_run, tiny_home, tmp_path, instance):
    shutil.copytree(tiny_home / "models", tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    champion = registry.champion(NAME)
    body = json.dumps({"instances": [instance]}).encode()
    with ServerProcess(tmp_path, extra_env=server_environment()) as server:
        server.wait_ready([NAME])
        url = f"{server.url}/v1/models/{NAME}:predict"
        stop = threading.Event()
        outcomes: list[int] = []
        slowest = [0.0]

        def client() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                status = post(url, body)[0]
                slowest[0] = max(slowest[0], time.perf_counter() - started)
                outcomes.append(status)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        published = registry.publish(NAME, champion.path, champion.metadata())
        assert wait_until(lambda: served(server).get(str(published.version)) == "AVAILABLE")
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join()
    assert len(outcomes) > 100
    assert set(outcomes) == {200}, f"{sum(s != 200 for s in outcomes)} failed requests during the reload"
    assert slowest[0] < 5, f"a request waited {slowest[0]:.1f} s during the load: the old version stalled"


def test_model_config_policies_and_formats(tmp_path):
    from solutions_core.serving.model_config import load_config, write_config

    for version in (1, 2, 3):
        (tmp_path / "fraud" / str(version)).mkdir(parents=True)
    (tmp_path / "models.config").write_text(
        'model_config_list { config { name: "fraud" base_path: "fraud" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 versions: 3 } } version_labels { key: 'stable' value: 1 } } }"
    )
    config = load_config(tmp_path)
    entry = config.models["fraud"]
    assert entry.policy.choose([1, 2, 3]) == {1, 3} and entry.labels == {"stable": 1}
    assert entry.base_path == tmp_path / "fraud"
    write_config(tmp_path, config)  # round trip in TF Serving's own text format
    assert load_config(tmp_path).models["fraud"].policy.versions == (1, 3)

    (tmp_path / "models.config").unlink()
    (tmp_path / "models.yaml").write_text(
        "model_config_list:\n  config:\n    - name: fraud\n      model_version_policy: {latest: {num_versions: 2}}\n"
        "traffic:\n  fraud: {label: canary, percent: 10, key: card_id}\n"
    )
    config = load_config(tmp_path)
    assert config.models["fraud"].policy.choose([1, 2, 3]) == {2, 3}
    assert config.traffic["fraud"].percent == 10
    shares = sum(config.traffic["fraud"].takes(f"card-{i}") for i in range(10_000))
    assert 800 < shares < 1200
    (tmp_path / "models.yaml").write_text("model_config_list: {config: [{name: fraud, bogus: 1}]}\n")
    with pytest.raises(ValueError, match="models.yaml"):
        load_config(tmp_path)


def test_kubernetes_manifests_match_the_server(tiny_registered):
    """The documented scale-out: the manifests parse, probe a route the app has, and expose its ports."""
    from pathlib import Path

    import yaml

    from solutions_core.serving.app import create_app
    from solutions_core.settings import Settings

    folder = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
    documents = [d for path in (folder / "serving.yaml", folder / "tf-serving.yaml") for d in yaml.safe_load_all(path.read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    assert set(deployments) == set(services) == {"solutions-serving", "tf-serving"}
    defaults = Settings()
    container = deployments["solutions-serving"]["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {defaults.port, defaults.grpc_port}
    routes = {route.path for route in create_app(Settings()).routes}
    assert container["readinessProbe"]["httpGet"]["path"] in routes
    annotations = deployments["solutions-serving"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes
    for name, service in services.items():
        assert service["spec"]["selector"] == deployments[name]["spec"]["selector"]["matchLabels"]


def test_only_answered_requests_are_recorded_and_an_enricher_failure_is_a_logged_500(tiny_server, instance):
    url = f"{tiny_server.url}/v1/models/{NAME}:predict"
    status, body = http_json("POST", url, {"instances": [{**instance, "point_id": "crash-7"}]})
    assert status == 500 and "logged" in body["error"]  # the server's fault, not the client's
    assert "the store's backend is down" in (tiny_server.home / "server.log").read_text()
    status, body = http_json("POST", url, {"instances": [{**instance, "point_id": "forbidden-3"}]})
    assert status == 400
    status, body = http_json("POST", url, {"instances": [{**instance, "point_id": "answered-5"}]})
    assert status == 200
    _, recorded = http_json("GET", f"{tiny_server.url}/tiny/recorded")
    assert "answered-5" in recorded["recorded"]
    assert not {"crash-7", "forbidden-3"} & set(recorded["recorded"])


def test_several_worker_processes_serve_one_port(tiny_run, tiny_home, tmp_path, instance):
    import os

    shutil.copytree(tiny_home / "models", tmp_path / "models")
    with ServerProcess(tmp_path, extra_env={**server_environment(), "SOLUTIONS_WORKERS": "2"}) as server:
        server.wait_ready([NAME], timeout=180)
        for _ in range(20):
            status, body = http_json("POST", f"{server.url}/v1/models/{NAME}:predict", {"instances": [instance]})
            assert status == 200, body
        workers = [pid for pid in os.listdir("/proc") if pid.isdigit() and _parent(pid) == server.process.pid]
        assert len(workers) >= 2, f"expected 2 worker processes under {server.process.pid}, found {workers}"


def _parent(pid: str) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1
