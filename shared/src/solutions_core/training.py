"""The one pipeline every app runs, whichever orchestrator calls it (CLI, Airflow, a notebook):

    data → validate against the contract → store → prepare + time split → fit each candidate →
    pick the best on validation → export and reload → test metrics vs baselines → gate against the
    champion → publish a new version (only if it wins) → run report.

Each step is a plain function over plain values so orchestrators can call steps one by one; a failure
at any step raises before anything is published, so the champion keeps serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solutions_core import __version__
from solutions_core.contracts import Contract, ValidationReport, load_contract
from solutions_core.data import DataStore, fingerprint
from solutions_core.model_registry import ModelRegistry, ModelVersion
from solutions_core.serving.models import WARMUP_FILE
from solutions_core.settings import Settings
from solutions_core.solution import (
    Candidate,
    CustomCandidate,
    EdgeExport,
    Evaluation,
    KerasCandidate,
    SkipCandidate,
    Solution,
    SolutionConfig,
    Splits,
)

logger = logging.getLogger("solutions_core.training")
Reporter = Callable[[str], None]


@dataclass
class CandidateResult:
    name: str
    kind: str
    valid: Evaluation
    calibration: dict[str, Any]
    fit_seconds: float


@dataclass
class RunResult:
    app: str
    run_id: str
    run_dir: Path
    status: str  # "promoted" | "rejected"
    candidate: str
    test: Evaluation
    baselines: dict[str, Evaluation]
    champion_before: dict[str, Any] | None
    version: ModelVersion | None
    candidates: list[CandidateResult] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    golden_instances: list[dict[str, Any]] = field(default_factory=list)
    golden_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    edge: EdgeExport | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "run_id": self.run_id,
            "status": self.status,
            "candidate": self.candidate,
            "version": self.version.version if self.version else None,
            "gate_metric": self.test.gate_metric,
            "test": self.test.metrics,
            "baselines": {name: ev.metrics for name, ev in self.baselines.items()},
            "champion_before": self.champion_before,
            "candidates": [
                {"name": c.name, "kind": c.kind, "valid": c.valid.metrics, "fit_seconds": round(c.fit_seconds, 2)}
                for c in self.candidates
            ],
            "run_dir": str(self.run_dir),
            "plots": [str(p) for p in self.plots],
            "edge": self.edge.report if self.edge is not None else None,
        }


# ---- steps ---------------------------------------------------------------------------------------


def contracts_for(solution: Solution, config: SolutionConfig, settings: Settings) -> dict[str, Contract]:
    """The solution's contracts; a fork replaces the primary one with ``config.contract`` and any
    other table's with ``config.table_contracts[table]``."""
    unknown = sorted(set(config.table_contracts) - set(solution.contracts))
    if unknown:
        raise ValueError(f"table_contracts names tables {solution.name} does not have: {unknown}; its tables are {list(solution.contracts)}.")
    found = {}
    for index, name in enumerate(solution.contracts):
        chosen = config.contract if (index == 0 and config.contract) else config.table_contracts.get(name, name)
        contract = load_contract(chosen, settings.contracts_dir)
        found[name] = contract
    return found


def acquire(solution: Solution, config: SolutionConfig, settings: Settings | None = None) -> dict[str, pd.DataFrame]:
    """Load ``config.source`` if given, else generate the embedded default."""
    if config.source:
        tables = solution.load(config.source, config)
    else:
        settings = settings or Settings()
        tables = solution.generate(config, workdir=settings.resolved_data_dir() / solution.name / "generated")
    missing = [name for name in solution.contracts if name not in tables]
    if missing:
        raise ValueError(f"{solution.name} produced no table(s) {missing}; expected {list(solution.contracts)}.")
    return tables


def validate(tables: Mapping[str, pd.DataFrame], contracts: Mapping[str, Contract]) -> dict[str, ValidationReport]:
    """Check every table; raise ContractViolation (listing every failed rule) on the first bad table."""
    reports = {}
    for name, contract in contracts.items():
        reports[name] = contract.check(tables[name])
    return reports


def fit_candidate(
    candidate: Candidate, splits: Splits, config: SolutionConfig, runtime: Any, run_dir: Path, verbose: int
) -> Any:
    if isinstance(candidate, CustomCandidate):
        return candidate.fit(splits, runtime)
    if not isinstance(candidate, KerasCandidate):
        raise TypeError(f"Unknown candidate type {type(candidate).__name__}.")
    import keras

    training = config.training
    with runtime.strategy.scope():
        model = candidate.build_model(splits.train)
        model.compile(**candidate.compile_options(training), jit_compile=runtime.jit_compile)
    global_batch = training.batch_size * int(getattr(runtime.strategy, "num_replicas_in_sync", 1))
    train_data = candidate.make_dataset(splits.train, True, global_batch)
    if training.steps_per_epoch:  # fixed-length epochs may cross the end of the data
        train_data = train_data.repeat()
    valid_data = candidate.make_dataset(splits.valid, False, global_batch)
    callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard" / candidate.name), write_graph=False)]
    if training.early_stopping_patience:
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
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself
    )
    return model


def evaluate_champion(
    solution: Solution, champion: ModelVersion, test: Any, config: SolutionConfig, contract: Contract
) -> dict[str, Any]:
    """Score the current champion on this run's test split, so the gate compares like with like.

    If the champion cannot score this data (another contract major version, other inputs), fall back to
    the gate value it recorded when it was promoted.
    """
    from solutions_core.export import load_signature, predict_frame

    metadata = champion.metadata()
    recorded = metadata.get("test_metrics", {}).get(solution.gate_metric)
    same_major = str(metadata.get("contract", {}).get("version", "")).split(".")[0] == contract.version.split(".")[0]
    if same_major:
        try:
            signature = load_signature(champion.path, metadata.get("custom_ops", solution.custom_ops))
            outputs = predict_frame(signature, test, solution.predict_batch_size)
            evaluation = solution.evaluate(outputs, test, config)
            return {"version": champion.version, "value": evaluation.gate_value, "how": "re-scored on this test split"}
        except Exception as error:  # the champion may expect inputs this data no longer has
            logger.warning("Champion v%s could not score this data (%s); using its recorded metric.", champion.version, error)
    return {"version": champion.version, "value": recorded, "how": "recorded at its promotion"}


def code_version() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5, check=False
        )
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
    if isinstance(value, Evaluation):
        return asdict(value)
    return str(value)


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    return path


# ---- the pipeline ------------------------------------------------------------------------------


def run_training(
    solution: Solution,
    config: SolutionConfig,
    settings: Settings | None = None,
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    verbose: int = 1,
    report: Reporter | None = None,
    min_delta: float = 0.0,
) -> RunResult:
    """Train, evaluate, gate and (maybe) publish one app. Raises before publishing on any failure."""
    import tensorflow as tf

    from solutions_core.export import load_signature, max_abs_difference, predict_frame, save_module
    from solutions_core.strategy import make_runtime

    settings = settings or Settings()
    say = report or (lambda message: logger.info(message))
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_dir = settings.resolved_runs_dir() / solution.name / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    contracts = contracts_for(solution, config, settings)
    primary = contracts[solution.contracts[0]]
    tables = dict(tables) if tables is not None else acquire(solution, config, settings)
    say(f"data: {', '.join(f'{name} {len(frame):,} rows' for name, frame in tables.items())}")
    try:
        reports = validate(tables, contracts)
    except Exception as error:
        report_obj = getattr(error, "report", None)
        write_json(run_dir / "validation.json", report_obj.to_dict() if report_obj else {"error": str(error)})
        raise
    write_json(run_dir / "validation.json", {name: r.to_dict() for name, r in reports.items()})
    say(f"contract: {primary.name} v{primary.version} ok")

    store = DataStore(settings.resolved_data_dir())
    fingerprints = {}
    for name, frame in tables.items():
        store.write(solution.name, name, frame)
        fingerprints[name] = fingerprint(frame)

    examples = solution.prepare(tables, config)
    splits = solution.split(examples, config)
    say(f"split: {splits.sizes()}")

    runtime = make_runtime(settings.target, seed=config.seed)
    runtime.verbose = verbose
    say(f"runtime: {runtime.describe()}")

    candidates = solution.candidates(config)
    if config.candidates:
        candidates = [c for c in candidates if c.name in config.candidates]
        if not candidates:
            raise ValueError(f"No candidate matches {config.candidates}.")
    results: list[CandidateResult] = []
    modules: dict[str, Any] = {}
    fitted_models: dict[str, Any] = {}

    batch = solution.predict_batch_size
    valid_outputs_of: dict[str, Any] = {}

    def score_candidate(candidate: Candidate, fitted: Any, started_at: float) -> None:
        module = solution.serving_module(candidate, fitted, config)
        valid_outputs = predict_frame(module.serve, splits.valid, batch)
        calibration = solution.calibrate(module, splits.valid, valid_outputs, config)
        if calibration:
            valid_outputs = predict_frame(module.serve, splits.valid, batch)
        valid_outputs_of[candidate.name] = valid_outputs
        evaluation = solution.evaluate(valid_outputs, splits.valid, config)
        results.append(CandidateResult(candidate.name, candidate.kind, evaluation, calibration, time.perf_counter() - started_at))
        modules[candidate.name] = module
        say(f"  valid {evaluation.gate_metric}={evaluation.gate_value:.4f}")

    for candidate in candidates:
        say(f"fit: {candidate.name} ({candidate.kind})")
        fit_start = time.perf_counter()
        try:
            fitted_models[candidate.name] = fit_candidate(candidate, splits, config, runtime, run_dir, verbose)
        except SkipCandidate as reason:
            say(f"  skipped: {reason}")
            continue
        score_candidate(candidate, fitted_models[candidate.name], fit_start)
    # Ensembles of the fitted candidates compete on the same validation data (no refitting).
    for candidate, fitted in solution.ensembles(fitted_models, config):
        say(f"ensemble: {candidate.name}")
        score_candidate(candidate, fitted, time.perf_counter())

    if not results:
        raise ValueError(f"No candidate of {solution.name} could be trained on this data (all were skipped).")
    best = max(results, key=lambda r: r.valid.gate_value if solution.higher_is_better else -r.valid.gate_value)
    module = modules[best.name]

    export_dir = save_module(module, run_dir / "export" / best.name)
    reloaded = load_signature(export_dir, solution.custom_ops)
    probe = splits.test.head(256)
    difference = max_abs_difference(predict_frame(module.serve, probe, batch), predict_frame(reloaded, probe, batch))
    if not difference <= 1e-4:
        raise RuntimeError(f"The exported SavedModel disagrees with the in-process model (max |Δ| = {difference}).")

    test_outputs = predict_frame(reloaded, splits.test, batch)
    test_evaluation = solution.evaluate(test_outputs, splits.test, config)
    say(f"test: {best.name} {test_evaluation.gate_metric}={test_evaluation.gate_value:.4f}")
    baselines = solution.baselines(splits, config)
    for name, evaluation in baselines.items():
        say(f"baseline: {name} {evaluation.gate_metric}={evaluation.gate_value:.4f}")
    plots = solution.report(test_outputs, splits.test, baselines, run_dir, config)
    golden = solution.golden_instances(splits.test, config)
    # The in-process model's answers on the golden requests: what the exported model, TF Serving and
    # our API must reproduce (conformance tests compare against these).
    golden_outputs = predict_frame(module.serve, pd.DataFrame(golden), batch)
    golden_path = write_json(run_dir / "golden_request.json", {"instances": golden})
    write_json(run_dir / "golden_outputs.json", golden_outputs)

    edge: EdgeExport | None = solution.export_edge(module, splits, valid_outputs_of[best.name], config, run_dir / "edge")
    if edge is not None:
        write_json(run_dir / "edge" / "edge_report.json", edge.report)
        say(f"edge: {'passed' if edge.passed else 'FAILED'} its parity gate ({', '.join(sorted(edge.files))})"
            + ("" if edge.passed else "; the edge models will not be published"))

    registry = ModelRegistry(settings.resolved_models_dir())
    champion = registry.champion(solution.name)
    champion_before = evaluate_champion(solution, champion, splits.test, config, primary) if champion else None
    champion_value = champion_before["value"] if champion_before else None
    wins = test_evaluation.beats(champion_value, min_delta) and math.isfinite(test_evaluation.gate_value)

    version = None
    if wins:
        metadata = {
            "run_id": run_id,
            "candidate": best.name,
            "gate_metric": solution.gate_metric,
            "higher_is_better": solution.higher_is_better,
            "test_metrics": test_evaluation.metrics,
            "valid_metrics": best.valid.metrics,
            "baselines": {name: ev.metrics for name, ev in baselines.items()},
            "calibration": best.calibration,
            "contract": {"name": primary.name, "version": primary.version},
            "data_fingerprints": fingerprints,
            "config": config.model_dump(mode="json"),
            "code_version": code_version(),
            "runtime": runtime.describe(),
            "custom_ops": list(solution.custom_ops),
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "champion_before": champion_before,
            "edge": edge.report if edge is not None else None,
        }
        extra = {f"{primary.name}.yaml": primary.path} if primary.path else {}
        extra[WARMUP_FILE] = golden_path  # the server warms a new version up with real requests
        if edge is not None and edge.passed:
            extra.update(edge.files)
        version = registry.publish(solution.name, export_dir, metadata, extra_files=extra)
        say(f"gate: promoted as version {version.version} ({solution.gate_metric} {test_evaluation.gate_value:.4f}"
            f" vs champion {champion_value if champion_value is not None else 'none'})")
    else:
        against = (
            f"champion v{champion_before['version']} at {champion_value:.4f}"
            if champion_before and champion_value is not None
            else "a finite value"
        )
        say(f"gate: rejected ({solution.gate_metric} {test_evaluation.gate_value:.4f} does not beat {against}); "
            "nothing published")

    result = RunResult(
        app=solution.name,
        run_id=run_id,
        run_dir=run_dir,
        status="promoted" if version else "rejected",
        candidate=best.name,
        test=test_evaluation,
        baselines=baselines,
        champion_before=champion_before,
        version=version,
        candidates=results,
        plots=plots,
        golden_instances=golden,
        golden_outputs=golden_outputs,
        edge=edge,
    )
    summary = result.summary()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(run_dir / "report.json", summary)
    return result
