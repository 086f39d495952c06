"""`make airflow-up` / `make airflow-down`: the scripts start Airflow on 127.0.0.1 (SQLite) with the
repo's DAGs, and stop every process they started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def session_rss_mib(sessions: set[int]) -> float:
    """Resident memory of every process in the given sessions (each script-started process leads one)."""
    total_kib = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) in sessions:  # field 6 of /proc/PID/stat: the session id
                total_kib += next(int(line.split()[1]) for line in (stat.parent / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError, IndexError):
            continue  # a process that ended while we looked
    return total_kib / 1024


@pytest.mark.slow
def test_airflow_up_serves_health_on_loopback_and_down_stops_everything(tmp_path):
    port = free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW_PORT": str(port), "SOLUTIONS_HOME": str(tmp_path / "home")}
    started = time.perf_counter()
    up = subprocess.run([str(REPO / "scripts" / "airflow-up.sh")], env=env, capture_output=True, text=True, timeout=300)
    pids = {path.stem: int(path.read_text()) for path in (tmp_path / "airflow" / "pids").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"airflow-up: healthy in {time.perf_counter() - started:.1f} s")
        assert set(pids) == {"api-server", "scheduler", "dag-processor", "triggerer"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            health = json.load(response)
        assert health["metadatabase"]["status"] == "healthy"
        # Loopback only: the api-server's port answers on 127.0.0.1 and is not bound to all interfaces.
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = [line.split()[1] for line in listening if line.split()[3] == "0A"]
        assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local
        print(f"airflow-up: {session_rss_mib(set(pids.values())):.0f} MiB resident (the four processes and their workers)")
    finally:
        down = subprocess.run([str(REPO / "scripts" / "airflow-down.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not list((tmp_path / "airflow" / "pids").glob("*.pid"))
