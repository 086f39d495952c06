"""New apps from an app, apps removed, client projects from the suite: file operations on a checkout.

An app is a set of files found by convention, so nothing needs registering by hand:

- ``solutions/<app>/`` (its package, README, real-data configs; its entry point is in its pyproject),
- ``tests/<app>/``, ``notebooks/<app>.ipynb``,
- its contracts in ``data_contracts/``: the ones its files name. Those named after the app (their first
  word begins the app's name: ``fraud_transactions`` for ``fraud_detection``, ``rec_items`` for
  ``recommendation``) are its own and get the new app's name; the others describe public data sets
  (``credit_data``) and are shared as they are.
- its entry under ``apps:`` in ``dags/orchestration*.yaml`` (the DAGs themselves come from the factory).

``new_app`` copies all of it with the names replaced (package, distribution, class, contracts, the
routes the app mounts, the DAG ids), adds the package to the workspace and re-locks. ``remove_app``
deletes the same files. ``render_fork`` is what a client project from ``copier copy`` runs: it keeps the
chosen apps, writes the client's README and defaults. Standard library only: copier runs this file
with the system Python, before anything is installed.
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ipynb", ".json", ".txt", ".cfg", ".ini", ".sh", ".j2", ".jinja"}
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
# Route paths an app mounts, as its api.py declares them: json_post_route(routes, "/path", ...) or
# @routes.get("/path", ...).
ROUTE = re.compile(r"""(?:json_post_route\(\s*\w+\s*,\s*|@\w+\.(?:get|post|put|patch|delete)\(\s*)["'](/[A-Za-z0-9_\-/]+)["']""")


class ScaffoldError(ValueError):
    """A scaffold request that cannot be carried out, with what to do instead."""


@dataclass
class AppFiles:
    """Where one app lives in a checkout."""

    root: Path
    name: str
    contracts: list[str] = field(default_factory=list)  # every contract its files name
    own_contracts: list[str] = field(default_factory=list)  # those named after the app

    @property
    def package(self) -> Path:
        return self.root / "solutions" / self.name

    @property
    def tests(self) -> Path:
        return self.root / "tests" / self.name

    @property
    def notebook(self) -> Path:
        return self.root / "notebooks" / f"{self.name}.ipynb"

    def paths(self) -> list[Path]:
        """Everything that is this app's alone."""
        found = [path for path in (self.package, self.tests, self.notebook) if path.exists()]
        return found + [contract_path(self.root, name) for name in self.own_contracts]

    def text_files(self) -> list[Path]:
        files = []
        for path in (self.package, self.tests, self.notebook):
            if path.is_file():
                files.append(path)
            elif path.is_dir():
                files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and is_text(p))
        return files

    def routes(self) -> list[str]:
        """The paths the app's own routers mount (``/recommend``), longest first."""
        paths = {match for path in self.package.rglob("*.py") for match in ROUTE.findall(path.read_text())}
        return sorted((p for p in paths if not p.startswith("/v1/")), key=len, reverse=True)


def is_text(path: Path) -> bool:
    return path.suffix in TEXT_SUFFIXES and not SKIPPED_PARTS & set(path.parts)


def contract_path(root: Path, name: str) -> Path:
    return root / "data_contracts" / f"{name}.yaml"


def installed_apps(root: Path) -> list[str]:
    """Apps of a checkout: the folders of ``solutions/`` with a pyproject."""
    folder = root / "solutions"
    return sorted(p.name for p in folder.iterdir() if (p / "pyproject.toml").exists()) if folder.exists() else []


def find_app(root: Path, name: str) -> AppFiles:
    root = Path(root).resolve()
    apps = installed_apps(root)
    if name not in apps:
        raise ScaffoldError(f"No app {name!r} in {root / 'solutions'}; the apps there are: {', '.join(apps) or 'none'}.")
    app = AppFiles(root, name)
    text = "\n".join(path.read_text(errors="replace") for path in app.text_files())
    contracts = sorted(p.stem for p in (root / "data_contracts").glob("*.yaml"))
    app.contracts = [c for c in contracts if identifier(c).search(text)]
    app.own_contracts = [c for c in app.contracts if is_named_after(c, name)]
    return app


def identifier(name: str, followed: str = "A-Za-z0-9") -> re.Pattern[str]:
    """``name`` not inside a longer word (``_`` joins: train_fraud_detection holds fraud_detection)."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![{followed}])")


def is_named_after(contract: str, app: str) -> bool:
    """``fraud_transactions`` is fraud_detection's, ``rec_items`` recommendation's, ``vision_qc_images``
    vision_qc's; ``credit_data`` is a data set's."""
    return contract.startswith(app + "_") or app.startswith(contract.split("_")[0])


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def renamed_contract(contract: str, source: str, name: str) -> str:
    if contract.startswith(source + "_"):
        return name + contract[len(source) :]
    return name + contract[len(contract.split("_")[0]) :]


def replacements(app: AppFiles, name: str) -> list[tuple[re.Pattern[str], str]]:
    """What changes in the text of the copied files, longest names first so that a name inside a
    longer one (``rec_interactions`` in ``rec_interactions_untimed``) is replaced as part of it."""
    source = app.name
    pairs = [(contract, renamed_contract(contract, source, name)) for contract in app.own_contracts]
    pairs += [(source, name), (source.replace("_", "-"), name.replace("_", "-")), (camel(source), camel(name))]
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    # A class name may go on (FraudDetectionConfig): a capital letter may follow it.
    patterns = [(identifier(old, "a-z0-9" if old[0].isupper() else "A-Za-z0-9"), new) for old, new in pairs]
    patterns.append((re.compile(rf"\b{re.escape(title(source))}\b"), title(name)))  # prose: "Fraud detection"
    # Routes move under the app's name, so two apps made from one never claim the same path.
    patterns += [(re.compile(rf"(?<![A-Za-z_]){re.escape(route)}(?![\w-])"), f"/{name}{route}") for route in app.routes()]
    return patterns


def rewrite(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, new in patterns:
        text = pattern.sub(new.replace("\\", "\\\\"), text)
    return text


def check_new_name(root: Path, name: str) -> None:
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a valid app name: use lower_snake_case letters and digits, starting with a letter (e.g. churn_prediction).")
    if name in installed_apps(root):
        raise ScaffoldError(f"An app named {name!r} already exists in {root / 'solutions'}; pick another name or remove it first (solutions remove {name}).")
    if name in sys.stdlib_module_names or name in {"solutions_core", "tests", "tensorflow", "keras", "pandas", "numpy"}:
        raise ScaffoldError(f"{name!r} would shadow an existing Python module; pick another name.")


def new_app(root: Path, source: str, name: str, *, lock: bool = True) -> list[Path]:
    """Copy app ``source`` as app ``name``; returns the files written. Nothing is written if a check fails."""
    root = Path(root).resolve()
    check_new_name(root, name)
    app = find_app(root, source)
    patterns = replacements(app, name)
    names_only = patterns[: len(patterns) - len(app.routes())]  # file paths hold names, never routes
    targets = {}
    for path in app.text_files():
        relative = path.relative_to(root).as_posix()
        targets[root / rewrite(relative, names_only)] = rewrite(path.read_text(), patterns)
    for contract in app.own_contracts:
        new_contract = renamed_contract(contract, source, name)
        targets[contract_path(root, new_contract)] = rewrite(contract_path(root, contract).read_text(), patterns)
    clashes = [str(path.relative_to(root)) for path in targets if path.exists()]
    if clashes:
        raise ScaffoldError(f"These files exist already: {', '.join(clashes)}; remove them or pick another name.")
    binaries = [p for folder in (app.package, app.tests) if folder.exists() for p in folder.rglob("*")]
    for path in binaries:  # images, data files: copied as they are
        if path.is_file() and not is_text(path) and not SKIPPED_PARTS & set(path.parts) and path.suffix != ".pyc":
            target = root / rewrite(path.relative_to(root).as_posix(), names_only)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    add_workspace_source(root, name.replace("_", "-"))
    copy_orchestration_entry(root, source, name)
    sync_template_apps(root)
    if lock:
        relock(root)
    return sorted(targets)


def remove_app(root: Path, name: str, *, lock: bool = True) -> list[Path]:
    """Delete an app's files (package, tests, notebook, its own contracts and the data-set contracts no
    other app names), its workspace entry and DAG settings; returns what was removed."""
    root = Path(root).resolve()
    app = find_app(root, name)
    others = [find_app(root, other) for other in installed_apps(root) if other != name]
    still_named = {contract for other in others for contract in other.contracts}
    removed = app.paths() + [contract_path(root, c) for c in app.contracts if c not in app.own_contracts and c not in still_named]
    removed += [path for path in app_benchmarks(root, name) if not any(app_mentioned(path, other.name) for other in others)]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    remove_workspace_source(root, name.replace("_", "-"))
    remove_orchestration_entry(root, name)
    sync_template_apps(root)
    if lock:
        relock(root)
    return removed


TARGETS = ("cpu", "gpu", "tpu")
AIRFLOW_PATHS = ("dags", "tests/dags", "scripts/airflow-up.sh", "scripts/airflow-down.sh")


def render_fork(
    root: Path,
    *,
    project_name: str,
    owner: str = "",
    apps: list[str] | None = None,
    package_prefix: str = "",
    target: str = "cpu",
    airflow: bool = True,
    lock: bool = True,
) -> None:
    """Turn a fresh copy of the suite into a client project (what ``copier copy`` runs after copying):
    keep ``apps``, prefix the distribution names, set the default target, drop the Airflow deployment
    if not wanted, name the owner in the kept contracts, and put the client's first screen on top of
    the README. Deterministic in its answers, so ``copier update`` can replay it on any version."""
    root = Path(root).resolve()
    present = installed_apps(root)
    apps = present if apps is None else list(apps)
    unknown = sorted(set(apps) - set(present))
    if unknown or not apps:
        raise ScaffoldError(f"Apps to keep must be some of {', '.join(present)}; got {', '.join(apps) or 'none'}.")
    if target not in TARGETS:
        raise ScaffoldError(f"target must be one of {', '.join(TARGETS)}, not {target!r}.")
    if package_prefix and not re.match(r"^[a-z][a-z0-9-]*[a-z0-9]$", package_prefix):
        raise ScaffoldError(f"package_prefix {package_prefix!r}: lower-case letters, digits and dashes (e.g. acme).")
    for name in present:
        if name not in apps:
            remove_app(root, name, lock=False)
    for path in orchestration_files(root):
        path.write_text(re.sub(r"^(  target: )\w+", rf"\g<1>{target}", path.read_text(), count=1, flags=re.M))
    if not airflow:
        remove_airflow(root)
    if owner:
        for contract in sorted({c for app in apps for c in find_app(root, app).contracts}):
            path = contract_path(root, contract)
            path.write_text(re.sub(r"^owner: .*$", f"owner: {owner}", path.read_text(), count=1, flags=re.M))
    if package_prefix:
        prefix_distributions(root, package_prefix, apps)
    readme = root / "README.md"
    suite = readme.read_text() if readme.exists() else ""
    suite = "\n".join(line for line in suite.splitlines() if not _row_of_removed_app(line, present, apps)) + "\n"
    readme.write_text(client_readme(project_name, owner, apps, target, airflow) + "\n---\n\n" + suite)
    if lock:
        relock(root)


def _row_of_removed_app(line: str, present: list[str], kept: list[str]) -> bool:
    return any(line.startswith(f"| [{name}](solutions/{name}/") for name in present if name not in kept)


def client_readme(project_name: str, owner: str, apps: list[str], target: str, airflow: bool) -> str:
    listed = "\n".join(f"- [{name}](solutions/{name}/README.md)" for name in apps)
    return f"""# {project_name}

{f"Owned by {owner}. " if owner else ""}Machine-learning applications on TensorFlow/Keras: contract-checked data, models gated
against baselines trained in the same run, versioned SavedModels served over TensorFlow Serving's API.

**Apps:**
{listed}

**On a fresh machine with Python 3.11:**

```bash
make demo    # every app end to end on its embedded data: train, gate, publish, serve, request
make test    # the test suite
```

Scheduled runs default to the **{target}** target{" and run as the Airflow DAGs in `dags/`" if airflow else " (no Airflow deployment in this project)"}.
Your data: write a contract in `data_contracts/` and a config (see each app's README). A new app:
`solutions new NAME --from APP`.

This project was rendered from the reference ML solutions template; `copier update --trust` brings in
its later versions and keeps your edits (conflicts are marked inline). The template's own
documentation follows.
"""


def remove_airflow(root: Path) -> None:
    for relative in AIRFLOW_PATHS:
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    makefile = root / "Makefile"
    if makefile.exists():
        text = makefile.read_text()
        text = re.sub(r"^airflow-(up|down):.*\n(\t.*\n)*\n?", "", text, flags=re.M)
        text = re.sub(r"^\t@echo \"make airflow-up.*\n", "", text, flags=re.M)
        text = re.sub(r" airflow-up airflow-down", "", text)
        makefile.write_text(text)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r"^    # [^\n]*Airflow[^\n]*\n(?=    \"apache-airflow)", "", text, flags=re.M)
    pyproject.write_text(re.sub(r'^    "apache-airflow[^"]*",\n', "", text, flags=re.M))


def prefix_distributions(root: Path, prefix: str, apps: list[str]) -> None:
    """``fraud-detection`` -> ``<prefix>-fraud-detection`` (and the core) in every pyproject: a fork's
    packages can go to the client's index beside the suite's. Import names stay as they are."""
    names = ["solutions-core", *(app.replace("_", "-") for app in apps)]
    pattern = re.compile(rf"(?<![\w.-])({'|'.join(map(re.escape, names))})(?![\w.-])")
    for path in [root / "pyproject.toml", root / "shared" / "pyproject.toml", *(root / "solutions" / app / "pyproject.toml" for app in apps)]:
        lines = path.read_text().splitlines(keepends=True)
        # Only names, dependencies and sources: a comment or description may say "solutions-core" in prose.
        path.write_text("".join(pattern.sub(rf"{prefix}-\1", line) if re.match(r'^(name = |\s*"|[\w-]+ = \{)', line) else line for line in lines))


def app_mentioned(path: Path, name: str) -> bool:
    return identifier(name).search(path.read_text()) is not None


def app_benchmarks(root: Path, name: str) -> list[Path]:
    """Scripts of ``benchmarks/`` that name the app (those naming no other app go with it)."""
    folder = root / "benchmarks"
    return sorted(p for p in folder.glob("*.py") if app_mentioned(p, name)) if folder.exists() else []


# ------------------------------------------------------------------------------------------------
# Shared files: edited as text, so their comments and order survive
# ------------------------------------------------------------------------------------------------

SOURCE_LINE = re.compile(r'^(?P<dist>[a-z0-9-]+) = \{ workspace = true \}$', re.M)


def add_workspace_source(root: Path, dist: str) -> None:
    path = root / "pyproject.toml"
    text = path.read_text()
    lines = list(SOURCE_LINE.finditer(text))
    if any(line["dist"] == dist for line in lines):
        return
    if not lines:
        raise ScaffoldError(f"{path} has no [tool.uv.sources] lines of the form 'name = {{ workspace = true }}' to add {dist} beside.")
    end = lines[-1].end()
    path.write_text(text[:end] + f"\n{dist} = {{ workspace = true }}" + text[end:])


def remove_workspace_source(root: Path, dist: str) -> None:
    path = root / "pyproject.toml"
    path.write_text(re.sub(rf"^{re.escape(dist)} = \{{ workspace = true \}}\n", "", path.read_text(), flags=re.M))


def sync_template_apps(root: Path) -> None:
    """The template's ``apps`` question (copier.yml) offers the apps there are."""
    path = root / "copier.yml"
    if not path.exists():  # a rendered project has no copier.yml
        return
    present = installed_apps(root)

    def listed(match: re.Match[str]) -> str:
        names = [n.strip() for n in match["names"].split(",") if n.strip()]
        names = [n for n in names if n in present] + [n for n in present if n not in names]
        return f"{match['key']}[{', '.join(names)}]"

    text = path.read_text()
    start = text.index("\napps:") if "\napps:" in text else -1
    if start < 0:
        return
    end = re.search(r"\n\S", text[start + 1 :])
    stop = start + 1 + end.start() if end else len(text)
    block = re.sub(r"(?P<key>  (?:choices|default): )\[(?P<names>[^\]]*)\]", listed, text[start:stop])
    path.write_text(text[:start] + block + text[stop:])


def orchestration_files(root: Path) -> list[Path]:
    return sorted((root / "dags").glob("orchestration*.yaml")) if (root / "dags").exists() else []


def _app_entry(text: str, name: str) -> re.Match[str] | None:
    """The ``  <name>:`` block under ``apps:`` with its more-indented lines."""
    return re.search(rf"^(?P<block>  {re.escape(name)}:[^\n]*\n(?:    [^\n]*\n)*)", text, re.M)


def copy_orchestration_entry(root: Path, source: str, name: str) -> None:
    for path in orchestration_files(root):
        text = path.read_text()
        entry = _app_entry(text, source)
        if entry is not None and _app_entry(text, name) is None:
            block = entry["block"].replace(f"  {source}:", f"  {name}:", 1)
            path.write_text(text[: entry.end()] + block + text[entry.end() :])


def remove_orchestration_entry(root: Path, name: str) -> None:
    for path in orchestration_files(root):
        text = path.read_text()
        entry = _app_entry(text, name)
        if entry is not None:
            text = text[: entry.start()] + text[entry.end() :]
            # The last entry gone: an empty mapping, not a null the config would refuse.
            path.write_text(re.sub(r"^apps:[ \t]*(#[^\n]*)?\n(?!  )", lambda m: f"apps: {{}}{' ' + m[1] if m[1] else ''}\n", text, flags=re.M))


def relock(root: Path) -> None:
    """``uv lock`` for the changed workspace: ``$UV``, the checkout's own, the one on the PATH, else
    ``make lock`` (which bootstraps it)."""
    uv = os.environ.get("UV") or (str(root / ".uv" / "bin" / "uv") if (root / ".uv" / "bin" / "uv").exists() else shutil.which("uv"))
    command = [uv, "lock"] if uv else ["make", "--no-print-directory", "lock"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise ScaffoldError(f"{' '.join(command)} failed in {root}:\n{result.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="a new app from an existing one")
    new.add_argument("name")
    new.add_argument("--from", dest="source", required=True)
    remove = commands.add_parser("remove", help="remove an app")
    remove.add_argument("name")
    fork = commands.add_parser("fork", help="make this copy a client project (run by copier)")
    fork.add_argument("--project-name", required=True)
    fork.add_argument("--owner", default="")
    fork.add_argument("--apps", default="", help="comma-separated apps to keep (default: all)")
    fork.add_argument("--package-prefix", default="")
    fork.add_argument("--target", default="cpu", choices=TARGETS)
    fork.add_argument("--airflow", default="true", choices=["true", "false"])
    for sub in (new, remove, fork):
        sub.add_argument("--root", type=Path, default=Path.cwd())
        sub.add_argument("--no-lock", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        if args.command == "new":
            written = new_app(root, args.source, args.name, lock=not args.no_lock)
            print(f"{args.name}: {len(written)} files from {args.source}")
        elif args.command == "remove":
            removed = remove_app(root, args.name, lock=not args.no_lock)
            print(f"removed {args.name}: {', '.join(str(p.relative_to(root)) for p in removed)}")
        else:
            apps = [a.strip() for a in args.apps.split(",") if a.strip()] or None
            render_fork(
                root, project_name=args.project_name, owner=args.owner, apps=apps, package_prefix=args.package_prefix,
                target=args.target, airflow=args.airflow == "true", lock=not args.no_lock,
            )
            print(f"{args.project_name}: apps {', '.join(installed_apps(root))}")
    except ScaffoldError as problem:
        sys.exit(f"error: {problem}")


if __name__ == "__main__":
    main()
