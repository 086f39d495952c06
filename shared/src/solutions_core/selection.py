"""Choosing a candidate when validation is small: k-fold (or rolling-origin) cross-validation over
train + validation, with parameters (a threshold) calibrated on the pooled out-of-fold outputs.

With a few dozen positives in a 15 % validation split, which candidate wins and where its threshold
lies are mostly noise; every example of train + validation scored once by a model that did not see it
is several times the evidence. ``config.cross_validation_folds`` turns it on; the core still serves the
model fitted on the train split (the folds only choose and calibrate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from solutions_core.solution import Candidate, Context, Ensemble, KerasCandidate, Metrics, SkipCandidate, Splits

if TYPE_CHECKING:  # pragma: no cover - typing only
    from solutions_core.solution import Solution


def cross_validation_folds(
    rows: int, count: int, seed: int, *, times: pd.Series | None = None, labels: pd.Series | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, score) row positions of ``count`` folds over ``rows`` examples.

    With ``times``: rolling origin — the rows in time order cut into ``count + 1`` blocks, fold i fits on
    blocks 0..i and scores block i+1, so no fold scores the past with the future. Otherwise k-fold,
    shuffled with ``seed``, stratified by ``labels`` when each label value has at least ``count`` rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if count < 2:
        raise ValueError(f"cross_validation_folds must be at least 2 to cross-validate, not {count}.")
    if rows < 2 * count:
        raise ValueError(f"{rows} train + validation examples are too few for {count} cross-validation folds.")
    if times is not None:
        order = np.argsort(times.to_numpy(), kind="stable")
        blocks = np.array_split(order, count + 1)
        return [(np.sort(np.concatenate(blocks[: index + 1])), np.sort(blocks[index + 1])) for index in range(count)]
    positions = np.arange(rows)
    if labels is not None:
        codes = pd.factorize(labels)[0]
        per_value = np.bincount(codes[codes >= 0])
        if 1 < len(per_value) <= 50 and per_value.min() >= count:
            return [(fit, score) for fit, score in StratifiedKFold(count, shuffle=True, random_state=seed).split(positions, codes)]
    return [(fit, score) for fit, score in KFold(count, shuffle=True, random_state=seed).split(positions)]


@dataclass
class CrossValidated:
    """A candidate's cross-validation: parameters calibrated on its pooled out-of-fold outputs, and its
    metrics on each fold with those parameters."""

    parameters: dict[str, float]
    fold_metrics: list[Metrics]

    def mean_metrics(self) -> Metrics:
        names = dict.fromkeys(name for metrics in self.fold_metrics for name in metrics)
        with np.errstate(all="ignore"):
            return {name: float(np.nanmean([m.get(name, np.nan) for m in self.fold_metrics])) if any(
                np.isfinite(m.get(name, np.nan)) for m in self.fold_metrics) else float("nan") for name in names}


def cross_validate(
    solution: "Solution",
    context: Context,
    splits: Splits,
    candidates: list[Candidate | KerasCandidate],
    ensembles: list[Ensemble],
    make_trainer: Any,
    say: Any,
) -> dict[str, CrossValidated]:
    """Fit every candidate on each fold's fit rows, score it on the fold's other rows; ensembles are
    combined from the same fold's members. A candidate skipped in any fold is left out (its scores would
    not be comparable). ``make_trainer(candidate_name, fold_index)`` gives the fold's Trainer."""
    from solutions_core.export import predict_frame
    from solutions_core.training import write_parameters

    config = context.config
    pool = pd.concat([splits.train, splits.valid], ignore_index=True)
    folds = solution.data.folds(context, pool, config.cross_validation_folds)
    batch = solution.predict_batch_size
    modules: dict[str, list[tuple[Any, pd.DataFrame]]] = {}
    for index, (fit_rows, score_rows) in enumerate(folds):
        fold = Splits(pool.iloc[fit_rows].reset_index(drop=True), pool.iloc[score_rows].reset_index(drop=True), splits.test)
        say(f"cross-validation fold {index + 1}/{len(folds)}: fit on {len(fit_rows):,}, score {len(score_rows):,}")
        fitted: dict[str, Any] = {}
        for candidate in candidates:
            try:
                fitted[candidate.name] = candidate.fit(fold, make_trainer(candidate.name, index))
            except SkipCandidate:
                continue
            modules.setdefault(candidate.name, []).append((solution.serving.module(context, fitted[candidate.name]), fold.valid))
        for ensemble in ensembles:
            if all(member in fitted for member in ensemble.members):
                combined = ensemble.combine([fitted[member] for member in ensemble.members])
                modules.setdefault(ensemble.name, []).append((solution.serving.module(context, combined), fold.valid))

    results: dict[str, CrossValidated] = {}
    for name, fold_modules in modules.items():
        if len(fold_modules) < len(folds):
            say(f"cross-validation: {name} was skipped in some folds; left out of the choice")
            continue
        outputs = [predict_frame(module.serve, examples, batch) for module, examples in fold_modules]
        pooled_examples = pd.concat([examples for _, examples in fold_modules], ignore_index=True)
        pooled_outputs = {key: np.concatenate([np.asarray(fold_outputs[key]) for fold_outputs in outputs]) for key in outputs[0]}
        parameters = {key: float(value) for key, value in solution.evaluation.calibrate(context, pooled_examples, pooled_outputs).items()}
        fold_metrics = []
        for (module, examples), fold_outputs in zip(fold_modules, outputs):
            if parameters:
                write_parameters(module, parameters)
                fold_outputs = predict_frame(module.serve, examples, batch)
            fold_metrics.append({key: float(value) for key, value in solution.evaluation.evaluate(context, examples, fold_outputs).items()})
        results[name] = CrossValidated(parameters, fold_metrics)
    return results


def tensorboard_folder(run_dir: Path, candidate: str, fold: int) -> Path:
    return Path(run_dir) / "tensorboard" / "cross_validation" / f"{candidate}-fold{fold}"
