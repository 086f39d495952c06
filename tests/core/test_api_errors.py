"""Bad requests get a 4xx with a JSON error naming the problem — never a 500."""

from __future__ import annotations

import json
import urllib.request

import pytest

from solutions_core.demo import http_json

APP = "fraud_detection"


def post_raw(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as problem:
        return problem.code, json.loads(problem.read())


@pytest.fixture(scope="module")
def good(trained):
    return trained[APP].golden_instances[0]


def test_unknown_model_is_404(server):
    status, body = http_json("POST", f"{server.url}/v1/models/nope:predict", {"instances": [{}]})
    assert status == 404 and "nope" in body["error"]


def test_invalid_json_is_400(server):
    status, body = post_raw(f"{server.url}/v1/models/{APP}:predict", b"{not json")
    assert status == 400 and "JSON" in body["error"]


def test_empty_body_is_400(server):
    status, body = post_raw(f"{server.url}/v1/models/{APP}:predict", b"")
    assert status == 400 and "Empty" in body["error"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "instances"),
        ({"instances": []}, "non-empty"),
        ({"instances": [1, 2]}, "JSON object"),
        ({"inputs": {"amount": [1, 2], "channel": ["online"]}}, "same non-zero length"),
        ({"instances": [{}], "inputs": {}}, "not both"),
        ({"signature_name": "other", "instances": [{}]}, "other"),
    ],
)
def test_malformed_requests_are_400(server, payload, fragment):
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", payload)
    assert status == 400, body
    assert fragment in body["error"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": -5}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"channel": "carrier_pigeon"}, "channel"),
        ({"merchant_lat": 123.0}, "merchant_lat"),
        ({"timestamp": "not a date"}, "timestamp"),
        ({"surprise_field": 1}, "surprise_field"),
    ],
)
def test_contract_violations_are_400_naming_the_field(server, good, change, field):
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [{**good, **change}]})
    assert status == 400, body
    assert field in body["error"]


def test_missing_required_field_is_400(server, good):
    instance = {k: v for k, v in good.items() if k != "amount"}
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [instance]})
    assert status == 400 and "amount" in body["error"]


def test_bad_version_is_400_or_404(server):
    status, body = http_json("GET", f"{server.url}/v1/models/{APP}/versions/abc")
    assert status == 400 and "integer" in body["error"]
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}/versions/99:predict", {"instances": [{}]})
    assert status == 404


def test_unknown_verb_is_4xx(server, good):
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:explode", {"instances": [good]})
    assert 400 <= status < 500 and "error" in body
