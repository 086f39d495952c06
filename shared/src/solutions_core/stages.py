"""The training pipeline's stage table: the one list that both ``run_training`` (every stage in one
process) and the Airflow DAG factory (one task per stage) follow.

Each stage is a function of ``solutions_core.training`` with the same name, taking the run and the
artifacts of the stages it lists as inputs and returning its own artifact, which the run saves under
``<runs>/<app>/<run_id>/artifacts/<stage>.pkl`` (plus a JSON summary beside it). A stage in a fresh
process (an Airflow task, a retry) loads its inputs from there.

This module imports nothing heavy: DAG files read it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    inputs: tuple[str, ...] = ()
    decides: bool = False  # its artifact's ``passed`` says whether the ``after_gate`` stages run
    after_gate: bool = False
    always: bool = False  # runs whether or not the gate passed (the report)
    accelerated: bool = False  # on a cluster, its pod gets the target's accelerator

    def function(self) -> Callable[..., Any]:
        from solutions_core import training

        return getattr(training, self.name)


STAGES: tuple[Stage, ...] = (
    Stage("validate_data", "load or generate the tables, check them against their contracts, store them"),
    Stage("split_data", "prepare examples and split them into train / validation / test (saved once)", ("validate_data",)),
    Stage("train_candidates", "fit every candidate and ensemble, calibrate, pick the best on validation, save its SavedModel (and edge models)", ("split_data",), accelerated=True),
    Stage("score_on_test", "reload the SavedModel, score it, the baselines and the champion on the test split", ("split_data", "train_candidates"), accelerated=True),
    Stage("gate", "publish only a candidate that beats the champion", ("score_on_test",), decides=True),
    Stage("publish", "copy the SavedModel, its metadata and extra files in as the next version", ("validate_data", "split_data", "train_candidates", "score_on_test", "gate"), after_gate=True),
    Stage("write_report", "the run's report.json: metrics next to the champion's and the baselines', the verdict", ("train_candidates", "score_on_test", "gate", "publish"), always=True),
)

STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stage(name: str) -> Stage:
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"Unknown stage {name!r}; the stages are {', '.join(STAGE_NAMES)}.")
