"""``/forecast``: a friendly route beside TF Serving's ``:predict`` on the same exported model.

It takes a series id and, optionally, its recent history and the plan for the horizon as dated rows,
fills what is missing from the stored tables (or neutral defaults), calls the served signature through
the same path as ``:predict`` (contract check included) and answers quantiles per date. Errors are
``{"error": ...}`` with a 4xx status, as everywhere in the API.

Imported only when the server mounts the app's routes (FastAPI resolves the handlers' annotations
from this module's globals, hence the top-level fastapi import).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

APP = "demand_forecasting"
# The dates pandas can hold (nanosecond timestamps): a date beyond them is refused by name, as a 400
# on the field, rather than by the conversion that would fail on it further down.
SeriesDate = Annotated[dt.date, Field(ge=dt.date(1677, 9, 22), le=dt.date(2262, 4, 11), description="Years 1677-2262.")]


class HistoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: SeriesDate
    quantity: float | None = Field(default=None, ge=0, description="Units sold; null when unknown.")
    price: float | None = Field(default=None, ge=0)
    promotion: int = Field(default=0, ge=0, le=1)
    holiday: int = Field(default=0, ge=0, le=1, description="1 on a holiday or event.")
    store_open: int = Field(default=1, ge=0, le=1)


class PlanRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: SeriesDate
    price: float | None = Field(default=None, ge=0, description="Planned price; default: the last known one.")
    promotion: int = Field(default=0, ge=0, le=1)
    holiday: int = Field(default=0, ge=0, le=1)
    store_open: int = Field(default=1, ge=0, le=1)


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series_id: str = Field(min_length=1, max_length=256)
    start: SeriesDate | None = Field(default=None, description="First forecast date; default: the period after the last history row.")
    history: list[HistoryRow] | None = Field(default=None, description="Recent rows, any order; default: the stored history.")
    future: list[PlanRow] | None = Field(default=None, description="Planned covariates for the horizon; missing dates get neutral values.")
    attributes: dict[str, str] = Field(default_factory=dict, description="Static attributes (e.g. category); default: the stored ones.")
    version: int | None = Field(default=None, ge=1, description="Model version; default: the latest.")


class ForecastPoint(BaseModel):
    date: dt.date
    quantiles: dict[str, float] = Field(description="e.g. {\"p10\": 3.1, \"p50\": 5.0, \"p90\": 7.8}")


class ForecastResponse(BaseModel):
    series_id: str
    model_version: int
    history_source: str = Field(description="request or stored")
    forecast: list[ForecastPoint]


def forecast(manager: Any, payload: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for a /forecast request body."""
    import pandas as pd

    from demand_forecasting.online import ForecastStore, model_shape, request_from_rows
    from demand_forecasting.windows import future_dates
    from solutions_core.serving.app import RequestError, invalid_request, run_predict
    from solutions_core.serving.models import ModelNotFound

    try:
        request = ForecastRequest.model_validate(payload)
    except ValidationError as problem:
        return 400, {"error": invalid_request("/forecast", problem)}
    try:
        served = manager.get(APP, request.version)
    except ModelNotFound as problem:
        return 404, {"error": str(problem)}
    config = served.context.config  # the version's, as published: its training resolved the request shape
    lookback, horizon, frequency = model_shape(config)
    unknown = sorted(set(request.attributes) - set(config.static_columns))
    if unknown:
        return 400, {"error": f"Unknown attributes {unknown}; this model uses {config.static_columns}."}
    store = served.feature_store(ForecastStore)
    start = pd.Timestamp(request.start) if request.start else None
    future = pd.DataFrame([row.model_dump() for row in request.future]) if request.future else None
    if request.history is not None:
        if not request.history:
            return 400, {"error": "history: send at least one row, or leave it out to use the stored history."}
        history = pd.DataFrame([row.model_dump() for row in request.history])
        static = store.static(request.series_id) if store is not None else {}
        source = "request"
    elif store is not None and store.knows(request.series_id):
        history, static, source = store.history(request.series_id), store.static(request.series_id), "stored"
        if future is None and start is not None:
            future = history[pd.to_datetime(history["date"]) >= start]
    else:
        return 404, {"error": f"Series {request.series_id!r} is not in the stored data: send its history."}
    static = {column: request.attributes.get(column, static.get(column)) for column in config.static_columns}
    try:
        instance = request_from_rows(history, future, static, lookback=lookback, horizon=horizon, frequency=frequency, start=start)
    except ValueError as problem:
        return 400, {"error": str(problem)}
    if all(value is None for value in instance["history"]):
        return 400, {"error": f"No known quantity in the {lookback} periods before {instance['forecast_start'][:10]}: nothing to forecast from."}
    try:
        body = run_predict(served, {"instances": [{"series_id": request.series_id, **instance}]})
    except RequestError as problem:
        return 400, {"error": str(problem)}
    prediction = body["predictions"][0]
    names = sorted(prediction)
    dates = future_dates(pd.Timestamp(instance["forecast_start"]), horizon, frequency)
    points = [{"date": date.date().isoformat(), "quantiles": {name: float(prediction[name][step]) for name in names}} for step, date in enumerate(dates)]
    return 200, {"series_id": request.series_id, "model_version": served.version, "history_source": source, "forecast": points}


def router(manager: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    from solutions_core.serving.app import json_post_route, json_response
    from solutions_core.serving.openapi import query_parameters

    routes = APIRouter(tags=["demand_forecasting"])

    json_post_route(
        routes,
        "/forecast",
        forecast,
        manager,
        '{"series_id": "s000_p0001"}',
        summary="P10/P50/P90 per date for one series (stored, or with the history and plan you send)",
        response_model=ForecastResponse,
        responses={400: {"description": "Invalid request ({\"error\": ...})"}, 404: {"description": "No such model, version or series"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": ForecastRequest.model_json_schema()}}}},
    )

    # The query string goes through ForecastRequest like a POST body, so a bad version is the API's
    # 400 {"error": ...} (FastAPI's own parsing would answer 422 {"detail": ...}).
    @routes.get(
        "/forecast/{series_id}",
        summary="Forecast a stored series from its stored history",
        response_model=ForecastResponse,
        responses={400: {"description": "Invalid request ({\"error\": ...})"}, 404: {"description": "No such model, version or series"}},
        openapi_extra={"parameters": query_parameters(ForecastRequest, ["version"])},
    )
    async def forecast_get(series_id: str, request: Request) -> Any:
        payload: dict[str, Any] = {"series_id": series_id}
        if "version" in request.query_params:
            payload["version"] = request.query_params["version"]
        status, body = await run_in_threadpool(forecast, manager, payload)
        return json_response(body, status)

    return routes
