"""The one pipeline every app runs, whichever orchestrator calls it (CLI, Airflow, a notebook):

    validate_data → split_data → train_candidates → score_on_test → gate ⇢ publish → write_report

Each stage (table: ``solutions_core.stages``) is a function below with typed inputs and a typed
artifact as output; ``PipelineRun`` saves every artifact in the run directory
(``<runs>/<app>/<run_id>/artifacts/``), so ``run_training`` runs the stages in one process while an
orchestrator runs each in its own (an Airflow task, a pod, a retry) and the later ones load what the
earlier ones left. Splits are made once per run and reused. A failure at any stage raises before
anything is published, so the champion keeps serving.

The core also owns every Keras fit: ``Trainer.fit`` is the one loop (distribution strategy, precision
policy, ``jit_compile``, TensorBoard, early stopping as configured, the global batch scaled by replicas)
that apps hand their Keras models to.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import pickle
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solutions_core import __version__
from solutions_core.contracts import Contract, ValidationReport, load_contract
from solutions_core.data import DataStore, fingerprint
from solutions_core.model_registry import ModelRegistry, ModelVersion
from solutions_core.monitoring import STATISTICS_FILE
from solutions_core.serving.models import WARMUP_FILE
from solutions_core.settings import Settings
from solutions_core.solution import (
    Candidate,
    Chosen,
    Context,
    EdgeExport,
    Ensemble,
    KerasCandidate,
    KerasFit,
    SkipCandidate,
    Solution,
    SolutionConfig,
    Splits,
    TrainingConfig,
)
from solutions_core.stages import STAGES, stage as stage_named
from solutions_core.strategy import from_chief

logger = logging.getLogger("solutions_core.training")
Reporter = Callable[[str], None]


# ---- the core's Keras fit loop ------------------------------------------------------------------------


class Trainer:
    """What a candidate's ``fit`` gets: the runtime (strategy, precision, XLA) and the one Keras loop.

    ``fit(KerasFit)`` builds and compiles the model inside the strategy scope (with the runtime's
    ``jit_compile``), batches the data at the global batch (``batch_size`` × replicas), and calls
    ``model.fit`` with TensorBoard logs under ``<run>/tensorboard/<candidate>/`` and early stopping as
    the config says (restoring the best weights)."""

    def __init__(self, runtime: Any, training: TrainingConfig, log_dir: Path, candidate: str, verbose: int = 0):
        self.runtime = runtime
        self.training = training
        self.log_dir = Path(log_dir)
        self.candidate = candidate
        self.verbose = verbose
        self.fits = 0  # Keras models fitted here (recorded in the candidate's result)
        self.steps = 0  # their optimizer steps (with many workers: each worker's, the same on all)

    @property
    def replicas(self) -> int:
        return int(getattr(self.runtime.strategy, "num_replicas_in_sync", 1))

    def scope(self) -> Any:
        """The strategy scope, for models a candidate builds outside ``fit`` (e.g. a feature extractor)."""
        return self.runtime.strategy.scope()

    def fit(self, spec: KerasFit) -> Any:
        import keras

        training = spec.training or self.training
        self.fits += 1
        with self.scope():
            model = spec.build()
            model.compile(**spec.compile(training), jit_compile=self.runtime.jit_compile)
        global_batch = training.batch_size * self.replicas
        train_data = spec.data(True, global_batch)
        if training.steps_per_epoch:  # fixed-length epochs may cross the end of the data
            train_data = train_data.repeat()
        valid_data = spec.data(False, global_batch) if spec.validation else None
        log_dir = self.log_dir if spec.name == self.candidate else self.log_dir / spec.name
        callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]
        watches_validation = training.early_stopping_monitor.startswith("val_")
        if training.early_stopping_patience and (valid_data is not None or not watches_validation):
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=training.early_stopping_monitor,
                    mode=training.early_stopping_mode,
                    patience=training.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        model.fit(
            train_data,
            validation_data=valid_data,
            epochs=training.epochs,
            steps_per_epoch=training.steps_per_epoch,
            callbacks=callbacks,
            verbose=self.verbose,
            shuffle=False,  # datasets shuffle themselves
        )
        self.steps += int(model.optimizer.iterations.numpy())
        return model


# ---- scores -------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """Metrics of one model on one split, with the metric the gate compares."""

    metrics: dict[str, float]
    gate_metric: str
    higher_is_better: bool = True

    @property
    def gate_value(self) -> float:
        return float(self.metrics[self.gate_metric])

    def beats(self, other: float | None, min_delta: float = 0.0) -> bool:
        if other is None or not np.isfinite(other):
            return True
        if self.higher_is_better:
            return self.gate_value > other + min_delta
        return self.gate_value < other - min_delta


def best_baseline(baselines: Mapping[str, Scores], higher_is_better: bool) -> tuple[str, float] | None:
    """The baseline with the best finite gate value, or None when no baseline has one."""
    finite = {name: scores.gate_value for name, scores in baselines.items() if math.isfinite(scores.gate_value)}
    if not finite:
        return None
    name = (max if higher_is_better else min)(finite, key=finite.__getitem__)
    return name, finite[name]


def paired_bootstrap(
    gate_value: Callable[[Any, Mapping[str, np.ndarray]], float],
    examples: pd.DataFrame,
    model: Mapping[str, Any],
    baseline: Mapping[str, Any],
    rounds: int,
    higher_is_better: bool,
    seed: int = 0,
) -> dict[str, Any]:
    """The model-minus-baseline difference on the gate metric over ``rounds`` resamples of the test rows,
    both scored on the same resample each round (paired): a 95 % interval and how often the model won.
    Rounds where either value is not finite (a resample with one class) are left out."""
    rng = np.random.default_rng(seed)
    model = {name: np.asarray(values) for name, values in model.items()}
    baseline = {name: np.asarray(values) for name, values in baseline.items()}
    differences = []
    for _ in range(rounds):
        rows = rng.integers(0, len(examples), len(examples))
        sample = examples.iloc[rows]
        ours = gate_value(sample, {name: values[rows] for name, values in model.items()})
        theirs = gate_value(sample, {name: values[rows] for name, values in baseline.items()})
        if math.isfinite(ours) and math.isfinite(theirs):
            differences.append(ours - theirs)
    if not differences:
        return {"rounds": 0}
    differences_array = np.asarray(differences)
    better = differences_array > 0 if higher_is_better else differences_array < 0
    low, high = np.percentile(differences_array, [2.5, 97.5])
    return {"rounds": len(differences), "low": float(low), "high": float(high), "model_better": float(better.mean())}


def scores_of(solution: Solution, metrics: Mapping[str, float]) -> Scores:
    metrics = {name: float(value) for name, value in metrics.items()}
    if solution.gate.metric not in metrics:
        raise ValueError(f"{solution.name}'s evaluation reports {sorted(metrics)}, not its gate metric {solution.gate.metric!r}.")
    return Scores(metrics, solution.gate.metric, solution.gate.higher_is_better)


# ---- artifacts: what each stage hands to the next ----------------------------------------------------


@dataclass
class ValidatedData:
    """``validate_data``: the checked tables, the contract files they were checked against, their
    fingerprints (recorded in the version's metadata) and the validation reports."""

    tables: dict[str, pd.DataFrame]
    contract_files: dict[str, Path]
    fingerprints: dict[str, str]
    reports: dict[str, dict[str, Any]]
    started_at: float

    def summary(self) -> dict[str, Any]:
        return {"tables": {name: len(frame) for name, frame in self.tables.items()}, "fingerprints": self.fingerprints}


@dataclass
class SplitData:
    """``split_data``: the config as the data resolved it and the examples, split once."""

    config: SolutionConfig
    splits: Splits

    def summary(self) -> dict[str, Any]:
        return {"sizes": self.splits.sizes()}


@dataclass
class CandidateResult:
    name: str
    kind: str
    valid: Scores  # on the validation split, or the mean over cross-validation folds
    calibration: dict[str, float]
    fit_seconds: float
    folds: list[float] = field(default_factory=list)  # the gate metric on each cross-validation fold
    keras_fits: int = 0  # Keras models it fitted through the Trainer (the ones the runtime's precision and XLA reach)
    keras_steps: int = 0  # their optimizer steps

    def describe(self) -> dict[str, Any]:
        described = {"name": self.name, "kind": self.kind, "valid": self.valid.metrics, "calibration": self.calibration,
                     "fit_seconds": round(self.fit_seconds, 2), "keras_fits": self.keras_fits,
                     "keras_steps": self.keras_steps}
        if self.folds:
            described["folds"] = self.folds
            described["fold_spread"] = float(np.nanstd(self.folds))
        return described


@dataclass
class TrainedModel:
    """``train_candidates``: every candidate's validation scores, and the best one saved as a SavedModel
    with its outputs on probe and golden requests (what the reloaded model, TF Serving and the API must
    reproduce) and its edge models."""

    candidate: str
    saved_model: Path
    candidates: list[CandidateResult]
    runtime: dict[str, Any]
    probe_outputs: dict[str, np.ndarray]
    golden_instances: list[dict[str, Any]]
    golden_outputs: dict[str, np.ndarray]
    edge: EdgeExport | None

    @property
    def chosen(self) -> CandidateResult:
        return next(result for result in self.candidates if result.name == self.candidate)

    def summary(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "candidates": {r.name: r.describe() for r in self.candidates},
            "edge": self.edge.report if self.edge else None,
            "runtime": self.runtime,
        }


@dataclass
class TestScores:
    """``score_on_test``: the reloaded SavedModel's test scores, the baselines' and the champion's."""

    test: Scores
    baselines: dict[str, Scores]
    plots: list[Path]
    champion_before: dict[str, Any] | None
    # Per baseline: the model-minus-baseline gate metric on the test split, with a paired bootstrap
    # interval where the app gives the baseline's served outputs and the split is small.
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "gate_metric": self.test.gate_metric,
            "test": self.test.metrics,
            "baselines": {name: scores.metrics for name, scores in self.baselines.items()},
            "comparisons": self.comparisons,
            "champion_before": self.champion_before,
        }


@dataclass
class GateDecision:
    """``gate``: whether the candidate is published, and why."""

    passed: bool
    reason: str
    gate_value: float
    champion_value: float | None
    min_delta: float
    baseline: str | None = None  # the best baseline of the run (what the model had to beat too)
    baseline_value: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "baseline": self.baseline, "baseline_value": self.baseline_value}


@dataclass
class PublishedVersion:
    """``publish``: the version the run published (a re-run finds it instead of publishing again)."""

    version: int
    path: Path

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "path": str(self.path)}


@dataclass
class RunResult:
    """``write_report``: the whole run, as ``report.json`` says it."""

    app: str
    run_id: str
    run_dir: Path
    status: str  # "promoted" | "rejected"
    candidate: str
    test: Scores
    baselines: dict[str, Scores]
    champion_before: dict[str, Any] | None
    version: ModelVersion | None
    reason: str = ""
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidates: list[CandidateResult] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    golden_instances: list[dict[str, Any]] = field(default_factory=list)
    golden_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    edge: EdgeExport | None = None
    seconds: float = 0.0

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "candidate": self.candidate,
            "version": self.version.version if self.version else None,
            "gate_metric": self.test.gate_metric,
            "higher_is_better": self.test.higher_is_better,
            "test": self.test.metrics,
            "baselines": {name: scores.metrics for name, scores in self.baselines.items()},
            "comparisons": self.comparisons,
            "champion_before": self.champion_before,
            "candidates": [c.describe() for c in self.candidates],
            "run_dir": str(self.run_dir),
            "plots": [str(p) for p in self.plots],
            "edge": self.edge.report if self.edge is not None else None,
            "seconds": round(self.seconds, 1),
        }


# ---- helpers the CLI and batch share ------------------------------------------------------------------


def contracts_for(solution: Solution, config: SolutionConfig, settings: Settings) -> dict[str, Contract]:
    """The app's contracts by table; a fork replaces the primary one with ``config.contract`` and any
    other table's with ``config.table_contracts[table]`` (names in ``settings.contracts_dir``, or paths)."""
    unknown = sorted(set(config.table_contracts) - set(solution.contracts))
    if unknown:
        raise ValueError(f"table_contracts names tables {solution.name} does not have: {unknown}; its tables are {list(solution.contracts)}.")
    found = {}
    folders = settings.contract_folders()
    for index, table in enumerate(solution.contracts):
        chosen = config.contract if (index == 0 and config.contract) else config.table_contracts.get(table, table)
        found[table] = find_contract(chosen, folders)
    return found


def find_contract(name_or_path: str, folders: list[Path]) -> Contract:
    """A contract by path, or by bare name from the first of ``folders`` that has it."""
    from solutions_core.contracts import ContractError

    for folder in folders:
        try:
            return load_contract(name_or_path, folder)
        except ContractError as error:
            if "not found in" not in str(error):  # a path that is missing, or a broken file: say so now
                raise
    searched = ", ".join(str(folder) for folder in folders) or "no existing folder"
    raise ContractError(f"contract {name_or_path!r} not found (looked in {searched}; set --contracts-dir or give a path to the .yaml file)")


def context_for(solution: Solution, config: SolutionConfig, settings: Settings) -> Context:
    return Context(solution.name, config, contracts_for(solution, config, settings))


def acquire(solution: Solution, context: Context, settings: Settings) -> dict[str, pd.DataFrame]:
    """Load ``config.source`` if given, else generate the embedded default."""
    config = context.config
    if config.source:
        tables = solution.data.load(context, config.source)
    else:
        tables = solution.data.generate(context, settings.resolved_data_dir() / solution.name / "generated")
    missing = [name for name in solution.contracts if name not in tables]
    if missing:
        raise ValueError(f"{solution.name} produced no table(s) {missing}; expected {list(solution.contracts)}.")
    return dict(tables)


def validate(tables: Mapping[str, pd.DataFrame], contracts: Mapping[str, Contract]) -> dict[str, ValidationReport]:
    """Check every table; raise ContractViolation (listing every failed rule) on the first bad table."""
    return {name: contract.check(tables[name]) for name, contract in contracts.items()}


def write_parameters(module: Any, parameters: Mapping[str, float]) -> None:
    """Calibrated parameters into the module's variables of the same name (what is exported)."""
    import tensorflow as tf

    for name, value in parameters.items():
        variable = getattr(module, name, None)
        if not isinstance(variable, tf.Variable):
            raise TypeError(f"calibrate returned {name!r}, but the serving module has no tf.Variable {name!r} to hold it.")
        variable.assign(value)


def evaluate_champion(solution: Solution, context: Context, champion: ModelVersion, test: Any) -> dict[str, Any]:
    """Score the current champion on this run's test split, so the gate compares like with like.

    If the champion cannot score this data (another contract major version, other inputs), fall back to
    the gate value it recorded when it was promoted."""
    from solutions_core.export import load_signature, predict_frame

    metadata = champion.metadata()
    recorded = metadata.get("test_metrics", {}).get(solution.gate.metric)
    same_major = str(metadata.get("contract", {}).get("version", "")).split(".")[0] == context.contract.version.split(".")[0]
    if same_major:
        try:
            signature = load_signature(champion.path, metadata.get("custom_ops", solution.custom_ops))
            outputs = predict_frame(signature, test, solution.predict_batch_size)
            value = scores_of(solution, solution.evaluation.evaluate(context, test, outputs)).gate_value
            return {"version": champion.version, "value": value, "how": "re-scored on this test split"}
        except Exception as error:  # the champion may expect inputs this data no longer has
            logger.warning("Champion v%s could not score this data (%s); using its recorded metric.", champion.version, error)
    return {"version": champion.version, "value": recorded, "how": "recorded at its promotion"}


def code_version() -> str:
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5, check=False)
        if described.returncode == 0 and described.stdout.strip():
            return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"solutions-core {__version__}"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, dt.datetime, dt.date)):
        return str(value)
    if is_dataclass(value):
        return asdict(value)
    return str(value)


def strict_json(value: Any) -> Any:
    """``value`` as strict JSON (what XComs and HTTP bodies need): numpy values as Python ones and a
    NaN or infinite metric (an AUROC over one class, say) as null."""
    if isinstance(value, dict):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return strict_json(_json_default(value))


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    return path


# ---- the run: where artifacts live ------------------------------------------------------------------


class PipelineRun:
    """One training run of one app: its folder, its options, and its stages' artifacts.

    ``run_stage(name)`` runs one stage with its input artifacts (from memory, or loaded from
    ``artifacts/`` when an earlier process made them) and saves its output there: pickled (the one
    serializer; artifacts are plain dataclasses) with a JSON summary beside it for people."""

    def __init__(
        self,
        solution: Solution,
        config: SolutionConfig,
        settings: Settings | None = None,
        run_id: str | None = None,
        *,
        verbose: int = 1,
        report: Reporter | None = None,
        min_delta: float = 0.0,
    ):
        self.solution = solution
        self.config = config
        self.settings = settings or Settings()
        self.run_id = run_id or dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        if not self.run_id or "/" in self.run_id or self.run_id.startswith("."):
            raise ValueError(f"run_id {self.run_id!r} must be a plain folder name (no '/', not hidden).")
        self.run_dir = self.settings.resolved_runs_dir() / solution.name / self.run_id
        self.verbose = verbose
        self.min_delta = min_delta
        self.say: Reporter = report or (lambda message: logger.info(message))
        self._artifacts: dict[str, Any] = {}
        self._contexts: dict[str, Context] = {}
        self._runtime: Any = None

    def runtime(self, seed: int) -> Any:
        """The target's runtime (distribution strategy, precision, XLA), made once per process — before
        any other TensorFlow work when ``run_training`` runs, as TensorFlow wants its strategy — with the
        seeds reset on every call. A target the machine lacks (``gpu`` without one) fails here."""
        import keras

        from solutions_core.strategy import make_runtime

        if self._runtime is None:
            self._runtime = make_runtime(self.settings.target, seed=seed, precision=self.settings.precision, jit_compile=self.settings.jit_compile)
        keras.utils.set_random_seed(seed)
        return self._runtime

    @property
    def artifacts_dir(self) -> Path:
        return self.run_dir / "artifacts"

    def artifact_path(self, stage: str) -> Path:
        return self.artifacts_dir / f"{stage}.pkl"

    def artifact(self, stage: str) -> Any:
        if stage not in self._artifacts:
            path = self.artifact_path(stage)
            if not path.exists():
                raise FileNotFoundError(
                    f"Stage {stage!r} has not completed for run {self.run_id} of {self.solution.name} (no {path}); "
                    f"the stages run in the order {' → '.join(s.name for s in STAGES)}."
                )
            with path.open("rb") as handle:
                self._artifacts[stage] = pickle.load(handle)  # our own files, written by save()
        return self._artifacts[stage]

    def save(self, stage: str, artifact: Any) -> None:
        self._artifacts[stage] = artifact
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        with self.artifact_path(stage).open("wb") as handle:
            pickle.dump(artifact, handle, protocol=pickle.HIGHEST_PROTOCOL)
        write_json(self.artifacts_dir / f"{stage}.json", artifact.summary())

    def gate_passed(self) -> bool:
        return bool(self.artifact("gate").passed)

    def context(self, config: SolutionConfig | None = None) -> Context:
        """The hooks' context: ``config`` (default: the run's) and the contracts this run validates with."""
        config = config or self.config
        key = config.model_dump_json()
        if key not in self._contexts:
            self._contexts[key] = context_for(self.solution, config, self.settings)
        return self._contexts[key]

    def run_stage(self, name: str, **options: Any) -> Any:
        """Run one stage on its inputs' artifacts; returns (and saves) its artifact."""
        stage = stage_named(name)
        inputs = []
        for input_name in stage.inputs:
            skipped = stage_named(input_name).after_gate and not self.gate_passed()
            inputs.append(None if skipped else self.artifact(input_name))
        artifact = stage.function()(self, *inputs, **options)
        self.save(name, artifact)
        return artifact


# ---- the stages (in ``STAGES`` order) ---------------------------------------------------------------


def validate_data(run: PipelineRun, *, tables: Mapping[str, pd.DataFrame] | None = None) -> ValidatedData:
    """Load (or take) the data and check it against the contracts before anything is trained. A run
    starts afresh: re-running a run id replaces its outputs. Raises ``ContractViolation`` (every failed
    rule listed, also in ``validation.json``)."""
    solution, settings = run.solution, run.settings
    if run.run_dir.exists():
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True)
    started_at = time.time()
    context = run.context()
    tables = dict(tables) if tables is not None else acquire(solution, context, settings)
    run.say(f"data: {', '.join(f'{name} {len(frame):,} rows' for name, frame in tables.items())}")
    try:
        reports = validate(tables, context.contracts)
    except Exception as error:
        report_obj = getattr(error, "report", None)
        write_json(run.run_dir / "validation.json", report_obj.to_dict() if report_obj else {"error": str(error)})
        raise
    write_json(run.run_dir / "validation.json", {name: r.to_dict() for name, r in reports.items()})
    primary = context.contract
    run.say(f"contract: {primary.name} v{primary.version} ok")
    store = DataStore(settings.resolved_data_dir())
    for name, frame in tables.items():
        store.write(solution.name, name, frame)
    return ValidatedData(
        tables=tables,
        contract_files={name: Path(contract.path) for name, contract in context.contracts.items()},
        fingerprints={name: fingerprint(frame) for name, frame in tables.items()},
        reports={name: r.to_dict() for name, r in reports.items()},
        started_at=started_at,
    )


def split_data(run: PipelineRun, validated: ValidatedData) -> SplitData:
    """Examples from the tables, the config the data resolves, and the split (made once per run)."""
    data = run.solution.data
    context = run.context()
    examples = data.prepare(context, validated.tables)
    config = data.resolve_config(context, examples)
    splits = data.split(run.context(config), examples)
    run.say(f"split: {splits.sizes()}")
    return SplitData(config, splits)


def train_candidates(run: PipelineRun, split: SplitData) -> TrainedModel:
    """Fit every candidate (and the app's ensembles), calibrate and score each on validation, keep the
    best: its module is saved as a SavedModel, with its outputs on probe and golden requests and the
    app's edge models (built here because they need the live module)."""
    from solutions_core.export import predict_frame, save_module

    solution, say = run.solution, run.say
    context = run.context(split.config)
    config, splits = context.config, split.splits
    runtime = run.runtime(config.seed)
    runtime.verbose = run.verbose
    say(f"runtime: {runtime.describe()}")

    candidates = solution.models.candidates(context)
    ensembles = solution.models.ensembles(context)
    if config.candidates:
        candidates = [c for c in candidates if c.name in config.candidates]
        ensembles = [e for e in ensembles if e.name in config.candidates]
        if not candidates:
            raise ValueError(f"No candidate matches {config.candidates}; {solution.name} has {[c.name for c in solution.models.candidates(context)]}.")
    batch = solution.predict_batch_size
    results: list[CandidateResult] = []
    live: dict[str, Chosen] = {}
    fitted: dict[str, Any] = {}
    crossed = _cross_validate(run, context, splits, candidates, ensembles, runtime)

    def score(name: str, kind: str, model: Any, started_at: float, trainer: Trainer | None = None) -> None:
        if crossed and name not in crossed:
            say("  not cross-validated on every fold: left out of the choice")
            return
        module = solution.serving.module(context, model)
        outputs = predict_frame(module.serve, splits.valid, batch)
        if name in crossed:
            parameters = crossed[name].parameters
        else:
            parameters = {k: float(v) for k, v in solution.evaluation.calibrate(context, splits.valid, outputs).items()}
        if parameters:
            write_parameters(module, parameters)
            outputs = predict_frame(module.serve, splits.valid, batch)
        folds: list[float] = []
        if name in crossed:
            valid = scores_of(solution, crossed[name].mean_metrics())
            folds = [float(metrics.get(valid.gate_metric, float("nan"))) for metrics in crossed[name].fold_metrics]
            say(f"  cross-validated {valid.gate_metric}={valid.gate_value:.4f} ± {np.nanstd(folds):.4f} over {len(folds)} folds"
                + (f" (calibrated {parameters})" if parameters else ""))
        else:
            valid = scores_of(solution, solution.evaluation.evaluate(context, splits.valid, outputs))
            say(f"  valid {valid.gate_metric}={valid.gate_value:.4f}" + (f" (calibrated {parameters})" if parameters else ""))
        fits, steps = (trainer.fits, trainer.steps) if trainer else (0, 0)
        results.append(CandidateResult(name, kind, valid, parameters, time.perf_counter() - started_at, folds, fits, steps))
        live[name] = Chosen(name, module, parameters, outputs)

    for candidate in candidates:
        say(f"fit: {candidate.name} ({candidate.kind})")
        started_at = time.perf_counter()
        trainer = Trainer(runtime, config.training, run.run_dir / "tensorboard" / candidate.name, candidate.name, run.verbose)
        try:
            fitted[candidate.name] = candidate.fit(splits, trainer)
        except SkipCandidate as reason:
            say(f"  skipped: {reason}")
            continue
        score(candidate.name, candidate.kind, fitted[candidate.name], started_at, trainer)
    for ensemble in ensembles:
        missing = [member for member in ensemble.members if member not in fitted]
        if missing:
            say(f"ensemble: {ensemble.name} skipped ({', '.join(missing)} not fitted)")
            continue
        say(f"ensemble: {ensemble.name} of {', '.join(ensemble.members)}")
        score(ensemble.name, "ensemble", ensemble.combine([fitted[member] for member in ensemble.members]), time.perf_counter())

    if not results:
        raise ValueError(f"No candidate of {solution.name} could be trained on this data (all were skipped).")
    higher = solution.gate.higher_is_better
    best = max(results, key=lambda r: r.valid.gate_value if higher else -r.valid.gate_value)
    chosen = live[best.name]
    saved_model = save_module(chosen.module, run.run_dir / "export" / best.name)
    probe_outputs = predict_frame(chosen.module.serve, _head(splits.test, 256), batch)
    golden = solution.serving.golden_instances(context, splits.test)
    golden_outputs = predict_frame(chosen.module.serve, pd.DataFrame(golden), batch)
    write_json(run.run_dir / "golden_request.json", {"instances": golden})
    edge = solution.edge.export(context, chosen, splits, run.run_dir / "edge") if solution.edge is not None else None
    if edge is not None:
        write_json(run.run_dir / "edge" / "edge_report.json", edge.report)
        say(f"edge: {'passed' if edge.passed else 'FAILED'} its parity gate ({', '.join(sorted(edge.files))})"
            + ("" if edge.passed else "; the edge models will not be published"))
    return TrainedModel(best.name, saved_model, results, runtime.describe(), probe_outputs, golden, golden_outputs, edge)


def _cross_validate(run: PipelineRun, context: Context, splits: Splits, candidates: list[Any], ensembles: list[Ensemble], runtime: Any) -> dict[str, Any]:
    """``config.cross_validation_folds`` ≥ 2: every candidate's choice and calibration from folds over
    train + validation (``solutions_core.selection``); otherwise nothing (the validation split decides)."""
    from solutions_core.selection import cross_validate, tensorboard_folder

    folds = context.config.cross_validation_folds
    if folds < 2:
        return {}
    if not (isinstance(splits.train, pd.DataFrame) and isinstance(splits.valid, pd.DataFrame)):
        run.say(f"cross-validation: skipped ({run.solution.name}'s examples are not tables); the validation split decides")
        return {}

    def make_trainer(name: str, fold: int) -> Trainer:
        return Trainer(runtime, context.config.training, tensorboard_folder(run.run_dir, name, fold), name, 0)

    return cross_validate(run.solution, context, splits, candidates, ensembles, make_trainer, run.say)


def _head(examples: Any, count: int) -> Any:
    return examples.head(count) if hasattr(examples, "head") else examples[:count]


def score_on_test(run: PipelineRun, split: SplitData, trained: TrainedModel) -> TestScores:
    """Reload the exported SavedModel (it must reproduce the in-process model), score it on the test
    split next to the baselines trained in this run, and re-score the champion on the same split."""
    from solutions_core.export import load_signature, max_abs_difference, predict_frame

    solution, say = run.solution, run.say
    context = run.context(split.config)
    test = split.splits.test
    batch = solution.predict_batch_size
    reloaded = load_signature(trained.saved_model, solution.custom_ops)
    difference = max_abs_difference(trained.probe_outputs, predict_frame(reloaded, _head(test, 256), batch))
    if not difference <= 1e-4:
        raise RuntimeError(f"The exported SavedModel disagrees with the in-process model (max |Δ| = {difference}).")
    outputs = predict_frame(reloaded, test, batch)
    scores = scores_of(solution, solution.evaluation.evaluate(context, test, outputs))
    say(f"test: {trained.candidate} {scores.gate_metric}={scores.gate_value:.4f}")
    baselines = solution.evaluation.baselines(context, split.splits)
    comparisons = compare_with_baselines(run, context, test, outputs, scores, baselines)
    for name, baseline in baselines.items():
        interval = comparisons[name]
        spread = f" (model − baseline {interval['difference']:+.4f}, 95 % bootstrap {interval['low']:+.4f} … {interval['high']:+.4f})" if "low" in interval else ""
        say(f"baseline: {name} {solution.gate.metric}={baseline.metrics.get(solution.gate.metric, float('nan')):.4f}{spread}")
    plots = solution.evaluation.report(context, test, outputs, baselines, run.run_dir)
    champion = ModelRegistry(run.settings.resolved_models_dir()).champion(solution.name)
    champion_before = evaluate_champion(solution, context, champion, test) if champion else None
    baseline_scores = {name: scores_of(solution, b.metrics) for name, b in baselines.items()}
    return TestScores(scores, baseline_scores, list(plots), champion_before, comparisons)


def compare_with_baselines(run: PipelineRun, context: Context, test: Any, outputs: Mapping[str, Any], scores: Scores, baselines: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Model minus each baseline on the gate metric; with a paired bootstrap interval when the baseline
    gives its served outputs and the test split is a table small enough for one split to mislead."""
    solution, gate_config = run.solution, context.config.gate
    comparisons: dict[str, dict[str, Any]] = {}

    def gate_value(examples: Any, sample_outputs: Mapping[str, np.ndarray]) -> float:
        return float(solution.evaluation.evaluate(context, examples, sample_outputs).get(solution.gate.metric, float("nan")))

    for name, baseline in baselines.items():
        theirs = float(baseline.metrics.get(solution.gate.metric, float("nan")))
        comparison: dict[str, Any] = {"difference": scores.gate_value - theirs}
        bootstrappable = isinstance(test, pd.DataFrame) and 0 < len(test) <= gate_config.bootstrap_max_rows
        if baseline.served is not None and gate_config.bootstrap_rounds and bootstrappable:
            try:
                comparison |= paired_bootstrap(
                    gate_value, test, outputs, baseline.served, gate_config.bootstrap_rounds, solution.gate.higher_is_better, context.config.seed
                )
            except (KeyError, IndexError, ValueError) as problem:  # served outputs the app's evaluate cannot read
                logger.warning("No bootstrap interval against %s: %r", name, problem)
                run.say(f"baseline: {name} has no bootstrap interval (its served outputs do not evaluate: {problem!r})")
        comparisons[name] = comparison
    return comparisons


def gate(run: PipelineRun, scored: TestScores) -> GateDecision:
    """Passed when the candidate beats the champion (re-scored on the same test split) by more than the
    run's ``min_delta`` AND the best baseline trained in this run by more than ``config.gate.
    baseline_margin`` — a first run is no exception. A rejected run ends here (a normal outcome, not an
    error) and the champion keeps serving."""
    test, champion = scored.test, scored.champion_before
    gate_config = run.config.gate
    champion_value = champion["value"] if champion else None
    champion_text = f"champion v{champion['version']} at {champion_value:.4f}" if champion_value is not None else None
    best = best_baseline(scored.baselines, test.higher_is_better) if gate_config.beat_baselines else None
    baseline_name, baseline_value = best if best else (None, None)
    margin = f" by more than {gate_config.baseline_margin:g}" if gate_config.baseline_margin else ""
    baseline_text = f"the best baseline of this run, {baseline_name} at {baseline_value:.4f}{margin}" if best else None
    comparison = scored.comparisons.get(baseline_name or "", {})
    if "low" in comparison:
        baseline_text += f" (model − baseline 95 % bootstrap interval {comparison['low']:+.4f} … {comparison['high']:+.4f})"

    value = f"{test.gate_metric} {test.gate_value:.4f}"
    if not math.isfinite(test.gate_value):
        passed, reason = False, f"{value} is not a finite value"
    elif not test.beats(champion_value, run.min_delta):
        passed, reason = False, f"{value} does not beat {champion_text}"
    elif best and not test.beats(baseline_value, gate_config.baseline_margin):
        passed, reason = False, f"{value} does not beat {baseline_text}: {baseline_name} would serve better than this model"
    else:
        beaten = [text for text in (champion_text or "no champion", baseline_text) if text]
        passed, reason = True, f"{value} beats " + " and ".join(beaten)
    if not passed:
        run.say(f"gate: rejected ({reason}); nothing published")
    return GateDecision(passed, reason, test.gate_value, champion_value, run.min_delta, baseline_name, baseline_value)


def publish(
    run: PipelineRun, validated: ValidatedData, split: SplitData, trained: TrainedModel, scored: TestScores, decision: GateDecision
) -> PublishedVersion:
    """Copy the SavedModel in as the next version, atomically (``ModelRegistry.publish``), with its
    metadata and extra files (the contracts, warm-up requests, edge models that passed their parity
    gate). With ``target=edge`` and no edge model of the app's own, the SavedModel is converted to
    TFLite here. A run id publishes at most once: a retried publish finds its version."""
    import tensorflow as tf

    solution, settings = run.solution, run.settings
    registry = ModelRegistry(settings.resolved_models_dir())
    already = [v for v in registry.versions(solution.name) if v.metadata().get("run_id") == run.run_id]
    if already:
        run.say(f"publish: run {run.run_id} already published version {already[-1].version}; nothing more published")
        return PublishedVersion(already[-1].version, already[-1].path)
    context = run.context(split.config)
    primary = context.contract
    contracts = {table: {"name": c.name, "version": c.version, "file": f"{c.name}.yaml"} for table, c in context.contracts.items()}
    extra = {f"{c.name}.yaml": validated.contract_files[table] for table, c in context.contracts.items()}
    extra[WARMUP_FILE] = run.run_dir / "golden_request.json"  # the server warms a new version up with real requests
    edge = trained.edge
    if edge is not None and edge.passed:
        extra.update(edge.files)
    edge_report = edge.report if edge is not None else None
    saved_model = refit_on_all_data(run, split, trained) if context.config.refit_on_all_data else trained.saved_model
    extra[STATISTICS_FILE] = _write_training_statistics(run, validated, split, saved_model)
    if settings.target == "edge" and edge is None:
        edge_report = _convert_for_edge(run, saved_model, extra)
    metadata = {
        "run_id": run.run_id,
        "candidate": trained.candidate,
        "gate_metric": solution.gate.metric,
        "higher_is_better": solution.gate.higher_is_better,
        "test_metrics": scored.test.metrics,
        "valid_metrics": trained.chosen.valid.metrics,
        "baselines": {name: scores.metrics for name, scores in scored.baselines.items()},
        "baseline_comparisons": scored.comparisons,
        "calibration": trained.chosen.calibration,
        "contract": {"name": primary.name, "version": primary.version},
        "contracts": contracts,
        "data_fingerprints": validated.fingerprints,
        "config": context.config.model_dump(mode="json"),
        "code_version": code_version(),
        "runtime": trained.runtime,
        "custom_ops": list(solution.custom_ops),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "champion_before": scored.champion_before,
        "gate": decision.reason,
        "edge": edge_report,
        "refit_on_all_data": saved_model != trained.saved_model,
    }
    version = registry.publish(solution.name, saved_model, metadata, extra_files=extra)
    run.say(f"gate: promoted as version {version.version} ({decision.reason})")
    return PublishedVersion(version.version, version.path)


def _write_training_statistics(run: PipelineRun, validated: ValidatedData, split: SplitData, saved_model: Path) -> Path:
    """The version's training statistics (``solutions_core.monitoring``): the primary table's served
    feature columns, and the published model's outputs on the validation split, what the monitor
    compares serving days with."""
    from solutions_core.export import load_signature, predict_frame
    from solutions_core.monitoring import training_statistics, write_statistics

    context = run.context(split.config)
    primary = context.contract
    table = next(validated.tables[name] for name, contract in context.contracts.items() if contract.name == primary.name)
    valid = split.splits.valid
    outputs = None
    if isinstance(valid, pd.DataFrame) and len(valid):
        outputs = predict_frame(load_signature(saved_model, run.solution.custom_ops), valid, run.solution.predict_batch_size)
    return write_statistics(training_statistics(table, primary, outputs), run.run_dir)


def refit_on_all_data(run: PipelineRun, split: SplitData, trained: TrainedModel) -> Path:
    """The chosen candidate (or ensemble) fitted again on every example of the run, with the parameters
    calibrated on validation written in, saved beside the first export. Its validation data (for early
    stopping) is part of what it trains on, so it stops no later than it should; its scores are not
    re-measured (no example is left out)."""
    from solutions_core.export import predict_frame, save_module

    solution, context, splits = run.solution, run.context(split.config), split.splits
    parts = (splits.train, splits.valid, splits.test)
    if not all(isinstance(part, pd.DataFrame) for part in parts):
        run.say("refit: skipped (this app's examples are not tables it can concatenate); publishing the model as trained")
        return trained.saved_model
    everything = Splits(train=pd.concat(parts, ignore_index=True), valid=splits.valid, test=splits.test)
    ensembles = {ensemble.name: ensemble for ensemble in solution.models.ensembles(context)}
    candidates = {candidate.name: candidate for candidate in solution.models.candidates(context)}
    members = ensembles[trained.candidate].members if trained.candidate in ensembles else (trained.candidate,)
    runtime = run.runtime(context.config.seed)
    fitted = []
    for name in members:
        run.say(f"refit: {name} on all {len(everything.train):,} examples")
        trainer = Trainer(runtime, context.config.training, run.run_dir / "tensorboard" / f"{name}-refit", name, run.verbose)
        fitted.append(candidates[name].fit(everything, trainer))
    model = ensembles[trained.candidate].combine(fitted) if trained.candidate in ensembles else fitted[0]
    module = solution.serving.module(context, model)
    write_parameters(module, trained.chosen.calibration)
    outputs = predict_frame(module.serve, _head(splits.test, 256), solution.predict_batch_size)
    if not all(np.all(np.isfinite(np.asarray(values, dtype=float))) for values in outputs.values() if np.asarray(values).dtype.kind in "fiu"):
        raise RuntimeError(f"The refitted {trained.candidate} gives non-finite outputs; nothing was published.")
    return save_module(module, run.run_dir / "export-refit" / trained.candidate)


def _convert_for_edge(run: PipelineRun, saved_model: Path, extra: dict[str, Path]) -> dict[str, Any]:
    """The core's generic TFLite conversion (dynamic-range int8) for apps without an edge export of
    their own. Models with ops TFLite lacks (e.g. YDF trees) cannot convert: the report says why and
    the SavedModel is still published."""
    from solutions_core.export import convert_to_tflite

    target = run.run_dir / "edge" / "model.tflite"
    try:
        convert_to_tflite(saved_model, target)
    except Exception as problem:  # the converter raises many types; the reason is what matters
        run.say(f"edge: the SavedModel does not convert to TFLite ({type(problem).__name__}); publishing the SavedModel only")
        return {"passed": False, "why": f"TFLite conversion failed: {str(problem)[:500]}"}
    extra["model.tflite"] = target
    run.say(f"edge: converted to TFLite ({target.stat().st_size / 1024:.0f} KB)")
    return {"passed": True, "files": ["model.tflite"], "how": "generic dynamic-range conversion"}


def write_report(run: PipelineRun, trained: TrainedModel, scored: TestScores, decision: GateDecision, published: PublishedVersion | None = None) -> RunResult:
    """The run's result and ``report.json``: the candidate's test metrics next to the champion's and the
    baselines', the gate verdict and the published version (if any)."""
    version = ModelVersion(run.solution.name, published.version, published.path) if published else None
    result = RunResult(
        app=run.solution.name,
        run_id=run.run_id,
        run_dir=run.run_dir,
        status="promoted" if version else "rejected",
        candidate=trained.candidate,
        test=scored.test,
        baselines=scored.baselines,
        champion_before=scored.champion_before,
        version=version,
        reason=decision.reason,
        comparisons=scored.comparisons,
        candidates=trained.candidates,
        plots=scored.plots,
        golden_instances=trained.golden_instances,
        golden_outputs=trained.golden_outputs,
        edge=trained.edge,
        seconds=time.time() - run.artifact("validate_data").started_at,
    )
    write_json(run.run_dir / "report.json", result.summary())
    return result


@dataclass
class WorkerResult:
    """What a worker that is not the chief did in a multi-worker run: trained in step with the chief
    (every Keras step on its shard), then left evaluation, the gate and publishing to the chief."""

    app: str
    task: str
    workers: int
    keras_steps: int  # optimizer steps of the candidates' Keras fits, as on the chief
    refitted: bool
    seconds: float

    @property
    def promoted(self) -> bool:
        return False

    def summary(self) -> dict[str, Any]:
        return {"app": self.app, "status": "worker", "task": self.task, "workers": self.workers, "keras_steps": self.keras_steps, "refitted": self.refitted, "seconds": self.seconds}


def run_training(
    solution: Solution,
    config: SolutionConfig,
    settings: Settings | None = None,
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    verbose: int = 1,
    report: Reporter | None = None,
    min_delta: float = 0.0,
    run_id: str | None = None,
) -> RunResult | WorkerResult:
    """Train, evaluate, gate and (maybe) publish one app: every stage of ``STAGES`` in turn, in this
    process. Raises before publishing on any failure.

    With two or more workers (``TF_CONFIG``; ``solutions_core.strategy``) every worker runs this same
    call: all train the candidates together, only the chief scores on test, gates and publishes, and the
    others follow the chief's verdict into the refit on all data (more training steps in step) or stop.
    They work in a temporary folder and return a ``WorkerResult``."""
    run = PipelineRun(solution, config, settings, run_id, verbose=verbose, report=report, min_delta=min_delta)
    runtime = run.runtime(config.seed)  # the strategy first, and a missing GPU said before any data work
    if not runtime.is_chief:
        return _follow_the_chief(run, runtime, tables)
    for stage in STAGES:
        if stage.after_gate and not run.gate_passed():
            if stage.name == "publish":
                from_chief(runtime, 0.0)
            continue
        if stage.name == "publish":
            # The workers wait here for the verdict: they refit with the chief, or stop.
            from_chief(runtime, 1.0 if runtime.workers > 1 and _refits(run) else 0.0)
        run.run_stage(stage.name, **({"tables": tables} if stage.name == "validate_data" else {}))
    return run.artifact(STAGES[-1].name)


def _refits(run: PipelineRun) -> bool:
    """Whether ``publish`` will fit again on all data (Keras steps every worker must take part in)."""
    split = run.artifact("split_data")
    if not run.context(split.config).config.refit_on_all_data:
        return False
    published = ModelRegistry(run.settings.resolved_models_dir()).versions(run.solution.name)
    return not any(version.metadata().get("run_id") == run.run_id for version in published)


def _follow_the_chief(run: PipelineRun, runtime: Any, tables: Mapping[str, pd.DataFrame] | None) -> WorkerResult:
    started_at = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"solutions-{run.solution.name}-{runtime.task.replace(' ', '')}-"))
    # Nothing of a worker's is kept, and it writes nothing where the chief does (a shared volume): the
    # chief's run folder is the run's record.
    run.settings = run.settings.model_copy(update={"home": scratch, "data_dir": None, "models_dir": None, "runs_dir": None, "batch_dir": None})
    run.run_dir = run.settings.resolved_runs_dir() / run.solution.name / run.run_id
    run.say(f"{runtime.task} of {runtime.workers}: training in step with the chief, which evaluates, gates and publishes")
    try:
        validated = validate_data(run, tables=tables)
        split = split_data(run, validated)
        trained = train_candidates(run, split)
        refitted = from_chief(runtime, 0.0) > 0.5
        if refitted:
            refit_on_all_data(run, split, trained)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    run.say(f"{runtime.task}: done" + (" (refitted with the chief)" if refitted else ""))
    steps = sum(result.keras_steps for result in trained.candidates)
    return WorkerResult(run.solution.name, runtime.task, runtime.workers, steps, refitted, time.perf_counter() - started_at)
