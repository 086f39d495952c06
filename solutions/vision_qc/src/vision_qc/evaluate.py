"""Quality-control metrics, the simple baselines trained in the same run, and the report plots.

Conventions shared by everything here:

* labels: 1 = defect, 0 = good;
* scores: a higher score means "more likely defective"; ``choose_threshold`` calibrates the cut
  (``score >= threshold`` is a defect) that the served model then applies itself;
* decisions: what a model decided per image, judged as given (never re-derived from scores): booleans
  or 0/1 (1 = defect), or the served labels ``b"defect"`` / ``b"good"`` (bytes or str);
* images: numpy arrays ``[N, S, S, C]`` (``C`` = 3, sometimes 1), uint8 or floats in 0..255;
* anomaly maps: coarse ``[N, h, w]`` float arrays (e.g. 7x7 or 14x14) that say *where* the part looks wrong;
* masks: per image ``None`` (no annotation) or a 2-D float/bool array of any resolution (1 = defect pixel).

Everything is plain numpy / scipy / scikit-learn / matplotlib (no TensorFlow), so the metrics and the
baselines can be trusted independently of the model they judge, and run anywhere.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "as_decisions",
    "choose_threshold",
    "served_threshold",
    "image_metrics",
    "pixel_auroc",
    "resize_maps",
    "PatchGaussianBaseline",
    "HistogramLogisticBaseline",
    "PixelLogisticBaseline",
    "plot_overlays",
    "plot_roc",
    "plot_confusion",
]


# ---- input checks ----------------------------------------------------------------------------------------


def _as_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """1-D int array of 0/1; anything else (strings, 2, NaN) is a caller bug worth a clear message."""
    array = np.asarray(labels)
    if array.ndim == 2 and 1 in array.shape:  # a column or row vector
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of 0 (good) / 1 (defect), got shape {np.shape(labels)}."
        )
    if array.size and array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric 0 (good) / 1 (defect), got dtype {array.dtype}.")
    if array.size and not np.isin(array, (0, 1)).all():
        found = sorted({str(v) for v in np.unique(array[~np.isin(array, (0, 1))])})[:5]
        raise ValueError(f"{name} must contain only 0 (good) and 1 (defect); also found {', '.join(found)}.")
    return array.astype(np.int64)


def _as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        if array.ndim == 2 and 1 in array.shape:
            array = array.reshape(-1)
        else:
            raise ValueError(f"{name} must be a 1-D array with one score per image, got shape {array.shape}.")
    if np.isnan(array).any():
        count = int(np.isnan(array).sum())
        raise ValueError(f"{name} contain {count} NaN value(s); a model output is broken.")
    return array


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as aligned, non-empty, NaN-free 1-D arrays."""
    labels, scores = _as_labels(labels), _as_scores(scores)
    if len(labels) != len(scores):
        raise ValueError(
            f"Got {len(labels)} labels but {len(scores)} scores; they must describe the same images."
        )
    if not len(labels):
        raise ValueError("No images: labels and scores are empty.")
    return labels, scores


DECISION_LABELS = ("good", "defect")  # what the served model's ``decision`` output says, 0 and 1


def as_decisions(decisions: Any, count: int | None = None, name: str = "decisions") -> np.ndarray:
    """Decisions as a 1-D bool array (True = defect): from booleans, 0/1, or the served labels
    ``b"defect"`` / ``b"good"`` (bytes or str). ``count``, when given, is the number of images."""
    array = np.asarray(decisions)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array with one decision per image, got shape {np.shape(decisions)}.")
    if array.size and array.dtype.kind in "OSU":
        text = np.asarray([value.decode() if isinstance(value, (bytes, bytearray)) else str(value) for value in array.tolist()])
        unknown = sorted(set(text.tolist()) - set(DECISION_LABELS))[:5]
        if unknown:
            raise ValueError(f"{name} must be {DECISION_LABELS[1]!r} or {DECISION_LABELS[0]!r}; also found {', '.join(unknown)}.")
        array = text == DECISION_LABELS[1]
    elif array.size:
        if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be booleans, 0/1 or the labels 'defect'/'good', got {array.dtype} values.")
    if count is not None and len(array) != count:
        raise ValueError(f"Got {len(array)} {name} but {count} images; they must describe the same images.")
    return array.astype(bool)


def _prepare_images(images: Any, size: int) -> np.ndarray:
    """Checked images, area-resized to [N, size, size, C] float32 in 0..1 (uint8 or 0..255 floats in).

    Resizing happens before the float conversion of the full-size array, which keeps the baselines fast
    on large batches; non-finite pixels survive averaging, so they are still caught afterwards."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"Images must be an [N, S, S, C] array, got shape {array.shape}.")
    if not array.shape[0]:
        raise ValueError("No images: the image array is empty.")
    if array.shape[-1] not in (1, 3):
        raise ValueError(
            f"Images must have 1 or 3 channels (last axis), got {array.shape[-1]} (shape {array.shape})."
        )
    if min(array.shape[1:3]) < 8:
        raise ValueError(
            f"Images are too small ({array.shape[1]}x{array.shape[2]}); need at least 8x8 pixels."
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"Images must be numeric (uint8 or 0..255 floats), got dtype {array.dtype}.")
    resized = _area_resize(array, size) / np.float32(255.0)
    if not np.isfinite(resized).all():
        raise ValueError("Images contain NaN or infinite pixel values.")
    return resized


def _is_missing(mask: Any) -> bool:
    """None, or a NaN scalar as pandas stores a missing object cell."""
    if mask is None:
        return True
    return np.ndim(mask) == 0 and isinstance(mask, numbers.Real) and np.isnan(float(mask))


# ---- image-level metrics ---------------------------------------------------------------------------------


def choose_threshold(labels: Any, scores: Any, good_quantile: float = 0.99) -> float:
    """The decision threshold, calibrated on validation data (``score >= threshold`` means defect).

    With both classes present it maximizes balanced accuracy (Youden's J = recall + specificity - 1),
    because defects are rare and plain accuracy would happily pass every part. The cut is placed at the
    midpoint between the two neighbouring distinct scores rather than on a score, so tiny numeric
    differences between the validation run and serving (float32 vs float64, another runtime) do not flip
    decisions for parts that sit exactly on it. Among equally good cuts the lowest wins: in quality control
    a false alarm costs a second look, a miss ships a bad part.

    With good images only (a one-class line that has not seen a defect yet) there is nothing to balance,
    so the threshold is the ``good_quantile`` quantile of the good scores, i.e. a target false-alarm rate
    of ``1 - good_quantile``. With defects only there is no false-alarm rate to calibrate against, which
    is a data problem the caller must hear about (ValueError).
    """
    labels, scores = _check(labels, scores)
    if not 0.0 <= float(good_quantile) <= 1.0:
        raise ValueError(f"good_quantile must be in [0, 1], got {good_quantile}.")
    if not np.isfinite(scores).all():
        raise ValueError("Scores contain infinite values; a threshold between them would be meaningless.")
    if not labels.any():
        return float(np.quantile(scores, float(good_quantile)))
    if labels.all():
        raise ValueError(
            "Only defective images in the calibration data: "
            "a threshold needs good images to measure false alarms."
        )
    distinct = np.unique(scores)
    # Candidate cuts: the lowest score (everything is a defect) and every midpoint between neighbours.
    # For the midpoint after distinct[k], "score >= cut" is the same as "score > distinct[k]".
    cuts = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2])
    below = np.concatenate([[-np.inf], distinct[:-1]])  # predicted defect <=> score > below
    positives, negatives = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    recall = 1.0 - np.searchsorted(positives, below, side="right") / len(positives)
    specificity = np.searchsorted(negatives, below, side="right") / len(negatives)
    balanced = recall + specificity
    best = int(np.flatnonzero(balanced >= balanced.max() - 1e-12)[0])
    return float(cuts[best])


# One step of the int8 edge model's uint8 score: the quantization-aware network's int8 twin may score an
# image up to about this much lower, and must still decide as the SavedModel does.
SCORE_STEP = 1.0 / 256


def served_threshold(labels: Any, scores: Any, margin: float = SCORE_STEP) -> float:
    """``choose_threshold`` moved up to ``margin`` below the lowest validation score it marks defective
    (never below the cut itself), as the float32 the served module holds.

    Why: ``choose_threshold`` cuts midway between two neighbouring scores, and a quantized network gives
    only a few hundred distinct scores, so the served model's decisions changed at the next score it
    could give (0.1473) while the recorded threshold said 0.1452: two numbers for one rule. Moved up,
    the recorded number is where decisions change (to ``margin``, one int8 score step); the margin keeps a
    score that another runtime (float16, int8) computes up to a step lower from flipping. ``score >= threshold`` decides every
    validation image exactly as the cut did."""
    labels, scores = _check(labels, scores)
    cut = float(np.float32(choose_threshold(labels, scores)))
    served = np.asarray(scores, dtype=np.float32)
    above = served[served >= np.float32(cut)]
    if not len(above):
        return cut
    return float(np.float32(max(cut, float(above.min()) - margin)))


def image_metrics(labels: Any, scores: Any, decisions: Any) -> dict[str, float]:
    """Threshold-free ranking quality (AUROC, average precision) of ``scores`` and the quality of the
    ``decisions`` (see ``as_decisions``) as given: a served model's own, or a baseline's
    ``scores >= threshold``.

    All values are floats so the dict can be logged and compared as one homogeneous record. Metrics that
    are undefined on the given data are NaN rather than a misleading number: AUROC with a single class,
    average precision, recall and F1's recall with no defects, false-positive rate with no good parts.
    Precision with no rejected parts is 0 (scikit-learn's ``zero_division=0`` convention).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, scores = _check(labels, scores)
    predicted = as_decisions(decisions, len(labels))
    defect = labels == 1
    tp = float(np.sum(predicted & defect))
    fp = float(np.sum(predicted & ~defect))
    fn = float(np.sum(~predicted & defect))
    tn = float(np.sum(~predicted & ~defect))
    recall = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    if np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both_classes = bool(defect.any() and (~defect).any())
    finite_scores = np.nan_to_num(scores, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
    return {
        "accuracy": (tp + tn) / len(labels),
        "balanced_accuracy": float(np.nanmean([recall, specificity])),
        "image_auroc": float(roc_auc_score(labels, finite_scores)) if both_classes else float("nan"),
        "average_precision": (
            float(average_precision_score(labels, finite_scores)) if defect.any() else float("nan")
        ),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "false_positive_rate": 1.0 - specificity if not np.isnan(specificity) else float("nan"),
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "true_positives": tp,
    }


# ---- pixel-level metrics -----------------------------------------------------------------------------------


def resize_maps(maps: Any, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[N, h, w]`` anomaly maps to ``[N, size, size]`` (or ``[N, *size]``).

    Maps from different models have different grids (7x7, 14x14, ...); comparing them with masks, or
    drawing them over images, needs one common resolution. Pixel centres are aligned the way image
    libraries do it (``grid_mode``), so a coarse cell covers exactly its part of the image.
    """
    from scipy.ndimage import zoom

    array = np.asarray(maps, dtype=np.float32)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"Anomaly maps must be an [N, h, w] array, got shape {array.shape}.")
    if min(array.shape[1:]) < 1:
        raise ValueError(f"Anomaly maps must be at least 1x1, got shape {array.shape}.")
    height, width = (size, size) if np.ndim(size) == 0 else tuple(size)
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"size must be a positive integer (or a pair of them), got {size!r}.")
    height, width = int(height), int(width)
    if array.shape[1:] == (height, width) or not len(array):
        return array.copy() if len(array) else np.zeros((0, height, width), np.float32)
    factors = (1.0, height / array.shape[1], width / array.shape[2])
    resized = zoom(array, factors, order=1, mode="nearest", grid_mode=True, prefilter=False)
    return resized[:, :height, :width].astype(np.float32)


def _resize_mask(mask: Any, height: int, width: int | None = None) -> np.ndarray:
    """Mask to ``height x width`` booleans: area average (box filter), then > 0.5."""
    from PIL import Image

    width = height if width is None else width
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not array.size:
        raise ValueError(f"Each mask must be a 2-D array (or None), got shape {array.shape}.")
    array = array.astype(np.float32)
    if array.max(initial=0.0) > 1.0:  # 0..255 mask images
        array = array / 255.0
    if array.shape == (height, width):
        return array > 0.5
    plane = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    resized = plane.resize((width, height), Image.Resampling.BOX)
    return np.asarray(resized) > 0.5


def pixel_auroc(maps: Any, masks: Any, labels: Any, resolution: int = 64) -> float:
    """ROC AUC over pixels: does the anomaly map light up where the mask says the defect is?

    Maps (bilinear) and masks (area, then > 0.5) are brought to ``resolution x resolution`` so models with
    different map grids are judged on the same pixels. Good images without a mask count as all-good pixels
    (a good part has no defect anywhere, so any heat on it is a false alarm); defect images without a mask
    are left out, because we do not know where their defect is. NaN when there are no defect pixels (or
    nothing but defect pixels), since the AUC is then undefined.
    """
    from sklearn.metrics import roc_auc_score

    labels = _as_labels(labels)
    masks = list(masks) if masks is not None else []
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"Anomaly maps must be an [N, h, w] array, got shape {array.shape}.")
    if not (len(array) == len(masks) == len(labels)):
        raise ValueError(
            f"Got {len(array)} maps, {len(masks)} masks and {len(labels)} labels; "
            "they must describe the same images."
        )
    if not len(labels):
        raise ValueError("No images: maps, masks and labels are empty.")
    if not np.isfinite(array).all():
        raise ValueError("Anomaly maps contain NaN or infinite values.")
    if int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}.")
    resolution = int(resolution)
    keep = [i for i, (mask, label) in enumerate(zip(masks, labels)) if not (_is_missing(mask) and label == 1)]
    if not keep:
        return float("nan")
    upsampled = resize_maps(array[keep], resolution)
    truth = np.zeros((len(keep), resolution, resolution), dtype=bool)
    for row, index in enumerate(keep):
        if not _is_missing(masks[index]):
            truth[row] = _resize_mask(masks[index], resolution)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth.reshape(-1), upsampled.reshape(-1)))


# ---- baselines -------------------------------------------------------------------------------------------


def _area_resize(images: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, C] -> [N, size, size, C] float32: block means when the size divides evenly (exact, and
    summing strided views is several times faster than a reshape-mean), otherwise PIL's box filter (area)
    per channel, bilinear when enlarging images smaller than ``size``."""
    n, height, width, channels = images.shape
    if (height, width) == (size, size):
        return images.astype(np.float32)
    if height % size == 0 and width % size == 0:
        fy, fx = height // size, width // size
        blocks = images.reshape(n, size, fy, size, fx, channels)
        total = np.zeros((n, size, size, channels), dtype=np.float32)
        for i in range(fy):
            for j in range(fx):
                total += blocks[:, :, i, :, j, :]
        return total / np.float32(fy * fx)
    from PIL import Image

    method = Image.Resampling.BOX if min(height, width) >= size else Image.Resampling.BILINEAR
    out = np.empty((n, size, size, channels), dtype=np.float32)
    for i in range(n):
        for c in range(channels):
            plane = Image.fromarray(np.ascontiguousarray(images[i, :, :, c], dtype=np.float32))
            out[i, :, :, c] = np.asarray(plane.resize((size, size), method))
    return out


def _gray(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] 0..1 -> [N, H, W] luminance (ITU-R 601 for RGB, as the data generator uses)."""
    if images.shape[-1] == 3:
        return images @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return images[..., 0]


def _gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """Per-image gradient magnitude of [N, H, W] (central differences; images are never mixed)."""
    dy, dx = np.gradient(gray, axis=(1, 2))
    return np.hypot(dy, dx)


def _abs_laplacian(gray: np.ndarray) -> np.ndarray:
    """Per-image |4-neighbour Laplacian| of [N, H, W] (the kernel has no extent along the batch axis)."""
    from scipy.ndimage import convolve

    kernel = np.array([[[0, 1, 0], [1, -4, 1], [0, 1, 0]]], dtype=np.float32)
    return np.abs(convolve(gray, kernel, mode="reflect"))


def _check_channels(images: Any, fitted_channels: int) -> None:
    """A baseline scores images with the channel count it was fitted on."""
    channels = int(np.shape(images)[-1]) if np.ndim(images) == 4 else None
    if channels is not None and channels != fitted_channels:
        raise ValueError(f"The baseline was fitted on {fitted_channels}-channel images but got {channels} channels.")


class PatchGaussianBaseline:
    """One-class baseline: one Gaussian over handcrafted statistics of good-image patches.

    Why: it needs no defect examples (new lines rarely have them), trains in well under a second and
    produces an anomaly map, so it is the floor any learned model must clear on both image and pixel
    metrics. Images are area-downsampled to ``working_size``, cut into non-overlapping
    ``patch_size x patch_size`` patches and each patch is described by its per-channel mean and standard
    deviation, mean gradient magnitude and mean |Laplacian| (brightness, contrast, edge and fine-texture
    energy; the usual signatures of stains, scratches and dents). One Gaussian (Ledoit-Wolf shrunk
    covariance on standardized features) is fitted over all good patches, regardless of position, because
    inspected surfaces are textures: a patch is odd by what it looks like, not by where it is.

    The map is each patch's Mahalanobis distance, ``[N, working_size/patch_size, same]``. The image score
    is the map's maximum, because small defects occupy one or a few patches and an average dilutes them.
    On the square-defect test data (bright 8x8 squares on noise textures) max and the mean of the top-3
    patches both reach an image AUROC of 1.00; on harder variants tried while writing this (faint or tiny
    squares) neither won consistently (max by <= 0.01 on 2-3 px defects, top-3 by 0.02-0.03 on faint
    large ones), so the simpler, more interpretable max was kept.
    """

    def __init__(self, patch_size: int = 8, working_size: int = 64):
        for name, value in (("patch_size", patch_size), ("working_size", working_size)):
            if int(value) != value or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}.")
        if working_size % patch_size:
            raise ValueError(
                f"working_size ({working_size}) must be a multiple of patch_size ({patch_size})."
            )
        self.patch_size, self.working_size = int(patch_size), int(working_size)

    def _features(self, images: Any) -> np.ndarray:
        """[N, grid, grid, 2C + 2] patch descriptors."""
        pixels = _prepare_images(images, self.working_size)
        gray = _gray(pixels)
        n, p = len(pixels), self.patch_size
        grid = self.working_size // p

        def patches(values: np.ndarray) -> np.ndarray:  # [N, W, W, ...] -> [N, grid, grid, p*p, ...]
            shaped = values.reshape(n, grid, p, grid, p, *values.shape[3:])
            return np.moveaxis(shaped, 3, 2).reshape(n, grid, grid, p * p, *values.shape[3:])

        colour = patches(pixels)  # [N, grid, grid, p*p, C]
        return np.concatenate(
            [
                colour.mean(axis=3),
                colour.std(axis=3),
                patches(_gradient_magnitude(gray)).mean(axis=3)[..., None],
                patches(_abs_laplacian(gray)).mean(axis=3)[..., None],
            ],
            axis=-1,
        ).astype(np.float64)

    def fit(self, images: Any, labels: Any = None) -> PatchGaussianBaseline:
        """Fit on the good images (``labels == 0``; all images when ``labels`` is None)."""
        from sklearn.covariance import LedoitWolf

        features = self._features(images)
        if labels is not None:
            labels = _as_labels(labels)
            if len(labels) != len(features):
                raise ValueError(f"Got {len(features)} images but {len(labels)} labels.")
            features = features[labels == 0]
        if not len(features):
            raise ValueError("PatchGaussianBaseline needs at least one good image (label 0) to fit.")
        flat = features.reshape(-1, features.shape[-1])
        self.feature_mean_ = flat.mean(axis=0)
        self.feature_scale_ = np.where(flat.std(axis=0) > 1e-8, flat.std(axis=0), 1.0)
        self.channels_ = int(np.asarray(images).shape[-1])
        self.gaussian_ = LedoitWolf().fit((flat - self.feature_mean_) / self.feature_scale_)
        return self

    def score(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """(scores [N], maps [N, grid, grid]): the max patch distance, and every patch's distance."""
        if not hasattr(self, "gaussian_"):
            raise ValueError("PatchGaussianBaseline is not fitted yet; call fit(images, labels) first.")
        _check_channels(images, self.channels_)
        features = self._features(images)
        n, grid = features.shape[0], features.shape[1]
        flat = (features.reshape(-1, features.shape[-1]) - self.feature_mean_) / self.feature_scale_
        maps = np.sqrt(np.maximum(self.gaussian_.mahalanobis(flat), 0.0)).reshape(n, grid, grid)
        return maps.reshape(n, -1).max(axis=1), maps.astype(np.float32)


class HistogramLogisticBaseline:
    """Supervised baseline: global intensity/edge histograms and a class-balanced logistic regression.

    Why: it shows how much of the task is solvable from global image statistics alone (a brighter,
    darker or noisier part), with no notion of where the defect is; a learned model that cannot beat it
    is not using spatial information. Features per image, after area-downsampling to 64x64: a normalized
    intensity histogram per channel (``bins`` bins over 0..1), a normalized gradient-magnitude histogram,
    and the mean, standard deviation and 1st/99th percentiles of the luminance (the 99th percentile catches
    small bright defects a histogram averages away). The model is
    ``StandardScaler -> LogisticRegression(C=1, class_weight="balanced")`` so rare defects still count.
    Scores are defect probabilities; there is no anomaly map.
    """

    working_size = 64
    gradient_range = (0.0, 0.5)  # central differences of a 0..1 image rarely exceed 0.5; more is clipped

    def __init__(self, bins: int = 16):
        if int(bins) != bins or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}.")
        self.bins = int(bins)

    def _features(self, images: Any) -> np.ndarray:
        pixels = _prepare_images(images, self.working_size)
        n = len(pixels)
        gray = _gray(pixels).reshape(n, -1)
        low, high = self.gradient_range
        gradient = _gradient_magnitude(gray.reshape(pixels.shape[:3]))
        gradient = (np.clip(gradient, low, high) - low) / (high - low)
        channels = np.moveaxis(pixels, -1, 1).reshape(n, pixels.shape[-1], -1)  # [N, C, pixels]
        histograms = [self._histogram(channels[:, c]) for c in range(channels.shape[1])]
        histograms.append(self._histogram(gradient.reshape(n, -1)))
        summary = [
            gray.mean(axis=1, keepdims=True),
            gray.std(axis=1, keepdims=True),
            *np.percentile(gray, [1, 99], axis=1)[..., None],
        ]
        return np.concatenate(histograms + summary, axis=1).astype(np.float64)

    def _histogram(self, values: np.ndarray) -> np.ndarray:
        """Row-wise normalized histograms of [N, pixels] values in 0..1 (same bins as np.histogram)."""
        n, count = values.shape
        bins = np.clip((values * self.bins).astype(np.int64), 0, self.bins - 1)
        counts = np.bincount((bins + self.bins * np.arange(n)[:, None]).reshape(-1), minlength=n * self.bins)
        return counts.reshape(n, self.bins) / count

    def fit(self, images: Any, labels: Any) -> HistogramLogisticBaseline:
        """Fit on good and defective images; both classes are required (it is a classifier)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        if labels is None:
            raise ValueError("HistogramLogisticBaseline is supervised: fit needs labels (0 good, 1 defect).")
        labels = _as_labels(labels)
        features = self._features(images)
        if len(labels) != len(features):
            raise ValueError(f"Got {len(features)} images but {len(labels)} labels.")
        if labels.min() == labels.max():
            raise ValueError(
                "HistogramLogisticBaseline needs both good (0) and defective (1) images; "
                f"got only label {int(labels[0])}. Use PatchGaussianBaseline for one-class data."
            )
        self.channels_ = int(np.asarray(images).shape[-1])
        self.model_ = Pipeline(
            [
                ("scale", StandardScaler()),
                ("classify", LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")),
            ]
        )
        self.model_.fit(features, labels)
        return self

    def score(self, images: Any) -> tuple[np.ndarray, None]:
        """(defect probabilities [N], None): this baseline has no anomaly map."""
        if not hasattr(self, "model_"):
            raise ValueError("HistogramLogisticBaseline is not fitted yet; call fit(images, labels) first.")
        _check_channels(images, self.channels_)
        return self.model_.predict_proba(self._features(images))[:, 1], None


class PixelLogisticBaseline:
    """Supervised baseline: logistic regression on the downsampled pixels themselves, the first model a
    client tries. Images are area-downsampled to ``size`` x ``size`` (32, or the image's side when
    smaller), every pixel is standardized on the training images, and ``C`` (the inverse L2 strength)
    is chosen among ``c_grid`` by validation AUROC when validation images are given (a fair, strong
    version of the baseline), else 1. Scores are defect probabilities; there is no anomaly map."""

    def __init__(self, size: int = 32, c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)):
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}.")
        self.size, self.c_grid = int(size), tuple(float(c) for c in c_grid)

    def _features(self, images: Any) -> np.ndarray:
        array = np.asarray(images)
        side = min(self.size, *array.shape[1:3]) if array.ndim == 4 else self.size
        return _prepare_images(array, side).reshape(len(array), -1).astype(np.float64)

    def fit(self, images: Any, labels: Any, valid_images: Any = None, valid_labels: Any = None) -> PixelLogisticBaseline:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        labels = _as_labels(labels)
        features = self._features(images)
        if len(labels) != len(features):
            raise ValueError(f"Got {len(features)} images but {len(labels)} labels.")
        if labels.min() == labels.max():
            raise ValueError("PixelLogisticBaseline needs both good (0) and defective (1) images.")
        self.channels_ = int(np.asarray(images).shape[-1])

        def model(c: float) -> Any:
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, labels)

        choices = [1.0]
        if valid_images is not None and len(np.unique(_as_labels(valid_labels))) == 2:
            valid_features, valid_labels = self._features(valid_images), _as_labels(valid_labels)
            aurocs = {c: roc_auc_score(valid_labels, model(c).predict_proba(valid_features)[:, 1]) for c in self.c_grid}
            choices = [max(aurocs, key=aurocs.get)]
        self.c_ = choices[0]
        self.model_ = model(self.c_)
        return self

    def score(self, images: Any) -> tuple[np.ndarray, None]:
        if not hasattr(self, "model_"):
            raise ValueError("PixelLogisticBaseline is not fitted yet; call fit(images, labels) first.")
        _check_channels(images, self.channels_)
        return self.model_.predict_proba(self._features(images))[:, 1], None


# ---- plots ------------------------------------------------------------------------------------------------
# matplotlib.figure.Figure needs no pyplot and no global backend, so plotting is safe in servers and
# threads and leaves no figures open; the figure is garbage once saved.


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _save(figure: Any, path: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    figure.clear()
    return path


def plot_roc(labels: Any, scores_by_model: dict[str, Any], path: Any) -> Path:
    """ROC curves of several models on the same images, AUROC in the legend: the threshold-free
    comparison of the model against its baselines."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = _as_labels(labels)
    if not len(labels):
        raise ValueError("No images: labels are empty.")
    if not scores_by_model:
        raise ValueError("scores_by_model is empty; pass at least one {name: scores}.")
    checked = {name: _check(labels, scores)[1] for name, scores in scores_by_model.items()}
    both_classes = bool(labels.any() and not labels.all())
    figure = _figure(5, 5)
    axis = figure.subplots()
    if both_classes:
        for name, scores in checked.items():
            finite = np.nan_to_num(scores, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
            fpr, tpr, _ = roc_curve(labels, finite)
            axis.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(labels, finite):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    title = "Vision QC: ROC" if both_classes else "Vision QC: ROC undefined (only one class present)"
    axis.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-alarm rate (good parts rejected)",
             ylabel="recall (defects caught)", title=title)
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def plot_confusion(labels: Any, decisions: Any, path: Any) -> Path:
    """2x2 confusion matrix of the decisions (the served model's, at its calibrated threshold): what the
    line will actually do with parts."""
    labels = _as_labels(labels)
    if not len(labels):
        raise ValueError("No images: labels are empty.")
    predicted = as_decisions(decisions, len(labels)).astype(int)
    matrix = np.array([[int(np.sum((labels == t) & (predicted == p))) for p in (0, 1)] for t in (0, 1)])
    figure = _figure(4, 4)
    axis = figure.subplots()
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    for t in (0, 1):
        for p in (0, 1):
            dark = matrix[t, p] > matrix.max() / 2
            axis.text(
                p, t, str(matrix[t, p]), ha="center", va="center", fontsize=14,
                color="white" if dark else "black",
            )
    axis.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["good", "defect"], yticklabels=["good", "defect"],
             xlabel="decision", ylabel="truth", title="Confusion of the decisions")
    return _save(figure, path)


def _pick_examples(labels: np.ndarray, scores: np.ndarray, max_images: int) -> list[int]:
    """The surest defects, the worst false alarms (highest-scoring goods) and the misses (lowest-scoring
    defects), then the rest by score: people should see both what works and what does not."""
    order = np.argsort(-scores, kind="stable")
    defects = [int(i) for i in order if labels[i] == 1]
    goods = [int(i) for i in order if labels[i] == 0]
    quota_false_alarms = max_images // 4 if defects else max_images
    quota_misses = max_images // 4 if goods else max_images
    quota_top = max_images - min(quota_false_alarms, len(goods)) - min(quota_misses, len(defects) // 2)
    chosen = defects[: max(quota_top, 0)] + goods[:quota_false_alarms] + defects[::-1][:quota_misses]
    chosen = list(dict.fromkeys(chosen)) + [int(i) for i in order]  # fill up by score when short
    return list(dict.fromkeys(chosen))[:max_images]


def plot_overlays(images: Any, maps: Any, scores: Any, labels: Any, decisions: Any, path: Any,
                  masks: Any = None, max_images: int = 12) -> Path:
    """A grid of images with their anomaly map as a semi-transparent heat overlay and the annotated
    defect outlined (cyan), titled ``score 0.93 · defect ✓`` (the image's decision; ✓ when it
    matches the truth, ✗ when it does not). It shows the highest-scoring defects, the highest-scoring good
    parts (false alarms) and the lowest-scoring defects (misses), so a reviewer sees whether the map points
    at the defect and what the model gets wrong. ``maps`` may be None (a model without maps)."""
    labels, scores = _check(labels, scores)
    decided = as_decisions(decisions, len(labels))
    pixels = np.asarray(images)
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3) or len(pixels) != len(labels):
        raise ValueError(
            f"Images must be [N, S, S, C] with C in (1, 3) and N = {len(labels)}, got shape {pixels.shape}."
        )
    if maps is not None:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 4 and maps.shape[-1] == 1:
            maps = maps[..., 0]
        if maps.ndim != 3 or len(maps) != len(labels):
            raise ValueError(
                f"Anomaly maps must be [N, h, w] with N = {len(labels)}, got shape {maps.shape}."
            )
    if masks is not None:
        masks = list(masks)
        if len(masks) != len(labels):
            raise ValueError(f"Got {len(masks)} masks but {len(labels)} images.")
    if int(max_images) != max_images or max_images < 1:
        raise ValueError(f"max_images must be a positive integer, got {max_images!r}.")
    chosen = _pick_examples(labels, scores, int(max_images))
    height, width = pixels.shape[1:3]
    heat = resize_maps(maps[chosen], (height, width)) if maps is not None else None
    if heat is not None:
        finite = heat[np.isfinite(heat)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        high = high if high > low else low + 1e-6
    columns = min(4, len(chosen))
    rows = int(np.ceil(len(chosen) / columns))
    figure = _figure(3 * columns, 3.2 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns)).reshape(-1)
    for cell, index in enumerate(chosen):
        axis = axes[cell]
        image = np.clip(pixels[index].astype(np.float32), 0, 255).astype(np.uint8)  # 0..255 by convention
        if image.shape[-1] == 1:
            axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            axis.imshow(image)
        if heat is not None:
            axis.imshow(heat[cell], cmap="inferno", alpha=0.45, vmin=low, vmax=high)
        if masks is not None and not _is_missing(masks[index]):
            outline = _resize_mask(masks[index], height, width)
            if outline.any() and not outline.all():
                axis.contour(outline.astype(np.float32), levels=[0.5], colors="cyan", linewidths=1)
        decided_defect = bool(decided[index])
        mark = "✓" if decided_defect == bool(labels[index]) else "✗"
        decision = "defect" if decided_defect else "good"
        axis.set_title(f"score {scores[index]:.2f} · {decision} {mark}", fontsize=9)
    for axis in axes:
        axis.axis("off")
    return _save(figure, path)
