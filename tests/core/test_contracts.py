"""Tests for solutions_core.contracts: file parsing, batch validation, coercion and request checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from solutions_core.contracts import (
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

    code = "import sys, solutions_core.contracts; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
