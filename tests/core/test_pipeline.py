"""The pipeline as stages with typed artifacts, and the core's one Keras fit loop (``Trainer``), on the
tiny app: what every app gets without writing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from solutions_core.model_registry import ModelRegistry
from solutions_core.solution import Candidate, Context, KerasFit, SkipCandidate, TrainingConfig
from solutions_core.stages import STAGES
from solutions_core.training import PipelineRun, SplitData, Trainer, run_training
from tiny_app import APP, TinyApp, TinyData, TinyEvaluation, TinyModels, build_network, make_dataset


def test_stages_in_separate_processes_give_the_run_training_result(tiny_settings, tiny_run):
    """Each stage of a fresh PipelineRun (as an Airflow task would: nothing in memory) reads what the
    earlier ones saved, and the result equals an in-process run's."""
    config = APP.tiny_config()
    for stage in STAGES:
        run = PipelineRun(APP, config, tiny_settings, "stage-by-stage", verbose=0, min_delta=10.0)
        if stage.after_gate and not run.gate_passed():
            continue
        run.run_stage(stage.name)
    report = json.loads((run.run_dir / "report.json").read_text())
    in_process = run_training(APP, config, tiny_settings, verbose=0, min_delta=10.0, run_id="in-process")
    assert report["status"] == in_process.status == "rejected"
    assert report["candidate"] == in_process.candidate
    assert report["test"] == pytest.approx(in_process.test.metrics)
    assert report["baselines"] == in_process.summary()["baselines"]
    assert sorted(p.name for p in run.artifacts_dir.glob("*.pkl")) == sorted(f"{s.name}.pkl" for s in STAGES if s.name != "publish")


class CountingData(TinyData):
    prepared = 0

    def prepare(self, context, tables):
        CountingData.prepared += 1
        return super().prepare(context, tables)


class CountingApp(TinyApp):
    data = CountingData()


def test_splits_are_made_once_per_run_and_reused(tiny_settings):
    app = CountingApp()
    run = PipelineRun(app, app.tiny_config(), tiny_settings, "splits-once", verbose=0)
    CountingData.prepared = 0
    for stage in STAGES[:4]:  # through score_on_test, each stage as a fresh process would run it
        PipelineRun(app, app.tiny_config(), tiny_settings, "splits-once", verbose=0).run_stage(stage.name)
    assert CountingData.prepared == 1
    split = run.artifact("split_data")
    assert isinstance(split, SplitData) and split.splits.sizes()["test"] > 0


def test_calibrated_parameters_are_written_into_the_served_module_and_recorded(tiny_run):
    import tensorflow as tf

    metadata = tiny_run.version.metadata()
    threshold = metadata["calibration"]["threshold"]
    loaded = tf.saved_model.load(str(tiny_run.version.path))
    assert float(loaded.threshold.numpy()) == pytest.approx(threshold)
    chosen = next(c for c in tiny_run.candidates if c.name == tiny_run.candidate)
    assert chosen.calibration == {"threshold": threshold}
    # The served decisions follow that threshold.
    outputs = loaded.signatures["serving_default"](
        x=tf.constant([3.0, -3.0]), y=tf.constant([-3.0, 3.0]), color=tf.constant(["red", "blue"])
    )
    assert list(outputs["decision"].numpy()) == [int(p >= threshold) for p in outputs["probability"].numpy()]


def test_a_version_is_self_describing(tiny_run):
    metadata = tiny_run.version.metadata()
    assert metadata["contract"] == {"name": "tiny_points", "version": "1.0.0"}
    assert (tiny_run.version.path / "assets.extra" / "tiny_points.yaml").exists()
    assert metadata["config"]["size"] == APP.tiny_config().size
    assert set(metadata["baselines"]) == {"x_alone"}
    assert tiny_run.plots and all(path.exists() for path in tiny_run.plots)
    assert {c.name for c in tiny_run.candidates} == {"mlp", "logistic", "average"}
    assert next(c for c in tiny_run.candidates if c.name == "average").kind == "ensemble"


class SkippingModels(TinyModels):
    def candidates(self, context):
        def refuse(splits, trainer):
            raise SkipCandidate("no logistic today")

        mlp, _ = super().candidates(context)
        return [mlp, Candidate("logistic", fit=refuse)]


class SkippingApp(TinyApp):
    models = SkippingModels()


def test_a_skipped_candidate_skips_its_ensembles(tmp_path):
    from solutions_core.settings import Settings
    from tiny_app import CONTRACTS

    said: list[str] = []
    result = run_training(SkippingApp(), APP.tiny_config(), Settings(home=tmp_path, contracts_dir=CONTRACTS), verbose=0, report=said.append)
    assert [c.name for c in result.candidates] == ["mlp"]
    assert any("skipped: no logistic today" in line for line in said)
    assert any(line.startswith("ensemble: average skipped") for line in said)


class WrongParameter(TinyEvaluation):
    def calibrate(self, context, examples, outputs):
        return {"cutoff": 0.5}


class WrongParameterApp(TinyApp):
    evaluation = WrongParameter()


def test_a_calibrated_parameter_the_module_cannot_hold_is_a_clear_error(tmp_path):
    from solutions_core.settings import Settings
    from tiny_app import CONTRACTS

    with pytest.raises(TypeError, match="no tf.Variable 'cutoff'"):
        run_training(WrongParameterApp(), APP.tiny_config(), Settings(home=tmp_path, contracts_dir=CONTRACTS), verbose=0)
    assert ModelRegistry(tmp_path / "models").versions(APP.name) == []


def test_contracts_come_from_the_settings_folder(tiny_settings, tiny_run):
    from solutions_core.contracts import ContractError
    from solutions_core.settings import Settings
    from solutions_core.training import context_for

    context = context_for(APP, APP.tiny_config(), tiny_settings)
    assert Path(context.contract.path).parent == Path(tiny_settings.contracts_dir)
    with pytest.raises(ContractError, match="tiny_points"):
        context_for(APP, APP.tiny_config(), Settings(contracts_dir=tiny_settings.home / "nowhere"))


# ---- the Trainer: strategy scope, XLA, TensorBoard, early stopping, replica batch scaling ------------


class Runtime:
    """A runtime as ``make_runtime`` builds it, with a strategy that reports ``replicas``."""

    def __init__(self, replicas: int = 1, jit_compile: bool = False):
        import tensorflow as tf

        self.default = tf.distribute.get_strategy()
        self.num_replicas_in_sync = replicas
        self.strategy = self
        self.jit_compile = jit_compile
        self.verbose = 0

    def scope(self):
        return self.default.scope()


def examples(size: int = 256, seed: int = 0) -> pd.DataFrame:
    return APP.data.generate(Context(APP.name, APP.make_config({"size": size, "seed": seed}), {}), Path("."))["tiny_points"]


def spec(training: TrainingConfig | None = None, batches: list[int] | None = None, validation: bool = True) -> KerasFit:
    import keras

    train, valid = examples(256), examples(128, seed=1)

    def data(is_training: bool, batch: int):
        if batches is not None:
            batches.append(batch)
        return make_dataset(train if is_training else valid, is_training, batch)

    return KerasFit(
        "mlp", build=lambda: build_network(APP.make_config()),
        compile=lambda t: {"optimizer": keras.optimizers.Adam(t.learning_rate), "loss": "binary_crossentropy"},
        data=data, validation=validation, training=training,
    )


def test_the_global_batch_is_the_batch_size_times_the_replicas(tmp_path):
    batches: list[int] = []
    Trainer(Runtime(replicas=4), TrainingConfig(epochs=1, batch_size=16), tmp_path, "mlp").fit(spec(batches=batches))
    assert batches == [64, 64]  # train and validation data


def test_early_stopping_follows_the_config_and_restores_the_best_weights(tmp_path):
    # Watching val_loss in "max" mode: the first epoch is the best, so training stops after patience.
    training = TrainingConfig(epochs=30, batch_size=32, early_stopping_patience=2, early_stopping_monitor="val_loss", early_stopping_mode="max")
    model = Trainer(Runtime(), training, tmp_path, "mlp").fit(spec())
    assert len(model.history.epoch) == 3
    # Without validation data a val_ monitor cannot work: no early stopping, every epoch runs.
    model = Trainer(Runtime(), training.model_copy(update={"epochs": 4}), tmp_path, "mlp").fit(spec(validation=False))
    assert len(model.history.epoch) == 4


def test_jit_compile_and_tensorboard_logs(tmp_path):
    trainer = Trainer(Runtime(jit_compile=True), TrainingConfig(epochs=1, batch_size=64), tmp_path / "tb", "candidate")
    model = trainer.fit(spec())
    assert model.jit_compile is True
    logs = list((tmp_path / "tb" / "mlp").rglob("events.out.tfevents.*"))
    assert logs, "a second model of a candidate logs under its own name"
    assert {path.parent.name for path in logs} == {"train", "validation"}


def test_steps_per_epoch_repeats_the_training_data(tmp_path):
    training = TrainingConfig(epochs=2, batch_size=256, steps_per_epoch=3, early_stopping_patience=0)
    model = Trainer(Runtime(), training, tmp_path, "mlp").fit(spec())
    assert len(model.history.epoch) == 2  # 3 steps of 256 from 256 rows only works on repeated data
    assert np.isfinite(model.history.history["loss"]).all()


def test_a_stage_summary_is_strict_json_when_a_metric_is_nan(tiny_registered, tmp_path, monkeypatch):
    """A stage's summary is an Airflow XCom, which must be strict JSON: a baseline's NaN metric (a
    pixel AUROC from a baseline without pixel maps, say) comes back as null, not as a failed task."""
    from solutions_core import orchestration
    from solutions_core.solution import Baseline

    original = APP.evaluation.baselines

    def with_a_nan(context, splits):
        return {name: Baseline({**b.metrics, "accuracy": float("nan")}, b.outputs) for name, b in original(context, splits).items()}

    monkeypatch.setattr(APP.evaluation, "baselines", with_a_nan)
    for stage in STAGES[:4]:  # through score_on_test, the stage that carries the baselines' metrics
        summary = orchestration.run_stage(stage.name, APP.name, "strict-json", preset="tiny", home=str(tmp_path))
    json.dumps(summary, allow_nan=False)
    assert summary["baselines"]["x_alone"]["accuracy"] is None
    assert 0.0 <= summary["baselines"]["x_alone"]["auroc"] <= 1.0  # finite metrics pass through


def test_refit_on_all_data_publishes_a_model_fitted_on_every_example(tmp_path):
    from solutions_core.export import load_signature, predict_frame
    from solutions_core.settings import Settings
    from tiny_app import CONTRACTS

    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS)
    config = APP.make_config({**APP.tiny_config().model_dump(), "candidates": ["logistic"], "refit_on_all_data": True})
    result = run_training(APP, config, settings, verbose=0)
    assert result.promoted, result.reason
    version = ModelRegistry(settings.resolved_models_dir()).champion(APP.name)
    assert version.metadata()["refit_on_all_data"] is True
    golden = pd.DataFrame(result.golden_instances)
    published = predict_frame(load_signature(version.path), golden, 64)["probability"]
    as_trained = predict_frame(load_signature(result.run_dir / "export" / "logistic"), golden, 64)["probability"]
    # More examples move the coefficients: the published model is not the one trained on the train split.
    assert not np.allclose(published, as_trained)
    assert np.all((published > 0) & (published < 1))
    assert version.metadata()["calibration"] == result.candidates[0].calibration


def test_cross_validation_chooses_and_calibrates_on_folds(tmp_path):
    from solutions_core.settings import Settings
    from tiny_app import CONTRACTS

    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS)
    config = APP.make_config({**APP.tiny_config().model_dump(), "cross_validation_folds": 3})
    result = run_training(APP, config, settings, verbose=0)
    by_name = {candidate.name: candidate for candidate in result.candidates}
    assert set(by_name) == {"mlp", "logistic", "average"}
    for candidate in by_name.values():
        assert len(candidate.folds) == 3 and all(0.5 < value <= 1 for value in candidate.folds)
        # The choice is made on the mean over folds, not on the validation split alone.
        assert candidate.valid.gate_value == pytest.approx(float(np.mean(candidate.folds)))
        assert 0 < candidate.calibration["threshold"] < 1
    assert result.candidate == max(by_name, key=lambda name: by_name[name].valid.gate_value)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert all(len(entry["folds"]) == 3 and entry["fold_spread"] >= 0 for entry in report["candidates"])


def test_cross_validation_folds_keep_time_order_and_label_shares():
    from solutions_core.selection import cross_validation_folds

    times = pd.Series(pd.date_range("2025-01-01", periods=100, freq="h")).sample(frac=1, random_state=0).reset_index(drop=True)
    folds = cross_validation_folds(100, 4, seed=0, times=times)
    assert len(folds) == 4
    for fit, score in folds:  # rolling origin: every scored row lies after every fitted row
        assert times.iloc[fit].max() < times.iloc[score].min()
    assert [len(fit) for fit, _ in folds] == sorted(len(fit) for fit, _ in folds)

    labels = pd.Series(["bad"] * 10 + ["good"] * 90)
    for fit, score in cross_validation_folds(100, 5, seed=0, labels=labels):
        assert (labels.iloc[score] == "bad").sum() == 2 and len(set(fit) & set(score)) == 0
    with pytest.raises(ValueError, match="too few"):
        cross_validation_folds(5, 3, seed=0)
