"""Which models and versions the server loads, and what labels point at: TF Serving's model config.

The file lives beside the models, ``<models_dir>/models.config`` in TF Serving's own text format (the
file a stock ``tensorflow_model_server --model_config_file=...`` reads) or ``<models_dir>/models.yaml``
with the same fields as YAML. Both parse into TF Serving's own ``ModelServerConfig`` proto, so a file
that works here works there::

    model_config_list:
      config:
        - name: fraud_detection
          base_path: fraud_detection          # relative to the models folder, or absolute
          model_version_policy: {latest: {num_versions: 2}}   # or {all: {}} or {specific: {versions: [3, 4]}}
          version_labels: {stable: 3, canary: 4}
    traffic:                                  # ours, YAML only: not part of TF Serving's proto
      fraud_detection: {label: canary, percent: 10, key: card_id}

Without a file every model folder is served with TF Serving's default policy (the latest version).
Two rules go beyond TF Serving: a labelled version is always loaded (so ``solutions label`` and
``solutions rollback`` never need a policy edit), and un-versioned requests go to the version labelled
``stable`` when there is one, else to the latest: that is what makes a rollback instant. ``traffic``
sends ``percent`` % of un-versioned requests to a labelled version, chosen by a hash of the request's
``key`` field so one entity always sees the same version.

The file is re-read whenever it changes; the CLI writes it (``solutions label``, ``solutions rollback``)
atomically, in the format it was read from.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEXT_FILE = "models.config"
YAML_FILE = "models.yaml"
STABLE = "stable"


@dataclass(frozen=True)
class TrafficSplit:
    """``percent`` % of un-versioned requests go to the version labelled ``label``, sticky per ``key``."""

    label: str
    percent: float
    key: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"traffic percent must be within 0..100, got {self.percent}.")

    def takes(self, key_value: Any) -> bool:
        """Whether a request whose key field holds ``key_value`` goes to the labelled version.
        A stable hash (not Python's salted ``hash``) so the same entity lands on the same version in
        every worker process and after every restart."""
        bucket = zlib.crc32(str(key_value).encode()) % 10_000
        return bucket < self.percent * 100


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def choose(self, on_disk: list[int]) -> set[int]:
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return set(self.versions) & set(on_disk)
        return set(sorted(on_disk)[-self.num_versions:]) if on_disk else set()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingConfig:
    models: dict[str, ModelEntry]
    traffic: dict[str, TrafficSplit] = field(default_factory=dict)
    path: Path | None = None  # where it was read from (None: no file, the defaults)


def config_path(models_dir: Path) -> Path | None:
    for name in (TEXT_FILE, YAML_FILE):
        if (Path(models_dir) / name).exists():
            return Path(models_dir) / name
    return None


def default_config(models_dir: Path) -> ServingConfig:
    """Every model folder, latest version (TF Serving's default policy)."""
    base = Path(models_dir)
    names = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.exists() else []
    return ServingConfig({name: ModelEntry(name, base / name) for name in names})


def load_config(models_dir: Path) -> ServingConfig:
    """The config file of ``models_dir`` (or the defaults). Raises ValueError naming the file and the
    problem for a malformed one."""
    path = config_path(models_dir)
    if path is None:
        return default_config(models_dir)
    proto, traffic = _read(path)
    models = {}
    for entry in proto.model_config_list.config:
        if not entry.name:
            raise ValueError(f"{path}: every model config needs a name.")
        if entry.model_platform and entry.model_platform != "tensorflow":
            raise ValueError(f"{path}: model {entry.name!r}: only model_platform 'tensorflow' is served here.")
        base = Path(entry.base_path or entry.name)
        policy_kind = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        policy = VersionPolicy(
            kind=policy_kind,
            num_versions=max(1, entry.model_version_policy.latest.num_versions or 1),
            versions=tuple(entry.model_version_policy.specific.versions),
        )
        if policy_kind == "specific" and not policy.versions:
            raise ValueError(f"{path}: model {entry.name!r}: a specific version policy needs versions.")
        models[entry.name] = ModelEntry(
            entry.name, base if base.is_absolute() else Path(models_dir) / base, policy, dict(entry.version_labels)
        )
    splits = {}
    for name, about in (traffic or {}).items():
        if name not in models:
            raise ValueError(f"{path}: traffic for {name!r}, which is not in model_config_list.")
        try:
            splits[name] = TrafficSplit(str(about["label"]), float(about["percent"]), about.get("key"))
        except (KeyError, TypeError) as problem:
            raise ValueError(f"{path}: traffic for {name!r} needs 'label' and 'percent' ({problem}).") from None
    return ServingConfig(models, splits, path)


def _read(path: Path) -> tuple[Any, dict[str, Any]]:
    from google.protobuf import json_format, text_format
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    try:
        if path.name == TEXT_FILE:
            text_format.Parse(path.read_text(), proto)
            return proto, {}
        document = yaml.safe_load(path.read_text()) or {}
        if not isinstance(document, dict):
            raise ValueError("expected a mapping at the top")
        traffic = document.pop("traffic", None) or {}
        json_format.ParseDict(document, proto)
        return proto, traffic
    except (text_format.ParseError, json_format.ParseError, yaml.YAMLError, ValueError) as problem:
        raise ValueError(f"{path}: not a valid model config: {problem}") from None


def write_config(models_dir: Path, config: ServingConfig) -> Path:
    """Write ``config`` in the format it was read from (YAML when it came from no file), atomically:
    a server polling the folder never reads half a file."""
    from google.protobuf import json_format, text_format
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    for entry in config.models.values():
        model = proto.model_config_list.config.add(name=entry.name, model_platform="tensorflow")
        base = entry.base_path
        model.base_path = str(base.relative_to(models_dir)) if base.is_relative_to(models_dir) else str(base)
        if entry.policy.kind == "all":
            model.model_version_policy.all.SetInParent()
        elif entry.policy.kind == "specific":
            model.model_version_policy.specific.versions.extend(entry.policy.versions)
        else:
            model.model_version_policy.latest.num_versions = entry.policy.num_versions
        for label, version in sorted(entry.labels.items()):
            model.version_labels[label] = version
    path = config.path or Path(models_dir) / YAML_FILE
    if path.name == TEXT_FILE:
        if config.traffic:
            raise ValueError(f"{path} is TF Serving's text format, which has no traffic split: use {YAML_FILE}.")
        text = text_format.MessageToString(proto)
    else:
        document = json_format.MessageToDict(proto, preserving_proto_field_name=True)
        if config.traffic:
            document["traffic"] = {
                name: {"label": split.label, "percent": split.percent, **({"key": split.key} if split.key else {})}
                for name, split in config.traffic.items()
            }
        text = yaml.safe_dump(document, sort_keys=False)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    os.replace(staging, path)
    return path
