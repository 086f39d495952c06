"""Typed configuration of the recommendation app, defaults in code. A fork overrides fields in a YAML
file (``solutions train recommendation --config my.yaml``): ``source`` points at its tables and the
``columns`` section names its feature columns, so another interaction log needs a contract and a
config, not code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from solutions_core.solution import SolutionConfig, TrainingConfig


class ColumnsConfig(BaseModel):
    """Which columns of the users and items tables feed the towers (ids and text are always used)."""

    model_config = ConfigDict(extra="forbid")

    user_categorical: list[str] = Field(
        default_factory=lambda: ["region", "age_group"], description="Users-table columns embedded in the user tower."
    )
    item_categorical: list[str] = Field(
        default_factory=lambda: ["category"], description="Items-table columns embedded in the item tower."
    )
    item_text: list[str] = Field(
        default_factory=lambda: ["title"], description="Items-table text columns, joined, through the text encoder."
    )


class TowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(default=32, ge=4, description="Size of the user and item vectors the index compares.")
    id_embedding_dim: int = Field(default=32, ge=2)
    feature_embedding_dim: int = Field(default=8, ge=2)
    hidden_units: int = Field(default=64, ge=4)
    history_length: int = Field(default=20, ge=1, description="Most recent items that describe a user.")
    id_dropout_rate: float = Field(
        default=0.15,
        ge=0,
        lt=1,
        description="Share of training ids replaced by the unknown id, so the towers learn to serve new users and "
        "new items from their features, text and history alone (cold start).",
    )
    temperature: float = Field(default=0.05, gt=0, description="Softmax temperature of the in-batch loss (cosine logits).")
    text_vocabulary_size: int = Field(default=2000, ge=50)
    text_length: int = Field(default=12, ge=2, description="Tokens of item text kept.")
    text_encoder_layers: int = Field(default=1, ge=0, description="keras-hub TransformerEncoder layers over the item text (0: mean of tokens).")
    text_heads: int = Field(default=2, ge=1)


class RankingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Train a DCN ranker that re-scores the retrieved candidates (on each user's last training "
        "interaction, held out of the towers); it is kept only if it beats retrieval alone on validation.",
    )
    candidates: int = Field(default=100, ge=10, description="Retrieved candidates the ranker re-scores per user.")
    cross_layers: int = Field(default=2, ge=1)
    projection_dim: int | None = Field(default=16, ge=1, description="Low-rank FeatureCross (None: full rank).")
    deep_units: int = Field(default=64, ge=4)
    holdout_per_user: int = Field(
        default=1, ge=1, description="Latest training interactions per user held out of the towers to train the ranker on."
    )
    epochs: int = Field(default=8, ge=1)


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["auto", "exact", "ivf"] = Field(
        default="auto", description="exact (brute force), ivf (approximate, for large catalogs) or auto (by size)."
    )
    exact_limit: int = Field(default=200_000, ge=1, description="auto uses exact search up to this many items.")
    clusters: int | None = Field(default=None, ge=1, description="ivf lists (default: from the catalog size).")
    probe: int | None = Field(default=None, ge=1, description="ivf lists searched per query (default: tuned for recall).")


class BaselinesConfig(BaseModel):
    """The simple models every run is compared with (and the gate makes the model beat)."""

    model_config = ConfigDict(extra="forbid")

    ease_l2: float | None = Field(
        default=None,
        gt=0,
        description="EASE's ridge λ. None: chosen on validation NDCG@10 among multiples of the mean interactions per item "
        "(λ scales with the data: Steck's 500 on MovieLens-20M is about one mean count).",
    )
    ease_max_items: int = Field(
        default=20_000, ge=1, description="EASE holds an items × items matrix: larger catalogs skip it (and say so)."
    )
    matrix_factorization_factors: int = Field(default=64, ge=1, description="PureSVD's rank.")


class RecommendationConfig(SolutionConfig):
    size: int = Field(default=100_000, ge=100, description="Interactions the embedded generator makes.")
    users: int = Field(default=3_000, ge=10, description="Users in the generated data.")
    items: int = Field(default=2_000, ge=10, description="Items in the generated catalog.")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    holdout_per_user: int = Field(
        default=1, ge=1, description="Each user's latest interactions held out for test (and as many before them for validation)."
    )
    min_train_interactions: int = Field(default=2, ge=1, description="Users with fewer training interactions are not evaluated.")
    min_rating: float | None = Field(
        default=None, description="Keep only interactions rated at least this (explicit feedback as implicit); None keeps all."
    )
    top_k: int = Field(default=100, ge=1, le=1000, description="Items the exported signature returns per user.")
    eval_k: list[int] = Field(default_factory=lambda: [10, 100], description="K of Recall@K and NDCG@K.")
    outcome_days: float = Field(
        default=7.0, gt=0, description="Performance over time: a served list is scored on what its user interacted with in this many days after it."
    )
    towers: TowerConfig = Field(default_factory=TowerConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    ease_candidate: bool = Field(
        default=True,
        description="Also train EASE as a candidate inside the exported graph (item × item weights, scores from the "
        "user's history): exported when it wins validation, so the served model is never worse than it. λ and the "
        "catalog limit are the EASE baseline's (baselines.ease_l2, baselines.ease_max_items).",
    )
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(
            epochs=8,
            batch_size=512,
            learning_rate=3e-3,
            early_stopping_patience=2,
            early_stopping_monitor="val_loss",
            early_stopping_mode="min",
        )
    )
