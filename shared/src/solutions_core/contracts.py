"""Data contracts: one YAML file per dataset, the single source of truth for a table.

The training pipeline validates DataFrames against a contract before anything is trained
(`solutions validate`), and the REST server derives its request schema and per-instance checks from the
same file, so a request that breaks the contract is rejected naming the field. The file format is
specified in `data_contracts/README.md`.

This module deliberately imports neither TensorFlow nor Keras: the CLI's `list`/`validate` commands and
the server import it, and they must start in well under a second.
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from pydantic import ValidationError as _PydanticValidationError

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

_JSON_TYPES = {"string": "string", "integer": "integer", "float": "number", "boolean": "boolean"}
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
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        if self.pattern is not None:
            out["pattern"] = self.pattern
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
        n_err, n_warn = len(self.errors()), len(self.warnings())
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

        status = "FAILED" if n_err else "OK"
        summary = f"{status}: {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}"
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
    """Raised by `Contract.check`/`coerce`: the data breaks the contract. Keeps the full report so
    callers (CLI, registry) can render or store it."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.format())


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
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _loc(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _pydantic_messages(err: _PydanticValidationError) -> list[str]:
    top_keys = ", ".join(_ContractModel.model_fields)
    col_keys = ", ".join(_ColumnModel.model_fields)
    messages = []
    for e in err.errors():
        loc = tuple(e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = col_keys if len(loc) == 3 and loc[0] == "columns" else top_keys
            messages.append(f"{_loc(loc)}: unknown key {loc[-1]!r} (allowed keys: {allowed})")
        elif kind == "missing":
            messages.append(f"{_loc(loc)}: missing required key {loc[-1]!r}")
        elif kind == "literal_error":
            expected = ", ".join(e["ctx"]["expected"].replace("'", "").replace(" or ", ", ").split(", "))
            messages.append(f"{_loc(loc)}: unknown {loc[-1]} {e.get('input')!r} (expected one of: {expected})")
        elif kind in ("model_type", "dict_type"):
            messages.append(f"{_loc(loc)}: must be a mapping, got {e.get('input')!r}")
        else:
            messages.append(f"{_loc(loc)}: {e['msg']} (got {e.get('input')!r})")
    return messages


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _to_timestamp(value: Any) -> pd.Timestamp:
    """Parses a contract bound or request value into a naive UTC timestamp, the one representation
    all comparisons use (tz-aware data is converted to UTC first)."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = value.isoformat()
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"{value!r} is not a timestamp")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


@lru_cache(maxsize=256)
def _bound_timestamp(value: str) -> pd.Timestamp:
    return _to_timestamp(value)


def _column_problems(name: str, col: _ColumnModel) -> tuple[dict[str, Any], list[str]]:
    """Cross-field checks pydantic cannot express; returns normalised bounds/allowed and problems."""
    where = f"columns.{name}"
    problems: list[str] = []
    out: dict[str, Any] = {"min": None, "max": None, "allowed": None}

    for key in ("min", "max"):
        value = getattr(col, key)
        if value is None:
            continue
        if col.type in ("integer", "float"):
            if not _is_number(value) or (isinstance(value, float) and math.isnan(value)):
                problems.append(f"{where}.{key}: must be a number for a {col.type} column, got {value!r}")
            else:
                out[key] = value
        elif col.type == "timestamp":
            # Unquoted YAML dates arrive as datetime.date/datetime; keep them as ISO strings.
            if isinstance(value, (_dt.date, _dt.datetime)):
                value = value.isoformat()
            try:
                if not isinstance(value, str):
                    raise ValueError
                _to_timestamp(value)
                out[key] = value
            except (ValueError, TypeError):
                problems.append(
                    f"{where}.{key}: must be an ISO-8601 date/time for a timestamp column, got {value!r}"
                )
        else:
            problems.append(
                f"{where}.{key}: not supported for {col.type} columns (only integer, float, timestamp)"
            )
    lo, hi = out["min"], out["max"]
    if lo is not None and hi is not None:
        lo_v, hi_v = (_to_timestamp(lo), _to_timestamp(hi)) if col.type == "timestamp" else (lo, hi)
        if lo_v > hi_v:
            problems.append(f"{where}: min {lo!r} is greater than max {hi!r}")

    if col.allowed is not None:
        if not col.allowed:
            problems.append(f"{where}.allowed: must list at least one value")
        checks = {
            "string": (lambda v: isinstance(v, str), "strings (quote values like yes/no/1 in YAML)"),
            "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "integers"),
            "float": (_is_number, "numbers"),
            "boolean": (lambda v: isinstance(v, bool), "true/false"),
        }
        if col.type == "timestamp":
            problems.append(f"{where}.allowed: not supported for timestamp columns; use min/max")
        else:
            ok, what = checks[col.type]
            bad = [v for v in col.allowed if not ok(v)]
            if bad:
                problems.append(
                    f"{where}.allowed: values of a {col.type} column must be {what}, got {bad[:3]!r}"
                )
            else:
                out["allowed"] = tuple(col.allowed)

    if col.pattern is not None:
        if col.type != "string":
            problems.append(f"{where}.pattern: only supported for string columns, not {col.type}")
        else:
            try:
                re.compile(col.pattern)
            except re.error as exc:
                problems.append(f"{where}.pattern: invalid regular expression {col.pattern!r}: {exc}")
    return out, problems


# --------------------------------------------------------------------------------------------------
# Column conversion shared by validate() and coerce()
# --------------------------------------------------------------------------------------------------


def _object_view(s: pd.Series) -> pd.Series:
    return s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s


def _is_bool_value(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _convert(spec: ColumnSpec, s: pd.Series, null: np.ndarray) -> tuple[pd.Series, np.ndarray, str]:
    """Converts a raw column to the contract type.

    Returns (values, bad, note): `values` holds the converted value wherever the row is neither null
    nor bad (anything elsewhere); `bad` marks non-null rows that cannot be represented in the contract
    type; `note` is a short explanation used when a whole column has the wrong dtype. Everything is
    vectorised: the per-element fallbacks only run on mixed-type object columns.
    """
    dtype = s.dtype
    none = np.zeros(len(s), dtype=bool)
    everything = ~null
    is_bool = pd.api.types.is_bool_dtype(dtype)
    is_num = pd.api.types.is_numeric_dtype(dtype) and not is_bool
    is_dt = pd.api.types.is_datetime64_any_dtype(dtype)
    wrong_dtype = f"column dtype {dtype} cannot hold {spec.type} values"

    if spec.type in ("float", "integer"):
        if is_bool or is_dt:
            return s, everything, wrong_dtype
        if is_num:
            if pd.api.types.is_integer_dtype(dtype):
                return s, none, ""
            values = pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index)
        else:
            obj = _object_view(s)
            inferred = pd.api.types.infer_dtype(obj, skipna=True)
            if inferred == "boolean":
                return s, everything, wrong_dtype
            values = pd.to_numeric(obj, errors="coerce")
            if inferred not in ("integer", "floating", "mixed-integer-float", "decimal", "empty", "string"):
                # to_numeric turns True into 1; a boolean is not a number in a contract.
                values = values.mask(obj.map(_is_bool_value).to_numpy(dtype=bool))
            if pd.api.types.is_integer_dtype(values.dtype):
                return values, none, ""
            values = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=s.index)
        bad = values.isna().to_numpy() & ~null
        if spec.type == "integer":
            arr = values.to_numpy()
            with np.errstate(invalid="ignore"):
                frac = ~np.isfinite(arr) | (np.floor(arr) != arr)
            bad = bad | (frac & ~null)
        return values, bad, ""

    if spec.type == "boolean":
        if is_bool:
            return s, none, ""
        if is_num:
            values = pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index)
            bad = ~values.isin([0.0, 1.0]).to_numpy() & ~null
            return values == 1.0, bad, ""
        if is_dt:
            return s, everything, wrong_dtype
        obj = _object_view(s)
        if pd.api.types.infer_dtype(obj, skipna=True) in ("boolean", "empty"):
            return obj, none, ""
        words = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
        values = obj.astype(str).str.strip().str.lower().map(words)
        return values, values.isna().to_numpy() & ~null, ""

    if spec.type == "string":
        if is_bool or is_num or is_dt:
            return s, everything, wrong_dtype
        obj = _object_view(s)
        if pd.api.types.infer_dtype(obj, skipna=True) in ("string", "empty"):
            return obj, none, ""
        is_str = obj.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        return obj, ~is_str & ~null, ""

    # timestamp
    if is_dt:
        values = s
        if getattr(dtype, "tz", None) is not None:
            values = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return values, none, ""
    if is_bool or is_num:
        hint = "store datetime64 or ISO-8601 strings; epoch numbers are ambiguous"
        return s, everything, f"{wrong_dtype} ({hint})"
    obj = _object_view(s)
    inferred = pd.api.types.infer_dtype(obj, skipna=True)
    if inferred not in ("string", "datetime", "datetime64", "date", "empty"):
        # Integers would be read as epoch nanoseconds; only strings and date/times are timestamps here.
        obj = obj.mask(obj.map(lambda v: _is_number(v) or _is_bool_value(v)).to_numpy(dtype=bool))
    parsed = pd.to_datetime(obj, errors="coerce", utc=True, format="ISO8601")
    stamps = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]", copy=True)
    failed = np.isnat(stamps) & ~null
    if failed.any():
        # Rare non-ISO spellings ("01/02/2024"): parse only the leftovers with the slow mixed parser.
        retry = pd.to_datetime(obj[failed], errors="coerce", utc=True, format="mixed")
        stamps[failed] = retry.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    values = pd.Series(stamps, index=s.index)
    return values, np.isnat(stamps) & ~null, ""


def _fmt_value(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, pd.Timestamp):
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


def _type_violation(spec: ColumnSpec, raw: pd.Series, bad: np.ndarray, note: str) -> Violation:
    k = int(bad.sum())
    text = note or f"{_plural(k, 'value')} not convertible to {spec.type}"
    return Violation(spec.name, "type", k, text + _examples(raw[bad]))


def _as_contract_dtype(spec: ColumnSpec, values: pd.Series, null: np.ndarray) -> pd.Series:
    """Converted values (from `_convert`, with no bad rows) in the dtype `Contract.coerce` promises."""
    if spec.type == "float":
        return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
    if spec.type == "integer":
        if not spec.nullable:
            return values.astype("int64")
        if pd.api.types.is_integer_dtype(values.dtype):
            return values.astype("Int64")
        return values.astype("Float64").astype("Int64")  # float -> Int64 needs the nullable float step
    if spec.type == "boolean":
        if spec.nullable:
            return values.astype(object).where(~null, None).astype("boolean")
        return values.astype(bool)
    if spec.type == "timestamp":
        return values.astype("datetime64[ns]")
    # string: plain Python str objects with None for nulls, whatever dtype (object, "string",
    # category) the column was read with, so downstream code sees one representation.
    return values.astype(object).where(~null, None)


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
        except _PydanticValidationError as exc:
            raise fail(_pydantic_messages(exc)) from None

        problems: list[str] = []
        if path is not None and model.name != path.stem:
            problems.append(f"name: {model.name!r} must equal the file stem {path.stem!r}")
        if not model.name.strip():
            problems.append("name: must not be empty")
        version = model.version
        if not isinstance(version, str):
            problems.append(
                f"version: must be a semantic version string like 1.0.0, got {version!r} "
                "(quote it in YAML if it looks like a number)"
            )
        elif not _SEMVER.match(version):
            problems.append(f"version: {version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        if not model.columns:
            problems.append("columns: must define at least one column")

        columns: dict[str, ColumnSpec] = {}
        for raw_name, col in model.columns.items():
            if not isinstance(raw_name, str) or not raw_name:
                problems.append(
                    f"columns: column name {raw_name!r} must be a non-empty string (quote it in YAML)"
                )
                continue
            normalised, col_problems = _column_problems(raw_name, col)
            problems.extend(col_problems)
            columns[raw_name] = ColumnSpec(
                name=raw_name,
                type=col.type,
                nullable=col.nullable,
                unique=col.unique,
                role=col.role,
                serving=col.serving if col.serving is not None else col.role == "feature",
                min=normalised["min"],
                max=normalised["max"],
                allowed=normalised["allowed"],
                pattern=col.pattern,
                description=col.description,
            )

        labels = [c.name for c in columns.values() if c.role == "label"]
        if len(labels) > 1:
            problems.append(f"columns: at most one column may have role label, found {labels}")
        if model.time_column is not None:
            tc = columns.get(model.time_column)
            if tc is None:
                problems.append(f"time_column: {model.time_column!r} is not one of the columns")
            elif tc.type != "timestamp":
                problems.append(
                    f"time_column: column {model.time_column!r} must have type timestamp, not {tc.type}"
                )
        if problems:
            raise fail(problems)

        return cls(
            name=model.name,
            version=version,
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

    # ---- batch validation ----------------------------------------------------------------------------

    def validate(self, frame: pd.DataFrame) -> ValidationReport:
        """Checks every rule on every column and reports all violations; bad data never raises here,
        because the point is to show the user everything that needs fixing at once."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"validate() needs a pandas DataFrame, got {type(frame).__name__}")
        n = len(frame)
        violations: list[Violation] = []
        present = set(frame.columns)
        if frame.columns.has_duplicates:
            dups = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise ValueError(f"DataFrame has duplicate column names {dups}; cannot validate it")

        for spec in self.columns.values():
            if spec.name not in present:
                violations.append(Violation(spec.name, "missing", n, "column is missing from the table"))
                continue
            violations.extend(self._validate_column(spec, frame[spec.name]))

        extra = [c for c in frame.columns if c not in self.columns]
        severity = "error" if self.strict else "warning"
        for col in extra:
            violations.append(
                Violation(str(col), "unexpected", n, "column is not in the contract", severity=severity)
            )
        return ValidationReport(self.name, self.version, n, tuple(violations))

    def _validate_column(self, spec: ColumnSpec, s: pd.Series) -> list[Violation]:
        out: list[Violation] = []
        null = s.isna().to_numpy()
        values, bad, note = _convert(spec, s, null)
        if bad.any():
            out.append(_type_violation(spec, s, bad, note))
        n_null = int(null.sum())
        if n_null and not spec.nullable:
            text = f"{_plural(n_null, 'null value')} in a non-nullable column"
            out.append(Violation(spec.name, "nullable", n_null, text))

        # Value rules only look at rows that are present and of the right type, so one bad value is
        # reported once, under the rule that explains it.
        valid = ~null & ~bad
        if not valid.any():
            return out
        good = values[valid]

        def flag(rule: str, mask: Any, noun: str, what: str = "") -> None:
            mask = np.asarray(mask, dtype=bool)
            k = int(mask.sum())
            if k:
                text = _plural(k, noun) + (f" {what}" if what else "")
                out.append(Violation(spec.name, rule, k, text + _examples(good[mask])))

        if spec.unique:
            try:
                flag("unique", good.duplicated(keep="first"), "duplicate row", "beyond the first occurrence")
            except TypeError:  # unhashable objects: already reported as type violations
                pass
        if spec.min is not None:
            limit = _bound_timestamp(spec.min) if spec.type == "timestamp" else spec.min
            flag("min", good < limit, "value", f"below min {_fmt_bound(spec.min)}")
        if spec.max is not None:
            limit = _bound_timestamp(spec.max) if spec.type == "timestamp" else spec.max
            flag("max", good > limit, "value", f"above max {_fmt_bound(spec.max)}")
        if spec.allowed is not None:
            shown = ", ".join(map(str, spec.allowed[:8])) + (", ..." if len(spec.allowed) > 8 else "")
            flag("allowed", ~good.isin(list(spec.allowed)), "value", f"not in allowed [{shown}]")
        if spec.pattern is not None:
            matched = good.astype(str).str.fullmatch(spec.pattern)
            flag("pattern", ~matched, "value", f"not matching {spec.pattern}")
        return out

    def check(self, frame: pd.DataFrame) -> ValidationReport:
        """`validate`, but raising ContractViolation on any error, for pipelines that must stop."""
        report = self.validate(frame)
        if not report.ok:
            raise ContractViolation(report)
        return report

    def coerce(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Returns a copy whose contract columns carry the contract dtypes, so downstream code (feature
        encoding, TF datasets) can rely on them regardless of how the data was read.

        Columns missing from the frame are skipped and columns outside the contract are kept as they
        are: reporting those is `validate`'s job. Raises ContractViolation when a value cannot be
        represented (a type violation, or a null in a non-nullable integer/boolean column).
        """
        out = frame.copy()
        problems: list[Violation] = []
        for spec in self.columns.values():
            if spec.name not in out.columns:
                continue
            s = out[spec.name]
            null = s.isna().to_numpy()
            values, bad, note = _convert(spec, s, null)
            if bad.any():
                problems.append(_type_violation(spec, s, bad, note))
            elif null.any() and not spec.nullable and spec.type in ("integer", "boolean"):
                k = int(null.sum())
                text = f"{_plural(k, 'null value')} cannot be stored in a non-nullable {spec.type} column"
                problems.append(Violation(spec.name, "nullable", k, text))
            else:
                # .array assigns by position, which stays correct when the frame's index has duplicates.
                out[spec.name] = _as_contract_dtype(spec, values, null).array
        if problems:
            raise ContractViolation(ValidationReport(self.name, self.version, len(frame), tuple(problems)))
        return out

    # ---- online (REST) validation ----------------------------------------------------------------------

    def validate_records(
        self,
        records: list[dict],
        *,
        extra_fields: set[str] | frozenset[str] = frozenset(),
        allow_missing: set[str] | frozenset[str] = frozenset(),
    ) -> list[str]:
        """Checks request instances field by field and returns human-readable errors naming the
        instance and field (empty when all is well), so the server can answer one 400 that lists
        everything wrong with the request."""
        if not isinstance(records, list):
            return [f"instances: expected a list of objects, got {_json_type(records)}"]
        specs = {c.name: c for c in self.request_columns()}
        errors: list[str] = []
        total = 0

        def add(msg: str) -> None:
            nonlocal total
            total += 1
            if len(errors) < _MAX_RECORD_ERRORS:
                errors.append(msg)

        for i, record in enumerate(records):
            where = f"instances[{i}]"
            if not isinstance(record, dict):
                add(f"{where}: expected an object, got {_json_type(record)}")
                continue
            for key in record:
                if key not in specs and key not in extra_fields:
                    add(f"{where}.{key}: unknown field")
            for name, spec in specs.items():
                if name not in record:
                    if not spec.nullable and name not in allow_missing:
                        add(f"{where}: missing required field {name!r}")
                    continue
                msg = _check_value(spec, record[name])
                if msg:
                    add(f"{where}.{name}: {msg}")
        if total > len(errors):
            errors.append(f"... and {total - len(errors)} more")
        return errors

    def request_json_schema(
        self,
        *,
        extra_fields: set[str] | frozenset[str] = frozenset(),
        allow_missing: set[str] | frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """JSON Schema (2020-12 / OpenAPI 3.1) for one request instance, derived from the serving
        columns so the API docs can never drift from what `validate_records` enforces."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for spec in self.request_columns():
            prop: dict[str, Any]
            if spec.type == "timestamp":
                prop = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}
                if spec.nullable:
                    prop["anyOf"].append({"type": "null"})
                bounds = [f"{k} {getattr(spec, k)}" for k in ("min", "max") if getattr(spec, k) is not None]
                note = "ISO-8601 string or epoch seconds" + (f"; {', '.join(bounds)}" if bounds else "")
                prop["description"] = f"{spec.description} ({note})".strip() if spec.description else note
            else:
                json_type = _JSON_TYPES[spec.type]
                prop = {"type": [json_type, "null"] if spec.nullable else json_type}
                if spec.min is not None:
                    prop["minimum"] = spec.min
                if spec.max is not None:
                    prop["maximum"] = spec.max
                if spec.allowed is not None:
                    prop["enum"] = list(spec.allowed) + ([None] if spec.nullable else [])
                if spec.pattern is not None:
                    # JSON Schema patterns search; contract patterns must match the whole value.
                    prop["pattern"] = f"^(?:{spec.pattern})$"
                if spec.description:
                    prop["description"] = spec.description
            properties[spec.name] = prop
            if not spec.nullable and spec.name not in allow_missing:
                required.append(spec.name)
        for name in sorted(extra_fields):
            properties.setdefault(name, {})
        return {
            "title": f"{self.name} instance",
            "description": f"One instance for a model trained on contract {self.name} v{self.version}.",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }


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


def _check_value(spec: ColumnSpec, value: Any) -> str | None:
    """One request value against one column; returns an error message or None."""
    if value is None:
        return None if spec.nullable else "null is not allowed"
    t = spec.type
    comparable: Any = value
    if t in ("float", "integer"):
        if not _is_number(value):
            return f"expected {'an integer' if t == 'integer' else 'a number'}, got {_json_type(value)}"
        if not math.isfinite(float(value)):
            return f"expected a finite number, got {value!r}"
        if t == "integer" and not float(value).is_integer():
            return f"expected an integer, got {value!r}"
    elif t == "boolean":
        if not isinstance(value, bool):
            return f"expected true or false, got {_json_type(value)}"
    elif t == "string":
        if not isinstance(value, str):
            return f"expected a string, got {_json_type(value)}"
    else:  # timestamp
        try:
            if isinstance(value, str):
                comparable = _to_timestamp(_dt.datetime.fromisoformat(value))
            elif _is_number(value):
                comparable = _to_timestamp(_dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc))
            else:
                raise TypeError
        except (ValueError, TypeError, OverflowError, OSError):
            return f"expected an ISO-8601 timestamp string or epoch seconds, got {_json_type(value)}"

    shown = _fmt_value(value)
    if spec.min is not None:
        lo = _bound_timestamp(spec.min) if t == "timestamp" else spec.min
        if comparable < lo:
            return f"{shown} is below min {_fmt_bound(spec.min)}"
    if spec.max is not None:
        hi = _bound_timestamp(spec.max) if t == "timestamp" else spec.max
        if comparable > hi:
            return f"{shown} is above max {_fmt_bound(spec.max)}"
    if spec.allowed is not None and not any(
        value == a and isinstance(value, bool) == isinstance(a, bool) for a in spec.allowed
    ):
        return f"{shown} is not one of {list(spec.allowed)!r}"
    if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
        return f"{shown} does not match pattern {spec.pattern}"
    return None


# --------------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------------


def _find_contracts_dir() -> Path | None:
    """``$SOLUTIONS_CONTRACTS_DIR`` if set (the same variable ``Settings.contracts_dir`` reads), else
    `data_contracts/` nearest the working directory, so the CLI works from any folder of a checkout
    (or a fork); then relative to the installed source, for editable installs."""
    configured = os.environ.get("SOLUTIONS_CONTRACTS_DIR")
    if configured:
        return Path(configured)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "data_contracts"
            if candidate.is_dir():
                return candidate
    return None


def available_contracts(contracts_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the contracts in a folder (default: the discovered `data_contracts/`)."""
    folder = Path(contracts_dir) if contracts_dir is not None else _find_contracts_dir()
    if folder is None or not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})


def load_contract(
    name_or_path: str | os.PathLike, contracts_dir: str | os.PathLike | None = None
) -> Contract:
    """Loads a contract from a `.yaml`/`.yml` path, or by bare name from the contracts folder."""
    text = os.fspath(name_or_path)
    as_path = Path(text)
    looks_like_path = as_path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text
    if looks_like_path:
        if not as_path.is_file():
            raise ContractError(f"{as_path}: contract file not found")
        return Contract.from_yaml(as_path)

    folder = Path(contracts_dir) if contracts_dir is not None else _find_contracts_dir()
    if folder is None:
        raise ContractError(
            f"contract {text!r}: no data_contracts/ folder found above {Path.cwd()}; "
            "pass contracts_dir or a path to the .yaml file"
        )
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return Contract.from_yaml(candidate)
    names = available_contracts(folder)
    listing = ", ".join(names) if names else "none"
    raise ContractError(f"contract {text!r} not found in {folder} (available: {listing})")
