"""The seam between an app and the core — all of it, on one screen.

    class MyApp(Solution):                   # registered by an entry point (group ``solutions_core.solutions``)
        name = title = description = ...     # what `solutions list`, the API and the DAGs show
        config_class = MyConfig              # a SolutionConfig subclass: typed, defaults in code
        contracts = ("my_table", ...)        # data_contracts/<name>.yaml per table; the first is the primary one
        gate = Gate("auprc", higher_is_better=True)
        data = MyData()                      # generate*, load, prepare, resolve_config, split
        models = MyModels()                  # candidates*, ensembles
        evaluation = MyEvaluation()          # evaluate*, calibrate, baselines, report
        serving = MyServing()                # module*, golden_instances, request, check, features, routers
        edge = None                          # Edge: export — edge models (TFLite) checked against the SavedModel
        batch = None                         # Batch: run — scheduled work with the champion
        def tiny_config(self): ...           # * and this: five methods to write, the other 16 have defaults

Every hook takes the ``Context`` first (the run's config and the contracts its data is checked against),
then what it works on. The core owns everything else: validation, storage, splits, the one Keras fit loop
(``Trainer``: strategy, precision, XLA, TensorBoard, early stopping, replica batch scaling), calibration,
baselines in the same run, the gate, export, versions, serving, batch and orchestration.

This module must stay importable without TensorFlow (the registry imports it to type-check entries).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras
    import tensorflow as tf

    from solutions_core.contracts import Contract
    from solutions_core.model_registry import ModelVersion
    from solutions_core.settings import Settings
    from solutions_core.training import Trainer

Tables = dict[str, pd.DataFrame]  # contract (table) name -> rows
Outputs = Mapping[str, np.ndarray]  # a model's outputs by name, one row per example
Metrics = dict[str, float]


# ---- configuration ---------------------------------------------------------------------------------------


class TrainingConfig(BaseModel):
    """Knobs of the core's Keras fit loop (``Trainer.fit``), shared by every app."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=512, ge=1, description="Per replica: the global batch is this × replicas.")
    learning_rate: float = Field(default=1e-3, gt=0)
    early_stopping_patience: int = Field(default=2, ge=0, description="0 disables early stopping.")
    early_stopping_monitor: str = Field(default="val_loss", description="Keras log key to watch, e.g. val_auprc.")
    early_stopping_mode: str = Field(default="min", pattern="^(min|max)$")
    steps_per_epoch: int | None = Field(default=None, ge=1, description="Cap steps (tests use a few).")


class GateConfig(BaseModel):
    """What a candidate must beat to be published (besides the champion, always)."""

    model_config = ConfigDict(extra="forbid")

    beat_baselines: bool = Field(
        default=True,
        description="Publish only a model that beats the best baseline trained in the same run on the gate "
        "metric (a first run too). Off only for plumbing runs on tiny data (tiny_config).",
    )
    baseline_margin: float = Field(default=0.0, ge=0, description="How much the model must beat the best baseline by.")
    bootstrap_rounds: int = Field(
        default=200, ge=0, description="Paired bootstrap rounds for the model-minus-baseline interval in the report (0: none)."
    )
    bootstrap_max_rows: int = Field(
        default=20_000, ge=0, description="Bootstrap only test splits up to this many rows (where one split's noise matters)."
    )


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
    gate: GateConfig = Field(default_factory=GateConfig)
    cross_validation_folds: int = Field(
        default=0,
        ge=0,
        le=20,
        description="Choose the candidate and calibrate its parameters (a threshold) by k-fold cross-validation "
        "over train + validation (rolling-origin for time-ordered tables, stratified by the label otherwise) instead "
        "of the one validation split: for small data (few positives). The served model is still the one fitted on "
        "the train split. 0 or 1: the validation split alone.",
    )
    refit_on_all_data: bool = Field(
        default=False,
        description="Once the gate passes, fit the chosen candidate again on train + validation + test and "
        "publish that: for small data where every row counts. Its calibrated parameters (a threshold) stay the "
        "ones chosen on validation, and its reported test scores are those of the model before the refit.",
    )


ConfigT = TypeVar("ConfigT", bound=SolutionConfig)


@dataclass(frozen=True)
class Context(Generic[ConfigT]):
    """What every hook gets first: the config of this run (or of the served version) and the contracts
    of its tables, exactly the ones the pipeline validated with (or the ones the version ships)."""

    app: str
    config: ConfigT
    contracts: Mapping[str, "Contract"]

    @property
    def contract(self) -> "Contract":
        """The primary table's contract."""
        return next(iter(self.contracts.values()))


# ---- what the parts exchange ------------------------------------------------------------------------------


@dataclass
class Splits:
    """Train / validation / test examples (validation picks the candidate and any threshold; test is
    touched once, for the report and the gate)."""

    train: Any
    valid: Any
    test: Any

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("train", "valid", "test")}


@dataclass
class KerasFit:
    """One Keras model for the core's fit loop (``Trainer.fit``), the only way an app trains one.

    ``build()`` runs inside the strategy scope and returns an uncompiled model (or one to train further);
    ``compile(training)`` gives ``model.compile``'s optimizer, loss and metrics; ``data(training,
    global_batch)`` returns a finite ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, sample_weight)``, for
    validation too unless ``validation`` is False. ``training`` overrides the config's loop settings for this
    model (e.g. a second model with fewer epochs)."""

    name: str
    build: Callable[[], "keras.Model"]
    compile: Callable[[TrainingConfig], dict[str, Any]]
    data: Callable[[bool, int], "tf.data.Dataset"]
    validation: bool = True
    training: TrainingConfig | None = None


@dataclass
class Candidate:
    """A model to train: ``fit(splits, trainer)`` returns what ``Serving.module`` wraps. Keras models are
    fitted through ``trainer.fit`` (one or several, e.g. two towers then a ranker); learners of their own
    (YDF trees, a Gaussian) fit themselves and may read ``trainer.runtime``. Raise ``SkipCandidate`` when
    this data cannot train it."""

    name: str
    fit: Callable[[Splits, "Trainer"], Any]
    kind: str = "custom"


@dataclass
class KerasCandidate:
    """The common case, declared: one Keras model fitted on the train split, validated on the valid split.

    ``build_model(train_examples)`` returns an uncompiled Functional model whose inputs are raw features
    (preprocessing layers inside, adapted on the training examples); ``make_dataset(examples, training,
    global_batch)`` its data; ``finish(model, splits, trainer)``, when given, runs after ``fit`` and returns
    the model to serve (e.g. quantization-aware fine-tuning through ``trainer.fit`` again)."""

    name: str
    build_model: Callable[[Any], "keras.Model"]
    compile_options: Callable[[TrainingConfig], dict[str, Any]]
    make_dataset: Callable[[Any, bool, int], "tf.data.Dataset"]
    finish: Callable[["keras.Model", Splits, "Trainer"], "keras.Model"] | None = None
    kind: str = "keras"

    def fit(self, splits: Splits, trainer: "Trainer") -> "keras.Model":
        model = trainer.fit(
            KerasFit(
                self.name,
                build=lambda: self.build_model(splits.train),
                compile=self.compile_options,
                data=lambda training, batch: self.make_dataset(splits.train if training else splits.valid, training, batch),
            )
        )
        return self.finish(model, splits, trainer) if self.finish is not None else model


@dataclass
class Ensemble:
    """A model made of already fitted candidates (an average, a part of one), scored on validation like
    any candidate and never fitted again. ``combine`` gets the fitted members in ``members`` order and
    returns what ``Serving.module`` wraps (default: the list). Skipped when a member was not fitted."""

    name: str
    members: tuple[str, ...]
    combine: Callable[[list[Any]], Any] = list


class SkipCandidate(Exception):
    """Raised by a candidate's ``fit`` (or ``build_model``) when this data cannot train it (e.g. a
    supervised model on a line with no defect images): the core logs the reason and goes on."""


@dataclass
class Baseline:
    """A simple model trained in the same run, scored on the test split; ``outputs`` (optional) are its
    test outputs for the report's plots (scores, lists, forecasts). ``served`` (optional) are its test
    outputs in the served model's format, one row per test example, so that ``Evaluation.evaluate``
    scores them like the model's: the core then reports a paired bootstrap interval of the difference."""

    metrics: Metrics
    outputs: dict[str, Any] = field(default_factory=dict)
    served: Outputs | None = None


@dataclass
class Chosen:
    """The candidate that won validation, as the edge export sees it: its live module (with the
    calibrated parameters written in), those parameters, and its outputs on the validation split."""

    name: str
    module: Any
    parameters: dict[str, float]
    valid_outputs: Outputs


@dataclass
class EdgeExport:
    """What ``Edge.export`` made: edge model files (published inside the version, under
    ``assets.extra/``, only when ``passed``) and a JSON-ready report (parity, size, latency)."""

    files: dict[str, Path]
    report: dict[str, Any]
    passed: bool


@dataclass(frozen=True)
class Gate:
    """The metric the champion gate compares (it must be one ``Evaluation.evaluate`` reports)."""

    metric: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class RequestSchema:
    """What a ``:predict`` instance may carry beyond the primary contract's serving columns (``extra``,
    e.g. precomputed features or lookup keys) and which contract fields it may leave out (``optional``,
    e.g. ones the feature store fills in)."""

    extra: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()


class FeatureStore:
    """Online features: what the server knows between requests (a card's history, a user's items, a
    series' sales). The server calls ``lookup`` after a request is validated, then the model, then
    ``record`` once the answer is ready, and ``save`` on shutdown and when a version is retired.
    Subclasses lock their own state: several requests run at once."""

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The instances with the model inputs they left out filled in; changes no state."""
        return instances

    def lookup_columns(self, instances: list[dict[str, Any]]) -> dict[str, Sequence[Any]]:
        """What the server calls: the fields ``lookup`` fills in or changes, as columns (one value per
        instance). Override it when a store can work on columns (the fraud card history does: a
        request of 256 transactions costs a fifth of 256 lookups); by default it is ``lookup``'s answer."""
        looked = self.lookup(instances)
        if looked is instances:
            return {}
        keys = dict.fromkeys(key for instance in looked for key in instance)
        return {key: [instance.get(key) for instance in looked] for key in keys}

    def record(self, instances: list[dict[str, Any]]) -> None:
        """Remember answered requests (the instances as the client sent them)."""

    def save(self) -> None:
        """Persist what was recorded (called when the server stops)."""

    def carry_over(self, previous: "FeatureStore") -> None:
        """Take over the live state of the store of the version being replaced (hot reload), so what
        was recorded since the server started is not lost; by default nothing carries over."""


@dataclass(frozen=True)
class BatchContext(Context[ConfigT]):
    """Everything ``Batch.run`` gets for one logical date (built by ``solutions_core.batch``).

    ``config`` is the champion's, as it was published; ``tables`` are validated against the contracts
    (from ``--source`` or the data store). ``output_dir`` is an empty staging folder: write the files
    there; the core swaps it in as ``<batch_dir>/<app>/date=<logical_date>/`` in one rename."""

    settings: "Settings" = None  # type: ignore[assignment]
    champion: "ModelVersion" = None  # type: ignore[assignment]
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    logical_date: dt.date = dt.date.min
    output_dir: Path = Path()
    predict_batch_size: int = 8192
    shard: tuple[int, int] = (0, 1)  # (index, count): this task's part of the date's work
    _signature: Any = field(default=None, repr=False, compare=False)

    def in_shard(self, keys: Any) -> np.ndarray:
        """Which rows are this shard's, for rows keyed by ``keys`` (e.g. card, user or series ids): the
        distinct keys in sorted order are dealt out to the shards in turn, so every key's rows land in one
        shard, shards stay even, and the split depends on the keys only. All True with one shard."""
        values = pd.Series(keys).astype(str).to_numpy()
        index, count = self.shard
        if count == 1:
            return np.ones(len(values), dtype=bool)
        distinct = np.unique(values)
        return np.searchsorted(distinct, values) % count == index

    def signature(self) -> Any:
        """The champion's ``serving_default`` signature, loaded once (imports TensorFlow)."""
        if self._signature is None:
            from solutions_core.export import load_signature

            object.__setattr__(self, "_signature", load_signature(self.champion.path, self.champion.metadata().get("custom_ops", ())))
        return self._signature

    def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The champion's outputs on ``frame`` (raw features by name, as a ``:predict`` request)."""
        from solutions_core.export import predict_frame

        return predict_frame(self.signature(), frame, self.predict_batch_size)


# ---- the parts --------------------------------------------------------------------------------------------


class Data:
    """Where examples come from and how they are split."""

    def generate(self, context: Context, workdir: Path) -> Tables:
        """The embedded default: seeded synthetic tables keyed by contract name. ``workdir`` is a
        folder the core owns, for apps whose tables point at files (images)."""
        raise NotImplementedError

    def load(self, context: Context, source: str) -> Tables:
        """Real data from ``source`` (a file, a folder, or a named public set), keyed by contract name."""
        raise NotImplementedError("This app cannot load external data yet.")

    def prepare(self, context: Context, tables: Tables) -> Any:
        """Validated tables -> modeling examples (feature work that cannot live in the graph)."""
        return next(iter(tables.values()))

    def resolve_config(self, context: Context, examples: Any) -> SolutionConfig:
        """The config with fields that depend on the data filled in (those the user left unset, e.g. a
        series' frequency): the rest of the run, and the published version, use what this returns."""
        return context.config

    def folds(self, context: Context, examples: pd.DataFrame, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row positions (fit, score) of each cross-validation fold of ``examples`` (train + validation),
        for ``config.cross_validation_folds``. Default: rolling origin when the primary contract names a
        time column the examples have (each fold scores the block after the ones it fits on), else
        k-fold, stratified by the contract's label column when there is one."""
        from solutions_core.selection import cross_validation_folds

        contract = context.contract
        time_column = contract.time_column if contract.time_column in examples.columns else None
        label = contract.label_column()
        labels = examples[label] if label in examples.columns else None
        return cross_validation_folds(len(examples), count, context.config.seed, times=None if time_column is None else examples[time_column], labels=labels)

    def split(self, context: Context, examples: Any) -> Splits:
        """Default (a table of examples): by time when the primary contract names a ``time_column`` the
        examples have — validation and test lie after training, as in production — else a seeded
        random split."""
        from solutions_core.data import random_split, time_split

        config = context.config
        if not isinstance(examples, pd.DataFrame):
            raise NotImplementedError("Examples that are not a DataFrame need their own split.")
        column = context.contract.time_column
        if column and column in examples.columns:
            return time_split(examples, column, config.valid_fraction, config.test_fraction)
        return random_split(examples, config.valid_fraction, config.test_fraction, config.seed)


class Models:
    """What to train."""

    def candidates(self, context: Context) -> list[Candidate | KerasCandidate]:
        raise NotImplementedError

    def ensembles(self, context: Context) -> list[Ensemble]:
        return []


class Evaluation:
    """How a model's outputs are judged. Everything here sees outputs as the served model answers."""

    def evaluate(self, context: Context, examples: Any, outputs: Outputs) -> Metrics:
        """Domain metrics of ``outputs`` on ``examples``; must include the gate's metric."""
        raise NotImplementedError

    def outcomes(self, context: Context, logged: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Served requests joined with what happened after them, as examples ``evaluate`` can score
        (the logged answers stay as columns under their output names); requests whose outcome has not
        arrived are left out. Default: the label column of ``outcomes`` joined on a unique id column of
        the contract that the requests carried (fraud chargebacks by transaction id, confirmed defects
        by image id). Apps whose outcome is not a label per request (later interactions, realized
        demand) override it."""
        contract = context.contract
        label = contract.label_column()
        if label is None or label not in outcomes.columns:
            raise ValueError(f"The outcomes must hold the contract's label column ({label!r}); they have {sorted(outcomes.columns)}.")
        # Only a unique id names one request: a card id or a user id would give every request of the
        # card the label of one of its transactions.
        candidates = [name for name, spec in contract.columns.items() if spec.role == "id" and spec.unique]
        key = next((name for name in candidates if name in logged.columns and name in outcomes.columns), None)
        if key is None:
            raise ValueError(
                f"No unique id column joins the request log to the outcomes: the contract's are {candidates or 'none'}, "
                f"and both the requests and the outcomes must carry one (send it with each request)."
            )
        return logged.drop(columns=[label], errors="ignore").merge(outcomes[[key, label]].drop_duplicates(key), on=key, how="inner")

    def calibrate(self, context: Context, examples: Any, outputs: Outputs) -> dict[str, float]:
        """Serving-time parameters tuned on validation outputs (e.g. ``{"threshold": 0.31}``); the core
        writes each into the module's ``tf.Variable`` of that name and records them in the version."""
        return {}

    def baselines(self, context: Context, splits: Splits) -> dict[str, Baseline]:
        """Simple models trained in the same run and scored on the test split."""
        return {}

    def report(self, context: Context, examples: Any, outputs: Outputs, baselines: Mapping[str, Baseline], out_dir: Path) -> list[Path]:
        """Plots (PNG) of the test split, for people who would rather look than read."""
        return []


class Serving:
    """What is exported and how requests reach it."""

    def module(self, context: Context, fitted: Any) -> "tf.Module":
        """Wrap a fitted model as a ``tf.Module`` whose ``serve`` tf.function takes raw features by name:
        exactly what is exported and served. Calibrated parameters are ``tf.Variable`` attributes."""
        raise NotImplementedError

    def golden_instances(self, context: Context, examples: Any, count: int = 8) -> list[dict[str, Any]]:
        """JSON-ready ``:predict`` instances (used to warm new versions up, by the demo and by tests).
        Default: the first rows of a table of examples, their request fields (the contract's serving
        columns and ``request().extra``) as JSON values."""
        if not isinstance(examples, pd.DataFrame):
            raise NotImplementedError("Examples that are not a DataFrame need their own golden_instances.")
        wanted = [c.name for c in context.contract.request_columns()] + sorted(self.request(context).extra)
        fields = [name for name in dict.fromkeys(wanted) if name in examples.columns]
        return [{name: json_value(row[name]) for name in fields} for row in examples.head(count).to_dict("records")]

    def request(self, context: Context) -> RequestSchema:
        return RequestSchema()

    def check(self, context: Context, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Checks beyond the contract (e.g. an image's header), before the model runs: raise ValueError
        naming the instance and field for a 400; return the instances (possibly converted)."""
        return instances

    def features(self, context: Context, data_dir: Path) -> FeatureStore | None:
        """The online feature store, opened over what training stored under ``data_dir``."""
        return None

    def routers(self, manager: Any) -> list[Any]:
        """Extra FastAPI routers beside the TF-Serving API (e.g. ``/recommend``); ``manager.get(name,
        version)`` gives a served version, ``served.feature_store(MyStore)`` its store as the app's type."""
        return []


class Edge:
    """Edge models (TFLite) built from the chosen module and checked against it on validation data."""

    def export(self, context: Context, chosen: Chosen, splits: Splits, out_dir: Path) -> EdgeExport | None:
        raise NotImplementedError


class Batch:
    """Scheduled batch work with the champion (score a day, refresh candidates, publish a forecast)."""

    # True when ``run`` keeps only the rows ``context.in_shard`` gives it, so a date's work can be split
    # over many tasks (the batch DAG's shards); otherwise it always runs as one shard.
    shardable: ClassVar[bool] = False

    def run(self, context: BatchContext) -> list[Path]:
        """Write Parquet files into ``context.output_dir`` and return their paths. The core validated
        the inputs and publishes the folder atomically per date (plus DuckDB views over all dates)."""
        raise NotImplementedError


class Solution:
    """An app: the class attributes and parts of the module docstring. Register an instance."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    contracts: ClassVar[tuple[str, ...]]
    gate: ClassVar[Gate]
    config_class: ClassVar[type[SolutionConfig]] = SolutionConfig
    data: ClassVar[Data]
    models: ClassVar[Models]
    evaluation: ClassVar[Evaluation]
    serving: ClassVar[Serving]
    edge: ClassVar[Edge | None] = None
    batch: ClassVar[Batch | None] = None
    # Python modules that register custom TF ops the exported SavedModel needs (imported by the server
    # before loading, and recorded in the model metadata so a plain loader knows too).
    custom_ops: ClassVar[tuple[str, ...]] = ()
    # Rows per call when the core runs a model over a table: images need far smaller batches.
    predict_batch_size: ClassVar[int] = 8192

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


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def json_value(value: Any) -> Any:
    """One value of a table as a TF-Serving JSON value: timestamps as ISO strings, bytes as
    ``{"b64": ...}``, arrays as lists (NaN as null), numpy scalars as Python numbers, NaN/None as null."""
    import base64

    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return [json_value(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    return value
