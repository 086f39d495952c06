"""Metrics, baselines and plots of vision_qc.evaluate on tiny synthetic data built here (no TensorFlow).

The data: smoothed random-noise textures (a stand-in for machined or woven surfaces); a third of the
images carry a bright 8x8 square at a random place, with a mask that marks it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from vision_qc.evaluate import (
    HistogramLogisticBaseline,
    as_decisions,
    PatchGaussianBaseline,
    choose_threshold,
    image_metrics,
    pixel_auroc,
    plot_confusion,
    plot_overlays,
    plot_roc,
    resize_maps,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE, SQUARE = 64, 8


def make_textures(n: int, seed: int, defect_fraction: float = 1 / 3, channels: int = 3):
    """(images [n, 64, 64, C] float32 0..255, labels [n], masks: 64x64 float for defects, None for goods)."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(128.0, 25.0, (n, SIZE, SIZE, channels)), sigma=(0, 1, 1, 0))
    images = np.clip(noise, 0, 255).astype(np.float32)
    labels = np.zeros(n, dtype=int)
    labels[: int(round(n * defect_fraction))] = 1
    rng.shuffle(labels)
    masks: list[np.ndarray | None] = []
    for i in range(n):
        if labels[i]:
            y, x = rng.integers(0, SIZE - SQUARE, size=2)
            images[i, y : y + SQUARE, x : x + SQUARE] = 250.0
            mask = np.zeros((SIZE, SIZE), dtype=np.float32)
            mask[y : y + SQUARE, x : x + SQUARE] = 1.0
            masks.append(mask)
        else:
            masks.append(None)
    return images, labels, masks


@pytest.fixture(scope="module")
def train_goods():
    return make_textures(40, seed=1, defect_fraction=0.0)[0]


@pytest.fixture(scope="module")
def test_set():
    return make_textures(60, seed=2)


@pytest.fixture(scope="module")
def fitted_patch_gaussian(train_goods):
    return PatchGaussianBaseline().fit(train_goods, np.zeros(len(train_goods)))


def assert_png(path) -> None:
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


# ---- choose_threshold -----------------------------------------------------------------------------------


def test_threshold_separates_perfectly_separable_scores():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    scores = np.r_[rng.uniform(0.0, 0.4, 30), rng.uniform(0.6, 1.0, 10)]
    threshold = choose_threshold(labels, scores)
    assert scores[labels == 0].max() < threshold <= scores[labels == 1].min()
    assert image_metrics(labels, scores, scores >= threshold)["accuracy"] == 1.0


def test_threshold_is_the_midpoint_between_neighbouring_scores():
    assert choose_threshold([0, 0, 1, 1], [0.1, 0.3, 0.5, 0.9]) == pytest.approx(0.4)
    # Unsorted input and ties do not matter.
    assert choose_threshold([1, 0, 1, 0, 0], [0.9, 0.3, 0.5, 0.1, 0.3]) == pytest.approx(0.4)


def test_threshold_maximizes_balanced_accuracy_on_overlapping_scores():
    rng = np.random.default_rng(3)
    labels = (rng.random(200) < 0.2).astype(int)
    scores = rng.normal(labels * 1.0, 1.0)
    threshold = choose_threshold(labels, scores)

    def balanced_accuracy(cut: float) -> float:
        decided = scores >= cut
        return (decided[labels == 1].mean() + (~decided[labels == 0]).mean()) / 2

    best = max(balanced_accuracy(cut) for cut in np.r_[scores, scores.max() + 1])
    assert balanced_accuracy(threshold) == pytest.approx(best)
    assert image_metrics(labels, scores, scores >= threshold)["balanced_accuracy"] == pytest.approx(best)
    assert not np.isin(threshold, scores)  # a midpoint, not a score


def test_one_class_threshold_is_the_good_quantile():
    scores = np.arange(101, dtype=float)
    labels = np.zeros(101, int)
    assert choose_threshold(labels, scores) == pytest.approx(99.0)
    assert choose_threshold(labels, scores, good_quantile=0.5) == pytest.approx(50.0)
    assert choose_threshold(labels, scores, good_quantile=0.9) == pytest.approx(np.quantile(scores, 0.9))


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([], [], "empty"),
        ([0, 1, 0], [0.1, 0.2], "3 labels but 2 scores"),
        ([0, 1, 0], [0.1, np.nan, 0.3], "NaN"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "only 0"),
        ([1, 1], [0.1, 0.2], "Only defective"),
    ],
)
def test_threshold_rejects_bad_input(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold(labels, scores)


def test_threshold_rejects_bad_quantile():
    with pytest.raises(ValueError, match="good_quantile"):
        choose_threshold([0, 0], [0.1, 0.2], good_quantile=1.5)


# ---- image_metrics --------------------------------------------------------------------------------------


def test_image_metrics_match_a_hand_computation():
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.35, 0.8, 0.9]
    served = [b"good", b"good", b"defect", b"good", b"defect", b"defect"]  # as a threshold of 0.5 decides
    metrics = image_metrics(labels, scores, served)
    # Rejected: 0.6 (good, false alarm), 0.8 and 0.9 (defects); 0.35 is a missed defect.
    assert (metrics["true_positives"], metrics["false_positives"]) == (2.0, 1.0)
    assert (metrics["false_negatives"], metrics["true_negatives"]) == (1.0, 2.0)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["false_positive_rate"] == pytest.approx(1 / 3)
    assert metrics["balanced_accuracy"] == pytest.approx(2 / 3)
    assert metrics["image_auroc"] == pytest.approx(7 / 9)  # 7 of 9 (defect, good) pairs ranked right
    assert metrics["average_precision"] == pytest.approx((1 + 1 + 3 / 5) / 3)
    # The same decisions as booleans, 0/1 or str labels are the same metrics.
    decided = np.asarray(scores) >= 0.5
    for same in (decided, decided.astype(int), [d.decode() for d in served]):
        assert image_metrics(labels, scores, same) == metrics
    assert all(isinstance(value, float) for value in metrics.values())


def test_image_metrics_judge_the_decisions_as_given_not_the_scores():
    """A served model decides with its own threshold: the metrics count its decisions, even ones no
    threshold on these scores could produce (here the top-scoring good part passes, a low defect is caught)."""
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.9, 0.2, 0.8]
    metrics = image_metrics(labels, scores, [b"good", b"good", b"defect", b"defect"])
    assert metrics["accuracy"] == 1.0 and metrics["false_positives"] == 0.0
    assert metrics["image_auroc"] == pytest.approx(0.5)  # the ranking is still the scores'
    flipped = image_metrics(labels, scores, [b"defect", b"defect", b"good", b"good"])
    assert flipped["accuracy"] == 0.0 and flipped["image_auroc"] == pytest.approx(0.5)


def test_decisions_accept_served_labels_and_reject_anything_else():
    np.testing.assert_array_equal(as_decisions(np.asarray([b"defect", b"good"], dtype=object)), [True, False])
    np.testing.assert_array_equal(as_decisions(["good", "defect"]), [False, True])
    np.testing.assert_array_equal(as_decisions([[1], [0]]), [True, False])
    with pytest.raises(ValueError, match="maybe"):
        as_decisions([b"defect", b"maybe"])
    with pytest.raises(ValueError, match="0/1"):
        as_decisions([0, 2])
    with pytest.raises(ValueError, match="2 decisions but 3 images"):
        as_decisions([0, 1], count=3)


def test_image_metrics_counts_add_up(test_set):
    _, labels, _ = test_set
    scores = np.random.default_rng(4).random(len(labels))
    metrics = image_metrics(labels, scores, scores >= 0.5)
    counts = ("true_negatives", "false_positives", "false_negatives", "true_positives")
    assert sum(metrics[name] for name in counts) == len(labels)
    assert metrics["true_positives"] + metrics["false_negatives"] == labels.sum()
    assert metrics["true_negatives"] + metrics["false_positives"] == (labels == 0).sum()


def test_image_metrics_are_nan_where_undefined():
    only_good = image_metrics([0, 0, 0], [0.1, 0.5, 0.9], [False, True, True])
    assert np.isnan(only_good["image_auroc"]) and np.isnan(only_good["average_precision"])
    assert only_good["false_positive_rate"] == pytest.approx(2 / 3)
    only_defects = image_metrics([1, 1], [0.1, 0.9], [False, True])
    assert np.isnan(only_defects["image_auroc"]) and np.isnan(only_defects["false_positive_rate"])
    assert only_defects["recall"] == 0.5


@pytest.mark.parametrize(
    ("labels", "scores", "decisions"),
    [
        ([], [], []),
        ([0, 1], [0.1], [0, 1]),
        ([0, 1], [0.1, np.nan], [0, 1]),
        ([0, 1], [0.1, 0.2], [0]),  # a decision missing
        ([0, 1], [0.1, 0.2], [0.5, np.nan]),  # not decisions at all
        ([0, 1], [0.1, 0.2], [b"good", b"unsure"]),
    ],
)
def test_image_metrics_reject_bad_input(labels, scores, decisions):
    with pytest.raises(ValueError):
        image_metrics(labels, scores, decisions)


# ---- resize_maps / pixel_auroc --------------------------------------------------------------------------


def test_resize_maps_is_bilinear_and_keeps_constants():
    maps = np.stack([np.full((7, 7), 3.0), np.arange(49, dtype=float).reshape(7, 7)])
    resized = resize_maps(maps, 64)
    assert resized.shape == (2, 64, 64) and resized.dtype == np.float32
    np.testing.assert_allclose(resized[0], 3.0)
    assert resized[1].min() >= 0 and resized[1].max() <= 48
    assert np.all(np.diff(resized[1], axis=1) >= -1e-5)  # monotone rows stay monotone (no overshoot)
    with pytest.raises(ValueError, match="N, h, w"):
        resize_maps(np.zeros((7, 7)), 64)


def downsampled_masks(masks, labels, grid: int) -> np.ndarray:
    """Area-averaged masks at grid x grid: a 'perfect' coarse anomaly map."""
    out = np.zeros((len(masks), grid, grid), dtype=np.float32)
    for i, mask in enumerate(masks):
        if mask is not None:
            factor = SIZE // grid
            out[i] = mask.reshape(grid, factor, grid, factor).mean(axis=(1, 3))
    return out


def test_pixel_auroc_is_near_one_for_the_mask_itself(test_set):
    _, labels, masks = test_set
    for grid in (8, 16):
        assert pixel_auroc(downsampled_masks(masks, labels, grid), masks, labels) > 0.95


def test_pixel_auroc_is_about_half_for_random_maps():
    rng = np.random.default_rng(5)
    n, labels = 200, np.ones(200, int)
    masks = []
    for _ in range(n):
        mask = np.zeros((64, 64), bool)
        y, x = rng.integers(0, 48, size=2)
        mask[y : y + 16, x : x + 16] = True
        masks.append(mask)
    maps = rng.random((n, 64, 64))
    assert pixel_auroc(maps, masks, labels, resolution=64) == pytest.approx(0.5, abs=0.02)


def test_pixel_auroc_skips_defects_without_masks_and_resizes_masks(test_set):
    _, labels, masks = test_set
    maps = downsampled_masks(masks, labels, 8)
    reference = pixel_auroc(maps, masks, labels)
    # A defect image without a mask and a wildly hot map must not change the result.
    extra_map = np.full((1, 8, 8), 1e3, dtype=np.float32)
    with_unknown = pixel_auroc(np.concatenate([maps, extra_map]), [*masks, None], np.r_[labels, 1])
    assert with_unknown == pytest.approx(reference)
    # Masks at another resolution (here 128x128 booleans) are resized.
    big_masks = [None if m is None else np.kron(m, np.ones((2, 2))).astype(bool) for m in masks]
    assert pixel_auroc(maps, big_masks, labels) == pytest.approx(reference, abs=1e-6)


def test_pixel_auroc_is_nan_without_defect_pixels():
    maps = np.random.default_rng(6).random((4, 7, 7))
    assert np.isnan(pixel_auroc(maps, [None, None, np.zeros((32, 32)), None], [0, 0, 0, 1]))


def test_pixel_auroc_rejects_bad_input(test_set):
    _, labels, masks = test_set
    maps = downsampled_masks(masks, labels, 8)
    with pytest.raises(ValueError, match="masks"):
        pixel_auroc(maps, masks[:-1], labels)
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc(np.full_like(maps, np.nan), masks, labels)
    with pytest.raises(ValueError, match="empty"):
        pixel_auroc(np.zeros((0, 7, 7)), [], [])


# ---- baselines ------------------------------------------------------------------------------------------


def test_patch_gaussian_detects_and_localizes_squares(fitted_patch_gaussian, test_set):
    images, labels, masks = test_set
    scores, maps = fitted_patch_gaussian.score(images)
    assert scores.shape == (60,) and maps.shape == (60, 8, 8)
    assert roc_auc_score(labels, scores) > 0.9
    patch = SIZE // maps.shape[1]
    hits = []
    for i in np.flatnonzero(labels):
        row, column = np.unravel_index(np.argmax(maps[i]), maps[i].shape)
        hits.append(masks[i][row * patch : (row + 1) * patch, column * patch : (column + 1) * patch].any())
    assert np.mean(hits) >= 0.8
    assert pixel_auroc(maps, masks, labels) > 0.9


def test_patch_gaussian_fits_on_good_images_only(train_goods, test_set):
    images, labels, _ = test_set
    mixed = np.concatenate([train_goods, images])
    mixed_labels = np.r_[np.zeros(len(train_goods), int), labels]
    scores, _ = PatchGaussianBaseline().fit(mixed, mixed_labels).score(images)
    assert roc_auc_score(labels, scores) > 0.9
    with pytest.raises(ValueError, match="good image"):
        PatchGaussianBaseline().fit(images[labels == 1], labels[labels == 1])


def test_histogram_logistic_beats_chance():
    train_images, train_labels, _ = make_textures(60, seed=7)
    test_images, test_labels, _ = make_textures(60, seed=8)
    baseline = HistogramLogisticBaseline().fit(train_images.astype(np.uint8), train_labels)
    scores, maps = baseline.score(test_images.astype(np.uint8))
    assert maps is None and scores.shape == (60,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(test_labels, scores) > 0.7


def test_histogram_logistic_needs_both_classes(train_goods):
    with pytest.raises(ValueError, match="both"):
        HistogramLogisticBaseline().fit(train_goods, np.zeros(len(train_goods)))


def test_baselines_handle_one_channel_and_other_sizes():
    images, labels, _ = make_textures(24, seed=9, defect_fraction=0.5, channels=1)
    upsized = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2).astype(np.uint8)  # 128x128x1 uint8
    odd = images[:, :48, :48]  # 48x48: neither a multiple nor a divisor of the working size
    for batch in (images, upsized, odd):
        scores, maps = PatchGaussianBaseline().fit(batch, labels).score(batch)
        assert scores.shape == (24,) and maps.shape == (24, 8, 8) and np.isfinite(maps).all()
        probabilities, _ = HistogramLogisticBaseline().fit(batch, labels).score(batch)
        assert probabilities.shape == (24,) and np.isfinite(probabilities).all()


def test_baselines_reject_bad_input(fitted_patch_gaussian, test_set):
    images, labels, _ = test_set
    with pytest.raises(ValueError, match="S, S, C"):
        PatchGaussianBaseline().fit(images[0], None)
    with pytest.raises(ValueError, match="empty"):
        PatchGaussianBaseline().fit(images[:0], None)
    with pytest.raises(ValueError, match="labels"):
        HistogramLogisticBaseline().fit(images, labels[:-1])
    with pytest.raises(ValueError, match="channels"):
        fitted_patch_gaussian.score(images[..., :1])
    with pytest.raises(ValueError, match="not fitted"):
        HistogramLogisticBaseline().score(images)
    with pytest.raises(ValueError, match="multiple"):
        PatchGaussianBaseline(patch_size=7, working_size=64)


# ---- plots ----------------------------------------------------------------------------------------------


def test_plots_write_png_files(tmp_path, fitted_patch_gaussian, test_set):
    images, labels, masks = test_set
    scores, maps = fitted_patch_gaussian.score(images)
    decisions = scores >= choose_threshold(labels, scores)
    other = np.random.default_rng(10).random(len(labels))
    written = [
        plot_overlays(images, maps, scores, labels, decisions, tmp_path / "overlays.png", masks=masks),
        plot_overlays(
            images[..., :1].astype(np.uint8), None, scores, labels, np.where(decisions, b"defect", b"good"),
            tmp_path / "gray.png", max_images=5,
        ),
        plot_roc(labels, {"patch_gaussian": scores, "random": other}, tmp_path / "nested" / "roc.png"),
        plot_roc(np.zeros(5, int), {"model": other[:5]}, tmp_path / "roc_one_class.png"),
        plot_confusion(labels, decisions, tmp_path / "confusion.png"),
    ]
    for path in written:
        assert_png(path)


def test_plots_reject_bad_input(tmp_path, test_set):
    images, labels, _ = test_set
    scores = np.linspace(0, 1, len(labels))
    decisions = scores >= 0.5
    with pytest.raises(ValueError):
        plot_confusion(labels, decisions[:-1], tmp_path / "c.png")
    with pytest.raises(ValueError):
        plot_confusion(labels, scores, tmp_path / "c.png")  # scores are not decisions
    with pytest.raises(ValueError):
        plot_roc(labels, {"model": np.r_[scores[:-1], np.nan]}, tmp_path / "r.png")
    with pytest.raises(ValueError):
        plot_overlays(images[:-1], None, scores, labels, decisions, tmp_path / "o.png")
    with pytest.raises(ValueError):
        plot_overlays(images, None, scores, labels, decisions[:-1], tmp_path / "o.png")
