"""The retail generator's structure and the competition loaders, checked against their contracts, and
how the app turns tables into examples and the config the rest of the run uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demand_forecasting.data import SALES, SERIES, infer_frequency, load_tables
from demand_forecasting.generate import generate_sales
from solutions_core.contracts import load_contract

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_sales(stores=4, products=30, days=400, seed=2)


def check(tables):
    for name in (SALES, SERIES):
        report = load_contract(name, CONTRACTS).check(tables[name])
        assert report.ok, (name, report.to_dict())


def test_generated_tables_follow_their_contracts_and_are_seeded(tables):
    check(tables)
    pd.testing.assert_frame_equal(tables[SALES], generate_sales(stores=4, products=30, days=400, seed=2)[SALES])


def test_generator_has_retail_structure(tables):
    sales = tables[SALES]
    weekday = sales[sales["store_open"] == 1].groupby(sales["date"].dt.weekday)["quantity"].mean()
    assert weekday[5] > 1.2 * weekday[1], "Saturdays should sell more than Tuesdays"
    assert sales.loc[sales["promotion"] == 1, "quantity"].mean() > 1.3 * sales.loc[sales["promotion"] == 0, "quantity"].mean()
    assert (sales.loc[sales["store_open"] == 0, "quantity"] == 0).all()
    assert sales["holiday"].notna().any() and sales["stockout"].sum() > 0
    zero_share = sales.groupby("series_id")["quantity"].apply(lambda q: (q == 0).mean())
    assert (zero_share > 0.5).any(), "some series should be intermittent slow movers"
    starts = sales.groupby("series_id")["date"].min()
    assert (starts > starts.min()).any(), "some products should launch mid-history"
    launch = tables[SERIES].set_index("series_id")["launch_date"]
    assert (starts == launch.loc[starts.index]).all()


def test_promotions_lower_the_price(tables):
    sales = tables[SALES]
    by_series = sales.groupby(["series_id", "promotion"])["price"].median().unstack()
    both = by_series.dropna()
    assert (both[1] < both[0]).mean() > 0.9


@pytest.mark.parametrize("source, count, horizons", [("tourism", 1311, {"Y": 4, "Q": 8, "M": 24}), ("m1:M", 617, {"M": 18})])
def test_competition_data_with_official_horizons(source, count, horizons):
    tables = load_tables(source)
    check(tables)
    series = tables[SERIES]
    assert len(series) == count
    assert series.groupby("frequency")["horizon"].unique().map(list).to_dict() == {k: [v] for k, v in horizons.items()}
    sales = tables[SALES].merge(series[["series_id", "test_start", "horizon"]], on="series_id")
    test_rows = (sales["date"] >= sales["test_start"]).groupby(sales["series_id"]).sum()
    assert (test_rows == series.set_index("series_id")["horizon"].loc[test_rows.index].astype(int)).all()


def test_a_client_folder_gets_defaults_and_its_frequency(tmp_path):
    dates = pd.date_range("2025-01-06", periods=20, freq="W-MON")
    pd.DataFrame({"series_id": ["a"] * 20, "date": dates, "quantity": np.arange(20.0)}).to_csv(tmp_path / "sales.csv", index=False)
    tables = load_tables(str(tmp_path))
    check(tables)
    assert tables[SERIES]["frequency"].tolist() == ["W"]
    assert (tables[SALES]["store_open"] == 1).all() and (tables[SALES]["promotion"] == 0).all()
    with pytest.raises(ValueError, match="Unknown competition|expected 'tourism'"):
        load_tables(str(tmp_path / "missing"))


def test_frequency_inference_refuses_irregular_gaps():
    frame = pd.DataFrame({"series_id": ["a", "a", "a"], "date": pd.to_datetime(["2025-01-01", "2025-01-04", "2025-01-07"])})
    with pytest.raises(ValueError, match="3 days apart"):
        infer_frequency(frame)


def test_prepare_leaves_the_config_alone_and_resolve_config_fills_in_the_shape(tables):
    from demand_forecasting import SOLUTION
    from solutions_core.solution import Context

    config = SOLUTION.make_config({"size": 120, "stores": 4, "days": 400})
    assert config.frequency is None and config.lookback is None and config.horizon is None
    before = config.model_dump()
    context = Context(SOLUTION.name, config, {name: load_contract(name, CONTRACTS) for name in SOLUTION.contracts})
    examples = SOLUTION.data.prepare(context, tables)
    assert config.model_dump() == before, "prepare must not write into the config"
    resolved = SOLUTION.data.resolve_config(context, examples)
    assert config.model_dump() == before and resolved is not config
    assert (resolved.frequency, resolved.horizon, resolved.lookback) == ("D", 28, 112)  # default daily horizon, 4 horizons back
    assert (examples.frequency, examples.lookback, examples.horizon) == (resolved.frequency, resolved.lookback, resolved.horizon)
    assert resolved.model_dump() == {**before, "frequency": "D", "lookback": 112, "horizon": 28, "season": 7, "network_lookback": 112}
    # Lengths the user set are kept; the split uses the resolved config.
    chosen = SOLUTION.make_config({"horizon": 7, "lookback": 21})
    kept = SOLUTION.data.resolve_config(context, SOLUTION.data.prepare(Context(SOLUTION.name, chosen, context.contracts), tables))
    assert (kept.frequency, kept.lookback, kept.horizon) == ("D", 21, 7)
    splits = SOLUTION.data.split(Context(SOLUTION.name, kept, context.contracts), SOLUTION.data.prepare(Context(SOLUTION.name, kept, context.contracts), tables))
    assert len(splits.test["actual"].iloc[0]) == 7 and len(splits.test["history"].iloc[0]) == 21


def test_mixed_frequencies_need_a_chosen_one():
    from demand_forecasting import SOLUTION
    from solutions_core.solution import Context

    tables = load_tables("tourism")
    context = Context(SOLUTION.name, SOLUTION.make_config(), {name: load_contract(name, CONTRACTS) for name in SOLUTION.contracts})
    with pytest.raises(ValueError, match="mixes frequencies"):
        SOLUTION.data.prepare(context, tables)
    quarterly = Context(SOLUTION.name, SOLUTION.make_config({"frequency": "Q"}), context.contracts)
    resolved = SOLUTION.data.resolve_config(quarterly, SOLUTION.data.prepare(quarterly, tables))
    assert (resolved.frequency, resolved.horizon) == ("Q", 8)  # the official quarterly horizon
