"""Tables of the shape clients bring (issue 14), through a contract and a config only: no timestamp, no
entity id, string labels, missing values, a constant column; plus what the graph must get right for
any table (a row's score does not depend on its batch, timestamps keep their seconds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fraud_detection import SOLUTION
from solutions_core.contracts import Contract
from solutions_core.solution import Context

NO_ROLES = {"transaction_id": "row_id", "timestamp": None, "card": None, "amount": None, "label": "status",
            "device": None, "merchant_lat": None, "merchant_lon": None, "home_lat": None, "home_lon": None}

CONTRACT = {
    "name": "loans",
    "version": "1.0.0",
    "owner": "tests@example.com",
    "columns": {
        "row_id": {"type": "integer", "role": "id", "unique": True},
        "status": {"type": "string", "role": "label", "allowed": ["good", "bad"], "positive": "bad"},
        "income": {"type": "float", "nullable": True, "min": 0},
        "years": {"type": "integer", "min": 0},
        "branch": {"type": "integer"},  # the same value on every row
        "home": {"type": "string", "nullable": True, "allowed": ["rent", "owner", "parents"]},
    },
}


def loans(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Credit-application-like rows: ~20 % bad, more often with low income; some incomes missing."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(4.5, 0.6, rows)
    bad = rng.random(rows) < 1 / (1 + np.exp((income - 80) / 20 + 1.0))
    income[rng.random(rows) < 0.1] = np.nan
    home = rng.choice(np.array(["rent", "owner", "parents", None], dtype=object), rows, p=[0.4, 0.4, 0.15, 0.05])
    return pd.DataFrame({
        "row_id": np.arange(rows), "status": np.where(bad, "bad", "good"), "income": income,
        "years": rng.integers(0, 30, rows), "branch": 7, "home": home,
    })


def context(**overrides) -> Context:
    config = SOLUTION.make_config({"columns": NO_ROLES, "exclude_features": [], **overrides})
    contract = Contract.from_dict(CONTRACT)
    return Context(SOLUTION.name, config, {"fraud_transactions": contract})


def test_a_table_without_time_or_entity_gets_no_faked_features_and_a_stratified_split():
    from fraud_detection.solution import feature_spec

    ctx = context()
    spec = feature_spec(ctx)
    assert not spec.history and spec.timestamp is None and spec.amount is None
    assert set(spec.inputs) == {"income", "years", "branch", "home"}  # the id and the label are not inputs
    examples = SOLUTION.data.prepare(ctx, {"fraud_transactions": loans()})
    assert set(examples["status"]) == {0, 1}  # "bad" -> 1 through the contract
    splits = SOLUTION.data.split(ctx, examples)
    rates = [getattr(splits, name)["status"].mean() for name in ("train", "valid", "test")]
    assert max(rates) - min(rates) < 0.02, rates
    assert SOLUTION.serving.features(ctx, Path("/nonexistent")) is None  # no card history to keep online


def test_a_role_the_contract_lacks_is_named_with_the_fix():
    from fraud_detection.features import check_roles

    ctx = context(columns={**NO_ROLES, "timestamp": "applied_at"})
    with pytest.raises(ValueError, match=r"columns.timestamp: .*'applied_at'.*or null if your data has no timestamp"):
        check_roles(ctx.contract, ctx.config)


@pytest.mark.parametrize("build", ["build_keras_model", "build_linear_model"])
def test_a_row_scores_the_same_alone_and_in_a_batch_with_a_constant_feature(build):
    from fraud_detection import model
    from fraud_detection.solution import feature_spec
    from solutions_core.export import frame_to_inputs

    ctx = context()
    spec = feature_spec(ctx)
    examples = SOLUTION.data.prepare(ctx, {"fraud_transactions": loans(300)})
    network = getattr(model, build)(examples, spec, ctx.config)
    inputs = frame_to_inputs(examples.head(64), spec.tensor_specs())
    together = network({k: v for k, v in inputs.items()}, training=False).numpy().reshape(-1)
    for row in (0, 5, 63):
        alone = network({k: v[row : row + 1] for k, v in inputs.items()}, training=False).numpy().reshape(-1)
        assert alone[0] == pytest.approx(together[row], abs=1e-6)
    # The constant column contributes exactly nothing (not rounding noise divided by a tiny variance).
    standardize = next(layer for layer in network.layers if layer.name.endswith("standardize"))
    assert standardize.scale[list(spec.numeric).index("branch")] == 0.0
    # Missing incomes are 0 after standardization plus an indicator column, never NaN.
    assert np.isfinite(together).all()


def test_timestamps_keep_their_seconds_inside_the_graph():
    from fraud_detection import model
    from fraud_detection.solution import feature_spec

    contract = dict(CONTRACT, columns={**CONTRACT["columns"], "applied_at": {"type": "timestamp"}})
    ctx = Context(SOLUTION.name, SOLUTION.make_config({"columns": {**NO_ROLES, "timestamp": "applied_at"}, "exclude_features": []}),
                  {"fraud_transactions": Contract.from_dict(contract)})
    spec = feature_spec(ctx)
    seconds = np.array([1_700_000_037.0, 1_700_000_099.0, 1_700_043_210.0])
    layer = model.DeriveFeatures(spec)
    inputs = {"applied_at": seconds, "income": np.ones(3, "float32"), "years": np.ones(3, "float32"),
              "branch": np.ones(3, "float32"), "home": np.array([b"rent"] * 3)}
    hour_sin = layer(inputs)["hour_sin"].numpy()
    expected = np.sin(2 * math.pi * (seconds % 86400) / 86400)
    # float32 epoch seconds are ~128 s apart: an error of up to ~5e-3 here.
    np.testing.assert_allclose(hour_sin, expected, atol=2e-6)


def test_the_miss_cost_is_configurable_and_sane_without_an_amount():
    from fraud_detection.evaluate import choose_threshold
    from fraud_detection.solution import miss_costs

    frame = pd.DataFrame({"exposure": [100.0, 250.0]})
    assert miss_costs(frame, context().config).tolist() == [25.0, 25.0]  # 5 × review_cost
    assert miss_costs(frame, context(missed_fraud_cost=3.0).config).tolist() == [3.0, 3.0]
    assert miss_costs(frame, context(missed_fraud_cost="exposure").config).tolist() == [100.0, 250.0]
    # Calibrated scores, a review costing 1 and a miss 5: the cheapest threshold is near 1/6, wherever
    # the positive rate puts it (the old search only looked at the top 10 % of scores).
    rng = np.random.default_rng(0)
    scores = rng.random(40_000)
    labels = (rng.random(40_000) < scores).astype(int)
    config = context(review_cost=1.0, missed_fraud_cost=5.0).config
    assert choose_threshold(labels, scores, np.full(len(scores), 5.0), config) == pytest.approx(1 / 6, abs=0.04)


def test_client_csv_with_string_labels_trains_through_the_cli(tmp_path):
    """The whole pipeline on a CSV, a contract and a config, nothing else: candidates (the in-graph
    logistic regression among them) and both baselines, with a paired interval against each."""
    from typer.testing import CliRunner

    from solutions_core.cli import app

    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "loans.yaml").write_text(yaml.safe_dump(CONTRACT, sort_keys=False))
    loans(600).to_csv(tmp_path / "loans.csv", index=False)
    config = {
        "contract": "loans", "source": str(tmp_path / "loans.csv"), "columns": NO_ROLES, "exclude_features": [],
        "review_cost": 1.0, "missed_fraud_cost": 5.0, "gate": {"beat_baselines": False},
        "gradient_boosted_trees": {"num_trees": 10}, "keras_model": {"hidden_units": [8]},
        "training": {"epochs": 1, "steps_per_epoch": 4, "batch_size": 64},
    }
    (tmp_path / "loans_config.yaml").write_text(yaml.safe_dump(config))
    common = ["-c", str(tmp_path / "loans_config.yaml"), "--home", str(tmp_path / "home"), "--contracts-dir", str(contracts)]
    runner = CliRunner()
    assert runner.invoke(app, ["validate", SOLUTION.name, *common]).exit_code == 0
    result = runner.invoke(app, ["train", SOLUTION.name, *common, "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(next((tmp_path / "home" / "runs" / SOLUTION.name).glob("*/report.json")).read_text())
    assert {c["name"] for c in report["candidates"]} >= {"gradient_boosted_trees", "keras_mlp", "logistic_regression"}
    assert set(report["baselines"]) == {"logistic_regression", "hist_gradient_boosting"}
    assert report["status"] == "promoted"


def test_validate_names_a_missing_column_and_a_config_role_the_contract_lacks(tmp_path):
    from typer.testing import CliRunner

    from solutions_core.cli import app

    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "loans.yaml").write_text(yaml.safe_dump(CONTRACT, sort_keys=False))
    loans(50).drop(columns=["income"]).to_parquet(tmp_path / "loans.parquet")
    base = {"contract": "loans", "source": str(tmp_path / "loans.parquet"), "columns": NO_ROLES, "exclude_features": []}
    runner = CliRunner()
    for name, config in {"missing": base, "role": {**base, "columns": {**NO_ROLES, "card": "customer"}}}.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = runner.invoke(app, ["validate", SOLUTION.name, "-c", str(tmp_path / f"{name}.yaml"), "--contracts-dir", str(contracts), "--home", str(tmp_path)])
        assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit), result.output
        output = " ".join(result.output.split())
        assert ("income missing" in output) if name == "missing" else ("columns.card" in output and "'customer'" in output), output


def test_small_tables_get_enough_training_steps_and_large_ones_keep_the_config():
    from fraud_detection.model import MIN_TRAINING_STEPS, training_for

    training = SOLUTION.make_config().training  # batch 1024, 8 epochs, early stopping on val_auprc
    small = training_for(training, 3_000)
    assert small.batch_size < training.batch_size
    assert math.ceil(3_000 / small.batch_size) * small.epochs >= MIN_TRAINING_STEPS
    assert (small.early_stopping_monitor, small.early_stopping_mode) == ("val_loss", "min")
    assert training_for(training, 200_000) == training
    fixed = training.model_copy(update={"steps_per_epoch": 4})
    assert training_for(fixed, 3_000) == fixed  # a fixed budget (tests) is kept
