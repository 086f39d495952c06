"""The CLI a newcomer meets first: help, list, and validate on good and bad files."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from solutions_core.cli import app, parse_overrides

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("list", "validate", "train", "evaluate", "export", "serve", "demo"):
        assert command in result.output


def test_overrides_merge_file_and_assignments(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("size: 500\ntraining:\n  epochs: 3\n")
    merged = parse_overrides(config, ["training.batch_size=64", "source=data.csv"])
    assert merged == {"size": 500, "training": {"epochs": 3, "batch_size": 64}, "source": "data.csv"}


def test_bad_config_value_is_a_clear_error():
    result = runner.invoke(app, ["validate", "fraud_detection", "--set", "size=-3"])
    assert result.exit_code == 2
    assert "size" in result.output


def test_validate_passes_generated_data_and_fails_a_broken_file(tmp_path):
    from fraud_detection.generate import generate_transactions

    good = generate_transactions(500, days=10, fraud_rate=0.02, seed=1)
    good_path = tmp_path / "good.parquet"
    good.to_parquet(good_path)
    result = runner.invoke(app, ["validate", "fraud_detection", "--source", str(good_path)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    bad = good.copy()
    bad.loc[:2, "amount"] = -4.0
    bad = bad.drop(columns=["channel"])
    bad_path = tmp_path / "bad.parquet"
    bad.to_parquet(bad_path)
    result = runner.invoke(app, ["validate", "fraud_detection", "--source", str(bad_path)])
    assert result.exit_code == 1
    assert "amount" in result.output and "min" in result.output
    assert "channel" in result.output and "missing" in result.output


@pytest.mark.parametrize("name", ["no_such_app", "fraud"])
def test_unknown_app_names_the_installed_ones(name):
    result = runner.invoke(app, ["validate", name])
    assert result.exit_code == 2
    assert "fraud_detection" in result.output


def test_export_copies_the_champion_in_tf_serving_layout(trained, home, tmp_path):
    result = runner.invoke(app, ["export", "fraud_detection", "--out", str(tmp_path), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fraud_detection" / "1" / "saved_model.pb").exists()
    assert (tmp_path / "fraud_detection" / "1" / "assets.extra" / "solution_metadata.json").exists()


def test_evaluate_rescores_a_published_version(trained, home, settings):
    result = runner.invoke(
        app,
        ["evaluate", "fraud_detection", "--home", str(home), "--set", "size=4000", "--set", "fraud_rate=0.03", "--set", "days=30"],
    )
    assert result.exit_code == 0, result.output
    assert "auprc" in result.output and "v1" in result.output


def test_evaluate_without_a_model_says_so(tmp_path):
    result = runner.invoke(app, ["evaluate", "fraud_detection", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "No published version" in result.output


def test_nested_overrides_keep_the_apps_other_defaults():
    from solutions_core.registry import get_solution

    solution = get_solution("fraud_detection")
    default = solution.make_config()
    changed = solution.make_config({"training": {"epochs": 3}, "columns": {"device": None}})
    assert changed.training.epochs == 3
    assert changed.training.early_stopping_monitor == default.training.early_stopping_monitor == "val_auprc"
    assert changed.columns.device is None and changed.columns.card == default.columns.card
