"""Decisions a client can trust: one threshold that is where the served decisions change, scores that
read as probabilities (Platt scaling folded into the graph), and the pixel candidates (logistic
regression on pixels inside the graph, a small CNN) on tiny real digits."""

from __future__ import annotations

import numpy as np
import pytest

from solutions_core.solution import Context
from vision_qc import model
from vision_qc.config import VisionQCConfig
from vision_qc.datasets import write_dataset
from vision_qc.evaluate import PixelLogisticBaseline, choose_threshold, served_threshold


def test_the_threshold_is_where_coarse_scores_change_decision():
    """Scores on a coarse grid (as a quantized network gives them): the midpoint cut lay between two
    scores, so the served decisions changed at the next score while the files said the midpoint."""
    rng = np.random.default_rng(0)
    labels = (rng.uniform(size=300) < 0.3).astype(int)
    grid = np.linspace(0.0, 1.0, 40, dtype=np.float32)
    scores = grid[np.clip((labels * 12 + rng.normal(14, 5, 300)).round().astype(int), 0, 39)]
    cut = choose_threshold(labels, scores)
    threshold = served_threshold(labels, scores)
    assert threshold == float(np.float32(threshold))
    np.testing.assert_array_equal(scores >= threshold, scores >= cut)  # decides exactly as the cut did
    lowest_defect = scores[scores >= threshold].min()
    # The recorded number is where decisions change, to one int8 score step (which the midpoint was not).
    assert 0 <= lowest_defect - threshold <= 1 / 256 + 1e-7
    assert lowest_defect - cut > 1 / 256 + 1e-3


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Prepared 8x8 grayscale digits (3 good, 8 defect), split, and their context."""
    from vision_qc import SOLUTION

    manifest = write_dataset("digits", tmp_path_factory.mktemp("digits"), good=[3], defect=[8], limit=240)
    config = SOLUTION.make_config(
        {"source": str(manifest), "image_size": 8, "channels": 1, "map_stride": 8, "flips": False,
         "synthetic_defects": {"rate": 0.0}, "valid_fraction": 0.3, "test_fraction": 0.2,
         "cnn": {"filters": [8, 16]},
         "training": {"epochs": 2, "batch_size": 32, "early_stopping_patience": 0}}
    )
    context = Context("vision_qc", config, {})
    examples = SOLUTION.data.prepare(context, SOLUTION.data.load(context, str(manifest)))
    return config, SOLUTION.data.split(context, examples)


def test_pixel_linear_in_the_graph_is_the_logistic_regression_baseline(digits):
    """At 8 px neither downsamples, so the in-graph candidate (calibration off) ranks validation images
    exactly as the pixel_logistic baseline fitted with the same validation choice of C."""
    from sklearn.metrics import roc_auc_score

    from vision_qc.solution import baseline_pixels

    config, splits = digits
    config = config.model_copy(update={"calibrate_scores": False})
    network = model.fit_pixel_linear(splits, config)
    valid_labels = splits.valid["label_id"].to_numpy()
    network_scores = np.asarray(network.predict(model.training_pixels(splits.valid, config), verbose=0)["defect_score"]).reshape(-1)
    baseline = PixelLogisticBaseline().fit(
        baseline_pixels(splits.train, config), splits.train["label_id"].to_numpy(),
        baseline_pixels(splits.valid, config), valid_labels,
    )
    baseline_scores, _ = baseline.score(baseline_pixels(splits.valid, config))
    assert roc_auc_score(valid_labels, network_scores) == pytest.approx(roc_auc_score(valid_labels, baseline_scores), abs=1e-9)
    np.testing.assert_allclose(network_scores, baseline_scores, atol=1e-4)


def test_platt_scaling_is_folded_into_the_graph_and_keeps_the_ranking(digits):
    from sklearn.metrics import roc_auc_score

    config, splits = digits
    network = model.fit_pixel_linear(splits, config.model_copy(update={"calibrate_scores": False}))
    pixels = model.training_pixels(splits.valid, config)
    labels = splits.valid["label_id"].to_numpy()
    before = model.score_logits(network, pixels)
    # Badly scaled on purpose (a head that scores on its own scale): logits * 0.1 - 2.
    model.fold_affine(network, 0.1, -2.0)
    np.testing.assert_allclose(model.score_logits(network, pixels), before * 0.1 - 2.0, rtol=1e-4, atol=1e-4)
    shrunk = np.asarray(network.predict(pixels, verbose=0)["defect_score"]).reshape(-1)
    slope, intercept = model.platt_scale(network, splits.valid, config)
    assert slope > 0
    scores = np.asarray(network.predict(pixels, verbose=0)["defect_score"]).reshape(-1)
    assert roc_auc_score(labels, scores) == pytest.approx(roc_auc_score(labels, shrunk), abs=1e-9)
    # Calibrated: the mean score matches the defect rate (a property of the logistic fit with intercept),
    # where the badly scaled one was far off.
    assert abs(scores.mean() - labels.mean()) < 0.02
    assert abs(shrunk.mean() - labels.mean()) > 0.1
    with pytest.raises(ValueError, match="slope must be positive"):
        model.fold_affine(network, -1.0, 0.0)


def test_the_cnn_trains_through_the_core_loop_and_serves_both_outputs(digits, tmp_path):
    from solutions_core.strategy import make_runtime
    from solutions_core.training import Trainer

    config, splits = digits
    names = []

    class RecordingTrainer(Trainer):
        def fit(self, spec):
            names.append((spec.name, spec.training.early_stopping_monitor))
            return super().fit(spec)

    trainer = RecordingTrainer(make_runtime("cpu", seed=config.seed), config.training, tmp_path, "cnn")
    network = model.fit_cnn(splits, trainer, config)
    assert names == [("cnn", "val_auc")]  # its one output's metric, which early stopping must find
    outputs = network.predict(model.training_pixels(splits.valid, config), verbose=0)
    assert outputs["defect_score"].shape == (len(splits.valid), 1)
    side = model.map_size(config)  # the app's map grid, whichever candidate serves (1x1 at 8 px, stride 8)
    assert outputs["anomaly_map"].shape == (len(splits.valid), side, side, 1)
    assert np.isfinite(outputs["defect_score"]).all()
