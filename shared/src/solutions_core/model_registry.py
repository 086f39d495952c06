"""Versioned models in TF Serving's layout: ``<models_dir>/<app>/<version>/`` holds a SavedModel and
``assets.extra/solution_metadata.json``. Only promoted models are written here, so the highest version is
the champion — exactly the version TF Serving's default policy serves.

Publishing is atomic: the SavedModel is written to a hidden temporary folder beside the versions and
renamed into place, so a server polling the folder never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = "solution_metadata.json"


@dataclass(frozen=True)
class ModelVersion:
    app: str
    version: int
    path: Path

    @property
    def metadata_path(self) -> Path:
        return self.path / "assets.extra" / METADATA_FILE

    @property
    def contract_path(self) -> Path:
        """The data contract the version was trained under, shipped inside it (``<contract>.yaml``)."""
        name = self.metadata().get("contract", {}).get("name", "contract")
        return self.path / "assets.extra" / f"{name}.yaml"

    def metadata(self) -> dict[str, Any]:
        if not self.metadata_path.exists():
            return {}
        return json.loads(self.metadata_path.read_text())

    def context(self, solution: Any) -> Any:
        """The ``Context`` this version was published with: its config and the contracts it ships."""
        from solutions_core.contracts import Contract
        from solutions_core.solution import Context

        metadata = self.metadata()
        shipped = metadata.get("contracts") or {solution.contracts[0]: metadata.get("contract", {})}
        contracts = {}
        for table, about in shipped.items():
            path = self.path / "assets.extra" / about.get("file", f"{about.get('name')}.yaml")
            if path.exists():
                contracts[table] = Contract.from_yaml(path)
        return Context(solution.name, solution.make_config(metadata.get("config")), contracts)


class ModelRegistry:
    def __init__(self, models_dir: Path | str):
        self.models_dir = Path(models_dir)

    def app_dir(self, app: str) -> Path:
        return self.models_dir / app

    def versions(self, app: str) -> list[ModelVersion]:
        folder = self.app_dir(app)
        if not folder.exists():
            return []
        found = [
            ModelVersion(app, int(child.name), child)
            for child in folder.iterdir()
            if child.is_dir() and child.name.isdigit() and (child / "saved_model.pb").exists()
        ]
        return sorted(found, key=lambda v: v.version)

    def champion(self, app: str) -> ModelVersion | None:
        versions = self.versions(app)
        return versions[-1] if versions else None

    def next_version(self, app: str) -> int:
        folder = self.app_dir(app)
        taken = [int(c.name) for c in folder.iterdir() if c.name.isdigit()] if folder.exists() else []
        return max(taken, default=0) + 1

    def publish(
        self, app: str, saved_model_dir: Path, metadata: dict[str, Any], extra_files: dict[str, Path] | None = None
    ) -> ModelVersion:
        """Copy an exported SavedModel in as the next version, with its metadata (and extra files such
        as the data contract, so a version is self-describing), atomically."""
        if not (Path(saved_model_dir) / "saved_model.pb").exists():
            raise ValueError(f"{saved_model_dir} is not a SavedModel (no saved_model.pb).")
        folder = self.app_dir(app)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{uuid.uuid4().hex}"
        shutil.copytree(saved_model_dir, staging)
        try:
            version = self.next_version(app)
            (staging / "assets.extra").mkdir(exist_ok=True)
            metadata = {**metadata, "app": app, "version": version}
            (staging / "assets.extra" / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))
            for name, source in (extra_files or {}).items():
                shutil.copyfile(source, staging / "assets.extra" / name)
            os.rename(staging, folder / str(version))  # atomic on one filesystem
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ModelVersion(app, version, folder / str(version))
