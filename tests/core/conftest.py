"""The core's fixtures: the tiny app of ``tests/tiny_app`` trained once into its own home, and a real
server over it. No real app is involved, so a broken app cannot break the core's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_app import APP, CONTRACTS, ENVIRONMENT, server_environment


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_home")


@pytest.fixture(scope="session")
def tiny_settings(tiny_home: Path):
    from solutions_core.settings import Settings

    return Settings(home=tiny_home, contracts_dir=CONTRACTS)


@pytest.fixture(scope="session")
def tiny_run(tiny_settings):
    """The RunResult of one training run of the tiny app (published as version 1)."""
    from solutions_core.training import run_training

    return run_training(APP, APP.tiny_config(), tiny_settings, verbose=0)


@pytest.fixture
def tiny_registered(monkeypatch: pytest.MonkeyPatch):
    """The tiny app registered through Settings.apps in this process (for the CLI and the registry)."""
    from solutions_core.registry import get_solution

    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    get_solution.cache_clear()
    yield APP
    get_solution.cache_clear()


@pytest.fixture(scope="session")
def tiny_server(tiny_run, tiny_home: Path):
    from solutions_core.demo import ServerProcess

    with ServerProcess(tiny_home, extra_env=server_environment()) as running:
        running.wait_ready([APP.name])
        yield running
