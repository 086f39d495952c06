"""The vision model over real HTTP: images as {"b64": ...} (PNG, JPEG, any size and channel count) and
as arrays; every bad or oversized image is a 400 with a JSON error, never a 500."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from solutions_core.demo import http_json

URL = "/v1/models/vision_qc:predict"


def encode(image: Image.Image, kind: str = "PNG") -> dict[str, str]:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return {"b64": base64.b64encode(buffer.getvalue()).decode()}


@pytest.fixture(scope="module")
def sample(trained) -> Image.Image:
    """A real test image of the tiny run, as PIL."""
    data = base64.b64decode(trained["vision_qc"].golden_instances[0]["image"]["b64"])
    return Image.open(io.BytesIO(data)).convert("RGB")


def predict(server, instances):
    return http_json("POST", f"{server.url}{URL}", {"instances": instances})


def test_b64_png_returns_score_decision_and_map(server, sample, trained):
    status, body = predict(server, [{"image": encode(sample)}])
    assert status == 200, body
    prediction = body["predictions"][0]
    assert 0.0 <= prediction["defect_score"] <= 1.0
    assert prediction["decision"] in ("good", "defect")
    config = trained["vision_qc"].version.metadata()["config"]
    side = -(-config["image_size"] // config["map_stride"])
    assert np.asarray(prediction["anomaly_map"]).shape == (side, side)


def test_a_bare_b64_row_is_the_single_input_as_tf_serving_reads_it(server, sample):
    _, named = predict(server, [{"image": encode(sample)}])
    status, bare = predict(server, [encode(sample)])
    assert status == 200, bare
    assert bare["predictions"][0]["defect_score"] == pytest.approx(named["predictions"][0]["defect_score"])


def test_array_and_b64_of_the_same_pixels_agree(server, sample):
    status, from_b64 = predict(server, [{"image": encode(sample)}])
    assert status == 200, from_b64
    status, from_array = predict(server, [{"image": np.asarray(sample).tolist()}])
    assert status == 200, from_array
    assert from_array["predictions"][0]["decision"] == from_b64["predictions"][0]["decision"]
    assert abs(from_array["predictions"][0]["defect_score"] - from_b64["predictions"][0]["defect_score"]) < 1e-6


def test_any_size_channels_and_format_are_accepted(server, sample):
    instances = [
        {"image": encode(sample.convert("L"))},  # grayscale
        {"image": encode(sample.convert("RGBA"))},
        {"image": encode(sample.resize((97, 61)))},  # another size and aspect
        {"image": encode(sample, "JPEG")},
        {"image": np.asarray(sample.convert("L")).tolist()},  # a 2-D array
    ]
    status, body = predict(server, instances)
    assert status == 200, body
    assert len(body["predictions"]) == len(instances)
    # JPEG is lossy but close: the score moves a little, not wildly.
    status, png = predict(server, [{"image": encode(sample)}])
    assert abs(body["predictions"][3]["defect_score"] - png["predictions"][0]["defect_score"]) < 0.2


@pytest.mark.parametrize(
    "image, message",
    [
        ({"b64": "not base64!"}, "base64"),
        ({"b64": base64.b64encode(b"plain text, not an image").decode()}, "not a PNG"),
        ("a string", "b64"),
        ([[1, 2], [3]], "array"),
        ([[[[1]]]], "array image"),
        ([[300, 0], [0, 0]], "between 0 and 255"),
    ],
    ids=["bad-base64", "not-an-image", "plain-string", "ragged-array", "4d-array", "out-of-range"],
)
def test_bad_images_are_400_with_a_reason(server, image, message):
    status, body = predict(server, [{"image": image}])
    assert status == 400, body
    assert message in body["error"]
    assert "instances[0].image" in body["error"]


def test_truncated_png_is_a_400(server, sample):
    data = base64.b64decode(encode(sample)["b64"])
    status, body = predict(server, [{"image": {"b64": base64.b64encode(data[: len(data) // 2]).decode()}}])
    assert status == 400, body
    assert "error" in body


def test_oversized_image_is_refused_before_decoding(server):
    huge = Image.new("L", (4200, 4200))  # 17.6 M pixels > the 16.7 M default limit; a tiny PNG
    status, body = predict(server, [{"image": encode(huge)}])
    assert status == 400, body
    assert "too large" in body["error"]


def test_missing_image_field_is_a_400(server):
    status, body = predict(server, [{}])
    assert status == 400, body
    assert "image" in body["error"]
