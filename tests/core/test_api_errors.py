"""Bad requests get a 4xx with a JSON error naming the problem — never a 500; the app's own checks
and feature store sit between the contract and the model."""

from __future__ import annotations

import json
import urllib.request

import pytest

from solutions_core.demo import http_json
from tiny_app import APP

NAME = APP.name


def post_raw(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as problem:
        return problem.code, json.loads(problem.read())


@pytest.fixture(scope="module")
def good(tiny_run):
    return tiny_run.golden_instances[0]


def predict(server, payload):
    return http_json("POST", f"{server.url}/v1/models/{NAME}:predict", payload)


def test_unknown_model_is_404(tiny_server):
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/nope:predict", {"instances": [{}]})
    assert status == 404 and "nope" in body["error"]


def test_invalid_json_is_400(tiny_server):
    status, body = post_raw(f"{tiny_server.url}/v1/models/{NAME}:predict", b"{not json")
    assert status == 400 and "JSON" in body["error"]


def test_empty_body_is_400(tiny_server):
    status, body = post_raw(f"{tiny_server.url}/v1/models/{NAME}:predict", b"")
    assert status == 400 and "Empty" in body["error"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "instances"),
        ({"instances": []}, "non-empty"),
        ({"instances": [1, 2]}, "JSON object"),
        ({"inputs": {"x": [1, 2], "color": ["red"]}}, "same non-zero length"),
        ({"instances": [{}], "inputs": {}}, "not both"),
        ({"signature_name": "other", "instances": [{}]}, "other"),
    ],
)
def test_malformed_requests_are_400(tiny_server, payload, fragment):
    status, body = predict(tiny_server, payload)
    assert status == 400, body
    assert fragment in body["error"]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"x": -50}, "x"), ({"x": "lots"}, "x"), ({"color": "purple"}, "color"), ({"y": 99.0}, "y"), ({"surprise_field": 1}, "surprise_field")],
)
def test_contract_violations_are_400_naming_the_field(tiny_server, good, change, field):
    status, body = predict(tiny_server, {"instances": [{**good, **change}]})
    assert status == 400, body
    assert field in body["error"]


def test_missing_required_field_is_400(tiny_server, good):
    instance = {k: v for k, v in good.items() if k != "x"}
    status, body = predict(tiny_server, {"instances": [instance]})
    assert status == 400 and "x" in body["error"]


def test_the_apps_own_check_is_a_400_naming_the_instance(tiny_server, good):
    status, body = predict(tiny_server, {"instances": [good, {**good, "point_id": "forbidden-1"}]})
    assert status == 400 and "instances[1].point_id" in body["error"]


def test_the_feature_store_fills_inputs_and_records_only_answered_requests(tiny_server, tiny_run, good):
    status, before = http_json("GET", f"{tiny_server.url}/tiny/recorded")
    assert status == 200, before
    # y left out: the store knows this point (training stored its table) and fills it in.
    status, filled = predict(tiny_server, {"instances": [{k: v for k, v in good.items() if k != "y"}]})
    assert status == 200, filled
    status, full = predict(tiny_server, {"instances": [good]})
    assert filled["predictions"] == full["predictions"]
    # A rejected request is never recorded.
    predict(tiny_server, {"instances": [{**good, "color": "purple"}]})
    predict(tiny_server, {"instances": [{**good, "point_id": "forbidden-2"}]})
    _, after = http_json("GET", f"{tiny_server.url}/tiny/recorded")
    assert after["recorded"][len(before["recorded"]):] == [good["point_id"], good["point_id"]]


def test_bad_version_is_400_or_404(tiny_server):
    status, body = http_json("GET", f"{tiny_server.url}/v1/models/{NAME}/versions/abc")
    assert status == 400 and "integer" in body["error"]
    # Digits to str.isdigit() but not to int() (found by tests/test_openapi_fuzz.py as a 500).
    for version in ("%C2%B2", "%F0%9D%9F%A4"):  # '²', '𝟤'
        status, body = http_json("GET", f"{tiny_server.url}/v1/models/{NAME}/versions/{version}")
        assert status == 400 and "integer" in body["error"], body
        status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}/versions/{version}:predict", {"instances": [{}]})
        assert status == 400 and "integer" in body["error"], body
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}/versions/99:predict", {"instances": [{}]})
    assert status == 404


def test_unknown_verb_is_4xx(tiny_server, good):
    status, body = http_json("POST", f"{tiny_server.url}/v1/models/{NAME}:explode", {"instances": [good]})
    assert 400 <= status < 500 and "error" in body


def test_unknown_routes_and_wrong_methods_answer_in_the_one_error_format(tiny_server):
    status, body = http_json("GET", f"{tiny_server.url}/v2/nothing/here")
    assert status == 404 and set(body) == {"error"}
    status, body = http_json("DELETE", f"{tiny_server.url}/v1/models/{NAME}")
    assert status == 405 and set(body) == {"error"}
