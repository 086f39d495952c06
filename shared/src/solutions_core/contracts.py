"""Data contracts: one YAML file per dataset, the single source of truth for a table.

The training pipeline validates DataFrames against a contract before anything is trained
(`solutions validate`), and the REST server derives its request model, its per-instance checks and its
JSON Schema from the same file, so a request that breaks the contract is rejected naming the field. The
file format is specified in `data_contracts/README.md`.

Each rule is declared once, in `_VALUE_RULES` (min, max, pattern, allowed) or by one parameter of both
compilers (missing, type, nullable, unique, unexpected), and compiled twice:

- tables: a `pandera` DataFrameSchema, validated lazily so every violation is reported in one pass;
- requests: a strict `pydantic` model per contract, which also writes the request JSON Schema.

This module deliberately imports neither TensorFlow nor Keras, and pandera only when a table is first
validated: the CLI and the server import it, and they must start in well under a second.
"""

from __future__ import annotations

import datetime as _dt
import keyword
import math
import numbers
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

import annotated_types
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
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic.types import AllowInfNan
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

__all__ = [
    "ColumnSpec",
    "Contract",
    "ContractError",
    "ContractViolation",
    "ValidationReport",
    "Violation",
    "available_contracts",
    "load_contract",
    "TYPES",
    "ROLES",
    "RULES",
]

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

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this column (without its name), omitting keys left at their defaults."""
        out: dict[str, Any] = {"type": self.type}
        if self.nullable:
            out["nullable"] = True
        if self.unique:
            out["unique"] = True
        if self.role != "feature":
            out["role"] = self.role
        if self.serving != (self.role == "feature"):
            out["serving"] = self.serving
        for key in ("min", "max", "pattern"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        if self.description:
            out["description"] = self.description
        return out


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
        return not any(v.severity == "error" for v in self.violations)

    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    def format(self) -> str:
        header = f"Contract {self.contract} v{self.version}: {self.rows:,} rows checked"
        if not self.violations:
            return f"{header}\nOK: no violations"
        titles = ("column", "rule", "severity", "bad_rows", "detail")
        rows = [(v.column, v.rule, v.severity, f"{v.count:,}", v.detail) for v in self.violations]
        widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles[:4])]

        def line(cells: tuple[str, ...]) -> str:
            col, rule, sev, count, detail = cells
            return (
                f"{col:<{widths[0]}}  {rule:<{widths[1]}}  {sev:<{widths[2]}}  "
                f"{count:>{widths[3]}}  {detail}"
            ).rstrip()

        n_err, n_warn = len(self.errors()), len(self.warnings())
        status = "FAILED" if n_err else "OK"
        summary = f"{status}: {_plural(n_err, 'error')}, {_plural(n_warn, 'warning')}"
        return "\n".join([header, line(titles), *(line(r) for r in rows), summary])

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
#
# A table is checked by a pandera DataFrameSchema and a request instance by a strict pydantic model;
# both are compiled from the two tables below, `_TYPES` (the type rule) and `_VALUE_RULES` (min, max,
# pattern, allowed). The other rules are one parameter on each side: missing (pandera's required
# columns, pydantic's required fields), nullable (`nullable=`, `X | None`), unique (tables only: it is a
# property of many rows) and unexpected (pandera's `strict`, pydantic's `extra="forbid"`).


def _pandera() -> Any:
    # pandera takes ~0.4 s to import and only table validation needs it: the server's request path and
    # `solutions list` never pay for it.
    import pandera.pandas

    return pandera.pandas


@dataclass(frozen=True)
class _Type:
    """One contract type, as tables and requests hold it.

    pandera's own type handling does not fit contracts: its dtype check is all or nothing per column,
    and a failed `coerce=True` leaves the column unconverted for the other checks, which then raise or
    double-count. Contracts are lenient about representation (numeric strings, 0/1 booleans, ISO
    strings, tz-aware times) and count bad values row by row. So `to_table` converts a column to
    `dtype`, the dtype pandera then checks, with NA where a value cannot be represented and the mask of
    those rows (the `type` violations), or returns None when the column's dtype cannot hold the type at
    all. Requests use pydantic's strict `python` type, after `parse` where JSON needs one.
    """

    dtype: str
    to_table: Callable[[pd.Series], tuple[Any, np.ndarray] | None]
    python: Any
    parse: Callable[[Any], Any] | None = None
    hint: str = ""  # why a whole column's dtype is wrong, when that is not obvious


@dataclass(frozen=True)
class _ValueRule:
    """A rule on the values of one column: `table` builds its pandera Check (named after the rule, which
    is how a failure finds its way back into the report), `request` its pydantic metadata (from which
    pydantic validates and writes the JSON Schema), and `broken` says what a failing value is."""

    name: str
    applies: Callable[[ColumnSpec], bool]
    table: Callable[[ColumnSpec], Any]
    request: Callable[[ColumnSpec], Any]
    broken: Callable[[ColumnSpec], str]


# ---- the type rule on tables: each returns (values as `dtype` with NA where bad, bad) or None --------


def _numbers(s: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """float64 values of a numeric or text column (NaN where null or not a number), and the mask of
    the values that are not numbers."""
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
        # to_numeric turns True into 1; a boolean is not a number in a contract.
        parsed = parsed.mask(objects.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool))
    values = parsed.to_numpy(dtype="float64", na_value=np.nan)
    return values, np.isnan(values) & s.notna().to_numpy()


def _as_float(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    return _numbers(s)


def _as_integer(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.array.astype("Int64"), np.zeros(len(s), dtype=bool)
    converted = _numbers(s)
    if converted is None:
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
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        flags = pd.Series(values).map({0.0: False, 1.0: True})
    else:
        objects = _objects(s)
        if pd.api.types.infer_dtype(objects, skipna=True) in ("boolean", "empty"):
            return pd.array(objects.to_numpy(dtype=object), dtype="boolean"), np.zeros(len(s), dtype=bool)
        words = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
        flags = objects.astype(str).str.strip().str.lower().map(words)
    bad = flags.isna().to_numpy() & s.notna().to_numpy()
    return pd.array(flags.to_numpy(dtype=object), dtype="boolean"), bad


def _as_string(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)) and not (
        isinstance(s.dtype, pd.CategoricalDtype)
    ):
        return None
    objects = _objects(s)
    values = objects.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(objects, skipna=True) in ("string", "empty"):
        return values, np.zeros(len(s), dtype=bool)
    bad = ~objects.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool) & s.notna().to_numpy()
    return np.where(bad, None, values), bad


def _as_timestamp(s: pd.Series) -> tuple[Any, np.ndarray] | None:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        stamps = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dtype, "tz", None) else s
        if stamps.dtype == "datetime64[ns]":
            return stamps.to_numpy(), np.zeros(len(s), dtype=bool)
        # Other units reach beyond what nanoseconds can hold (years 1677-2262); such dates cannot be
        # compared with the others, so they count as type failures rather than crash the check.
        bad = (stamps.notna() & ~stamps.between(pd.Timestamp.min, pd.Timestamp.max)).to_numpy()
        return stamps.mask(bad).dt.as_unit("ns").to_numpy(), bad
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return None
    objects = _objects(s)
    if pd.api.types.infer_dtype(objects, skipna=True) not in ("string", "datetime", "datetime64", "date", "empty"):
        # Integers would be read as epoch nanoseconds; only strings and date/times are timestamps here.
        objects = objects.mask(objects.map(lambda v: isinstance(v, (numbers.Number, np.bool_))).to_numpy(bool))
    parsed = pd.to_datetime(objects, errors="coerce", utc=True, format="ISO8601")
    stamps = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]", copy=True)
    null = s.isna().to_numpy()
    failed = np.isnat(stamps) & ~null
    if failed.any():
        # Rare non-ISO spellings ("01/02/2024"): parse only the leftovers with the slow mixed parser.
        retry = pd.to_datetime(objects[failed], errors="coerce", utc=True, format="mixed")
        stamps[failed] = retry.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return stamps, np.isnat(stamps) & ~null


def _objects(s: pd.Series) -> pd.Series:
    return s.astype(object) if isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype)) else s


# ---- the type rule on requests -----------------------------------------------------------------------


def _integral_float_as_int(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer and many clients send one; 2.5 is not."""
    if type(value) is not float:
        return value
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "expected a finite number")
    if not value.is_integer():
        raise PydanticCustomError("int_from_float", "expected an integer")
    return int(value)


def _request_timestamp(value: Any) -> Any:
    """An ISO-8601 string or epoch seconds, as a naive UTC datetime (what bounds compare against)."""
    if value is None:
        return value
    try:
        if isinstance(value, str):
            stamp = _dt.datetime.fromisoformat(value)
        elif _is_number(value):
            stamp = _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
        else:
            raise TypeError
    except (ValueError, TypeError, OverflowError, OSError):
        raise PydanticCustomError("timestamp_type", "expected an ISO-8601 timestamp or epoch seconds") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return stamp


_TYPES = {
    "string": _Type("object", _as_string, str),
    "integer": _Type("Int64", _as_integer, int, parse=_integral_float_as_int),
    "float": _Type("float64", _as_float, Annotated[float, AllowInfNan(False)]),
    "boolean": _Type("boolean", _as_boolean, bool),
    "timestamp": _Type(
        "datetime64[ns]",
        _as_timestamp,
        # JSON Schema cannot bound a date-time string: `_request_description` states the bounds.
        Annotated[_dt.datetime, WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]})],
        parse=_request_timestamp,
        hint=" (store datetime64 or ISO-8601 strings; epoch numbers are ambiguous)",
    ),
}


# ---- the value rules ---------------------------------------------------------------------------------


def _bound(spec: ColumnSpec, value: Any) -> Any:
    """A min/max in the form both engines compare with: naive UTC datetimes for timestamps."""
    return _naive_utc(pd.Timestamp(value)).to_pydatetime() if spec.type == "timestamp" else value


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


class _OneOf:
    """`allowed` for requests: the column's strict type first, then `Literal[...]`. Literal compares
    with ==, and in Python True == 1 == 1.0, so on its own it would let a boolean through
    `allowed: [0, 1]`."""

    def __init__(self, values: tuple):
        self.values = values

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.chain_schema([handler(source), handler.generate_schema(Literal[self.values])])

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "enum": list(self.values)}


def _not_allowed(spec: ColumnSpec) -> str:
    shown = ", ".join(map(str, spec.allowed[:8])) + (", ..." if len(spec.allowed) > 8 else "")
    return f"not in allowed [{shown}]"


# In request-annotation order: pydantic applies Annotated metadata inside out, so the bounds and the
# pattern must come before `allowed`'s chain to land in the type's own schema (and JSON Schema).
_VALUE_RULES = (
    _ValueRule(
        "min",
        applies=lambda c: c.min is not None,
        table=lambda c: _pandera().Check.ge(_bound(c, c.min), name="min"),
        request=lambda c: annotated_types.Ge(_bound(c, c.min)),
        broken=lambda c: f"below min {_fmt_bound(c.min)}",
    ),
    _ValueRule(
        "max",
        applies=lambda c: c.max is not None,
        table=lambda c: _pandera().Check.le(_bound(c, c.max), name="max"),
        request=lambda c: annotated_types.Le(_bound(c, c.max)),
        broken=lambda c: f"above max {_fmt_bound(c.max)}",
    ),
    _ValueRule(
        "pattern",
        applies=lambda c: c.pattern is not None,
        # Contract patterns match the whole value. Tables use Python's re; requests pydantic's Rust
        # regex, which is linear-time on user input and whose `$` (like JSON Schema's) ends the text.
        table=lambda c: _pandera().Check(lambda s: s.str.fullmatch(c.pattern, na=True), name="pattern"),
        request=lambda c: StringConstraints(pattern=_anchored(c.pattern)),
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


class _Untitled(GenerateJsonSchema):
    """Property names already are the column names; pydantic's generated titles only add noise."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


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


def _loc(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _structure_problems(err: ValidationError) -> list[str]:
    top_keys = ", ".join(_ContractModel.model_fields)
    col_keys = ", ".join(_ColumnModel.model_fields)
    messages = []
    for e in err.errors():
        loc, kind = tuple(e["loc"]), e["type"]
        if kind == "extra_forbidden":
            allowed = col_keys if len(loc) == 3 and loc[0] == "columns" else top_keys
            messages.append(f"{_loc(loc)}: unknown key {loc[-1]!r} (allowed keys: {allowed})")
        elif kind == "missing":
            messages.append(f"{_loc(loc)}: missing required key {loc[-1]!r}")
        elif kind == "literal_error":
            expected = e["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
            messages.append(f"{_loc(loc)}: unknown {loc[-1]} {e.get('input')!r} (expected one of: {expected})")
        elif kind in ("model_type", "dict_type"):
            messages.append(f"{_loc(loc)}: must be a mapping, got {e.get('input')!r}")
        else:
            messages.append(f"{_loc(loc)}: {e['msg']} (got {e.get('input')!r})")
    return messages


_ALLOWED_VALUES = {
    "string": (lambda v: isinstance(v, str), "strings (quote values like yes/no/1 in YAML)"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
    "float": (lambda v: _is_number(v), "numbers"),
    "boolean": (lambda v: isinstance(v, bool), "true/false"),
}


def _column_spec(name: str, col: _ColumnModel, problems: list[str]) -> ColumnSpec:
    """The cross-field checks pydantic cannot express (bounds, allowed values and pattern that fit the
    column's type), appending to `problems`; returns the column with its values normalised."""
    where = f"columns.{name}"
    bounds: dict[str, Any] = {"min": None, "max": None}
    for key in bounds:
        value = getattr(col, key)
        if value is None:
            continue
        if col.type in ("integer", "float"):
            if _is_number(value) and not (isinstance(value, float) and math.isnan(value)):
                bounds[key] = value
            else:
                problems.append(f"{where}.{key}: must be a number for a {col.type} column, got {value!r}")
        elif col.type == "timestamp":
            if isinstance(value, (_dt.date, _dt.datetime)):  # unquoted YAML dates: keep the ISO text
                value = value.isoformat()
            if isinstance(value, str) and _parses_as_timestamp(value):
                bounds[key] = value
            else:
                problems.append(
                    f"{where}.{key}: must be an ISO-8601 date/time for a timestamp column, got {value!r}"
                )
        else:
            problems.append(f"{where}.{key}: not supported for {col.type} columns (only integer, float, timestamp)")
    lo, hi = bounds["min"], bounds["max"]
    if lo is not None and hi is not None:
        if (pd.Timestamp(lo) > pd.Timestamp(hi)) if col.type == "timestamp" else lo > hi:
            problems.append(f"{where}: min {lo!r} is greater than max {hi!r}")

    allowed = None
    if col.allowed is not None:
        if col.type == "timestamp":
            problems.append(f"{where}.allowed: not supported for timestamp columns; use min/max")
        elif not col.allowed:
            problems.append(f"{where}.allowed: must list at least one value")
        else:
            fits, what = _ALLOWED_VALUES[col.type]
            bad = [v for v in col.allowed if not fits(v)]
            if bad:
                problems.append(f"{where}.allowed: values of a {col.type} column must be {what}, got {bad[:3]!r}")
            else:
                allowed = tuple(col.allowed)

    serving = col.serving if col.serving is not None else col.role == "feature"
    if col.pattern is not None:
        if col.type != "string":
            problems.append(f"{where}.pattern: only supported for string columns, not {col.type}")
        else:
            problems.extend(f"{where}.pattern: {p}" for p in _pattern_problems(col.pattern, serving))

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
    )


def _pattern_problems(pattern: str, serving: bool) -> list[str]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"invalid regular expression {pattern!r}: {exc}"]
    if serving:  # requests check it with the Rust regex engine, which has no look-around or backreferences
        try:
            SchemaValidator(core_schema.str_schema(pattern=_anchored(pattern)))
        except Exception as exc:  # pydantic_core.SchemaError, whose text explains the regex error
            reason = str(exc).strip().splitlines()[-1]
            return [f"{pattern!r} is not supported for request checks ({reason})"]
    return []


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
    # The compiled table schema and request models, built on first use.
    _compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Pipeline artifacts are pickled; dynamic models and lambda checks do not pickle, and are
        # cheap to compile again.
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
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ContractError(f"{path}: invalid YAML: {exc}") from exc
        return cls.from_dict(data, path=path)

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike | None = None) -> Contract:
        path = Path(path) if path is not None else None
        source = str(path) if path is not None else "<contract>"

        def fail(problems: list[str]) -> ContractError:
            if len(problems) == 1:
                return ContractError(f"{source}: {problems[0]}")
            listing = "\n".join(f"  - {p}" for p in problems)
            return ContractError(f"{source}: {len(problems)} problems:\n{listing}")

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
            problems.append(f"version: {model.version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        if not model.columns:
            problems.append("columns: must define at least one column")

        columns: dict[str, ColumnSpec] = {}
        for name, col in model.columns.items():
            if not isinstance(name, str) or not name:
                problems.append(f"columns: column name {name!r} must be a non-empty string (quote it in YAML)")
            else:
                columns[name] = _column_spec(name, col, problems)

        labels = [c.name for c in columns.values() if c.role == "label"]
        if len(labels) > 1:
            problems.append(f"columns: at most one column may have role label, found {labels}")
        if model.time_column is not None:
            tc = columns.get(model.time_column)
            if tc is None:
                problems.append(f"time_column: {model.time_column!r} is not one of the columns")
            elif tc.type != "timestamp":
                problems.append(f"time_column: column {model.time_column!r} must have type timestamp, not {tc.type}")
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
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "owner": self.owner,
            "description": self.description,
        }
        if self.time_column is not None:
            out["time_column"] = self.time_column
        if self.strict:
            out["strict"] = True
        out["columns"] = {name: spec.to_dict() for name, spec in self.columns.items()}
        return out

    # ---- introspection -----------------------------------------------------------------------------

    def feature_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.role == "feature"]

    def label_column(self) -> str | None:
        return next((c.name for c in self.columns.values() if c.role == "label"), None)

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
        """The pandera DataFrameSchema of this contract, for tables already in the contract's dtypes
        (`validate` converts them first)."""
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
            # strict=True so pandera reports every column outside the contract; the contract's own
            # `strict` only decides whether that is an error or a warning.
            schema = pa.DataFrameSchema(columns, strict=True, name=f"{self.name} v{self.version}")
            self._compiled["table"] = schema
        return self._compiled["table"]

    def validate(self, frame: pd.DataFrame) -> ValidationReport:
        """Checks every rule on every column and reports all violations; bad data never raises here,
        because the point is to show the user everything that needs fixing at once."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"validate() needs a pandas DataFrame, got {type(frame).__name__}")
        if frame.columns.has_duplicates:
            dups = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise ValueError(f"DataFrame has duplicate column names {dups}; cannot validate it")
        schema = self.table_schema()
        pa = _pandera()
        n = len(frame)

        # The type rule runs first (see `_Type`); pandera checks the others on the converted table,
        # indexed by position so that its failure cases can be told apart from the type failures.
        violations: list[Violation] = []
        table: dict[Any, Any] = {}
        not_typed: dict[str, np.ndarray] = {}
        for name in frame.columns:
            spec = self.columns.get(name)
            if spec is None:
                table[name] = frame[name].array  # only its name matters: pandera reports it as unexpected
                continue
            violation, table[name], not_typed[name] = _table_type(spec, frame[name])
            if violation is not None:
                violations.append(violation)
        # PANDERA_VALIDATION_ENABLED/_DEPTH would otherwise switch checks off without a word.
        with pa.config.config_context(validation_enabled=True, validation_depth="SCHEMA_AND_DATA"):
            try:
                schema.validate(pd.DataFrame(table, copy=False), lazy=True, inplace=True)
            except pa.errors.SchemaErrors as exc:
                for error in exc.schema_errors:
                    violation = self._violation(error, n, not_typed)
                    if violation is not None:
                        violations.append(violation)

        order = {name: i for i, name in enumerate([*self.columns, *frame.columns.difference(self.columns, sort=False)])}
        violations.sort(key=lambda v: (order.get(v.column, len(order)), RULES.index(v.rule)))
        return ValidationReport(self.name, self.version, n, tuple(violations))

    def _violation(self, error: Any, n: int, not_typed: dict[str, np.ndarray]) -> Violation | None:
        """One pandera failure (one column and one check) as a Violation, or None when every failing
        row was already reported as a type failure."""
        from pandera.errors import SchemaErrorReason as Reason

        if error.reason_code == Reason.COLUMN_NOT_IN_DATAFRAME:
            return Violation(str(error.failure_cases), "missing", n, "column is missing from the table")
        if error.reason_code == Reason.COLUMN_NOT_IN_SCHEMA:
            severity = "error" if self.strict else "warning"
            return Violation(str(error.failure_cases), "unexpected", n, "column is not in the contract", severity)

        spec = self.columns[error.schema.name]
        cases = error.failure_cases
        if not isinstance(cases, pd.DataFrame):  # a check that raised: a bug here rather than bad data
            return Violation(spec.name, getattr(error.check, "name", None) or "type", n, str(error))
        if error.reason_code == Reason.SERIES_CONTAINS_NULLS:
            rule, what = "nullable", ("null value", "in a non-nullable column")
            if spec.name in not_typed:  # values that are NA only because their type is wrong
                cases = cases[~not_typed[spec.name][cases["index"].to_numpy(dtype=np.int64)]]
        elif error.reason_code == Reason.SERIES_CONTAINS_DUPLICATES:
            rule, what = "unique", ("duplicate row", "beyond the first occurrence")
            cases = cases[cases["failure_case"].notna()]  # nulls are not values, so never duplicates
        else:
            rule = error.check.name
            what = ("value", next(r.broken(spec) for r in _VALUE_RULES if r.name == rule))
        if cases.empty:
            return None
        examples = "" if rule == "nullable" else _examples(cases["failure_case"])
        return Violation(spec.name, rule, len(cases), f"{_plural(len(cases), what[0])} {what[1]}{examples}")

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
        `allow_missing` are contract fields a request may omit (a server fills them in). Cached."""
        return self._request(frozenset(extra_fields), frozenset(allow_missing))[0]

    def _request(self, extra_fields: frozenset[str], allow_missing: frozenset[str]) -> tuple[type[BaseModel], TypeAdapter]:
        key = ("request", extra_fields, allow_missing)
        if key not in self._compiled:
            model = _request_model(self, extra_fields, allow_missing)
            self._compiled[key] = (model, TypeAdapter(list[model]))
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
        self,
        *,
        extra_fields: Iterable[str] = frozenset(),
        allow_missing: Iterable[str] = frozenset(),
    ) -> dict[str, Any]:
        """JSON Schema (2020-12 / OpenAPI 3.1) for one request instance: the request model's own, so
        the API docs can never drift from what `validate_records` enforces."""
        model = self.request_model(extra_fields, allow_missing)
        return model.model_json_schema(schema_generator=_Untitled)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    """The one representation all timestamp comparisons use: tz-aware values are converted to UTC."""
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _table_type(spec: ColumnSpec, s: pd.Series) -> tuple[Violation | None, Any, np.ndarray]:
    """The type rule on one column: its violation (or None), its values in the contract's dtype (NA
    where null or bad) and the mask of the bad rows."""
    kind = _TYPES[spec.type]
    converted = kind.to_table(s)
    if converted is None:
        bad = s.notna().to_numpy()
        values = pd.array([None] * len(s), dtype=kind.dtype)
        detail = f"column dtype {s.dtype} cannot hold {spec.type} values{kind.hint}"
    else:
        values, bad = converted
        detail = f"{_plural(int(bad.sum()), 'value')} not convertible to {spec.type}"
    if not bad.any():
        return None, values, bad
    examples = _examples(s.iloc[np.flatnonzero(bad)[:1000]])
    return Violation(spec.name, "type", int(bad.sum()), detail + examples), values, bad


# --------------------------------------------------------------------------------------------------
# Requests: the model and its messages
# --------------------------------------------------------------------------------------------------


def _request_type(spec: ColumnSpec) -> Any:
    """The annotation of one serving column: its strict type with every value rule's metadata."""
    kind = _TYPES[spec.type]
    metadata = [rule.request(spec) for rule in _VALUE_RULES if rule.applies(spec)]
    if kind.parse is not None:  # listed last, so it wraps the others and runs first
        metadata.append(BeforeValidator(kind.parse))
    annotation = Annotated[(kind.python, *metadata)] if metadata else kind.python
    return annotation | None if spec.nullable else annotation


def _request_description(spec: ColumnSpec) -> str | None:
    if spec.type != "timestamp":
        return spec.description or None
    bounds = [f"{k} {getattr(spec, k)}" for k in ("min", "max") if getattr(spec, k) is not None]
    note = "ISO-8601 string or epoch seconds" + (f"; {', '.join(bounds)}" if bounds else "")
    return f"{spec.description} ({note})" if spec.description else note


def _attribute(name: str, index: int) -> str:
    """A Python attribute for a column (the column name itself is the alias requests use): names that
    are not identifiers, or that BaseModel already uses (`copy`, `json`...), get a neutral one."""
    usable = name.isidentifier() and not name.startswith("_") and not hasattr(BaseModel, name)
    return name if usable and not keyword.iskeyword(name) else f"field_{index}"


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _request_model(contract: Contract, extra_fields: frozenset[str], allow_missing: frozenset[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for index, spec in enumerate(contract.request_columns()):
        if spec.nullable:
            default: dict[str, Any] = {"default": None}
        elif spec.name in allow_missing:
            # May be omitted, but not sent as null; "default": null would claim otherwise in the schema.
            default = {"default": None, "json_schema_extra": _drop_default}
        else:
            default = {}
        description = _request_description(spec)
        fields[_attribute(spec.name, index)] = (
            _request_type(spec),
            Field(alias=spec.name, description=description, **default),
        )
    served = {spec.name for spec in contract.request_columns()}
    for index, name in enumerate(sorted(extra_fields - served), start=len(fields)):
        fields[_attribute(name, index)] = (Any, Field(None, alias=name))

    words = re.split(r"[^0-9A-Za-z]+", contract.name)
    return create_model(
        "".join(w[:1].upper() + w[1:] for w in words) + "Instance",
        __config__=ConfigDict(strict=True, extra="forbid", title=f"{contract.name} instance"),
        __doc__=f"One instance for a model trained on contract {contract.name} v{contract.version}.",
        __module__=__name__,
        **fields,
    )


_REQUEST_MESSAGES = {
    "float_type": "expected a number, got {got}",
    "int_type": "expected an integer, got {got}",
    "int_from_float": "expected an integer, got {value}",
    "bool_type": "expected true or false, got {got}",
    "string_type": "expected a string, got {got}",
    "timestamp_type": "expected an ISO-8601 timestamp string or epoch seconds, got {got}",
    "finite_number": "expected a finite number, got {value}",
    "greater_than_equal": "{value} is below min {min}",
    "less_than_equal": "{value} is above max {max}",
    "literal_error": "{value} is not one of {allowed}",
    "string_pattern_mismatch": "{value} does not match pattern {pattern}",
}


def _request_problem(contract: Contract, records: Any, error: dict[str, Any]) -> str:
    """One pydantic error as `instances[i].field: what is wrong`, in the contract's words."""
    loc, kind = error["loc"], error["type"]
    if not loc:
        return f"instances: expected a list of objects, got {_json_type(records)}"
    where = f"instances[{loc[0]}]"
    if len(loc) == 1:
        return f"{where}: expected an object, got {_json_type(error['input'])}"
    name = loc[1]
    if kind == "missing":
        return f"{where}: missing required field {name!r}"
    if kind == "extra_forbidden":
        return f"{where}.{name}: unknown field"
    value = records[loc[0]][name]  # as sent: the error's input may already be parsed (timestamps)
    spec = contract.columns[name]
    template = _REQUEST_MESSAGES.get(kind)
    if value is None and kind.endswith("_type"):
        message = "null is not allowed"
    elif template is None:
        message = error["msg"]
    else:
        message = template.format(
            value=_fmt_value(value),
            got=_json_type(value),
            min=_fmt_bound(spec.min),
            max=_fmt_bound(spec.max),
            allowed=list(spec.allowed or ()),
            pattern=spec.pattern,
        )
    return f"{where}.{name}: {message}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"boolean {str(bool(value)).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if _is_number(value):
        return f"number {value!r}"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Report formatting
# --------------------------------------------------------------------------------------------------


def _fmt_value(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (pd.Timestamp, _dt.datetime)):
        return v.isoformat()
    if isinstance(v, float) and math.isfinite(v):
        v = float(f"{v:.6g}")  # keeps reports readable: 57749.6, not 57749.62685887497
    return repr(v)


def _fmt_bound(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


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
    """Names of the contracts in a folder (empty when it does not exist)."""
    folder = Path(contracts_dir)
    if not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})


def load_contract(name_or_path: str | os.PathLike, contracts_dir: str | os.PathLike | None = None) -> Contract:
    """Loads a contract from a path (`.yaml`/`.yml`, or anything with a `/`), or by bare name from
    `contracts_dir` (callers pass `Settings.contracts_dir`: lookup never depends on the working
    directory, so a run reads the same contract wherever it is started)."""
    text = os.fspath(name_or_path)
    as_path = Path(text)
    if as_path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not as_path.is_file():
            raise ContractError(f"{as_path}: contract file not found")
        return Contract.from_yaml(as_path)

    if contracts_dir is None:
        raise ContractError(
            f"contract {text!r}: a bare name needs contracts_dir (e.g. Settings.contracts_dir); "
            f"pass contracts_dir or a path to the .yaml file"
        )
    folder = Path(contracts_dir)
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return Contract.from_yaml(candidate)
    listing = ", ".join(available_contracts(folder)) or "none"
    raise ContractError(f"contract {text!r} not found in {folder} (available: {listing})")
