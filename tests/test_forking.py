"""Template forking: a new app from an app (``solutions new``), an app removed (``solutions remove``), a
client project rendered from this repository with copier and updated to a later version of it.

Every test works on a copy of this checkout's files in a temporary folder (the repository itself is
the template); the slow ones install and run the copies' own tests."""

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


def test_new_app_is_the_source_app_with_every_name_replaced(checkout):
    written = new_app(checkout, "fraud_detection", "card_churn", lock=False)
    package = checkout / "solutions" / "card_churn"
    assert (package / "src" / "card_churn" / "solution.py").exists() and (package / "README.md").exists()
    assert (checkout / "tests" / "card_churn").is_dir() and (checkout / "notebooks" / "card_churn.ipynb").exists()
    pyproject = (package / "pyproject.toml").read_text()
    assert 'name = "card-churn"' in pyproject and 'card_churn = "card_churn:SOLUTION"' in pyproject
    assert 'packages = ["src/card_churn"]' in pyproject
    # Its own contract is renamed; the public data sets' contracts are shared as they are.
    contract = yaml.safe_load((checkout / "data_contracts" / "card_churn_transactions.yaml").read_text())
    assert contract["name"] == "card_churn_transactions"
    assert "credit_data" in find_app(checkout, "card_churn").contracts and not (checkout / "data_contracts" / "card_churn_credit_data.yaml").exists()
    new_text = all_text(checkout, [package, checkout / "tests" / "card_churn", checkout / "notebooks" / "card_churn.ipynb"])
    assert not re.search(r"fraud_detection|fraud-detection|FraudDetection|fraud_transactions", new_text)
    assert "class CardChurn(" in new_text and '"card_churn_transactions"' in new_text
    # The shared files the scaffold keeps in step: the workspace, the template's app list.
    assert "card-churn = { workspace = true }" in (checkout / "pyproject.toml").read_text()
    assert "card_churn" in yaml.safe_load((checkout / "copier.yml").read_text())["apps"]["choices"]
    assert all(path.exists() for path in written)
    # The source app is untouched.
    assert (checkout / "data_contracts" / "fraud_transactions.yaml").read_text() == (REPO / "data_contracts" / "fraud_transactions.yaml").read_text()


def test_a_copied_apps_routes_and_dag_settings_are_its_own(checkout):
    new_app(checkout, "recommendation", "shop_picks", lock=False)
    api = (checkout / "solutions" / "shop_picks" / "src" / "shop_picks" / "api.py").read_text()
    assert '"/shop_picks/recommend"' in api and '"/recommend"' not in api
    assert (checkout / "data_contracts" / "shop_picks_interactions_untimed.yaml").exists()  # longest names first
    new_app(checkout, "vision_qc", "weld_check", lock=False)
    orchestration = yaml.safe_load((checkout / "dags" / "orchestration.yaml").read_text())
    assert orchestration["apps"]["weld_check"] == orchestration["apps"]["vision_qc"] == {"target": "edge"}


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("fraud_detection", "vision_qc", "already exists"),
        ("fraud_detection", "Churn", "not a valid app name"),
        ("fraud_detection", "class", "not a valid app name"),
        ("fraud_detection", "json", "shadow"),
        ("no_such_app", "churn", "No app 'no_such_app'"),
    ],
)
def test_new_app_refuses_clearly_and_writes_nothing(checkout, source, name, message):
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    with pytest.raises(ScaffoldError, match=message):
        new_app(checkout, source, name, lock=False)
    assert sorted(p.relative_to(checkout) for p in checkout.rglob("*")) == before


def test_removing_an_app_takes_its_files_and_leaves_the_others(checkout):
    removed = remove_app(checkout, "vision_qc", lock=False)
    assert {p.relative_to(checkout).as_posix() for p in removed} == {
        "solutions/vision_qc", "tests/vision_qc", "notebooks/vision_qc.ipynb", "data_contracts/vision_qc_images.yaml",
        "benchmarks/vision_quality.py", "benchmarks/edge_latency.py",  # its own; real_data.py names the others too
    }
    assert installed_apps(checkout) == ["demand_forecasting", "fraud_detection", "recommendation"]
    assert "vision-qc" not in (checkout / "pyproject.toml").read_text()
    assert "vision_qc" not in yaml.safe_load((checkout / "dags" / "orchestration.yaml").read_text()).get("apps", {})
    assert yaml.safe_load((checkout / "copier.yml").read_text())["apps"]["choices"] == ["fraud_detection", "recommendation", "demand_forecasting"]
    # A data-set contract goes with the last app that names it.
    remove_app(checkout, "fraud_detection", lock=False)
    assert not (checkout / "data_contracts" / "credit_data.yaml").exists()
    assert (checkout / "data_contracts" / "rec_interactions.yaml").exists()


def test_the_template_offers_the_apps_there_are():
    copier = yaml.safe_load((REPO / "copier.yml").read_text())
    assert copier["apps"]["choices"] == copier["apps"]["default"]
    assert sorted(copier["apps"]["choices"]) == installed_apps(REPO)


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
def test_a_new_app_passes_its_copied_tests_and_the_conformance_suite(checkout):
    new_app(checkout, "fraud_detection", "card_churn", lock=False)
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


def copier(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_IDENTITY, "UV": str(UV)}
    done = subprocess.run([str(Path(sys.executable).with_name("copier")), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_a_client_project_renders_installs_and_takes_a_template_update_keeping_its_edits(tmp_path):
    template = copy_checkout(tmp_path / "template")
    git(template, "init", "-q")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "suite 1.0")
    git(template, "tag", "v1.0.0")
    fork = tmp_path / "acme"
    answers = ["--data", "project_name=Acme fraud", "--data", "owner=ml@acme.example", "--data", 'apps=["fraud_detection"]',
               "--data", "package_prefix=acme", "--data", "default_target=gpu", "--data", "airflow=false"]
    copier("copy", "--trust", "--defaults", *answers, str(template), str(fork), cwd=tmp_path)

    # The client's project: its README first, its apps only, its names, its defaults, a lock to match.
    assert (fork / "README.md").read_text().startswith("# Acme fraud\n\nOwned by ml@acme.example.")
    assert installed_apps(fork) == ["fraud_detection"] and not (fork / "dags").exists() and not (fork / "copier.yml").exists()
    assert yaml.safe_load((fork / ".copier-answers.yml").read_text())["_commit"] == "v1.0.0"
    assert yaml.safe_load((fork / "data_contracts" / "fraud_transactions.yaml").read_text())["owner"] == "ml@acme.example"
    lock = (fork / "uv.lock").read_text()
    assert 'name = "acme-fraud-detection"' in lock and 'name = "vision-qc"' not in lock and "apache-airflow" not in lock
    assert "airflow" not in (fork / "Makefile").read_text()

    git(fork, "init", "-q")
    git(fork, "add", "-A")
    git(fork, "commit", "-qm", "rendered")
    # The client's edits: a config default, a contract column, a line of the model, the app README's title.
    config_py = fork / "solutions" / "fraud_detection" / "src" / "fraud_detection" / "config.py"
    model_py = fork / "solutions" / "fraud_detection" / "src" / "fraud_detection" / "model.py"
    contract = fork / "data_contracts" / "fraud_transactions.yaml"
    app_readme = fork / "solutions" / "fraud_detection" / "README.md"
    title = app_readme.read_text().splitlines()[0]
    edit(config_py, "review_cost: float = Field(default=5.0", "review_cost: float = Field(default=7.5")
    edit(contract, "columns:\n", "columns:\n  acme_branch:\n    type: string\n    nullable: true\n    role: metadata\n    description: The client's branch code.\n")
    edit(model_py, '"""The fraud models, top to bottom.', '"""The fraud models, top to bottom (Acme: reviewed by the risk team).')
    edit(app_readme, title, "# Acme card fraud")
    git(fork, "commit", "-qam", "client edits")

    # The suite's next version: a core change, a change of the same model file elsewhere, and one on the
    # very line the client changed (a conflict, to be shown where it is).
    settings_py = template / "shared" / "src" / "solutions_core" / "settings.py"
    edit(settings_py, '"""', '"""Suite 1.1: settings unchanged, this line added by the template.\n\n', )
    edit(template / "solutions" / "fraud_detection" / "src" / "fraud_detection" / "model.py", "from __future__ import annotations\n", "from __future__ import annotations\n\n# Suite 1.1: a template change in the model file.\n")
    edit(template / "solutions" / "fraud_detection" / "README.md", title, "# Fraud detection (suite 1.1)")
    git(template, "commit", "-qam", "suite 1.1")
    git(template, "tag", "v1.1.0")

    copier("update", "--trust", "--defaults", "--skip-answered", cwd=fork)
    assert yaml.safe_load((fork / ".copier-answers.yml").read_text())["_commit"] == "v1.1.0"
    assert "Suite 1.1: settings unchanged" in (fork / "shared" / "src" / "solutions_core" / "settings.py").read_text()
    model_text = model_py.read_text()
    assert "# Suite 1.1: a template change in the model file." in model_text and "(Acme: reviewed by the risk team)" in model_text
    assert "review_cost: float = Field(default=7.5" in config_py.read_text()
    assert "acme_branch" in yaml.safe_load(contract.read_text())["columns"]
    assert (fork / "README.md").read_text().startswith("# Acme fraud")
    conflicted = app_readme.read_text()
    assert "<<<<<<<" in conflicted and "# Acme card fraud" in conflicted and "# Fraud detection (suite 1.1)" in conflicted
    status = git(fork, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line.endswith(".rej")]
    others = [p for p in (fork / "solutions").rglob("*.py") if "<<<<<<<" in p.read_text()]
    assert others == []

    # The fork installs with its own Makefile and its tests pass (a smoke subset: a new environment of
    # its own, from the uv cache this suite's install filled).
    installed = subprocess.run(["make", "install", f"UV={UV}"], cwd=fork, capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    smoke = subprocess.run(
        [str(fork / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "tests/fraud_detection/test_history.py", "tests/core/test_contracts.py"],
        cwd=fork, capture_output=True, text=True, timeout=900,
    )
    assert smoke.returncode == 0, smoke.stdout[-4000:] + smoke.stderr[-2000:]
    listed = subprocess.run([str(fork / ".venv" / "bin" / "solutions"), "list"], cwd=fork, capture_output=True, text=True)
    assert listed.returncode == 0 and "fraud_detection" in listed.stdout and "vision_qc" not in listed.stdout


def test_the_cli_creates_and_removes_apps_and_explains_refusals(checkout):
    from typer.testing import CliRunner

    from solutions_core.cli import app

    runner = CliRunner()
    created = runner.invoke(app, ["new", "card_churn", "--from", "fraud_detection", "--root", str(checkout), "--no-lock"])
    assert created.exit_code == 0, created.output
    assert "card_churn" in created.output and "solutions train card_churn" in created.output
    refused = runner.invoke(app, ["new", "card_churn", "--from", "fraud_detection", "--root", str(checkout), "--no-lock"])
    assert refused.exit_code == 1 and "already exists" in refused.output and "Traceback" not in refused.output
    removed = runner.invoke(app, ["remove", "card_churn", "--root", str(checkout), "--no-lock"])
    assert removed.exit_code == 0 and "solutions/card_churn" in removed.output
    assert not (checkout / "solutions" / "card_churn").exists() and not (checkout / "data_contracts" / "card_churn_transactions.yaml").exists()
