"""Data shapes a client brings, through contract and config only: short series (padded and masked, never
dropped), series indexed by period number instead of dates, lookback and season from the frequency,
contracts with only the client's columns, flat series, and histories checked against the contract."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from demand_forecasting.config import ForecastConfig
from demand_forecasting.windows import backtest_layout, series_arrays, training_origins, window_inputs, window_targets


def long_tables(lengths: dict[str, int], start: str = "2000-01-01", freq: str = "QS") -> dict[str, pd.DataFrame]:
    rows = []
    for number, (series_id, length) in enumerate(lengths.items()):
        values = 100.0 + 10 * number + np.tile([5.0, -3.0, 8.0, -10.0], length)[:length]
        rows.append(pd.DataFrame({"series_id": series_id, "date": pd.date_range(start, periods=length, freq=freq), "quantity": values}))
    sales = pd.concat(rows, ignore_index=True).assign(price=np.nan, promotion=0, holiday=None, store_open=1, stockout=0)
    series = pd.DataFrame({"series_id": list(lengths), "frequency": "Q"})
    return {"demand_sales": sales, "demand_series": series}


def test_a_series_shorter_than_lookback_plus_horizon_still_trains():
    horizon, lookback = 8, 16
    tables = long_tables({"long": 60, "short": 20})
    data = series_arrays(tables["demand_sales"], tables["demand_series"], [])
    layout = backtest_layout(data, horizon, ForecastConfig(backtest_origins=1))
    short = list(data.ids).index("short")
    assert layout.train_end[short] == 20 - 2 * horizon  # 4 steps before its validation window
    rows, origins = training_origins(data, layout.train_end, horizon, 50, np.random.default_rng(0))
    assert (rows == short).sum() == 50, "the short series gets its training windows"
    mine = rows == short
    _, weight = window_targets(data, rows[mine], origins[mine], horizon, end=layout.train_end[rows[mine]])
    steps = origins[mine][:, None] + np.arange(horizon)[None, :]
    assert weight.sum() > 0
    assert np.all(weight[steps >= layout.train_end[short]] == 0), "targets at or after the validation start are masked"
    inputs = window_inputs(data, rows[mine], origins[mine], lookback, horizon)
    assert np.isnan(inputs["history"]).any(axis=1).all(), "history before the first row is unknown (padded)"
    assert np.all(inputs["future_store_open"] == 1), "no plan past the series' end reads as 'closed'"
    # And it is forecast in the test (its history padded too).
    test_rows, _ = layout.test
    assert short in set(test_rows)


def test_statistical_baselines_do_not_blow_up_on_flat_or_tiny_histories():
    from demand_forecasting.baselines import statistical_forecasts

    tables = long_tables({"a": 30, "b": 30, "c": 30})
    sales = tables["demand_sales"]
    sales.loc[sales["series_id"] == "a", "quantity"] = 7.0  # flat
    sales.loc[sales["series_id"] == "b", "quantity"] = 0.0  # never sold
    data = series_arrays(sales, tables["demand_series"], [])
    rows, origins = np.array([0, 1, 2]), np.array([20, 20, 2])  # series c: a history of 2 points
    forecasts = statistical_forecasts(data, rows, origins, 8, 4, ["ets", "theta"], 60)
    for name in ("ets", "theta"):
        for level, grid in forecasts[name].items():
            assert np.all(np.isfinite(grid)), (name, level)
            np.testing.assert_allclose(grid[0], 7.0, err_msg=f"{name} on a flat series")
            np.testing.assert_allclose(grid[1], 0.0, err_msg=f"{name} on zeros")
            assert np.all(grid[2] > 0), f"{name} on a 2-point history gave zeros"


def test_season_and_lookback_follow_the_frequency_unless_set():
    from demand_forecasting.config import season_length
    from demand_forecasting.windows import network_span, resolve_lengths

    assert season_length(ForecastConfig(), "Q") == 4 and season_length(ForecastConfig(), "M") == 12
    assert season_length(ForecastConfig(season=5), "O") == 5
    assert network_span(ForecastConfig(), "Q", 8) == 32
    assert network_span(ForecastConfig(), "M", 6) == 24  # two seasons beat four horizons
    assert network_span(ForecastConfig(season=13), "O", 2) == 26
    assert network_span(ForecastConfig(), "D", 28) == 112
    assert network_span(ForecastConfig(lookback=60), "Q", 8) == 32, "a long request history is Theta's, not the network's"
    assert network_span(ForecastConfig(network_lookback=12), "Q", 8) == 12
    # Requests carry as much history as the statistical baselines fit on (for Theta), daily ones the network's.
    assert resolve_lengths(ForecastConfig(), "Q", 8) == (60, 8)
    assert resolve_lengths(ForecastConfig(), "M", 6) == (120, 6)
    assert resolve_lengths(ForecastConfig(), "D", 28) == (112, 28)
    assert resolve_lengths(ForecastConfig(lookback=10), "M", 6) == (10, 6)


def test_predict_checks_histories_against_the_contract():
    from pathlib import Path

    from demand_forecasting.solution import ForecastServing
    from solutions_core.contracts import load_contract
    from solutions_core.solution import Context

    contracts = Path(__file__).resolve().parents[2] / "data_contracts"
    context = Context("demand_forecasting", ForecastConfig(), {"demand_sales": load_contract("demand_sales", contracts)})
    good = {"series_id": "a", "history": [1.0, None, 3.0], "history_price": [None, 2.5, 2.5]}
    assert ForecastServing().check(context, [good]) == [good]
    for field, values, words in [
        ("history", [1.0, -4.0, 3.0], "history[1] = -4.0 is below quantity's min 0"),
        ("future_price", [-1.0], "future_price[0] = -1.0 is below price's min 0"),
        ("history", [1.0, "x"], "history[1] = 'x' is not a finite number"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            ForecastServing().check(context, [good, {**good, field: values}])


CLIENT_CONTRACT = """\
name: shop_sales
version: 1.0.0
owner: planning@example.com
description: A client's monthly sales as they keep them - an item code, a month number, units.
columns:
  item:
    type: string
    role: id
  month:
    type: integer
    min: 1
    role: metadata
  units:
    type: float
    min: 0
    role: label
"""


def test_a_client_table_with_its_own_column_names_and_month_numbers_instead_of_dates(tmp_path):
    """Contract + config only: the client's names (item, month, units), period numbers with no
    calendar, no series table: validated with no warning, trained, served."""
    from demand_forecasting import SOLUTION
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    folder = tmp_path / "shop"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for number in range(8):
        length = 30 + 3 * number  # ragged, as real series are
        months = np.arange(60 - length + 1, 61)  # all end in month 60
        units = 50 + 5 * number + 12 * np.sin(2 * np.pi * months / 12) + rng.normal(0, 2, length)
        rows.append(pd.DataFrame({"item": f"SKU-{number:03d}", "month": months, "units": units.round(1)}))
    pd.concat(rows).to_csv(folder / "sales.csv", index=False)
    (tmp_path / "shop_sales.yaml").write_text(CLIENT_CONTRACT)

    config = SOLUTION.tiny_config().model_copy(
        update={
            "source": str(folder),
            "contract": str(tmp_path / "shop_sales.yaml"),
            "period_column": "month",
            "frequency": "M",
            "horizon": 6,
            "lookback": 12,
            "static_columns": [],
        }
    )
    result = run_training(SOLUTION, config, Settings(home=tmp_path / "home"), verbose=0)
    validation = (result.run_dir / "validation.json").read_text()
    import json

    reports = json.loads(validation)
    assert reports["demand_sales"]["violations"] == [], "only the client's columns, no unexpected warning"
    assert result.version is not None
    published = result.version.metadata()["config"]
    assert published["frequency"] == "M" and published["season"] == 12 and published["horizon"] == 6
    assert len(result.golden_outputs["p50"][0]) == 6
    assert np.isfinite(result.test.gate_value)
    # The online store reads the stored table (the client's columns) in the app's names.
    from demand_forecasting.online import ForecastStore
    from solutions_core.contracts import load_contract

    settings = Settings(home=tmp_path / "home")
    store = ForecastStore.open(settings.resolved_data_dir(), SOLUTION.make_config(published), load_contract(str(tmp_path / "shop_sales.yaml")))
    assert store.knows("SKU-000")
    request = store.request("SKU-000")
    assert len(request["history"]) == 12 and request["history"][-1] == pytest.approx(rows[0]["units"].iloc[-1])


def test_a_sales_table_without_the_columns_the_app_needs_is_a_clear_error():
    from demand_forecasting.data import canonical_sales
    from solutions_core.contracts import Contract

    contract = Contract.from_dict(yaml_dict(CLIENT_CONTRACT))
    sales = pd.DataFrame({"item": ["a"], "month": [1], "units": [3.0]})
    with pytest.raises(ValueError, match=r"no column 'date'.*period_column"):
        canonical_sales(sales, contract, ForecastConfig())
    with pytest.raises(ValueError, match=r"whole period numbers"):
        canonical_sales(sales.assign(month=[1.5]), contract, ForecastConfig(period_column="month"))
    dated = canonical_sales(pd.DataFrame({"item": ["a", "a", "b"], "month": [3, 4, 1], "units": [1.0, 2.0, 3.0]}), contract, ForecastConfig(period_column="month", frequency="M"))
    assert list(dated["date"].dt.strftime("%Y-%m")) == ["1900-03", "1900-04", "1900-01"], "one time line for every series"
    assert set(dated.columns) >= {"series_id", "date", "quantity", "price", "promotion", "store_open"}


def yaml_dict(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)
