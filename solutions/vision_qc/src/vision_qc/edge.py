"""The edge target: the trained network as TFLite (float16 and full-integer int8), carrying everything
the device needs in its own metadata, and the parity gate it must pass to be published.

The edge model is the network alone — raw pixels in, ``defect_score`` and ``anomaly_map`` out — because
TFLite has no image decoder: the device resizes its camera frame to ``image_size`` and feeds uint8 RGB
(or grayscale) pixels; scaling to [-1, 1] happens inside the model.

``EdgeModel`` runs a published model with ai-edge-litert alone (no TensorFlow), as a device would.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vision_qc.config import VisionQCConfig
from vision_qc.model import ANOMALY_MAP, LABELS, SCORE

INT8_FILE = "edge_int8.tflite"
FLOAT16_FILE = "edge_float16.tflite"


def edge_metadata(config: VisionQCConfig, threshold: float, quantization: str) -> dict[str, Any]:
    """What a device needs to use the model with no other file."""
    return {
        "app": "vision_qc",
        "labels": list(LABELS),
        "threshold": float(threshold),
        "decision_rule": f"{LABELS[1]} if {SCORE} >= threshold else {LABELS[0]}",
        "input": {
            "name": "pixels",
            "shape": [1, config.image_size, config.image_size, config.channels],
            "color": "RGB" if config.channels == 3 else "grayscale",
            "resize": "bilinear with antialiasing to image_size x image_size (no crop, aspect not kept)",
            "dtype": "uint8" if quantization == "int8" else "float32",
            "range": [0, 255],
            "normalization": "inside the model: pixels / 127.5 - 1",
        },
        "outputs": {
            SCORE: "probability-like defect score in [0, 1], shape [1, 1]",
            ANOMALY_MAP: f"per-location defect score in [0, 1], shape [1, h, w, 1], h = w = ceil(image_size / {config.map_stride})",
        },
        "quantization": quantization,
        "image_size": config.image_size,
        "channels": config.channels,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }


def float32_copy(network: Any) -> Any:
    """The network computing in float32: trained under a mixed precision policy (bfloat16 on TPU), its
    layers compute in bfloat16, which TFLite's builtin ops do not take. Same weights (kept in float32)."""
    import keras

    if all(layer.compute_dtype == "float32" for layer in network._flatten_layers(include_self=False)):
        return network

    def in_float32(layer: Any) -> Any:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    # The copy is for inference only: cloning a compiled model would re-compile it from its config, and
    # the training loss (a plain function) is not something Keras can look up by name.
    compiled, network.compiled = network.compiled, False
    try:
        copy = keras.models.clone_model(network, clone_function=in_float32)
    finally:
        network.compiled = compiled
    copy.set_weights(network.get_weights())
    return copy


def export_network(network: Any, config: VisionQCConfig, out_dir: Path) -> Path:
    """The network as a SavedModel with a batch-1 pixel signature, the converter's input."""
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec([1, config.image_size, config.image_size, config.channels], tf.float32, name="pixels")
    network = float32_copy(network)
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serving_default", lambda pixels: network(pixels, training=False), input_signature=[spec])
    archive.write_out(str(out_dir), verbose=False)
    return Path(out_dir)


def convert(
    saved_model: Path, quantization: str, calibration: np.ndarray | None = None, quantization_aware: bool = False
) -> bytes:
    """float16 (weights), or full-integer int8: from the ranges in a quantization-aware graph, else
    calibrated on ``calibration`` pixels [N, S, S, C]."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8" and quantization_aware:
        # Every tensor's range is in the graph; a representative dataset would make the converter
        # calibrate again (and it refuses graphs that already carry ranges).
        converter.inference_input_type = tf.uint8
    elif quantization == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("Full-integer int8 conversion needs representative training images.")
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8  # raw camera pixels in; the scale is 1 (checked below)
    else:
        raise ValueError(f"Unknown quantization {quantization!r}: use float16 or int8.")
    return converter.convert()


class EdgeModel:
    """A published edge model on a device: ai-edge-litert only (no TensorFlow), metadata read from the
    file itself. ``predict(pixels)`` takes uint8 (or 0..255 float) pixels [S, S, C] or [N, S, S, C]."""

    def __init__(self, path: str | Path | bytes, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from vision_qc.edge_metadata import read_metadata

        content = path if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
        self.metadata = read_metadata(bytes(content))
        self.interpreter = Interpreter(model_content=bytes(content), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.runner = self.interpreter.get_signature_runner()
        self.input_detail = self.runner.get_input_details()["pixels"]
        self.size_bytes = len(content)

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    def delegate_partitions(self) -> int:
        """XNNPACK partitions in the graph: 1 means every op runs in the delegate."""
        return sum(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details())

    def _input(self, image: np.ndarray) -> np.ndarray:
        dtype = self.input_detail["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self.input_detail["quantization"]
            values = np.asarray(image, dtype=np.float32) / (scale or 1.0) + zero_point
            info = np.iinfo(dtype)
            # Halves round up, as the float model's pixel grid does (np.round would round them to even).
            return np.clip(np.floor(values + 0.5), info.min, info.max).astype(dtype)[None]
        return np.asarray(image, dtype=dtype)[None]

    def predict(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = np.asarray(pixels)
        expected = tuple(self.input_detail["shape"][1:])
        batch = pixels[None] if pixels.shape == expected else pixels
        if batch.shape[1:] != expected:
            raise ValueError(f"Edge model expects pixels of shape {expected}, got {pixels.shape}.")
        scores, maps = [], []
        for image in batch:
            outputs = self.runner(pixels=self._input(image))
            scores.append(float(np.asarray(outputs[SCORE]).reshape(-1)[0]))
            maps.append(np.asarray(outputs[ANOMALY_MAP], dtype=np.float32)[0, ..., 0])
        scores_array = np.asarray(scores, dtype=np.float32)
        decisions = np.where(scores_array >= self.threshold, LABELS[1], LABELS[0])
        return {SCORE: scores_array, "decision": decisions, ANOMALY_MAP: np.stack(maps)}

    def latency_ms(self, runs: int = 50) -> float:
        """Median ms per image (set input + invoke), after a warm-up."""
        image = np.zeros(self.input_detail["shape"][1:], dtype=np.uint8)
        for _ in range(5):
            self.runner(pixels=self._input(image))
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            self.runner(pixels=self._input(image))
            timings.append(time.perf_counter() - started)
        return 1000 * float(np.median(timings))


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def parity(
    edge: EdgeModel, pixels: np.ndarray, labels: np.ndarray, reference: Mapping[str, np.ndarray], threshold: float
) -> dict[str, float]:
    """Edge vs the SavedModel on the same images: decision agreement, AUROC of each, worst |Δscore|."""
    outputs = edge.predict(pixels)
    reference_scores = np.asarray(reference[SCORE], dtype=np.float32)
    agreement = float(np.mean((outputs[SCORE] >= threshold) == (reference_scores >= threshold)))
    reference_auroc, edge_auroc = _auroc(labels, reference_scores), _auroc(labels, outputs[SCORE])
    return {
        "decision_agreement": agreement,
        "auroc_reference": reference_auroc,
        "auroc_edge": edge_auroc,
        "auroc_drop": reference_auroc - edge_auroc if np.isfinite(reference_auroc) else float("nan"),
        "max_abs_score_difference": float(np.max(np.abs(outputs[SCORE] - reference_scores), initial=0.0)),
        "images": int(len(pixels)),
    }


def pixels_of(module: Any, images: list[bytes], batch_size: int = 32) -> np.ndarray:
    """Decode with the exported graph's own preprocessing, so edge and server see the same pixels."""
    import tensorflow as tf

    parts = [np.asarray(module.pixels(tf.constant(images[start : start + batch_size], dtype=tf.string)))
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def export_edge_models(
    module: Any, splits: Any, valid_outputs: Mapping[str, np.ndarray], threshold: float, config: VisionQCConfig, out_dir: Path
) -> Any:
    """float16 + int8 TFLite with metadata, the parity gate on validation images, and a report.

    ``threshold`` is the calibrated one the version records (``Chosen.parameters``, which the core also
    wrote into the module): the edge models carry that very number, so they decide as the server does."""
    from solutions_core.solution import EdgeExport
    from vision_qc.edge_metadata import embed_metadata
    from vision_qc.model import is_quantization_aware, quantization_off

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = float(threshold)
    saved_model = export_network(module.network, config, out_dir / "network_saved_model")
    aware = is_quantization_aware(module.network)
    # float16 is for float hardware (GPU delegates): the network off its int8 grids, or the converter
    # would read the grids and write an int8 model under the float16 name.
    float_model = saved_model
    if aware:
        with quantization_off(module.network):
            float_model = export_network(module.network, config, out_dir / "float_network_saved_model")

    calibration = None  # a quantization-aware graph carries its ranges; otherwise the converter measures them
    if not aware:
        rng = np.random.default_rng(config.seed)
        train_images = splits.train["image"].tolist()
        chosen = rng.choice(len(train_images), size=min(config.edge.calibration_images, len(train_images)), replace=False)
        calibration = pixels_of(module, [train_images[i] for i in sorted(chosen)])
    valid_pixels = pixels_of(module, splits.valid["image"].tolist())
    labels = splits.valid["label_id"].to_numpy()

    files: dict[str, Path] = {}
    report: dict[str, Any] = {"threshold": threshold, "gate": config.edge.model_dump()}
    report["quantization"] = "quantization-aware" if aware else "post-training"
    for quantization, file_name in (("float16", FLOAT16_FILE), ("int8", INT8_FILE)):
        if quantization == "float16":
            flatbuffer = convert(float_model, quantization)
        else:
            flatbuffer = convert(saved_model, quantization, calibration, quantization_aware=aware)
        flatbuffer = embed_metadata(flatbuffer, edge_metadata(config, threshold, quantization))
        path = out_dir / file_name
        path.write_bytes(flatbuffer)
        files[file_name] = path
        edge = EdgeModel(flatbuffer, num_threads=1)
        report[quantization] = {
            "file": file_name,
            "size_kb": round(len(flatbuffer) / 1024, 1),
            "delegate_partitions": edge.delegate_partitions(),
            "latency_ms_1_thread": round(edge.latency_ms(config.edge.latency_runs), 3),
            "input_quantization": [float(v) for v in edge.input_detail["quantization"]],
            "validation": parity(edge, valid_pixels, labels, valid_outputs, threshold),
        }
    int8 = report["int8"]["validation"]
    drop = int8["auroc_drop"]
    passed = int8["decision_agreement"] >= config.edge.min_decision_agreement and (
        not np.isfinite(drop) or drop <= config.edge.max_auroc_drop
    )
    report["passed"] = bool(passed)
    report["why"] = (
        f"int8 vs SavedModel on {int8['images']} validation images: decisions agree on "
        f"{int8['decision_agreement']:.1%} (need >= {config.edge.min_decision_agreement:.0%}), AUROC drop "
        f"{drop:+.4f} (allowed <= {config.edge.max_auroc_drop})"
    )
    return EdgeExport(files=files, report=report, passed=bool(passed))
