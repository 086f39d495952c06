"""Typed configuration of the vision QC app, defaults in code. A fork overrides fields in a YAML file
(``solutions train vision_qc --config my.yaml``), e.g. ``source: /data/line7`` and ``image_size: 160``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from solutions_core.solution import SolutionConfig, TrainingConfig


class BackboneConfig(BaseModel):
    """A keras-hub ``EfficientNetBackbone`` in a small "lite" configuration, built from config with
    random weights (nothing is downloaded). One entry per stage; the defaults give stride 32 at the
    end and a 14x14 anomaly map at 224x224 (measured: ~24 training images/s on 2 CPU cores).

    relu6 and no squeeze-excite, because int8 hard-swish is not taken by XNNPACK and would split the
    edge model into many delegate partitions (see benchmarks/README.md).
    """

    model_config = ConfigDict(extra="forbid")

    stem_filters: int = Field(default=16, ge=4)
    stage_filters: list[int] = Field(default_factory=lambda: [16, 24, 32, 64, 96, 128])
    stage_repeats: list[int] = Field(default_factory=lambda: [1, 2, 2, 2, 2, 1])
    stage_strides: list[int] = Field(default_factory=lambda: [2, 2, 2, 1, 2, 1])
    stage_expansion: list[int] = Field(default_factory=lambda: [1, 4, 4, 4, 4, 4])
    head_filters: int = Field(default=64, ge=4, description="Channels of the anomaly-map head.")
    enabled: bool = Field(
        default=False,
        description="Add the backbone's features beside the patch statistics. Off by default: with random "
        "weights and a 2-core budget its features did not help here and cost most of the edge latency.",
    )
    frozen: bool = Field(default=True, description="Keep the backbone's random weights and train only the head (fast on CPU).")
    dropout_rate: float = Field(default=0.1, ge=0, lt=1)


class SyntheticDefectConfig(BaseModel):
    """Defects pasted onto good training images for the supervised candidate (CutPaste-style): patches
    of the image itself moved and recoloured, and thin "scars". Generic on purpose — they are not the
    generator's defect types, so the model is not tuned to the test's defects."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.2, ge=0, lt=1, description="Share of good training images that get one (0: real defects only).")
    min_area: float = Field(default=0.005, gt=0, lt=1, description="Smallest patch, as a share of the image.")
    max_area: float = Field(default=0.05, gt=0, lt=1)
    scar_share: float = Field(default=0.5, ge=0, le=1, description="Share of synthetic defects that are thin scars.")


class CNNConfig(BaseModel):
    """The ``cnn`` candidate: a small convolutional network trained end to end from scratch (the core's
    ``trainer.fit``, with the app's augmentation) on image labels. It learns what the fixed patch
    statistics cannot see (shapes, strokes, layouts); ``pixel_linear`` guards the simplest case."""

    model_config = ConfigDict(extra="forbid")

    filters: list[int] = Field(default_factory=lambda: [16, 32, 64], description="Channels per block; each block halves the map.")
    input_side: int = Field(
        default=64, ge=8, description="Larger images are block-averaged down to about this side first (CPU cost; thin defects fade)."
    )
    dropout_rate: float = Field(default=0.2, ge=0, lt=1)
    epochs: int | None = Field(default=None, ge=1, description="Default: training.epochs.")


class EdgeConfig(BaseModel):
    """The TFLite edge export and the gate it must pass to be published."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    calibration_images: int = Field(default=200, ge=1, description="Representative training images for int8.")
    min_decision_agreement: float = Field(default=0.99, gt=0, le=1)
    max_auroc_drop: float = Field(default=0.01, ge=0, le=1)
    quantization_aware: bool = Field(
        default=True, description="Compute the float network on the int8 grids (the edge model then decides alike)."
    )
    quantization_aware_epochs: int = Field(default=3, ge=0, description="Supervised fine-tuning epochs on the int8 grids.")
    latency_runs: int = Field(default=50, ge=1, description="Timed single-image runs (1 thread) for the report.")


class VisionQCConfig(SolutionConfig):
    size: int = Field(default=800, ge=20, description="Images the embedded generator makes.")
    image_size: int = Field(
        default=224,
        ge=8,
        description="Images are resized to this square in the graph; any size (e.g. 28 or 100). The patch "
        "statistics pad it (repeating the border) to a multiple of map_stride; only the backbone needs a multiple of 32.",
    )
    channels: Literal[1, 3] = Field(default=3, description="1 (grayscale) or 3 (RGB) channels the model sees.")
    source_image_size: int = Field(default=256, ge=32, description="Side of the generated images.")
    defect_rate: float = Field(default=0.3, gt=0, lt=1, description="Share of defective generated images.")
    good_label: str = Field(default="good", description="Manifest label of good parts; any other label is a defect.")
    max_image_pixels: int = Field(default=4096 * 4096, ge=1, description="Larger uploads are refused (400).")
    map_stride: Literal[8, 16] = Field(default=16, description="Anomaly-map cell size in pixels (8: finer maps, 4x the cells).")
    photometric_augmentation: bool = Field(default=True, description="Random brightness and contrast (Keras layers) in training.")
    map_loss_weight: float = Field(default=1.0, ge=0, description="Weight of the per-location (mask) loss beside the image loss.")
    quantization_noise: float = Field(default=0.01, ge=0, description="Training noise on the head's inputs (a mild regularizer).")
    min_defects_for_supervised: int = Field(default=4, ge=1, description="Fewer defective training images skip the supervised candidates.")
    flips: bool = Field(default=True, description="Random flips in training (off for parts with an up and a left, e.g. digits or text).")
    calibrate_scores: bool = Field(
        default=True,
        description="Platt-scale each candidate's score on validation images, inside the graph, so defect_score reads as a probability.",
    )
    pixel_linear_side: int = Field(default=32, ge=1, description="The pixel_linear candidate sees images block-averaged to about this side.")
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    synthetic_defects: SyntheticDefectConfig = Field(default_factory=SyntheticDefectConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    # The head over fixed features needs tens of cheap epochs (about 4 s each for 560 images at 224 px on
    # 2 cores). Validation AUROC on ~120 images is noisy (it dipped for 8+ epochs before climbing from
    # 0.69 to 0.82 on one seed), hence the long patience; the best epoch's weights are kept.
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(
            epochs=60,
            batch_size=16,
            learning_rate=3e-3,
            early_stopping_patience=20,
            early_stopping_monitor="val_defect_score_auc",
            early_stopping_mode="max",
        )
    )

    @model_validator(mode="after")
    def _backbone_needs_multiples_of_32(self) -> "VisionQCConfig":
        # The keras-hub backbone halves the image five times; the patch statistics pad any size.
        if self.backbone.enabled and self.image_size % 32:
            raise ValueError(f"image_size {self.image_size}: backbone.enabled needs a multiple of 32 (e.g. {32 * max(1, round(self.image_size / 32))}).")
        return self
