"""A tiny app that exists only for the core's tests: points in the plane with a colour, labelled 0/1.

It uses every part of the seam in a few lines each — a Keras candidate (fitted by the core), a custom
learner, an ensemble, calibration, a baseline, a plot, request checks, a feature store with a route,
batch work — so the core's tests exercise the core without depending on any real app. Trains in about
a second. Registered through ``Settings.apps`` (``SOLUTIONS_APPS='["tiny_app:APP"]'``), its contract is
``tests/tiny_app/contracts/tiny_points.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

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
    SolutionConfig,
    TrainingConfig,
)

CONTRACTS = Path(__file__).with_name("contracts")
# What a process needs to find this app and its contract (a server started by a test).
ENVIRONMENT = {"SOLUTIONS_APPS": json.dumps(["tiny_app:APP"]), "SOLUTIONS_CONTRACTS_DIR": str(CONTRACTS)}


def server_environment() -> dict[str, str]:
    """``ENVIRONMENT`` plus this package's folder on PYTHONPATH, for a child process."""
    import os

    folder = str(Path(__file__).resolve().parents[1])
    return {**ENVIRONMENT, "PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH", "")]))}
COLORS = ("red", "green", "blue")
TABLE = "tiny_points"


class TinyConfig(SolutionConfig):
    size: int = Field(default=600, ge=100)
    hidden_units: int = 8
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=4, batch_size=64, learning_rate=0.02, early_stopping_patience=2)
    )


def features(frame: pd.DataFrame) -> np.ndarray:
    """x, y and a one-hot colour: what both learners see (the serving module computes the same)."""
    onehot = np.stack([(frame["color"] == color).to_numpy(np.float32) for color in COLORS], axis=1)
    return np.concatenate([frame[["x", "y"]].to_numpy(np.float32), onehot], axis=1)


class TinyData(Data):
    def generate(self, context: Context, workdir: Path) -> dict[str, pd.DataFrame]:
        rng = np.random.default_rng(context.config.seed)
        size = context.config.size
        x, y = rng.uniform(-3, 3, size), rng.uniform(-3, 3, size)
        color = rng.choice(COLORS, size)
        logit = 1.5 * x - y + (color == "red") + rng.normal(0, 2.0, size)
        return {TABLE: pd.DataFrame({
            "point_id": [f"p{index}" for index in range(size)],
            "timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(size), unit="h"),
            "x": x, "y": y, "color": color, "label": (logit > 0).astype("int64"),
        })}

    def load(self, context: Context, source: str) -> dict[str, pd.DataFrame]:
        return {TABLE: pd.read_parquet(source)}



def build_network(config: TinyConfig) -> Any:
    import keras

    inputs = keras.Input((5,), name="features")
    hidden = keras.layers.Dense(config.hidden_units, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", dtype="float32")(hidden))


def make_dataset(frame: pd.DataFrame, training: bool, batch: int) -> Any:
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((features(frame), frame["label"].to_numpy(np.float32)))
    return (data.shuffle(len(frame), seed=0) if training else data).batch(batch)


def fit_logistic(splits: Any, trainer: Any) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression().fit(features(splits.train), splits.train["label"])
    return np.concatenate([fitted.coef_[0], fitted.intercept_]).astype(np.float32)


class TinyModels(Models):
    def candidates(self, context: Context) -> list[Any]:
        import keras

        return [
            KerasCandidate(
                "mlp",
                build_model=lambda train: build_network(context.config),
                compile_options=lambda training: {"optimizer": keras.optimizers.Adam(training.learning_rate), "loss": "binary_crossentropy"},
                make_dataset=make_dataset,
            ),
            Candidate("logistic", fit=fit_logistic),
        ]

    def ensembles(self, context: Context) -> list[Ensemble]:
        return [Ensemble("average", members=("mlp", "logistic"))]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


class TinyEvaluation(Evaluation):
    def evaluate(self, context: Context, examples: pd.DataFrame, outputs: Any) -> dict[str, float]:
        labels = examples["label"].to_numpy()
        decisions = np.asarray(outputs["decision"]).reshape(-1)
        return {"auroc": auroc(labels, np.asarray(outputs["probability"]).reshape(-1)), "accuracy": float(np.mean(decisions == labels))}

    def calibrate(self, context: Context, examples: pd.DataFrame, outputs: Any) -> dict[str, float]:
        labels, scores = examples["label"].to_numpy(), np.asarray(outputs["probability"]).reshape(-1)
        candidates = np.unique(scores)
        accuracy = [np.mean((scores >= threshold) == labels) for threshold in candidates]
        return {"threshold": float(candidates[int(np.argmax(accuracy))])}

    def baselines(self, context: Context, splits: Any) -> dict[str, Baseline]:
        labels = splits.test["label"].to_numpy()
        scores = splits.test["x"].to_numpy()  # "the one column a client would try first"
        served = {"probability": 1 / (1 + np.exp(-scores)), "decision": (scores > 0).astype(np.int64)}
        return {"x_alone": Baseline(self.evaluate(context, splits.test, served), {"scores": scores}, served)}

    def report(self, context: Context, examples: pd.DataFrame, outputs: Any, baselines: Any, out_dir: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(4, 3))
        for label in (0, 1):
            axis.hist(np.asarray(outputs["probability"])[examples["label"].to_numpy() == label], bins=20, alpha=0.5, label=f"label {label}")
        axis.legend()
        path = Path(out_dir) / "scores.png"
        figure.savefig(path)
        plt.close(figure)
        return [path]


class TinyStore(FeatureStore):
    """Fills ``y`` of a known point from the stored table; remembers the point ids it answered."""

    def __init__(self, known: dict[str, float], folder: Path):
        self.known, self.folder, self.recorded = known, folder, []

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(str(i.get("point_id", "")).startswith("crash") for i in instances):
            raise RuntimeError("the store's backend is down")  # stands for a bug or outage in an enricher
        return [{**i, "y": self.known[i["point_id"]]} if i.get("y") is None and i.get("point_id") in self.known else i for i in instances]

    def record(self, instances: list[dict[str, Any]]) -> None:
        self.recorded.extend(str(instance.get("point_id")) for instance in instances)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "recorded.json").write_text(json.dumps(self.recorded))


class TinyServing(Serving):
    def module(self, context: Context, fitted: Any) -> Any:
        import tensorflow as tf

        members = fitted if isinstance(fitted, list) else [fitted]

        class TinyModule(tf.Module):
            def __init__(self) -> None:
                super().__init__(name="tiny_app")
                self.networks = [m for m in members if not isinstance(m, np.ndarray)]
                self.weights = [tf.constant(m) for m in members if isinstance(m, np.ndarray)]
                self.threshold = tf.Variable(0.5, dtype=tf.float32, trainable=False, name="threshold")
                spec = {name: tf.TensorSpec([None], dtype, name=name) for name, dtype in (("x", tf.float32), ("y", tf.float32), ("color", tf.string))}
                self.serve = tf.function(self._serve, input_signature=[spec])

            def _serve(self, inputs: dict[str, Any]) -> dict[str, Any]:
                onehot = tf.cast(tf.equal(inputs["color"][:, None], tf.constant(COLORS)[None, :]), tf.float32)
                rows = tf.concat([inputs["x"][:, None], inputs["y"][:, None], onehot], axis=1)
                scores = [tf.reshape(network(rows), [-1]) for network in self.networks]
                scores += [tf.sigmoid(tf.linalg.matvec(rows, w[:-1]) + w[-1]) for w in self.weights]
                probability = tf.add_n(scores) / len(scores)
                return {"probability": probability, "decision": tf.cast(probability >= self.threshold, tf.int64)}

        return TinyModule()

    def request(self, context: Context) -> RequestSchema:
        return RequestSchema(optional=frozenset({"y"}))  # the store fills it for known points

    def check(self, context: Context, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, instance in enumerate(instances):
            if str(instance.get("point_id", "")).startswith("forbidden"):
                raise ValueError(f"instances[{index}].point_id: forbidden points are not scored")
        return instances

    def features(self, context: Context, data_dir: Path) -> FeatureStore:
        stored = Path(data_dir) / TinyApp.name / f"{TABLE}.parquet"
        known = pd.read_parquet(stored).set_index("point_id")["y"].to_dict() if stored.exists() else {}
        return TinyStore(known, Path(data_dir) / TinyApp.name)

    def routers(self, manager: Any) -> list[Any]:
        from fastapi import APIRouter

        routes = APIRouter()

        @routes.get("/tiny/recorded")
        def recorded() -> dict[str, Any]:
            store = manager.get(TinyApp.name).feature_store(TinyStore)
            return {"recorded": store.recorded if store is not None else None}

        return [routes]


class TinyBatch(Batch):
    shardable = True

    def run(self, context: BatchContext) -> list[Path]:
        frame = context.tables[TABLE]
        day = frame[pd.to_datetime(frame["timestamp"]).dt.date == context.logical_date].reset_index(drop=True)
        day = day[context.in_shard(day["point_id"])].reset_index(drop=True)
        outputs = context.predict(day) if len(day) else {"probability": np.zeros(0, np.float32)}
        scores = pd.DataFrame({"point_id": day["point_id"], "probability": np.asarray(outputs["probability"]), "hidden_units": context.config.hidden_units})
        path = context.output_dir / "scores.parquet"
        scores.to_parquet(path, index=False)
        return [path]


class TinyApp(Solution):
    name = "tiny_app"
    title = "Tiny app"
    description = "Points in the plane: the core's test app."
    contracts = (TABLE,)
    gate = Gate("auroc", higher_is_better=True)
    config_class = TinyConfig
    data = TinyData()
    models = TinyModels()
    evaluation = TinyEvaluation()
    serving = TinyServing()
    batch = TinyBatch()

    def tiny_config(self) -> TinyConfig:
        return self.make_config({"size": 300})


APP = TinyApp()
