"""Client data shapes through manifest + contract + config only: one channel, any image size, image
labels without masks, and the bundled real digit sets written out as a client's folder of PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vision_qc import model
from vision_qc.config import VisionQCConfig
from vision_qc.datasets import resolve_source, write_dataset


@pytest.mark.parametrize("size", [8, 28, 100])
def test_any_image_size_is_a_valid_config(size):
    assert VisionQCConfig(image_size=size, channels=1).image_size == size


def test_only_the_backbone_needs_a_multiple_of_32():
    with pytest.raises(ValueError, match="image_size 100: backbone.enabled needs a multiple of 32"):
        VisionQCConfig(image_size=100, backbone={"enabled": True})


@pytest.mark.parametrize("size,stride", [(8, 16), (28, 16), (100, 8)])
def test_grayscale_patch_statistics_tile_any_size(size, stride):
    config = VisionQCConfig(image_size=size, channels=1, map_stride=stride)
    extractor = model.feature_extractor(config)
    pixels = np.random.default_rng(0).uniform(0, 255, (6, size, size, 1)).astype(np.float32)
    model.adapt_features(extractor, pixels, config)
    features = np.asarray(extractor(pixels))
    cells = -(-size // stride)
    assert model.map_size(config) == cells
    assert features.shape == (6, cells, cells, 2 * (3 * 1 + 2))
    assert np.isfinite(features).all()


def test_augmented_grayscale_batches_keep_their_static_shape(tmp_path):
    """Augmentation used to lose the channel axis (None), which crashed PatchStatistics with channels: 1."""
    from vision_qc.solution import VisionData
    from solutions_core.solution import Context

    manifest = write_dataset("digits", tmp_path, good=[1], defect=[7], limit=24)
    config = VisionQCConfig(image_size=28, channels=1, source=str(manifest))
    context = Context("vision_qc", config, {})
    examples = VisionData().prepare(context, VisionData().load(context, str(manifest)))
    dataset = model.make_dataset(examples, config, training=True, batch_size=8)
    assert tuple(dataset.element_spec[0].shape) == (None, 28, 28, 1)


def test_the_converter_writes_a_client_folder_without_masks(tmp_path):
    manifest = write_dataset("digits", tmp_path / "digits", good=[3, 5], defect=[8])
    frame = pd.read_csv(manifest)
    assert list(frame.columns) == ["image_path", "label"]
    assert set(frame["label"]) == {"good", "defect"}
    assert len(frame) == 539  # 365 threes and fives, 174 eights of scikit-learn's 1,797 digits
    from PIL import Image

    with Image.open(manifest.parent / frame["image_path"][0]) as image:
        assert (image.size, image.mode) == ((8, 8), "L")


def test_dataset_source_scheme(tmp_path, monkeypatch):
    monkeypatch.setenv("VISION_QC_DATASETS", str(tmp_path))
    manifest = resolve_source("dataset:digits:good=1:defect=7")
    assert manifest.endswith("manifest.csv") and "digits-good1-defect7" in manifest
    assert resolve_source("/data/line7") == "/data/line7"
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        resolve_source("dataset:mnist")
    with pytest.raises(ValueError, match="good=<digits>"):
        resolve_source("dataset:digits:bad=1")
    with pytest.raises(ValueError, match="both good and defect"):
        write_dataset("digits", tmp_path / "x", good=[1], defect=[1])


def test_a_grayscale_odd_size_run_without_masks(tmp_path):
    """End to end on tiny real data: 8x8 grayscale digits, image labels only. Nothing crashes, pixel
    metrics are NaN (no masks), image metrics and the baselines are there."""
    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    manifest = write_dataset("digits", tmp_path / "digits", good=[3, 5], defect=[8], limit=90)
    solution = get_solution("vision_qc")
    config = solution.make_config(
        {
            **solution.tiny_config().model_dump(),
            "source": str(manifest),
            "channels": 1,
            "image_size": 8,
            "training": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "early_stopping_patience": 0},
            "edge": {"calibration_images": 8, "latency_runs": 2, "quantization_aware_epochs": 1},
        }
    )
    result = run_training(solution, config, Settings(home=tmp_path / "home"), verbose=0)
    assert np.isfinite(result.test.metrics["image_auroc"])
    assert np.isnan(result.test.metrics["pixel_auroc"])
    assert "pixel_logistic" in result.baselines
