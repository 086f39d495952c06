"""A new app from an app (``solutions new``) and an app removed (``solutions remove``), on a copy of
this checkout's files in a temporary folder; the slow test runs the new app's copied tests and the
conformance suite. (Client projects rendered with copier: test_template.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solutions_core.scaffold import ScaffoldError, find_app, installed_apps, new_app, remove_app

REPO = Path(__file__).resolve().parents[1]
UV = REPO / ".uv" / "bin" / "uv"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def copy_checkout(target: Path) -> Path:
    """The files git knows of (tracked, or new and not ignored): what a clone of this work would hold."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return copy_checkout(tmp_path / "suite")


def all_text(root: Path, paths: list[Path]) -> str:
    return "\n".join(p.read_text() for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file() and p.suffix != ".pyc")


# ---- a new app inside the suite ---------------------------------------------------------------------
# Written for whichever apps this checkout has (a fork keeps some; removing one must leave these green).

APPS = installed_apps(REPO)
SOURCE = "fraud_detection" if "fraud_detection" in APPS else APPS[0]


def template_apps(root: Path) -> list[str] | None:
    """The template's ``apps`` question (a rendered project has no copier.yml)."""
    path = root / "copier.yml"
    return yaml.safe_load(path.read_text())["apps"]["choices"] if path.exists() else None


def test_new_app_is_the_source_app_with_every_name_replaced(checkout):
    source = find_app(checkout, SOURCE)
    written = new_app(checkout, SOURCE, "card_churn", lock=False)
    package = checkout / "solutions" / "card_churn"
    assert (package / "src" / "card_churn" / "__init__.py").exists() and (package / "README.md").exists()
    assert (checkout / "tests" / "card_churn").is_dir() == source.tests.is_dir()
    assert (checkout / "notebooks" / "card_churn.ipynb").exists() == source.notebook.exists()
    pyproject = (package / "pyproject.toml").read_text()
    assert 'name = "card-churn"' in pyproject and 'card_churn = "card_churn:SOLUTION"' in pyproject
    assert 'packages = ["src/card_churn"]' in pyproject
    # Its own contracts are renamed; the public data sets' contracts are shared as they are.
    copied = find_app(checkout, "card_churn")
    assert len(copied.own_contracts) == len(source.own_contracts) >= 1
    for contract in copied.own_contracts:
        assert contract.startswith("card_churn_")
        assert yaml.safe_load((checkout / "data_contracts" / f"{contract}.yaml").read_text())["name"] == contract
    assert set(copied.contracts) - set(copied.own_contracts) == set(source.contracts) - set(source.own_contracts)
    new_text = all_text(checkout, [package, checkout / "tests" / "card_churn", checkout / "notebooks" / "card_churn.ipynb"])
    old_names = [SOURCE, SOURCE.replace("_", "-"), *source.own_contracts]
    assert not re.search("|".join(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])" for n in old_names), new_text)
    assert "class CardChurn(" in new_text
    # The shared files the scaffold keeps in step: the workspace, the template's app list.
    assert "card-churn = { workspace = true }" in (checkout / "pyproject.toml").read_text()
    assert template_apps(checkout) is None or "card_churn" in template_apps(checkout)
    assert all(path.exists() for path in written)
    # The source app is untouched.
    for contract in source.own_contracts:
        assert (checkout / "data_contracts" / f"{contract}.yaml").read_text() == (REPO / "data_contracts" / f"{contract}.yaml").read_text()


@pytest.mark.parametrize("app", APPS)
def test_a_copied_apps_routes_and_dag_settings_are_its_own(checkout, app):
    routes = find_app(checkout, app).routes()
    new_app(checkout, app, "copied_app", lock=False)
    code = all_text(checkout, [checkout / "solutions" / "copied_app" / "src"])
    for route in routes:  # e.g. /recommend -> /copied_app/recommend
        assert f'"/copied_app{route}' in code and f'"{route}"' not in code
    for path in sorted((checkout / "dags").glob("orchestration*.yaml")):
        settings = yaml.safe_load(path.read_text()).get("apps") or {}
        assert settings.get("copied_app") == settings.get(app)


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        (SOURCE, APPS[-1], "already exists"),
        (SOURCE, "Churn", "not a valid app name"),
        (SOURCE, "class", "not a valid app name"),
        (SOURCE, "json", "shadow"),
        ("no_such_app", "churn", "No app 'no_such_app'"),
    ],
)
def test_new_app_refuses_clearly_and_writes_nothing(checkout, source, name, message):
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    with pytest.raises(ScaffoldError, match=message):
        new_app(checkout, source, name, lock=False)
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before


def test_removing_an_app_takes_its_files_and_leaves_the_others(checkout):
    new_app(checkout, SOURCE, "card_churn", lock=False)  # an app of known make-up, removed again
    removed = {p.relative_to(checkout).as_posix() for p in remove_app(checkout, "card_churn", lock=False)}
    copied_contracts = {f"data_contracts/card_churn_{c.split('_', 1)[1] if not c.startswith(SOURCE + '_') else c[len(SOURCE) + 1:]}.yaml" for c in find_app(checkout, SOURCE).own_contracts}
    assert {"solutions/card_churn"} | copied_contracts <= removed
    assert all(not (checkout / path).exists() for path in removed)
    assert installed_apps(checkout) == APPS and "card-churn" not in (checkout / "pyproject.toml").read_text()
    assert template_apps(checkout) is None or "card_churn" not in template_apps(checkout)
    # A data-set contract goes with the last app that names it, not before.
    apps = {app: find_app(checkout, app) for app in APPS}
    shared = {c: [a for a, files in apps.items() if c in files.contracts] for files in apps.values() for c in files.contracts if c not in files.own_contracts}
    for contract, naming in shared.items():
        for app in naming[:-1]:
            remove_app(checkout, app, lock=False)
            assert (checkout / "data_contracts" / f"{contract}.yaml").exists()
        remove_app(checkout, naming[-1], lock=False)
        assert not (checkout / "data_contracts" / f"{contract}.yaml").exists()
        break
    gone = [app for app in APPS if not (checkout / "solutions" / app).exists()]
    for app in gone:
        assert f"{app.replace('_', '-')} = {{ workspace" not in (checkout / "pyproject.toml").read_text()
        for path in sorted((checkout / "dags").glob("orchestration*.yaml")):
            assert app not in (yaml.safe_load(path.read_text()).get("apps") or {})


def test_the_template_offers_the_apps_there_are():
    if (REPO / "copier.yml").exists():
        copier = yaml.safe_load((REPO / "copier.yml").read_text())
        assert copier["apps"]["choices"] == copier["apps"]["default"]
        assert sorted(copier["apps"]["choices"]) == APPS
    else:  # a rendered project: its answers name the apps it kept
        answers = yaml.safe_load((REPO / ".copier-answers.yml").read_text())
        assert sorted(answers["apps"]) == APPS


def test_the_server_refuses_two_apps_on_one_route(monkeypatch, tmp_path):
    from fastapi import APIRouter

    from solutions_core.registry import list_solutions
    from solutions_core.serving import app as serving_app
    from solutions_core.settings import Settings

    entries = list_solutions()[:2]
    assert len(entries) == 2

    class Claims:
        def __init__(self, name: str):
            self.name = name

        @property
        def serving(self):
            routes = APIRouter()
            routes.add_api_route("/score", lambda: {}, methods=["POST"])
            return type("S", (), {"routers": lambda _self, manager: [routes]})()

    monkeypatch.setattr("solutions_core.registry.get_solution", lambda name: Claims(name))
    with pytest.raises(ValueError, match=f"{entries[0].name} and {entries[1].name} both mount POST /score"):
        serving_app.create_app(Settings(home=tmp_path))


# ---- slow: the copies install and pass their own tests ------------------------------------------------


def entry_point_folder(root: Path, app: str) -> Path:
    """A folder on PYTHONPATH that registers ``app`` the way an installed package does (its entry point),
    so the copy's tests run against the copy's code without touching this environment."""
    folder = root / ".entry-points"
    info = folder / f"{app}-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {app}\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(f"[solutions_core.solutions]\n{app} = {app}:SOLUTION\n")
    return folder


@pytest.mark.slow
def test_a_new_app_passes_its_copied_tests_and_the_conformance_suite(checkout, monkeypatch):
    monkeypatch.setenv("UV", str(UV))
    new_app(checkout, SOURCE, "card_churn")  # with the lock: the workspace as `make install` would take it
    assert 'name = "card-churn"' in (checkout / "uv.lock").read_text()
    paths = [entry_point_folder(checkout, "card_churn"), checkout / "shared" / "src", checkout / "solutions" / "card_churn" / "src"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "SOLUTIONS_TEST_APPS": "card_churn"}
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", "tests/card_churn", "tests/test_conformance.py"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-2000:]
    assert re.search(r"\d+ passed", finished.stdout)
    # The CLI and the DAG factory find it too, with nothing in the core edited.
    listed = subprocess.run([sys.executable, "-m", "solutions_core.cli", "list"], cwd=checkout, env=env, capture_output=True, text=True)
    assert "card_churn" in listed.stdout, listed.stdout + listed.stderr
    dags = subprocess.run(
        [sys.executable, "-c", "from solutions_core.orchestration.airflow_dags import training_dags, batch_dags; "
         "print(sorted(training_dags('dags/orchestration.yaml')) + sorted(batch_dags('dags/orchestration.yaml')))"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
    )
    assert "'train_card_churn'" in dags.stdout and "'batch_card_churn'" in dags.stdout, dags.stdout[-2000:] + dags.stderr[-2000:]


def test_the_cli_creates_and_removes_apps_and_explains_refusals(checkout):
    from typer.testing import CliRunner

    from solutions_core.cli import app

    runner = CliRunner()
    created = runner.invoke(app, ["new", "card_churn", "--from", SOURCE, "--root", str(checkout), "--no-lock"])
    assert created.exit_code == 0, created.output
    assert "card_churn" in created.output and "solutions train card_churn" in created.output
    refused = runner.invoke(app, ["new", "card_churn", "--from", SOURCE, "--root", str(checkout), "--no-lock"])
    assert refused.exit_code == 1 and "already exists" in refused.output and "Traceback" not in refused.output
    removed = runner.invoke(app, ["remove", "card_churn", "--root", str(checkout), "--no-lock"])
    assert removed.exit_code == 0 and "solutions/card_churn" in removed.output
    assert not (checkout / "solutions" / "card_churn").exists() and not list((checkout / "data_contracts").glob("card_churn_*"))
