"""Models on disk → loaded, warmed signatures, with versions and hot reload.

Layout is TF Serving's: ``<models_dir>/<name>/<version>/``. Like TF Serving's default policy, the
latest version of each model serves; ``refresh()`` (called by a background poller) loads a newer
version, warms it, and only then swaps it in, so requests never wait on a load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from solutions_core.model_registry import ModelRegistry, ModelVersion

logger = logging.getLogger("solutions_core.serving")


class ModelNotFound(LookupError):
    pass


StoreT = TypeVar("StoreT")


@dataclass
class ServedModel:
    """One loaded version and what the server needs around it: its contract (shipped inside the
    version), and — when its app is installed — the app's context, request schema, request checks and
    online feature store."""

    name: str
    version: int
    path: Path
    signature: Any
    metadata: dict[str, Any]
    input_specs: dict[str, Any]
    contract: Any | None = None
    context: Any | None = None  # solutions_core.solution.Context of the version's own config
    solution: Any | None = None
    features: Any | None = None  # solutions_core.solution.FeatureStore
    extra_fields: set[str] = field(default_factory=set)
    allow_missing: set[str] = field(default_factory=set)

    def predict(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        tensors = {name: tf.constant(values) for name, values in columns.items()}
        return {name: np.asarray(value) for name, value in self.signature(**tensors).items()}

    def check(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The app's request checks beyond the contract (``Serving.check``)."""
        return self.solution.serving.check(self.context, instances) if self.solution is not None else instances

    def feature_store(self, kind: type[StoreT]) -> StoreT | None:
        """The version's online feature store as the app's own type (for its routes), or None."""
        if self.features is not None and not isinstance(self.features, kind):
            raise TypeError(f"{self.name} v{self.version} serves a {type(self.features).__name__}, not a {kind.__name__}.")
        return self.features


def load_served_model(version: ModelVersion, data_dir: Path | None = None) -> ServedModel:
    """Load one version with its contracts and, when its app is installed, the app's serving parts."""
    from solutions_core.contracts import Contract
    from solutions_core.export import input_specs, load_signature

    metadata = version.metadata()
    signature = load_signature(version.path, metadata.get("custom_ops", ()))
    contract_path = version.contract_path
    contract = Contract.from_yaml(contract_path) if contract_path.exists() else None
    served = ServedModel(
        name=version.app,
        version=version.version,
        path=version.path,
        signature=signature,
        metadata=metadata,
        input_specs=input_specs(signature),
        contract=contract,
    )
    app = metadata.get("app")
    if app:
        try:
            from solutions_core.registry import get_solution

            solution = get_solution(app)
        except KeyError:
            logger.info("Solution %r is not installed; serving %s without its online features.", app, version.path)
            return served
        from solutions_core.solution import Context

        shipped = metadata.get("contracts") or {solution.contracts[0]: metadata.get("contract", {})}
        contracts = {}
        for table, about in shipped.items():
            path = version.path / "assets.extra" / about.get("file", f"{about.get('name')}.yaml")
            if path.exists():
                contracts[table] = Contract.from_yaml(path)
        config = solution.make_config(metadata.get("config"))
        served.solution = solution
        served.context = Context(app, config, contracts)
        request = solution.serving.request(served.context)
        served.extra_fields, served.allow_missing = set(request.extra), set(request.optional)
        if data_dir is not None:
            served.features = solution.serving.features(served.context, Path(data_dir))
    return served


WARMUP_FILE = "warmup_request.json"


def warm_up(served: ServedModel, instances: list[dict[str, Any]] | None = None) -> None:
    """One call through the signature so the first real request does not pay for tracing.

    Uses the version's own warm-up request (``assets.extra/warmup_request.json``, golden instances
    written at training time, like TF Serving's warm-up records) when there is one: placeholder zeros
    and empty strings are not valid input for every model (an image decoder rejects "")."""
    import json

    from solutions_core.export import to_tensor_value

    warmup_path = served.path / "assets.extra" / WARMUP_FILE
    if instances is None and warmup_path.exists():
        instances = json.loads(warmup_path.read_text()).get("instances", [])[:2]
    if instances:
        served.predict({
            name: to_tensor_value([instance.get(name) for instance in instances], spec.dtype, spec.shape)
            for name, spec in served.input_specs.items()
        })
        return
    columns = {}
    for name, spec in served.input_specs.items():
        if spec.shape.rank is not None and spec.shape.rank > 1:
            columns[name] = np.zeros([1] + [d or 1 for d in spec.shape.as_list()[1:]], dtype=spec.dtype.as_numpy_dtype)
            continue
        value = "" if spec.dtype.name == "string" else 0
        columns[name] = to_tensor_value([value], spec.dtype, spec.shape)
    served.predict(columns)


class ModelManager:
    """Thread-safe holder of the latest loaded version of each model under ``models_dir``."""

    def __init__(self, models_dir: Path, data_dir: Path | None = None, names: list[str] | None = None):
        self.registry = ModelRegistry(models_dir)
        self.data_dir = data_dir
        self.names = names
        self._models: dict[str, ServedModel] = {}
        self._failed: set[tuple[str, int]] = set()  # versions that failed to load: not retried every poll
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def model_names(self) -> list[str]:
        if self.names:
            return list(self.names)
        base = self.registry.models_dir
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.exists() else []

    def refresh(self) -> list[tuple[str, int]]:
        """Load any newer version on disk; returns the (name, version) pairs that were swapped in."""
        swapped = []
        for name in self.model_names():
            latest = self.registry.champion(name)
            current = self._models.get(name)
            if latest is None or (current and current.version >= latest.version):
                continue
            if (name, latest.version) in self._failed:
                continue
            try:
                served = load_served_model(latest, self.data_dir)
                warm_up(served)
            except Exception:  # a broken new version must not take down the one serving
                logger.exception("Could not load %s version %s; keeping the current one.", name, latest.version)
                self._failed.add((name, latest.version))
                continue
            with self._lock:
                self._models[name] = served
            swapped.append((name, latest.version))
            logger.info("Serving %s version %s", name, latest.version)
        return swapped

    def get(self, name: str, version: int | None = None) -> ServedModel:
        with self._lock:
            served = self._models.get(name)
        if served is None:
            raise ModelNotFound(f"Servable not found for request: Latest({name})")
        if version is not None and version != served.version:
            raise ModelNotFound(f"Servable not found for request: Specific({name}, {version})")
        return served

    def loaded(self) -> dict[str, ServedModel]:
        with self._lock:
            return dict(self._models)

    def start_polling(self, interval_seconds: float) -> None:
        def poll() -> None:
            while not self._stop.wait(interval_seconds):
                self.refresh()

        self._poller = threading.Thread(target=poll, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        for served in self.loaded().values():
            if served.features is not None:
                try:
                    served.features.save()
                except Exception:
                    logger.exception("Could not persist online features of %s", served.name)
