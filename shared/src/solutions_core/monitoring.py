"""Drift and skew, TFDV-style: statistics of the training data and of the model's outputs, written into
every published version, and a comparison of serving data with them.

    publish:  training_statistics(table, contract, outputs) → <version>/assets.extra/statistics.json
    monitor:  compare(statistics, served table, served outputs) → DriftReport → drift.json, drift.png, index.html

Numbers are binned at the training data's deciles (fewer quantiles when it has under 20 values a
bucket) and compared with the population stability index (PSI); strings and booleans by their values' shares, compared with the largest change of one share
(L-infinity, TFDV's measure for categories). Missing values are a bucket of their own in both, so a
column that starts arriving empty drifts too. Thresholds come from the contract (``drift:`` on a
column) or the defaults below. Imports pandas and numpy only (plots import matplotlib when drawn).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STATISTICS_FILE = "statistics.json"
# PSI above 0.25 is the usual "significant shift"; a share moving by 0.15 is as large a change for
# categories. Both are defaults: a column's `drift:` in its contract replaces them.
DEFAULT_PSI = 0.25
DEFAULT_LINF = 0.15
BINS = 10  # deciles of the training data...
MIN_PER_BIN = 20  # ...when it has 20 values a bucket: fewer buckets for small references (a validation
# split of 45 rows cut in deciles made PSI 0.57 on 300 rows of the same distribution: noise, not drift)
TOP_VALUES = 30  # categories kept by name; the rest count as OTHER
MISSING, OTHER = "<missing>", "<other>"
FLOOR = 1e-4  # a share of 0 would make PSI infinite


# ---- statistics -------------------------------------------------------------------------------------


def numeric_statistics(values: Any, bins: int = BINS) -> dict[str, Any]:
    """Bucket edges at the values' quantiles and each bucket's share (the missing share last)."""
    series = pd.to_numeric(pd.Series(np.asarray(values).reshape(-1)), errors="coerce")
    present = series.dropna().to_numpy(dtype=np.float64)
    bins = max(2, min(bins, len(present) // MIN_PER_BIN))
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
    statistics = {"kind": "numeric", "count": int(len(series)), "edges": [float(edge) for edge in edges]}
    statistics["shares"] = _numeric_shares(series, edges)
    if len(present):
        statistics |= {"mean": float(present.mean()), "std": float(present.std()), "min": float(present.min()), "max": float(present.max())}
    return statistics


def _numeric_shares(series: pd.Series, edges: np.ndarray) -> list[float]:
    total = max(len(series), 1)
    present = series.dropna().to_numpy(dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return [float(count / total) for count in counts] + [float(series.isna().sum() / total)]


def categorical_statistics(values: Any, top: int = TOP_VALUES) -> dict[str, Any]:
    """Each frequent value's share (by name), the rest as OTHER, the missing share as MISSING."""
    series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    shares = _categorical_shares(series, None)
    named = sorted((name for name in shares if name not in (MISSING, OTHER)), key=lambda name: -shares[name])[:top]
    kept = {name: shares[name] for name in named}
    kept[OTHER] = float(1.0 - sum(kept.values()) - shares.get(MISSING, 0.0))
    kept[MISSING] = shares.get(MISSING, 0.0)
    return {"kind": "categorical", "count": int(len(series)), "shares": kept}


def _categorical_shares(series: pd.Series, known: list[str] | None) -> dict[str, float]:
    total = max(len(series), 1)
    missing = series.isna()
    counts = series[~missing].astype(str).value_counts()
    if known is None:
        shares = {str(name): float(count / total) for name, count in counts.items()}
    else:
        named = set(known) - {MISSING, OTHER}
        shares = {name: float(counts.get(name, 0) / total) for name in known if name in named}
        shares[OTHER] = float(counts[~counts.index.isin(named)].sum() / total)
    shares[MISSING] = float(missing.sum() / total)
    return shares


def column_kind(column_type: str) -> str | None:
    """How a contract type is compared: numbers by PSI, strings and booleans by shares; timestamps are
    not (time moves on by design)."""
    return {"integer": "numeric", "float": "numeric", "string": "categorical", "boolean": "categorical"}.get(column_type)


def monitored_columns(contract: Any) -> dict[str, Any]:
    """The contract's columns a request carries and a model reads: serving features (ids, labels,
    metadata and timestamps are not compared)."""
    return {name: spec for name, spec in contract.columns.items()
            if spec.role == "feature" and spec.serving and column_kind(spec.type) is not None}


def output_arrays(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's numeric outputs as flat arrays (one distribution per output name)."""
    arrays = {}
    for name, values in outputs.items():
        array = np.asarray(values)
        if array.dtype.kind in "fiub" and array.size:
            arrays[name] = array.astype(np.float64).reshape(-1)
    return arrays


def training_statistics(table: pd.DataFrame, contract: Any, outputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a version is compared against: each monitored column of the training table, and each
    numeric output of the model on the validation split."""
    columns = {}
    for name, spec in monitored_columns(contract).items():
        if name in table.columns:
            values = table[name]
            columns[name] = numeric_statistics(values) if column_kind(spec.type) == "numeric" else categorical_statistics(values)
    return {
        "contract": {"name": contract.name, "version": contract.version},
        "rows": int(len(table)),
        "columns": columns,
        "outputs": {name: numeric_statistics(values) for name, values in output_arrays(outputs or {}).items()},
    }


def write_statistics(statistics: Mapping[str, Any], folder: Path) -> Path:
    path = Path(folder) / STATISTICS_FILE
    path.write_text(json.dumps(statistics, indent=1))
    return path


# ---- comparison -------------------------------------------------------------------------------------


def population_stability_index(expected: list[float], actual: list[float]) -> float:
    """Σ (actual − expected) · ln(actual / expected) over the buckets, shares floored at 1e-4."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def l_infinity(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """The largest change of one value's share."""
    names = set(expected) | set(actual)
    return float(max((abs(actual.get(name, 0.0) - expected.get(name, 0.0)) for name in names), default=0.0))


@dataclass
class ColumnDrift:
    name: str
    part: str  # "column" (a request's field) or "output" (the model's answer)
    measure: str  # "psi" or "linf"
    value: float
    threshold: float
    rows: int
    reference: dict[str, float] = field(default_factory=dict)  # bucket → training share
    current: dict[str, float] = field(default_factory=dict)  # bucket → serving share

    @property
    def drifted(self) -> bool:
        return bool(self.value > self.threshold)


@dataclass
class DriftReport:
    app: str
    version: int | None
    label: str  # what was compared, e.g. the date
    rows: int
    columns: list[ColumnDrift]

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [column for column in self.columns if column.drifted]

    def summary(self) -> dict[str, Any]:
        return {
            "app": self.app, "version": self.version, "label": self.label, "rows": self.rows,
            "drifted": [f"{column.part}:{column.name}" for column in self.drifted],
            "columns": [asdict(column) | {"drifted": column.drifted} for column in self.columns],
        }


def _numeric_drift(name: str, part: str, reference: Mapping[str, Any], values: Any, threshold: float) -> ColumnDrift:
    series = pd.to_numeric(pd.Series(np.asarray(values).reshape(-1)), errors="coerce")
    edges = np.asarray(reference["edges"], dtype=np.float64)
    current = _numeric_shares(series, edges)
    labels = _bucket_labels(edges)
    return ColumnDrift(name, part, "psi", population_stability_index(reference["shares"], current), threshold, int(len(series)),
                       dict(zip(labels, reference["shares"])), dict(zip(labels, current)))


def _bucket_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{edge:.4g}" for edge in edges), "inf"]
    return [f"({low}, {high}]" for low, high in zip(bounds, bounds[1:])] + [MISSING]


def _categorical_drift(name: str, reference: Mapping[str, Any], values: Any, threshold: float) -> ColumnDrift:
    series = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    expected = dict(reference["shares"])
    current = _categorical_shares(series, list(expected))
    return ColumnDrift(name, "column", "linf", l_infinity(expected, current), threshold, int(len(series)), expected, current)


def compare(
    statistics: Mapping[str, Any],
    served: pd.DataFrame,
    contract: Any,
    outputs: Mapping[str, Any] | None = None,
    *,
    app: str = "",
    version: int | None = None,
    label: str = "",
) -> DriftReport:
    """Serving data (the requests' fields, and the model's answers to them) against a version's training
    statistics; every monitored column the served table has, and every output both sides have."""
    if not len(served):  # (rows: a table of outputs only has no field columns, and is not empty)
        raise ValueError(f"No served rows to compare for {app or 'the app'} ({label or 'this selection'}): nothing was logged, or the filter left nothing.")
    results = []
    for name, reference in statistics.get("columns", {}).items():
        if name not in served.columns:
            continue
        spec = contract.columns.get(name) if contract is not None else None
        threshold = spec.drift if spec is not None and spec.drift is not None else None
        if reference["kind"] == "numeric":
            results.append(_numeric_drift(name, "column", reference, served[name], threshold or DEFAULT_PSI))
        else:
            results.append(_categorical_drift(name, reference, served[name], threshold or DEFAULT_LINF))
    for name, values in output_arrays(outputs or {}).items():
        if name in statistics.get("outputs", {}):
            results.append(_numeric_drift(name, "output", statistics["outputs"][name], values, DEFAULT_PSI))
    if not results:
        raise ValueError(f"None of the served columns {sorted(served.columns)} is in the version's statistics {sorted(statistics.get('columns', {}))}.")
    return DriftReport(app, version, label, int(len(served)), results)


# ---- the report a person opens ------------------------------------------------------------------------


def write_report(report: DriftReport, folder: Path) -> dict[str, Path]:
    """``drift.json`` (the figures), ``drift.png`` (training vs serving shares per column, drifted ones
    in red) and ``index.html`` (a table of the verdicts with the picture) in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift.json").write_text(json.dumps(report.summary(), indent=1))
    count = len(report.columns)
    per_row = min(3, count)
    rows = math.ceil(count / per_row)
    figure, axes = plt.subplots(rows, per_row, figsize=(5 * per_row, 3.2 * rows), squeeze=False)
    for axis, column in zip(axes.flat, report.columns):
        names = list(column.reference)
        positions = np.arange(len(names))
        axis.bar(positions - 0.2, [column.reference[n] for n in names], width=0.4, label="training", color="#8da0cb")
        axis.bar(positions + 0.2, [column.current.get(n, 0.0) for n in names], width=0.4, label="serving",
                 color="#e34a33" if column.drifted else "#66c2a5")
        axis.set_xticks(positions, [n if len(n) <= 14 else n[:13] + "…" for n in names], rotation=60, ha="right", fontsize=7)
        verdict = "DRIFTED" if column.drifted else "ok"
        axis.set_title(f"{column.part} {column.name}: {column.measure} {column.value:.3f} (> {column.threshold:g}?) {verdict}",
                       fontsize=9, color="#b30000" if column.drifted else "black")
        axis.set_ylabel("share", fontsize=8)
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    figure.suptitle(f"{report.app} v{report.version}: {report.label}, {report.rows:,} served rows vs training", fontsize=11)
    figure.tight_layout()
    picture = folder / "drift.png"
    figure.savefig(picture, dpi=90)
    plt.close(figure)
    page = folder / "index.html"
    page.write_text(_html(report))
    return {"json": folder / "drift.json", "png": picture, "html": page}


def _html(report: DriftReport) -> str:
    rows = "\n".join(
        f"<tr class='{'drifted' if c.drifted else 'ok'}'><td>{html.escape(c.part)}</td><td>{html.escape(c.name)}</td>"
        f"<td>{c.measure}</td><td>{c.value:.4f}</td><td>{c.threshold:g}</td><td>{'DRIFTED' if c.drifted else 'ok'}</td></tr>"
        for c in sorted(report.columns, key=lambda c: -c.value / c.threshold)
    )
    verdict = (f"{len(report.drifted)} of {len(report.columns)} drifted: " + ", ".join(html.escape(c.name) for c in report.drifted)
               if report.drifted else f"no drift in {len(report.columns)} columns and outputs")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report.app)} drift: {html.escape(report.label)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}
tr.drifted td{{color:#b30000;font-weight:bold}} img{{max-width:100%}}</style></head>
<body><h1>{html.escape(report.app)} v{report.version}: {html.escape(report.label)}</h1>
<p>{report.rows:,} served rows compared with the version's training statistics: <b>{verdict}</b>.</p>
<p>PSI (numbers) and L-infinity of the value shares (strings, booleans); a column's threshold is its
contract's <code>drift:</code>, else {DEFAULT_PSI} (PSI) or {DEFAULT_LINF} (L-infinity).</p>
<table><tr><th>part</th><th>name</th><th>measure</th><th>value</th><th>threshold</th><th>verdict</th></tr>
{rows}
</table>
<p><img src="drift.png" alt="training vs serving shares per column"></p>
</body></html>
"""


# ---- one call: a served table against a published version ---------------------------------------------


def read_served(source: Path) -> pd.DataFrame:
    """Served requests from a file (Parquet, or CSV): the contract's fields, and the model's answers
    under their output names when they were logged with them."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"No served data at {source}.")
    return pd.read_parquet(source) if source.suffix in (".parquet", ".pq") or source.is_dir() else pd.read_csv(source)


def _flat(column: pd.Series) -> np.ndarray:
    """A logged output column as one array: per-row lists (top-k scores, a horizon's quantiles, an
    anomaly map's rows, as Parquet gives them back: arrays of arrays) joined."""
    values = column.to_numpy()
    if values.dtype == object and len(values) and isinstance(values[0], (list, tuple, np.ndarray)):
        return _numbers(values)
    return values


def _numbers(value: Any) -> np.ndarray:
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if array.dtype == object:
        parts = [_numbers(item) for item in array.reshape(-1)]
        return np.concatenate(parts) if parts else np.zeros(0)
    return array.astype(np.float64, copy=False).reshape(-1) if array.dtype.kind in "fiub" else np.zeros(0)


def monitor_version(version: Any, served: pd.DataFrame, *, label: str, out_dir: Path) -> tuple[DriftReport, dict[str, Path]]:
    """``served`` against ``version``'s training statistics (its own contract's thresholds); writes the
    report into ``out_dir``. Outputs are compared when ``served`` holds them (columns named as the
    model's outputs)."""
    from solutions_core.contracts import load_contract

    statistics_path = version.path / "assets.extra" / STATISTICS_FILE
    if not statistics_path.exists():
        raise FileNotFoundError(
            f"Version {version.version} of {version.app} has no {STATISTICS_FILE} (published before the monitor existed): "
            f"train a new version (`solutions train {version.app}`) to monitor against."
        )
    statistics = json.loads(statistics_path.read_text())
    contract = load_contract(version.contract_path)
    fields = [name for name in served.columns if name in contract.columns]
    converted = contract.convert(served[fields])
    outputs = {name: _flat(served[name]) for name in statistics.get("outputs", {}) if name in served.columns and name not in contract.columns}
    report = compare(statistics, converted, contract, outputs, app=version.app, version=version.version, label=label)
    return report, write_report(report, out_dir)


# ---- performance over time, once labels arrive -----------------------------------------------------------


def performance_by_day(solution: Any, version: Any, logged: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The gate metric (and the app's other metrics) per day of the request log, on the requests whose
    outcome arrived later: the app's ``evaluation.outcomes`` joins them (chargebacks or confirmed defects
    by id, later interactions per user, realized demand per series and date) and its own ``evaluate``
    scores each day's logged answers."""
    from solutions_core.serving.request_log import TIME_COLUMN, output_names

    context = version.context(solution)
    outputs = output_names(logged)
    if not outputs:
        raise ValueError("The request log names no model outputs: was it written by `solutions serve`?")
    merged = solution.evaluation.outcomes(context, logged, outcomes)
    if merged.empty:
        raise ValueError(f"No logged request has an outcome yet: none of the {len(logged)} logged requests matched the outcomes given.")
    rows = []
    for day, part in merged.groupby(pd.to_datetime(merged[TIME_COLUMN]).dt.date, sort=True):
        part = part.reset_index(drop=True)
        answers = {name: np.stack(part[name].to_numpy()) if isinstance(part[name].iloc[0], (list, np.ndarray)) else part[name].to_numpy()
                   for name in outputs if name in part.columns}
        try:
            metrics = solution.evaluation.evaluate(context, part, answers)
        except KeyError as missing:
            raise ValueError(f"{solution.name}'s evaluate needs {missing}, which the request log and the outcomes do not hold.") from None
        rows.append({"date": day, "rows": len(part), **{name: float(value) for name, value in metrics.items()}})
    return pd.DataFrame(rows)


def plot_performance(table: pd.DataFrame, metric: str, baseline: float | None, path: Path, title: str) -> Path:
    """The gate metric per day (with the version's test value as a line), and the requests with an outcome per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    dates = pd.to_datetime(table["date"])
    top.plot(dates, table[metric], marker="o", label=f"{metric}, served requests with outcomes")
    if baseline is not None:
        top.axhline(baseline, color="gray", linestyle="--", label=f"{metric} on the test split at publish ({baseline:.3f})")
    top.set_ylabel(metric)
    top.legend(fontsize=8)
    top.set_title(title, fontsize=10)
    bottom.bar(dates, table["rows"], color="#8da0cb")
    bottom.set_ylabel("requests")
    figure.autofmt_xdate()
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)
