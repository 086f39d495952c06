"""The one pipeline every app runs, whichever orchestrator calls it (CLI, Airflow, a notebook):

    data → validate against the contract → store → prepare + time split → fit each candidate →
    pick the best on validation → export and reload → test metrics vs baselines → gate against the
    champion → publish a new version (only if it wins) → run report.

The pipeline is a sequence of stages (``STAGES``: validate → train → evaluate → gate → export → publish
→ report). ``run_training`` runs them in one process, handing values over in memory; an orchestrator
(Airflow, see ``solutions_core.orchestration``) runs each stage in its own process, and every stage
persists what the next one needs in the run directory (``<runs>/<app>/<run_id>/``), so a retried or
later stage picks up from disk. A failure at any stage raises before anything is published, so the
champion keeps serving.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import platform
import shutil
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
    if candidate.finish_training is not None:
        with runtime.strategy.scope():
            model = candidate.finish_training(model, splits, runtime, train_data, valid_data)
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


# ---- the pipeline, as stages -------------------------------------------------------------------

STAGES = ("validate", "train", "evaluate", "gate", "export", "publish", "report")


class PipelineRun:
    """One training run: where it lives and what its stages produced.

    Stages hand values over in ``memory`` when they share a process (``run_training``); each also
    writes what later stages need under ``<run_dir>/state/``, so a stage running in a fresh process (an
    Airflow task, a retry) reads it back instead.
    """

    def __init__(
        self,
        solution: Solution,
        config: SolutionConfig,
        settings: Settings | None = None,
        run_id: str | None = None,
        *,
        verbose: int = 1,
        report: Reporter | None = None,
    ):
        self.solution = solution
        self.config = config
        self.settings = settings or Settings()
        self.run_id = run_id or dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        if not self.run_id or "/" in self.run_id or self.run_id.startswith("."):
            raise ValueError(f"run_id {self.run_id!r} must be a plain folder name (no '/', not hidden).")
        self.run_dir = self.settings.resolved_runs_dir() / solution.name / self.run_id
        self.verbose = verbose
        self.say: Reporter = report or (lambda message: logger.info(message))
        self.memory: dict[str, Any] = {}

    # -- persisted state --
    def state_path(self, stage: str) -> Path:
        return self.run_dir / "state" / f"{stage}.json"

    def save_state(self, stage: str, payload: dict[str, Any]) -> None:
        write_json(self.state_path(stage), payload)

    def state(self, stage: str) -> dict[str, Any]:
        path = self.state_path(stage)
        if not path.exists():
            raise FileNotFoundError(
                f"Stage {stage!r} has not completed for run {self.run_id} of {self.solution.name} (no {path}); "
                f"stages run in the order {' → '.join(STAGES)}."
            )
        return json.loads(path.read_text())

    # -- values shared by stages, from memory or from the run directory --
    def tables(self) -> dict[str, pd.DataFrame]:
        if "tables" not in self.memory:
            names = self.state("validate")["tables"]
            self.memory["tables"] = {name: pd.read_parquet(self.run_dir / "data" / f"{name}.parquet") for name in names}
        return self.memory["tables"]

    def splits(self) -> Splits:
        # prepare and split are deterministic for a given config, so a later process rebuilds the same splits.
        if "splits" not in self.memory:
            self.memory["splits"] = self.solution.split(self.solution.prepare(self.tables(), self.config), self.config)
        return self.memory["splits"]

    def primary_contract(self) -> Contract:
        if "contracts" not in self.memory:
            self.memory["contracts"] = contracts_for(self.solution, self.config, self.settings)
        return self.memory["contracts"][self.solution.contracts[0]]

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        if name not in self.memory:
            with np.load(self.run_dir / "state" / f"{name}.npz", allow_pickle=True) as stored:  # our own files
                self.memory[name] = {key: stored[key] for key in stored.files}
        return self.memory[name]


def _evaluation_from(payload: Mapping[str, Any]) -> Evaluation:
    return Evaluation(dict(payload["metrics"]), payload["gate_metric"], bool(payload["higher_is_better"]))


def _evaluation_state(evaluation: Evaluation) -> dict[str, Any]:
    return {"metrics": evaluation.metrics, "gate_metric": evaluation.gate_metric, "higher_is_better": evaluation.higher_is_better}


def stage_validate(run: PipelineRun, tables: Mapping[str, pd.DataFrame] | None = None, *, fresh: bool = False, snapshot: bool = False) -> dict[str, ValidationReport]:
    """Load (or take) the data and check it against the contracts before anything is trained.

    ``fresh`` empties the run directory first (a re-run of the same run id replaces its outputs);
    ``snapshot`` keeps the validated tables in the run directory for stages in other processes.
    Raises ``ContractViolation`` (every failed rule listed, also in ``validation.json``)."""
    solution, config, settings = run.solution, run.config, run.settings
    if fresh and run.run_dir.exists():
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    contracts = contracts_for(solution, config, settings)
    run.memory["contracts"] = contracts
    primary = contracts[solution.contracts[0]]
    tables = dict(tables) if tables is not None else acquire(solution, config, settings)
    run.say(f"data: {', '.join(f'{name} {len(frame):,} rows' for name, frame in tables.items())}")
    try:
        reports = validate(tables, contracts)
    except Exception as error:
        report_obj = getattr(error, "report", None)
        write_json(run.run_dir / "validation.json", report_obj.to_dict() if report_obj else {"error": str(error)})
        raise
    write_json(run.run_dir / "validation.json", {name: r.to_dict() for name, r in reports.items()})
    run.say(f"contract: {primary.name} v{primary.version} ok")

    store = DataStore(settings.resolved_data_dir())
    fingerprints = {}
    for name, frame in tables.items():
        store.write(solution.name, name, frame)
        fingerprints[name] = fingerprint(frame)
        if snapshot:
            _write_parquet(run.run_dir / "data" / f"{name}.parquet", frame)
    run.memory["tables"] = tables
    run.save_state("validate", {"tables": list(tables), "fingerprints": fingerprints, "started_at": started_at})
    return reports


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def stage_train(run: PipelineRun) -> str:
    """Fit every candidate (and the app's ensembles), score each on validation, keep the best: its
    module is saved as a SavedModel, with its outputs on probe and golden requests (what the exported
    model must reproduce) and the app's edge models (built here because they need the live module)."""
    from solutions_core.export import predict_frame, save_module
    from solutions_core.strategy import make_runtime

    solution, config = run.solution, run.config
    say = run.say
    splits = run.splits()
    say(f"split: {splits.sizes()}")

    runtime = make_runtime(run.settings.target, seed=config.seed)
    runtime.verbose = run.verbose
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
            fitted_models[candidate.name] = fit_candidate(candidate, splits, config, runtime, run.run_dir, run.verbose)
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

    export_dir = save_module(module, run.run_dir / "export" / best.name)
    probe_outputs = predict_frame(module.serve, splits.test.head(256), batch)
    golden = solution.golden_instances(splits.test, config)
    # The in-process model's answers on the golden requests: what the exported model, TF Serving and
    # our API must reproduce (conformance tests compare against these).
    golden_outputs = predict_frame(module.serve, pd.DataFrame(golden), batch)
    write_json(run.run_dir / "golden_request.json", {"instances": golden})
    write_json(run.run_dir / "golden_outputs.json", golden_outputs)
    (run.run_dir / "state").mkdir(parents=True, exist_ok=True)
    np.savez(run.run_dir / "state" / "probe_outputs.npz", **probe_outputs)
    np.savez(run.run_dir / "state" / "golden_outputs.npz", **golden_outputs)

    edge: EdgeExport | None = solution.export_edge(module, splits, valid_outputs_of[best.name], config, run.run_dir / "edge")
    if edge is not None:
        write_json(run.run_dir / "edge" / "edge_report.json", edge.report)
        say(f"edge: {'passed' if edge.passed else 'FAILED'} its parity gate ({', '.join(sorted(edge.files))})"
            + ("" if edge.passed else "; the edge models will not be published"))

    run.memory.update(results=results, best=best, module=module, probe_outputs=probe_outputs, golden=golden,
                      golden_outputs=golden_outputs, edge=edge)
    run.save_state("train", {
        "candidate": best.name,
        "export_dir": str(export_dir),
        "runtime": runtime.describe(),
        # prepare() may resolve data-dependent config fields (a forecaster's frequency and horizon); a
        # DAG runs export in another process, where prepare never ran, so the model's config travels here.
        "config": config.model_dump(mode="json"),
        "candidates": [
            {"name": r.name, "kind": r.kind, "valid": _evaluation_state(r.valid), "calibration": r.calibration, "fit_seconds": r.fit_seconds}
            for r in results
        ],
        "edge": {"files": {k: str(v) for k, v in edge.files.items()}, "report": edge.report, "passed": edge.passed} if edge else None,
    })
    return best.name


def _train_results(run: PipelineRun) -> list[CandidateResult]:
    if "results" not in run.memory:
        run.memory["results"] = [
            CandidateResult(c["name"], c["kind"], _evaluation_from(c["valid"]), c["calibration"], c["fit_seconds"])
            for c in run.state("train")["candidates"]
        ]
    return run.memory["results"]


def _edge(run: PipelineRun) -> EdgeExport | None:
    if "edge" not in run.memory:
        stored = run.state("train")["edge"]
        run.memory["edge"] = EdgeExport({k: Path(v) for k, v in stored["files"].items()}, stored["report"], stored["passed"]) if stored else None
    return run.memory["edge"]


def stage_evaluate(run: PipelineRun) -> Evaluation:
    """Reload the exported SavedModel (it must reproduce the in-process model), score it on the test
    split next to the baselines trained in this run, and re-score the champion on the same split."""
    from solutions_core.export import load_signature, max_abs_difference, predict_frame

    solution, config, say = run.solution, run.config, run.say
    trained = run.state("train")
    splits = run.splits()
    batch = solution.predict_batch_size
    reloaded = load_signature(Path(trained["export_dir"]), solution.custom_ops)
    difference = max_abs_difference(run.arrays("probe_outputs"), predict_frame(reloaded, splits.test.head(256), batch))
    if not difference <= 1e-4:
        raise RuntimeError(f"The exported SavedModel disagrees with the in-process model (max |Δ| = {difference}).")

    test_outputs = predict_frame(reloaded, splits.test, batch)
    test_evaluation = solution.evaluate(test_outputs, splits.test, config)
    say(f"test: {trained['candidate']} {test_evaluation.gate_metric}={test_evaluation.gate_value:.4f}")
    baselines = solution.baselines(splits, config)
    for name, evaluation in baselines.items():
        say(f"baseline: {name} {evaluation.gate_metric}={evaluation.gate_value:.4f}")
    plots = solution.report(test_outputs, splits.test, baselines, run.run_dir, config)

    champion = ModelRegistry(run.settings.resolved_models_dir()).champion(solution.name)
    champion_before = evaluate_champion(solution, champion, splits.test, config, run.primary_contract()) if champion else None
    run.memory.update(test=test_evaluation, baselines=baselines, plots=plots, champion_before=champion_before)
    run.save_state("evaluate", {
        "test": _evaluation_state(test_evaluation),
        "baselines": {name: _evaluation_state(ev) for name, ev in baselines.items()},
        "plots": [str(p) for p in plots],
        "champion_before": champion_before,
    })
    return test_evaluation


def _evaluated(run: PipelineRun) -> tuple[Evaluation, dict[str, Evaluation], list[Path], dict[str, Any] | None]:
    if "test" not in run.memory:
        stored = run.state("evaluate")
        run.memory.update(
            test=_evaluation_from(stored["test"]),
            baselines={name: _evaluation_from(ev) for name, ev in stored["baselines"].items()},
            plots=[Path(p) for p in stored["plots"]],
            champion_before=stored["champion_before"],
        )
    return run.memory["test"], run.memory["baselines"], run.memory["plots"], run.memory["champion_before"]


def stage_gate(run: PipelineRun, min_delta: float = 0.0) -> bool:
    """True when the candidate beats the champion (re-scored on the same test split) by more than
    ``min_delta``; a rejected run ends here and the champion keeps serving."""
    solution = run.solution
    test, _, _, champion_before = _evaluated(run)
    champion_value = champion_before["value"] if champion_before else None
    wins = test.beats(champion_value, min_delta) and math.isfinite(test.gate_value)
    if not wins:
        against = (
            f"champion v{champion_before['version']} at {champion_value:.4f}"
            if champion_before and champion_value is not None
            else "a finite value"
        )
        run.say(f"gate: rejected ({solution.gate_metric} {test.gate_value:.4f} does not beat {against}); nothing published")
    run.memory["wins"] = wins
    run.save_state("gate", {"wins": wins, "champion_value": champion_value, "min_delta": min_delta, "gate_value": test.gate_value})
    return wins


def _wins(run: PipelineRun) -> bool:
    if "wins" not in run.memory:
        run.memory["wins"] = bool(run.state("gate")["wins"])
    return run.memory["wins"]


def stage_export(run: PipelineRun) -> dict[str, Any] | None:
    """What ``publish`` copies in, when the gate passed (else None): the SavedModel, its metadata, and
    extra files (the contract, warm-up requests, edge models that passed their parity gate). With
    ``target=edge`` and no edge model of the app's own, the SavedModel is converted to TFLite here."""
    import tensorflow as tf

    if not _wins(run):
        return None
    solution, config, settings = run.solution, run.config, run.settings
    trained = run.state("train")
    test, baselines, _, champion_before = _evaluated(run)
    best = next(r for r in _train_results(run) if r.name == trained["candidate"])
    primary = run.primary_contract()
    edge = _edge(run)
    extra = {f"{primary.name}.yaml": str(primary.path)} if primary.path else {}
    extra[WARMUP_FILE] = str(run.run_dir / "golden_request.json")  # the server warms a new version up with real requests
    if edge is not None and edge.passed:
        extra.update({name: str(path) for name, path in edge.files.items()})
    edge_report = edge.report if edge is not None else None
    if settings.target == "edge" and edge is None:
        edge_report = _convert_for_edge(run, Path(trained["export_dir"]), extra)
    metadata = {
        "run_id": run.run_id,
        "candidate": best.name,
        "gate_metric": solution.gate_metric,
        "higher_is_better": solution.higher_is_better,
        "test_metrics": test.metrics,
        "valid_metrics": best.valid.metrics,
        "baselines": {name: ev.metrics for name, ev in baselines.items()},
        "calibration": best.calibration,
        "contract": {"name": primary.name, "version": primary.version},
        "data_fingerprints": run.state("validate")["fingerprints"],
        "config": trained["config"],
        "code_version": code_version(),
        "runtime": trained["runtime"],
        "custom_ops": list(solution.custom_ops),
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "champion_before": champion_before,
        "edge": edge_report,
    }
    bundle = {"saved_model": trained["export_dir"], "metadata": metadata, "extra_files": extra}
    run.save_state("export", bundle)
    return bundle


def _convert_for_edge(run: PipelineRun, saved_model: Path, extra: dict[str, str]) -> dict[str, Any]:
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
    extra["model.tflite"] = str(target)
    run.say(f"edge: converted to TFLite ({target.stat().st_size / 1024:.0f} KB)")
    return {"passed": True, "files": ["model.tflite"], "how": "generic dynamic-range conversion"}


def stage_publish(run: PipelineRun) -> ModelVersion | None:
    """Copy the export in as the next version, atomically (``ModelRegistry.publish``); None when the
    gate rejected. A run id publishes at most once: a retried or re-run publish finds its version."""
    if not _wins(run):
        run.memory["version"] = None
        return None
    solution = run.solution
    registry = ModelRegistry(run.settings.resolved_models_dir())
    already = [v for v in registry.versions(solution.name) if v.metadata().get("run_id") == run.run_id]
    if already:
        version = already[-1]
        run.say(f"publish: run {run.run_id} already published version {version.version}; nothing more published")
    else:
        bundle = run.state("export")
        extra = {name: Path(path) for name, path in bundle["extra_files"].items()}
        version = registry.publish(solution.name, Path(bundle["saved_model"]), bundle["metadata"], extra_files=extra)
        test, _, _, champion_before = _evaluated(run)
        champion_value = champion_before["value"] if champion_before else None
        run.say(f"gate: promoted as version {version.version} ({solution.gate_metric} {test.gate_value:.4f}"
                f" vs champion {champion_value if champion_value is not None else 'none'})")
    run.memory["version"] = version
    run.save_state("publish", {"version": version.version, "path": str(version.path)})
    return version


def stage_report(run: PipelineRun) -> RunResult:
    """The run's result and ``report.json``: the candidate's test metrics next to the champion's and the
    baselines', the gate verdict and the published version (if any)."""
    if "version" not in run.memory:
        published = run.state_path("publish")
        stored = json.loads(published.read_text()) if published.exists() else None
        run.memory["version"] = ModelVersion(run.solution.name, stored["version"], Path(stored["path"])) if stored else None
    version = run.memory["version"]
    test, baselines, plots, champion_before = _evaluated(run)
    if "golden" not in run.memory:
        run.memory["golden"] = json.loads((run.run_dir / "golden_request.json").read_text())["instances"]
    result = RunResult(
        app=run.solution.name,
        run_id=run.run_id,
        run_dir=run.run_dir,
        status="promoted" if version else "rejected",
        candidate=run.state("train")["candidate"],
        test=test,
        baselines=baselines,
        champion_before=champion_before,
        version=version,
        candidates=_train_results(run),
        plots=plots,
        golden_instances=run.memory["golden"],
        golden_outputs=run.arrays("golden_outputs") if "golden_outputs" not in run.memory else run.memory["golden_outputs"],
        edge=_edge(run),
    )
    summary = result.summary()
    summary["seconds"] = round(time.time() - run.state("validate")["started_at"], 1)
    write_json(run.run_dir / "report.json", summary)
    return result


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
) -> RunResult:
    """Train, evaluate, gate and (maybe) publish one app: every stage in turn, in this process.
    Raises before publishing on any failure."""
    run = PipelineRun(solution, config, settings, run_id, verbose=verbose, report=report)
    stage_validate(run, tables)
    stage_train(run)
    stage_evaluate(run)
    if stage_gate(run, min_delta):
        stage_export(run)
        stage_publish(run)
    return stage_report(run)
