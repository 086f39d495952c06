"""The online feature store: a `:predict` instance that names only a series gets the stored history and
plan; lookups change nothing, and a forecast request records nothing (it brings no new sale)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from demand_forecasting import SOLUTION
from demand_forecasting.generate import generate_sales
from demand_forecasting.online import ForecastStore, request_from_rows
from solutions_core.solution import Context, FeatureStore

LOOKBACK, HORIZON = 14, 7


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tables = generate_sales(stores=1, products=3, days=90, seed=5)
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "demand_forecasting").mkdir()
    for name, frame in tables.items():
        frame.to_parquet(data_dir / "demand_forecasting" / f"{name}.parquet", index=False)
    return data_dir, tables


def published_config():
    return SOLUTION.make_config({"frequency": "D", "lookback": LOOKBACK, "horizon": HORIZON})


def test_the_app_serves_its_store_only_with_a_resolved_config(stored):
    data_dir, _ = stored
    store = SOLUTION.serving.features(Context(SOLUTION.name, published_config(), {}), data_dir)
    assert isinstance(store, ForecastStore) and isinstance(store, FeatureStore)
    assert SOLUTION.serving.features(Context(SOLUTION.name, SOLUTION.make_config(), {}), data_dir) is None


def test_lookup_fills_a_series_only_request_and_changes_no_state(stored):
    data_dir, tables = stored
    store = ForecastStore.open(data_dir, published_config())
    sales = tables["demand_sales"].astype({"series_id": str}).sort_values(["series_id", "date"])
    series_id = sales["series_id"].iloc[0]
    rows = sales[sales["series_id"] == series_id]
    start = pd.Timestamp(rows["date"].iloc[-HORIZON])
    full = {"series_id": series_id, "history": [1.0] * LOOKBACK}
    instances = [{"series_id": series_id}, {"series_id": series_id, "forecast_start": start.isoformat()}, full, {"series_id": "unknown"}]
    sent = copy.deepcopy(instances)
    before = {key: frame.copy() for key, frame in store.sales.items()}

    first = store.lookup(instances)
    assert instances == sent, "lookup must not change the instances it was given"
    assert first[2] is full and first[3] == {"series_id": "unknown"}, "own arrays or an unknown series: left as sent"
    assert len(first[0]["history"]) == LOOKBACK and len(first[0]["future_price"]) == HORIZON
    assert pd.Timestamp(first[0]["forecast_start"]) == pd.Timestamp(rows["date"].iloc[-1]) + pd.Timedelta(days=1)
    # With a start date: the history before it and the stored rows from it on as the plan.
    expected = request_from_rows(
        rows[rows["date"] < start], rows[rows["date"] >= start], store.static(series_id),
        lookback=LOOKBACK, horizon=HORIZON, frequency="D", start=start,
    )
    assert first[1] == {"series_id": series_id, **expected}
    np.testing.assert_allclose(
        np.asarray(first[1]["history"], dtype=float), rows["quantity"].iloc[-HORIZON - LOOKBACK : -HORIZON].to_numpy(float), equal_nan=True
    )

    store.record(sent)
    assert store.lookup(copy.deepcopy(sent)) == first, "a second lookup (after record) answers the same"
    assert store.sales.keys() == before.keys()
    for key, frame in before.items():
        pd.testing.assert_frame_equal(store.sales[key], frame)
