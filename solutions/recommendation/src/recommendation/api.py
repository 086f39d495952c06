"""``/recommend``: a friendly route beside TF Serving's ``:predict`` on the same exported model.

It takes a user (id and/or features), ``k`` and whether to drop items the user has already seen, fills
the rest from the online store, calls the served signature through the same path as ``:predict``
(contract check included) and returns items with their catalog fields. Errors are ``{"error": ...}``
with a 4xx status, as everywhere in the API.

Imported only when the server mounts the app's routes (FastAPI resolves the handlers' annotations
from this module's globals, hence the top-level fastapi import).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

APP = "recommendation"


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(default="", max_length=256, description="The user; an unknown or empty id is a new user (cold start).")
    k: int = Field(default=10, ge=1, description="How many items to return (at most the model's top_k).")
    exclude_seen: bool = Field(default=True, description="Leave out items the user has already interacted with.")
    history: list[str] | None = Field(
        default=None, description="Recent item ids, oldest first. Default: the user's stored history (none for new users)."
    )
    exclude: list[str] = Field(default_factory=list, description="More item ids never to return (e.g. out of stock).")
    features: dict[str, str] = Field(
        default_factory=dict, description="User features by name (e.g. region); default: the stored ones. Used for new users."
    )
    version: int | None = Field(default=None, ge=1, description="Model version; default: the latest.")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    rank: int
    details: dict[str, Any] = Field(default_factory=dict, description="The item's catalog fields (e.g. title).")


class RecommendResponse(BaseModel):
    user_id: str
    model_version: int
    strategy: Literal["personalized", "features", "popular"] = Field(
        description="personalized: a known user or a history; features: only the user's features are known; popular: "
        "nothing is known, so the most popular items (cold-start fallback)."
    )
    items: list[RecommendedItem]


def recommend(manager: Any, payload: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for a /recommend request body."""
    from recommendation.online import OnlineStore
    from solutions_core.serving.app import RequestError, invalid_request, run_predict
    from solutions_core.serving.models import ModelNotFound

    try:
        request = RecommendRequest.model_validate(payload)
    except ValidationError as problem:
        return 400, {"error": invalid_request("/recommend", problem)}
    try:
        served = manager.get(APP, request.version)
    except ModelNotFound as problem:
        return 404, {"error": str(problem)}
    config = (served.metadata.get("config") or {})
    top_k = int(config.get("top_k", 100))
    if request.k > top_k:
        return 400, {"error": f"k={request.k} is more than this model returns (top_k={top_k}); retrain with a larger top_k."}
    user_features = list((config.get("columns") or {}).get("user_categorical", []))
    unknown = sorted(set(request.features) - set(user_features))
    if unknown:
        return 400, {"error": f"Unknown user features {unknown}; this model uses {user_features}."}
    store = served.feature_store(OnlineStore)
    seen = store.seen(request.user_id) if store is not None and request.exclude_seen else []
    instance: dict[str, Any] = {"user_id": request.user_id, "exclude": " ".join([*seen, *request.exclude])}
    if request.history is not None:
        if any(not item or any(c.isspace() for c in item) for item in request.history):
            return 400, {"error": "history: item ids must be non-empty and contain no whitespace."}
        instance["history"] = " ".join(request.history)
    if store is None and "history" not in instance:
        instance["history"] = ""
    for name in user_features:
        if name in request.features:
            instance[name] = request.features[name]
        elif store is None:
            instance[name] = ""
    try:
        body = run_predict(served, {"instances": [instance]})
    except RequestError as problem:
        return 400, {"error": str(problem)}
    prediction = body["predictions"][0]
    pairs = [(item, score) for item, score in zip(prediction["item_ids"], prediction["scores"]) if item][: request.k]
    details = store.details([item for item, _ in pairs]) if store is not None else [{} for _ in pairs]
    items = [
        {"item_id": item, "score": float(score), "rank": rank + 1, "details": detail}
        for rank, ((item, score), detail) in enumerate(zip(pairs, details))
    ]
    return 200, {"user_id": request.user_id, "model_version": served.version, "strategy": prediction["strategy"], "items": items}


def router(manager: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    from solutions_core.serving.app import json_post_route, json_response
    from solutions_core.serving.openapi import query_parameters

    routes = APIRouter(tags=["recommendation"])

    json_post_route(
        routes,
        "/recommend",
        recommend,
        manager,
        '{"user_id": "u42", "k": 10}',
        summary="Top-k items for a user (known, new, or described by features)",
        response_model=RecommendResponse,
        responses={400: {"description": "Invalid request ({\"error\": ...})"}, 404: {"description": "No such model or version"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": RecommendRequest.model_json_schema()}}}},
    )

    # The query string goes through RecommendRequest like a POST body, so a bad value is the API's
    # 400 {"error": ...} naming the field (FastAPI's own parsing would answer 422 {"detail": ...}).
    query = ["user_id", "k", "exclude_seen"]

    @routes.get(
        "/recommend",
        summary="Top-k items for a user id (query-string form)",
        response_model=RecommendResponse,
        responses={400: {"description": "Invalid request ({\"error\": ...})"}, 404: {"description": "No such model or version"}},
        openapi_extra={"parameters": query_parameters(RecommendRequest, query)},
    )
    async def recommend_get(request: Request) -> Any:
        payload = {name: request.query_params[name] for name in query if name in request.query_params}
        status, body = await run_in_threadpool(recommend, manager, payload)
        return json_response(body, status)

    return routes
