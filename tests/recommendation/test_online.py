"""The online feature store (recommendation.online): what it fills in, that a lookup changes nothing,
and that recording an answered request leaves the store as training left it."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from recommendation.data import INTERACTIONS, ITEMS, USERS
from recommendation.online import OnlineStore
from solutions_core.registry import get_solution
from solutions_core.solution import FeatureStore


@pytest.fixture()
def store(tmp_path) -> OnlineStore:
    config = get_solution("recommendation").make_config({"towers": {"history_length": 2}})
    folder = tmp_path / "recommendation"
    folder.mkdir()
    pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "item_id": ["c", "a", "b", "a"],
            "timestamp": pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-01"]),
        }
    ).to_parquet(folder / f"{INTERACTIONS}.parquet")
    pd.DataFrame({"user_id": ["u1", "u2"], "region": ["north", None], "age_group": ["18-24", "25-34"]}).to_parquet(folder / f"{USERS}.parquet")
    pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]}).to_parquet(folder / f"{ITEMS}.parquet")
    return OnlineStore.open(tmp_path, config)


def state(store: OnlineStore) -> tuple:
    return copy.deepcopy(store.histories), store.features.copy(), store.items.copy()


def assert_same_state(store: OnlineStore, before: tuple) -> None:
    histories, features, items = before
    assert store.histories == histories
    pd.testing.assert_frame_equal(store.features, features)
    pd.testing.assert_frame_equal(store.items, items)


def test_lookup_fills_what_the_request_left_out_and_changes_nothing(store):
    assert isinstance(store, FeatureStore)
    before = state(store)
    instances = [{"user_id": "u1"}, {"user_id": "u2", "history": "c", "region": "south"}, {"user_id": "nobody", "exclude": None}]
    sent = copy.deepcopy(instances)
    filled = store.lookup(instances)
    assert instances == sent, "lookup must not modify the request's instances"
    assert_same_state(store, before)
    # u1's log in time order is a, b, c: the history keeps the last 2, exclusions everything seen.
    assert filled[0] == {"user_id": "u1", "history": "b c", "exclude": "a b c", "region": "north", "age_group": "18-24"}
    # What the request brings wins; a missing stored feature is "".
    assert filled[1] == {"user_id": "u2", "history": "c", "exclude": "a", "region": "south", "age_group": "25-34"}
    assert filled[2] == {"user_id": "nobody", "history": "", "exclude": "", "region": "", "age_group": ""}
    assert store.lookup(instances) == filled


def test_record_leaves_the_store_as_training_left_it(store):
    """A request asks for recommendations, it is not an interaction: nothing is added to a history."""
    before = state(store)
    store.record([{"user_id": "u1", "history": "x y"}, {"user_id": "new", "item_id": "a"}])
    store.save()
    assert_same_state(store, before)
    assert store.seen("u1") == ["a", "b", "c"] and store.seen("new") == []


def test_details_and_seen(store):
    assert store.details(["b", "zzz"]) == [{"title": "B"}, {}]
    assert store.seen("u2") == ["a"]
