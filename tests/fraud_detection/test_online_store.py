"""The card-history feature store as the server uses it: ``lookup`` fills history features without
changing the table (a request's earlier transactions still count), ``record`` adds what was answered."""

from __future__ import annotations

import pandas as pd

from fraud_detection.history import HISTORY_FEATURES
from fraud_detection.online import CardHistoryStore
from fraud_detection.solution import FraudDetection
from solutions_core.training import context_for


def transaction(minute: int, card: str = "c1", amount: float = 10.0) -> dict:
    return {
        "timestamp": (pd.Timestamp("2025-03-01 12:00") + pd.Timedelta(minutes=minute)).isoformat(),
        "card_id": card, "amount": amount, "device_id": "d1", "merchant_lat": 48.0, "merchant_lon": 2.0,
        "merchant_id": "m1", "merchant_category": "grocery", "channel": "online", "home_lat": 48.0, "home_lon": 2.0,
    }


def test_lookup_changes_nothing_and_record_remembers(settings, tmp_path):
    solution = FraudDetection()
    context = context_for(solution, solution.tiny_config(), settings)
    store = solution.serving.features(context, tmp_path)  # no stored data: an empty table
    assert isinstance(store, CardHistoryStore)
    first, second = transaction(0), transaction(5)

    # Two transactions of one card in one request: the second sees the first, as offline features would.
    looked_up = store.lookup([first, second])
    assert [row["card_txn_count_1h"] for row in looked_up] == [0.0, 1.0]
    assert all(set(HISTORY_FEATURES) <= set(row) for row in looked_up)
    # ...but nothing was recorded: the same lookup again gives the same answer.
    assert store.lookup([second])[0]["card_txn_count_1h"] == 0.0
    assert len(store.store) == 0

    store.record([first])
    assert store.lookup([second])[0]["card_txn_count_1h"] == 1.0
    # A request that brings its own history features is neither looked up nor recorded.
    own = {**transaction(6), **{name: 0.0 for name in HISTORY_FEATURES}}
    assert store.lookup([own]) == [own]
    store.record([own])
    assert store.lookup([transaction(7)])[0]["card_txn_count_1h"] == 1.0

    store.save()
    reopened = solution.serving.features(context, tmp_path)
    assert reopened.lookup([second])[0]["card_txn_count_1h"] == 1.0


def test_a_retried_transaction_counts_once_and_history_survives_reload_and_restart(settings, tmp_path):
    solution = FraudDetection()
    context = context_for(solution, solution.tiny_config(), settings)
    store = solution.serving.features(context, tmp_path)
    paid = {**transaction(0), "transaction_id": "t-1"}
    store.record([paid])
    store.record([paid])  # the client retried: same transaction id
    assert store.lookup([transaction(5)])[0]["card_txn_count_1h"] == 1.0
    store.record([{**transaction(1), "transaction_id": "t-2"}])
    assert store.lookup([transaction(5)])[0]["card_txn_count_1h"] == 2.0

    # A new version's store takes over the live table (hot reload) ...
    reloaded = solution.serving.features(context, tmp_path)
    assert reloaded.lookup([transaction(5)])[0]["card_txn_count_1h"] == 0.0  # nothing saved yet
    reloaded.carry_over(store)
    assert reloaded.lookup([transaction(5)])[0]["card_txn_count_1h"] == 2.0
    reloaded.record([paid])  # ... with the ids already answered
    assert reloaded.lookup([transaction(5)])[0]["card_txn_count_1h"] == 2.0

    # ... and a restart resumes the saved table and ids.
    reloaded.save()
    restarted = solution.serving.features(context, tmp_path)
    restarted.record([paid])
    assert restarted.lookup([transaction(5)])[0]["card_txn_count_1h"] == 2.0


def test_a_request_mixing_own_and_looked_up_history(settings, tmp_path):
    solution = FraudDetection()
    store = solution.serving.features(context_for(solution, solution.tiny_config(), settings), tmp_path)
    store.record([transaction(0)])
    own = {**transaction(1), **{name: 7.0 for name in HISTORY_FEATURES}}
    request = [own, transaction(2), transaction(3, card="c2")]
    columns = store.lookup_columns(request)
    assert list(columns) == list(HISTORY_FEATURES)
    assert list(columns["card_txn_count_1h"]) == [7.0, 1.0, 0.0]  # own kept; c1 has one prior; c2 none
    # A large request takes the array path: the same values, as float arrays.
    large = store.lookup_columns(request * 10)
    assert large["card_txn_count_1h"].dtype == "float64"
    assert large["card_txn_count_1h"][:3].tolist() == [7.0, 1.0, 0.0]
    assert large["card_txn_count_1h"][3:6].tolist() == [7.0, 2.0, 1.0]  # the request's earlier rows count
    store.record([own, transaction(2)])  # only the looked-up one joins the history
    assert store.lookup([transaction(4)])[0]["card_txn_count_1h"] == 2.0
