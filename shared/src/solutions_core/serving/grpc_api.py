"""TF Serving's gRPC API (port 8500) with its official protos: ``PredictionService`` (Predict,
GetModelMetadata, Classify, Regress) and ``ModelService.GetModelStatus``. A client built on
``tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub`` works unchanged.

It runs on the REST server's event loop (``grpc.aio``) and shares everything with it: the loaded
versions, the contract checks, the online features and the batchers, so a gRPC and a REST request that
arrive together run in one batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from solutions_core.serving.batching import QueueFull
from solutions_core.serving.models import ModelNotFound
from solutions_core.serving.predict import RequestError

logger = logging.getLogger("solutions_core.serving")


def spec_to_served(server: Any, model_spec: Any) -> Any:
    which = model_spec.WhichOneof("version_choice")
    version = str(model_spec.version.value) if which == "version" else None
    label = model_spec.version_label if which == "version_label" else None
    if model_spec.signature_name not in ("", "serving_default"):
        raise RequestError(f"Serving signature name: \"{model_spec.signature_name}\" not found in signature def")
    return server.resolve(model_spec.name, version, label)


def fill_spec(target: Any, served: Any) -> None:
    target.name = served.name
    target.version.value = served.version
    target.signature_name = "serving_default"


def tensor_values(proto: Any) -> list[Any]:
    """A TensorProto -> one value per row, as the JSON API would carry it (bytes become text)."""
    import tensorflow as tf

    array = tf.make_ndarray(proto)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.dtype.kind in "OS":
        array = np.vectorize(lambda v: v.decode(errors="replace") if isinstance(v, bytes) else v, otypes=[object])(array)
    return array.tolist()


def example_to_instance(example: Any) -> dict[str, Any]:
    """A tf.Example's features -> an instance (single values unwrapped, bytes as text)."""
    instance: dict[str, Any] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if kind == "bytes_list":
            values = [v.decode(errors="replace") for v in values]
        instance[name] = values[0] if len(values) == 1 else (values or None)
    return instance


def examples_of(request_input: Any) -> list[dict[str, Any]]:
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        return [example_to_instance(e) for e in request_input.example_list.examples]
    if which == "example_list_with_context":
        context = example_to_instance(request_input.example_list_with_context.context)
        return [{**context, **example_to_instance(e)} for e in request_input.example_list_with_context.examples]
    raise RequestError("The request's input needs an example_list or example_list_with_context.")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: Any):
        self.server = server

    async def _guard(self, context: Any, api: str, name: str, work: Any) -> Any:
        import time

        started = time.perf_counter()
        version: Any = ""
        code, status = grpc.StatusCode.OK, 200
        try:
            result, version = await work()
            return result
        except RequestError as problem:
            code, status, message = grpc.StatusCode.INVALID_ARGUMENT, 400, str(problem)
        except ModelNotFound as problem:
            code, status, message = grpc.StatusCode.NOT_FOUND, 404, str(problem)
        except QueueFull as problem:
            code, status, message = grpc.StatusCode.RESOURCE_EXHAUSTED, 503, f"Overloaded: {problem}"
        except (asyncio.TimeoutError, TimeoutError):
            code, status, message = grpc.StatusCode.DEADLINE_EXCEEDED, 504, "The request took too long."
        except Exception:
            logger.exception("Unexpected error in gRPC %s for %s", api, name)
            code, status, message = grpc.StatusCode.INTERNAL, 500, "Internal error while running the model (logged)."
        finally:
            self.server.metrics.observe(name, version, f"grpc_{api}", status, started)
        await context.abort(code, message)

    async def Predict(self, request: Any, context: Any) -> Any:
        import tensorflow as tf

        async def work() -> Any:
            served = spec_to_served(self.server, request.model_spec)
            try:
                inputs = {name: tensor_values(proto) for name, proto in request.inputs.items()}
            except (TypeError, ValueError) as problem:
                raise RequestError(f"Unreadable input tensor: {problem}") from None
            _, outputs = await self.server.outputs(served, {"inputs": inputs})
            wanted = set(request.output_filter) or set(outputs)
            unknown = wanted - set(outputs)
            if unknown:
                raise RequestError(f"output_filter names unknown outputs {sorted(unknown)}; the model has {sorted(outputs)}.")
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, served)
            for name in sorted(wanted):
                response.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[name])))
            return response, served.version

        return await self._guard(context, "predict", request.model_spec.name, work)

    async def _score_examples(self, request: Any, context: Any, verb: str, response_type: Any, add: Any) -> Any:
        """Classify and Regress: the request's tf.Examples as instances of :predict, one score each."""
        from solutions_core.serving.app import classify_output, regress_output

        find_output = classify_output if verb == "classify" else regress_output

        async def work() -> Any:
            served = spec_to_served(self.server, request.model_spec)
            output = find_output(served)
            if output is None:
                raise RequestError(f"{served.name} has no {verb} signature; use Predict.")
            _, outputs = await self.server.outputs(served, {"instances": examples_of(request.input)})
            response = response_type()
            fill_spec(response.model_spec, served)
            for value in outputs[output].astype(float).tolist():
                add(response.result, value)
            return response, served.version

        return await self._guard(context, verb, request.model_spec.name, work)

    async def Classify(self, request: Any, context: Any) -> Any:
        def add(result: Any, probability: float) -> None:
            classes = result.classifications.add()
            classes.classes.add(label="0", score=1.0 - probability)
            classes.classes.add(label="1", score=probability)

        return await self._score_examples(request, context, "classify", classification_pb2.ClassificationResponse, add)

    async def Regress(self, request: Any, context: Any) -> Any:
        def add(result: Any, value: float) -> None:
            result.regressions.add(value=value)

        return await self._score_examples(request, context, "regress", regression_pb2.RegressionResponse, add)

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2 as metadata_pb2

        from solutions_core.serving.app import metadata_payload

        async def work() -> Any:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise RequestError("metadata_field must be ['signature_def'] (the only metadata TF Serving has).")
            served = spec_to_served(self.server, request.model_spec)
            payload = metadata_payload(served)
            signatures = json_format.ParseDict(payload["metadata"]["signature_def"], metadata_pb2.SignatureDefMap())
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            fill_spec(response.model_spec, served)
            response.metadata["signature_def"].Pack(signatures)
            return response, served.version

        return await self._guard(context, "metadata", request.model_spec.name, work)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: Any):
        self.server = server

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        spec = request.model_spec
        try:
            states = self.server.manager.states(spec.name)
        except ModelNotFound as problem:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(problem))
        which = spec.WhichOneof("version_choice")
        if which == "version":
            states = [s for s in states if s.version == spec.version.value]
        elif which == "version_label":
            try:
                served = self.server.manager.get(spec.name, label=spec.version_label)
            except ModelNotFound as problem:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(problem))
            states = [s for s in states if s.version == served.version]
        if not states:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find version {spec.version.value} of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in states:
            status = response.model_version_status.add(
                version=state.version, state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            )
            status.status.error_code = 2 if state.error else 0  # tensorflow.error.Code UNKNOWN / OK
            status.status.error_message = state.error
        return response


async def start_grpc(server: Any, host: str, port: int) -> Any:
    """Start the gRPC API on ``host:port`` on the running event loop; returns the ``grpc.aio`` server."""
    grpc_server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", server.settings.max_body_bytes),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(server), grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(server), grpc_server)
    if grpc_server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"Could not bind gRPC to {host}:{port}.")
    await grpc_server.start()
    logger.info("gRPC (TF Serving's PredictionService and ModelService) on %s:%s", host, port)
    return grpc_server
