"""The synthetic image generator and the manifest/image readers: determinism, files, masks, layouts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from solutions_core.contracts import load_contract
from vision_qc.generate import DEFECT_TYPES, MANIFEST_COLUMNS, SURFACES, generate_images
from vision_qc.manifest import decode_image_bytes, load_manifest, read_image, read_mask

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("generated")
    return out, generate_images(out, 60, image_size=48, defect_rate=0.3, seed=5)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path):
    first = generate_images(tmp_path / "a", 6, image_size=32, seed=1)
    again = generate_images(tmp_path / "b", 6, image_size=32, seed=1)
    generate_images(tmp_path / "c", 6, image_size=32, seed=2)
    pd.testing.assert_frame_equal(first, again)
    for relative in first["image_path"]:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    differs = [
        (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes() for rel in first["image_path"]
    ]
    assert all(differs)


def test_files_sizes_channels_and_manifest(generated, tmp_path: Path):
    out, manifest = generated
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 60
    assert set(manifest["surface"]) == set(SURFACES)
    pd.testing.assert_frame_equal(pd.read_csv(out / "manifest.csv", keep_default_na=False), manifest)
    for row in manifest.itertuples():
        with Image.open(out / row.image_path) as image:
            assert image.size == (48, 48) and image.mode == "RGB"
        assert (row.width, row.height, row.channels) == (48, 48, 3)

    gray = generate_images(tmp_path / "gray", 3, image_size=24, channels=1, defect_rate=1.0, seed=0)
    with Image.open(tmp_path / "gray" / gray["image_path"][0]) as image:
        assert image.mode == "L" and image.size == (24, 24)
    assert (gray["channels"] == 1).all()


def test_masks_exactly_for_defects_and_rates(generated):
    out, manifest = generated
    defects = manifest[manifest["label"] == "defect"]
    goods = manifest[manifest["label"] == "good"]
    assert len(defects) == 18  # round(60 * 0.3)
    assert set(defects["defect_type"]) == set(DEFECT_TYPES)
    assert (goods["defect_type"] == "none").all() and (goods["mask_path"] == "").all()
    for row in defects.itertuples():
        with Image.open(out / row.mask_path) as mask_image:
            assert mask_image.mode == "L" and mask_image.size == (48, 48)
            mask = np.asarray(mask_image)
        assert set(np.unique(mask)) <= {0, 255}
        assert (mask > 0).sum() >= 3
        assert (mask > 0).mean() < 0.5  # a defect, not the whole part
        assert read_mask(out / row.mask_path, 48).sum() == (mask > 0).sum()
    assert read_mask("", 48).shape == (48, 48) and read_mask(None, 48).sum() == 0


def test_defects_change_the_pixels_under_the_mask(tmp_path: Path):
    """Defects are visible: the masked pixels stand out from the rest of the image in most images."""
    manifest = generate_images(tmp_path, 40, image_size=48, defect_rate=0.5, seed=3)
    contrasts = []
    for row in manifest[manifest["label"] == "defect"].itertuples():
        image = read_image(tmp_path / row.image_path, channels=1)[..., 0].astype(float)
        mask = read_mask(tmp_path / row.mask_path, 48) > 0
        contrasts.append(abs(image[mask].mean() - image[~mask].mean()) / (image[~mask].std() + 1e-6))
    assert np.median(contrasts) > 0.3


def test_manifest_validates_against_contract(generated):
    out, manifest = generated
    contract = load_contract("vision_qc_images", REPO / "data_contracts")
    assert contract.validate(manifest).ok
    assert contract.validate(pd.read_csv(out / "manifest.csv")).ok  # "" read back as NaN: nullable
    broken = manifest.assign(label=manifest["label"].replace("defect", "bad"))
    assert not contract.validate(broken).ok


def test_bad_generator_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="channels"):
        generate_images(tmp_path, 2, channels=2)
    with pytest.raises(ValueError, match="surfaces"):
        generate_images(tmp_path, 2, surfaces=("marble",))
    with pytest.raises(ValueError, match="defect_rate"):
        generate_images(tmp_path, 2, defect_rate=1.5)


def test_load_manifest_file_resolves_paths(generated):
    out, manifest = generated
    loaded = load_manifest(out / "manifest.csv")
    assert list(loaded["relative_path"]) == list(manifest["image_path"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in loaded["image_path"])
    defect = loaded["label"] == "defect"
    assert all(Path(p).is_file() for p in loaded.loc[defect, "mask_path"])
    assert (loaded.loc[~defect, "mask_path"] == "").all()
    assert "surface" in loaded.columns

    manifest.to_parquet(out / "manifest.parquet")
    assert list(load_manifest(out / "manifest.parquet")["image_path"]) == list(loaded["image_path"])


def test_load_manifest_reports_missing_files(tmp_path: Path):
    _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    pd.DataFrame(
        {"image_path": ["a.png"] + [f"gone_{i}.png" for i in range(7)], "label": ["good"] * 8}
    ).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match=r"7 listed file\(s\) not found: .*gone_0\.png.*and 2 more"):
        load_manifest(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="image_path and label"):
        pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
        load_manifest(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="no such"):
        load_manifest(tmp_path / "nowhere")


def test_load_class_subfolders_with_masks(tmp_path: Path):
    pixels = np.full((8, 8, 3), 100, np.uint8)
    _png(tmp_path / "good" / "g1.png", pixels)
    _png(tmp_path / "good" / "g2.jpg", pixels)
    _png(tmp_path / "defect" / "d1.png", pixels)
    _png(tmp_path / "defect" / "notes.txt.png", pixels)
    (tmp_path / "defect" / "readme.txt").write_text("not an image")
    _png(tmp_path / "masks" / "d1.png", np.full((8, 8), 255, np.uint8))
    loaded = load_manifest(tmp_path).set_index("relative_path")
    assert dict(loaded["label"]) == {
        "defect/d1.png": "defect",
        "defect/notes.txt.png": "defect",
        "good/g1.png": "good",
        "good/g2.jpg": "good",
    }
    assert loaded.loc["defect/d1.png", "mask_path"] == str(tmp_path.resolve() / "masks" / "d1.png")
    assert loaded.loc["good/g1.png", "mask_path"] == ""


def test_load_flat_folder(tmp_path: Path):
    for name in ("b.bmp", "a.png", "c.tif"):
        _png(tmp_path / name, np.zeros((8, 8), np.uint8))
    loaded = load_manifest(tmp_path)
    assert list(loaded["relative_path"]) == ["a.png", "b.bmp", "c.tif"]
    assert (loaded["label"] == "unknown").all() and (loaded["mask_path"] == "").all()
    with pytest.raises(ValueError, match="no images"):
        (tmp_path / "empty").mkdir()
        load_manifest(tmp_path / "empty")


def test_load_mvtec_style_tree(tmp_path: Path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    _png(tmp_path / "train" / "good" / "000.png", pixels)
    _png(tmp_path / "test" / "good" / "000.png", pixels)
    _png(tmp_path / "test" / "crack" / "000.png", pixels)
    _png(tmp_path / "test" / "hole" / "000.png", pixels)
    _png(tmp_path / "ground_truth" / "crack" / "000_mask.png", np.full((8, 8), 255, np.uint8))
    _png(tmp_path / "ground_truth" / "hole" / "000_mask.png", np.full((8, 8), 255, np.uint8))
    loaded = load_manifest(tmp_path).set_index("relative_path")
    assert len(loaded) == 4  # masks are not images to classify
    assert loaded.loc["test/crack/000.png", "label"] == "crack"
    assert loaded.loc["test/crack/000.png", "mask_path"].endswith("ground_truth/crack/000_mask.png")
    assert loaded.loc["test/hole/000.png", "mask_path"].endswith("ground_truth/hole/000_mask.png")
    assert loaded.loc["train/good/000.png", "label"] == "good"
    assert loaded.loc["train/good/000.png", "mask_path"] == ""  # the stem is ambiguous: no guess


def test_read_image_channel_conversions(tmp_path: Path):
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[..., 0] = 200
    gray = np.full((6, 10), 77, np.uint8)
    rgba = np.dstack([rgb, np.full((6, 10), 9, np.uint8)])
    _png(tmp_path / "rgb.png", rgb)
    _png(tmp_path / "gray.png", gray)
    _png(tmp_path / "rgba.png", rgba)

    assert read_image(tmp_path / "rgb.png").shape == (6, 10, 3)
    assert read_image(tmp_path / "gray.png").shape == (6, 10, 1)
    as_gray = read_image(tmp_path / "rgb.png", channels=1)
    assert as_gray.shape == (6, 10, 1) and as_gray.dtype == np.uint8 and as_gray[0, 0, 0] == round(0.299 * 200)
    as_rgb = read_image(tmp_path / "gray.png", channels=3)
    assert as_rgb.shape == (6, 10, 3) and (as_rgb == 77).all()
    no_alpha = read_image(tmp_path / "rgba.png")
    assert no_alpha.shape == (6, 10, 3) and (no_alpha == rgb).all()
    assert read_image(tmp_path / "rgb.png", size=4, channels=3).shape == (4, 4, 3)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_decode_image_bytes():
    array = np.full((12, 16, 3), 128, np.uint8)
    png = decode_image_bytes(_encoded(array, "PNG"))
    assert png.shape == (12, 16, 3) and (png == array).all()
    jpeg = decode_image_bytes(_encoded(array, "JPEG"))
    assert jpeg.shape == (12, 16, 3) and np.abs(jpeg.astype(int) - 128).max() <= 3
    assert decode_image_bytes(_encoded(array[..., 0], "PNG"), channels=3).shape == (12, 16, 3)

    with pytest.raises(ValueError, match="^not a PNG or JPEG image$"):
        decode_image_bytes(b"definitely not an image")
    with pytest.raises(ValueError, match="^not a PNG or JPEG image$"):
        decode_image_bytes(_encoded(array, "BMP"))
    with pytest.raises(ValueError, match="not a PNG or JPEG image"):
        decode_image_bytes(_encoded(array, "PNG")[:40])  # truncated after the header
    with pytest.raises(ValueError, match=r"image too large: 16x12 > 100"):
        decode_image_bytes(_encoded(array, "PNG"), max_pixels=100)
