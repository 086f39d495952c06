"""The fraud-detection app: what it brings to the core's pipeline (data, features, candidates,
metrics). Everything generic — validation, splits, fitting, gate, export, serving — is the core's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_detection.config import FraudConfig
from fraud_detection.history import HISTORY_FEATURES
from solutions_core.solution import BatchContext, CustomCandidate, Evaluation, KerasCandidate, Solution, Splits

CANONICAL = {  # history.py's column names -> the config role that supplies them
    "transaction_id": "transaction_id",
    "timestamp": "timestamp",
    "card_id": "card",
    "amount": "amount",
    "device_id": "device",
    "merchant_lat": "merchant_lat",
    "merchant_lon": "merchant_lon",
}


class FraudDetection(Solution):
    name = "fraud_detection"
    title = "Fraud detection"
    description = "Scores card transactions for fraud with card-history features; YDF trees vs a Keras MLP."
    contracts = ("fraud_transactions",)
    gate_metric = "auprc"
    higher_is_better = True
    config_class = FraudConfig
    custom_ops = ("ydf_tf",)  # YDF trees in TensorFlow need the ydf-tf op library

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
            }
        )

    # ---- data ------------------------------------------------------------------------------------
    def generate(self, config: FraudConfig, workdir: Path | None = None) -> dict[str, pd.DataFrame]:
        from fraud_detection.generate import generate_transactions

        frame = generate_transactions(config.size, days=config.days, fraud_rate=config.fraud_rate, seed=config.seed)
        return {"fraud_transactions": frame}

    def load(self, source: str, config: FraudConfig) -> dict[str, pd.DataFrame]:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"Fraud data source {source!r} does not exist.")
        if path.suffix in (".parquet", ".pq") or path.is_dir():
            frame = pd.read_parquet(path)
        elif path.suffix in (".csv", ".gz"):
            frame = pd.read_csv(path, parse_dates=[config.columns.timestamp])
        else:
            raise ValueError(f"Cannot read {source!r}: use Parquet or CSV.")
        return {"fraud_transactions": frame}

    def _canonical(self, frame: pd.DataFrame, config: FraudConfig) -> pd.DataFrame:
        """A view of the client's columns under the names history.py uses."""
        columns = {}
        for canonical, role in CANONICAL.items():
            source = getattr(config.columns, role)
            if source is not None and source in frame.columns:
                columns[canonical] = frame[source]
            elif canonical == "device_id":
                columns[canonical] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
            elif canonical in ("merchant_lat", "merchant_lon"):
                columns[canonical] = pd.Series(np.nan, index=frame.index)
            elif canonical != "transaction_id":
                raise ValueError(f"Column {source!r} (role {role!r}) is missing from the data.")
        return pd.DataFrame(columns)

    def _canonical_record(self, instance: Mapping[str, Any], config: FraudConfig) -> dict[str, Any]:
        """``_canonical`` for one request instance, without building a DataFrame (the serving hot path)."""
        record: dict[str, Any] = {}
        for canonical, role in CANONICAL.items():
            source = getattr(config.columns, role)
            value = instance.get(source) if source is not None else None
            if canonical in ("merchant_lat", "merchant_lon") and value is None:
                value = np.nan
            record[canonical] = value
        return record

    def prepare(self, tables: Mapping[str, pd.DataFrame], config: FraudConfig) -> pd.DataFrame:
        from fraud_detection.history import add_history_features

        frame = tables["fraud_transactions"].copy()
        frame[config.columns.timestamp] = pd.to_datetime(frame[config.columns.timestamp])
        history = add_history_features(self._canonical(frame, config))
        for name in HISTORY_FEATURES:
            frame[name] = history[name].to_numpy()
        return frame

    def split(self, examples: pd.DataFrame, config: FraudConfig) -> Splits:
        from solutions_core.data import time_split

        return time_split(examples, config.columns.timestamp, config.valid_fraction, config.test_fraction)

    # ---- models ----------------------------------------------------------------------------------
    def contract(self, config: FraudConfig) -> Any:
        """The contract the config names (memoized: hooks ask for it several times per run)."""
        from solutions_core.contracts import load_contract

        name = config.contract or self.contracts[0]
        cache = self.__dict__.setdefault("_contracts", {})
        if name not in cache:
            cache[name] = load_contract(name)
        return cache[name]

    def feature_spec(self, config: FraudConfig) -> Any:
        from fraud_detection.features import build_feature_spec

        return build_feature_spec(self.contract(config), config)

    def candidates(self, config: FraudConfig) -> list[Any]:
        from fraud_detection import model

        spec = self.feature_spec(config)
        label = config.columns.label
        return [
            CustomCandidate(
                "gradient_boosted_trees",
                fit=lambda splits, runtime: model.train_gradient_boosted_trees(
                    splits.train, splits.valid, spec, config, verbose=runtime.verbose
                ),
            ),
            KerasCandidate(
                "keras_mlp",
                build_model=lambda train: model.build_keras_model(train, spec, config),
                compile_options=model.keras_compile_options,
                make_dataset=lambda frame, training, batch: model.make_dataset(frame, spec, label, training, batch),
            ),
        ]

    def serving_module(self, candidate: Any, fitted: Any, config: FraudConfig) -> Any:
        from fraud_detection.model import serving_module

        return serving_module(self.feature_spec(config), fitted)

    def ensembles(self, fitted: Mapping[str, Any], config: FraudConfig) -> list[tuple[Any, Any]]:
        # The trees and the MLP make different mistakes; their average is often better than either
        # and is chosen only when validation says so.
        if len(fitted) < 2:
            return []
        blend = CustomCandidate("blend", fit=lambda splits, runtime: None)  # mean of all fitted candidates
        return [(blend, [fitted[name] for name in sorted(fitted)])]

    def calibrate(self, module: Any, examples: pd.DataFrame, outputs: Mapping[str, np.ndarray], config: FraudConfig) -> dict[str, Any]:
        from fraud_detection.evaluate import choose_threshold

        threshold = choose_threshold(
            examples[config.columns.label].to_numpy(),
            outputs["fraud_probability"],
            examples[config.columns.amount].to_numpy(),
            config,
        )
        module.threshold.assign(threshold)
        return {"threshold": threshold}

    def evaluate(self, outputs: Mapping[str, np.ndarray], examples: pd.DataFrame, config: FraudConfig) -> Evaluation:
        from fraud_detection.evaluate import fraud_metrics

        metrics = fraud_metrics(
            examples[config.columns.label].to_numpy(),
            outputs["fraud_probability"],
            outputs["decision"],
            examples[config.columns.amount].to_numpy(),
            config,
        )
        return Evaluation(metrics, self.gate_metric, self.higher_is_better)

    def baselines(self, splits: Splits, config: FraudConfig) -> dict[str, Evaluation]:
        from fraud_detection.evaluate import baseline_models, choose_threshold, fraud_metrics
        from fraud_detection.features import derived_frame

        spec = self.feature_spec(config)
        label, amount = config.columns.label, config.columns.amount
        tables = {name: derived_frame(getattr(splits, name), spec) for name in ("train", "valid", "test")}
        models = baseline_models(tables["train"], splits.train[label].to_numpy(), list(spec.categorical))
        results = {}
        for name, fitted in models.items():
            valid_scores = fitted.predict_proba(tables["valid"])[:, 1]
            threshold = choose_threshold(splits.valid[label].to_numpy(), valid_scores, splits.valid[amount].to_numpy(), config)
            test_scores = fitted.predict_proba(tables["test"])[:, 1]
            metrics = fraud_metrics(
                splits.test[label].to_numpy(), test_scores, test_scores >= threshold, splits.test[amount].to_numpy(), config
            )
            results[name] = Evaluation(metrics, self.gate_metric, self.higher_is_better, extras={"scores": test_scores})
        return results

    def report(self, outputs, examples, baselines, out_dir: Path, config: FraudConfig) -> list[Path]:
        from fraud_detection.evaluate import plot_precision_recall

        labels = examples[config.columns.label].to_numpy()
        curves = {"model": (labels, outputs["fraud_probability"])}
        for name, evaluation in baselines.items():
            if "scores" in evaluation.extras:
                curves[name] = (labels, evaluation.extras["scores"])
        return [plot_precision_recall(curves, Path(out_dir) / "pr_curve.png", "Fraud: precision-recall on the test split")]

    # ---- serving ---------------------------------------------------------------------------------
    # ---- batch work ------------------------------------------------------------------------------
    def batch(self, context: BatchContext) -> list[Path]:
        """Daily batch scoring: every transaction of the logical date, scored by the champion with card
        history features computed over all earlier transactions (as at serving time). A date with no
        transactions writes an empty table, so the day's folder still says it was scored."""
        config = context.config
        examples = self.prepare(context.tables, config)
        timestamp = config.columns.timestamp
        day = examples[examples[timestamp].dt.date == context.logical_date].reset_index(drop=True)
        scores = pd.DataFrame({
            column: day[column]
            for column in (config.columns.transaction_id, timestamp, config.columns.card, config.columns.amount)
            if column is not None and column in day.columns
        })
        if len(day):
            outputs = context.predict(day, self.predict_batch_size)
            scores["fraud_probability"] = np.asarray(outputs["fraud_probability"], dtype=np.float32).reshape(-1)
            scores["decision"] = np.asarray(outputs["decision"], dtype=np.int64).reshape(-1)
        else:
            scores["fraud_probability"] = pd.Series(dtype=np.float32)
            scores["decision"] = pd.Series(dtype=np.int64)
        scores["model_version"] = context.champion.version
        path = context.output_dir / "scores.parquet"
        scores.to_parquet(path, index=False)
        return [path]

    def golden_instances(self, examples: pd.DataFrame, config: FraudConfig, count: int = 8) -> list[dict[str, Any]]:
        spec = self.feature_spec(config)
        # Mix frauds in so golden outputs exercise both decisions.
        frauds = examples[examples[config.columns.label] == 1].head(count // 2)
        rows = pd.concat([frauds, examples.head(count - len(frauds))])
        request_columns = [c.name for c in self.contract(config).request_columns()]
        fields = list(dict.fromkeys(request_columns + list(spec.inputs)))
        instances = []
        for _, row in rows.iterrows():
            instance = {}
            for name in fields:
                value = row[name]
                if isinstance(value, pd.Timestamp):
                    value = value.isoformat()
                elif isinstance(value, (np.floating, np.integer)):
                    value = value.item()
                elif value is None or (isinstance(value, float) and np.isnan(value)):
                    value = None
                instance[name] = value
            instances.append(instance)
        return instances

    def request_fields(self, config: FraudConfig) -> tuple[set[str], set[str]]:
        return set(HISTORY_FEATURES), set()

    def online_enricher(self, data_dir: Path, config: FraudConfig) -> Any:
        from fraud_detection.online import OnlineFeatures

        return OnlineFeatures.open(Path(data_dir) / self.name, config, self._canonical, self._canonical_record)
