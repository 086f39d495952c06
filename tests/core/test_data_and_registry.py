"""The embedded store, time splits, fingerprints, the versioned model registry and app discovery."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from solutions_core.data import DataStore, fingerprint, time_split
from solutions_core.model_registry import ModelRegistry
from solutions_core.registry import get_solution, list_solutions
from solutions_core.training import Scores


def frame(rows: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {"when": pd.date_range("2025-01-01", periods=rows, freq="h"), "value": np.arange(rows, dtype=float)}
    )


def test_time_split_orders_splits_in_time_and_keeps_every_row():
    data = frame().sample(frac=1.0, random_state=0)  # shuffled input
    splits = time_split(data, "when", 0.2, 0.1)
    assert splits.sizes() == {"train": 70, "valid": 20, "test": 10}
    assert splits.train["when"].max() < splits.valid["when"].min()
    assert splits.valid["when"].max() < splits.test["when"].min()


def test_time_split_never_puts_one_timestamp_on_both_sides():
    data = pd.DataFrame({"when": pd.to_datetime(["2025-01-01"] * 50 + ["2025-01-02"] * 50), "value": range(100)})
    with pytest.raises(ValueError, match="empty"):
        time_split(data, "when", 0.2, 0.2)  # only two distinct times cannot make three splits


def test_time_split_names_a_missing_column():
    with pytest.raises(ValueError, match="'missing'"):
        time_split(frame(), "missing", 0.1, 0.1)


def test_fingerprint_is_stable_and_content_sensitive():
    base = frame()
    assert fingerprint(base) == fingerprint(base.copy())
    changed = base.copy()
    changed.loc[3, "value"] = -1
    assert fingerprint(base) != fingerprint(changed)


def test_store_roundtrip_and_duckdb_query(tmp_path):
    store = DataStore(tmp_path)
    store.write("app", "table", frame())
    assert store.read("app", "table").equals(frame())
    result = store.query("SELECT COUNT(*) AS n, MAX(value) AS top FROM \"table\"", app="app")
    assert result.loc[0, "n"] == 100 and result.loc[0, "top"] == 99.0
    assert not list((tmp_path / "app").glob("*.tmp"))  # atomic write left no temp file
    with pytest.raises(FileNotFoundError, match="solutions train"):
        store.read("app", "absent")


def fake_saved_model(folder, marker: str):
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_text(marker)
    return folder


def test_registry_publishes_versions_in_order_and_latest_is_champion(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    assert registry.champion("app") is None
    first = registry.publish("app", fake_saved_model(tmp_path / "a", "one"), {"test_metrics": {"m": 1}})
    second = registry.publish("app", fake_saved_model(tmp_path / "b", "two"), {"test_metrics": {"m": 2}})
    assert [v.version for v in registry.versions("app")] == [1, 2]
    assert registry.champion("app") == second
    assert second.metadata()["test_metrics"] == {"m": 2} and second.metadata()["version"] == 2
    assert (first.path / "saved_model.pb").read_text() == "one"
    assert not [p for p in (tmp_path / "models" / "app").iterdir() if p.name.startswith(".staging")]


def test_registry_refuses_a_folder_that_is_not_a_saved_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a SavedModel"):
        ModelRegistry(tmp_path / "models").publish("app", tmp_path / "empty", {})
    assert ModelRegistry(tmp_path / "models").versions("app") == []


@pytest.mark.parametrize(
    ("value", "other", "higher", "expected"),
    [(0.5, 0.4, True, True), (0.4, 0.5, True, False), (0.5, 0.5, True, False), (0.3, 0.4, False, True), (0.1, None, True, True)],
)
def test_gate_comparison(value, other, higher, expected):
    assert Scores({"m": value}, "m", higher).beats(other) is expected


def test_installed_apps_load_through_their_entry_points():
    from importlib.metadata import entry_points

    from solutions_core.registry import ENTRY_POINT_GROUP
    from solutions_core.solution import Solution

    names = [entry.name for entry in list_solutions()]
    assert names == sorted(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))
    for name in names:
        solution = get_solution(name.replace("_", "-"))  # either spelling
        assert isinstance(solution, Solution) and solution.name == name
    with pytest.raises(KeyError, match="Installed solutions"):
        get_solution("no_such_app")


def test_apps_named_in_settings_are_found_too(tiny_registered):
    assert tiny_registered.name in [entry.name for entry in list_solutions()]
    assert get_solution(tiny_registered.name) is tiny_registered


def test_listing_apps_does_not_import_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from solutions_core.cli import app;"
        "result = CliRunner().invoke(app, ['list']); assert result.exit_code == 0, result.output;"
        "assert 'Installed solutions' in result.output, result.output;"
        "assert 'tensorflow' not in sys.modules, 'list imported tensorflow'"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_the_default_split_is_by_the_contracts_time_column_else_random(tiny_settings):
    from solutions_core.training import context_for
    from tiny_app import APP

    context = context_for(APP, APP.tiny_config(), tiny_settings)
    examples = APP.data.generate(context, tiny_settings.home).pop("tiny_points").sample(frac=1.0, random_state=3)
    by_time = APP.data.split(context, examples)
    assert by_time.train["timestamp"].max() < by_time.valid["timestamp"].min() <= by_time.valid["timestamp"].max() < by_time.test["timestamp"].min()
    untimed = APP.data.split(context, examples.drop(columns=["timestamp"]))
    assert sum(untimed.sizes().values()) == len(examples)
    assert set(untimed.test["point_id"]) == set(APP.data.split(context, examples.drop(columns=["timestamp"])).test["point_id"])  # seeded
    assert not set(untimed.test["point_id"]) & set(untimed.train["point_id"])
