"""Typed configuration of the fraud app, defaults in code. A fork overrides fields in a YAML file
(``solutions train fraud_detection --config my.yaml``); see the app README."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from solutions_core.solution import SolutionConfig, TrainingConfig


class FraudColumns(BaseModel):
    """Which of your contract's columns play which part. Every role but ``label`` may be None when your
    data lacks it; the features that need it are then left out, never faked: without ``timestamp``
    there are no time-of-day features and the split is a stratified random one; without ``card`` (an
    entity id) or ``amount`` there are no card-history features."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: str | None = "transaction_id"
    timestamp: str | None = "timestamp"
    card: str | None = "card_id"
    amount: str | None = "amount"
    label: str = "is_fraud"
    device: str | None = "device_id"
    merchant_lat: str | None = "merchant_lat"
    merchant_lon: str | None = "merchant_lon"
    home_lat: str | None = "home_lat"
    home_lon: str | None = "home_lon"


class GradientBoostedTreesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Measured on the generator (200k rows, 0.2 % fraud): shallower, slower-learning trees with a
    # minimum leaf size generalize better over time than YDF's defaults.
    num_trees: int = Field(default=500, ge=1)
    max_depth: int = Field(default=5, ge=1)
    shrinkage: float = Field(default=0.05, gt=0, le=1)
    min_examples: int = Field(default=50, ge=1)
    early_stopping: str = "LOSS_INCREASE"


class LinearModelConfig(BaseModel):
    """The in-graph logistic regression: standardized numbers with missing-value indicators and one-hot
    categoricals (the same preprocessing as the MLP) into one sigmoid unit, L2-regularized."""

    model_config = ConfigDict(extra="forbid")

    l2: float = Field(default=1e-4, ge=0, description="L2 penalty on the weights (per example).")
    learning_rate: float = Field(default=0.01, gt=0)
    max_vocabulary: int = Field(default=50, ge=2, description="Most frequent values one-hot encoded per categorical.")


class KerasModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(default=8, ge=1)
    hidden_units: list[int] = Field(default_factory=lambda: [128, 64])
    dropout_rate: float = Field(default=0.2, ge=0, lt=1)
    max_vocabulary: int = Field(default=1000, ge=2, description="Most frequent values kept per categorical.")


class FraudConfig(SolutionConfig):
    size: int = Field(default=200_000, ge=100)
    days: int = Field(default=120, ge=7, description="Days of traffic the generator spans.")
    fraud_rate: float = Field(default=0.002, gt=0, lt=0.5)
    columns: FraudColumns = Field(default_factory=FraudColumns)
    exclude_features: list[str] = Field(
        default_factory=lambda: ["card_id", "merchant_id", "device_id"],
        description="Contract features kept out of the model: raw ids memorize rather than generalize "
        "(their signal reaches the model through the history features, e.g. new_device_for_card).",
    )
    review_cost: float = Field(default=5.0, ge=0, description="Cost of reviewing one alert (a false alarm costs this).")
    missed_fraud_cost: float | str | None = Field(
        default=None,
        description="Cost of one missed positive: a number (the same for every row) or a column name (a cost "
        "per row, e.g. the exposure). Default: the amount × missed_fraud_cost_factor when the amount role is "
        "set, else 5 × review_cost (alert when the probability reaches 1/6).",
    )
    missed_fraud_cost_factor: float = Field(default=1.0, ge=0, description="A missed fraud costs amount × this (when costs follow the amount).")
    gradient_boosted_trees: GradientBoostedTreesConfig = Field(default_factory=GradientBoostedTreesConfig)
    keras_model: KerasModelConfig = Field(default_factory=KerasModelConfig)
    linear_model: LinearModelConfig = Field(default_factory=LinearModelConfig)
    # With 0.2 % positives the loss is all negatives; stop on the metric the gate uses instead.
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(
            epochs=8, batch_size=1024, early_stopping_monitor="val_auprc", early_stopping_mode="max"
        )
    )
