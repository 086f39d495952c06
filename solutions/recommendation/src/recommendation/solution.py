"""The recommendation app: what it brings to the core's pipeline (interaction logs, the two-tower and
DCN candidates, top-k metrics, /recommend, the candidate refresh). Everything generic — validation,
storage, the fit loop, the gate, export, serving — is the core's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recommendation.config import RecommendationConfig
from recommendation.data import INTERACTIONS, ITEMS, USERS
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
    Metrics,
    Models,
    Outputs,
    RequestSchema,
    Serving,
    Solution,
    Splits,
    Tables,
)

GATE_K = 10


def eval_ks(config: RecommendationConfig) -> list[int]:
    """The K of Recall@K and NDCG@K: ``eval_k`` up to ``top_k``, and always the gate's."""
    return sorted({GATE_K, *[k for k in config.eval_k if k <= config.top_k]})


def catalog_size(outputs: Outputs, examples: pd.DataFrame) -> int:
    return int(examples.attrs.get("catalog_size", 0)) or len({i for row in np.asarray(outputs["item_ids"]) for i in row})


class RecommendationData(Data):
    def generate(self, context: Context, workdir: Path) -> Tables:
        from recommendation.generate import generate_interactions

        config = context.config
        return generate_interactions(config.size, config.users, config.items, seed=config.seed)

    def load(self, context: Context, source: str) -> Tables:
        """``movielens-100k`` (read from the installed recbole package), a RecBole atomic folder, a
        folder of interactions and optional items/users tables (parquet or csv), or an interactions file."""
        from recommendation.data import load_tables

        return load_tables(source, context.contracts)

    def prepare(self, context: Context, tables: Tables) -> Any:
        from recommendation.data import prepare

        return prepare(tables, context.config)

    def split(self, context: Context, examples: Any) -> Splits:
        from recommendation.data import split

        train, valid, test = split(examples, context.config)
        return Splits(train=train, valid=valid, test=test)


class RecommendationModels(Models):
    def candidates(self, context: Context) -> list[Candidate]:
        """Two towers then (when ranking is on) the DCN ranker, both through ``trainer.fit``; and EASE
        (closed form, no Keras fit), which competes on validation like the others."""
        config = context.config

        def fit(splits: Splits, trainer: Any) -> Any:
            from recommendation.model import fit_recommender

            return fit_recommender(splits.train, splits.valid, config, trainer)

        candidates = [Candidate("two_tower_dcn" if config.ranking.enabled else "two_tower", fit=fit)]
        if config.ease_candidate:

            def fit_ease(splits: Splits, trainer: Any) -> Any:
                from recommendation.ease import fit_ease

                return fit_ease(splits.train, splits.valid, config)

            # Not "ease": that is the baseline's name, and reports list candidates and baselines side by side.
            candidates.append(Candidate("ease_in_graph", fit=fit_ease, kind="closed_form"))
        return candidates

    def ensembles(self, context: Context) -> list[Ensemble]:
        """Retrieval alone competes with retrieval + ranking: the ranker is kept only if it helps. The
        towers and EASE blended compete too (the weight chosen on validation)."""
        config = context.config
        towers = "two_tower_dcn" if config.ranking.enabled else "two_tower"
        ensembles = []
        if config.ranking.enabled:
            ensembles.append(Ensemble("two_tower", members=("two_tower_dcn",), combine=lambda fitted: fitted[0].without_ranker()))
        if config.ease_candidate:
            from recommendation.ease import blend

            ensembles.append(Ensemble("towers_ease_blend", members=(towers, "ease_in_graph"), combine=lambda fitted: blend(fitted, config)))
        return ensembles


class RecommendationEvaluation(Evaluation):
    def evaluate(self, context: Context, examples: pd.DataFrame, outputs: Outputs) -> Metrics:
        from recommendation.evaluate import outputs_metrics

        return outputs_metrics(dict(outputs), examples, eval_ks(context.config), catalog_size(outputs, examples))

    def outcomes(self, context: Context, logged: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Each served list against what its user interacted with in the ``outcome_days`` after it
        (``outcomes``: the interactions table, the rows since the requests or all of them)."""
        from recommendation.evaluate import later_targets
        from solutions_core.serving.request_log import TIME_COLUMN

        time_column = context.contract.time_column or "timestamp"
        return later_targets(logged, outcomes, context.config.outcome_days, TIME_COLUMN, time_column)

    def baselines(self, context: Context, splits: Splits) -> dict[str, Baseline]:
        """Popularity, matrix factorization (PureSVD) and EASE, learned from the same interactions as the
        candidates (the training split; EASE's λ chosen on validation, as the candidates' choices are),
        each test user's profile the same as the model's request (history and exclusions, which hold the
        validation period's items), and the same exclusions. Fitted on training and validation instead,
        the baselines learned from 15 % more (and the most recent) interactions than any candidate they
        were compared with. ``served`` holds each one's test lists as the served module answers them
        (``item_ids`` per test user), so the core can compare them row by row."""
        from recommendation.evaluate import EaseBaseline, MatrixFactorizationBaseline, PopularityBaseline, served_lists, top_k_metrics

        config = context.config
        ks = eval_ks(config)
        train = splits.train
        catalog = train.items["item_id"]
        history = train.interactions
        models: dict[str, Any] = {
            "popularity": PopularityBaseline().fit(history),
            "matrix_factorization": MatrixFactorizationBaseline(config.baselines.matrix_factorization_factors).fit(history, catalog),
        }
        if len(catalog) <= config.baselines.ease_max_items:
            # λ is chosen on validation (fitted on training, as the candidates are).
            ease = EaseBaseline(config.baselines.ease_l2, max_items=config.baselines.ease_max_items)
            models["ease"] = ease.fit(history, catalog, valid=splits.valid)
        else:
            print(f"baseline ease skipped: {len(catalog)} items is above baselines.ease_max_items={config.baselines.ease_max_items}")
        results = {}
        for name, baseline in models.items():
            lists = baseline.recommend(splits.test, config.top_k)
            metrics = top_k_metrics(lists, list(splits.test["targets"]), ks, len(train.items))
            outputs: dict[str, Any] = {"lists": lists}
            if name == "ease":  # λ as chosen (not a metric: it stays out of the metrics table)
                outputs["l2"] = float(baseline.chosen_l2)
            results[name] = Baseline(metrics, outputs=outputs, served=served_lists(lists, config.top_k))
        return results

    def report(self, context: Context, examples: pd.DataFrame, outputs: Outputs, baselines: Mapping[str, Baseline], out_dir: Path) -> list[Path]:
        from recommendation.evaluate import _decoded, outputs_metrics, plot_popularity, plot_recall_curves

        ks = eval_ks(context.config)
        curves = {"model": outputs_metrics(dict(outputs), examples, ks, catalog_size(outputs, examples))}
        curves.update({name: baseline.metrics for name, baseline in baselines.items()})
        plots = [plot_recall_curves(curves, ks, Path(out_dir) / "recall_ndcg.png")]
        ids, counts = examples.attrs.get("popularity", ((), ()))
        popularity = pd.Series(np.asarray(counts, dtype=float), index=pd.Index(ids, dtype=object))
        if not popularity.empty:
            plots.append(plot_popularity(_decoded(np.asarray(outputs["item_ids"])), popularity, Path(out_dir) / "long_tail.png"))
        return plots


class RecommendationServing(Serving):
    def module(self, context: Context, fitted: Any) -> Any:
        from recommendation.ease import BlendedRecommender, EaseRecommender

        if isinstance(fitted, BlendedRecommender):
            from recommendation.ease import blend_module

            return blend_module(fitted, context.config)
        if isinstance(fitted, EaseRecommender):
            from recommendation.ease import serving_module as ease_module

            return ease_module(fitted, context.config)
        from recommendation.model import serving_module

        return serving_module(fitted, context.config)

    def golden_instances(self, context: Context, examples: pd.DataFrame, count: int = 8) -> list[dict[str, Any]]:
        """Known users from the examples, plus a new user with features and one with nothing known."""
        features = list(context.config.columns.user_categorical)
        rows = examples.head(max(1, count - 2))
        instances = [
            {"user_id": str(row["user_id"]), "history": row["history"], "exclude": row["exclude"], **{c: str(row[c]) for c in features}}
            for _, row in rows.iterrows()
        ]
        first = instances[0]
        instances.append({"user_id": "new-user-with-features", "history": "", "exclude": "", **{c: first[c] for c in features}})
        instances.append({"user_id": "new-user", "history": "", "exclude": "", **{c: "" for c in features}})
        return instances

    def request(self, context: Context) -> RequestSchema:
        # A request names a user (the store fills the rest); the log's other columns (item, time,
        # rating) describe interactions, not requests.
        return RequestSchema(
            extra=frozenset({"history", "exclude", *context.config.columns.user_categorical}),
            optional=frozenset({"item_id", "timestamp", "rating"}),
        )

    def features(self, context: Context, data_dir: Path) -> FeatureStore:
        from recommendation.online import OnlineStore

        return OnlineStore.open(data_dir, context.config)

    def routers(self, manager: Any) -> list[Any]:
        from recommendation.api import router

        return [router(manager)]


class RecommendationBatch(Batch):
    shardable = True

    def run(self, context: BatchContext) -> list[Path]:
        """Candidate refresh: the champion's top-k items for every known user, from their history up to the end of the
        logical date (seen items excluded), one row per (user, rank) — what a low-latency store or an
        email job reads instead of calling the model per user."""
        from recommendation.data import prepare

        config = context.config
        prepared = prepare(context.tables, config)
        interactions = prepared.interactions
        known = interactions  # a log without timestamps: everything in it is known
        if "timestamp" in interactions.columns:
            end_of_day = pd.Timestamp(context.logical_date) + pd.Timedelta(days=1)
            times = pd.to_datetime(interactions["timestamp"])
            if times.dt.tz is not None:
                end_of_day = end_of_day.tz_localize(times.dt.tz)
            known = interactions[times < end_of_day]
        users = prepared.users
        users = users[context.in_shard(users["user_id"])]  # this shard's users (one shard: all of them)
        seen = known.groupby("user_id", sort=False)["item_id"].agg(list)
        length = config.towers.history_length
        requests = pd.DataFrame({"user_id": users["user_id"].astype(str).to_numpy()})
        for column in config.columns.user_categorical:
            requests[column] = users[column].astype(str).to_numpy()
        history = seen.reindex(requests["user_id"])
        requests["history"] = [" ".join(items[-length:]) if isinstance(items, list) else "" for items in history]
        requests["exclude"] = [" ".join(items) if isinstance(items, list) else "" for items in history]
        path = context.output_dir / "candidates.parquet"
        if not len(requests):  # a shard with no user: an empty table of the same columns
            empty = {"user_id": "object", "rank": "int64", "item_id": "object", "score": "float32", "strategy": "object", "model_version": "int64"}
            pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in empty.items()}).to_parquet(path, index=False)
            return [path]
        outputs = context.predict(requests)
        item_ids = np.asarray(outputs["item_ids"])
        scores = np.asarray(outputs["scores"], dtype=np.float32)
        strategy = np.asarray(outputs["strategy"]).astype(str)
        k = item_ids.shape[1]
        rows = pd.DataFrame({
            "user_id": np.repeat(requests["user_id"].to_numpy(), k),
            "rank": np.tile(np.arange(1, k + 1), len(requests)),
            "item_id": [value.decode() if isinstance(value, bytes) else str(value) for value in item_ids.reshape(-1)],
            "score": scores.reshape(-1),
            "strategy": np.repeat(strategy, k),
        })
        rows = rows[rows["item_id"] != ""].reset_index(drop=True)  # a catalog smaller than k pads with ""
        rows["model_version"] = context.champion.version
        rows.to_parquet(path, index=False)
        return [path]


class Recommendation(Solution):
    name = "recommendation"
    title = "Recommendation"
    description = "Top-k items per user: keras-rs two-tower retrieval with an in-graph index, DCN re-ranking, cold start; /recommend."
    config_class = RecommendationConfig
    contracts = (INTERACTIONS, USERS, ITEMS)
    gate = Gate(f"ndcg_at_{GATE_K}", higher_is_better=True)
    data = RecommendationData()
    models = RecommendationModels()
    evaluation = RecommendationEvaluation()
    serving = RecommendationServing()
    batch = RecommendationBatch()
    predict_batch_size = 512

    def demo_config(self) -> RecommendationConfig:
        # Half the default log keeps the laptop demo to about a minute of training on 2 cores.
        return self.make_config({"size": 50_000, "users": 2_000, "items": 1_500})

    def tiny_config(self) -> RecommendationConfig:
        return self.make_config(
            {
                "size": 3_000,
                "users": 150,
                "items": 200,
                "top_k": 20,
                "eval_k": [5, 20],
                "towers": {"embedding_dim": 8, "id_embedding_dim": 8, "hidden_units": 16, "text_vocabulary_size": 100},
                "ranking": {"candidates": 20, "epochs": 1},
                "training": {"epochs": 2, "batch_size": 128, "early_stopping_patience": 0},
                # The towers, so the shared serving tests see their cold start by features (EASE wins on
                # seconds of data and knows no features); EASE's module has tests of its own
                # (tests/recommendation/test_ease.py) and goes through the pipeline in test_data_shapes.py.
                "ease_candidate": False,
                # Plumbing runs on seconds of data: they must publish to test what follows; the
                # baseline rule of the gate is tested on the core (tests/core/test_gate.py).
                "gate": {"beat_baselines": False},
            }
        )
