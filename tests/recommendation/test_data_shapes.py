"""Logs of the shapes clients bring, through contract + config only: no users table, no items table or
neither (ids alone), no timestamps (random leave-one-out), integer or string ids, epoch-second times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommendation.data import INTERACTIONS, ITEMS, USERS, load_tables, prepare, split
from solutions_core.contracts import load_contract
from solutions_core.registry import get_solution

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts"

# The config of a log known by ids alone: no feature columns, the ids-only side contracts.
IDS_ONLY = {
    "table_contracts": {USERS: "rec_user_ids", ITEMS: "rec_item_ids"},
    "columns": {"user_categorical": [], "item_categorical": [], "item_text": []},
}


def synthetic_log(users: int = 60, items: int = 40, per_user: int = 8, seed: int = 0) -> pd.DataFrame:
    """Integer ids, epoch-second times, two taste groups (even users like even items)."""
    generator = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        liked = np.arange(user % 2, items, 2)
        for step, item in enumerate(generator.choice(liked, size=per_user, replace=False)):
            rows.append((user, int(item), 1_700_000_000 + user * 1000 + step * 10, float(generator.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def integer_ids_contract(folder: Path) -> Path:
    """A client's contract: integer ids, epoch seconds (the unit says so)."""
    path = folder / "shop_interactions.yaml"
    path.write_text(
        "name: shop_interactions\nversion: 1.0.0\nowner: me@example.com\ntime_column: timestamp\ncolumns:\n"
        "  user_id: {type: integer, role: id, serving: true}\n  item_id: {type: integer, role: id}\n"
        "  timestamp: {type: timestamp, unit: s, role: metadata}\n  rating: {type: float, nullable: true, role: metadata}\n"
    )
    return path


def contracts(interactions: str | Path, users: str = "rec_user_ids", items: str = "rec_item_ids") -> dict:
    return {INTERACTIONS: load_contract(str(interactions), CONTRACTS), USERS: load_contract(users, CONTRACTS), ITEMS: load_contract(items, CONTRACTS)}


@pytest.mark.parametrize("side_tables", [(), ("users",), ("items",), ("users", "items")])
def test_side_tables_are_optional_and_integer_epoch_logs_load(tmp_path, side_tables):
    log = synthetic_log()
    log.to_csv(tmp_path / "interactions.csv", index=False)
    if "users" in side_tables:
        pd.DataFrame({"user_id": range(60)}).to_csv(tmp_path / "users.csv", index=False)
    if "items" in side_tables:  # the catalog may hold items nobody has used yet
        pd.DataFrame({"item_id": range(45)}).to_parquet(tmp_path / "items.parquet")
    found = contracts(integer_ids_contract(tmp_path))
    tables = load_tables(str(tmp_path), found)
    for table, contract in found.items():
        report = contract.validate(tables[table])
        assert report.ok, (table, report.to_dict())
    interactions = tables[INTERACTIONS]
    assert interactions["user_id"].map(type).eq(str).all() and set(interactions["item_id"]) == {str(i) for i in log["item_id"]}
    assert pd.api.types.is_datetime64_any_dtype(interactions["timestamp"])
    assert interactions["timestamp"].min() == pd.Timestamp(1_700_000_000, unit="s"), "epoch seconds read in the contract's unit"
    assert len(tables[ITEMS]) == (45 if "items" in side_tables else log["item_id"].nunique())
    assert set(tables[USERS]["user_id"]) == {str(u) for u in range(60)}
    config = get_solution("recommendation").make_config(IDS_ONLY)
    train, valid, test = split(prepare(tables, config), config)
    latest = log.sort_values("timestamp").groupby("user_id")["item_id"].last()
    assert all(row["targets"] == [str(latest[int(row["user_id"])])] for _, row in test.iterrows()), "with times, the latest is test"


def untimed_folder(folder: Path) -> Path:
    synthetic_log().drop(columns=["timestamp", "rating"]).to_parquet(folder / "interactions.parquet")
    return folder


def test_a_log_without_timestamps_holds_out_random_interactions_seeded(tmp_path):
    found = contracts("rec_interactions_untimed")
    tables = load_tables(str(untimed_folder(tmp_path)), found)
    assert all(contract.validate(tables[table]).ok for table, contract in found.items())
    solution = get_solution("recommendation")

    def held_out(seed):
        config = solution.make_config({**IDS_ONLY, "seed": seed})
        train, valid, test = split(prepare(tables, config), config)
        for _, row in test.iterrows():
            assert row["targets"][0] not in row["exclude"].split()
        pairs = set(zip(test["user_id"], test["targets"].str[0]))
        assert not pairs & set(zip(valid["user_id"], valid["targets"].str[0]))
        assert not pairs & set(zip(train.interactions["user_id"], train.interactions["item_id"]))
        return pairs

    assert held_out(0) == held_out(0)
    assert held_out(0) != held_out(1)
    # Not the file's last row per user: without time, "latest" means nothing.
    last_in_file = set(synthetic_log().groupby("user_id")["item_id"].last().astype(str).items())
    assert len(held_out(0) & {(str(u), i) for u, i in last_in_file}) < 0.5 * 60


def test_clear_errors_for_missing_ids_and_ratings(tmp_path):
    synthetic_log().rename(columns={"item_id": "product"}).to_csv(tmp_path / "interactions.csv", index=False)
    with pytest.raises(ValueError, match=r"no column \['item_id'\]"):
        load_tables(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="needs interactions.parquet"):
        load_tables(str(empty))
    tables = load_tables(str(untimed_folder(empty)))
    config = get_solution("recommendation").make_config({**IDS_ONLY, "min_rating": 4})
    with pytest.raises(ValueError, match="min_rating is 4.0 but the interactions have no rating"):
        prepare(tables, config)


def test_ids_alone_without_times_train_and_serve_through_the_pipeline(tmp_path):
    """A log of (user, item) integer pairs and nothing else: contract + config, no code. The exported
    module recommends from a history alone and falls back to popular items for an unknown user."""
    from solutions_core.export import load_signature, predict_frame
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("recommendation")
    tiny = solution.tiny_config().model_dump()
    config = solution.make_config(
        {**tiny, **IDS_ONLY, "source": str(untimed_folder(tmp_path)), "contract": "rec_interactions_untimed",
         "gate": {"beat_baselines": False}, "ranking": {**tiny["ranking"], "enabled": False}, "ease_candidate": True}
    )
    result = run_training(solution, config, Settings(home=tmp_path / "home", contracts_dir=CONTRACTS), verbose=0)
    names = {"two_tower", "ease_in_graph", "towers_ease_blend"}
    assert result.promoted and {c.name for c in result.candidates} == names
    assert result.candidate in names  # whichever won validation is what is served below
    assert {"popularity", "matrix_factorization", "ease"} <= set(result.baselines)
    signature = load_signature(result.version.path)
    outputs = predict_frame(signature, pd.DataFrame([
        {"user_id": "3", "history": "1 3 5", "exclude": "1 3 5"},
        {"user_id": "somebody-new", "history": "", "exclude": ""},
    ]))
    ids = [[value.decode() for value in row] for row in outputs["item_ids"]]
    assert [value.decode() for value in outputs["strategy"]] == ["personalized", "popular"]
    assert not {"1", "3", "5"} & set(ids[0]) and all(ids[0])
