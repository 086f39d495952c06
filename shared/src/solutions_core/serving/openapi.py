"""The server's OpenAPI document: FastAPI's, completed with what FastAPI cannot see.

FastAPI documents the routes as declared, and TF Serving's routes take any model name and a raw JSON
body, so on their own they say nothing about what a model accepts. Here each served model gets

- ``<model>Instance``: one row of a request, from the model's data contract and its signature's inputs
  (the same fields the server validates against, so the spec and the checks cannot drift);
- ``<model>PredictRequest``: TF Serving's row (``instances``) or columnar (``inputs``) body of them;
- its own ``POST /v1/models/<model>:predict`` (and ``.../versions/{version}:predict``) path with that
  body, tagged with the model's name, so clients and fuzzers generate bodies the model can take.

It also moves JSON-schema ``$defs`` that apps' routes embed in their request bodies (pydantic's
``model_json_schema()``) into ``components/schemas``: a ``#/$defs/...`` reference only resolves from the
root of a standalone schema, never from inside an OpenAPI document.
"""

from __future__ import annotations

import copy
from typing import Any

SCHEMAS = "#/components/schemas/"
ERROR = {
    "type": "object",
    "description": "Every refusal: a 4xx for the client's mistakes, a 5xx for the server's.",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
# TF Serving's JSON for binary strings (an image, for instance).
BASE64 = {
    "type": "object",
    "properties": {"b64": {"type": "string", "contentEncoding": "base64"}},
    "required": ["b64"],
    "additionalProperties": False,
}


def complete_spec(spec: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's ``spec`` plus the request schemas and predict paths of the served ``models`` (name ->
    ServedModel); modified in place and returned."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    hoist_definitions(spec, components)
    components["Error"] = ERROR
    paths = spec.setdefault("paths", {})
    requests = []
    for name, served in sorted(models.items()):
        components[f"{name}Instance"] = instance_schema(served)
        components[f"{name}PredictRequest"] = predict_request_schema(name, served)
        paths.update(predict_paths(name, warmup_example(served)))
        requests.append({"$ref": f"{SCHEMAS}{name}PredictRequest"})
    if requests:
        document_generic_predict_bodies(paths, requests)
    return spec


def instance_schema(served: Any) -> dict[str, Any]:
    """One request row: the contract's request fields with their rules (when the version ships a
    contract), and every other input of the signature typed from its tensor spec. Fields that the
    server fills in (online features, app defaults) stay optional."""
    inputs = {name: input_schema(spec) for name, spec in served.input_specs.items()}
    if served.contract is None:
        nullable = served.nullable
        return {
            "type": "object",
            "description": f"One instance of {served.name} (its signature's inputs).",
            "properties": inputs,
            "required": sorted(name for name in inputs if name not in nullable),
            "additionalProperties": False,
        }
    # The same extra fields as the server's validation (predict.prepare): the signature's inputs are
    # always accepted, whether or not the contract names them.
    schema = served.contract.request_json_schema(
        extra_fields=served.extra_fields | set(served.input_specs), allow_missing=served.allow_missing
    )
    contract_fields = {column.name for column in served.contract.request_columns()}
    properties = schema.setdefault("properties", {})
    for name, typed in inputs.items():
        if name not in contract_fields:
            properties[name] = typed
    return schema


def input_schema(spec: Any) -> dict[str, Any]:
    """JSON schema of one instance's value for a tensor spec ``[batch, *dims]``: nested arrays of the
    dims' sizes around the dtype's JSON type. Numbers may be null inside arrays (unknown; the models
    read NaN), strings may be TF Serving's ``{"b64": ...}``."""
    dtype = spec.dtype
    if dtype.name == "string":
        value: dict[str, Any] = {"anyOf": [{"type": "string"}, BASE64]}
    elif dtype.is_bool:
        value = {"type": "boolean"}
    elif dtype.is_integer:
        value = {"type": "integer", "minimum": int(dtype.min), "maximum": int(dtype.max)}
    elif dtype.name == "float64" and not spec.shape.as_list()[1:]:
        # float64 scalars carry times (epoch seconds need its precision); the server converts ISO-8601
        # strings to epoch seconds (export.to_tensor_value), which is how the warm-up requests send them.
        from solutions_core.contracts import TIMESTAMP_STRING_SCHEMA

        value = {"anyOf": [{"type": "number"}, TIMESTAMP_STRING_SCHEMA]}
    else:
        value = {"type": "number"}
    dims = spec.shape.as_list()[1:] if spec.shape.rank is not None else []
    for size in reversed(dims):
        item = {"anyOf": [value, {"type": "null"}]} if "type" in value and value["type"] == "number" else value
        value = {"type": "array", "items": item, **({"minItems": size, "maxItems": size} if size else {})}
    shape = "x".join("?" if size is None else str(size) for size in dims) or "one value"
    return {**value, "description": f"Model input ({dtype.name}, {shape} per instance)."}


def predict_request_schema(name: str, served: Any) -> dict[str, Any]:
    """TF Serving's predict body for one model: ``instances`` (rows) or ``inputs`` (columns)."""
    instance = {"$ref": f"{SCHEMAS}{name}Instance"}
    fields = instance_fields(served)
    rows: dict[str, Any] = instance
    columns: dict[str, Any] = {
        "type": "object",
        "description": "Columnar form: each field maps to one value per instance (all lists of the same length).",
        "properties": {field: {"type": "array", "minItems": 1, "items": schema} for field, schema in fields.items()},
        "additionalProperties": False,
        "minProperties": 1,
    }
    if len(served.input_specs) == 1:  # TF Serving's shorthand: bare values for a single-input model
        ((only, spec),) = served.input_specs.items()
        value = input_schema(spec)
        # A bare {"b64": ...} row reads as an instance object here (predict.instances_from_body), so
        # rows offer the other forms only.
        bare = {**value, "anyOf": [branch for branch in value["anyOf"] if branch is not BASE64]} if "anyOf" in value else value
        rows = {"anyOf": [instance, bare]}
        columns = {"anyOf": [columns, {"type": "array", "minItems": 1, "items": value}]}
    contract = f" (contract {served.contract.name} v{served.contract.version})" if served.contract is not None else ""
    return {
        "type": "object",
        "description": f"POST /v1/models/{name}:predict{contract}: 'instances' or 'inputs', not both.",
        "properties": {
            "signature_name": {"type": "string", "enum": ["serving_default", ""], "default": "serving_default"},
            "instances": {"type": "array", "minItems": 1, "items": rows},
            "inputs": columns,
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    }


def instance_fields(served: Any) -> dict[str, Any]:
    """Field name -> schema of one value, as in ``<model>Instance`` (for the columnar form)."""
    schema = instance_schema(served)
    return dict(schema.get("properties", {}))


def warmup_example(served: Any, instances: int = 2) -> dict[str, Any] | None:
    """A real request for the docs: the first instances of the version's own warm-up request (golden
    instances from its training run, which the server sends before serving it)."""
    import json

    from solutions_core.serving.models import WARMUP_FILE

    try:
        body = json.loads((served.path / "assets.extra" / WARMUP_FILE).read_text())
    except (OSError, ValueError):
        return None
    rows = body.get("instances") if isinstance(body, dict) else None
    return {"instances": rows[:instances]} if isinstance(rows, list) and rows else None


def predict_paths(name: str, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """``POST /v1/models/<name>:predict`` and its versioned twin. The server routes them through TF
    Serving's generic routes; listing them per model gives each its own body schema."""
    content: dict[str, Any] = {"schema": {"$ref": f"{SCHEMAS}{name}PredictRequest"}}
    if example is not None:
        content["examples"] = {"warmup": {"summary": "The version's own warm-up request", "value": example}}
    operation = {
        "tags": [name],
        "requestBody": {"required": True, "content": {"application/json": content}},
        "responses": {
            "200": {
                "description": "'predictions' (one per instance) for 'instances', 'outputs' (one list per output) for 'inputs'",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"predictions": {"type": "array"}, "outputs": {"type": "object"}},
                }}},
            },
            **{status: {"description": description, "content": {"application/json": {"schema": {"$ref": f"{SCHEMAS}Error"}}}}
               for status, description in (("400", "Invalid request"), ("404", "No such model or version"))},
        },
    }
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    return {
        f"/v1/models/{name}:predict": {
            "post": {**operation, "operationId": f"predict_{name}", "summary": f"Predict with the latest {name}"}
        },
        f"/v1/models/{name}/versions/{{version}}:predict": {
            "post": {
                **operation,
                "operationId": f"predict_{name}_version",
                "summary": f"Predict with one version of {name}",
                "parameters": [version],
            }
        },
    }


def document_generic_predict_bodies(paths: dict[str, Any], requests: list[dict[str, Any]]) -> None:
    """TF Serving's generic POST routes (any model name) take any served model's predict body."""
    body = {"required": True, "content": {"application/json": {"schema": {"anyOf": requests}}}}
    for path, operations in paths.items():
        post = operations.get("post")
        if path.startswith("/v1/models/{") and post is not None and "requestBody" not in post:
            post["requestBody"] = copy.deepcopy(body)


def hoist_definitions(spec: dict[str, Any], components: dict[str, Any]) -> None:
    """Move every ``$defs`` under ``paths`` into ``components`` and point its references there. A
    name that components already hold with another schema gets a numbered one."""

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        definitions = node.pop("$defs", None)
        if definitions:
            # Compared with what components hold as they will read once hoisted (references rewritten).
            hoisted = copy.deepcopy(definitions)
            rewrite_references(list(hoisted.values()), {name: name for name in definitions})
            renamed = {name: component_name(name, hoisted[name]) for name in definitions}
            for name, definition in definitions.items():
                visit(definition)
                components[renamed[name]] = definition
            rewrite_references([node, *definitions.values()], renamed)
        for value in node.values():
            visit(value)

    def component_name(name: str, definition: Any) -> str:
        candidate, number = name, 1
        while candidate in components and components[candidate] != definition:
            number += 1
            candidate = f"{name}{number}"
        return candidate

    visit(spec.get("paths", {}))


def rewrite_references(nodes: list[Any], renamed: dict[str, str]) -> None:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/") and reference[8:] in renamed:
                node["$ref"] = SCHEMAS + renamed[reference[8:]]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def query_parameters(model: Any, names: list[str]) -> list[dict[str, Any]]:
    """OpenAPI query parameters for some fields of a pydantic request model, with the model's own
    field schemas. For GET routes that validate their query string with that same model (so a bad
    value is the API's 400 ``{"error": ...}``, not FastAPI's 422 ``{"detail": ...}``), and whose
    documentation cannot drift from it. A query string cannot say null: nullable fields are simply
    optional."""
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    required = set(schema.get("required", []))
    parameters = []
    for name in names:
        field = dict(schema["properties"][name])
        field.pop("title", None)
        branches = [branch for branch in field.get("anyOf", []) if branch != {"type": "null"}]
        if "anyOf" in field and len(branches) == 1:
            field = {**{k: v for k, v in field.items() if k != "anyOf"}, **branches[0]}
        if field.get("default", "") is None:
            del field["default"]
        description = field.pop("description", None)
        parameters.append(
            {"name": name, "in": "query", "required": name in required, "schema": field, **({"description": description} if description else {})}
        )
    return parameters
