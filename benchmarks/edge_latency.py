"""Edge candidates for vision QC (issue 3): ms per image on one thread with ai-edge-litert (XNNPACK),
file size and delegate partitions, for float32 / float16 / full-integer int8 TFLite at 224×224×3.

    .venv/bin/python benchmarks/edge_latency.py [--size 224] [--runs 200]

Backbones are built from config with random weights (no downloads); batch-norm statistics are
re-estimated on the calibration images first, or int8 outputs collapse. Ratios are against float32 of the
same backbone, measured in the same run. Partitions = DELEGATE nodes in the interpreter's graph: more
than one means some op fell back to the reference kernels between XNNPACK partitions.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def backbones(size: int) -> dict:
    import keras

    def head(base):
        output = keras.layers.Dense(1, activation="sigmoid")(base.output)
        return keras.Model(base.input, output)

    shape = (size, size, 3)
    return {
        # minimalistic = relu instead of hard-swish and no squeeze-excite: int8 hard-swish is not delegated.
        "mobilenet_v3_small_minimalistic_1.0": lambda: head(keras.applications.MobileNetV3Small(
            input_shape=shape, alpha=1.0, minimalistic=True, include_top=False, weights=None,
            include_preprocessing=False, pooling="avg")),
        "mobilenet_v3_small_minimalistic_0.75": lambda: head(keras.applications.MobileNetV3Small(
            input_shape=shape, alpha=0.75, minimalistic=True, include_top=False, weights=None,
            include_preprocessing=False, pooling="avg")),
        "mobilenet_v3_small_1.0 (hard-swish)": lambda: head(keras.applications.MobileNetV3Small(
            input_shape=shape, alpha=1.0, minimalistic=False, include_top=False, weights=None,
            include_preprocessing=False, pooling="avg")),
        "mobilenet_v2_0.35": lambda: head(keras.applications.MobileNetV2(
            input_shape=shape, alpha=0.35, include_top=False, weights=None, pooling="avg")),
        # keras-hub's MobileNetBackbone (the stack we standardize on) with relu everywhere and no SE:
        # the same idea as keras.applications' "minimalistic" variant, built from config.
        "keras_hub_mobilenet_relu": lambda: head_from_backbone(keras_hub_relu_mobilenet(shape)),
        # The vision QC app's own network at its defaults (patch statistics + head), and with its
        # optional keras-hub EfficientNet-lite backbone: what `solutions train vision_qc` exports.
        "vision_qc_network": lambda: vision_qc_network(size, backbone=False),
        "vision_qc_network_with_backbone": lambda: vision_qc_network(size, backbone=True),
        # The app's small CNN candidate (post-training int8), as `solutions train vision_qc` builds it.
        "vision_qc_cnn": lambda: vision_qc_cnn(size),
    }


def vision_qc_cnn(size: int):
    import keras

    from vision_qc import model
    from vision_qc.config import VisionQCConfig

    network = model.build_cnn(VisionQCConfig(image_size=size))
    return keras.Model(network.input, network.output[model.SCORE])


def vision_qc_network(size: int, backbone: bool):
    import keras
    import numpy as np

    from vision_qc import model
    from vision_qc.config import VisionQCConfig

    config = VisionQCConfig(image_size=size, backbone={"enabled": backbone})
    extractor = model.feature_extractor(config)
    pixels = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype("float32")
    model.adapt_features(extractor, pixels, config)
    network = model.build_network(config, extractor)
    if model.quantization_aware(config):  # as the app ships it: computing on its int8 grids
        model.fold_batch_norm(network.get_layer("head_conv"), network.get_layer("head_bn"))
        model.calibrate_quantization(network, pixels)
    return keras.Model(network.input, network.output[model.SCORE])


def keras_hub_relu_mobilenet(shape):
    import keras_hub

    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        stackwise_kernel_size=[[3, 3], [3, 3, 3], [3, 3], [3, 3, 3]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [None, None, None], [None, None], [None, None, None]],
        stackwise_activation=[["relu"] * 2, ["relu"] * 3, ["relu"] * 2, ["relu"] * 3],
        stackwise_padding=[[1, 1], [1, 1, 1], [1, 1], [1, 1, 1]],
        output_num_filters=288,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        last_layer_filter=288,
        squeeze_and_excite=None,
        input_activation="relu",
        output_activation="relu",
        input_num_filters=16,
        image_shape=shape,
    )


def head_from_backbone(backbone):
    import keras

    pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
    output = keras.layers.Dense(1, activation="sigmoid")(pooled)
    return keras.Model(backbone.input, output)


def convert(saved_model: str, mode: str, calibration, quantization_aware: bool = False) -> bytes:
    import tensorflow as tf

    if mode == "int8" and quantization_aware:  # the ranges are in the graph: the app's own conversion
        from vision_qc.edge import convert as convert_for_edge

        return convert_for_edge(Path(saved_model), "int8", quantization_aware=True)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if mode in ("float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def measure(path: Path, runs: int) -> tuple[float, int]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    detail = interpreter.get_input_details()[0]
    image = np.zeros(detail["shape"], dtype=detail["dtype"])
    for _ in range(10):
        interpreter.set_tensor(detail["index"], image)
        interpreter.invoke()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.set_tensor(detail["index"], image)
        interpreter.invoke()
        timings.append(time.perf_counter() - started)
    return 1000 * float(np.median(timings)), partitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", nargs="*", help="Backbone names to run (default: all).")
    arguments = parser.parse_args()

    import numpy as np

    from vision_qc.model import is_quantization_aware, quantization_off

    calibration = np.random.default_rng(0).uniform(0, 1, (32, arguments.size, arguments.size, 3)).astype("float32")
    print("| backbone | format | median ms | × float32 | KB | partitions |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, build in backbones(arguments.size).items():
            if arguments.only and name not in arguments.only:
                continue
            model = build()
            model(calibration, training=True)  # re-estimate batch-norm statistics (random init)
            saved = os.path.join(folder, "saved")
            model.export(saved, verbose=False)
            # A quantization-aware network (vision_qc's default) converts to int8 from the ranges in its
            # graph; its float32/float16 models are the same network off the int8 grids.
            aware = name.startswith("vision_qc") and is_quantization_aware(model)
            float_saved = saved
            if aware:
                float_saved = os.path.join(folder, "saved_float")
                with quantization_off(model):
                    model.export(float_saved, verbose=False)
            baseline = None
            for mode in ("float32", "float16", "int8"):
                path = Path(folder) / f"model-{mode}.tflite"
                source = saved if mode == "int8" else float_saved
                path.write_bytes(convert(source, mode, calibration, quantization_aware=aware))
                milliseconds, partitions = measure(path, arguments.runs)
                baseline = baseline or milliseconds
                print(f"| {name} | {mode} | {milliseconds:.2f} | {milliseconds / baseline:.2f} | "
                      f"{path.stat().st_size // 1024} | {partitions} |", flush=True)


if __name__ == "__main__":
    main()
