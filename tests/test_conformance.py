"""Conformance, parametrized over every registered app: a few training steps, export, reload, serve,
and the same answers from the in-process model, the reloaded SavedModel and the HTTP API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from solutions_core.demo import http_json
from solutions_core.export import load_signature, max_abs_difference, predict_frame
from solutions_core.model_registry import ModelRegistry
from conftest import registered_apps

APPS = registered_apps()
TOLERANCE = 1e-5


@pytest.mark.parametrize("app", APPS)
def test_run_published_a_self_describing_version(app, trained, settings):
    result = trained[app]
    assert result.promoted and result.version.version == 1
    metadata = result.version.metadata()
    for key in ("test_metrics", "contract", "data_fingerprints", "config", "code_version", "gate_metric", "candidate"):
        assert metadata.get(key), f"metadata lacks {key}"
    assert result.version.contract_path.exists()
    assert np.isfinite(result.test.gate_value)
    assert result.baselines, "every app reports baselines in the same run"
    assert (result.run_dir / "report.json").exists()


@pytest.mark.parametrize("app", APPS)
def test_in_process_saved_model_and_api_agree(app, trained, server):
    result = trained[app]
    instances = result.golden_instances
    assert len(instances) >= 2
    expected = result.golden_outputs

    version = ModelRegistry(result.version.path.parent.parent).champion(app)
    signature = load_signature(version.path, version.metadata()["custom_ops"])
    reloaded = predict_frame(signature, pd.DataFrame(instances))
    assert max_abs_difference(expected, reloaded) <= TOLERANCE

    status, body = http_json("POST", f"{server.url}/v1/models/{app}:predict", {"instances": instances})
    assert status == 200, body
    from_api = {name: np.array([row[name] for row in body["predictions"]]) for name in expected}
    assert max_abs_difference(expected, from_api) <= TOLERANCE

    columnar = {name: [instance[name] for instance in instances] for name in instances[0]}
    status, body = http_json("POST", f"{server.url}/v1/models/{app}/versions/1:predict", {"inputs": columnar})
    assert status == 200, body
    assert max_abs_difference(expected, {k: np.array(v) for k, v in body["outputs"].items()}) <= TOLERANCE


@pytest.mark.parametrize("app", APPS)
def test_status_and_metadata_follow_tf_serving(app, trained, server):
    status, body = http_json("GET", f"{server.url}/v1/models/{app}")
    assert status == 200
    assert body["model_version_status"][0] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    status, body = http_json("GET", f"{server.url}/v1/models/{app}/versions/1/metadata")
    assert status == 200
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["inputs"]) <= set(trained[app].golden_instances[0])  # requests may carry lookup keys too
    assert set(signature["outputs"]) == set(trained[app].golden_outputs)
    # dtypes by TensorFlow's enum names, as TF Serving writes them (DT_FLOAT, never DT_FLOAT32).
    from tensorflow.core.framework import types_pb2

    for tensor in [*signature["inputs"].values(), *signature["outputs"].values()]:
        assert types_pb2.DataType.Value(tensor["dtype"]) != types_pb2.DT_INVALID
        assert tensor["dtype"] not in ("DT_FLOAT32", "DT_FLOAT64")
    status, body = http_json("GET", f"{server.url}/v1/models/{app}/versions/7")
    assert status == 404 and "error" in body


@pytest.mark.parametrize("app", APPS)
def test_openapi_publishes_the_contract_request_schema(app, trained, server):
    status, spec = http_json("GET", f"{server.url}/openapi.json")
    assert status == 200
    instance = spec["components"]["schemas"][f"{app}Instance"]
    contract_fields = set(instance["properties"])
    assert set(instance["required"]) <= contract_fields
    assert f"{app}PredictRequest" in spec["components"]["schemas"]


@pytest.mark.parametrize("app", APPS)
def test_edge_models_are_published_only_when_their_parity_gate_passes(app, trained):
    """Apps with an edge part compare their TFLite models with the SavedModel on validation data; a
    model that fails that gate still serves as a SavedModel but ships no edge files."""
    result = trained[app]
    metadata = result.version.metadata()
    published = sorted(path.name for path in (result.version.path / "assets.extra").glob("*.tflite"))
    if result.edge is None:  # no edge part: the next test checks what `export --format tflite` gives instead
        assert metadata["edge"] is None and not published
        return
    assert metadata["edge"]["passed"] == result.edge.passed
    assert published == (sorted(result.edge.files) if result.edge.passed else [])
    assert all(path.exists() for path in result.edge.files.values())


@pytest.mark.parametrize("app", APPS)
def test_tflite_export_gives_the_parity_gated_model_or_reproduces_the_model_or_says_why(app, trained, home, tmp_path):
    """What ``solutions export --format tflite`` gives: an app's own edge models exactly as published
    (they passed its parity gate); for an app without an edge part, a generic TFLite model that answers
    the golden requests as the SavedModel does (within int8 weight rounding), or exit code 1 with the
    reason it cannot convert — never a file that answers wrongly."""
    from typer.testing import CliRunner

    from solutions_core.cli import app as cli
    from solutions_core.export import input_specs, to_tensor_value

    result = trained[app]
    outcome = CliRunner().invoke(cli, ["export", app, "--format", "tflite", "--out", str(tmp_path), "--home", str(home)])
    if result.edge is not None:
        if result.edge.passed:
            assert outcome.exit_code == 0, outcome.output
            copied = sorted(path.name.split(f"-v{result.version.version}-", 1)[1] for path in tmp_path.glob("*.tflite"))
            assert copied == sorted(result.edge.files)
            for name in copied:
                assert (tmp_path / f"{app}-v{result.version.version}-{name}").read_bytes() == (result.version.path / "assets.extra" / name).read_bytes()
        else:
            assert outcome.exit_code == 1 and "parity gate" in " ".join(outcome.output.split())
        return
    if outcome.exit_code != 0:
        assert outcome.exit_code == 1, outcome.output
        assert "cannot be converted to TFLite" in " ".join(outcome.output.split())
        return
    from ai_edge_litert.interpreter import Interpreter

    (model,) = tmp_path.glob("*.tflite")
    runner = Interpreter(model_path=str(model)).get_signature_runner("serving_default")
    version = ModelRegistry(result.version.path.parent.parent).champion(app)
    specs = input_specs(load_signature(version.path, version.metadata()["custom_ops"]))
    inputs = {name: to_tensor_value([i.get(name) for i in result.golden_instances], spec.dtype, spec.shape) for name, spec in specs.items()}
    outputs = runner(**inputs)
    assert set(outputs) == set(result.golden_outputs)
    for name, expected in result.golden_outputs.items():
        np.testing.assert_allclose(np.asarray(outputs[name], dtype=np.float64), np.asarray(expected, dtype=np.float64), atol=0.02)


@pytest.mark.parametrize("app", APPS)
def test_statistics_at_publish_a_monitor_report_of_served_requests_and_the_run_listed(app, trained, server, home):
    """Monitoring for every app: the version carries its training statistics, the server's request log
    holds what it answered, ``solutions monitor`` makes a report of that day, ``solutions runs`` lists
    the run."""
    import datetime as dt
    import json
    import time

    from typer.testing import CliRunner

    from solutions_core.cli import app as cli
    from solutions_core.monitoring import STATISTICS_FILE
    from solutions_core.serving.request_log import read_day

    result = trained[app]
    statistics = json.loads((result.version.path / "assets.extra" / STATISTICS_FILE).read_text())
    assert statistics["columns"] or statistics["outputs"], "nothing to monitor against"
    assert statistics["outputs"], "the model's outputs on validation are recorded (skew)"

    # Each request may name itself by a unique id of the contract (served or not), so that outcomes
    # arriving later can be joined to it.
    from solutions_core.contracts import Contract

    contract = Contract.from_yaml(result.version.contract_path)
    key = next((name for name, column in contract.columns.items() if column.role == "id" and column.unique), None)
    instances = [{**instance, key: instance.get(key, f"conformance-{index}")} if key else instance
                 for index, instance in enumerate(result.golden_instances)]
    today = dt.datetime.now(dt.timezone.utc).date()

    def logged_rows() -> int:
        try:
            return len(read_day(home / "data", app, today))
        except FileNotFoundError:
            return 0

    time.sleep(1.5)  # earlier tests' requests are in the day's log already: count them once they are written
    before = logged_rows()
    status, body = http_json("POST", f"{server.url}/v1/models/{app}:predict", {"instances": instances})
    assert status == 200, body
    sent = {str(instance[key]) for instance in instances} if key else set()

    def arrived(logged) -> bool:
        return len(logged) >= before + len(instances) and (not key or (key in logged.columns and sent <= set(logged[key].astype(str))))

    deadline, logged = time.monotonic() + 30, None
    while time.monotonic() < deadline:  # written every second, off the request path
        try:
            logged = read_day(home / "data", app, today)
            if arrived(logged):
                break
        except FileNotFoundError:
            pass
        time.sleep(1)
    assert logged is not None and arrived(logged), f"the requests (and their {key}) are logged"

    runner = CliRunner()
    monitored = runner.invoke(cli, ["monitor", app, "--date", today.isoformat(), "--home", str(home)], env={"COLUMNS": "200"})
    assert monitored.exit_code in (0, 1), monitored.output  # a few golden rows may well look drifted; the report is the point
    written = home / "runs" / app / "monitor" / today.isoformat() / "drift.json"
    assert written.exists(), monitored.output
    report = json.loads(written.read_text())
    assert report["rows"] == len(logged) and report["columns"]
    assert any(column["part"] == "output" for column in report["columns"])
    listed = runner.invoke(cli, ["runs", app, "--home", str(home)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and result.run_dir.name in listed.output
