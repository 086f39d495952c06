"""The generator's structure, the contracts, the MovieLens loader and the leave-latest-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommendation.data import INTERACTIONS, ITEMS, USERS, load_tables, prepare, split
from recommendation.generate import START, generate_interactions
from solutions_core.contracts import load_contract
from solutions_core.registry import get_solution

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_interactions(6_000, 300, 400, seed=3)


def test_generated_tables_follow_their_contracts(tables):
    for name in (INTERACTIONS, USERS, ITEMS):
        report = load_contract(name, CONTRACTS).check(tables[name])
        assert report.ok, report.to_dict()


def test_generator_is_seeded_and_has_a_long_tail_and_new_items(tables):
    again = generate_interactions(6_000, 300, 400, seed=3)
    pd.testing.assert_frame_equal(tables[INTERACTIONS], again[INTERACTIONS])
    counts = tables[INTERACTIONS]["item_id"].value_counts()
    head = counts.head(len(tables[ITEMS]) // 10).sum() / counts.sum()
    assert head > 0.3, f"top 10% of items take only {head:.0%} of interactions"
    items = tables[ITEMS].set_index("item_id")
    new = items.index[items["created_at"] > START]
    assert len(new) > 0.1 * len(items)
    log = tables[INTERACTIONS].join(items["created_at"], on="item_id")
    assert (log["timestamp"] >= log["created_at"]).all(), "an item was used before it existed"
    assert not tables[INTERACTIONS].duplicated(["user_id", "item_id"]).any()


def test_user_features_carry_taste(tables):
    """A region's category mix differs from the overall mix: user features carry signal for cold start."""
    log = tables[INTERACTIONS].merge(tables[USERS], on="user_id")
    log = log.merge(tables[ITEMS][["item_id", "category"]], on="item_id")
    shares = log.groupby("region")["category"].value_counts(normalize=True).unstack(fill_value=0)
    overall = log["category"].value_counts(normalize=True)
    # Total variation distance of each region's category mix from the overall mix.
    distance = 0.5 * (shares - overall).abs().sum(axis=1)
    assert distance.max() > 0.05


def test_split_holds_out_each_users_latest_interactions(tables):
    solution = get_solution("recommendation")
    config = solution.make_config({"holdout_per_user": 1})
    prepared = prepare(tables, config)
    train, valid, test = split(prepared, config)
    log = prepared.interactions
    when = log.set_index(["user_id", "item_id"])["timestamp"]
    latest = log.groupby("user_id")["timestamp"].max()
    for _, row in test.iterrows():
        (target,) = row["targets"]
        assert when[(row["user_id"], target)] == latest[row["user_id"]]  # ties in time may pick either
        assert target not in row["exclude"].split()
    held = set(zip(test["user_id"], test["targets"].str[0])) | set(zip(valid["user_id"], valid["targets"].str[0]))
    assert not held & set(zip(train.interactions["user_id"], train.interactions["item_id"]))
    # A training row's history is only what the same user did before it.
    first = train.interactions.groupby("user_id").head(1)
    assert (first["history"] == "").all()
    second = train.interactions.groupby("user_id").nth(1)
    previous = train.interactions.groupby("user_id").head(1).set_index("user_id")["item_id"]
    assert (second["history"].to_numpy() == previous.loc[second["user_id"]].to_numpy()).all()
    assert train.popularity.sum() == len(train.interactions)


def test_bad_columns_and_unknown_items_are_clear_errors(tables):
    solution = get_solution("recommendation")
    with pytest.raises(ValueError, match="user_categorical names 'income'"):
        prepare(tables, solution.make_config({"columns": {"user_categorical": ["income"]}}))
    broken = dict(tables)
    broken[INTERACTIONS] = tables[INTERACTIONS].assign(item_id="not-in-catalog")
    with pytest.raises(ValueError, match="missing from the items table"):
        prepare(broken, solution.make_config())


def test_movielens_loads_from_the_recbole_package_and_passes_its_contracts():
    tables = load_tables("movielens-100k")
    assert len(tables[INTERACTIONS]) == 100_000
    assert tables[INTERACTIONS]["user_id"].nunique() == 943 and len(tables[ITEMS]) == 1_682
    checks = {INTERACTIONS: INTERACTIONS, USERS: "movielens_users", ITEMS: "movielens_items"}
    for table, contract in checks.items():
        report = load_contract(contract, CONTRACTS).check(tables[table])
        assert report.ok, (contract, report.to_dict())


def test_a_folder_of_csv_tables_loads(tmp_path, tables):
    tables[INTERACTIONS].to_csv(tmp_path / "interactions.csv", index=False)
    tables[ITEMS].to_csv(tmp_path / "items.csv", index=False)
    loaded = load_tables(str(tmp_path))
    assert len(loaded[INTERACTIONS]) == len(tables[INTERACTIONS])
    assert pd.api.types.is_datetime64_any_dtype(loaded[INTERACTIONS]["timestamp"])
    assert set(loaded[USERS]["user_id"]) == set(tables[INTERACTIONS]["user_id"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="needs interactions"):
        load_tables(str(tmp_path / "empty"))
