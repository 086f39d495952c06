"""The exported forecaster over real HTTP: `:predict` with full requests or only a series id (the stored
history fills the rest), `/forecast` with stored or sent history and a plan, and clear 4xx errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from solutions_core.demo import http_json

APP = "demand_forecasting"


@pytest.fixture(scope="module")
def shape(trained):
    config = trained[APP].version.metadata()["config"]
    return config["lookback"], config["horizon"], config["frequency"]


@pytest.fixture(scope="module")
def stored(settings):
    sales = pd.read_parquet(settings.resolved_data_dir() / APP / "demand_sales.parquet")
    return sales.sort_values(["series_id", "date"])


def test_predict_with_only_a_series_id_uses_the_stored_history(trained, server, stored, shape):
    lookback, horizon, _ = shape
    series_id = stored["series_id"].iloc[0]
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [{"series_id": series_id}]})
    assert status == 200, body
    prediction = body["predictions"][0]
    assert sorted(prediction) == ["p10", "p50", "p90"]
    assert all(len(prediction[name]) == horizon for name in prediction)
    # The same forecast through /forecast (which builds the request from the same stored rows).
    status, friendly = http_json("GET", f"{server.url}/forecast/{series_id}")
    assert status == 200, friendly
    assert friendly["history_source"] == "stored"
    np.testing.assert_allclose([p["quantiles"]["p50"] for p in friendly["forecast"]], prediction["p50"], rtol=1e-5)
    last = pd.Timestamp(stored[stored["series_id"] == series_id]["date"].max())
    assert friendly["forecast"][0]["date"] == (last + pd.Timedelta(days=1)).date().isoformat()


def test_forecast_with_sent_history_and_a_promotion_plan(trained, server, stored, shape):
    lookback, horizon, _ = shape
    series_id = stored["series_id"].iloc[-1]
    rows = stored[stored["series_id"] == series_id].tail(lookback)
    history = [
        {"date": str(r.date.date()), "quantity": float(r.quantity), "price": float(r.price), "promotion": int(r.promotion)}
        for r in rows.itertuples()
    ]
    start = (rows["date"].max() + pd.Timedelta(days=1)).date()
    body = {"series_id": series_id, "history": history}
    status, plain = http_json("POST", f"{server.url}/forecast", body)
    assert status == 200, plain
    assert plain["history_source"] == "request" and len(plain["forecast"]) == horizon
    for point in plain["forecast"]:
        q = point["quantiles"]
        assert 0 <= q["p10"] <= q["p50"] <= q["p90"]
    doubled = {**body, "history": [{**row, "quantity": 2 * row["quantity"]} for row in history]}
    status, twice = http_json("POST", f"{server.url}/forecast", doubled)
    assert status == 200
    np.testing.assert_allclose(
        [p["quantiles"]["p50"] for p in twice["forecast"]], [2 * p["quantiles"]["p50"] for p in plain["forecast"]], rtol=1e-3, atol=1e-3
    )
    plan = [{"date": str(start + pd.Timedelta(days=step)), "promotion": 1, "price": 0.5 * float(rows["price"].iloc[-1])} for step in range(horizon)]
    status, promoted = http_json("POST", f"{server.url}/forecast", {**body, "future": plan})
    assert status == 200
    assert [p["quantiles"] for p in promoted["forecast"]] != [p["quantiles"] for p in plain["forecast"]], "the plan is ignored"


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"series_id": "no-such-series"}, 404, "not in the stored data"),
        ({"series_id": "x", "history": [{"date": "2024-01-01", "quantity": -3}]}, 400, "history.0.quantity"),
        ({"series_id": "x", "history": [{"date": "not a date", "quantity": 1}]}, 400, "history.0.date"),
        ({"series_id": "x", "history": []}, 400, "at least one row"),
        ({"series_id": "x", "history": [{"date": "2024-01-01", "quantity": 1}], "attributes": {"colour": "red"}}, 400, "Unknown attributes"),
        ({"series_id": "x", "version": 99}, 404, "99"),
        ({"series_id": "x", "surprise": 1}, 400, "surprise"),
        # Beyond the dates pandas holds: refused on the field, not by a conversion further down.
        ({"series_id": "x", "history": [{"date": "0838-05-07", "quantity": 1}]}, 400, "history.0.date"),
        ({"series_id": "x", "start": "3000-01-01"}, 400, "start"),
    ],
)
def test_bad_forecast_requests_are_clear_4xx(trained, server, body, status, words):
    got, answer = http_json("POST", f"{server.url}/forecast", body)
    assert got == status, answer
    assert words in answer["error"]


def test_a_bad_version_in_the_query_string_is_a_400_in_the_api_error_format(trained, server):
    # Parsed by the route's request model, as a POST body is (FastAPI alone would answer 422 {"detail": ...}).
    status, answer = http_json("GET", f"{server.url}/forecast/any-series?version=latest")
    assert status == 400, answer
    assert "version" in answer["error"]


def test_predict_rejects_a_negative_history_naming_the_field(trained, server):
    instance = dict(trained[APP].golden_instances[0])
    instance["history"] = [-5.0, *instance["history"][1:]]
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [instance]})
    assert status == 400, body
    assert "history[0] = -5.0 is below quantity's min 0" in body["error"]


def test_predict_rejects_a_history_of_the_wrong_length(trained, server):
    instance = dict(trained[APP].golden_instances[0])
    instance["history"] = instance["history"][:-1]
    status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [instance]})
    assert status == 400 and "history" in body["error"]


def test_batch_forecast_sees_only_history_up_to_its_date(trained, settings):
    from demand_forecasting import SOLUTION
    from demand_forecasting.batch import forecast_table
    from solutions_core.export import load_signature, predict_frame

    version = trained[APP].version
    config = SOLUTION.make_config(version.metadata()["config"])
    signature = load_signature(version.path)
    tables = {name: pd.read_parquet(settings.resolved_data_dir() / APP / f"{name}.parquet") for name in ("demand_sales", "demand_series")}
    sales = tables["demand_sales"]
    cutoff = (pd.Timestamp(sales["date"].max()) - pd.Timedelta(days=config.horizon)).date()

    def run(frames):
        return forecast_table(frames, config, lambda frame: predict_frame(signature, frame), cutoff, model_version=version.version)

    table = run(tables)
    assert len(table) == sales["series_id"].nunique() * config.horizon
    assert table["date"].min() == pd.Timestamp(cutoff) + pd.Timedelta(days=1)
    assert (table["p10"] <= table["p50"] + 1e-6).all() and (table["p50"] <= table["p90"] + 1e-6).all()
    later = pd.to_datetime(sales["date"]) > pd.Timestamp(cutoff)
    # What sold after the date is unknown to its forecast; what was planned after it is used.
    changed_sales = sales.assign(quantity=np.where(later, sales["quantity"] * 5 + 7, sales["quantity"]))
    pd.testing.assert_frame_equal(run({**tables, "demand_sales": changed_sales}), table)
    changed_plan = sales.assign(promotion=np.where(later, 1, sales["promotion"]))
    assert not np.allclose(run({**tables, "demand_sales": changed_plan})["p50"], table["p50"])


def test_batch_command_forecasts_with_the_champions_shape(trained, settings):
    # A scheduled batch run gets a fresh config whose lookback and horizon are unset (no training ran in
    # its process): the champion's metadata must supply them.
    from demand_forecasting import SOLUTION
    from solutions_core.batch import run_batch

    fresh = SOLUTION.tiny_config()
    assert fresh.lookback is None or fresh.horizon is None or fresh.frequency is None
    published = trained[APP].version.metadata()["config"]
    sales = pd.read_parquet(settings.resolved_data_dir() / APP / "demand_sales.parquet")
    last_day = pd.Timestamp(sales["date"].max()).date()
    result = run_batch(SOLUTION, fresh, settings, logical_date=last_day)
    table = pd.read_parquet(result.folder / "forecasts.parquet")
    assert result.folder.name == f"date={last_day.isoformat()}"
    assert table["step"].max() == published["horizon"]
    assert len(table) == sales["series_id"].nunique() * published["horizon"]
    assert (table["model_version"] == trained[APP].version.version).all()


def test_report_shows_the_model_next_to_its_baselines(trained):
    result = trained[APP]
    assert sorted(path.name for path in result.plots) == ["backtest_metrics.png", "fan_charts.png"]
    assert all(path.exists() for path in result.plots)
    totals = pd.read_csv(result.run_dir / "aggregate_metrics.csv", index_col=0)
    assert list(totals.index) == ["model", "seasonal_naive"]
    assert totals.loc["model", "mase"] == pytest.approx(result.test.metrics["mase"])
    assert totals.loc["seasonal_naive", "mase"] == pytest.approx(result.baselines["seasonal_naive"].metrics["mase"])
