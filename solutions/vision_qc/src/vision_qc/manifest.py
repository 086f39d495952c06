"""Reading inspection data: manifests, image folders, images, masks and uploaded image bytes.

Users bring images in whatever layout their line already produces, so `load_manifest` accepts the common
ones and turns them all into the same table (absolute `image_path`, `label`, `mask_path`):

* a manifest file (CSV or Parquet) with at least `image_path` and `label`, paths relative to the file;
* a folder of class subfolders (`good/`, `defect/`, or any names: the folder name is the label);
* a flat folder of images (label "unknown", e.g. unlabelled data for scoring);
* an MVTec-AD-style tree (`train/good/`, `test/<defect>/`, `ground_truth/<defect>/<stem>_mask.png`).

Masks live in a `masks/` or `ground_truth/` folder and are matched to images by file stem (a trailing
`_mask` is ignored), preferring a mask in a folder named like the image's class folder because MVTec
reuses stems (`000.png`) across defect types.

Every bad input ends in a ValueError that names the file, never a PIL exception, because these errors are
shown to users (CLI) and to API clients (400 responses).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_FOLDERS",
    "decode_image_bytes",
    "load_manifest",
    "read_image",
    "read_mask",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
MASK_FOLDERS: frozenset[str] = frozenset({"masks", "ground_truth"})
MAX_REPORTED_MISSING = 5
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# What PIL may raise on a corrupt or hostile file; all are turned into ValueError.
_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    MemoryError,
)


# ---------------------------------------------------------------------------------------------- manifest


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _check_exist(frame: pd.DataFrame, where: str) -> None:
    paths = list(frame["image_path"]) + [p for p in frame["mask_path"] if p]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:MAX_REPORTED_MISSING])
        more = f" (and {len(missing) - MAX_REPORTED_MISSING} more)" if len(missing) > MAX_REPORTED_MISSING else ""
        raise ValueError(f"{where}: {len(missing)} listed file(s) not found: {shown}{more}")


def _read_manifest_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Paths and labels are text: keep "" as "" and "001" as "001" rather than NaN / 1.
            frame = pd.read_csv(path, dtype={"image_path": str, "label": str, "mask_path": str}, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise ValueError(f"{path}: a manifest must be a .csv or .parquet file, or a folder of images")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the manifest ({err})") from err
    missing = [column for column in ("image_path", "label") if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: the manifest needs columns image_path and label; missing {missing} "
            f"(found {list(frame.columns)})"
        )
    if frame.empty:
        raise ValueError(f"{path}: the manifest has no rows")

    base = path.parent.resolve()

    def absolute(value: Any) -> str:
        if _is_blank(value):
            return ""
        candidate = Path(str(value))
        return os.fspath(candidate if candidate.is_absolute() else (base / candidate))

    frame = frame.copy()
    blank_images = frame["image_path"].map(_is_blank)
    if blank_images.any():
        rows = list(np.flatnonzero(blank_images.to_numpy())[:MAX_REPORTED_MISSING])
        raise ValueError(f"{path}: {int(blank_images.sum())} row(s) have an empty image_path (rows {rows})")
    frame["relative_path"] = frame["image_path"].astype(str)
    frame["image_path"] = frame["image_path"].map(absolute)
    if "mask_path" not in frame.columns:
        frame["mask_path"] = ""
    frame["mask_path"] = frame["mask_path"].map(absolute)
    frame["label"] = frame["label"].astype(str)
    _check_exist(frame, str(path))
    return frame


def _mask_key(stem: str) -> str:
    return stem[: -len("_mask")] if stem.lower().endswith("_mask") else stem


def _read_folder(root: Path) -> pd.DataFrame:
    root = root.resolve()
    mask_roots = [child for child in root.iterdir() if child.is_dir() and child.name.lower() in MASK_FOLDERS]
    by_folder_and_stem: dict[tuple[str, str], str] = {}
    by_stem: dict[str, list[str]] = {}
    for mask_root in mask_roots:
        for mask in sorted(mask_root.rglob("*")):
            if not _is_image(mask):
                continue
            key = _mask_key(mask.stem)
            folder = mask.parent.name if mask.parent != mask_root else ""
            by_folder_and_stem.setdefault((folder, key), os.fspath(mask))
            by_stem.setdefault(key, []).append(os.fspath(mask))

    rows = []
    for image in sorted(root.rglob("*")):
        relative = image.relative_to(root)
        if relative.parts[0].lower() in MASK_FOLDERS or not _is_image(image):
            continue
        folder = image.parent.name if image.parent != root else ""
        mask = by_folder_and_stem.get((folder, image.stem))
        if mask is None and len(by_stem.get(image.stem, [])) == 1:
            mask = by_stem[image.stem][0]
        rows.append(
            {
                "image_path": os.fspath(image),
                "label": folder or "unknown",
                "mask_path": mask or "",
                "relative_path": relative.as_posix(),
            }
        )
    if not rows:
        raise ValueError(
            f"{root}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} files directly "
            "in the folder or in class subfolders)"
        )
    return pd.DataFrame(rows, columns=["image_path", "label", "mask_path", "relative_path"])


def load_manifest(source: str | os.PathLike) -> pd.DataFrame:
    """The image table for a manifest file or an image folder (see the module docstring for layouts).

    Returns one row per image with absolute `image_path`, `label` (str), `mask_path` (absolute, or ""
    when the image has no mask) and `relative_path` (as written in the manifest, or relative to the
    folder); a manifest's other columns are kept. Raises ValueError when the source or any listed file is
    missing, naming the first few missing paths and how many there are.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        return _read_manifest_file(path)
    raise ValueError(f"{path}: no such manifest file or image folder")


# ------------------------------------------------------------------------------------------ pixel access


def _to_8bit(image: Image.Image) -> Image.Image:
    """Any PIL mode -> "L" or "RGB" (alpha dropped, 16-bit and float scaled to 0-255)."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode in ("1", "LA", "La"):
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0
        elif values.size and np.nanmax(values) > 255:
            values = values / 257.0  # 16-bit range -> 8-bit
        return Image.fromarray(np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")  # RGBA, P, CMYK, YCbCr, LAB, ...: colour without alpha


def _to_array(image: Image.Image, size: int | None, channels: int | None) -> np.ndarray:
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (keep the file's), got {channels!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    image = _to_8bit(image)
    if size is not None and image.size != (size, size):
        image = image.resize((int(size), int(size)), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if channels == 3 and pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    elif channels == 1 and pixels.shape[-1] == 3:
        pixels = np.round(pixels.astype(np.float32) @ _LUMA).clip(0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(pixels)


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.copy() if image.mode != "P" else image.convert("RGBA")
    except FileNotFoundError as err:
        raise ValueError(f"{path}: file not found") from err
    except _PIL_ERRORS as err:
        raise ValueError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def read_image(path: str | os.PathLike, *, size: int | None = None, channels: int | None = None) -> np.ndarray:
    """The image at `path` as uint8 H x W x C.

    C is `channels` when given (grayscale is replicated to RGB; RGB becomes gray by ITU-R 601 luminance,
    the same weights the generator uses) or the file's own (1 or 3; alpha is always dropped because
    inspection cameras do not produce meaningful transparency). `size` resizes to size x size
    (bilinear). Unreadable or corrupt files raise ValueError naming the path.
    """
    return _to_array(_open(path), size, channels)


def read_mask(path: str | os.PathLike | None, size: int | None = None) -> np.ndarray:
    """The defect mask at `path` as float32 H x W in {0, 1} (any pixel above 127 is defect).

    An empty path ("", None or NaN, as for good images) gives an all-zero mask of size x size, so callers
    need no special case. `size` resizes with nearest neighbour, which keeps the mask binary.
    """
    if _is_blank(path):
        if size is None:
            raise ValueError("read_mask needs a size when there is no mask file (good image)")
        return np.zeros((int(size), int(size)), dtype=np.float32)
    image = _open(path)
    if image.mode != "L":
        image = _to_8bit(image)
        if image.mode != "L":
            image = image.convert("L")
    if size is not None and image.size != (size, size):
        image = image.resize((int(size), int(size)), Image.NEAREST)
    return (np.asarray(image, dtype=np.uint8) > 127).astype(np.float32)


def decode_image_bytes(
    data: bytes,
    *,
    max_pixels: int = 4096 * 4096,
    size: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    """Decodes an uploaded PNG or JPEG into uint8 H x W x C (as `read_image`), for the REST API.

    Only ValueError escapes, with a message fit for a 400 response: "not a PNG or JPEG image" for
    anything else or corrupt data, "image too large: WxH > N pixels" before decoding a huge one (the
    header gives the size, so a decompression bomb never gets decoded).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("not a PNG or JPEG image")
    data = bytes(data)
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")):
        raise ValueError("not a PNG or JPEG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(f"image too large: {width}x{height} > {max_pixels} pixels")
            image.load()
            if image.mode == "P":
                image = image.convert("RGBA")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image too large: more than {max_pixels} pixels") from err
    except ValueError as err:
        if str(err).startswith("image too large"):
            raise
        raise ValueError("not a PNG or JPEG image: the data is truncated or corrupt") from err
    except _PIL_ERRORS as err:
        raise ValueError("not a PNG or JPEG image: the data is truncated or corrupt") from err
    return _to_array(image, size, channels)
