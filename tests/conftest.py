"""Shared fixtures: every registered app trained once on tiny data into a temporary home (lazily, one
app at a time, so one broken app fails only its own tests), and one real server over them on
127.0.0.1 (stopped at the end of the session).

The core's own tests do not use these: they run on ``tests/tiny_app`` (see ``tests/core/conftest.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:  # the tiny app of the core's tests is imported as ``tiny_app``
    sys.path.insert(0, str(TESTS))


def registered_apps() -> list[str]:
    """Every installed app; ``SOLUTIONS_TEST_APPS=a,b`` narrows a session to some of them (while working
    on one app: CI always runs them all)."""
    from solutions_core.registry import list_solutions

    names = [entry.name for entry in list_solutions()]
    chosen = [name.strip() for name in os.environ.get("SOLUTIONS_TEST_APPS", "").split(",") if name.strip()]
    return [name for name in names if name in chosen] if chosen else names


class TrainedApps:
    """app name -> RunResult of one tiny training run (published as version 1), trained on first use.
    A failed training is remembered and raised again for every test of that app only."""

    def __init__(self, settings: Any):
        self.settings = settings
        self._results: dict[str, Any] = {}
        self._errors: dict[str, BaseException] = {}

    def __getitem__(self, app: str) -> Any:
        if app in self._errors:
            raise RuntimeError(f"{app} failed to train in this session") from self._errors[app]
        if app not in self._results:
            from solutions_core.registry import get_solution
            from solutions_core.training import run_training

            solution = get_solution(app)
            try:
                self._results[app] = run_training(solution, solution.tiny_config(), self.settings, verbose=0)
            except Exception as error:
                self._errors[app] = error
                raise
        return self._results[app]

    def train_all(self, apps: list[str]) -> list[str]:
        """Train every app that trains; returns those that did."""
        ready = []
        for app in apps:
            try:
                self[app]
                ready.append(app)
            except Exception:  # reported by that app's own tests
                pass
        return ready


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def settings(home: Path):
    from solutions_core.settings import Settings

    return Settings(home=home, contracts_dir=REPO / "data_contracts")


@pytest.fixture(scope="session")
def trained(settings) -> TrainedApps:
    return TrainedApps(settings)


@pytest.fixture(scope="session")
def server(trained: TrainedApps, home: Path):
    from solutions_core.demo import ServerProcess

    ready = trained.train_all(registered_apps())
    with ServerProcess(home, extra_env={"SOLUTIONS_CONTRACTS_DIR": str(REPO / "data_contracts")}) as running:
        running.wait_ready(ready)
        yield running
