"""The vision QC app: what it brings to the core's pipeline (images, candidates, metrics, the edge
target), one part per class, top to bottom. Everything generic — validation, fitting, calibration, gate,
export, serving — is the core's."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solutions_core.solution import (
    Baseline,
    Candidate,
    Chosen,
    Context,
    Data,
    Edge,
    Evaluation,
    Gate,
    KerasCandidate,
    Metrics,
    Models,
    Outputs,
    Serving,
    SkipCandidate,
    Solution,
    Splits,
    Tables,
)
from vision_qc.config import VisionQCConfig

TABLE = "vision_qc_images"
DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what tf.io.decode_image reads in the graph
MASK_RESOLUTION = 64  # masks are kept at this size for pixel AUROC


class VisionData(Data):
    def generate(self, context: Context, workdir: Path) -> Tables:
        from vision_qc.generate import generate_images

        config: VisionQCConfig = context.config
        folder = Path(workdir) / (
            f"seed{config.seed}-n{config.size}-px{config.source_image_size}-c{config.channels}-d{config.defect_rate}"
        )
        manifest_path = folder / "manifest.csv"
        if manifest_path.exists():  # images are deterministic in these settings: reuse them
            manifest = pd.read_csv(manifest_path, keep_default_na=False)
        else:
            manifest = generate_images(
                folder,
                config.size,
                image_size=config.source_image_size,
                channels=config.channels,
                defect_rate=config.defect_rate,
                seed=config.seed,
            )
        manifest = manifest.copy()
        for column in ("image_path", "mask_path"):
            manifest[column] = [str(folder / value) if value else "" for value in manifest[column]]
        return {TABLE: manifest}

    def load(self, context: Context, source: str) -> Tables:
        """A manifest file, a folder of class subfolders, or an MVTec-style tree (see manifest.py).
        Labels other than ``config.good_label`` are defects; the original label is kept as defect_type."""
        from PIL import Image

        from vision_qc.datasets import resolve_source
        from vision_qc.manifest import load_manifest

        good_label = context.config.good_label
        frame = load_manifest(resolve_source(source))  # "dataset:mnist-5k" is written out as PNGs first
        original = frame["label"].astype(str)
        if "defect_type" not in frame.columns:
            frame["defect_type"] = np.where(original == good_label, "none", original)
        # "unknown" (a flat folder of unlabelled images) stays, so the contract says why it cannot train.
        frame["label"] = np.where(original == good_label, "good", np.where(original == "unknown", original, "defect"))
        sizes = []
        for path in frame["image_path"]:
            try:
                with Image.open(path) as image:  # reads the header only
                    sizes.append((image.width, image.height, len(image.getbands())))
            except (OSError, ValueError) as problem:
                raise ValueError(f"{path}: not a readable image ({problem})") from problem
        frame["width"], frame["height"], frame["channels"] = zip(*sizes) if sizes else ([], [], [])
        if "surface" not in frame.columns:
            frame["surface"] = None
        columns = ["image_path", "label", "defect_type", "mask_path", "surface", "width", "height", "channels"]
        return {TABLE: frame[columns].reset_index(drop=True)}

    def prepare(self, context: Context, tables: Tables) -> pd.DataFrame:
        """Manifest -> examples: the encoded image bytes (decoded later, in the graph), a 0/1 label and
        the defect mask at a fixed small size for pixel-level metrics."""
        from vision_qc.manifest import read_image, read_mask

        frame = tables[TABLE].reset_index(drop=True).copy()
        frame["label_id"] = (frame["label"].astype(str) != "good").astype("int64")
        images = []
        for path in frame["image_path"]:
            if Path(path).suffix.lower() in DECODABLE:
                images.append(Path(path).read_bytes())
            else:  # e.g. TIFF: re-encode losslessly as PNG for the graph's decoder
                images.append(_png_bytes(read_image(path)))
        frame["image"] = images
        masks = []
        for path, label in zip(frame["mask_path"], frame["label_id"]):
            if isinstance(path, str) and path:
                masks.append(read_mask(path, size=MASK_RESOLUTION))
            else:
                masks.append(np.zeros((MASK_RESOLUTION, MASK_RESOLUTION), np.float32) if label == 0 else None)
        frame["mask"] = masks
        return frame

    def split(self, context: Context, examples: pd.DataFrame) -> Splits:
        """Stratified random split: images have no time order, and every split needs both classes."""
        config = context.config
        rng = np.random.default_rng(config.seed)
        parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
        for _, group in examples.groupby("label_id"):
            index = rng.permutation(group.index.to_numpy())
            n_valid = int(round(len(index) * config.valid_fraction))
            n_test = int(round(len(index) * config.test_fraction))
            parts["valid"] += list(index[:n_valid])
            parts["test"] += list(index[n_valid : n_valid + n_test])
            parts["train"] += list(index[n_valid + n_test :])
        frames = {name: examples.loc[sorted(rows)].reset_index(drop=True) for name, rows in parts.items()}
        for name, frame in frames.items():
            if frame.empty:
                raise ValueError(f"The {name} split is empty: {len(examples)} images are too few for these fractions.")
        return Splits(**frames)


class VisionModels(Models):
    def candidates(self, context: Context) -> list[Candidate | KerasCandidate]:
        from vision_qc import model

        config: VisionQCConfig = context.config

        def needs_defects(train: pd.DataFrame) -> None:
            defects = int(train["label_id"].sum())
            if defects < config.min_defects_for_supervised:
                raise SkipCandidate(
                    f"only {defects} defective training images (min_defects_for_supervised="
                    f"{config.min_defects_for_supervised}); the one-class model needs none"
                )

        def build_supervised(train: pd.DataFrame) -> Any:
            needs_defects(train)
            return model.build_training_model(config, train)

        def fit_pixel_linear(splits: Splits, trainer: Any) -> Any:
            needs_defects(splits.train)
            return model.fit_pixel_linear(splits, config)

        def fit_cnn(splits: Splits, trainer: Any) -> Any:
            needs_defects(splits.train)
            return model.fit_cnn(splits, trainer, config)

        datasets = model.Datasets(config)  # fit and the quantization-aware fine-tune share them
        return [
            KerasCandidate(
                "supervised",
                build_model=build_supervised,
                compile_options=model.compile_options(config),
                make_dataset=datasets,
                finish=model.finish_training(config, datasets),
            ),
            # A Gaussian fitted with numpy/scikit-learn on the extractor's features (inference only).
            Candidate("one_class", fit=lambda splits, trainer: model.fit_feature_gaussian(splits.train, config, valid=splits.valid)),
            # Logistic regression on downsampled pixels, in the graph: never worse than that family.
            Candidate("pixel_linear", fit=fit_pixel_linear),
            # A small CNN from scratch, end to end through trainer.fit (shapes the statistics cannot see).
            Candidate("cnn", fit=fit_cnn),
        ]


class VisionEvaluation(Evaluation):
    def evaluate(self, context: Context, examples: pd.DataFrame, outputs: Outputs) -> Metrics:
        """The served outputs as they are: scores for the ranking metrics, the served ``decision`` for
        the decision metrics, the anomaly maps against the masks."""
        from vision_qc.evaluate import image_metrics, pixel_auroc

        labels = examples["label_id"].to_numpy()
        metrics = image_metrics(labels, outputs["defect_score"], outputs["decision"])
        maps, masks = outputs.get("anomaly_map"), list(examples["mask"])
        # NaN without maps (a baseline that has none) and without masks (image labels only).
        metrics["pixel_auroc"] = (
            float(pixel_auroc(maps, masks, labels, resolution=MASK_RESOLUTION)) if maps is not None else float("nan")
        )
        return metrics

    def calibrate(self, context: Context, examples: pd.DataFrame, outputs: Outputs) -> dict[str, float]:
        """The threshold that balances recall and false alarms on validation (see ``served_threshold``):
        a score the served model actually gives, as the float32 the module holds, so the server's
        decisions change exactly there and the version's metadata and the edge models carry that number."""
        from vision_qc.evaluate import served_threshold

        return {"threshold": served_threshold(examples["label_id"].to_numpy(), outputs["defect_score"])}

    def baselines(self, context: Context, splits: Splits) -> dict[str, Baseline]:
        from vision_qc.evaluate import (
            HistogramLogisticBaseline,
            PatchGaussianBaseline,
            PixelLogisticBaseline,
            choose_threshold,
        )

        config: VisionQCConfig = context.config
        images = {name: baseline_pixels(getattr(splits, name), config) for name in ("train", "valid", "test")}
        labels = {name: getattr(splits, name)["label_id"].to_numpy() for name in ("train", "valid", "test")}
        models: dict[str, Any] = {"patch_gaussian": PatchGaussianBaseline()}
        if len(np.unique(labels["train"])) == 2:
            models["histogram_logistic"] = HistogramLogisticBaseline()
            # The first model a client tries: logistic regression on 32x32 (or smaller) standardized pixels.
            models["pixel_logistic"] = PixelLogisticBaseline()
        results = {}
        for name, baseline in models.items():
            if isinstance(baseline, PixelLogisticBaseline):  # its regularization is chosen on validation
                baseline.fit(images["train"], labels["train"], images["valid"], labels["valid"])
            else:
                baseline.fit(images["train"], labels["train"])
            valid_scores, _ = baseline.score(images["valid"])
            threshold = float(choose_threshold(labels["valid"], valid_scores))  # the baseline's own
            test_scores, test_maps = baseline.score(images["test"])
            # The baseline's test outputs as the served model gives them, judged by the same `evaluate`
            # (the core's paired bootstrap of model - baseline calls it on resampled rows of both).
            served = {
                "defect_score": np.asarray(test_scores, np.float32),
                "decision": np.where(test_scores >= threshold, b"defect", b"good").astype(object),
            }
            if test_maps is not None:
                served["anomaly_map"] = np.asarray(test_maps, np.float32)
            metrics = self.evaluate(context, splits.test, served)
            results[name] = Baseline(metrics, outputs={"scores": test_scores}, served=served)
        return results

    def report(
        self, context: Context, examples: pd.DataFrame, outputs: Outputs, baselines: Mapping[str, Baseline], out_dir: Path
    ) -> list[Path]:
        from vision_qc.evaluate import plot_confusion, plot_overlays, plot_roc

        out_dir = Path(out_dir)
        labels = examples["label_id"].to_numpy()
        scores = np.asarray(outputs["defect_score"])
        decisions = outputs["decision"]  # as served
        curves = {"model": scores}
        curves.update({name: b.outputs["scores"] for name, b in baselines.items() if "scores" in b.outputs})
        return [
            plot_roc(labels, curves, out_dir / "roc.png"),
            plot_confusion(labels, decisions, out_dir / "confusion.png"),
            plot_overlays(
                baseline_pixels(examples, context.config),
                np.asarray(outputs["anomaly_map"]),
                scores,
                labels,
                decisions,
                out_dir / "anomaly_maps.png",
                masks=list(examples["mask"]),
            ),
        ]


class VisionServing(Serving):
    # A request carries only the model's input (the image), which the server always accepts; the
    # manifest's columns (ids, labels, metadata) describe stored files, not requests: the default
    # request schema (nothing extra, nothing optional) is right.

    def module(self, context: Context, fitted: Any) -> Any:
        from vision_qc.model import serving_module

        return serving_module(fitted, context.config)  # both candidates fit the two-output network itself

    def golden_instances(self, context: Context, examples: pd.DataFrame, count: int = 8) -> list[dict[str, Any]]:
        defects = examples[examples["label_id"] == 1].head(count // 2)
        rows = pd.concat([defects, examples[examples["label_id"] == 0].head(count - len(defects))])
        return [{"image": {"b64": base64.b64encode(data).decode()}} for data in rows["image"]]

    def check(self, context: Context, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Checks each uploaded image before the graph decodes it (a corrupt or huge image is a 400 with
        a reason, not a decoder crash), and turns images sent as arrays into PNG bytes."""
        return [_checked_instance(index, instance, context.config) for index, instance in enumerate(instances)]


class VisionEdge(Edge):
    def export(self, context: Context, chosen: Chosen, splits: Splits, out_dir: Path) -> Any:
        """float16 and int8 TFLite models with the calibrated threshold inside, and their parity gate."""
        config: VisionQCConfig = context.config
        if not config.edge.enabled:
            return None
        from vision_qc.edge import export_edge_models

        threshold = chosen.parameters["threshold"]  # the calibrated one, recorded in the version
        return export_edge_models(chosen.module, splits, chosen.valid_outputs, threshold, config, out_dir)


# ---- helpers the parts share -------------------------------------------------------------------------


def baseline_pixels(frame: pd.DataFrame, config: VisionQCConfig) -> np.ndarray:
    """Small arrays for the baselines and the report, decoded outside the graph (they are not exported)."""
    from vision_qc.manifest import read_image

    size = min(config.image_size, 128)
    return np.stack([read_image(path, size=size, channels=config.channels) for path in frame["image_path"]])


def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _checked_instance(index: int, instance: dict[str, Any], config: VisionQCConfig) -> dict[str, Any]:
    from PIL import Image

    from solutions_core.export import decode_b64

    where = f"instances[{index}].image"
    value = instance.get("image")
    if value is None:
        raise ValueError(f'{where}: missing; send {{"b64": "<base64 PNG or JPEG>"}} or an array of pixels')
    if isinstance(value, list):  # pixels as nested lists: [H][W] or [H][W][C], values 0..255
        try:
            pixels = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as problem:
            raise ValueError(f"{where}: an array image must be nested lists of numbers ({problem})") from problem
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"{where}: an array image must be [height][width] or [height][width][1|3|4], got shape {list(pixels.shape)}")
        if pixels.shape[0] * pixels.shape[1] > config.max_image_pixels:
            raise ValueError(f"{where}: image too large: {pixels.shape[1]}x{pixels.shape[0]} > {config.max_image_pixels} pixels")
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"{where}: pixel values must be between 0 and 255")
        return {**instance, "image": _png_bytes(np.round(pixels).astype(np.uint8))}
    try:
        data = decode_b64(value)
    except ValueError as problem:
        raise ValueError(f"{where}: {problem}") from problem
    if not isinstance(data, bytes):
        raise ValueError(f'{where}: send {{"b64": "<base64 PNG or JPEG>"}} or an array of pixels, not {type(data).__name__}')
    try:
        with Image.open(io.BytesIO(data)) as image:  # the header only: a decompression bomb is never decoded
            width, height, kind = image.width, image.height, image.format
    except Image.DecompressionBombError as problem:
        raise ValueError(f"{where}: image too large ({problem})") from problem
    except Exception as problem:
        raise ValueError(f"{where}: not a PNG, JPEG, BMP or GIF image ({type(problem).__name__})") from problem
    if kind not in ("PNG", "JPEG", "BMP", "GIF"):
        raise ValueError(f"{where}: {kind} images are not accepted; send PNG, JPEG, BMP or GIF")
    if width * height > config.max_image_pixels:
        raise ValueError(f"{where}: image too large: {width}x{height} > {config.max_image_pixels} pixels")
    return {**instance, "image": data}


class VisionQC(Solution):
    name = "vision_qc"
    title = "Vision quality control"
    description = "Good or defective from an image, with an anomaly map; supervised and one-class models; TFLite int8 edge export."
    contracts = (TABLE,)
    gate = Gate("image_auroc", higher_is_better=True)
    config_class = VisionQCConfig
    predict_batch_size = 32
    data = VisionData()
    models = VisionModels()
    evaluation = VisionEvaluation()
    serving = VisionServing()
    edge = VisionEdge()

    def demo_config(self) -> VisionQCConfig:
        # Half the default images keep the laptop demo to a few minutes on 2 cores.
        return self.make_config({"size": 400})

    def tiny_config(self) -> VisionQCConfig:
        return self.make_config(
            {
                "size": 64,
                "image_size": 64,
                "source_image_size": 64,
                "defect_rate": 0.4,
                "valid_fraction": 0.25,
                "test_fraction": 0.25,
                "training": {"epochs": 3, "early_stopping_patience": 0},
                "edge": {"calibration_images": 16, "latency_runs": 5},
                # Plumbing runs on seconds of data: they must publish to test what follows; the
                # baseline rule of the gate is tested on the core (tests/core/test_gate.py).
                "gate": {"beat_baselines": False},
            }
        )
