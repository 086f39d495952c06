"""The edge target of the tiny run: TFLite files that carry their own metadata, run with ai-edge-litert
alone, agree with the SavedModel as the parity gate says, and are published only when it passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vision_qc.edge import FLOAT16_FILE, INT8_FILE, EdgeModel, parity, pixels_of
from vision_qc.edge_metadata import embed_metadata, list_metadata, read_metadata


@pytest.fixture(scope="module")
def result(trained):
    return trained["vision_qc"]


def test_edge_models_carry_labels_threshold_and_input(result):
    for name in (FLOAT16_FILE, INT8_FILE):
        metadata = read_metadata(result.edge.files[name])
        assert metadata["labels"] == ["good", "defect"]
        assert metadata["threshold"] == pytest.approx(result.version.metadata()["calibration"]["threshold"])
        size = result.version.metadata()["config"]["image_size"]
        assert metadata["input"]["shape"] == [1, size, size, 3]
    assert read_metadata(result.edge.files[INT8_FILE])["input"]["dtype"] == "uint8"


def test_int8_model_is_one_xnnpack_partition_and_small(result):
    edge = EdgeModel(result.edge.files[INT8_FILE])
    assert edge.delegate_partitions() == 1
    assert edge.input_detail["dtype"] == np.uint8
    assert result.edge.report["int8"]["size_kb"] < result.edge.report["float16"]["size_kb"]
    assert EdgeModel(result.edge.files[FLOAT16_FILE]).input_detail["dtype"] == np.float32


def test_metadata_reads_without_tensorflow(result, tmp_path):
    code = (
        "import sys\n"
        "from vision_qc.edge import EdgeModel\n"
        f"model = EdgeModel({str(result.edge.files[INT8_FILE])!r})\n"
        "import numpy as np\n"
        "out = model.predict(np.zeros(model.input_detail['shape'][1:], np.uint8))\n"
        "assert out['decision'][0] in ('good', 'defect')\n"
        "assert 'tensorflow' not in sys.modules, 'the edge side must not need TensorFlow'\n"
        "print(model.metadata['labels'])\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "good" in finished.stdout


def test_gate_decision_matches_the_report_and_what_was_published(result):
    report = result.edge.report
    int8 = report["int8"]["validation"]
    gate = report["gate"]
    expected = int8["decision_agreement"] >= gate["min_decision_agreement"] and (
        not np.isfinite(int8["auroc_drop"]) or int8["auroc_drop"] <= gate["max_auroc_drop"]
    )
    assert result.edge.passed == expected == report["passed"]
    published = {path.name for path in (result.version.path / "assets.extra").glob("*.tflite")}
    assert published == ({FLOAT16_FILE, INT8_FILE} if result.edge.passed else set())
    assert result.version.metadata()["edge"]["passed"] == result.edge.passed


def test_tflite_agrees_with_the_saved_model_within_the_gate(result):
    """Recompute parity independently, through the exported SavedModel, on the golden images."""
    import base64

    import tensorflow as tf

    from solutions_core.export import load_signature

    signature = load_signature(result.run_dir / "export" / result.candidate)
    module = signature._loaded_object
    images = [base64.b64decode(instance["image"]["b64"]) for instance in result.golden_instances]
    reference = {name: np.asarray(value) for name, value in signature(image=tf.constant(images)).items()}
    pixels = pixels_of(module, images)
    labels = np.asarray([1 if decision == b"defect" else 0 for decision in reference["decision"]])
    threshold = float(module.threshold.numpy())
    assert threshold == pytest.approx(result.edge.report["threshold"])

    # float16 is the network off the int8 grids the SavedModel computes on: it differs by their rounding.
    float16 = parity(EdgeModel(result.edge.files[FLOAT16_FILE]), pixels, labels, reference, threshold)
    assert float16["max_abs_score_difference"] < 0.05
    int8 = parity(EdgeModel(result.edge.files[INT8_FILE]), pixels, labels, reference, threshold)
    assert int8["max_abs_score_difference"] < 0.05


def test_embedding_replaces_and_keeps_other_entries(result):
    content = result.edge.files[INT8_FILE].read_bytes()
    names = list_metadata(content)
    assert "solutions_metadata" in names and len(names) >= 2  # the converter's own entries survive
    again = embed_metadata(content, {"threshold": 0.25, "note": "tärkeä"})
    assert list_metadata(again).count("solutions_metadata") == 1
    assert read_metadata(again) == {"note": "tärkeä", "threshold": 0.25}
    image = np.zeros(EdgeModel(content).input_detail["shape"][1:], np.uint8)
    assert np.array_equal(EdgeModel(again).predict(image)["defect_score"], EdgeModel(content).predict(image)["defect_score"])


def test_garbage_is_not_a_model():
    with pytest.raises(ValueError, match="TFL3"):
        read_metadata(b"definitely not a flatbuffer")


def test_the_quantization_aware_int8_model_reproduces_the_savedmodels_scores(tmp_path):
    # The float network computes on the int8 grids, so the int8 model differs from it by little more
    # than the last bit of its uint8 score (1/256), not by post-training rounding's ~0.1. Only the patch
    # candidates have grids (cnn / pixel_linear are quantized post-training), so train those alone.
    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("vision_qc")
    config = solution.make_config({**solution.tiny_config().model_dump(), "candidates": ["supervised", "one_class"]})
    settings = Settings(home=tmp_path, contracts_dir=Path(__file__).resolve().parents[2] / "data_contracts")
    result = run_training(solution, config, settings, verbose=0)
    report = result.edge.report
    assert report["quantization"] == "quantization-aware"
    validation = report["int8"]["validation"]
    print(f"int8 vs SavedModel: max |score difference| {validation['max_abs_score_difference']:.4f}")
    assert validation["max_abs_score_difference"] < 0.05
    assert validation["decision_agreement"] == 1.0 and report["passed"]
