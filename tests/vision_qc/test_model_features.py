"""The in-graph patch statistics: what a defect does to them, the per-image centering that makes them
robust to lighting, and a trained network that survives a save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from vision_qc import model
from vision_qc.config import VisionQCConfig


def textures(count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Noise surfaces in 0..255, each with its own brightness (as different parts on a line)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 180, (count, 1, 1, 1))
    return np.clip(base + rng.normal(0, 12, (count, size, size, 3)), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def config() -> VisionQCConfig:
    return VisionQCConfig(image_size=64, source_image_size=64, size=64)


@pytest.fixture(scope="module")
def extractor(config):
    extractor = model.feature_extractor(config)
    model.adapt_features(extractor, textures(16), config)
    return extractor


def test_features_are_standardized_then_centered_per_image(extractor, config):
    features = np.asarray(extractor(textures(4, seed=1)))
    cells = config.image_size // config.map_stride
    depth = features.shape[-1] // 2
    assert features.shape == (4, cells, cells, 2 * depth)
    assert depth == 3 * config.channels + 2
    standardized, centered = features[..., :depth], features[..., depth:]
    # the second half is the first minus its own image's mean: zero mean over each image
    np.testing.assert_allclose(centered.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(centered, standardized - standardized.mean(axis=(1, 2), keepdims=True), atol=1e-5)
    assert np.all(np.abs(standardized) <= 1.0 + 1e-6)  # clipped at CLIP_SIGMAS standard deviations


def test_a_scratch_moves_only_its_own_patch(extractor, config):
    clean = textures(1, seed=2)
    scratched = clean.copy()
    scratched[0, 23:25, 20:28] = 255.0  # a bright thin line in the middle of cell (1, 1) of the 16-px grid
    depth = extractor.output.shape[-1] // 2
    before, after = (np.asarray(extractor(image))[0, ..., :depth] for image in (clean, scratched))
    change = np.abs(after - before).sum(axis=-1)
    assert np.unravel_index(np.argmax(change), change.shape) == (1, 1)
    # the coarse contrast filter sees a little across the cell's border; the rest barely moves
    assert change[1, 1] > 3 * np.delete(change.ravel(), 1 * change.shape[1] + 1).max()


def test_centering_ignores_a_global_brightness_change(extractor):
    image = textures(1, seed=3)
    depth = extractor.output.shape[-1] // 2
    brighter = np.clip(image + 30.0, 0, 255)
    centered = [np.asarray(extractor(pixels))[0, ..., depth:] for pixels in (image, brighter)]
    raw = [np.asarray(extractor(pixels))[0, ..., :depth] for pixels in (image, brighter)]
    assert np.abs(centered[0] - centered[1]).max() < 0.1 * np.abs(raw[0] - raw[1]).max()


def test_network_saves_and_loads_with_its_layers(extractor, config, tmp_path):
    import keras

    network = model.build_network(config, extractor)
    pixels = textures(2, seed=4)
    path = tmp_path / "network.keras"
    network.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    for name in (model.SCORE, model.ANOMALY_MAP):
        np.testing.assert_allclose(np.asarray(loaded(pixels)[name]), np.asarray(network(pixels)[name]), atol=1e-5)


def test_calibrated_network_computes_on_8_bit_grids(config):
    import keras

    network = model.build_network(config, model.feature_extractor(config))
    model.adapt_features(network, textures(8), config)
    pixels = textures(8, seed=3)
    before = np.asarray(network(pixels, training=False)[model.SCORE])
    model.calibrate_quantization(network, pixels)
    assert model.is_quantization_aware(network)
    statistics = network.get_layer("patch_statistics")
    bounds = np.asarray(statistics.bounds.numpy())
    assert tuple(bounds[statistics.GRID_POINTS.index("pixels")]) == (0.0, 255.0)
    assert (bounds[:, 0] <= 0).all() and (bounds[:, 1] >= 0).all() and (bounds[:, 1] > bounds[:, 0]).all()
    # the head's hidden activations take at most 256 distinct values
    hidden = keras.Model(network.input, network.get_layer("head_grid").output)(pixels)
    assert len(np.unique(np.asarray(hidden))) <= 256
    after = np.asarray(network(pixels, training=False)[model.SCORE])
    with model.quantization_off(network):
        assert not model.is_quantization_aware(network)
        np.testing.assert_allclose(np.asarray(network(pixels, training=False)[model.SCORE]), before, rtol=1e-5)
    assert model.is_quantization_aware(network)
    assert np.abs(after - before).max() < 0.1  # the grids round, they do not change what the network says


def test_folding_the_heads_batch_norm_keeps_the_outputs(config):
    network = model.build_network(config, model.feature_extractor(config))
    model.adapt_features(network, textures(8), config)
    norm = network.get_layer("head_bn")
    rng = np.random.default_rng(0)
    for weight in (norm.gamma, norm.beta, norm.moving_mean):
        weight.assign(rng.normal(0.5, 0.3, tuple(weight.shape)).astype(np.float32))
    norm.moving_variance.assign(rng.uniform(0.5, 2.0, tuple(norm.moving_variance.shape)).astype(np.float32))
    pixels = textures(4, seed=5)
    before = np.asarray(network(pixels, training=False)[model.SCORE])
    model.fold_batch_norm(network.get_layer("head_conv"), norm)
    assert norm.folded
    np.testing.assert_allclose(np.asarray(network(pixels, training=False)[model.SCORE]), before, rtol=1e-4, atol=1e-6)
