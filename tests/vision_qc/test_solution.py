"""The app's parts on the core's seam: evaluation judges the served decisions, calibration only returns
the threshold, the quantization-aware fine-tune goes through the core's loop on the datasets the first
fit built, and the served, recorded and edge thresholds are one number."""

from __future__ import annotations

import numpy as np
import pytest

from solutions_core.solution import Context
from vision_qc import SOLUTION, model
from vision_qc.evaluate import SCORE_STEP, choose_threshold


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A context and prepared examples of 24 generated 32-px images (a few seconds)."""
    config = SOLUTION.make_config(
        {
            "size": 24,
            "image_size": 32,
            "source_image_size": 32,
            "defect_rate": 0.5,
            "training": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 8, "early_stopping_patience": 0},
            "edge": {"calibration_images": 8, "quantization_aware_epochs": 2},
        }
    )
    context = Context("vision_qc", config, {})
    tables = SOLUTION.data.generate(context, tmp_path_factory.mktemp("images"))
    examples = SOLUTION.data.prepare(context, tables)
    return context, examples, SOLUTION.data.split(context, examples)


def fake_outputs(examples, decisions):
    count = len(examples)
    scores = np.linspace(0.0, 1.0, count).astype(np.float32)
    return {
        "defect_score": scores,
        "decision": np.asarray(decisions, dtype=object),
        "anomaly_map": np.zeros((count, 2, 2), np.float32),
    }


def test_evaluate_counts_the_served_decisions(tiny):
    context, examples, _ = tiny
    labels = examples["label_id"].to_numpy()
    right = [b"defect" if label else b"good" for label in labels]
    metrics = SOLUTION.evaluation.evaluate(context, examples, fake_outputs(examples, right))
    assert metrics["accuracy"] == 1.0 and metrics["false_positives"] == 0.0 and metrics["false_negatives"] == 0.0
    assert SOLUTION.gate.metric in metrics and "pixel_auroc" in metrics
    # Same scores, every decision wrong: the decision metrics follow the decisions, the ranking the scores.
    wrong = [b"good" if label else b"defect" for label in labels]
    flipped = SOLUTION.evaluation.evaluate(context, examples, fake_outputs(examples, wrong))
    assert flipped["accuracy"] == 0.0 and flipped["true_positives"] == 0.0
    assert flipped["image_auroc"] == metrics["image_auroc"]


def test_calibrate_returns_the_threshold_as_the_module_holds_it(tiny):
    context, examples, _ = tiny
    outputs = fake_outputs(examples, [b"good"] * len(examples))
    parameters = SOLUTION.evaluation.calibrate(context, examples, outputs)
    assert set(parameters) == {"threshold"}
    labels, scores = examples["label_id"].to_numpy(), outputs["defect_score"]
    cut = choose_threshold(labels, scores)
    threshold = parameters["threshold"]
    assert threshold == float(np.float32(threshold))  # exactly a float32
    np.testing.assert_array_equal(scores >= threshold, scores >= cut)  # the cut's decisions
    # Decisions change within one int8 score step above the threshold (the margin that keeps a
    # quantized runtime's score a step lower from flipping).
    assert 0 <= scores[scores >= threshold].min() - threshold <= SCORE_STEP + 1e-7


def test_serving_check_converts_arrays_and_names_the_bad_instance(tiny):
    context, _, _ = tiny
    checked = SOLUTION.serving.check(context, [{"image": [[0, 255], [128, 64]]}])
    assert checked[0]["image"][:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"instances\[1\]\.image"):
        SOLUTION.serving.check(context, [{"image": [[0, 1], [2, 3]]}, {"image": "not an image"}])


def test_datasets_are_memoized_per_split_mode_and_batch(tiny):
    context, _, splits = tiny
    datasets = model.Datasets(context.config)
    first = datasets(splits.train, True, 8)
    assert datasets(splits.train, True, 8) is first
    assert datasets(splits.train, False, 8) is not first
    assert datasets(splits.valid, True, 8) is not first
    assert datasets(splits.train, True, 4) is not first
    datasets.clear()
    assert datasets(splits.train, True, 8) is not first


def test_quantization_aware_fine_tune_goes_through_the_trainer_on_the_same_datasets(tiny, tmp_path):
    from solutions_core.strategy import make_runtime
    from solutions_core.training import Trainer

    context, _, splits = tiny
    config = context.config
    fits = []

    class RecordingTrainer(Trainer):
        def fit(self, spec):
            batch = self.training.batch_size * self.replicas
            fits.append((spec, spec.training, spec.data(True, batch), spec.data(False, batch)))
            return super().fit(spec)

    trainer = RecordingTrainer(make_runtime("cpu", seed=config.seed), config.training, tmp_path, "supervised")
    supervised = next(c for c in SOLUTION.models.candidates(context) if c.name == "supervised")
    network = supervised.fit(splits, trainer)

    assert [spec.name for spec, *_ in fits] == ["supervised", "quantization_aware"]
    (_, first_training, first_train, first_valid), (second, training, train, valid) = fits
    assert first_training is None  # the first fit runs on config.training
    assert training.learning_rate == pytest.approx(config.training.learning_rate * 0.3)
    assert training.epochs == config.edge.quantization_aware_epochs
    assert training.early_stopping_patience == 0
    assert training.steps_per_epoch == config.training.steps_per_epoch
    assert train is first_train and valid is first_valid  # the decoded-image caches are reused
    assert second.build() is network  # the fitted network, trained further
    assert model.is_quantization_aware(network) and network.get_layer("head_bn").folded
    assert (tmp_path / "quantization_aware").is_dir()  # the core's loop wrote its logs
    assert not supervised.make_dataset._made  # and the decoded images were let go afterwards


def test_served_recorded_and_edge_thresholds_are_one_number(trained):
    from solutions_core.export import load_signature
    from vision_qc.edge import FLOAT16_FILE, INT8_FILE
    from vision_qc.edge_metadata import read_metadata

    result = trained["vision_qc"]
    recorded = result.version.metadata()["calibration"]["threshold"]
    assert result.edge is not None
    for name in (INT8_FILE, FLOAT16_FILE):
        assert read_metadata(result.edge.files[name])["threshold"] == recorded
        if result.edge.passed:  # what was published is what was built
            assert read_metadata(result.version.path / "assets.extra" / name)["threshold"] == recorded
    served = load_signature(result.version.path)._loaded_object.threshold.numpy()
    assert float(served) == recorded


def test_the_supervised_fine_tune_ran_in_the_tiny_run(trained):
    result = trained["vision_qc"]
    if "supervised" not in {candidate.name for candidate in result.candidates}:
        pytest.skip("the tiny run skipped the supervised candidate")
    assert (result.run_dir / "tensorboard" / "supervised" / "quantization_aware").is_dir()
