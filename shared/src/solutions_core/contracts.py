"""Data contracts: one YAML file per dataset, the single source of truth for a table.

The training pipeline validates DataFrames against a contract before anything is trained
(`solutions validate`), and the REST server derives its request model, per-instance checks and JSON
Schema from the same file, so a request that breaks the contract is rejected naming the field. The file
format is specified in `data_contracts/README.md`.

Each rule is declared once, in `_TYPES` (the type rule) and `_VALUE_RULES` (min, max, pattern, allowed),
or as one parameter on both sides (missing, nullable, unique, unexpected), and compiled twice: into a
pandera DataFrameSchema for tables, validated lazily so every violation is reported in one pass, and
into a strict pydantic model for request instances, which also writes the request JSON Schema.

This module imports neither TensorFlow nor Keras, and pandera only when a table is first validated: the
CLI and the server import it, and they must start in well under a second.
"""

from __future__ import annotations

import datetime as _dt
import keyword
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

__all__ = ["ColumnSpec", "Contract", "ContractError", "ContractViolation", "ValidationReport", "Violation"]
__all__ += ["ROLES", "RULES", "TYPES", "available_contracts", "load_contract"]

TYPES = ("string", "integer", "float", "boolean", "timestamp")
ROLES = ("feature", "id", "label", "metadata")
# Report order within one column: a missing column makes every later rule meaningless, and a type
# failure would otherwise be double-counted by the value rules.
RULES = ("missing", "type", "nullable", "unique", "min", "max", "allowed", "pattern", "unexpected")

_MAX_EXAMPLES = 3
_MAX_RECORD_ERRORS = 20
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")


class ContractError(ValueError):
    """A contract file is malformed; the message names the file and the offending key."""


# --------------------------------------------------------------------------------------------------
# Public value types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract, with defaults already resolved (notably `serving`)."""

    name: str
    type: str
    nullable: bool = False
    unique: bool = False
    role: str = "feature"
    serving: bool = True
    min: float | str | None = None
    max: float | str | None = None
    allowed: tuple | None = None
    pattern: str | None = None
    description: str = ""
    # A label column's value that means "positive" (e.g. "bad", "yes", true, 1): `Contract.binary_labels`
    # maps it to 1 and every other value to 0, so a table with string labels needs no code.
    positive: Any = None
    # A timestamp column stored as epoch numbers: their unit (s, ms, us, ns). Without it, numbers in a
    # timestamp column are type violations (pandas would silently read them as nanoseconds).
    unit: str | None = None
    # How far serving data may move from the training data before the monitor flags the column: the
    # population stability index for numbers, the largest change of a value's share (L-infinity) for
    # strings and booleans. None: the monitor's default (solutions_core.monitoring).
    drift: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this column (without its name), omitting keys left at their defaults."""
        out = {f.name: getattr(self, f.name) for f in fields(self)[2:] if getattr(self, f.name) != f.default}
        out.pop("serving", None)
        if self.serving != (self.role == "feature"):  # the default follows the role
            out["serving"] = self.serving
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        return {"type": self.type, **out}


@dataclass(frozen=True)
class Violation:
    """One broken rule on one column, aggregated over all the rows that break it."""

    column: str
    rule: str
    count: int
    detail: str
    severity: str = "error"


@dataclass(frozen=True)
class ValidationReport:
    """Everything wrong with one table, so a user can fix all of it in one pass rather than one error
    per run."""

    contract: str
    version: str
    rows: int
    violations: tuple[Violation, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors()

    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    def format(self) -> str:
        header = f"Contract {self.contract} v{self.version}: {self.rows:,} rows checked"
        if not self.violations:
            return f"{header}\nOK: no violations"
        rows = [("column", "rule", "severity", "bad_rows", "detail")]
        rows += [(v.column, v.rule, v.severity, f"{v.count:,}", v.detail) for v in self.violations]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            f"{c:<{widths[0]}}  {r:<{widths[1]}}  {s:<{widths[2]}}  {n:>{widths[3]}}  {d}".rstrip()
            for c, r, s, n, d in rows
        ]
        n_err, n_warn = len(self.errors()), len(self.warnings())
        status = "FAILED" if n_err else "OK"
        return "\n".join(
            [header, *lines, f"{status}: {_plural(n_err, 'error')}, {_plural(n_warn, 'warning')}"]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "version": self.version,
            "rows": self.rows,
            "ok": self.ok,
            "errors": len(self.errors()),
            "warnings": len(self.warnings()),
            "violations": [asdict(v) for v in self.violations],
        }

    def __str__(self) -> str:
        return self.format()


class ContractViolation(ValueError):
    """Raised by `Contract.check`: the data breaks the contract. Keeps the full report so callers
    (CLI, registry) can render or store it."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.format())


# --------------------------------------------------------------------------------------------------
# The rules, each declared once
# --------------------------------------------------------------------------------------------------


def _pandera() -> Any:
    # pandera takes ~0.3 s to import and only table validation needs it: the server's request path and
    # `solutions list` never pay for it.
    import pandera.pandas

    return pandera.pandas


@dataclass(frozen=True)
class _Type:
    """A contract type, as a table holds it (`dtype`, which pandera checks after `to_table` converted
    the column) and as a request carries it (pydantic's strict `python` type, after `parse`).

    pandera's own type handling does not fit: its dtype check is all or nothing per column, and a failed
    `coerce=True` leaves the column unconverted for the other checks, which then raise or double-count.
    Contracts accept any representation of a value (numeric strings, 0/1 booleans, ISO strings, aware
    times) and count bad values row by row. So `to_table` returns the column in `dtype` with NA where a
    value cannot be represented, plus the mask of those rows (the type violations), or None when the
    column's dtype cannot hold the type at all.
    """

    dtype: str
    to_table: Callable[[pd.Series], tuple[Any, np.ndarray] | None]
    python: Any
    parse: Callable[[Any], Any] | None = None
    hint: str = ""  # why a whole column's dtype is wrong, when that is not obvious


@dataclass(frozen=True)
class _ValueRule:
    """A rule on the values of a column: its pandera Check (named after the rule, so a failure finds
    its way back into the report), its pydantic metadata (which validates requests and writes their
    JSON Schema), and what a failing value is, for the report."""

    name: str
    applies: Callable[[ColumnSpec], bool]
    table: Callable[[ColumnSpec], Any]
    request: Callable[[ColumnSpec], Any]
    broken: Callable[[ColumnSpec], str]


# ---- the type rule on tables -------------------------------------------------------------------------
# Vectorised; the per-element fallbacks only run on mixed-type object columns.


def _as_float(s: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return None
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(s), dtype=bool)
    objects = _objects(s)
    inferred = pd.api.types.infer_dtype(objects, skipna=True)
    if inferred == "boolean":
        return None
    parsed = pd.to_numeric(objects, errors="coerce")
    if inferred not in ("integer", "floating", "mixed-integer-float", "decimal", "empty", "string"):
        parsed = parsed.mask(objects.map(_is_bool).to_numpy(bool))  # to_numeric reads True as 1
    values = parsed.to_numpy(dtype="float64", na_value=np.nan)
    return values, np.isnan(values) & s.notna().to_numpy()


def _as_integer(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.array.astype("Int64"), np.zeros(len(s), dtype=bool)
    if (converted := _as_float(s)) is None:
        return None
    values, bad = converted
    with np.errstate(invalid="ignore"):
        whole = (np.floor(values) == values) & (np.abs(values) < 2.0**63)  # False for NaN
    bad |= ~whole & ~np.isnan(values)
    return pd.array(np.where(whole, values, np.nan), dtype="Float64").astype("Int64"), bad


def _as_boolean(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.array.astype("boolean"), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return None
    if pd.api.types.is_numeric_dtype(s.dtype):
        flags = pd.Series(s.to_numpy(dtype="float64", na_value=np.nan)).map({0.0: False, 1.0: True})
    else:
        objects = _objects(s)
        if pd.api.types.infer_dtype(objects, skipna=True) in ("boolean", "empty"):
            return pd.array(objects.to_numpy(dtype=object), dtype="boolean"), np.zeros(len(s), dtype=bool)
        words = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
        flags = objects.astype(str).str.strip().str.lower().map(words)
    return pd.array(
        flags.to_numpy(dtype=object), dtype="boolean"
    ), flags.isna().to_numpy() & s.notna().to_numpy()


def _as_string(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        return None  # booleans are numeric here too
    objects = _objects(s)
    values = objects.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(objects, skipna=True) in ("string", "empty"):
        return values, np.zeros(len(s), dtype=bool)
    bad = ~objects.map(lambda v: isinstance(v, str)).to_numpy(bool) & s.notna().to_numpy()
    return np.where(bad, None, values), bad


def _as_timestamp(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        stamps = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dtype, "tz", None) else s
        if stamps.dtype == "datetime64[ns]":
            return stamps.to_numpy(), np.zeros(len(s), dtype=bool)
        # Other units reach beyond nanoseconds' years 1677-2262; such dates cannot be compared with the
        # others, so they count as type failures rather than crash the check.
        bad = (stamps.notna() & ~stamps.between(pd.Timestamp.min, pd.Timestamp.max)).to_numpy()
        return stamps.mask(bad).dt.as_unit("ns").to_numpy(), bad
    if pd.api.types.is_numeric_dtype(s.dtype):
        return None
    objects = _objects(s)
    if pd.api.types.infer_dtype(objects, skipna=True) not in (
        "string",
        "datetime",
        "datetime64",
        "date",
        "empty",
    ):
        # Numbers would be read as epoch nanoseconds; only strings and date/times are timestamps here.
        objects = objects.mask(
            objects.map(lambda v: isinstance(v, (numbers.Number, np.bool_))).to_numpy(bool)
        )
    parsed = pd.to_datetime(objects, errors="coerce", utc=True, format="ISO8601")
    stamps = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]", copy=True)
    null = s.isna().to_numpy()
    if (failed := np.isnat(stamps) & ~null).any():
        # Rare non-ISO spellings ("01/02/2024"): parse only the leftovers with the slow mixed parser.
        retry = pd.to_datetime(objects[failed], errors="coerce", utc=True, format="mixed")
        stamps[failed] = retry.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return stamps, np.isnat(stamps) & ~null


EPOCH_UNITS = ("s", "ms", "us", "ns")


def _epoch_timestamp(s: pd.Series, unit: str) -> tuple[Any, np.ndarray] | None:
    """A timestamp column of epoch numbers in ``unit`` (numeric strings too, as a CSV may hold them)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return _as_timestamp(s)
    if (converted := _as_float(s)) is None:
        return None
    values, bad = converted
    limit = pd.Timestamp.max.value / pd.Timedelta(1, unit=unit).value  # beyond 2262 in nanoseconds
    bad |= np.abs(np.nan_to_num(values)) > limit
    good = ~np.isnan(values) & ~bad
    # Whole units first, then the fraction: float64 nanoseconds since 1970 would lose sub-microsecond bits.
    whole = np.where(good, np.floor(values), 0).astype("int64")
    stamps = (whole * pd.Timedelta(1, unit=unit).value + np.round((np.where(good, values, 0) - whole) * pd.Timedelta(1, unit=unit).value).astype("int64"))
    return np.where(good, stamps, np.iinfo("int64").min).astype("datetime64[ns]"), bad


def _objects(s: pd.Series) -> pd.Series:
    return s.astype(object) if isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype)) else s


# ---- the type rule on requests -----------------------------------------------------------------------


def _integral_float_as_int(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer, and clients send them; 2.5 is not one."""
    if type(value) is not float:
        return value
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "expected a finite number")
    if not value.is_integer():
        raise PydanticCustomError("int_from_float", "expected an integer")
    return int(value)


def _request_timestamp(value: Any) -> Any:
    """An ISO-8601 string or epoch seconds, as a naive UTC datetime (what bounds compare against)."""
    try:
        if isinstance(value, str):
            stamp = _dt.datetime.fromisoformat(value)
        elif _is_number(value):
            stamp = _dt.datetime.fromtimestamp(value, tz=_dt.UTC)
        else:
            raise TypeError
    except (ValueError, TypeError, OverflowError, OSError):
        raise PydanticCustomError("timestamp_type", "expected an ISO-8601 string or epoch seconds") from None
    stamp = stamp.astimezone(_dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp
    if not _REQUEST_TIMESTAMP_MIN <= stamp <= _REQUEST_TIMESTAMP_MAX:
        # Tables hold timestamps as nanoseconds (years 1677-2262), and so do the apps' online features:
        # a request beyond them is refused here rather than crash whatever converts it next.
        raise PydanticCustomError("timestamp_range", "outside the years 1677-2262 that timestamps can hold")
    return stamp


_REQUEST_TIMESTAMP_MIN = pd.Timestamp.min.ceil("us").to_pydatetime()
_REQUEST_TIMESTAMP_MAX = pd.Timestamp.max.floor("us").to_pydatetime()


# An ISO-8601 date or date-time string, as requests send timestamps: the UTC offset is optional.
# JSON Schema's "format": "date-time" (RFC 3339) demands one, so it would call naive timestamps (what
# the contracts mostly hold, and what the apps' own example requests send) invalid.
TIMESTAMP_STRING_SCHEMA = {
    "type": "string",
    "pattern": (
        "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
        "(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$"
    ),
}
# JSON Schema cannot bound a date-time string: `_request_description` states the bounds instead.
_DATE_TIME_OR_EPOCH = {"anyOf": [TIMESTAMP_STRING_SCHEMA, {"type": "number"}]}

_TYPES = {
    "string": _Type("object", _as_string, str),
    "integer": _Type("Int64", _as_integer, int, parse=_integral_float_as_int),
    "float": _Type("float64", _as_float, Annotated[float, Field(allow_inf_nan=False)]),
    "boolean": _Type("boolean", _as_boolean, bool),
    "timestamp": _Type(
        "datetime64[ns]",
        _as_timestamp,
        Annotated[_dt.datetime, WithJsonSchema(_DATE_TIME_OR_EPOCH)],
        parse=_request_timestamp,
        hint=" (store datetime64 or ISO-8601 strings; epoch numbers are ambiguous)",
    ),
}


# ---- the value rules ---------------------------------------------------------------------------------


def _bound(spec: ColumnSpec, value: Any) -> Any:
    """A min/max as both engines compare it: timestamps as naive UTC datetimes."""
    return _naive_utc(pd.Timestamp(value)).to_pydatetime() if spec.type == "timestamp" else value


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


class _OneOf:
    """`allowed` for requests: the column's strict type first, then `Literal[...]`. Literal compares with
    ==, and True == 1 == 1.0 in Python, so alone it would let a boolean through `allowed: [0, 1]`."""

    def __init__(self, values: tuple):
        self.values = values

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.chain_schema([handler(source), handler.generate_schema(Literal[self.values])])

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "enum": list(self.values)}


def _not_allowed(spec: ColumnSpec) -> str:
    return f"not in allowed [{', '.join(map(str, spec.allowed[:8]))}{', ...' * (len(spec.allowed) > 8)}]"


# In request order: pydantic applies Annotated metadata inside out, so the bounds and the pattern must
# come before `allowed`'s chain to land in the type's own schema (and JSON Schema).
_VALUE_RULES = (
    _ValueRule(
        "min",
        applies=lambda c: c.min is not None,
        table=lambda c: _pandera().Check.ge(_bound(c, c.min), name="min"),
        request=lambda c: Field(ge=_bound(c, c.min)),
        broken=lambda c: f"below min {_fmt_bound(c.min)}",
    ),
    _ValueRule(
        "max",
        applies=lambda c: c.max is not None,
        table=lambda c: _pandera().Check.le(_bound(c, c.max), name="max"),
        request=lambda c: Field(le=_bound(c, c.max)),
        broken=lambda c: f"above max {_fmt_bound(c.max)}",
    ),
    _ValueRule(
        "pattern",
        applies=lambda c: c.pattern is not None,
        # Patterns match whole values. Tables use Python's re; requests pydantic's Rust regex, linear-time
        # on user input, whose `$` (like JSON Schema's) only matches at the very end.
        table=lambda c: _pandera().Check(lambda s: s.str.fullmatch(c.pattern, na=True), name="pattern"),
        request=lambda c: Field(pattern=_anchored(c.pattern)),
        broken=lambda c: f"not matching {c.pattern}",
    ),
    _ValueRule(
        "allowed",
        applies=lambda c: c.allowed is not None,
        table=lambda c: _pandera().Check.isin(list(c.allowed), name="allowed"),
        request=lambda c: _OneOf(c.allowed),
        broken=_not_allowed,
    ),
)


# --------------------------------------------------------------------------------------------------
# File structure (pydantic) -> Contract
# --------------------------------------------------------------------------------------------------


class _ColumnModel(BaseModel):
    # Strict scalars: YAML turns `yes`/`on` into booleans and pydantic's lax mode would turn strings
    # like "true" into booleans; a typo should be an error, not a silently different contract.
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "float", "boolean", "timestamp"]
    nullable: StrictBool = False
    unique: StrictBool = False
    role: Literal["feature", "id", "label", "metadata"] = "feature"
    serving: StrictBool | None = None
    min: Any = None  # checked by hand against the column's type, for clearer messages
    max: Any = None
    allowed: list[Any] | None = None
    pattern: StrictStr | None = None
    description: StrictStr = ""
    positive: Any = None  # checked by hand against the column's type and role
    unit: StrictStr | None = None
    drift: float | None = None


class _ContractModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    version: Any  # checked by hand: an unquoted `1.0` arrives as a float and deserves a hint
    owner: StrictStr
    description: StrictStr = ""
    time_column: StrictStr | None = None
    strict: StrictBool = False
    columns: dict[Any, _ColumnModel]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: PyYAML silently keeps the last one, which would let a
    copy-pasted column definition override an earlier one without anybody noticing."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _structure_problems(err: ValidationError) -> list[str]:
    messages = []
    for e in err.errors():
        loc, kind, got = tuple(e["loc"]), e["type"], e.get("input")
        where = ".".join(map(str, loc)) or "<top level>"
        if kind == "extra_forbidden":
            model = _ColumnModel if len(loc) == 3 and loc[0] == "columns" else _ContractModel
            messages.append(
                f"{where}: unknown key {loc[-1]!r} (allowed keys: {', '.join(model.model_fields)})"
            )
        elif kind == "missing":
            messages.append(f"{where}: missing required key {loc[-1]!r}")
        elif kind == "literal_error":
            expected = e["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
            messages.append(f"{where}: unknown {loc[-1]} {got!r} (expected one of: {expected})")
        elif kind in ("model_type", "dict_type"):
            messages.append(f"{where}: must be a mapping, got {got!r}")
        else:
            messages.append(f"{where}: {e['msg']} (got {got!r})")
    return messages


_ALLOWED_VALUES = {
    "string": (lambda v: isinstance(v, str), "strings (quote values like yes/no/1 in YAML)"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "float": (lambda v: _is_number(v), "numbers"),
    "boolean": (lambda v: isinstance(v, bool), "true/false"),
}


def _column_spec(name: str, col: _ColumnModel, problems: list[str]) -> ColumnSpec:
    """The checks pydantic cannot express (bounds, allowed values and pattern that fit the column's
    type), appending to `problems`; returns the column with its bounds and allowed values normalised."""
    where = f"columns.{name}"
    bounds: dict[str, Any] = {"min": None, "max": None}
    for key in bounds:
        value = getattr(col, key)
        if value is None:
            continue
        if isinstance(value, (_dt.date, _dt.datetime)):  # unquoted YAML dates: keep the ISO text
            value = value.isoformat()
        if col.type in ("integer", "float"):
            if _is_number(value) and not (isinstance(value, float) and math.isnan(value)):
                bounds[key] = value
            else:
                problems.append(f"{where}.{key}: must be a number for a {col.type} column, got {value!r}")
        elif col.type == "timestamp":
            if isinstance(value, str) and _parses_as_timestamp(value):
                bounds[key] = value
            else:
                problems.append(
                    f"{where}.{key}: must be an ISO-8601 date/time for a timestamp column, got {value!r}"
                )
        else:
            problems.append(
                f"{where}.{key}: not supported for {col.type} columns (only integer, float, timestamp)"
            )
    lo, hi = bounds["min"], bounds["max"]
    if lo is not None and hi is not None:
        if (
            (_naive_utc(pd.Timestamp(lo)) > _naive_utc(pd.Timestamp(hi)))
            if col.type == "timestamp"
            else lo > hi
        ):
            problems.append(f"{where}: min {lo!r} is greater than max {hi!r}")

    allowed = None
    if col.allowed is not None:
        if col.type == "timestamp":
            problems.append(f"{where}.allowed: not supported for timestamp columns; use min/max")
        elif not col.allowed:
            problems.append(f"{where}.allowed: must list at least one value")
        elif bad := [v for v in col.allowed if not _ALLOWED_VALUES[col.type][0](v)]:
            what = _ALLOWED_VALUES[col.type][1]
            problems.append(f"{where}.allowed: values of a {col.type} column must be {what}, got {bad[:3]!r}")
        else:
            allowed = tuple(col.allowed)

    serving = col.serving if col.serving is not None else col.role == "feature"
    if col.pattern is not None:
        if col.type != "string":
            problems.append(f"{where}.pattern: only supported for string columns, not {col.type}")
        elif problem := _pattern_problem(col.pattern, serving):
            problems.append(f"{where}.pattern: {problem}")

    positive = col.positive
    if positive is not None:
        if col.role != "label":
            problems.append(f"{where}.positive: only a column with role label has a positive value")
        elif col.type not in _ALLOWED_VALUES:
            problems.append(f"{where}.positive: not supported for {col.type} columns")
        elif not _ALLOWED_VALUES[col.type][0](positive):
            problems.append(f"{where}.positive: must be one of the column's {_ALLOWED_VALUES[col.type][1]}, got {positive!r}")
        elif allowed is not None and positive not in allowed:
            problems.append(f"{where}.positive: {positive!r} is not one of its allowed values {list(allowed)}")
    if col.unit is not None:
        if col.type != "timestamp":
            problems.append(f"{where}.unit: only for timestamp columns stored as epoch numbers, not {col.type}")
        elif col.unit not in EPOCH_UNITS:
            problems.append(f"{where}.unit: unknown unit {col.unit!r} (expected one of: {', '.join(EPOCH_UNITS)})")

    if col.drift is not None and not (col.drift > 0 and math.isfinite(col.drift)):
        problems.append(f"{where}.drift: the monitor's threshold must be a positive number, got {col.drift!r}")

    return ColumnSpec(
        name=name,
        type=col.type,
        nullable=col.nullable,
        unique=col.unique,
        role=col.role,
        serving=serving,
        min=bounds["min"],
        max=bounds["max"],
        allowed=allowed,
        pattern=col.pattern,
        description=col.description,
        positive=positive,
        unit=col.unit,
        drift=col.drift,
    )


def _pattern_problem(pattern: str, serving: bool) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    if serving:  # requests check it with the Rust regex engine: no look-around, no backreferences
        try:
            SchemaValidator(core_schema.str_schema(pattern=_anchored(pattern)))
        except Exception as exc:  # pydantic_core.SchemaError, whose last line says what is unsupported
            return f"{pattern!r} is not supported for request checks ({str(exc).strip().splitlines()[-1]})"
    return None


def _parses_as_timestamp(text: str) -> bool:
    try:
        return pd.Timestamp(text) is not pd.NaT
    except (ValueError, TypeError):
        return False


# --------------------------------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contract:
    """A parsed data contract. Build it with `from_yaml`/`from_dict`/`load_contract`, which check the
    file's structure; constructing it directly skips those checks."""

    name: str
    version: str
    owner: str
    description: str
    columns: dict[str, ColumnSpec]
    time_column: str | None = None
    strict: bool = False
    path: Path | None = field(default=None, compare=False)
    # The table schema and request models, compiled on first use.
    _compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Pipeline artifacts are pickled; dynamic models and lambda checks are not, and recompile fast.
        return {key: value for key, value in self.__dict__.items() if key != "_compiled"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _compiled={})

    # ---- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Contract:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ContractError(f"{path}: cannot read contract file: {exc.strerror or exc}") from exc
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise ContractError(f"{path}: invalid YAML: {exc}") from exc
        return cls.from_dict(data, path=path)

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike | None = None) -> Contract:
        path = Path(path) if path is not None else None

        def fail(problems: list[str]) -> ContractError:
            source = path or "<contract>"
            if len(problems) == 1:
                return ContractError(f"{source}: {problems[0]}")
            return ContractError(
                f"{source}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
            )

        if data is None:
            raise fail(["file is empty; expected a mapping with name, version, owner and columns"])
        if not isinstance(data, dict):
            raise fail([f"top level must be a mapping, got {type(data).__name__}"])
        try:
            model = _ContractModel.model_validate(data)
        except ValidationError as exc:
            raise fail(_structure_problems(exc)) from None

        problems: list[str] = []
        if path is not None and model.name != path.stem:
            problems.append(f"name: {model.name!r} must equal the file stem {path.stem!r}")
        if not model.name.strip():
            problems.append("name: must not be empty")
        if not isinstance(model.version, str):
            problems.append(
                f"version: must be a semantic version string like 1.0.0, got {model.version!r} "
                "(quote it in YAML if it looks like a number)"
            )
        elif not _SEMVER.match(model.version):
            problems.append(
                f"version: {model.version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)"
            )
        if not model.columns:
            problems.append("columns: must define at least one column")

        columns: dict[str, ColumnSpec] = {}
        for name, col in model.columns.items():
            if isinstance(name, str) and name:
                columns[name] = _column_spec(name, col, problems)
            else:
                problems.append(
                    f"columns: column name {name!r} must be a non-empty string (quote it in YAML)"
                )
        labels = [c.name for c in columns.values() if c.role == "label"]
        if len(labels) > 1:
            problems.append(f"columns: at most one column may have role label, found {labels}")
        if model.time_column is not None:
            if (tc := columns.get(model.time_column)) is None:
                problems.append(f"time_column: {model.time_column!r} is not one of the columns")
            elif tc.type != "timestamp":
                problems.append(f"time_column: column {tc.name!r} must have type timestamp, not {tc.type}")
        if problems:
            raise fail(problems)

        return cls(
            name=model.name,
            version=model.version,
            owner=model.owner,
            description=model.description,
            columns=columns,
            time_column=model.time_column,
            strict=model.strict,
            path=path,
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of the contract; `Contract.from_dict(c.to_dict())` round-trips."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "owner": self.owner}
        out["description"] = self.description
        if self.time_column is not None:
            out["time_column"] = self.time_column
        if self.strict:
            out["strict"] = True
        return {**out, "columns": {name: spec.to_dict() for name, spec in self.columns.items()}}

    # ---- introspection -----------------------------------------------------------------------------

    def feature_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.role == "feature"]

    def label_column(self) -> str | None:
        return next((c.name for c in self.columns.values() if c.role == "label"), None)

    def binary_labels(self, values: pd.Series) -> np.ndarray:
        """The label column as 0/1 (int64): 1 where the value is the label's declared `positive`, 0
        elsewhere. Without `positive`, the values must already be 0/1 (or true/false). A null label, or a
        value that is not 0/1 when no `positive` is declared, is a ValueError naming the column."""
        name = self.label_column()
        if name is None:
            raise ValueError(f"contract {self.name!r} has no column with role label")
        spec = self.columns[name]
        if values.isna().any():
            raise ValueError(f"column {name!r} (label): {_plural(int(values.isna().sum()), 'null value')}; every example needs a label")
        if spec.positive is not None:
            converted = self.convert(pd.DataFrame({name: values}))[name]
            return (converted == spec.positive).to_numpy(dtype=bool).astype("int64")
        numbers = pd.to_numeric(values.astype(object).map(lambda v: int(v) if _is_bool(v) else v), errors="coerce")
        if not numbers.isin([0, 1]).all():
            examples = _examples(values[~numbers.isin([0, 1])])
            raise ValueError(
                f"column {name!r} (label): values are not 0/1{examples}; declare which value is positive "
                f"in contract {self.name!r} (columns.{name}.positive, e.g. positive: bad)"
            )
        return numbers.to_numpy(dtype="int64")

    def convert(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The table with each contract column in the contract's type (epoch numbers with a `unit` as
        timestamps, numeric strings as numbers, strings as Python str objects); values that cannot be
        converted become null (`validate` reports them). Other columns are kept as they are."""
        out = frame.copy()
        for name in frame.columns:
            if (spec := self.columns.get(name)) is None:
                continue
            _, values, _ = _table_type(spec, frame[name])
            if spec.type == "integer" and not pd.isna(values).any():
                values = np.asarray(values, dtype="int64")
            elif spec.type == "boolean" and not pd.isna(values).any():
                values = np.asarray(values, dtype=bool)
            out[name] = pd.Series(values, index=frame.index, name=name) if not isinstance(values, pd.Series) else values.set_axis(frame.index)
        return out

    def request_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns.values() if c.serving]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "owner": self.owner,
            "n_columns": len(self.columns),
            "label": self.label_column(),
            "time_column": self.time_column,
        }

    # ---- tables ------------------------------------------------------------------------------------

    def table_schema(self) -> Any:
        """The pandera DataFrameSchema of this contract, for a table already in the contract's dtypes
        (`validate` converts it first)."""
        if "table" not in self._compiled:
            pa = _pandera()
            columns = {
                spec.name: pa.Column(
                    _TYPES[spec.type].dtype,
                    checks=[rule.table(spec) for rule in _VALUE_RULES if rule.applies(spec)],
                    nullable=spec.nullable,
                    unique=spec.unique,
                    report_duplicates="exclude_first",
                )
                for spec in self.columns.values()
            }
            # strict=True: pandera reports each column outside the contract, whose own `strict` only
            # decides whether that is an error or a warning.
            self._compiled["table"] = pa.DataFrameSchema(
                columns, strict=True, name=f"{self.name} v{self.version}"
            )
        return self._compiled["table"]

    def validate(self, frame: pd.DataFrame) -> ValidationReport:
        """Checks every rule on every column and reports all violations; bad data never raises here,
        because the point is to show the user everything that needs fixing at once."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"validate() needs a pandas DataFrame, got {type(frame).__name__}")
        if frame.columns.has_duplicates:
            dups = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise ValueError(f"DataFrame has duplicate column names {dups}; cannot validate it")
        schema, pa, n = self.table_schema(), _pandera(), len(frame)

        # The type rule first (see `_Type`), then pandera on the converted table, indexed by position so
        # that its failure cases can be told apart from the type failures.
        violations: list[Violation | None] = []
        table: dict[Any, Any] = {}
        bad_type: dict[str, np.ndarray] = {}
        for name in frame.columns:
            if (spec := self.columns.get(name)) is None:
                table[name] = frame[name].array  # pandera only needs its name, to report it as unexpected
            else:
                violation, table[name], bad_type[name] = _table_type(spec, frame[name])
                violations.append(violation)
        # PANDERA_VALIDATION_ENABLED/_DEPTH would otherwise switch checks off without a word.
        with pa.config.config_context(validation_enabled=True, validation_depth="SCHEMA_AND_DATA"):
            try:
                schema.validate(pd.DataFrame(table, copy=False), lazy=True, inplace=True)
            except pa.errors.SchemaErrors as exc:
                violations.extend(_table_violation(self, e, n, bad_type) for e in exc.schema_errors)

        extra = [str(name) for name in frame.columns if name not in self.columns]
        order = {name: i for i, name in enumerate([*self.columns, *extra])}
        found = sorted(filter(None, violations), key=lambda v: (order[v.column], RULES.index(v.rule)))
        return ValidationReport(self.name, self.version, n, tuple(found))

    def check(self, frame: pd.DataFrame) -> ValidationReport:
        """`validate`, but raising ContractViolation on any error, for pipelines that must stop."""
        report = self.validate(frame)
        if not report.ok:
            raise ContractViolation(report)
        return report

    # ---- requests ----------------------------------------------------------------------------------

    def request_model(
        self, extra_fields: Iterable[str] = frozenset(), allow_missing: Iterable[str] = frozenset()
    ) -> type[BaseModel]:
        """The pydantic model of one request instance: the serving columns with their rules, strict
        types and no other fields. `extra_fields` are accepted fields outside the contract (any value);
        `allow_missing` are contract fields a request may omit (the server fills them in). Cached."""
        return self._request(frozenset(extra_fields), frozenset(allow_missing))[0]

    def _request(
        self, extra_fields: frozenset, allow_missing: frozenset
    ) -> tuple[type[BaseModel], TypeAdapter]:
        key = ("request", extra_fields, allow_missing)
        if key not in self._compiled:
            model = _request_model(self, extra_fields, allow_missing)
            self._compiled[key] = model, TypeAdapter(list[model])
        return self._compiled[key]

    def validate_records(
        self,
        records: list[dict],
        *,
        extra_fields: Iterable[str] = frozenset(),
        allow_missing: Iterable[str] = frozenset(),
    ) -> list[str]:
        """Checks request instances field by field and returns human-readable errors naming the
        instance and field (empty when all is well), so the server can answer one 400 that lists
        everything wrong with the request."""
        _, instances = self._request(frozenset(extra_fields), frozenset(allow_missing))
        try:
            instances.validate_python(records)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            messages = [_request_problem(self, records, e) for e in errors[:_MAX_RECORD_ERRORS]]
            if len(errors) > _MAX_RECORD_ERRORS:
                messages.append(f"... and {len(errors) - _MAX_RECORD_ERRORS} more")
            return messages
        return []

    def request_json_schema(
        self, *, extra_fields: Iterable[str] = frozenset(), allow_missing: Iterable[str] = frozenset()
    ) -> dict[str, Any]:
        """JSON Schema (2020-12 / OpenAPI 3.1) of one request instance: the request model's own, so the
        API docs can never drift from what `validate_records` enforces."""
        schema = self.request_model(extra_fields, allow_missing).model_json_schema(schema_generator=_Untitled)
        schema.setdefault("required", [])  # pydantic leaves it out when empty; clients and specs expect the key
        return schema


# --------------------------------------------------------------------------------------------------
# Tables: columns to pandera and its failures back
# --------------------------------------------------------------------------------------------------


def _table_type(spec: ColumnSpec, s: pd.Series) -> tuple[Violation | None, Any, np.ndarray]:
    """The type rule on one column: its violation (or None), the column in the contract's dtype (NA
    where null or bad) and the mask of the bad rows."""
    kind = _TYPES[spec.type]
    converter = (lambda c: _epoch_timestamp(c, spec.unit)) if spec.unit else kind.to_table
    if (converted := converter(s)) is None:
        bad, values = s.notna().to_numpy(), pd.array([None] * len(s), dtype=kind.dtype)
        detail = f"column dtype {s.dtype} cannot hold {spec.type} values{kind.hint}"
    else:
        values, bad = converted
        detail = f"{_plural(int(bad.sum()), 'value')} not convertible to {spec.type}"
    if not bad.any():
        return None, values, bad
    examples = _examples(s.iloc[np.flatnonzero(bad)[:1000]])
    return Violation(spec.name, "type", int(bad.sum()), detail + examples), values, bad


# pandera's failure reasons that are rules of their own; every other failure is one of our Checks.
_PANDERA_REASONS = {
    "COLUMN_NOT_IN_DATAFRAME": "missing",
    "COLUMN_NOT_IN_SCHEMA": "unexpected",
    "SERIES_CONTAINS_NULLS": "nullable",
    "SERIES_CONTAINS_DUPLICATES": "unique",
    "WRONG_DATATYPE": "type",
}


def _table_violation(
    contract: Contract, error: Any, n: int, bad_type: dict[str, np.ndarray]
) -> Violation | None:
    """One pandera failure (one column, one check) as a Violation; None when all its rows failed the
    type rule already, so that a bad value is reported once, under the rule that explains it."""
    rule = _PANDERA_REASONS.get(error.reason_code.name) or error.check.name
    if rule == "missing":
        return Violation(str(error.failure_cases), rule, n, "column is missing from the table")
    if rule == "unexpected":
        severity = "error" if contract.strict else "warning"
        return Violation(str(error.failure_cases), rule, n, "column is not in the contract", severity)

    spec, cases = contract.columns[error.schema.name], error.failure_cases
    if rule == "type" or not isinstance(cases, pd.DataFrame):
        # The converted column has the contract's dtype and the checks take it, so this is a bug here
        # rather than bad data: shown, not hidden.
        return Violation(spec.name, rule, n, str(error))
    if rule == "nullable":
        cases = cases[~bad_type[spec.name][cases["index"].to_numpy(dtype=np.int64)]]
        detail = f"{_plural(len(cases), 'null value')} in a non-nullable column"
    elif rule == "unique":  # (pandera leaves nulls out of the duplicates already)
        detail = f"{_plural(len(cases), 'duplicate row')} beyond the first occurrence"
    else:
        broken = next(r.broken(spec) for r in _VALUE_RULES if r.name == rule)
        detail = f"{_plural(len(cases), 'value')} {broken}"
    if cases.empty:
        return None
    return Violation(
        spec.name, rule, len(cases), detail + ("" if rule == "nullable" else _examples(cases["failure_case"]))
    )


# --------------------------------------------------------------------------------------------------
# Requests: the model and its messages
# --------------------------------------------------------------------------------------------------


def _request_model(contract: Contract, extra_fields: frozenset, allow_missing: frozenset) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for index, spec in enumerate(contract.request_columns()):
        kind = _TYPES[spec.type]
        metadata = [rule.request(spec) for rule in _VALUE_RULES if rule.applies(spec)]
        if kind.parse is not None:  # listed last, so it wraps the others and runs first
            metadata.append(BeforeValidator(kind.parse))
        annotation = Annotated[(kind.python, *metadata)] if metadata else kind.python
        if spec.nullable:
            default: dict[str, Any] = {"default": None}
            annotation = annotation | None
        elif spec.name in allow_missing:
            # May be omitted but not sent as null, which "default": null in the schema would suggest.
            default = {"default": None, "json_schema_extra": lambda schema: schema.pop("default")}
        else:
            default = {}
        description = _request_description(spec)
        fields[_attribute(spec.name, index)] = (
            annotation,
            Field(alias=spec.name, description=description, **default),
        )
    served = {spec.name for spec in contract.request_columns()}
    for index, name in enumerate(sorted(extra_fields - served), start=len(fields)):
        fields[_attribute(name, index)] = (Any, Field(None, alias=name))

    return create_model(
        "".join(word.capitalize() for word in re.split(r"[^0-9A-Za-z]+", contract.name)) + "Instance",
        __config__=ConfigDict(strict=True, extra="forbid", title=f"{contract.name} instance"),
        __doc__=f"One instance for a model trained on contract {contract.name} v{contract.version}.",
        __module__=__name__,
        **fields,
    )


def _request_description(spec: ColumnSpec) -> str | None:
    if spec.type != "timestamp":
        return spec.description or None
    bounds = [f"{key} {getattr(spec, key)}" for key in ("min", "max") if getattr(spec, key) is not None]
    note = "; ".join(["ISO-8601 string or epoch seconds", *bounds])
    return f"{spec.description} ({note})" if spec.description else note


def _attribute(name: str, index: int) -> str:
    """The model attribute of a field, whose alias is the column name: names that are no identifiers,
    or that BaseModel already uses (`copy`, `json`...), get a neutral one."""
    usable = name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")
    return name if usable and not hasattr(BaseModel, name) else f"field_{index}"


class _Untitled(GenerateJsonSchema):
    """Property names already are the column names; pydantic's generated titles only add noise."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


# pydantic's error types, in the contract's words.
_REQUEST_MESSAGES = {
    "float_type": "expected a number, got {got}",
    "int_type": "expected an integer, got {got}",
    "int_from_float": "expected an integer, got {value}",
    "bool_type": "expected true or false, got {got}",
    "string_type": "expected a string, got {got}",
    "timestamp_type": "expected an ISO-8601 timestamp string or epoch seconds, got {got}",
    "timestamp_range": "{value} is outside the years 1677-2262 that timestamps can hold",
    "finite_number": "expected a finite number, got {value}",
    "greater_than_equal": "{value} is below min {min}",
    "less_than_equal": "{value} is above max {max}",
    "literal_error": "{value} is not one of {allowed}",
    "string_pattern_mismatch": "{value} does not match pattern {pattern}",
}


def _request_problem(contract: Contract, records: Any, error: dict[str, Any]) -> str:
    """One pydantic error as `instances[i].field: what is wrong`."""
    loc, kind = error["loc"], error["type"]
    if not loc:
        return f"instances: expected a list of objects, got {_json_type(records)}"
    if len(loc) == 1:
        return f"instances[{loc[0]}]: expected an object, got {_json_type(error['input'])}"
    if kind == "missing":
        return f"instances[{loc[0]}]: missing required field {loc[1]!r}"
    where = f"instances[{loc[0]}].{loc[1]}"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    spec, value = contract.columns[loc[1]], records[loc[0]][loc[1]]  # as sent, before any parsing
    if value is None and kind.endswith("_type"):
        return f"{where}: null is not allowed"
    if kind not in _REQUEST_MESSAGES:
        return f"{where}: {error['msg']}"
    return f"{where}: " + _REQUEST_MESSAGES[kind].format(
        value=_fmt_value(value),
        got=_json_type(value),
        min=_fmt_bound(spec.min),
        max=_fmt_bound(spec.max),
        allowed=list(spec.allowed or ()),
        pattern=spec.pattern,
    )


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    """The one representation all timestamp comparisons use: aware times are converted to UTC."""
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if _is_bool(value):
        return f"boolean {str(bool(value)).lower()}"
    if isinstance(value, str) or _is_number(value):
        return f"{'string' if isinstance(value, str) else 'number'} {value!r}"
    return (
        "object"
        if isinstance(value, dict)
        else "array"
        if isinstance(value, (list, tuple))
        else type(value).__name__
    )


def _fmt_value(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, _dt.datetime):  # pd.Timestamp included
        return v.isoformat()
    if isinstance(v, float) and math.isfinite(v):
        v = float(f"{v:.6g}")  # keeps reports readable: 57749.6, not 57749.62685887497
    return repr(v)


def _fmt_bound(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _examples(values: pd.Series) -> str:
    head = values.iloc[:1000]
    try:
        picked = list(pd.unique(head.to_numpy(dtype=object)))[:_MAX_EXAMPLES]
    except TypeError:  # unhashable values (lists, dicts) in an object column
        picked = list(head.iloc[:_MAX_EXAMPLES])
    return f" (e.g. {', '.join(_fmt_value(v) for v in picked)})" if picked else ""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------------


def available_contracts(contracts_dir: str | os.PathLike) -> list[str]:
    """Names of the contracts in a folder (none when it does not exist)."""
    folder = Path(contracts_dir)
    if not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})


def load_contract(
    name_or_path: str | os.PathLike, contracts_dir: str | os.PathLike | None = None
) -> Contract:
    """Loads a contract from a path (`.yaml`/`.yml`, or anything with a `/`), or by bare name from
    `contracts_dir`, which callers pass explicitly (`Settings.contracts_dir`): which contract a run
    reads never depends on the folder it was started in."""
    text = os.fspath(name_or_path)
    if Path(text).suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not Path(text).is_file():
            raise ContractError(f"{text}: contract file not found")
        return Contract.from_yaml(text)
    if contracts_dir is None:
        raise ContractError(
            f"contract {text!r}: a bare name is looked up in contracts_dir (e.g. Settings.contracts_dir); "
            "pass contracts_dir or a path to the .yaml file"
        )
    folder = Path(contracts_dir)
    for suffix in (".yaml", ".yml"):
        if (candidate := folder / f"{text}{suffix}").is_file():
            return Contract.from_yaml(candidate)
    listing = ", ".join(available_contracts(folder)) or "none"
    raise ContractError(f"contract {text!r} not found in {folder} (available: {listing})")
