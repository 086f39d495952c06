"""A REST server that speaks TensorFlow Serving's API, so existing TF Serving clients work unchanged:

    GET  /v1/models/{name}                                  status of every version
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances": [...]} or {"inputs": {...}}
    POST ...:classify | :regress                            {"examples": [...], "context": {...}}
    GET  /monitoring/prometheus/metrics                     Prometheus metrics
    (and gRPC on port 8500: grpc_api.py)

On top of TF Serving it validates each request against the model's data contract (a 400 naming the
field instead of a tensor-shape error) and, for apps that need it, adds online features (e.g. card
history) before the model runs. Requests that arrive together run as one batch (batching.py). Which
versions serve, and what labels point at, is the model config (model_config.py). Errors are
``{"error": "..."}``: 4xx for the client's mistakes, a logged 500 for the server's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from starlette.concurrency import run_in_threadpool

from solutions_core.serving.batching import Batcher, BatchingOptions, QueueFull
from solutions_core.serving.metrics import CONTENT_TYPE, ServingMetrics
from solutions_core.serving.models import ModelManager, ModelNotFound, ServedModel
from solutions_core.serving.predict import Limits, RequestError, answer, predict_now, prepare, run_batch
from solutions_core.settings import Settings

run_predict = predict_now  # the apps' routes call a version synchronously, from a worker thread

logger = logging.getLogger("solutions_core.serving")


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code, media_type="application/json", headers=headers
    )


def error(status_code: int, message: str) -> Response:
    return json_response({"error": message}, status_code)


def invalid_request(route: str, problem: Any) -> str:
    """A pydantic ValidationError as one line that names every bad field (for a 400)."""
    details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in problem.errors())
    return f"Invalid {route} request: {details}"


def json_post_route(routes: APIRouter, path: str, handler: Any, manager: Any, example: str, **route_options: Any) -> Any:
    """Mount ``POST path`` on an app's router: the body must be a JSON object, which goes to
    ``handler(manager, payload) -> (status, body)`` in a worker thread (models run outside the event
    loop). Unparseable or non-object bodies are a 400 naming ``example``."""
    from starlette.concurrency import run_in_threadpool

    @routes.post(path, **route_options)
    async def post(request: Request) -> Response:
        raw = await request.body()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as problem:
            return error(400, f"Request body is not valid JSON: {problem}")
        if not isinstance(payload, dict):
            return error(400, f"Send a JSON object, e.g. {example}.")
        status, body = await run_in_threadpool(handler, manager, payload)
        return json_response(body, status)

    return post


def parse_target(target: str) -> tuple[str, str | None]:
    """'fraud_detection:predict' -> ('fraud_detection', 'predict'); 'fraud_detection' -> (name, None)."""
    if ":" in target:
        name, verb = target.rsplit(":", 1)
        return name, verb
    return target, None


def parse_version(text: str) -> int:
    # ASCII only: str.isdigit() also takes digits that int() refuses ('²', '𝟤'), which were a 500.
    if not (text.isascii() and text.isdigit()):
        raise RequestError(f"Version must be a positive integer, got {text!r}.")
    return int(text)


def status_payload(states: list[Any]) -> dict[str, Any]:
    """TF Serving's ``GetModelStatusResponse`` as JSON: every version the server knows of."""
    return {
        "model_version_status": [
            {
                "version": str(state.version),
                "state": state.state,
                "status": {"error_code": "UNKNOWN" if state.error else "OK", "error_message": state.error},
            }
            for state in states
        ]
    }


def dtype_name(dtype: Any) -> str:
    """TensorFlow's own enum name of a dtype (``DT_FLOAT``, ``DT_DOUBLE``, ``DT_STRING``, ...), as TF
    Serving's metadata names it: ``DT_`` + the Python name would say ``DT_FLOAT32``, which
    ``GetModelMetadataResponse`` cannot parse."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def metadata_payload(served: ServedModel) -> dict[str, Any]:
    def tensor_info(spec: Any) -> dict[str, Any]:
        return {
            "dtype": dtype_name(spec.dtype),
            "tensor_shape": {"dim": [{"size": str(d if d is not None else -1), "name": ""} for d in spec.shape], "unknown_rank": False},
            "name": spec.name or "",
        }

    outputs = {name: tensor_info(spec) for name, spec in served.signature.structured_outputs.items()}
    return {
        "model_spec": {"name": served.name, "signature_name": "", "version": str(served.version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {name: tensor_info(spec) for name, spec in served.input_specs.items()},
                        "outputs": outputs,
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            },
            "solution": {k: served.metadata.get(k) for k in ("app", "candidate", "gate_metric", "test_metrics", "contract", "calibration", "created_at")},
        },
    }


def create_app(settings: Settings | None = None, manager: ModelManager | None = None, poll_seconds: float = 0) -> FastAPI:
    """Build the app. Models load at startup (and on each poll when ``poll_seconds`` > 0); the gRPC
    API starts beside it on ``settings.grpc_port`` when that is not 0."""
    settings = settings or Settings()
    manager = manager or ModelManager(settings.resolved_models_dir(), settings.resolved_data_dir())
    metrics = ServingMetrics()
    server = ServerState(manager, settings, metrics)

    def loaded(served: ServedModel) -> None:
        server.batcher(served)  # before any request: the apps' routes submit from worker threads
        served.request_log = server.request_log
        metrics.version_loaded(served, served.load_seconds)
        metrics.set_in_service(manager.loaded())

    manager.on_load.append(loaded)
    metrics.watch_drift(settings.resolved_runs_dir(), manager.model_names)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.loop = asyncio.get_running_loop()
        if settings.request_log_rate > 0:
            from solutions_core.serving.request_log import RequestLog

            server.request_log = RequestLog(settings.resolved_data_dir(), settings.request_log_rate)
        await run_in_threadpool(manager.refresh)
        metrics.set_in_service(manager.loaded())
        if poll_seconds > 0:
            manager.start_polling(poll_seconds)
        grpc_server = None
        if settings.grpc_port:
            from solutions_core.serving.grpc_api import start_grpc

            grpc_server = await start_grpc(server, settings.host, settings.grpc_port)
        # TensorFlow leaves ~300k objects on the heap; freezing them keeps full GC pauses (140+ ms)
        # out of the request path (measured: p99 150 ms -> 7 ms). The manager freezes again after
        # every load.
        gc.collect()
        gc.freeze()
        yield
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        manager.stop()
        server.close()
        if server.request_log is not None:
            server.request_log.close()  # after the batchers: every answered request is in it

    app = FastAPI(
        title="Reference ML solutions — TF-Serving-compatible API",
        description=__doc__,
        version="1",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.server = server

    @app.exception_handler(StarletteHTTPException)
    async def one_error_format(request: Request, problem: StarletteHTTPException) -> Response:
        # Unknown routes and wrong methods answer in the API's one error format, {"error": ...}, as
        # every other refusal does (FastAPI's default says {"detail": ...}).
        return Response(
            orjson.dumps({"error": str(problem.detail)}), status_code=problem.status_code, media_type="application/json", headers=problem.headers
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, problem: Exception) -> Response:
        logger.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error(500, "Internal server error (logged).")

    app.include_router(tf_serving_router(server))
    app.include_router(operations_router(server))
    install_contract_schemas(app, manager)
    from solutions_core.registry import get_solution, list_solutions

    claimed: dict[tuple[str, str], str] = {}  # (method, path) -> the app that mounts it
    for entry in list_solutions():
        try:
            routers = get_solution(entry.name).serving.routers(manager)
        except Exception:
            logger.exception("Could not mount the routes of %s", entry.name)
            continue
        for router in routers:
            for route in router.routes:
                for method in getattr(route, "methods", None) or ():
                    other = claimed.setdefault((method, route.path), entry.name)
                    if other != entry.name:
                        # Starlette would quietly send the path to whichever app came first.
                        raise ValueError(
                            f"Apps {other} and {entry.name} both mount {method} {route.path}; give one of them another path "
                            f"(`solutions new` puts a copied app's routes under /<its name>/)."
                        )
            app.include_router(router)
    # The hot path (:predict and friends, the API key, the body limit) is plain ASGI in front of
    # FastAPI: its routing and validation cost ~3x the work of a one-row prediction.
    app.add_middleware(FastPath, server=server)
    return app


def install_contract_schemas(app: FastAPI, manager: ModelManager) -> None:
    """Publish each served model's request schema (derived from its data contract and signature) in the
    OpenAPI spec, as ``<model>Instance`` and ``<model>PredictRequest`` components, with a
    ``POST /v1/models/<model>:predict`` path of its own (serving/openapi.py)."""
    from fastapi.openapi.utils import get_openapi

    from solutions_core.serving.openapi import complete_spec

    def openapi() -> dict[str, Any]:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        return complete_spec(schema, manager.loaded())

    app.openapi = openapi  # type: ignore[method-assign]


class ServerState:
    """What every route of one server shares: the models, the settings, the metrics and the batchers."""

    def __init__(self, manager: ModelManager, settings: Settings, metrics: ServingMetrics):
        self.manager = manager
        self.settings = settings
        self.metrics = metrics
        self.limits = Limits(settings.max_instances, settings.max_string_length)
        self.batching = BatchingOptions(
            settings.max_batch_size, settings.batch_timeout_micros, settings.num_batch_threads, settings.max_enqueued_batches
        )
        self.batchers: list[Batcher] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the server starts
        self.request_log: Any = None  # serving.request_log.RequestLog, made when the server starts

    def batcher(self, served: ServedModel) -> Batcher:
        if served.batcher is None:
            served.batcher = Batcher(
                lambda batch: run_batch(served, batch), self.batching, name=f"{served.name}-{served.version}"
            )
            self.batchers.append(served.batcher)
            self.metrics.watch_batcher(served)
        served.batcher.loop = self.loop
        return served.batcher

    def resolve(self, name: str, version_text: str | None, label: str | None) -> ServedModel:
        version = parse_version(version_text) if version_text is not None else None
        return self.manager.get(name, version, label)

    async def outputs(self, served: ServedModel, body: Any) -> tuple[Any, dict[str, np.ndarray]]:
        """A ``:predict`` body -> (the prepared request, its output arrays): prepared on the event loop
        (in a thread for big requests), run in the version's batcher."""
        instances = body.get("instances") if isinstance(body, dict) else None
        if isinstance(instances, list) and len(instances) <= INLINE_INSTANCES:
            prepared = prepare(served, body, self.limits)
        else:
            prepared = await run_in_threadpool(prepare, served, body, self.limits)
        outputs = await self.batcher(served).submit(prepared, prepared.count, self.settings.request_timeout_seconds)
        return prepared, outputs

    async def predict(self, served: ServedModel, body: Any, verb: str = "predict") -> dict[str, Any]:
        instances_body, output = request_for_verb(verb, body, served)
        prepared, outputs = await self.outputs(served, instances_body)
        return answer_for_verb(verb, prepared, outputs, output)

    def close(self) -> None:
        for batcher in self.batchers:
            batcher.close()


INLINE_INSTANCES = 32  # requests up to this many instances are prepared on the event loop itself


def request_for_verb(verb: str, body: Any, served: ServedModel) -> tuple[Any, str | None]:
    """(the ``:predict`` body, the output the verb answers with). ``:classify`` and ``:regress`` take TF
    Serving's ``{"context": {...}, "examples": [...]}``: each example (with the shared context) is an
    instance of ``:predict``."""
    if verb == "predict":
        return body, None
    if verb not in ("classify", "regress"):
        raise ModelNotFound(f"Unknown verb {verb!r}; use :predict, :classify or :regress.")
    output = classify_output(served) if verb == "classify" else regress_output(served)
    if output is None:
        kind = "a probability output (<name>_probability)" if verb == "classify" else "a single numeric output"
        raise RequestError(f"{served.name} has no {verb} signature: {verb} needs {kind}; use :predict.")
    if not isinstance(body, dict) or not isinstance(body.get("examples"), list) or not body["examples"]:
        raise RequestError(f"A {verb} request is {{\"examples\": [{{...}}, ...], \"context\": {{...}}}} with a non-empty list.")
    context = body.get("context") or {}
    if not isinstance(context, dict) or not all(isinstance(e, dict) for e in body["examples"]):
        raise RequestError("'context' and every example must be JSON objects of feature values.")
    return {"instances": [{**context, **example} for example in body["examples"]]}, output


def classify_output(served: ServedModel) -> str | None:
    """A binary classifier's probability output, by the suite's naming rule (``probability`` or
    ``<name>_probability``)."""
    names = [
        n for n, spec in served.signature.structured_outputs.items()
        if (n == "probability" or n.endswith("_probability")) and spec.dtype.is_floating
    ]
    return names[0] if len(names) == 1 else None


def regress_output(served: ServedModel) -> str | None:
    outputs = served.signature.structured_outputs
    if len(outputs) == 1:
        name, spec = next(iter(outputs.items()))
        if spec.dtype.is_floating and spec.shape.rank == 1:
            return name
    return None


def answer_for_verb(verb: str, prepared: Any, outputs: dict[str, np.ndarray], output: str | None) -> dict[str, Any]:
    if verb == "classify":
        probability = outputs[output].astype(float).tolist()
        return {"result": [[["0", 1.0 - p], ["1", p]] for p in probability]}
    if verb == "regress":
        return {"result": outputs[output].astype(float).tolist()}
    return answer(prepared, outputs)


PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/([^/:]+)|/labels/([^/:]+))?:([A-Za-z]+)$")
OPEN_PATHS = ("/healthz",)


class FastPath:
    """Plain ASGI in front of FastAPI: the API key and the body limit for every route, and the
    prediction verbs answered without FastAPI's routing (the same handler FastAPI's documented routes
    call)."""

    def __init__(self, app: Any, server: ServerState):
        self.app = app
        self.server = server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = self.server.settings
        if settings.api_key and scope["path"] not in OPEN_PATHS and not authorized(scope, settings.api_key):
            self.server.metrics.rejected.labels("unauthorized").inc()
            return await send_json(send, 401, {"error": "Missing or wrong API key: send 'Authorization: Bearer <key>'."},
                                   [(b"www-authenticate", b"Bearer")])
        match = PREDICT_PATH.match(scope["path"]) if scope["method"] == "POST" else None
        if match is None:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await bounded_receive(scope, receive, send, self.server)
                if receive is None:
                    return
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        name, version_text, label, verb = match.groups()
        body = await read_body(scope, receive, settings.max_body_bytes)
        if isinstance(body, int):
            self.server.metrics.rejected.labels("body_too_large" if body == 413 else "slow_body").inc()
            message = f"Request body larger than {settings.max_body_bytes} bytes." if body == 413 else "Request body never completed."
            return await send_json(send, body, {"error": message})
        status, payload, headers, version = await handle_predict(self.server, name, version_text, label, verb, body)
        self.server.metrics.observe(name, version, verb, status, started)
        await send_json(send, status, payload, headers)


def authorized(scope: dict, key: str) -> bool:
    import hmac

    for header, value in scope["headers"]:
        if header == b"authorization" and value.startswith(b"Bearer "):
            return hmac.compare_digest(value[7:].decode("latin-1"), key)
        if header == b"x-api-key":
            return hmac.compare_digest(value.decode("latin-1"), key)
    return False


def content_length(scope: dict) -> int | None:
    for header, value in scope["headers"]:
        if header == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(scope: dict, receive: Any, limit: int) -> bytes | int:
    """The whole body, or 413 when it is (or announces itself) larger than ``limit``: refused before
    it is read, so a hostile body costs neither time nor memory."""
    announced = content_length(scope)
    if announced is not None and announced > limit:
        return 413
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 408
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return 413
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def bounded_receive(scope: dict, receive: Any, send: Any, server: ServerState) -> Any:
    """For the other routes (FastAPI's): the body read once under the limit and replayed."""
    limit = server.settings.max_body_bytes
    body = await read_body(scope, receive, limit)
    if isinstance(body, int):
        server.metrics.rejected.labels("body_too_large").inc()
        await send_json(send, body, {"error": f"Request body larger than {limit} bytes."})
        return None
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def send_json(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": content})


def parse_json(raw: bytes) -> Any:
    """JSON as TF Serving reads it: ``NaN``, ``Infinity`` and ``-Infinity`` are numbers there."""
    if not raw:
        raise RequestError("Empty request body; send a JSON object with 'instances' or 'inputs'.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as problem:
        if b"NaN" in raw or b"Infinity" in raw:
            import json

            try:
                return json.loads(raw)  # the standard library reads TF Serving's non-finite tokens
            except ValueError:
                pass
        raise RequestError(f"Request body is not valid JSON: {problem}") from problem


async def handle_predict(
    server: ServerState, name: str, version_text: str | None, label: str | None, verb: str, raw: bytes
) -> tuple[int, Any, list[tuple[bytes, bytes]], Any]:
    """(status, JSON body, extra headers, version answered) for a prediction verb."""
    version: Any = ""
    try:
        body = parse_json(raw)
        served = server.resolve(name, version_text, label)
        if version_text is None and label is None and (split := server.manager.traffic_split(name)) is not None:
            served = server.manager.route(name, entity_key(body, split.key))
        version = served.version
        return 200, await server.predict(served, body, verb), [], version
    except RequestError as problem:
        return 400, {"error": str(problem)}, [], version
    except ModelNotFound as problem:
        return 404, {"error": str(problem)}, [], version
    except QueueFull as problem:
        server.metrics.rejected.labels("queue_full").inc()
        return 503, {"error": f"Overloaded: {problem}"}, [(b"retry-after", b"1")], version
    except (asyncio.TimeoutError, TimeoutError):
        server.metrics.rejected.labels("timeout").inc()
        return 504, {"error": f"The request took longer than {server.settings.request_timeout_seconds} s."}, [], version
    except Exception:
        logger.exception("Unexpected error while serving %s", name)
        return 500, {"error": "Internal error while running the model (logged)."}, [], version


def entity_key(body: Any, key: str | None) -> Any:
    """The sticky key of a split request: the first instance's ``key`` field (the whole body's JSON
    when no key is configured, which still keeps one client's identical requests together)."""
    if isinstance(body, dict) and key:
        instances = body.get("instances") or body.get("examples")
        if isinstance(instances, list) and instances and isinstance(instances[0], dict):
            return instances[0].get(key)
        inputs = body.get("inputs")
        if isinstance(inputs, dict) and isinstance(inputs.get(key), list) and inputs[key]:
            return inputs[key][0]
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if isinstance(body, dict) else body


def tf_serving_router(server: ServerState) -> APIRouter:
    """TF Serving's REST routes as FastAPI documents them. The prediction verbs are answered by
    ``FastPath`` before FastAPI routes them; these definitions call the same handler, for the OpenAPI
    spec and for any mount without the middleware."""
    router = APIRouter()
    manager = server.manager

    def status_or_metadata(name: str, version_text: str | None, label: str | None, verb: str | None, request: Request) -> Response:
        try:
            if verb == "metadata":
                return json_response(metadata_payload(server.resolve(name, version_text, label)))
            if verb is not None:
                return error(404, f"Unknown path: {request.url.path}")
            if version_text is None and label is None:
                return json_response(status_payload(manager.states(name)))
            served = server.resolve(name, version_text, label)
            return json_response(status_payload([s for s in manager.states(name) if s.version == served.version]))
        except RequestError as problem:
            return error(400, str(problem))
        except ModelNotFound as problem:
            return error(404, str(problem))

    async def post(name: str, version_text: str | None, label: str | None, verb: str | None, request: Request) -> Response:
        if verb is None:
            return error(404, f"Unknown path: {request.url.path}; use :predict, :classify or :regress.")
        status, payload, headers, _ = await handle_predict(server, name, version_text, label, verb, await request.body())
        return json_response(payload, status, {k.decode(): v.decode() for k, v in headers})

    @router.get("/v1/models/{target}", tags=["tf-serving"], summary="Status of every version of a model")
    async def model_status(target: str, request: Request) -> Response:
        name, verb = parse_target(target)
        return status_or_metadata(name, None, None, verb, request)

    @router.get("/v1/models/{name}/metadata", tags=["tf-serving"], summary="Signature metadata")
    async def model_metadata(name: str, request: Request) -> Response:
        return status_or_metadata(name, None, None, "metadata", request)

    @router.get("/v1/models/{name}/versions/{target}", tags=["tf-serving"], summary="Version status")
    async def version_status(name: str, target: str, request: Request) -> Response:
        version, verb = parse_target(target)
        return status_or_metadata(name, version, None, verb, request)

    @router.get("/v1/models/{name}/versions/{version}/metadata", tags=["tf-serving"], summary="Version metadata")
    async def version_metadata(name: str, version: str, request: Request) -> Response:
        return status_or_metadata(name, version, None, "metadata", request)

    @router.get("/v1/models/{name}/labels/{target}", tags=["tf-serving"], summary="Status of a labelled version")
    async def label_status(name: str, target: str, request: Request) -> Response:
        label, verb = parse_target(target)
        return status_or_metadata(name, None, label, verb, request)

    @router.get("/v1/models/{name}/labels/{label}/metadata", tags=["tf-serving"], summary="Labelled version metadata")
    async def label_metadata(name: str, label: str, request: Request) -> Response:
        return status_or_metadata(name, None, label, "metadata", request)

    @router.post("/v1/models/{target}", tags=["tf-serving"], summary="Predict: POST /v1/models/{name}:predict (or :classify, :regress)")
    async def model_predict(target: str, request: Request) -> Response:
        name, verb = parse_target(target)
        return await post(name, None, None, verb, request)

    @router.post("/v1/models/{name}/versions/{target}", tags=["tf-serving"], summary="Predict with a version")
    async def version_predict(name: str, target: str, request: Request) -> Response:
        version, verb = parse_target(target)
        return await post(name, version, None, verb, request)

    @router.post("/v1/models/{name}/labels/{target}", tags=["tf-serving"], summary="Predict with a labelled version")
    async def label_predict(name: str, target: str, request: Request) -> Response:
        label, verb = parse_target(target)
        return await post(name, None, label, verb, request)

    return router


def operations_router(server: ServerState) -> APIRouter:
    router = APIRouter(tags=["ops"])
    manager = server.manager

    @router.get("/healthz", summary="Liveness and the version each model serves")
    async def health() -> Response:
        return json_response({"status": "ok", "models": {n: m.version for n, m in manager.loaded().items()}})

    async def prometheus() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)

    router.add_api_route("/monitoring/prometheus/metrics", prometheus, methods=["GET"], summary="Prometheus metrics (TF Serving's path)")
    router.add_api_route("/metrics", prometheus, methods=["GET"], summary="Prometheus metrics")
    return router


def serve(settings: Settings | None = None, poll_seconds: float = 2.0, log_level: str = "info") -> None:
    """Run the server. With ``settings.workers`` > 1 uvicorn forks that many processes on one port
    (each loads every model and runs its own batchers); the app is then built in each worker from the
    environment, so the settings travel as ``SOLUTIONS_*`` variables."""
    import uvicorn

    settings = settings or Settings()
    if settings.workers > 1:
        import os

        for name, value in settings.model_dump(mode="json").items():
            if value is not None:
                os.environ[f"SOLUTIONS_{name.upper()}"] = value if isinstance(value, str) else orjson.dumps(value).decode()
        os.environ["SOLUTIONS_POLL_SECONDS"] = str(poll_seconds)
        if settings.grpc_port:
            logger.warning("gRPC serves from one process only; with --workers it is off (use replicas).")
            os.environ["SOLUTIONS_GRPC_PORT"] = "0"
        uvicorn.run(
            "solutions_core.serving.app:app_from_environment", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, log_level=log_level, access_log=settings.access_log,
        )
        return
    uvicorn.run(
        create_app(settings, poll_seconds=poll_seconds), host=settings.host, port=settings.port, log_level=log_level,
        access_log=settings.access_log,
    )


def app_from_environment() -> FastAPI:
    """The app of one worker process (``serve`` with several workers)."""
    import os

    return create_app(Settings(), poll_seconds=float(os.environ.get("SOLUTIONS_POLL_SECONDS", "2")))
