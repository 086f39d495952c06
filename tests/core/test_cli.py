"""The CLI a newcomer meets first: help, list, validate on good and bad files, export, evaluate."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from solutions_core.cli import app, parse_overrides
from solutions_core.solution import Context
from tiny_app import APP

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("list", "validate", "train", "stage", "evaluate", "export", "batch", "serve", "demo"):
        assert command in result.output


def test_overrides_merge_file_and_assignments(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("size: 500\ntraining:\n  epochs: 3\n")
    merged = parse_overrides(config, ["training.batch_size=64", "source=data.csv"])
    assert merged == {"size": 500, "training": {"epochs": 3, "batch_size": 64}, "source": "data.csv"}


def test_bad_config_value_is_a_clear_error(tiny_registered):
    result = runner.invoke(app, ["validate", APP.name, "--set", "size=-3"])
    assert result.exit_code == 2
    assert "size" in result.output


def test_list_shows_apps_named_in_settings(tiny_registered):
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and APP.name in result.output


def test_validate_passes_good_data_and_fails_a_broken_file(tiny_registered, tmp_path):
    good = APP.data.generate(Context(APP.name, APP.tiny_config(), {}), tmp_path)["tiny_points"]
    good_path = tmp_path / "good.parquet"
    good.to_parquet(good_path)
    result = runner.invoke(app, ["validate", APP.name, "--source", str(good_path)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    bad = good.copy()
    bad.loc[:2, "x"] = -40.0
    bad = bad.drop(columns=["color"])
    bad_path = tmp_path / "bad.parquet"
    bad.to_parquet(bad_path)
    result = runner.invoke(app, ["validate", APP.name, "--source", str(bad_path)])
    assert result.exit_code == 1
    assert "x" in result.output and "min" in result.output
    assert "color" in result.output and "missing" in result.output


@pytest.mark.parametrize("name", ["no_such_app", "tiny"])
def test_unknown_app_names_the_installed_ones(tiny_registered, name):
    result = runner.invoke(app, ["validate", name])
    assert result.exit_code == 2
    assert APP.name in result.output


def test_export_copies_the_champion_in_tf_serving_layout(tiny_run, tiny_home, tmp_path):
    result = runner.invoke(app, ["export", APP.name, "--out", str(tmp_path), "--home", str(tiny_home)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / APP.name / "1" / "saved_model.pb").exists()
    assert (tmp_path / APP.name / "1" / "assets.extra" / "solution_metadata.json").exists()


def test_evaluate_rescores_a_published_version(tiny_registered, tiny_run, tiny_home):
    result = runner.invoke(app, ["evaluate", APP.name, "--home", str(tiny_home), "--set", f"size={APP.tiny_config().size}"])
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output and "v1" in result.output


def test_evaluate_without_a_model_says_so(tiny_registered, tmp_path):
    result = runner.invoke(app, ["evaluate", APP.name, "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "No published version" in result.output


def test_nested_overrides_keep_the_apps_other_defaults():
    default = APP.make_config()
    changed = APP.make_config({"training": {"epochs": 3}})
    assert changed.training.epochs == 3
    assert changed.training.learning_rate == default.training.learning_rate == 0.02
    assert changed.hidden_units == default.hidden_units


def test_a_contract_is_found_by_name_in_contracts_dir_or_the_working_folder(tiny_registered, tmp_path, monkeypatch):
    from tiny_app import CONTRACTS

    good = APP.data.generate(Context(APP.name, APP.tiny_config(), {}), tmp_path)["tiny_points"]
    good.to_parquet(tmp_path / "points.parquet")
    client = tmp_path / "client"
    client.mkdir()
    (client / "my_points.yaml").write_text((CONTRACTS / "tiny_points.yaml").read_text().replace("name: tiny_points", "name: my_points"))
    monkeypatch.setenv("SOLUTIONS_CONTRACTS_DIR", str(tmp_path / "empty"))  # no such folder: skipped

    arguments = ["validate", APP.name, "--source", str(tmp_path / "points.parquet"), "--contract", "my_points"]
    result = runner.invoke(app, [*arguments, "--contracts-dir", str(client)])
    assert result.exit_code == 0, result.output

    monkeypatch.chdir(client)  # a client's project keeps its contracts beside its configs
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    assert "my_points" in result.output and "not found" in result.output and "--contracts-dir" in result.output
    assert "Traceback" not in result.output


def test_missing_data_is_a_clear_message_not_a_traceback(tiny_registered, tmp_path):
    result = runner.invoke(app, ["validate", APP.name, "--source", str(tmp_path / "nowhere.parquet")])
    assert result.exit_code == 1
    assert "nowhere.parquet" in result.output and "Cannot validate" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_cli_leaves_gpus_visible(monkeypatch):
    """Hiding GPUs is the user's call: the CLI's logging set-up must not set CUDA_VISIBLE_DEVICES."""
    from solutions_core.cli import _quiet_tensorflow

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _quiet_tensorflow()
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    _quiet_tensorflow()
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_target_gpu_without_one_fails_first_and_clearly(tiny_registered, tmp_path):
    import tensorflow as tf

    assert not tf.config.list_physical_devices("GPU"), "this test is for a machine without a GPU"
    result = runner.invoke(app, ["train", APP.name, "--target", "gpu", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "sees no GPU" in result.output and "Traceback" not in result.output
    # The runtime is made before any data work: no run got as far as validating data.
    assert not list(tmp_path.rglob("validate_data.pkl"))


def test_stage_by_stage_is_a_whole_run(tiny_registered, tmp_path):
    """``solutions stage`` (what a stage's pod runs): the stages of one run id, one command each, share the
    run folder and end in a published version, as ``train`` does in one process."""
    import json

    from solutions_core.stages import STAGES

    summaries = {}
    for stage in STAGES:
        result = runner.invoke(app, ["stage", stage.name, APP.name, "--run-id", "r1", "--preset", "tiny", "--home", str(tmp_path),
                                     "--overrides", json.dumps({"training": {"epochs": 2}})])
        assert result.exit_code == 0, result.output
        summaries[stage.name] = json.loads(result.output.strip().splitlines()[-1])
    assert summaries["gate"]["passed"] is True
    assert summaries["write_report"]["status"] == "promoted" and (tmp_path / "models" / APP.name / "1").is_dir()
    assert summaries["write_report"]["run_dir"] == str(tmp_path / "runs" / APP.name / "r1")
    bad = runner.invoke(app, ["stage", "train_everything", APP.name, "--run-id", "r2", "--home", str(tmp_path)])
    assert bad.exit_code == 1 and "validate_data" in bad.output  # the stages are named
    early = runner.invoke(app, ["stage", "score_on_test", APP.name, "--run-id", "r3", "--home", str(tmp_path)])
    assert early.exit_code == 1 and "has not completed" in early.output
