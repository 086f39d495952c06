"""Shared fixtures: every registered app trained once on tiny data into a temporary home, and one
real server over it on 127.0.0.1 (stopped at the end of the session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]


def registered_apps() -> list[str]:
    from solutions_core.registry import list_solutions

    return [entry.name for entry in list_solutions()]


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def settings(home: Path):
    from solutions_core.settings import Settings

    return Settings(home=home, contracts_dir=REPO / "data_contracts")


@pytest.fixture(scope="session")
def trained(settings) -> dict:
    """app name -> RunResult of one tiny training run (published as version 1)."""
    from solutions_core.registry import get_solution
    from solutions_core.training import run_training

    results = {}
    for name in registered_apps():
        solution = get_solution(name)
        results[name] = run_training(solution, solution.tiny_config(), settings, verbose=0)
    return results


@pytest.fixture(scope="session")
def server(trained, home: Path):
    from solutions_core.demo import ServerProcess

    with ServerProcess(home, extra_env={"SOLUTIONS_CONTRACTS_DIR": str(REPO / "data_contracts")}) as running:
        running.wait_ready(list(trained))
        yield running
