"""Synthetic inspection images: the vision QC app's embedded default data.

The images are built to look like what a line camera sees, so the app's models are exercised the way
they would be in production rather than on toy shapes:

* Surfaces are real textures (scikit-image's bundled brick, grass and gravel photographs, which ship
  with the package and need no download) plus two procedural materials (brushed metal: anisotropic
  streaks; woven fabric: a periodic over/under thread pattern). Each image is a random crop, rotated or
  flipped, with its own lighting (brightness/contrast), tint, mild blur and sensor noise, so no two good
  parts are pixel-identical and the model cannot memorise a template.
* Defects are drawn into the surface with a pixel mask: scratches (thin bright or dark curved lines),
  cracks (dark branching random walks), holes (dark ellipses with a lit rim), stains (soft blotches with a
  colour shift) and contamination (clusters of small specks). Size and contrast vary widely, so some
  defects are subtle, as on a real line.
* Blur and noise are applied after the defects are drawn, as the camera would, so a defect's edges are
  as soft as the texture's.

Everything is driven by one seed: the same arguments give the same files, byte for byte, and the same
manifest.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from skimage.transform import resize

__all__ = ["DEFECT_TYPES", "MANIFEST_COLUMNS", "SURFACES", "generate_images"]

SURFACES: tuple[str, ...] = ("brick", "grass", "gravel", "brushed_metal", "woven")
DEFECT_TYPES: tuple[str, ...] = ("scratch", "crack", "hole", "stain", "contamination")
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_path",
    "label",
    "defect_type",
    "mask_path",
    "surface",
    "width",
    "height",
    "channels",
)

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 4096

# Base tint per surface (multiplied into the grayscale texture), so RGB images look like materials
# rather than gray photos; each image jitters it a little.
_TINTS: dict[str, tuple[float, float, float]] = {
    "brick": (1.0, 0.72, 0.6),
    "grass": (0.72, 1.0, 0.62),
    "gravel": (0.97, 0.93, 0.86),
    "brushed_metal": (0.9, 0.94, 1.0),
    "woven": (0.85, 0.85, 0.95),
}


# --------------------------------------------------------------------------------------------- surfaces


@functools.lru_cache(maxsize=None)
def _photo_texture(name: str) -> np.ndarray:
    """A bundled scikit-image texture as float32 in [0, 1]; these three ship with the package (no pooch)."""
    from skimage import data

    loader = {"brick": data.brick, "grass": data.grass, "gravel": data.gravel}[name]
    image = np.asarray(loader(), dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    return image / 255.0


def _photo_crop(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop (zoom, rotation, flip) of a photo texture, resized to size x size."""
    texture = _photo_texture(name)
    limit = min(texture.shape)
    crop = int(np.clip(size * rng.uniform(0.8, 2.5), min(16, limit), limit))
    top = int(rng.integers(0, texture.shape[0] - crop + 1))
    left = int(rng.integers(0, texture.shape[1] - crop + 1))
    patch = texture[top : top + crop, left : left + crop]
    patch = np.rot90(patch, int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if crop != size:
        patch = resize(patch, (size, size), order=1, anti_aliasing=crop > size, preserve_range=True)
    return np.asarray(patch, dtype=np.float32)


def _brushed_metal(size: int, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic streak noise: white noise smeared along the brushing direction, plus a soft sheen."""
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    streaks = ndimage.gaussian_filter(noise, sigma=(0.6, size * rng.uniform(0.08, 0.25)), mode="wrap")
    streaks /= streaks.std() + 1e-6
    fine = ndimage.gaussian_filter(noise, sigma=(0.4, 3.0), mode="wrap")
    fine /= fine.std() + 1e-6
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    sheen = 0.08 * np.cos(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) * rng.uniform(0.3, 1.0))
    image = rng.uniform(0.5, 0.7) + 0.06 * streaks + 0.025 * fine + sheen
    if rng.random() < 0.5:
        image = image.T  # brushing direction: horizontal or vertical
    return image.astype(np.float32)


def _woven(size: int, rng: np.random.Generator) -> np.ndarray:
    """Plain weave: threads alternate over/under in a checkerboard of cells, at a slight random angle."""
    period = rng.uniform(5.0, 12.0)
    angle = rng.uniform(-0.25, 0.25)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u = np.cos(angle) * x + np.sin(angle) * y + rng.uniform(0, period)
    v = -np.sin(angle) * x + np.cos(angle) * y + rng.uniform(0, period)
    cell = (np.floor(u / period) + np.floor(v / period)) % 2
    across = np.sin(np.pi * (v % period) / period)  # shading across a horizontal thread
    along = np.sin(np.pi * (u % period) / period)  # shading across a vertical thread
    thread = np.where(cell == 0, across, along)
    fuzz = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)).astype(np.float32), 0.7)
    image = 0.35 + 0.35 * thread + 0.04 * fuzz
    return image.astype(np.float32)


def _surface(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if name in ("brick", "grass", "gravel"):
        return _photo_crop(name, size, rng)
    if name == "brushed_metal":
        return _brushed_metal(size, rng)
    return _woven(size, rng)


def _tint(gray: np.ndarray, surface: str, rng: np.random.Generator) -> np.ndarray:
    """Gray texture -> RGB with the surface's tint, jittered per image (woven fabric gets any colour)."""
    if surface == "woven" and rng.random() < 0.7:
        base = rng.uniform(0.35, 1.0, 3)
    else:
        base = np.asarray(_TINTS.get(surface, (1.0, 1.0, 1.0)))
    tint = np.clip(base * rng.uniform(0.92, 1.08, 3), 0.2, None)
    tint = tint / tint.max()
    return (gray[..., None] * tint[None, None, :]).astype(np.float32)


# ---------------------------------------------------------------------------------------------- defects
#
# Each defect function draws into the RGB float image in place and returns a boolean mask of the pixels
# it changed visibly. `strength` in (0, 1] scales the contrast, so low values give subtle defects.


def _soft(mask: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Anti-aliased alpha from a rasterised stroke, so lines do not look pixel-stepped."""
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), sigma) * 1.6, 0.0, 1.0)


def _stamp(points: np.ndarray, size: int, width: int) -> np.ndarray:
    """Rasterises (row, col) points into a boolean mask, thickened to `width` pixels."""
    mask = np.zeros((size, size), dtype=bool)
    rows = np.clip(np.round(points[:, 0]).astype(int), 0, size - 1)
    cols = np.clip(np.round(points[:, 1]).astype(int), 0, size - 1)
    inside = (points[:, 0] >= 0) & (points[:, 0] < size) & (points[:, 1] >= 0) & (points[:, 1] < size)
    mask[rows[inside], cols[inside]] = True
    if width > 1:
        mask = ndimage.binary_dilation(mask, iterations=width // 2)
    return mask


def _center(size: int, rng: np.random.Generator, margin: float = 0.15) -> np.ndarray:
    return rng.uniform(margin * size, (1 - margin) * size, 2)


def _scratch(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = image.shape[0]
    length = size * rng.uniform(0.2, 0.7)
    start = _center(size, rng, 0.1)
    heading = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.sin(heading), np.cos(heading)])
    bend = (start + end) / 2 + rng.normal(0, length * 0.2, 2)  # quadratic Bezier control point
    t = np.linspace(0, 1, int(length * 3) + 2)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    width = 1 if rng.random() < 0.6 else 2
    stroke = _stamp(points, size, width)
    alpha = _soft(stroke)
    sign = 1.0 if rng.random() < 0.6 else -1.0  # scratches mostly catch the light
    delta = sign * rng.uniform(0.25, 0.6) * strength
    image += alpha[..., None] * delta
    return stroke


def _crack(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = image.shape[0]

    def walk(start: np.ndarray, heading: float, steps: int) -> np.ndarray:
        turns = np.cumsum(rng.normal(0, 0.35, steps)) + heading
        moves = np.stack([np.sin(turns), np.cos(turns)], axis=1)
        return start + np.cumsum(moves, axis=0)

    main = walk(_center(size, rng), rng.uniform(0, 2 * np.pi), int(size * rng.uniform(0.2, 0.6)))
    paths = [main]
    for _ in range(int(rng.integers(1, 4))):
        origin = main[int(rng.integers(len(main)))]
        paths.append(walk(origin, rng.uniform(0, 2 * np.pi), int(len(main) * rng.uniform(0.2, 0.5)) + 2))
    stroke = _stamp(np.concatenate(paths), size, 1)
    if rng.random() < 0.5:  # the main crack often opens wider than its branches
        stroke |= _stamp(main[: len(main) // 2], size, 2)
    alpha = _soft(stroke, 0.5)
    image *= 1.0 - alpha[..., None] * rng.uniform(0.45, 0.85) * strength
    return stroke


def _ellipse_radius(size: int, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Normalised elliptical radius around a random centre (1 on the ellipse's edge)."""
    cy, cx = _center(size, rng)
    a = max(1.5, size * rng.uniform(low, high))
    b = a * rng.uniform(0.6, 1.0)
    theta = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = y - cy, x - cx
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / a
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / b
    return np.sqrt(u**2 + v**2)


def _hole(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = image.shape[0]
    radius = _ellipse_radius(size, rng, 0.02, 0.08)
    inside = radius < 1.0
    depth = np.clip(1.2 - radius, 0, 1) ** 0.5  # darker towards the centre
    rim = np.clip(1.0 - np.abs(radius - 1.15) / 0.15, 0, 1)  # a lit ring just outside the hole
    darkness = rng.uniform(0.6, 0.95) * strength
    image *= 1.0 - (depth * darkness)[..., None]
    image += (rim * rng.uniform(0.08, 0.2) * strength)[..., None]
    return inside


def _stain(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = image.shape[0]
    radius = _ellipse_radius(size, rng, 0.06, 0.2)
    # Irregular outline: the radius is perturbed by smooth noise before the soft threshold.
    wobble = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)).astype(np.float32), size * 0.04)
    wobble /= wobble.std() + 1e-6
    alpha = np.clip((1.0 - (radius + 0.15 * wobble)) / 0.35, 0, 1)
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: soft edges
    colour = rng.choice([np.array([0.35, 0.25, 0.1]), np.array([0.1, 0.1, 0.12]), rng.uniform(0, 1, 3)])
    opacity = rng.uniform(0.35, 0.7) * max(strength, 0.5)  # a fainter stain is invisible on any texture
    image += (alpha * opacity)[..., None] * (colour[None, None, :] - image)
    return alpha > 0.5


def _contamination(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    size = image.shape[0]
    center = _center(size, rng)
    spread = size * rng.uniform(0.02, 0.08)
    count = int(rng.integers(5, 30))
    specks = center + rng.normal(0, spread, (count, 2))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    alpha = np.zeros((size, size), dtype=np.float32)
    for (cy, cx), r in zip(specks, rng.uniform(0.6, 2.2, count)):
        alpha = np.maximum(alpha, np.clip(r + 0.5 - np.hypot(y - cy, x - cx), 0, 1))
    colour = rng.choice([np.zeros(3), np.ones(3), rng.uniform(0, 1, 3)])
    opacity = rng.uniform(0.5, 0.95) * strength
    image += (alpha * opacity)[..., None] * (colour[None, None, :] - image)
    return alpha > 0.3


_DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = {
    "scratch": _scratch,
    "crack": _crack,
    "hole": _hole,
    "stain": _stain,
    "contamination": _contamination,
}


# ----------------------------------------------------------------------------------------------- camera


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting (brightness/contrast), mild optical blur and sensor noise, after the defects are drawn."""
    mean = float(image.mean())
    image = (image - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.08, 0.08)
    sigma = rng.uniform(0.0, 0.8)
    if sigma > 0.3:
        image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0))
    image = image + rng.normal(0, rng.uniform(0.005, 0.025), image.shape)
    return np.clip(image, 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255.0).astype(np.uint8)


def _check_arguments(n_images, image_size, channels, defect_rate, surfaces) -> tuple[str, ...]:
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE
    ):
        raise ValueError(
            f"image_size must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {image_size!r}"
        )
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if not 0.0 <= float(defect_rate) <= 1.0:
        raise ValueError(f"defect_rate must be between 0 and 1, got {defect_rate!r}")
    if isinstance(surfaces, str):
        surfaces = (surfaces,)
    surfaces = tuple(surfaces)
    unknown = [name for name in surfaces if name not in SURFACES]
    if not surfaces or unknown:
        raise ValueError(
            f"surfaces must be a non-empty selection of {list(SURFACES)}, got unknown {unknown}"
            if unknown
            else f"surfaces must name at least one of {list(SURFACES)}"
        )
    return surfaces


def generate_images(
    out_dir: str | Path,
    n_images: int = 200,
    *,
    image_size: int = 128,
    channels: int = 3,
    defect_rate: float = 0.3,
    surfaces: tuple[str, ...] | list[str] = SURFACES,
    seed: int = 0,
) -> pd.DataFrame:
    """Writes `n_images` inspection images, defect masks and a manifest under `out_dir`.

    Layout: `out_dir/images/img_00000.png`, `out_dir/masks/img_00000.png` (defective images only: a
    single-channel PNG, 255 on the defect, same size as the image) and `out_dir/manifest.csv`, whose
    paths are relative to `out_dir` so the folder can be moved or zipped as a whole.

    Exactly `round(n_images * defect_rate)` images are defective, and defect types and surfaces are dealt
    round-robin before shuffling, so even a small set has every type and surface (a purely random draw
    could leave a type out and silently weaken the evaluation). Each defective image has one or two
    defects; `defect_type` names the first.

    Returns the manifest as a DataFrame with columns `MANIFEST_COLUMNS` (contract `vision_qc_images`).
    """
    surfaces = _check_arguments(n_images, image_size, channels, defect_rate, surfaces)
    n_images, image_size = int(n_images), int(image_size)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    sequence = np.random.SeedSequence(seed)
    plan_rng = np.random.default_rng(sequence.spawn(1)[0])
    image_seeds = sequence.spawn(n_images)

    n_defect = int(round(n_images * float(defect_rate)))
    is_defect = np.zeros(n_images, dtype=bool)
    is_defect[plan_rng.permutation(n_images)[:n_defect]] = True
    first_types = list(np.resize(plan_rng.permutation(len(DEFECT_TYPES)), n_defect))
    plan_rng.shuffle(first_types)
    surface_plan = np.resize(plan_rng.permutation(len(surfaces)), n_images)
    plan_rng.shuffle(surface_plan)

    rows = []
    type_iter = iter(first_types)
    for index in range(n_images):
        rng = np.random.default_rng(image_seeds[index])
        surface = surfaces[int(surface_plan[index])]
        gray = _surface(surface, image_size, rng)
        image = _tint(gray, surface, rng)
        mask = np.zeros((image_size, image_size), dtype=bool)
        defect_type = "none"
        if is_defect[index]:
            defect_type = DEFECT_TYPES[int(next(type_iter))]
            kinds = [defect_type]
            if rng.random() < 0.25:
                kinds.append(DEFECT_TYPES[int(rng.integers(len(DEFECT_TYPES)))])
            for kind in kinds:
                for _attempt in range(10):  # a defect drawn mostly off-image is redrawn, never left empty
                    trial = image.copy()
                    drawn = _DEFECTS[kind](trial, rng, rng.uniform(0.3, 1.0))
                    if drawn.sum() >= 3:
                        image, mask = trial, mask | drawn
                        break
        image = _camera(image, rng)
        if channels == 1:
            pixels = _to_uint8(image @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
        else:
            pixels = _to_uint8(image)

        name = f"img_{index:05d}.png"
        image_path = f"images/{name}"
        Image.fromarray(pixels).save(out / image_path)
        mask_path = ""
        if defect_type != "none":
            mask_path = f"masks/{name}"
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / mask_path)
        rows.append(
            {
                "image_path": image_path,
                "label": "defect" if defect_type != "none" else "good",
                "defect_type": defect_type,
                "mask_path": mask_path,
                "surface": surface,
                "width": image_size,
                "height": image_size,
                "channels": channels,
            }
        )

    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest
