"""Typed settings, read from the environment (prefix ``SOLUTIONS_``) or passed explicitly.

Nothing here touches the disk at import time: paths are resolved when a command needs them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data, models and run reports live, and where the API listens.

    The defaults keep everything under ``./artifacts`` so a laptop demo needs no configuration; a
    production fork points ``SOLUTIONS_MODELS_DIR`` at the directory TF Serving (or our server) reads.
    """

    model_config = SettingsConfigDict(env_prefix="SOLUTIONS_", extra="ignore")

    home: Path = Field(default=Path("artifacts"), description="Root for data, models and runs.")
    data_dir: Path | None = Field(default=None, description="Parquet store (default: <home>/data).")
    models_dir: Path | None = Field(
        default=None, description="Serving model base: <models_dir>/<app>/<version>/ (default: <home>/models)."
    )
    runs_dir: Path | None = Field(default=None, description="Run reports, plots, logs (default: <home>/runs).")
    batch_dir: Path | None = Field(
        default=None, description="Batch outputs: <batch_dir>/<app>/date=<YYYY-MM-DD>/ (default: <home>/batch)."
    )
    contracts_dir: Path = Field(default=Path("data_contracts"), description="Where contracts are looked up by name.")
    apps: list[str] = Field(
        default_factory=list,
        description="Apps that are not installed packages, as 'module:attribute' (a test's or a notebook's); "
        'installed apps are found through entry points. From the environment: SOLUTIONS_APPS=\'["pkg.mod:APP"]\'.',
    )
    host: str = Field(default="127.0.0.1", description="API bind address; loopback unless you mean it.")
    port: int = Field(default=8501, description="API port (TF Serving's REST default).")
    target: str = Field(default="cpu", description="cpu | gpu | tpu | edge: picks strategy and precision.")
    precision: str | None = Field(
        default=None,
        description="Keras dtype policy for training: float32 | mixed_float16 | mixed_bfloat16 (default: the "
        "target's: mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 otherwise; mixed_bfloat16 also runs on CPU).",
    )
    jit_compile: bool | None = Field(default=None, description="XLA for Keras fits (default: the target's: on for GPU and TPU).")
    grpc_port: int = Field(default=8500, description="gRPC port (TF Serving's default); 0 = no gRPC server.")
    workers: int = Field(default=1, description="Server processes sharing the port (each loads every model).")
    access_log: bool = Field(
        default=False, description="Log every request (uvicorn's access log: ~13 % of a one-row prediction's CPU)."
    )
    api_key: str | None = Field(
        default=None, description="When set, every route but /healthz needs 'Authorization: Bearer <key>' (or x-api-key)."
    )
    # Limits: hostile or mistaken requests are refused before they cost memory or time.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Largest request body (413 past it).")
    max_instances: int = Field(default=10_000, description="Most instances in one :predict request.")
    max_string_length: int = Field(default=4 * 1024 * 1024, description="Longest string value (e.g. a b64 image).")
    request_timeout_seconds: float = Field(default=30.0, description="A request still running after this answers 504.")
    request_log_rate: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="Share of answered requests written with their answers to <data_dir>/request_log/ (Parquet, per app and day; 0 = off).",
    )
    # Dynamic batching, TF Serving's knobs (serving/batching.py says what each does).
    max_batch_size: int = Field(default=512, description="Rows per signature call.")
    batch_timeout_micros: int = Field(default=0, description="Wait for a fuller batch (0 = greedy: never wait).")
    num_batch_threads: int = Field(default=1, description="Batches computed at once, per model version.")
    max_enqueued_batches: int = Field(default=64, description="Queue bound in full batches; past it requests get 503.")

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir or self.home / "data")

    def resolved_models_dir(self) -> Path:
        return Path(self.models_dir or self.home / "models")

    def resolved_runs_dir(self) -> Path:
        return Path(self.runs_dir or self.home / "runs")

    def resolved_batch_dir(self) -> Path:
        return Path(self.batch_dir or self.home / "batch")

    def resolved_contracts_dir(self) -> Path:
        return Path(self.contracts_dir)

    def contract_folders(self) -> list[Path]:
        """Where a contract given by bare name is looked up, first match wins: ``contracts_dir``, the
        folder the command runs in (a client's project keeps its contracts beside its configs), and the
        suite's own ``data_contracts/`` (the apps' default contracts, wherever the command runs)."""
        folders = [self.resolved_contracts_dir(), Path.cwd(), SUITE_CONTRACTS]
        unique = dict.fromkeys(folder.resolve() for folder in folders if folder.is_dir())
        return list(unique)


# The checkout's data_contracts/ (shared/src/solutions_core/settings.py -> the repository root).
SUITE_CONTRACTS = Path(__file__).resolve().parents[3] / "data_contracts"
