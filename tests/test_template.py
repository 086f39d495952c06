"""This repository as a copier template: a client project rendered from it, edited as a client would,
then updated to a later version of the suite (3-way merge, conflicts inline), installed with its own
Makefile and tested. Not part of a rendered project (copier.yml excludes it): a fork is not a template."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from solutions_core.scaffold import find_app, installed_apps
from test_forking import APPS, GIT_IDENTITY, REPO, SOURCE, UV, copy_checkout, git

pytestmark = pytest.mark.slow


def copier(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_IDENTITY, "UV": str(UV)}
    done = subprocess.run([str(Path(sys.executable).with_name("copier")), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_a_client_project_renders_installs_and_takes_a_template_update_keeping_its_edits(tmp_path):
    template = copy_checkout(tmp_path / "template")
    git(template, "init", "-q")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "suite 1.0")
    git(template, "tag", "v1.0.0")
    fork = tmp_path / "acme"
    answers = ["--data", "project_name=Acme risk", "--data", "owner=ml@acme.example", "--data", f'apps=["{SOURCE}"]',
               "--data", "package_prefix=acme", "--data", "default_target=gpu", "--data", "airflow=false"]
    copier("copy", "--trust", "--defaults", *answers, str(template), str(fork), cwd=tmp_path)

    # The client's project: its README first, its apps only, its names, its defaults, a lock to match.
    assert (fork / "README.md").read_text().startswith("# Acme risk\n\nOwned by ml@acme.example.")
    assert installed_apps(fork) == [SOURCE] and not (fork / "dags").exists() and not (fork / "copier.yml").exists()
    assert yaml.safe_load((fork / ".copier-answers.yml").read_text())["_commit"] == "v1.0.0"
    own = find_app(fork, SOURCE).own_contracts
    contract = fork / "data_contracts" / f"{own[0]}.yaml"
    assert yaml.safe_load(contract.read_text())["owner"] == "ml@acme.example"
    lock = (fork / "uv.lock").read_text()
    assert f'name = "acme-{SOURCE.replace("_", "-")}"' in lock and 'name = "acme-solutions-core"' in lock and "apache-airflow" not in lock
    assert all(f'name = "{app.replace("_", "-")}"' not in lock for app in APPS)
    assert "airflow" not in (fork / "Makefile").read_text()

    git(fork, "init", "-q")
    git(fork, "add", "-A")
    git(fork, "commit", "-qm", "rendered")
    # The client's edits: a config default, a contract column, a line of the model, the app README's title.
    source = fork / "solutions" / SOURCE / "src" / SOURCE
    config_py, model_py, app_readme = source / "config.py", source / "model.py", fork / "solutions" / SOURCE / "README.md"
    default = re.search(r"Field\(default=(\d+)", config_py.read_text())
    edit(config_py, default[0], f"Field(default={int(default[1]) + 1}")
    column_description = re.search(r"^    description: (.*)$", contract.read_text(), re.M)  # a column's, as the contract says it
    edit(contract, column_description[0], f"    description: Acme's reading, {column_description[1]}")
    first_line = model_py.read_text().splitlines()[0]
    edit(model_py, first_line, first_line + "  # Acme: reviewed by the risk team")
    title = app_readme.read_text().splitlines()[0]
    edit(app_readme, title, "# Acme's own app")
    git(fork, "commit", "-qam", "client edits")

    # The suite's next version: a core change, a change of the same model file elsewhere, and one on the
    # very line the client changed (a conflict, to be shown where it is).
    settings_py = template / "shared" / "src" / "solutions_core" / "settings.py"
    edit(settings_py, '"""', '"""Suite 1.1: settings unchanged, this line added by the template.\n\n')
    edit(template / "solutions" / SOURCE / "src" / SOURCE / "model.py", "from __future__ import annotations\n", "from __future__ import annotations\n\n# Suite 1.1: a template change in the model file.\n")
    edit(template / "solutions" / SOURCE / "README.md", title, f"{title} (suite 1.1)")
    git(template, "commit", "-qam", "suite 1.1")
    git(template, "tag", "v1.1.0")

    copier("update", "--trust", "--defaults", "--skip-answered", cwd=fork)
    assert yaml.safe_load((fork / ".copier-answers.yml").read_text())["_commit"] == "v1.1.0"
    assert "Suite 1.1: settings unchanged" in (fork / "shared" / "src" / "solutions_core" / "settings.py").read_text()
    model_text = model_py.read_text()
    assert "# Suite 1.1: a template change in the model file." in model_text and "# Acme: reviewed by the risk team" in model_text
    assert f"Field(default={int(default[1]) + 1}" in config_py.read_text()
    assert any(str(c.get("description", "")).startswith("Acme's reading,") for c in yaml.safe_load(contract.read_text())["columns"].values())
    assert (fork / "README.md").read_text().startswith("# Acme risk")
    conflicted = app_readme.read_text()
    assert "<<<<<<<" in conflicted and "# Acme's own app" in conflicted and f"{title} (suite 1.1)" in conflicted
    status = git(fork, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line.endswith(".rej")]
    assert [p for p in (fork / "solutions").rglob("*.py") if "<<<<<<<" in p.read_text()] == []

    # The fork installs with its own Makefile and its tests pass (a smoke subset, in an environment of
    # its own, from the uv cache this suite's install filled).
    installed = subprocess.run(["make", "install", f"UV={UV}"], cwd=fork, capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    app_tests = sorted((fork / "tests" / SOURCE).glob("test_*.py"), key=lambda p: p.stat().st_size)[:1]
    smoke = subprocess.run(
        [str(fork / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "-m", "not slow", "tests/core/test_contracts.py", *map(str, app_tests)],
        cwd=fork, capture_output=True, text=True, timeout=900,
    )
    assert smoke.returncode == 0, smoke.stdout[-4000:] + smoke.stderr[-2000:]
    listed = subprocess.run([str(fork / ".venv" / "bin" / "solutions"), "list"], cwd=fork, capture_output=True, text=True)
    assert listed.returncode == 0 and SOURCE in listed.stdout and all(app not in listed.stdout for app in APPS if app != SOURCE)
