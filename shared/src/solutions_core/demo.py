"""The laptop demo: every installed app end to end, with a real server on 127.0.0.1 and a real
TF-Serving request — the same path a production deployment takes, in a few minutes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_json(method: str, url: str, payload: Any = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as problem:
        return problem.code, json.loads(problem.read() or b"{}")


class ServerProcess:
    """``solutions serve`` in a child process on 127.0.0.1; always stopped on exit."""

    def __init__(self, home: Path, port: int | None = None, extra_env: dict[str, str] | None = None):
        self.home = Path(home)
        self.port = port or free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = self.home / "server.log"

    def __enter__(self) -> "ServerProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.extra_env}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "solutions_core.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), "--home", str(self.home), "--poll-seconds", "1"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def wait_ready(self, models: list[str] | None = None, timeout: float = 120) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"The server exited with {self.process.returncode}; see {self.log_path}.")
            try:
                status, body = http_json("GET", f"{self.url}/healthz", timeout=2)
                if status == 200 and all(m in body.get("models", {}) for m in (models or [])):
                    return body["models"]
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"The server did not become ready in {timeout:.0f} s; see {self.log_path}.")

    def __exit__(self, *exc: Any) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def run_demo(
    apps: list[str] | None = None,
    *,
    size: int | None = None,
    home: Path | None = None,
    console: Console | None = None,
    quick: bool = False,
) -> int:
    from solutions_core.cli import print_run
    from solutions_core.model_registry import ModelRegistry
    from solutions_core.registry import get_solution, list_solutions
    from solutions_core.settings import Settings
    from solutions_core.training import context_for, run_training

    console = console or Console()
    settings = Settings(home=home) if home else Settings()
    names = apps or [entry.name for entry in list_solutions()]
    if not names:
        console.print("[red]No solutions are installed.[/red]")
        return 1
    golden: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        solution = get_solution(name)
        console.rule(f"[bold]{solution.title}[/bold] — {solution.description}")
        config = solution.tiny_config() if quick else solution.demo_config()
        if size:
            config = solution.make_config({**config.model_dump(), "size": size})
        result = run_training(solution, config, settings, verbose=1, report=lambda m: console.print(f"[cyan]▸[/cyan] {m}"))
        print_run(result)
        if not result.promoted and not ModelRegistry(settings.resolved_models_dir()).versions(solution.name):
            console.print(f"[yellow]{solution.name}: nothing published, so nothing of it to serve.[/yellow]")
            continue
        # Send what a client would: the contract's fields only. Fields a request may add on top (e.g.
        # precomputed history) are dropped, so the server's online features fill them in.
        added = solution.serving.request(context_for(solution, config, settings)).extra
        golden[solution.name] = [
            {key: value for key, value in instance.items() if key not in added}
            for instance in result.golden_instances[:3]
        ]

    if not golden:
        console.print("[red]No app published a model; nothing to serve.[/red]")
        return 1
    console.rule("[bold]Serving[/bold] (TF Serving REST API on 127.0.0.1)")
    with ServerProcess(settings.home) as server:
        versions = server.wait_ready(list(golden))
        console.print(f"server {server.url} ready: {versions}")
        for name, instances in golden.items():
            url = f"{server.url}/v1/models/{name}:predict"
            console.print(f"[bold]POST[/bold] {url}")
            console.print_json(json.dumps({"instances": instances[:1]}))
            status, body = http_json("POST", url, {"instances": instances})
            console.print(f"→ HTTP {status}")
            console.print_json(json.dumps(body))
            if status != 200:
                return 1
    console.print("[green]Demo complete; the server has been stopped.[/green]")
    return 0
