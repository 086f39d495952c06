"""Typed configuration of the demand-forecasting app, defaults in code (overridden by a YAML file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from solutions_core.solution import SolutionConfig, TrainingConfig

# Season length per frequency; "O" is a period the data does not name (M3's "other"): no season.
SEASON = {"D": 7, "W": 52, "M": 12, "Q": 4, "Y": 1, "O": 1}


def season_length(config: "ForecastConfig", frequency: str) -> int:
    """The config's season length, else the frequency's."""
    return config.season or SEASON[frequency]


class NetworkConfig(BaseModel):
    """A TiDE-like global MLP: the scaled recent history, past and future covariates and static
    embeddings in, every horizon step's quantiles out."""

    model_config = ConfigDict(extra="forbid")

    hidden_units: int = Field(default=128, ge=8)
    residual_blocks: int = Field(default=2, ge=1)
    dropout_rate: float = Field(default=0.1, ge=0, lt=1)
    embedding_dim: int = Field(default=4, ge=1)


class ForecastConfig(SolutionConfig):
    size: int = Field(default=500, ge=1, description="Series the embedded generator makes (stores × products).")
    stores: int = Field(default=10, ge=1)
    days: int = Field(default=730, ge=60, description="Days of history the generator makes.")
    horizon: int | None = Field(default=None, ge=1, description="Steps to forecast; default: the data's official horizon, else 28 days / 18 months / 8 quarters / 6 years.")
    lookback: int | None = Field(default=None, ge=2, description="History steps a request carries; default: the network's span, and for weekly and longer periods as much as the statistical baselines fit on (156 weeks, 120 months, 60 quarters or years), which the in-graph Theta reads.")
    network_lookback: int | None = Field(default=None, ge=2, description="History steps the network reads (the last of the request's lookback); default: 4 horizons, at least 2 seasons.")
    season: int | None = Field(default=None, ge=1, description="Season length in steps; default from the frequency: D 7, W 52, M 12, Q 4, Y and O 1.")
    frequency: str | None = Field(default=None, pattern="^[DWMQYO]$", description="Series frequency to model (D, W, M, Q, Y); default: the data's only one.")
    period_column: str | None = Field(
        default=None,
        description="A sales column of whole period numbers (1, 2, 3, ...) for series without calendar dates; the frequency is then `frequency` (default O: no season).",
    )
    backtest_origins: int = Field(default=3, ge=1, description="Rolling test origins per series (data with an official test start uses that one).")
    backtest_stride: int | None = Field(default=None, ge=1, description="Steps between test origins; default: half a horizon.")
    baselines: list[str] = Field(
        default_factory=lambda: ["seasonal_naive", "ets", "theta"],
        description="Baselines scored in the same run: seasonal_naive, ets (statsforecast AutoETS), theta (OptimizedTheta).",
    )
    baseline_history: int | None = Field(default=None, ge=8, description="Steps of history the statistical baselines fit on; default: 365 days, 156 weeks, 120 months, 60 quarters or years (at least 4 horizons).")
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    windows_per_series: int = Field(default=64, ge=1, description="Training windows drawn per series (random forecast origins).")
    ensemble_members: int = Field(default=1, ge=1, le=10, description="Networks averaged in the exported model (other seeds and lookbacks).")
    static_columns: list[str] = Field(default_factory=lambda: ["category", "region"], description="demand_series columns embedded as static features.")
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=20, batch_size=256, learning_rate=2e-3, early_stopping_patience=3)
    )
