"""The seam between the core and an app.

A solution supplies domain knowledge only: its data (a generator and loaders), its contracts, how raw
tables become modeling examples, which candidate models to train, how to wrap a trained model for
serving, and how to score it. The core owns the loop around that: validation, storage, splits, fitting
Keras models under the right distribution strategy, evaluation against baselines, the champion gate,
export, registration, serving and orchestration.

This module must stay importable without TensorFlow (the registry imports it to type-check entries).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras
    import tensorflow as tf

    from solutions_core.model_registry import ModelVersion
    from solutions_core.settings import Settings
    from solutions_core.strategy import Runtime


class TrainingConfig(BaseModel):
    """Knobs of the core's Keras fit loop, shared by every app."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=512, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    early_stopping_patience: int = Field(default=2, ge=0, description="0 disables early stopping.")
    early_stopping_monitor: str = Field(default="val_loss", description="Keras log key to watch, e.g. val_auprc.")
    early_stopping_mode: str = Field(default="min", pattern="^(min|max)$")
    steps_per_epoch: int | None = Field(default=None, ge=1, description="Cap steps (tests use a few).")


class SolutionConfig(BaseModel):
    """Fields every app's config has; apps subclass it and add their own with defaults in code.

    A fork changes behaviour by writing a YAML file of overrides (``--config``), not by editing code.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    size: int = Field(default=100_000, ge=100, description="Rows the embedded generator makes.")
    source: str | None = Field(default=None, description="Data to load instead of generating (path).")
    contract: str | None = Field(default=None, description="Contract name or path; default: the app's.")
    table_contracts: dict[str, str] = Field(
        default_factory=dict,
        description="Contract name or path per secondary table (e.g. {rec_items: my_items}); "
        "`contract` replaces the primary one.",
    )
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    candidates: list[str] | None = Field(default=None, description="Train only these candidates.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)


@dataclass
class Splits:
    """Time-ordered train / validation / test examples (validation picks the candidate and any
    threshold; test is touched once, for the report and the champion gate)."""

    train: Any
    valid: Any
    test: Any

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("train", "valid", "test")}


@dataclass
class KerasCandidate:
    """A Keras model the core fits with ``model.fit`` under the runtime's distribution strategy.

    ``build_model(train_examples)`` runs inside the strategy scope and returns an uncompiled
    Functional model whose inputs are raw features (preprocessing layers inside, adapted on the
    training examples). ``make_dataset(examples, training, batch_size)`` returns a finite ``tf.data.Dataset``
    of ``(features, labels)`` or ``(features, labels, sample_weights)``. ``finish_training(model,
    splits, runtime, train_data, valid_data)``, when given, runs after ``fit`` inside the strategy scope
    with the datasets ``fit`` used and returns the model to serve (e.g. quantization-aware fine-tuning,
    or distillation into a smaller model).
    """

    name: str
    build_model: Callable[[Any], "keras.Model"]
    compile_options: Callable[[TrainingConfig], dict[str, Any]]
    make_dataset: Callable[[Any, bool, int], "tf.data.Dataset"]
    finish_training: Callable[["keras.Model", "Splits", Any, Any, Any], "keras.Model"] | None = None
    kind: ClassVar[str] = "keras"


@dataclass
class CustomCandidate:
    """A model with its own learner (e.g. YDF gradient boosted trees): ``fit(splits, runtime)``
    returns the fitted model, which ``Solution.serving_module`` then wraps."""

    name: str
    fit: Callable[[Splits, "Runtime"], Any]
    kind: ClassVar[str] = "custom"


Candidate = KerasCandidate | CustomCandidate


class SkipCandidate(Exception):
    """Raised by a candidate's ``build_model`` or ``fit`` when this data cannot train it (e.g. a
    supervised model on a line with no defect images): the core logs the reason and goes on with the
    other candidates instead of failing the run."""


@dataclass
class EdgeExport:
    """What ``Solution.export_edge`` made: edge model files (published inside the version, under
    ``assets.extra/``, only when ``passed``) and a JSON-ready report (parity, size, latency)."""

    files: dict[str, Path]
    report: dict[str, Any]
    passed: bool


@dataclass
class Evaluation:
    """Metrics of one model on one split; ``gate_value`` is the number the champion gate compares."""

    metrics: dict[str, float]
    gate_metric: str
    higher_is_better: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def gate_value(self) -> float:
        return float(self.metrics[self.gate_metric])

    def beats(self, other: float | None, min_delta: float = 0.0) -> bool:
        if other is None or not np.isfinite(other):
            return True
        if self.higher_is_better:
            return self.gate_value > other + min_delta
        return self.gate_value < other - min_delta


@dataclass
class BatchContext:
    """Everything ``Solution.batch`` gets for one logical date (built by ``solutions_core.batch``).

    ``tables`` are validated against the app's contracts (from ``--source`` or the data store, keyed by
    contract name, as ``generate``/``load`` return them). ``output_dir`` is an empty staging folder: write
    the files there; the core then swaps it in as ``<batch_dir>/<app>/date=<logical_date>/`` in one
    rename, so a re-run of a date replaces that date's outputs and readers never see half of them.
    """

    app: str
    settings: "Settings"
    config: SolutionConfig
    champion: "ModelVersion"
    tables: Mapping[str, pd.DataFrame]
    logical_date: dt.date
    output_dir: Path
    _signature: Any = field(default=None, repr=False)

    def signature(self) -> Any:
        """The champion's ``serving_default`` signature, loaded once (imports TensorFlow)."""
        if self._signature is None:
            from solutions_core.export import load_signature

            custom_ops = self.champion.metadata().get("custom_ops", ())
            self._signature = load_signature(self.champion.path, custom_ops)
        return self._signature

    def predict(self, frame: pd.DataFrame, batch_size: int = 8192) -> dict[str, np.ndarray]:
        """The champion's outputs on ``frame`` (raw features by name, as a ``:predict`` request)."""
        from solutions_core.export import predict_frame

        return predict_frame(self.signature(), frame, batch_size)


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Solution:
    """Base class of an app. Subclasses set the class attributes and override the hooks.

    Hooks that may import TensorFlow do it inside the method, never at module import.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    contracts: ClassVar[tuple[str, ...]]  # data_contracts/<name>.yaml, the first is the primary table
    gate_metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    config_class: ClassVar[type[SolutionConfig]] = SolutionConfig
    # Python modules that register custom TF ops the exported SavedModel needs (imported by the server
    # before loading, and recorded in the model metadata so a plain loader knows too).
    custom_ops: ClassVar[tuple[str, ...]] = ()
    # Rows per call when the core runs a model over a table: images need far smaller batches than
    # tabular rows to stay inside memory.
    predict_batch_size: ClassVar[int] = 8192

    # ---- configuration -------------------------------------------------------------------------
    def make_config(self, overrides: Mapping[str, Any] | None = None) -> SolutionConfig:
        """The app's defaults with ``overrides`` deep-merged in: overriding ``training.epochs`` keeps
        the app's other training defaults instead of resetting them to the generic ones."""
        defaults = self.config_class().model_dump()
        return self.config_class.model_validate(deep_merge(defaults, dict(overrides or {})))

    def demo_config(self) -> SolutionConfig:
        """What ``solutions demo`` trains: the defaults, unless they take too long for a laptop demo."""
        return self.make_config()

    def tiny_config(self) -> SolutionConfig:
        """A seconds-long configuration (tiny data, few steps) for conformance tests and DAG tests."""
        raise NotImplementedError

    # ---- data ----------------------------------------------------------------------------------
    def generate(self, config: SolutionConfig, workdir: Path | None = None) -> dict[str, pd.DataFrame]:
        """The embedded default: seeded synthetic tables keyed by contract name. ``workdir`` is a
        folder the core owns (under the data dir) for apps whose tables point at files (images)."""
        raise NotImplementedError

    def load(self, source: str, config: SolutionConfig) -> dict[str, pd.DataFrame]:
        """Real data from ``source`` (a file or folder), keyed by contract name."""
        raise NotImplementedError(f"{self.name} cannot load external data yet.")

    def prepare(self, tables: Mapping[str, pd.DataFrame], config: SolutionConfig) -> Any:
        """Validated tables -> modeling examples (feature work that cannot live in the graph).

        It may fill config fields that depend on the data (left unset by the user, e.g. a series'
        frequency); the published metadata records the config as it stood after training."""
        return tables[self.contracts[0]]

    def split(self, examples: Any, config: SolutionConfig) -> Splits:
        raise NotImplementedError

    # ---- models --------------------------------------------------------------------------------
    def candidates(self, config: SolutionConfig) -> list[Candidate]:
        raise NotImplementedError

    def serving_module(self, candidate: Candidate, fitted: Any, config: SolutionConfig) -> "tf.Module":
        """Wrap a fitted model as a ``tf.Module`` with a ``serve`` tf.function whose input signature
        names raw features: this is exactly what is exported and served."""
        raise NotImplementedError

    def ensembles(self, fitted: Mapping[str, Any], config: SolutionConfig) -> list[tuple[Candidate, Any]]:
        """Extra candidates built from already fitted ones (e.g. an average of their scores), as
        ``(candidate, fitted)`` pairs that ``serving_module`` can wrap. They are scored on validation
        like any other candidate. Default: none."""
        return []

    def calibrate(
        self, module: "tf.Module", examples: Any, outputs: Mapping[str, np.ndarray], config: SolutionConfig
    ) -> dict[str, Any]:
        """Tune serving-time parameters (e.g. a decision threshold) on validation outputs."""
        return {}

    def evaluate(self, outputs: Mapping[str, np.ndarray], examples: Any, config: SolutionConfig) -> Evaluation:
        raise NotImplementedError

    def baselines(self, splits: Splits, config: SolutionConfig) -> dict[str, Evaluation]:
        """Simple models trained in the same run and scored on the test split."""
        return {}

    def report(
        self,
        outputs: Mapping[str, np.ndarray],
        examples: Any,
        baselines: Mapping[str, Evaluation],
        out_dir: Path,
        config: SolutionConfig,
    ) -> list[Path]:
        """Write plots (PNG) for people who would rather look than read."""
        return []

    def export_edge(
        self, module: "tf.Module", splits: Splits, valid_outputs: Mapping[str, np.ndarray], config: SolutionConfig, out_dir: Path
    ) -> EdgeExport | None:
        """Build edge models (e.g. TFLite int8) from the chosen module and check them against it on
        validation data (``valid_outputs`` are the module's). None when the app has no edge target."""
        return None

    # ---- batch work ----------------------------------------------------------------------------
    def batch(self, context: BatchContext) -> list[Path]:
        """Scheduled batch work with the champion for ``context.logical_date`` (e.g. score that day's
        transactions, refresh top-k candidates, publish a forecast): write Parquet files into
        ``context.output_dir`` and return their paths. The core validates the input tables first and
        publishes the folder atomically per date (plus DuckDB views over all dates), so this hook only
        computes. Default: no batch work (the app gets no batch DAG and ``solutions batch`` says so)."""
        return []

    @property
    def has_batch(self) -> bool:
        """True when the app overrides ``batch`` (only then does it get a batch DAG)."""
        return type(self).batch is not Solution.batch

    # ---- serving -------------------------------------------------------------------------------
    def golden_instances(self, examples: Any, config: SolutionConfig, count: int = 8) -> list[dict[str, Any]]:
        """JSON-ready request instances drawn from examples (used by conformance tests and the demo)."""
        raise NotImplementedError

    def request_fields(self, config: SolutionConfig) -> tuple[set[str], set[str]]:
        """(extra fields accepted beyond the contract, contract fields a request may omit)."""
        return set(), set()

    def online_enricher(self, data_dir: Path, config: SolutionConfig) -> Callable[[list[dict]], list[dict]] | None:
        """Turn request instances into model inputs at serving time (e.g. add history features kept in
        an online table under ``data_dir``). Returns a callable over a list of instances, or None."""
        return None

    def routers(self, manager: Any) -> list[Any]:
        """Extra FastAPI routers mounted beside the TF-Serving API (e.g. ``/recommend``). ``manager``
        (``serving.models.ModelManager``) gives the served versions: ``manager.get(name, version)``."""
        return []
