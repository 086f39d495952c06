"""Prometheus metrics at TF Serving's path, ``/monitoring/prometheus/metrics`` (and ``/metrics``).

One registry per server (not prometheus-client's global one), so several apps in one test process do
not collide. With ``--workers N`` each process counts its own requests: point Prometheus at each
process, or run one worker per replica (the Kubernetes manifests do).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServingMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple, tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "solutions_requests", "Requests answered, by model, version, API and HTTP status.",
            ["model", "version", "api", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "solutions_request_latency_seconds", "Time from a request's arrival to its answer.",
            ["model", "api"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "solutions_batch_size", "Rows per signature call (dynamic batching).", ["model", "version"],
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
        )
        self.queue_rows = Gauge(
            "solutions_batch_queue_rows", "Rows waiting for a batch.", ["model", "version"], registry=self.registry
        )
        self.load_seconds = Gauge(
            "solutions_model_load_seconds", "Time the version took to load and warm up.", ["model", "version"],
            registry=self.registry,
        )
        self.in_service = Gauge(
            "solutions_model_version_in_service", "1 for the version un-versioned requests get, per model.",
            ["model", "version"], registry=self.registry,
        )
        self.rejected = Counter(
            "solutions_requests_rejected", "Requests refused before the model ran, by reason.", ["reason"],
            registry=self.registry,
        )

    def observe(self, model: str, version: Any, api: str, status: int, started: float) -> None:
        key = (model, version, api, status)
        children = self._children.get(key)
        if children is None:  # labels() per request was a twentieth of a one-row prediction
            children = self._children[key] = (
                self.requests.labels(model, str(version), api, str(status)), self.latency.labels(model, api)
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def watch_batcher(self, served: Any) -> None:
        model, version = served.name, str(served.version)
        sizes = self.batch_size.labels(model, version)
        served.batcher.on_batch = sizes.observe
        self.queue_rows.labels(model, version).set_function(lambda: served.batcher.queued_rows)

    def version_loaded(self, served: Any, seconds: float) -> None:
        self.load_seconds.labels(served.name, str(served.version)).set(seconds)

    def set_in_service(self, defaults: dict[str, Any]) -> None:
        self.in_service.clear()
        for name, served in defaults.items():
            self.in_service.labels(name, str(served.version)).set(1)

    def watch_drift(self, runs_dir: Path, models: Callable[[], Iterable[str]]) -> None:
        """Gauges of each served model's latest monitor report (``solutions monitor`` writes them under
        ``<runs>/<model>/monitor/<label>/drift.json``), read when Prometheus scrapes."""
        self.registry.register(_DriftCollector(Path(runs_dir), models))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _DriftCollector:
    """``solutions_drift{model, part, name, measure}`` (the figure), ``solutions_drift_threshold`` and
    ``solutions_drift_report_timestamp_seconds`` from the newest report per model."""

    def __init__(self, runs_dir: Path, models: Callable[[], Iterable[str]]):
        self.runs_dir, self.models = runs_dir, models

    def describe(self) -> list[Any]:
        return []  # collected only when scraped: the reports change without the server

    def collect(self) -> Iterable[Any]:
        figures = GaugeMetricFamily("solutions_drift", "The latest monitor report's drift figure per column and output (PSI or L-infinity).",
                                    labels=["model", "version", "part", "name", "measure"])
        thresholds = GaugeMetricFamily("solutions_drift_threshold", "The threshold that figure is judged against.",
                                       labels=["model", "part", "name"])
        stamps = GaugeMetricFamily("solutions_drift_report_timestamp_seconds", "When the latest monitor report was written.",
                                   labels=["model", "label"])
        for model in sorted(set(self.models())):
            reports = list((self.runs_dir / model / "monitor").glob("*/drift.json"))
            if not reports:
                continue
            newest = max(reports, key=lambda path: path.stat().st_mtime)
            try:
                report = json.loads(newest.read_text())
            except (OSError, ValueError):  # being written: the next scrape reads it
                continue
            for column in report.get("columns", []):
                figures.add_metric([model, str(report.get("version")), column["part"], column["name"], column["measure"]], float(column["value"]))
                thresholds.add_metric([model, column["part"], column["name"]], float(column["threshold"]))
            stamps.add_metric([model, str(report.get("label", ""))], newest.stat().st_mtime)
        yield from (figures, thresholds, stamps)
