"""The demand-forecasting app: what it brings to the core's pipeline (long-format sales, the rolling-origin
backtest, the global quantile model, seasonal-naive/ETS/Theta baselines, fan charts, ``/forecast``, the
daily batch forecast). Everything generic — validation, storage, the fit loop, the gate, export,
serving — is the core's.

The shape of the model (frequency, lookback, horizon) depends on the data: ``ForecastData.resolve_config``
fills it in, and everything after it (split, training, evaluation, the published version, so the online
store, ``/forecast`` and the batch forecast) reads it from that config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from demand_forecasting.config import ForecastConfig, season_length
from demand_forecasting.data import SALES, SERIES
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

# A request describes one series' window; the sales table's per-period columns are not sent.
REQUEST_OPTIONAL = frozenset({"date", "quantity", "price", "promotion", "holiday", "store_open", "stockout"})


@dataclass
class Prepared:
    """Validated tables as series arrays, with the shape every window of this run has."""

    data: Any  # windows.SeriesArrays
    frequency: str
    lookback: int
    horizon: int
    official_start: np.ndarray | None  # per series: index of the official test start, -1 when none


@dataclass
class TrainingData:
    prepared: Prepared
    backtest: Any  # windows.Backtest

    def __len__(self) -> int:
        return int(self.prepared.data.ids.size)


@dataclass
class FittedForecaster:
    """What is served: the network (None for Theta alone) and the weight of the in-graph Theta forecast
    averaged with it (0: the network alone, 1: Theta alone)."""

    model: Any
    prepared: Prepared
    theta_weight: float = 0.0


# The blends' weights of Theta: validation picks among them as among candidates.
THETA_BLEND_WEIGHTS = (0.25, 0.5, 0.75)


def blend_with_theta(weight: float) -> Any:
    """The network and Theta averaged with ``weight`` on Theta: their errors differ (a learned global
    model, a per-series smoother), so on short seasonal series the average often beats both."""

    def combine(members: list[FittedForecaster]) -> FittedForecaster:
        network, _ = members
        return FittedForecaster(network.model, network.prepared, theta_weight=weight)

    return combine


def quantiles_of(outputs: Outputs, config: ForecastConfig) -> dict[float, np.ndarray]:
    """The served outputs (``p10``, ``p50``, ...) by quantile level."""
    from demand_forecasting.model import quantile_names

    levels = sorted(config.quantiles)
    return {level: np.asarray(outputs[name]) for level, name in zip(levels, quantile_names(levels))}


class ForecastData(Data):
    def generate(self, context: Context, workdir: Path) -> Tables:
        from demand_forecasting.generate import generate_sales

        config: ForecastConfig = context.config
        products = max(1, config.size // config.stores)
        return generate_sales(stores=config.stores, products=products, days=config.days, seed=config.seed)

    def load(self, context: Context, source: str) -> Tables:
        """``tourism``, ``m1`` or ``m3`` (optionally ``:Y``, ``:Q``, ``:M`` or ``:O``), or a folder of
        sales/series tables in the client's columns (as the contract names them)."""
        from demand_forecasting.data import load_tables

        return load_tables(source, context.contract, context.config)

    def prepare(self, context: Context, tables: Tables) -> Prepared:
        """One frequency's series as arrays, with the shape the config asks for or the data implies."""
        from demand_forecasting.data import canonical_sales
        from demand_forecasting.windows import resolve_lengths, series_arrays

        config: ForecastConfig = context.config
        sales, series = canonical_sales(tables[SALES], context.contract, config), tables[SERIES]
        frequencies = sorted(series["frequency"].dropna().unique())
        frequency = config.frequency or (frequencies[0] if len(frequencies) == 1 else None)
        if frequency is None:
            raise ValueError(
                f"The data mixes frequencies {frequencies}: one model is trained per frequency, so set "
                "`frequency` in the config (or load e.g. 'tourism:M')."
            )
        chosen = series[series["frequency"] == frequency] if len(frequencies) else series
        if chosen.empty:
            raise ValueError(f"No series has frequency {frequency!r}; the data has {frequencies}.")
        sales = sales[sales["series_id"].isin(chosen["series_id"])]
        data = series_arrays(sales, chosen, config.static_columns)
        horizons = chosen["horizon"].dropna()
        lookback, horizon = resolve_lengths(config, frequency, int(horizons.iloc[0]) if len(horizons) else None)
        official = None
        if chosen["test_start"].notna().any():
            starts = pd.to_datetime(chosen.set_index("series_id")["test_start"]).reindex(data.ids)
            first = pd.to_datetime(data.seconds[:, 0], unit="s")
            periods = {"D": "D", "W": "W", "M": "M", "Q": "Q", "Y": "Y"}[frequency]
            steps = [
                (start.to_period(periods) - begin.to_period(periods)).n if pd.notna(start) else -1
                for start, begin in zip(starts, first)
            ]
            official = np.asarray(steps, dtype=np.int64)
        return Prepared(data, frequency, lookback, horizon, official)

    def resolve_config(self, context: Context, examples: Prepared) -> ForecastConfig:
        from demand_forecasting.windows import network_span

        # The resolved shape is part of the model: the version's recorded config (and everything that
        # builds requests from it: the online store, /forecast, batch) must know it.
        return context.config.model_copy(
            update={
                "frequency": examples.frequency,
                "lookback": examples.lookback,
                "horizon": examples.horizon,
                "season": season_length(context.config, examples.frequency),
                "network_lookback": min(examples.lookback, network_span(context.config, examples.frequency, examples.horizon)),
            }
        )

    def split(self, context: Context, examples: Prepared) -> Splits:
        from demand_forecasting.windows import backtest_layout, examples_frame

        layout = backtest_layout(examples.data, examples.horizon, context.config, examples.official_start)
        season = season_length(context.config, examples.frequency)
        frames = [examples_frame(examples.data, *pair, examples.lookback, examples.horizon, season) for pair in (layout.valid, layout.test)]
        return Splits(train=TrainingData(examples, layout), valid=frames[0], test=frames[1])


class ForecastModels(Models):
    def candidates(self, context: Context) -> list[Candidate]:
        config: ForecastConfig = context.config

        def fit(splits: Splits, trainer: Any) -> FittedForecaster:
            from demand_forecasting.model import fit as fit_network

            train: TrainingData = splits.train
            prepared = train.prepared
            model = fit_network(
                trainer,
                prepared.data,
                train.backtest.train_end,
                train.backtest.valid,
                config,
                prepared.frequency,
                prepared.lookback,
                prepared.horizon,
            )
            return FittedForecaster(model, prepared)

        def theta(splits: Splits, trainer: Any) -> FittedForecaster:
            # Nothing to train: Theta is computed from each request's history inside the graph.
            return FittedForecaster(None, splits.train.prepared, theta_weight=1.0)

        return [Candidate("global_quantile_mlp", fit=fit), Candidate("theta", fit=theta, kind="statistical")]

    def ensembles(self, context: Context) -> list[Ensemble]:
        return [
            Ensemble(f"mlp_theta_blend_{round(weight * 100)}", ("global_quantile_mlp", "theta"), combine=blend_with_theta(weight))
            for weight in THETA_BLEND_WEIGHTS
        ]


class ForecastEvaluation(Evaluation):
    def evaluate(self, context: Context, examples: pd.DataFrame, outputs: Outputs) -> Metrics:
        from demand_forecasting.evaluate import aggregate_windows, window_metrics

        return aggregate_windows(window_metrics(examples, quantiles_of(outputs, context.config)))

    def outcomes(self, context: Context, logged: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Each logged forecast against the demand realized since (``outcomes``: the sales table as it
        stands now, in the contract's columns)."""
        from demand_forecasting.data import canonical_sales
        from demand_forecasting.evaluate import realized_windows
        from demand_forecasting.model import quantile_names

        config: ForecastConfig = context.config
        median = quantile_names([0.5])[0]
        if median not in logged.columns:
            raise ValueError(f"The request log holds no {median!r} answers: these are not forecast requests.")
        horizon = len(logged[median].iloc[0]) if len(logged) else config.horizon or 1
        sales = canonical_sales(outcomes, context.contract, config)
        return realized_windows(logged, sales, horizon, config.season)

    def baselines(self, context: Context, splits: Splits) -> dict[str, Baseline]:
        from demand_forecasting.baselines import baseline_forecasts
        from demand_forecasting.evaluate import aggregate_windows, window_metrics
        from demand_forecasting.model import quantile_names

        train: TrainingData = splits.train
        prepared = train.prepared
        forecasts = baseline_forecasts(prepared.data, splits.test, *train.backtest.test, prepared.horizon, prepared.frequency, context.config)
        levels = sorted(context.config.quantiles)

        def served(quantiles: dict[float, np.ndarray]) -> Outputs:
            # As the model answers (p10, p50, p90 per window), so the core can bootstrap the gate metric's
            # difference. MASE reads the median only: a baseline without a spread (seasonal naive) stands
            # in its median for the other quantiles.
            return {name: np.asarray(quantiles.get(level, quantiles[0.5])) for level, name in zip(levels, quantile_names(levels))}

        return {
            name: Baseline(aggregate_windows(window_metrics(splits.test, quantiles)), outputs={"forecasts": quantiles}, served=served(quantiles))
            for name, quantiles in forecasts.items()
        }

    def report(self, context: Context, examples: pd.DataFrame, outputs: Outputs, baselines: Mapping[str, Baseline], out_dir: Path) -> list[Path]:
        from demand_forecasting.evaluate import aggregate_windows, window_metrics
        from demand_forecasting.plots import plot_fan_charts, plot_metric_bars

        out_dir = Path(out_dir)
        quantiles = quantiles_of(outputs, context.config)
        table = window_metrics(examples, quantiles)
        per_series = table.drop(columns=["origin"]).groupby("series_id").mean(numeric_only=True)
        per_series.to_csv(out_dir / "per_series_metrics.csv")
        totals = {"model": aggregate_windows(table)} | {name: baseline.metrics for name, baseline in baselines.items()}
        pd.DataFrame(totals).T.to_csv(out_dir / "aggregate_metrics.csv")
        bands = {name: baseline.outputs.get("forecasts", {}) for name, baseline in baselines.items()}
        return [
            plot_fan_charts(examples, quantiles, bands, out_dir / "fan_charts.png", seed=context.config.seed),
            plot_metric_bars(totals, out_dir / "backtest_metrics.png"),
        ]


class ForecastServing(Serving):
    def module(self, context: Context, fitted: FittedForecaster) -> Any:
        from demand_forecasting.model import serving_module

        prepared = fitted.prepared
        season = min(season_length(context.config, prepared.frequency), prepared.lookback)
        return serving_module(
            fitted.model, context.config, prepared.lookback, prepared.horizon, list(prepared.data.static), fitted.theta_weight, season
        )

    def golden_instances(self, context: Context, examples: pd.DataFrame, count: int = 8) -> list[dict[str, Any]]:
        """Backtest windows as JSON requests (dates as ISO strings, unknown values as null), including
        one whose history starts with unknowns (a new product)."""
        from demand_forecasting.model import request_specs

        config: ForecastConfig = context.config
        names = [name for name in request_specs(config.lookback, config.horizon, config.static_columns) if name in examples.columns]
        chosen = examples.head(max(2, count - 1))
        padded = examples[examples["history"].map(lambda values: bool(np.isnan(np.asarray(values, dtype=float)).any()))]
        if not padded.empty:
            chosen = pd.concat([chosen, padded.head(1)])
        instances = []
        for _, row in chosen.iterrows():
            instance: dict[str, Any] = {"series_id": str(row["series_id"])}
            for name in names:
                value = row[name]
                if name == "forecast_start":
                    instance[name] = pd.to_datetime(value, unit="s").isoformat()
                elif isinstance(value, np.ndarray):
                    instance[name] = [None if np.isnan(v) else float(v) for v in value]
                else:
                    instance[name] = str(value)
            instances.append(instance)
        return instances

    def request(self, context: Context) -> RequestSchema:
        return RequestSchema(optional=REQUEST_OPTIONAL)

    def check(self, context: Context, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A request's arrays hold the sales table's values per step: each value must keep the rules of
        its column in the contract (a negative history is as wrong as a negative quantity row)."""
        from demand_forecasting.windows import FLAGS

        contract = context.contract
        columns = {"history": contract.label_column() or "quantity", "history_price": "price", "future_price": "price"}
        columns.update({f"{when}_{flag}": flag for when in ("history", "future") for flag in FLAGS})
        for index, instance in enumerate(instances):
            for field, column_name in columns.items():
                column = contract.columns.get(column_name)
                values = instance.get(field)
                if column is None or values is None:
                    continue
                if not isinstance(values, list):
                    raise ValueError(f"instance {index}: {field} must be a list of numbers (null for unknown), got {type(values).__name__}.")
                for step, value in enumerate(values):
                    if value is None:
                        continue
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                        raise ValueError(f"instance {index}: {field}[{step}] = {value!r} is not a finite number.")
                    if column.min is not None and value < float(column.min):
                        raise ValueError(f"instance {index}: {field}[{step}] = {value} is below {column_name}'s min {column.min} (contract {contract.name}).")
                    if column.max is not None and value > float(column.max):
                        raise ValueError(f"instance {index}: {field}[{step}] = {value} is above {column_name}'s max {column.max} (contract {contract.name}).")
        return instances

    def features(self, context: Context, data_dir: Path) -> FeatureStore | None:
        from demand_forecasting.online import ForecastStore

        if context.config.lookback is None:  # not a trained version's config: no request shape to fill
            return None
        return ForecastStore.open(data_dir, context.config, context.contracts.get(SALES))

    def routers(self, manager: Any) -> list[Any]:
        from demand_forecasting.api import router

        return [router(manager)]


class ForecastBatch(Batch):
    shardable = True

    def run(self, context: BatchContext) -> list[Path]:
        """The daily forecast: every series' P10/P50/P90 for the horizon after the logical date, in the
        champion's request shape (its published config)."""
        from demand_forecasting.batch import forecast_table
        from demand_forecasting.data import canonical_sales

        sales = canonical_sales(context.tables[SALES], context.contracts.get(SALES), context.config)
        tables = {**context.tables, SALES: sales[context.in_shard(sales["series_id"])]}  # this shard's series, whole
        table = forecast_table(tables, context.config, context.predict, context.logical_date, model_version=context.champion.version,
                               allow_empty=context.shard[1] > 1)
        path = context.output_dir / "forecasts.parquet"
        table.to_parquet(path, index=False)
        return [path]


class DemandForecasting(Solution):
    name = "demand_forecasting"
    title = "Demand forecasting"
    description = "P10/P50/P90 forecasts for many store × product series from one global Keras model; backtests vs ETS/Theta; /forecast."
    contracts = (SALES, SERIES)
    gate = Gate("mase", higher_is_better=False)
    config_class = ForecastConfig
    predict_batch_size = 2048
    data = ForecastData()
    models = ForecastModels()
    evaluation = ForecastEvaluation()
    serving = ForecastServing()
    batch = ForecastBatch()

    def demo_config(self) -> ForecastConfig:
        # 200 series and Theta as the statistical baseline keep the laptop demo near a minute on 2 cores.
        return self.make_config({"size": 200, "baselines": ["seasonal_naive", "theta"], "training": {"epochs": 10}})

    def tiny_config(self) -> ForecastConfig:
        return self.make_config(
            {
                "size": 12,
                "stores": 2,
                "days": 150,
                "horizon": 7,
                "lookback": 21,
                "backtest_origins": 2,
                "windows_per_series": 8,
                "baselines": ["seasonal_naive"],
                # The plumbing tests exercise the network (covariates, scaling); Theta and the blend are
                # tested on their own (tests/demand_forecasting/test_theta.py).
                "candidates": ["global_quantile_mlp"],
                "network": {"hidden_units": 16, "residual_blocks": 1},
                "training": {"epochs": 2, "batch_size": 32, "early_stopping_patience": 0},
                # Plumbing runs on seconds of data: they must publish to test what follows; the
                # baseline rule of the gate is tested on the core (tests/core/test_gate.py).
                "gate": {"beat_baselines": False},
            }
        )
