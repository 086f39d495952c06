"""The whole vision QC model, top to bottom:

1. ``decode_images``: encoded PNG/JPEG bytes -> resized pixels, inside the exported graph, so training,
   the SavedModel and TF Serving clients all see images prepared the same way (no train/serve skew).
2. ``feature_extractor``: pixels (0..255) -> per-patch statistics (``PatchStatistics``: colour, contrast,
   gradient and Laplacian energy, standardized, and the same minus their mean over the image, since a
   defect is a patch unlike the rest of its own part), optionally beside a keras-hub EfficientNet-lite
   backbone's features (built from config, random init; ``backbone.enabled``).
   ``build_network``: features -> a small head that scores every location (the anomaly map) -> one
   image score from the map's max and mean. Both are trained: the score on image labels, the map on
   defect masks where they exist.
3. Two candidates over the same features:
   * ``supervised``: a head trained by the core's Keras loop (``trainer.fit``) on the image labels and,
     per location, on the defect masks, plus synthetic defects pasted on good images (CutPaste-style);
   * ``one_class``: good images only (for lines with few or no defect images): one Gaussian over the
     features of all locations, its Mahalanobis distance written into the graph as the map.
4. ``calibrate_quantization`` / ``finish_training``: after training, the network computes on the int8
   model's grids (fake quantization at every tensor int8 stores, ranges observed on training images)
   and the supervised one is fine-tuned there (a second ``trainer.fit`` on the same datasets), so the
   int8 edge model decides as the served model does.
5. ``VisionServingModule``: bytes in; ``defect_score``, ``decision`` and ``anomaly_map`` out, with the
   threshold held in a ``tf.Variable`` named threshold, which the core sets from ``calibrate``.

The edge model (edge.py) is the network alone: pixels in, no decoding (TFLite has no image decoder).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from vision_qc.config import VisionQCConfig

LABELS = ("good", "defect")
SCORE = "defect_score"
ANOMALY_MAP = "anomaly_map"
# Patch statistics are clipped at this many standard deviations (bounded int8 ranges).
CLIP_SIGMAS = 6.0
# Weight of the mean-square penalty that keeps the location logits' range narrow for int8.
LOGIT_PENALTY = 1e-3
_CUSTOM_OBJECTS: dict[str, Any] | None = None  # the Keras layer classes, defined on first use


# ---- images in the graph -------------------------------------------------------------------------------


def decode_image(data: Any, image_size: int, channels: int) -> Any:
    """One encoded image (PNG, JPEG, BMP or GIF; any size, 1-4 channels) -> float32 [S, S, C] in 0..255."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    image.set_shape([image_size, image_size, channels])
    return tf.clip_by_value(image, 0.0, 255.0)


def decode_images(images: Any, image_size: int, channels: int) -> Any:
    """A batch of encoded images (tf.string [N]) -> float32 [N, S, S, C]."""
    import tensorflow as tf

    return tf.map_fn(
        lambda data: decode_image(data, image_size, channels),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, channels], tf.float32),
    )


# ---- the network -----------------------------------------------------------------------------------------


def build_backbone(config: VisionQCConfig) -> Any:
    """A keras-hub ``EfficientNetBackbone`` in a small "lite" configuration (relu6, no squeeze-excite),
    built from config with random weights, cut before its 1x1 top convolution. Returns a model:
    pixels in [-1, 1] -> (finer, fine, coarse) feature maps at 1/4, 1/2 and 1 times the last stage's
    stride (8, 16 and 32 with the defaults).

    Why EfficientNet rather than keras-hub's MobileNetBackbone: the latter builds depthwise convolutions
    as grouped ``Conv2D``, which TensorFlow trains 4x slower on CPU (6 vs 24 images/s at 224x224 here),
    and hard-codes hard-swish in its last block, which int8 XNNPACK does not run.
    """
    import keras
    import keras_hub

    spec = config.backbone
    stages = len(spec.stage_filters)
    for name in ("stage_repeats", "stage_strides", "stage_expansion"):
        if len(getattr(spec, name)) != stages:
            raise ValueError(f"backbone.{name} must have one entry per stage ({stages}, like backbone.stage_filters).")
    backbone = keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * stages,
        stackwise_depth_coefficients=[1.0] * stages,
        stackwise_kernel_sizes=[3] * stages,
        stackwise_num_repeats=spec.stage_repeats,
        stackwise_input_filters=[spec.stem_filters] + spec.stage_filters[:-1],
        stackwise_output_filters=spec.stage_filters,
        stackwise_expansion_ratios=spec.stage_expansion,
        stackwise_squeeze_and_excite_ratios=[0.0] * stages,
        stackwise_strides=spec.stage_strides,
        stackwise_block_types=["v1"] * stages,
        stackwise_force_input_filters=[0] * stages,
        stackwise_nores_option=[False] * stages,
        activation="relu6",
        input_shape=(config.image_size, config.image_size, config.channels),
        num_features=spec.stage_filters[-1],
        dropout=0.0,
    )
    strides = np.cumprod([2] + list(spec.stage_strides))[1:]  # the stem halves the image first
    fine_stages = [index for index, stride in enumerate(strides) if stride == strides[-1] // 2]
    finer_stages = [index for index, stride in enumerate(strides) if stride == strides[-1] // 4]
    if not fine_stages or not finer_stages:
        raise ValueError(f"backbone.stage_strides {spec.stage_strides} need stages at 1/2 and 1/4 of the final stride.")

    def stage_output(index: int) -> Any:
        prefix = f"block{index + 1}{chr(ord('a') + spec.stage_repeats[index] - 1)}_"
        return [layer for layer in backbone.layers if layer.name.startswith(prefix)][-1].output

    outputs = [stage_output(finer_stages[-1]), stage_output(fine_stages[-1]), stage_output(stages - 1)]
    return keras.Model(backbone.input, outputs, name="efficientnet_backbone")


def build_network(config: VisionQCConfig, extractor: Any = None) -> Any:
    """pixels [N, S, S, C] in 0..255 -> {defect_score [N, 1], anomaly_map [N, S/16, S/16, 1]}
    (with the default strides): multi-scale backbone features -> a small per-location head (the map's
    logits) -> the image score from the map's worst and mean location.

    Every op here is a TFLite builtin that XNNPACK runs in int8 (relu, conv, bilinear resize, pooling,
    logistic), so the edge model stays in one delegate partition.
    """
    import keras

    extractor = extractor or feature_extractor(config)
    layers = custom_objects()
    features = extractor.output
    # Training-only noise on the head's inputs: a mild regularizer (the int8 grid itself is simulated
    # by the fake-quantization points once calibrated, see ``calibrate_quantization``).
    features = keras.layers.GaussianNoise(config.quantization_noise, name="feature_noise")(features)
    hidden = layers["QuantizedConv2D"](config.backbone.head_filters, 1, name="head_conv")(features)
    # Folded into head_conv before the network goes onto its int8 grids (see ``finish_training``).
    hidden = layers["FoldableBatchNormalization"](name="head_bn")(hidden)
    hidden = keras.layers.ReLU(name="head_relu")(hidden)
    hidden = layers["FakeQuant"](name="head_grid")(hidden)
    hidden = keras.layers.Dropout(config.backbone.dropout_rate, name="dropout")(hidden)
    narrower = max(config.backbone.head_filters // 2, 4)
    hidden = layers["QuantizedConv2D"](narrower, 1, activation="relu", name="head_conv_2")(hidden)
    hidden = layers["FakeQuant"](name="head_grid_2")(hidden)
    # A small penalty on the logits' size keeps their range narrow: confident locations otherwise
    # reach -20 or less, and that range makes int8 steps coarse near the decision threshold.
    logits = layers["QuantizedConv2D"](
        1, 1, name="location_logits", dtype="float32", activity_regularizer=layers["MeanSquare"](LOGIT_PENALTY)
    )(hidden)
    logit_grid = layers["FakeQuant"](name="logit_grid")  # shared: the max and the mean are concatenated on one grid
    logits = logit_grid(logits)
    anomaly_map = keras.layers.Activation("sigmoid", name=ANOMALY_MAP, dtype="float32")(logits)
    # The image is as defective as its worst location (max) and as its overall state (mean). Measured:
    # global reductions stay in one int8 XNNPACK partition; a 14x14 AveragePooling2D window does not.
    worst = keras.layers.GlobalMaxPooling2D(name="worst_location")(logits)
    overall = logit_grid(keras.layers.GlobalAveragePooling2D(name="mean_location")(logits))
    pooled = keras.layers.Concatenate(name="pooled")([worst, overall])
    # Non-negative weights keep the map's meaning: a hotter location can only raise the image score.
    image_logit = layers["QuantizedDense"](
        1, kernel_constraint=keras.constraints.NonNeg(), name="image_logit", dtype="float32"
    )(pooled)
    image_logit = layers["FakeQuant"](name="image_logit_grid")(image_logit)
    score = keras.layers.Activation("sigmoid", name=SCORE, dtype="float32")(image_logit)
    return keras.Model(extractor.input, {SCORE: score, ANOMALY_MAP: anomaly_map}, name="vision_qc_network")


def build_training_model(config: VisionQCConfig, train: pd.DataFrame | None = None) -> Any:
    """The network trained on both outputs: the image score, and the map against defect masks (where
    masks exist). Masks turn one defect image into many labelled locations, which matters when a line
    has a few hundred images.

    The patch statistics are fixed (standardized on the training images). With ``backbone.frozen`` the
    backbone keeps its random weights (batch norm re-estimated on the training images) and only the
    head learns: on 2 CPU cores that converges in minutes where training the whole network from
    scratch needs far more epochs (see the app README)."""
    extractor = feature_extractor(config)
    if train is not None:
        adapt_features(extractor, training_pixels(train, config), config)
    extractor.get_layer("patch_statistics").trainable = False
    if config.backbone.frozen:
        extractor.trainable = False
    return build_network(config, extractor)


def masked_binary_crossentropy(target: Any, predicted: Any) -> Any:
    """Per-location cross-entropy that ignores locations marked -1 (a defect image without a mask:
    we know something is wrong, not where)."""
    import keras
    from keras import ops

    known = ops.squeeze(ops.cast(ops.greater_equal(target, 0.0), "float32"), -1)  # [N, h, w]
    losses = keras.losses.binary_crossentropy(ops.maximum(target, 0.0), predicted) * known
    batch = ops.shape(losses)[0]
    per_image = ops.sum(ops.reshape(losses, (batch, -1)), axis=1)
    counted = ops.sum(ops.reshape(known, (batch, -1)), axis=1)
    return per_image / ops.maximum(counted, 1.0)


def compile_options(config: VisionQCConfig) -> Any:
    def options(training: Any) -> dict[str, Any]:
        import keras

        return {
            "optimizer": keras.optimizers.Adam(learning_rate=training.learning_rate),
            "loss": {SCORE: keras.losses.BinaryCrossentropy(), ANOMALY_MAP: masked_binary_crossentropy},
            "loss_weights": {SCORE: 1.0, ANOMALY_MAP: config.map_loss_weight},
            "metrics": {SCORE: [keras.metrics.AUC(name="auc")]},
        }

    return options


# ---- features: patch statistics and the backbone ----------------------------------------------------------


def custom_objects() -> dict[str, Any]:
    """This model's Keras layer classes, defined (and registered for ``keras.saving.load_model``) on
    first use, so importing this module does not import Keras."""
    global _CUSTOM_OBJECTS
    if _CUSTOM_OBJECTS is None:
        _CUSTOM_OBJECTS = _define_layers()
    return _CUSTOM_OBJECTS


def _define_layers() -> dict[str, Any]:
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="vision_qc")
    class MeanSquare(keras.regularizers.Regularizer):
        """weight * mean(x^2): a penalty independent of the map's size and the batch's."""

        def __init__(self, weight: float) -> None:
            self.weight = float(weight)

        def __call__(self, values: Any) -> Any:
            return self.weight * ops.mean(ops.square(values))

        def get_config(self) -> dict[str, Any]:
            return {"weight": self.weight}

    @keras.saving.register_keras_serializable(package="vision_qc")
    class FakeQuant(keras.layers.Layer):
        """One point where the int8 edge model stores a tensor: once ``quantized``, values are rounded
        to the same 256-level grid (its range observed on training images by
        ``calibrate_quantization``), so the float model computes what the int8 model will, and the
        TFLite converter takes the ranges from here instead of guessing them."""

        def __init__(self, quantized: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.quantized, self.observing = bool(quantized), False

        def build(self, input_shape: Any) -> None:
            self.bounds = self.add_weight(shape=(1, 2), initializer="zeros", trainable=False, name="bounds")

        def call(self, values: Any) -> Any:
            return _grid_point(self, values, 0)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "quantized": self.quantized}

    @keras.saving.register_keras_serializable(package="vision_qc")
    class FoldableBatchNormalization(keras.layers.BatchNormalization):
        """Batch norm that ``fold_batch_norm`` can fold into the convolution before it, after which it
        passes values through: the int8 grids must round the folded kernel, as the converter stores it."""

        def __init__(self, *args: Any, folded: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.folded = bool(folded)

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            if self.folded:
                return inputs
            return super().call(inputs, training=training, mask=mask)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "folded": self.folded}

    @keras.saving.register_keras_serializable(package="vision_qc")
    class QuantizedConv2D(keras.layers.Conv2D):
        """Conv2D whose kernel, once ``quantized``, is rounded to int8 (symmetric, one scale per
        tensor) in the float graph too, as the converter will store it."""

        def __init__(self, *args: Any, quantized: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.quantized = bool(quantized)

        def convolution_op(self, inputs: Any, kernel: Any) -> Any:
            return super().convolution_op(inputs, _int8_weights(kernel) if self.quantized else kernel)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "quantized": self.quantized}

    @keras.saving.register_keras_serializable(package="vision_qc")
    class QuantizedDense(keras.layers.Dense):
        """Dense with the same int8 kernel rounding as ``QuantizedConv2D``."""

        def __init__(self, *args: Any, quantized: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.quantized = bool(quantized)

        def call(self, inputs: Any, training: Any = None) -> Any:
            kernel = _int8_weights(self.kernel) if self.quantized else self.kernel
            outputs = ops.matmul(inputs, kernel)
            if self.bias is not None:
                outputs = ops.add(outputs, self.bias)
            return self.activation(outputs) if self.activation is not None else outputs

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "quantized": self.quantized}

    @keras.saving.register_keras_serializable(package="vision_qc")
    class PatchStatistics(keras.layers.Layer):
        """pixels [N, S, S, C] (0..255) -> [N, S/P, S/P, 2 * (3C + 2)] descriptors of each P x P patch:
        per-channel mean, fine contrast (|pixel - its 3x3 mean| at half resolution) and coarse contrast
        (the same at 1/8 resolution), mean |gradient| and mean |Laplacian| of the luminance (brightness,
        contrast, edge and fine-texture energy), standardized with training images' statistics and
        clipped at +-CLIP_SIGMAS; then the same descriptors minus their mean over the image.

        Why the second half: a surface is a texture, so a defect is a patch that differs from the rest
        of *its own* image. Subtracting the image's mean removes what varies between parts and is not a
        defect (lighting, tint, which material, how coarse its grain). Measured on the generator
        (800 images, 3 seeds, numpy prototype), a Gaussian over the centered descriptors reached 0.79 test
        AUROC where the same Gaussian over raw descriptors (the patch_gaussian baseline) reached 0.70.

        Every op is a fixed convolution, ReLU, product, mean or subtraction: TFLite builtins that int8
        XNNPACK runs. Each descriptor is standardized *before* the concatenation so int8 keeps the
        small ones (contrasts) as precise as the large ones (means).
        """

        # Where the int8 model stores a tensor: each gets a grid once ``quantized`` (see FakeQuant).
        # Tensors that are concatenated share one grid (standardized parts; features and centered).
        GRID_POINTS = ("pixels", "half", "fine_rectified", "fine", "quarter", "coarse_rectified", "coarse",
                       "standardized", "scaled", "clipped", "third", "features", "image_mean")

        def __init__(self, patch_size: int, channels: int, quantized: bool = False, **kwargs: Any) -> None:
            # Fixed pixel arithmetic and standardization stay float32 under a mixed precision policy
            # (bfloat16 would round pixel means and contrasts before the head sees them).
            kwargs.setdefault("dtype", "float32")
            super().__init__(**kwargs)
            self.patch_size, self.channels = int(patch_size), int(channels)
            self.depth = 3 * self.channels + 2
            self.quantized, self.observing = bool(quantized), False

        def build(self, input_shape: Any) -> None:
            self.feature_mean = self.add_weight(shape=(self.depth,), initializer="zeros", trainable=False, name="feature_mean")
            self.feature_scale = self.add_weight(shape=(self.depth,), initializer="ones", trainable=False, name="feature_scale")
            self.bounds = self.add_weight(shape=(len(self.GRID_POINTS), 2), initializer="zeros", trainable=False, name="bounds")

        def grid(self, values: Any, point: str) -> Any:
            return _grid_point(self, values, self.GRID_POINTS.index(point))

        def raw(self, pixels: Any) -> Any:
            """The descriptors before standardization: [mean (C), fine contrast (C), gradient,
            Laplacian, coarse contrast (C)], computed at half resolution (a quarter of the int8 cost)."""
            channels, patch, grid = self.channels, self.patch_size // 2, self.grid
            # The edge model takes whole uint8 pixels; resized images are fractional, so round here too.
            pixels = grid(ops.cast(pixels, "float32"), "pixels")
            # Any image size: repeat the border out to a multiple of the cell size (exact in int8, and a
            # border pixel repeated looks like no edge to the filters), so the cells tile the image.
            pixels = _pad_to_multiple(pixels, self.patch_size)
            # The mean of 4 whole pixels often ends in exactly .5 of a grid step, where float and int8
            # round differently; an eighth of a step up keeps every value off the ties.
            half = grid(_block_mean(pixels / 255.0, 2) + 1.0 / (8 * 255.0), "half")
            # [contrast (C), |dx| + |dy|, |laplacian|]
            fine = _filter_energies(
                half, channels, edges=True, grid=lambda values, step: grid(values, f"fine{step}"), quantized=self.quantized
            )
            # Contrast at the scale of a few pixels (stains, holes) from a 4x smaller image: the same
            # 3x3 filter, so no large kernel (a 7x7 depthwise one cost 30 ms in int8 on this CPU).
            quarter = grid(_block_mean(half, 4), "quarter")
            coarse = _filter_energies(
                quarter, channels, edges=False, grid=lambda values, step: grid(values, f"coarse{step}"), quantized=self.quantized
            )
            return [
                _block_mean(half, patch),
                _block_mean(fine[..., :channels], patch),
                _block_mean(fine[..., channels : channels + 1], patch),
                _block_mean(fine[..., channels + 1 :], patch),
                _block_mean(coarse, patch // 4),
            ]

        def call(self, pixels: Any) -> Any:
            parts, start = [], 0
            for part in self.raw(pixels):
                width = part.shape[-1]
                mean, scale = self.feature_mean[start : start + width], self.feature_scale[start : start + width]
                # x * a + b, the form the TFLite converter folds into the convolution before it.
                standardized = part * (1.0 / (CLIP_SIGMAS * scale)) - mean / (CLIP_SIGMAS * scale)
                parts.append(self.grid(standardized, "standardized"))
                start += width
            # In units of CLIP_SIGMAS standard deviations, clipped to +-1: a patch that far out is
            # anomalous whatever its exact value, and bounded ranges keep int8 steps fine (heavy tails
            # would set a coarse scale for all). Written with relu6: MINIMUM/MAXIMUM (ops.clip) would
            # leave the int8 XNNPACK partition.
            scaled = self.grid(ops.concatenate(parts, axis=-1) * 3.0, "scaled")
            clipped = self.grid(ops.relu6(scaled + 3.0), "clipped")
            features = self.grid(self.grid(clipped * (1.0 / 3.0), "third") - 1.0, "features")
            image_mean = self.grid(ops.mean(features, axis=(1, 2), keepdims=True), "image_mean")
            centered = self.grid(features - image_mean, "features")
            return ops.concatenate([features, centered], axis=-1)

        def adapt(self, pixels: np.ndarray, batch_size: int = 32) -> None:
            """Standardize each descriptor with its mean and spread over these (training) images."""
            raw = np.concatenate([
                np.concatenate([np.asarray(part) for part in self.raw(pixels[start : start + batch_size])], axis=-1)
                for start in range(0, len(pixels), batch_size)
            ])
            flat = raw.reshape(-1, self.depth)
            scale = flat.std(axis=0)
            self.feature_mean.assign(flat.mean(axis=0))
            self.feature_scale.assign(np.where(scale > 1e-8, scale, 1.0))

        def compute_output_shape(self, input_shape: Any) -> Any:
            cells = None if input_shape[1] is None else -(-input_shape[1] // self.patch_size)
            return (input_shape[0], cells, cells, 2 * self.depth)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(), "patch_size": self.patch_size, "channels": self.channels, "quantized": self.quantized
            }

    return {
        "MeanSquare": MeanSquare,
        "PatchStatistics": PatchStatistics,
        "FakeQuant": FakeQuant,
        "QuantizedConv2D": QuantizedConv2D,
        "QuantizedDense": QuantizedDense,
        "FoldableBatchNormalization": FoldableBatchNormalization,
    }


# ---- quantization-aware network: the float graph computes on the int8 model's grids ----------------------
#
# Post-training int8 rounding moved this network's scores by ~0.1 (RMS), and with many images close to the
# threshold that changed 6-25 % of decisions (the parity gate needs < 1 %). So the network carries the
# int8 model inside: every tensor the edge model stores is rounded in the float graph too, on ranges
# observed on training images, and every kernel as int8 stores it. The TFLite converter reads those
# ranges (fake-quantization ops) instead of calibrating its own, and the int8 model then reproduces the
# float model's scores to about its output's last bit. The supervised network is fine-tuned on the grids
# for a few epochs (quantization-aware training) to win back what the rounding costs.


def _grid_point(layer: Any, values: Any, index: int) -> Any:
    """``values`` unchanged, or (``layer.quantized``) rounded to the 8-bit grid of bounds[index];
    while ``layer.observing`` (eager calls only) the bounds grow to cover ``values`` (and 0, which
    int8 must represent exactly)."""
    import keras
    from keras import ops

    if layer.observing:
        bounds = np.asarray(layer.bounds.numpy())
        bounds[index] = (min(bounds[index, 0], float(ops.min(values))), max(bounds[index, 1], float(ops.max(values))))
        layer.bounds.assign(bounds)
        return values
    if not layer.quantized:
        return values
    return keras.quantizers.fake_quant_with_min_max_vars(values, layer.bounds[index, 0], layer.bounds[index, 1], num_bits=8)


def _int8_weights(kernel: Any) -> Any:
    """A kernel rounded as the converter stores it in int8 here: symmetric, one scale per tensor."""
    import keras
    from keras import ops

    limit = ops.stop_gradient(ops.maximum(ops.max(ops.abs(kernel)), 1e-8))
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -limit, limit, num_bits=8, narrow_range=True)


def quantization_layers(network: Any) -> list[Any]:
    return [layer for layer in network._flatten_layers(include_self=False, recursive=True) if hasattr(layer, "quantized")]


def calibrate_quantization(network: Any, pixels: np.ndarray, batch_size: int = 32) -> None:
    """Observe every grid's range on these (training) pixels, then switch the grids on. The pixel grid
    is fixed to 0..255, the whole uint8 values the edge model takes."""
    layers = quantization_layers(network)
    for layer in layers:
        layer.quantized = False
        if hasattr(layer, "bounds"):
            layer.bounds.assign(np.zeros(tuple(layer.bounds.shape), np.float32))
            layer.observing = True
    for start in range(0, len(pixels), batch_size):
        network(pixels[start : start + batch_size], training=False)
    for layer in layers:
        layer.quantized = True
        if hasattr(layer, "bounds"):
            layer.observing = False
        if hasattr(layer, "GRID_POINTS"):
            bounds = np.asarray(layer.bounds.numpy())
            bounds[layer.GRID_POINTS.index("pixels")] = (0.0, 255.0)
            layer.bounds.assign(bounds)


# sigmoid(8) = 0.9997: a one-class logit grid up to here keeps every score a defect can get.
ONE_CLASS_LOGIT_CEILING = 8.0


def widen_grid(layer: Any, low: float | None, high: float | None) -> None:
    """A grid's observed range stretched to include ``low`` and ``high`` (None: keep that end)."""
    bounds = np.asarray(layer.bounds.numpy()).copy()
    if low is not None:
        bounds[0, 0] = min(bounds[0, 0], low)
    if high is not None:
        bounds[0, 1] = max(bounds[0, 1], high)
    layer.bounds.assign(bounds)


@contextlib.contextmanager
def quantization_off(network: Any) -> Iterator[None]:
    """The network computes in plain float inside the block (e.g. to export a float16 model)."""
    layers = [layer for layer in quantization_layers(network) if layer.quantized]
    for layer in layers:
        layer.quantized = False
    try:
        yield
    finally:
        for layer in layers:
            layer.quantized = True


def fold_batch_norm(convolution: Any, norm: Any) -> None:
    """Fold a (trained) batch norm into the convolution before it; the norm then passes values through."""
    if norm.folded:
        return
    scale = np.asarray(norm.gamma.numpy()) / np.sqrt(np.asarray(norm.moving_variance.numpy()) + norm.epsilon)
    kernel, bias = (np.asarray(weight.numpy()) for weight in (convolution.kernel, convolution.bias))
    convolution.kernel.assign(kernel * scale)
    convolution.bias.assign(np.asarray(norm.beta.numpy()) + (bias - np.asarray(norm.moving_mean.numpy())) * scale)
    norm.folded = True


def is_quantization_aware(network: Any) -> bool:
    layers = quantization_layers(network)
    return bool(layers) and all(layer.quantized for layer in layers)


def _replicate_pad(values: Any, width: int) -> Any:
    """Pad [N, H, W, C] by repeating its border (slices and concatenation, which int8 XNNPACK runs), so
    an image's edge does not look like an edge to the filters."""
    from keras import ops

    for _ in range(width):  # one pixel per step: XNNPACK concatenates at most a few inputs at once
        values = ops.concatenate([values[:, :1], values, values[:, -1:]], axis=1)
        values = ops.concatenate([values[:, :, :1], values, values[:, :, -1:]], axis=2)
    return values


def _pad_to_multiple(values: Any, multiple: int) -> Any:
    """Pad [N, H, W, C] (static H, W) by repeating its border up to the next multiple of ``multiple``
    (half on each side, the odd pixel at the bottom/right): slices and concatenations, as ``_replicate_pad``."""
    from keras import ops

    height, width = int(values.shape[1]), int(values.shape[2])
    extra_rows, extra_columns = -height % multiple, -width % multiple
    for step in range(max(extra_rows, extra_columns)):
        if step < extra_rows:
            values = ops.concatenate([values[:, :1], values] if step % 2 else [values, values[:, -1:]], axis=1)
        if step < extra_columns:
            values = ops.concatenate([values[:, :, :1], values] if step % 2 else [values, values[:, :, -1:]], axis=2)
    return values


def padded_size(config: VisionQCConfig) -> int:
    """The side the patch statistics work at: ``image_size`` rounded up to a multiple of ``map_stride``."""
    return -(-config.image_size // config.map_stride) * config.map_stride


def _block_mean(values: Any, size: int) -> Any:
    """Mean over non-overlapping size x size blocks, as a strided depthwise convolution of equal weights
    (exact in int8; AveragePooling2D would split the int8 XNNPACK partition)."""
    from keras import ops

    if size == 1:
        return values
    depth = values.shape[-1]
    return ops.depthwise_conv(values, np.full((size, size, depth, 1), 1.0 / size**2, np.float32), strides=size, padding="valid")


def _filter_energies(
    image: Any, channels: int, edges: bool, grid: Callable[[Any, str], Any] | None = None, quantized: bool = False
) -> Any:
    """Per-pixel |3x3 filter| responses of [N, H, W, C] in 0..1: each channel's distance from its 3x3
    mean (contrast), then, with ``edges``, |dx| + |dy| and |Laplacian| of the luminance. One convolution
    computes every filter twice, with both signs, because relu(k*x) + relu(-k*x) = |k*x| with ops int8
    XNNPACK runs; a 1x1 convolution adds the pairs."""
    from keras import ops

    luminance = np.asarray((0.299, 0.587, 0.114) if channels == 3 else (1.0,), np.float32)
    high_pass = -np.full((3, 3), 1.0 / 9.0, np.float32)
    high_pass[1, 1] += 1.0  # 8/9 and -1/9 survive int8 rounding (a 7x7 version's -1/49 does not)
    half = np.zeros((3, 3), np.float32)
    half[1, 0], half[1, 2] = -0.5, 0.5  # central difference, as numpy.gradient
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    filters, targets = [], []  # [3, 3, C] kernels, and the output each adds into
    for channel in range(channels):
        kernel = np.zeros((3, 3, channels), np.float32)
        kernel[:, :, channel] = high_pass
        filters.append(kernel)
        targets.append(channel)
    if edges:
        filters += [half[:, :, None] * luminance, half.T[:, :, None] * luminance, laplacian[:, :, None] * luminance]
        targets += [channels, channels, channels + 1]  # |dx| + |dy|, then |laplacian|
    signed = np.stack([sign * kernel for kernel in filters for sign in (1.0, -1.0)], axis=-1)
    sums = np.zeros((1, 1, signed.shape[-1], max(targets) + 1), np.float32)
    for index, target in enumerate(targets):
        sums[0, 0, 2 * index : 2 * index + 2, target] = 1.0
    grid = grid or (lambda values, step: values)
    if quantized:  # the kernels as int8 stores them
        signed, sums = _int8_weights(signed), _int8_weights(sums)
    rectified = grid(ops.relu(ops.conv(_replicate_pad(image, 1), signed)), "_rectified")
    return grid(ops.conv(rectified, sums), "")


def feature_extractor(config: VisionQCConfig) -> Any:
    """pixels -> per-location features [N, h, w, D] on the anomaly map's grid (stride ``map_stride``):
    the patch statistics, and (with ``backbone.enabled``) the keras-hub backbone's three scales, the
    finer one max-pooled down and the coarse one upsampled. Random weights (seeded), nothing
    downloaded; ``adapt_features`` measures the statistics and batch-norm moments on training images."""
    import keras

    keras.utils.set_random_seed(config.seed)
    pixels = keras.Input((config.image_size, config.image_size, config.channels), name="pixels")
    statistics = custom_objects()["PatchStatistics"](config.map_stride, config.channels, name="patch_statistics")(pixels)
    if not config.backbone.enabled:
        return keras.Model(pixels, statistics, name="feature_extractor")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(pixels)
    finer, fine, coarse = build_backbone(config)(scaled)
    if config.map_stride == 16:
        # Thin defects (scratches, cracks) live at stride 8; max-pooling keeps their trace on this grid
        # (and, unlike a 2x2 average pool, stays inside the int8 XNNPACK partition).
        finer = keras.layers.MaxPooling2D(2, name="finer_pool")(finer)
        coarse = keras.layers.UpSampling2D(2, interpolation="bilinear", name="coarse_up")(coarse)
    else:
        fine = keras.layers.UpSampling2D(2, interpolation="bilinear", name="fine_up")(fine)
        coarse = keras.layers.UpSampling2D(4, interpolation="bilinear", name="coarse_up")(coarse)
    features = keras.layers.Concatenate(name="features")([statistics, finer, fine, coarse])
    return keras.Model(pixels, features, name="feature_extractor")


def adapt_features(extractor: Any, pixels: np.ndarray, config: VisionQCConfig, passes: int = 3) -> None:
    """Measure what random init leaves meaningless on training images: the patch statistics' scale and,
    with the backbone, its batch-norm moments (moving averages, momentum 0.9, converge in a few passes)."""
    extractor.get_layer("patch_statistics").adapt(pixels)
    if config.backbone.enabled:
        for _ in range(passes):
            for start in range(0, min(len(pixels), 512), 32):
                extractor(pixels[start : start + 32], training=True)


def training_pixels(frame: pd.DataFrame, config: VisionQCConfig, limit: int = 512) -> np.ndarray:
    """Decoded pixels of up to ``limit`` images, by the graph's own decoder."""
    import tensorflow as tf

    images = frame["image"].tolist()[:limit]
    return np.concatenate([
        np.asarray(decode_images(tf.constant(images[start : start + 32]), config.image_size, config.channels))
        for start in range(0, len(images), 32)
    ])


# ---- one-class: a Gaussian over the features of good images ---------------------------------------------


def fit_feature_gaussian(
    train: pd.DataFrame, config: VisionQCConfig, max_vectors: int = 60_000, valid: pd.DataFrame | None = None
) -> Any:
    """Fit the one-class model on the good training images and return the two-output network.

    1. Standardize the patch statistics (and re-estimate the backbone's batch norm, when enabled) on
       the good images.
    2. Fit one Gaussian (Ledoit-Wolf) over all locations' features: surfaces are textures, so
       "normal" does not depend on where in the image a patch is.
    3. Write the Mahalanobis distance into the graph as layers: a 1x1 convolution whitens, a product
       squares, a 1x1 convolution of ones sums; a last 1x1 convolution standardizes the distance with
       good images' own spread, so sigmoid(map) is a per-location defect score and the image score is
       the sigmoid of its worst location. Every op is a TFLite builtin.
    """
    import keras
    from sklearn.covariance import LedoitWolf

    good = train[train["label_id"] == 0]
    if good.empty:
        raise ValueError("The one-class model needs good images in the training split; found none.")
    extractor = feature_extractor(config)
    pixels = training_pixels(good, config, limit=len(good))
    adapt_features(extractor, pixels, config)
    features = extractor.predict(pixels, batch_size=32, verbose=0)
    depth = features.shape[-1]
    vectors = features.reshape(-1, depth)
    rng = np.random.default_rng(config.seed)
    if len(vectors) > max_vectors:
        vectors = vectors[rng.choice(len(vectors), max_vectors, replace=False)]
    gaussian = LedoitWolf().fit(vectors.astype(np.float64))
    whitening = np.linalg.cholesky(gaussian.precision_)  # (f - mu) @ L has identity covariance
    squared = (((features.reshape(-1, depth) - gaussian.location_) @ whitening) ** 2).sum(axis=1)
    center = float(np.median(squared))
    spread = float(np.quantile(squared, 0.99) - center) / 3.0 or 1.0

    inputs = extractor.input
    feature_map = extractor.output
    layers = custom_objects()
    whiten = layers["QuantizedConv2D"](depth, 1, name="whiten")
    centered = layers["FakeQuant"](name="whitened_grid")(whiten(feature_map))
    squares = layers["FakeQuant"](name="squares_grid")(keras.layers.Multiply(name="square")([centered, centered]))
    total = layers["QuantizedConv2D"](1, 1, use_bias=False, name="sum_squares")
    distance = layers["FakeQuant"](name="distance_grid")(total(squares))
    standardize = layers["QuantizedConv2D"](1, 1, name="location_logits", dtype="float32")
    logits = layers["FakeQuant"](name="logit_grid")(standardize(distance))
    anomaly_map = keras.layers.Activation("sigmoid", name=ANOMALY_MAP, dtype="float32")(logits)
    worst = keras.layers.GlobalMaxPooling2D(name="worst_location")(logits)
    score = keras.layers.Activation("sigmoid", name=SCORE, dtype="float32")(worst)
    network = keras.Model(inputs, {SCORE: score, ANOMALY_MAP: anomaly_map}, name="vision_qc_one_class")
    whiten.set_weights([whitening.astype(np.float32)[None, None], (-gaussian.location_ @ whitening).astype(np.float32)])
    total.set_weights([np.ones((1, 1, depth, 1), np.float32)])
    standardize.set_weights([np.full((1, 1, 1, 1), 1.0 / spread, np.float32), np.asarray([-center / spread], np.float32)])
    if quantization_aware(config):
        calibrate_quantization(network, pixels[: config.edge.calibration_images])
        # Those ranges were observed on good images only, so an anomaly's distance clipped at the largest
        # good one and its score stuck near 0.5 (served 0.50 where the float network said 0.71): the grids
        # after the whitening reach the distance whose standardized logit is ONE_CLASS_LOGIT_CEILING.
        ceiling = center + ONE_CLASS_LOGIT_CEILING * spread
        widen_grid(network.get_layer("whitened_grid"), -np.sqrt(ceiling), np.sqrt(ceiling))
        widen_grid(network.get_layer("squares_grid"), 0.0, ceiling)
        widen_grid(network.get_layer("distance_grid"), 0.0, ceiling)
        widen_grid(network.get_layer("logit_grid"), None, ONE_CLASS_LOGIT_CEILING)
    if valid is not None:
        platt_scale(network, valid, config)
    return network


def quantization_aware(config: VisionQCConfig) -> bool:
    """Whether the network computes on the int8 grids (see ``calibrate_quantization``). Not with the
    keras-hub backbone, whose layers have no grids: that network is quantized after training."""
    return config.edge.enabled and config.edge.quantization_aware and not config.backbone.enabled


def finish_training(config: VisionQCConfig, datasets: "Datasets") -> Callable[..., Any]:
    """``KerasCandidate.finish`` of the supervised network: after ``fit``, fold the head's batch norm,
    switch the network onto its int8 grids and fine-tune it there through the core's loop
    (``trainer.fit``) for ``edge.quantization_aware_epochs`` epochs, at 0.3 times the learning rate and
    without early stopping, on the very datasets the first fit iterated (``datasets`` memoizes them, so
    the decoded images are not decoded again)."""

    def finish(network: Any, splits: Any, trainer: Any) -> Any:
        network = fine_tune(network, splits, trainer)
        platt_scale(network, splits.valid, config)
        return network

    def fine_tune(network: Any, splits: Any, trainer: Any) -> Any:
        from solutions_core.solution import KerasFit

        try:
            if not quantization_aware(config):
                return network
            with trainer.scope():
                fold_batch_norm(network.get_layer("head_conv"), network.get_layer("head_bn"))
                rng = np.random.default_rng(config.seed)
                count = min(config.edge.calibration_images, len(splits.train))
                chosen = np.sort(rng.choice(len(splits.train), size=count, replace=False))
                calibrate_quantization(network, training_pixels(splits.train.iloc[chosen], config, limit=len(chosen)))
            epochs = config.edge.quantization_aware_epochs
            if not epochs:
                return network
            training = trainer.training.model_copy(
                update={"learning_rate": trainer.training.learning_rate * 0.3, "epochs": epochs, "early_stopping_patience": 0}
            )
            return trainer.fit(
                KerasFit(
                    "quantization_aware",
                    build=lambda: network,  # trained further, on the grids
                    compile=compile_options(config),
                    data=lambda training, batch: datasets(splits.train if training else splits.valid, training, batch),
                    training=training,
                )
            )
        finally:
            datasets.clear()  # the decoded images are not needed once the network is final

    return finish


# ---- data --------------------------------------------------------------------------------------------------


def map_size(config: VisionQCConfig) -> int:
    """Side of the anomaly map: the cells that tile the (padded) image."""
    return padded_size(config) // config.map_stride


def mask_targets(frame: pd.DataFrame, config: VisionQCConfig) -> np.ndarray:
    """Per-location targets [N, h, w] at the map's resolution: 1 where the mask touches the cell, 0 on
    good images, -1 (ignored) for defect images without a mask."""
    from PIL import Image

    side = map_size(config)
    targets = np.zeros((len(frame), side, side), dtype=np.float32)
    for index, (mask, label) in enumerate(zip(frame["mask"], frame["label_id"])):
        if mask is None or (isinstance(mask, float) and np.isnan(mask)):
            targets[index] = -1.0 if label == 1 else 0.0
            continue
        coverage = np.asarray(Image.fromarray(np.asarray(mask, dtype=np.float32)).resize((side, side), Image.BOX))
        targets[index] = (coverage > 0.02).astype(np.float32)
    return targets


def paste_synthetic_defect(image: Any, config: VisionQCConfig) -> tuple[Any, Any]:
    """One synthetic defect on one image [S, S, C] (0..255): a patch of the image itself, moved
    elsewhere and recoloured (CutPaste), or a thin scar. Returns the image and the pasted area [S, S].
    The model learns "something here does not belong to this surface", which transfers to real
    defects it never saw."""
    import tensorflow as tf

    size = config.image_size
    spec = config.synthetic_defects
    area = tf.random.uniform([], spec.min_area, spec.max_area) * size * size
    scar = tf.random.uniform([]) < spec.scar_share
    log_aspect = tf.random.uniform([], math.log(0.3), math.log(3.3))
    height = tf.where(scar, tf.random.uniform([], 2.0, 5.0), tf.sqrt(area * tf.exp(log_aspect)))
    width = tf.where(scar, tf.random.uniform([], 0.1, 0.35) * size, tf.sqrt(area / tf.exp(log_aspect)))
    height = tf.cast(tf.clip_by_value(height, 2.0, size - 1.0), tf.int32)
    width = tf.cast(tf.clip_by_value(width, 2.0, size - 1.0), tf.int32)
    vertical = tf.random.uniform([]) < 0.5
    height, width = tf.where(vertical, width, height), tf.where(vertical, height, width)

    def corner(extent: Any) -> Any:
        return tf.random.uniform([], 0, size - extent + 1, dtype=tf.int32)

    patch = tf.slice(image, [corner(height), corner(width), 0], [height, width, -1])
    gain = tf.random.uniform([1, 1, config.channels], 0.6, 1.4)
    offset = tf.random.uniform([1, 1, config.channels], -40.0, 40.0)
    patch = tf.clip_by_value(patch * gain + offset, 0.0, 255.0)
    top, left = corner(height), corner(width)
    padding = [[top, size - top - height], [left, size - left - width], [0, 0]]
    pasted = tf.pad(patch, padding)
    mask = tf.pad(tf.ones_like(patch[..., :1]), padding)
    return image * (1.0 - mask) + pasted * mask, mask[..., 0]


def make_dataset(frame: pd.DataFrame, config: VisionQCConfig, training: bool, batch_size: int) -> Any:
    """(pixels, {defect_score, anomaly_map}) batches. Images are decoded once and cached as uint8.
    Training adds synthetic defects (and their masks) on some good images, because real ones are
    scarce, flips (image and mask together) and Keras photometric augmentation."""
    import keras
    import tensorflow as tf

    synthetic_rate = config.synthetic_defects.rate
    images = np.asarray(frame["image"].tolist(), dtype=object)
    labels = frame["label_id"].to_numpy(dtype="float32")
    targets = mask_targets(frame, config)
    size, channels, side = config.image_size, config.channels, map_size(config)

    def decode(data: Any, label: Any, target: Any) -> Any:
        return tf.cast(tf.round(decode_image(data, size, channels)), tf.uint8), label, target

    dataset = tf.data.Dataset.from_tensor_slices((images, labels, targets))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()

    def as_example(image: Any, label: Any, target: Any) -> Any:
        # Augmentation (tf.cond, Keras layers) can lose the static channel count; the network needs it.
        shape = [size, size, channels] if image.shape.rank == 3 else [None, size, size, channels]
        image = tf.ensure_shape(image, shape)
        return image, {SCORE: label[..., None], ANOMALY_MAP: target[..., None]}

    if not training:
        dataset = dataset.map(lambda image, label, target: (tf.cast(image, tf.float32), label, target))
        return dataset.map(as_example).batch(batch_size).prefetch(2)

    dataset = dataset.shuffle(len(frame), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda image, label, target: (tf.cast(image, tf.float32), label, target))
    if synthetic_rate > 0:

        def synthesize(image: Any, label: Any, target: Any) -> Any:
            defective = tf.logical_and(label < 0.5, tf.random.uniform([]) < synthetic_rate)

            def paste() -> Any:
                pasted, area = paste_synthetic_defect(image, config)
                cells = tf.nn.max_pool2d(area[None, :, :, None], ksize=config.map_stride, strides=config.map_stride, padding="SAME")
                return pasted, tf.maximum(target, tf.reshape(cells, [side, side]))

            image, target = tf.cond(defective, paste, lambda: (image, target))
            return image, tf.maximum(label, tf.cast(defective, tf.float32)), target

        dataset = dataset.map(synthesize, num_parallel_calls=tf.data.AUTOTUNE)

    def flip(image: Any, label: Any, target: Any) -> Any:
        if not config.flips:
            return image, label, target
        # Surfaces and defects have no up or left: flip the image and its mask together.
        if tf.random.uniform([]) < 0.5:
            image, target = tf.reverse(image, [1]), tf.reverse(target, [1])
        if tf.random.uniform([]) < 0.5:
            image, target = tf.reverse(image, [0]), tf.reverse(target, [0])
        return image, label, target

    dataset = dataset.map(flip, num_parallel_calls=tf.data.AUTOTUNE)
    if not config.photometric_augmentation:
        return dataset.batch(batch_size).map(as_example).prefetch(2)
    photometric = keras.Sequential(
        [keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=config.seed),
         keras.layers.RandomContrast(0.15, seed=config.seed)],
        name="augmentation",
    )
    dataset = dataset.batch(batch_size).map(
        lambda image, label, target: (tf.clip_by_value(photometric(image, training=True), 0.0, 255.0), label, target)
    )
    return dataset.map(as_example).prefetch(2)


class Datasets:
    """``make_dataset`` memoized per (split, training, global batch) for one candidate: a second fit on
    the same split (the quantization-aware fine-tune) gets the same Dataset objects, whose ``cache()``
    already holds the decoded images. ``clear()`` lets them go."""

    def __init__(self, config: VisionQCConfig):
        self.config = config
        self._made: dict[tuple[int, bool, int], tuple[pd.DataFrame, Any]] = {}

    def __call__(self, frame: pd.DataFrame, training: bool, batch_size: int) -> Any:
        key = (id(frame), bool(training), int(batch_size))
        if key not in self._made:  # the frame is kept with its dataset, so its id is not reused meanwhile
            self._made[key] = (frame, make_dataset(frame, self.config, training, batch_size))
        return self._made[key][1]

    def clear(self) -> None:
        self._made.clear()


# ---- serving -------------------------------------------------------------------------------------------------


def serving_module(network: Any, config: VisionQCConfig) -> Any:
    """Wrap the two-output network as the exported module: encoded image bytes in, by name."""
    import tensorflow as tf

    class VisionServingModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="vision_qc")
            self.network = network
            self.threshold = tf.Variable(0.5, dtype=tf.float32, trainable=False, name="threshold")
            self.labels = tf.constant(list(LABELS))
            self.serve = tf.function(
                self._serve, input_signature=[{"image": tf.TensorSpec([None], tf.string, name="image")}]
            )
            self.pixels = tf.function(
                self._pixels, input_signature=[tf.TensorSpec([None], tf.string, name="image")]
            )

        def _pixels(self, images: Any) -> Any:
            return decode_images(images, config.image_size, config.channels)

        def _serve(self, inputs: Any) -> dict[str, Any]:
            outputs = self.network(self._pixels(inputs["image"]), training=False)
            score = tf.reshape(outputs[SCORE], [-1])
            defective = tf.cast(score >= self.threshold, tf.int32)
            return {
                SCORE: score,
                "decision": tf.gather(self.labels, defective),
                ANOMALY_MAP: tf.squeeze(outputs[ANOMALY_MAP], axis=-1),
            }

    return VisionServingModule()


# ---- scores that read as probabilities: Platt scaling folded into the graph ------------------------------


def score_logits(network: Any, pixels: np.ndarray) -> np.ndarray:
    """The logit the network's score is the sigmoid of (the input of its ``defect_score`` layer)."""
    import keras

    logit_model = keras.Model(network.input, network.get_layer(SCORE).input)
    return np.asarray(logit_model.predict(pixels, batch_size=32, verbose=0), dtype=np.float64).reshape(-1)


def fold_affine(network: Any, slope: float, intercept: float) -> None:
    """Make the score's logit ``slope * logit + intercept`` by rewriting the layer that computes it (the
    image head's dense layer, or the one-class model's standardizing convolution, whose max the score
    is) and the int8 grid after it: nothing is added to the graph, so the edge model stays as it was."""
    if slope <= 0:
        raise ValueError(f"slope must be positive (a calibration must keep the ranking), got {slope}.")
    names = {layer.name for layer in network.layers}
    layer_name, grid_name = ("image_logit", "image_logit_grid") if "image_logit" in names else ("location_logits", "logit_grid")
    layer = network.get_layer(layer_name)
    layer.kernel.assign(np.asarray(layer.kernel.numpy()) * slope)
    layer.bias.assign(np.asarray(layer.bias.numpy()) * slope + intercept)
    if grid_name in names:
        grid = network.get_layer(grid_name)
        low, high = np.asarray(grid.bounds.numpy())[0]
        if high > low:  # observed: the grid moves with the values (and keeps 0, which int8 represents exactly)
            grid.bounds.assign(np.asarray([[min(low * slope + intercept, 0.0), max(high * slope + intercept, 0.0)]], np.float32))


def platt_scale(network: Any, valid: pd.DataFrame, config: VisionQCConfig) -> tuple[float, float] | None:
    """Fit ``P(defect) = sigmoid(a * logit + b)`` on the validation images (Platt scaling) and fold it into
    the network. Why: a head trained on a few hundred images, with a logit penalty for int8 and synthetic
    defects in its training mix, scores on its own scale (on real images it never exceeded 0.67); a
    client reads ``defect_score`` as a probability. Returns (a, b), or None when validation cannot
    calibrate (one class, or a score that does not rank) or ``calibrate_scores`` is off."""
    from sklearn.linear_model import LogisticRegression

    labels = valid["label_id"].to_numpy()
    if not config.calibrate_scores or len(np.unique(labels)) < 2:
        return None
    logits = score_logits(network, training_pixels(valid, config, limit=len(valid)))
    if not np.isfinite(logits).all() or np.ptp(logits) < 1e-6:
        return None
    fit = LogisticRegression(C=1.0).fit(logits[:, None], labels)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope > 1e-6):
        return None  # never flip or flatten the ranking: keep the score as it is
    fold_affine(network, slope, intercept)
    return slope, intercept


# ---- pixel candidates: the logistic-regression-on-pixels family inside the graph, and a small CNN ---------


def downsample(pixels: Any, side: int) -> Any:
    """[N, S, S, C] -> about [N, side, side, C]: repeat the border to a multiple of the factor, then block
    means (a strided depthwise convolution: exact in int8, one XNNPACK partition)."""
    size = int(pixels.shape[1])
    factor = max(1, -(-size // int(side)))
    if factor == 1:
        return pixels
    return _block_mean(_pad_to_multiple(pixels, factor), factor)


def on_map_grid(values: Any, config: VisionQCConfig) -> Any:
    """A candidate's own location grid resized (bilinear: RESIZE_BILINEAR, which int8 XNNPACK runs) to
    the app's anomaly-map grid, so ``anomaly_map`` has one shape whichever candidate serves."""
    import keras

    side = map_size(config)
    if tuple(values.shape[1:3]) == (side, side):
        return values
    return keras.layers.Resizing(side, side, interpolation="bilinear", name="map_grid")(values)


def fit_pixel_linear(splits: Any, config: VisionQCConfig) -> Any:
    """Logistic regression on downsampled, standardized pixels (the family a client tries first),
    fitted by scikit-learn and written into the graph: block means, then one dense layer whose kernel
    and bias hold the standardization too. Its regularization is chosen on validation AUROC. The map
    is each location's share of the logit (where the evidence is). A candidate the app carries so that
    the served model is never worse than this family."""
    import keras
    from keras import ops
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    train, valid = splits.train, splits.valid
    if len(np.unique(train["label_id"])) < 2:
        raise ValueError("pixel_linear needs good and defective training images.")
    keras.utils.set_random_seed(config.seed)
    pixels = keras.Input((config.image_size, config.image_size, config.channels), name="pixels")
    small = downsample(ops.multiply(pixels, 1.0 / 255.0), config.pixel_linear_side)
    reducer = keras.Model(pixels, small)
    train_small = np.asarray(reducer.predict(training_pixels(train, config, limit=len(train)), batch_size=64, verbose=0))
    valid_small = np.asarray(reducer.predict(training_pixels(valid, config, limit=len(valid)), batch_size=64, verbose=0))
    shape = train_small.shape[1:]
    scaler = StandardScaler().fit(train_small.reshape(len(train_small), -1))
    x_train = scaler.transform(train_small.reshape(len(train_small), -1))
    x_valid = scaler.transform(valid_small.reshape(len(valid_small), -1))
    y_train, y_valid = train["label_id"].to_numpy(), valid["label_id"].to_numpy()
    best, best_auroc = None, -1.0
    for strength in (0.001, 0.01, 0.1, 1.0):
        classifier = LogisticRegression(C=strength, max_iter=2000).fit(x_train, y_train)
        auroc = roc_auc_score(y_valid, classifier.decision_function(x_valid)) if len(np.unique(y_valid)) == 2 else 0.0
        if auroc > best_auroc:
            best, best_auroc = classifier, auroc
    weights = best.coef_[0] / scaler.scale_  # standardization folded into the kernel
    bias = float(best.intercept_[0] - np.sum(best.coef_[0] * scaler.mean_ / scaler.scale_))

    flat = keras.layers.Flatten(name="flatten")(small)
    image_logit = keras.layers.Dense(1, name="image_logit", dtype="float32")(flat)
    score = keras.layers.Activation("sigmoid", name=SCORE, dtype="float32")(image_logit)
    # Each location's share of the logit, scaled as if the whole image looked like it.
    contribution = ops.multiply(small, weights.reshape(shape).astype(np.float32))
    if shape[-1] > 1:  # summed over channels by a fixed 1x1 convolution (int8 XNNPACK has no SUM)
        contribution = ops.conv(contribution, np.ones((1, 1, shape[-1], 1), np.float32))
    local = keras.layers.Rescaling(float(np.prod(shape[:2])), offset=bias, name="location_logits")(contribution)
    anomaly_map = keras.layers.Activation("sigmoid", name=ANOMALY_MAP, dtype="float32")(on_map_grid(local, config))
    network = keras.Model(pixels, {SCORE: score, ANOMALY_MAP: anomaly_map}, name="vision_qc_pixel_linear")
    network.get_layer("image_logit").set_weights([weights.astype(np.float32)[:, None], np.asarray([bias], np.float32)])
    platt_scale(network, valid, config)
    return network


def build_cnn(config: VisionQCConfig) -> Any:
    """A small CNN from scratch: pixels (0..255) -> [-1, 1] -> blocks of (3x3 conv, batch norm, ReLU, then
    the same at stride 2) -> a 1x1 convolution scoring every location (the anomaly map) -> the image
    logit from the map's worst and mean location (the mean alone equals global pooling then a dense
    layer). Every op is one int8 XNNPACK runs; batch norm folds into the convolutions on conversion."""
    import keras

    keras.utils.set_random_seed(config.seed)
    spec = config.cnn
    pixels = keras.Input((config.image_size, config.image_size, config.channels), name="pixels")
    hidden = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(pixels)
    hidden = downsample(hidden, spec.input_side)
    for index, filters in enumerate(spec.filters):
        for step, strides in (("conv", 1), ("down", 2)):
            hidden = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"block{index}_{step}")(hidden)
            hidden = keras.layers.BatchNormalization(name=f"block{index}_{step}_bn")(hidden)
            hidden = keras.layers.ReLU(name=f"block{index}_{step}_relu")(hidden)
    hidden = keras.layers.Dropout(spec.dropout_rate, name="dropout")(hidden)
    logits = keras.layers.Conv2D(1, 1, name="location_logits", dtype="float32")(hidden)
    anomaly_map = keras.layers.Activation("sigmoid", name=ANOMALY_MAP, dtype="float32")(on_map_grid(logits, config))
    worst = keras.layers.GlobalMaxPooling2D(name="worst_location")(logits)
    overall = keras.layers.GlobalAveragePooling2D(name="mean_location")(logits)
    pooled = keras.layers.Concatenate(name="pooled")([worst, overall])
    image_logit = keras.layers.Dense(1, name="image_logit", dtype="float32")(pooled)
    score = keras.layers.Activation("sigmoid", name=SCORE, dtype="float32")(image_logit)
    return keras.Model(pixels, {SCORE: score, ANOMALY_MAP: anomaly_map}, name="vision_qc_cnn")


def cnn_compile_options(training: Any) -> dict[str, Any]:
    """Image labels only: the CNN's map is learned through the image score (no mask loss)."""
    import keras

    return {
        "optimizer": keras.optimizers.Adam(learning_rate=training.learning_rate),
        "loss": {SCORE: keras.losses.BinaryCrossentropy()},
        "metrics": {SCORE: [keras.metrics.AUC(name="auc")]},
    }


def fit_cnn(splits: Any, trainer: Any, config: VisionQCConfig) -> Any:
    """Train the CNN through the core's loop (``trainer.fit``) on the app's augmented datasets (synthetic
    defects, flips, photometric), image labels only; then Platt-scale it on validation."""
    from solutions_core.solution import KerasFit

    datasets = Datasets(config)

    def data(training: bool, batch: int) -> Any:
        frame = splits.train if training else splits.valid
        return datasets(frame, training, batch).map(lambda image, targets: (image, {SCORE: targets[SCORE]}))

    import keras

    # One output: Keras names its metrics without the output's prefix (val_auc, not val_defect_score_auc).
    monitor = trainer.training.early_stopping_monitor.replace(f"{SCORE}_", "")
    training = trainer.training.model_copy(
        update={"early_stopping_monitor": monitor, **({"epochs": config.cnn.epochs} if config.cnn.epochs else {})}
    )
    built: dict[str, Any] = {}

    def build() -> Any:
        # Trained on its score alone (Keras wants a target per output it compiles); the served network
        # is the same layers with the map beside it.
        built["network"] = build_cnn(config)
        return keras.Model(built["network"].input, {SCORE: built["network"].get_layer(SCORE).output}, name="vision_qc_cnn_score")

    try:
        trainer.fit(KerasFit("cnn", build=build, compile=cnn_compile_options, data=data, training=training))
    finally:
        datasets.clear()
    network = built["network"]
    platt_scale(network, splits.valid, config)
    return network
