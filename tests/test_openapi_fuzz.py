"""The server's OpenAPI spec, and a fuzz test generated from it with schemathesis over real HTTP.

Per app, the operations the spec tags with the app's name (its own ``POST /v1/models/<app>:predict``
paths with the model's request schema, and routes such as /forecast) are sent the spec's examples,
then requests that follow the schema (schemathesis' positive mode) and requests that break it
(negative mode): at least CASES_PER_APP in all. Every answer must be below 500 and every refusal the
API's ``{"error": "..."}``; the server must answer /healthz afterwards. TF Serving's generic routes
(any model name) and the operations routes get a run of their own.

The fuzzed server is a process of its own over a copy of the trained home: answered predictions are
recorded in the apps' online feature stores (card history), which the shared server of the other
tests must not see.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import REPO, registered_apps
from solutions_core.demo import http_json

APPS = registered_apps()
CASES_PER_APP = 1000
SHARED_CASES = 400
SHARED_TAGS = ("tf-serving", "ops")
# Hypothesis stops early when it runs out of distinct cases; the headroom keeps the totals above
# the targets without a second pass.
HEADROOM = 1.1


def references(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                found.append(item["$ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def resolves(spec: dict[str, Any], reference: str) -> bool:
    if not reference.startswith("#/"):
        return False
    node: Any = spec
    for part in reference[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.fixture(scope="module")
def spec(server) -> dict[str, Any]:
    status, body = http_json("GET", f"{server.url}/openapi.json")
    assert status == 200, body
    return body


def test_every_reference_in_the_spec_resolves(spec):
    unresolved = sorted({reference for reference in references(spec) if not resolves(spec, reference)})
    assert unresolved == []
    assert references(spec), "the spec shares its schemas through references"


def test_every_component_is_a_valid_json_schema(spec):
    from jsonschema import Draft202012Validator

    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)  # raises, naming the keyword, when one is not


@pytest.mark.parametrize("app", APPS)
def test_each_model_documents_its_predict_body_with_a_real_example(app, spec, trained):
    """``POST /v1/models/<app>:predict`` has the model's request schema as its body, and the example
    it shows (the version's warm-up request) is valid under that schema."""
    from jsonschema import Draft202012Validator

    content = spec["paths"][f"/v1/models/{app}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": f"#/components/schemas/{app}PredictRequest"}
    example = content["examples"]["warmup"]["value"]
    assert example["instances"] and example["instances"][0] == trained[app].golden_instances[0]
    # Validated from the spec's root, so the component's own references resolve as clients see them.
    validator = Draft202012Validator(
        {**spec, "$ref": f"#/components/schemas/{app}PredictRequest"}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert [error.message for error in validator.iter_errors(example)] == []
    # ...and a body the server refuses breaks the schema too.
    assert list(validator.iter_errors({"instances": [], "inputs": {}}))


@dataclass
class Tally:
    """What the fuzzer sent and what came back, per operation and phase."""

    url: str
    answers: dict[tuple[str, str], Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unbreakable: list[str] = field(default_factory=list)  # operations whose schema admits any input

    @property
    def total(self) -> int:
        return sum(sum(statuses.values()) for statuses in self.answers.values())

    def record(self, case: Any, response: Any, phase: str) -> None:
        self.answers.setdefault((case.operation.label, phase), Counter())[response.status_code] += 1
        problem = answer_problem(response)
        if problem is not None:
            self.failures.append(f"{problem}\n    {case.as_curl_command()}")

    def summary(self) -> str:
        lines = [f"  {label} [{phase}]: {dict(sorted(statuses.items()))}" for (label, phase), statuses in sorted(self.answers.items())]
        if self.unbreakable:
            lines.append(f"  no negative cases (any input is valid): {', '.join(self.unbreakable)}")
        return "\n".join(lines)


def answer_problem(response: Any) -> str | None:
    """Why an answer breaks the API's rules (None when it keeps them)."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500:
        return f"{response.status_code} (server error): {response.text[:300]}"
    if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
        return f"{response.status_code} without the API's {{\"error\": ...}} body: {response.text[:300]}"
    return None


def takes_input(operation: Any) -> bool:
    return any(True for _ in operation.iter_parameters()) or len(operation.body) > 0


def fuzz(operations: list[Any], cases: int, tally: Tally) -> None:
    """Each operation's examples, then about ``cases`` generated ones over the operations that take
    input: first requests that break the schema (negative), then requests that follow it (positive).
    Each run's share is what is left to send over the runs left, so a run that ends early (hypothesis
    ran out of distinct cases, or a schema that nothing can break, like a free-text path segment)
    leaves its share to the next. An operation without input (GET /healthz) is one case."""
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    session = requests.Session()

    def run(strategy: Any, examples: int, phase: str) -> None:
        # No shrinking: every case that fails is kept (with its curl command) rather than minimized
        # against a live server; no example database: runs stay independent.
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def send(case: Any) -> None:
            tally.record(case, case.call(base_url=tally.url, session=session, timeout=60), phase)

        send()

    for operation in operations:
        for strategy in operation.get_strategies_from_examples():
            run(strategy, 1, "example")
        if not takes_input(operation):
            run(operation.as_strategy(), 1, GenerationMode.POSITIVE.value)
    varied = [operation for operation in operations if takes_input(operation)]
    runs = [(operation, mode) for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE) for operation in varied]
    target, generated = math.ceil(HEADROOM * cases), 0
    for index, (operation, mode) in enumerate(runs):
        before = tally.total
        try:
            run(operation.as_strategy(generation_mode=mode), max(1, math.ceil((target - generated) / (len(runs) - index))), mode.value)
        except Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:
                raise
            tally.unbreakable.append(operation.label)
        generated += tally.total - before


@pytest.fixture(scope="module")
def fuzzed_server(trained, home, tmp_path_factory):
    """``solutions serve`` over a copy of the trained models and data."""
    from solutions_core.demo import ServerProcess

    ready = trained.train_all(APPS)
    copy = tmp_path_factory.mktemp("fuzzed_home")
    for folder in ("models", "data"):
        if (home / folder).exists():
            shutil.copytree(home / folder, copy / folder)
    with ServerProcess(copy, extra_env={"SOLUTIONS_CONTRACTS_DIR": str(REPO / "data_contracts")}) as running:
        running.wait_ready(ready)
        yield running


@pytest.fixture(scope="module")
def api(fuzzed_server):
    import schemathesis

    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


def operations_tagged(api: Any, *tags: str) -> list[Any]:
    return [result.ok() for result in api.include(tag=list(tags)).get_all_operations()]


def assert_clean(tally: Tally, server: Any, expected_cases: int, apps: list[str]) -> None:
    log = server.log_path.read_text(errors="replace").splitlines()[-60:] if server.log_path.exists() else []
    assert not tally.failures, (
        f"{len(tally.failures)} answers broke the API's rules; the first:\n"
        + "\n".join(tally.failures[:8])
        + f"\nanswers:\n{tally.summary()}\nserver log ({server.log_path}), last lines:\n" + "\n".join(log)
    )
    assert tally.total >= expected_cases, f"only {tally.total} cases ran:\n{tally.summary()}"
    assert server.process.poll() is None, "the server died"
    status, body = http_json("GET", f"{server.url}/healthz", timeout=10)
    assert status == 200 and set(apps) <= set(body["models"]), body


@pytest.mark.slow
@pytest.mark.parametrize("app", APPS)
def test_fuzzing_an_app_from_the_spec_finds_no_server_error(app, fuzzed_server, api):
    operations = operations_tagged(api, app)
    labels = {operation.label for operation in operations}
    assert {f"POST /v1/models/{app}:predict", f"POST /v1/models/{app}/versions/{{version}}:predict"} <= labels
    tally = Tally(fuzzed_server.url)
    started = time.perf_counter()
    fuzz(operations, CASES_PER_APP, tally)
    print(f"\n{app}: {tally.total} cases in {time.perf_counter() - started:.1f} s\n{tally.summary()}")
    assert_clean(tally, fuzzed_server, CASES_PER_APP, [app])
    # The fuzzer reached the model, not only the validation in front of it: the spec's example
    # (a real request) was answered.
    assert tally.answers[(f"POST /v1/models/{app}:predict", "example")] == Counter({200: 1})


@pytest.mark.slow
def test_fuzzing_the_shared_routes_from_the_spec_finds_no_server_error(fuzzed_server, api):
    operations = operations_tagged(api, *SHARED_TAGS)
    assert {"GET /healthz", "POST /v1/models/{target}"} <= {operation.label for operation in operations}
    tally = Tally(fuzzed_server.url)
    fuzz(operations, SHARED_CASES, tally)
    print(f"\nshared routes: {tally.total} cases\n{tally.summary()}")
    assert_clean(tally, fuzzed_server, SHARED_CASES, APPS)
