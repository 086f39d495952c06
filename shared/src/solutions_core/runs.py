"""The run history: every training run's folder (``<runs>/<app>/<run_id>/``) read back as one record —
its gate verdict, test metrics next to the baselines', the data fingerprints and contract versions it
trained on — for ``solutions runs [APP]`` and ``solutions runs compare A B``. Reads JSON only."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    app: str
    run_id: str
    folder: Path
    status: str  # promoted, rejected, or "unfinished" (no report: it failed or is running)
    finished_at: dt.datetime | None
    candidate: str = ""
    gate_metric: str = ""
    value: float | None = None  # the candidate's test value of the gate metric
    version: int | None = None
    reason: str = ""
    seconds: float | None = None
    test: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)  # name → gate metric
    champion_before: dict[str, Any] | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)
    contracts: dict[str, str] = field(default_factory=dict)  # table → "name version"
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.app}/{self.run_id}"


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_run(folder: Path) -> RunRecord:
    folder = Path(folder)
    report = _json(folder / "report.json")
    validated = _json(folder / "artifacts" / "validate_data.json")
    validation = _json(folder / "validation.json")
    trained = _json(folder / "artifacts" / "train_candidates.json")
    finished = dt.datetime.fromtimestamp((folder / "report.json").stat().st_mtime) if report else None
    metric = report.get("gate_metric", "")
    return RunRecord(
        app=folder.parent.name,
        run_id=folder.name,
        folder=folder,
        status=report.get("status", "unfinished"),
        finished_at=finished,
        candidate=report.get("candidate", ""),
        gate_metric=metric,
        value=report.get("test", {}).get(metric),
        version=report.get("version"),
        reason=report.get("reason", ""),
        seconds=report.get("seconds"),
        test=dict(report.get("test", {})),
        baselines={name: metrics.get(metric) for name, metrics in report.get("baselines", {}).items()},
        champion_before=report.get("champion_before"),
        fingerprints=dict(validated.get("fingerprints", {})),
        contracts={table: f"{entry.get('contract')} {entry.get('version')}" for table, entry in validation.items() if isinstance(entry, dict)},
        runtime=dict(trained.get("runtime", {})),
    )


def list_runs(runs_dir: Path, app: str | None = None) -> list[RunRecord]:
    """Every run folder (of ``app``, or of all apps), oldest first; monitor reports are not runs."""
    runs_dir = Path(runs_dir)
    apps = [runs_dir / app] if app else sorted(path for path in runs_dir.iterdir() if path.is_dir()) if runs_dir.is_dir() else []
    folders = [folder for app_folder in apps if app_folder.is_dir() for folder in app_folder.iterdir()
               if folder.is_dir() and folder.name != "monitor" and not folder.name.startswith(".")
               and ((folder / "artifacts").is_dir() or (folder / "report.json").exists())]
    records = [read_run(folder) for folder in folders]
    return sorted(records, key=lambda record: (record.finished_at or dt.datetime.max, record.run_id))


def find_run(runs_dir: Path, reference: str) -> RunRecord:
    """A run by ``app/run_id``, or by a run id that only one app has."""
    app, _, run_id = reference.rpartition("/")
    matches = [record for record in list_runs(runs_dir, app or None) if record.run_id == run_id]
    if not matches:
        raise ValueError(f"No run {reference!r} under {runs_dir}; `solutions runs` lists them.")
    if len(matches) > 1:
        raise ValueError(f"Run id {run_id!r} belongs to {', '.join(m.app for m in matches)}: say which, e.g. {matches[0].reference}.")
    return matches[0]


def comparison(first: RunRecord, second: RunRecord) -> list[tuple[str, str, str]]:
    """Rows (what, first, second) for two runs side by side: verdicts, every test metric, the baselines'
    gate metric, the data and contracts they trained on, the runtime."""

    def text(value: Any) -> str:
        if value is None:
            return "—"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [("app", first.app, second.app), ("status", first.status, second.status), ("version", text(first.version), text(second.version)),
            ("candidate", first.candidate, second.candidate), ("finished", text(first.finished_at and first.finished_at.isoformat(timespec="seconds")),
                                                               text(second.finished_at and second.finished_at.isoformat(timespec="seconds"))),
            ("seconds", text(first.seconds), text(second.seconds))]
    for metric in sorted(set(first.test) | set(second.test)):
        rows.append((f"test {metric}", text(first.test.get(metric)), text(second.test.get(metric))))
    for name in sorted(set(first.baselines) | set(second.baselines)):
        rows.append((f"baseline {name}", text(first.baselines.get(name)), text(second.baselines.get(name))))
    for table in sorted(set(first.fingerprints) | set(second.fingerprints)):
        rows.append((f"data {table}", first.fingerprints.get(table, "—"), second.fingerprints.get(table, "—")))
    for table in sorted(set(first.contracts) | set(second.contracts)):
        rows.append((f"contract {table}", first.contracts.get(table, "—"), second.contracts.get(table, "—")))
    for key in ("strategy", "precision", "jit_compile", "workers"):
        if key in first.runtime or key in second.runtime:
            rows.append((f"runtime {key}", text(first.runtime.get(key)), text(second.runtime.get(key))))
    rows.append(("gate", first.reason, second.reason))
    return rows
