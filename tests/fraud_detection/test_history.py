"""Card-history features: exact values on hand-built frames, and offline == online."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from fraud_detection.generate import generate_transactions
from fraud_detection.history import (
    HISTORY_FEATURES,
    NO_HISTORY_SECONDS,
    OnlineHistoryStore,
    add_history_features,
    haversine_km,
)

ONE_DEGREE_KM = haversine_km(0.0, 0.0, 0.0, 1.0)  # ~111.195 km along the equator


def _row(tx, ts, card, amount, device, lat, lon):
    return {
        "transaction_id": tx,
        "timestamp": pd.Timestamp(ts),
        "card_id": card,
        "amount": amount,
        "device_id": device,
        "merchant_lat": lat,
        "merchant_lon": lon,
    }


# Input deliberately unsorted; t2 and t3 tie on time and t3 comes first in the input, so the tie must be
# broken by transaction_id.
HAND_BUILT = pd.DataFrame(
    [
        _row("t6", "2025-02-15 00:00", "A", 60.0, "d1", 1.0, 0.0),
        _row("t3", "2025-01-01 00:30", "A", 30.0, "d1", 0.0, 1.0),
        _row("t1", "2025-01-01 00:00", "A", 10.0, None, 0.0, 0.0),
        _row("b1", "2025-01-01 00:10", "B", 5.0, "d1", 10.0, 10.0),
        _row("t2", "2025-01-01 00:30", "A", 20.0, "d1", 0.0, 1.0),
        _row("t4", "2025-01-01 01:30", "A", 40.0, "d2", 0.0, 0.0),
        _row("t5", "2025-01-02 00:00", "A", 50.0, None, 0.0, 0.0),
        _row("b2", "2026-02-05 00:10", "B", 7.0, "d1", 10.0, 10.0),
    ]
)

# transaction_id -> (count_1h, count_24h, count_7d, sum_24h, mean_30d, amount_to_mean, seconds_since_last,
#                    distance_from_last_km, new_device, history_days)
EXPECTED = {
    "t1": (0, 0, 0, 0.0, 0.0, 1.0, NO_HISTORY_SECONDS, 0.0, 0.0, 0.0),
    "t2": (1, 1, 1, 10.0, 10.0, 2.0, 1800.0, ONE_DEGREE_KM, 1.0, 1800 / 86400),
    # the tie: t2 is prior (same time, earlier id); 0 seconds, same place, d1 already seen
    "t3": (2, 2, 2, 30.0, 15.0, 2.0, 0.0, 0.0, 0.0, 1800 / 86400),
    # t2/t3 are exactly one hour old: outside the 1h window (strict lower bound)
    "t4": (0, 3, 3, 60.0, 20.0, 2.0, 3600.0, ONE_DEGREE_KM, 1.0, 1.5 / 24),
    # t1 is exactly 24h old: outside the 24h window
    "t5": (0, 3, 4, 90.0, 25.0, 2.0, 81000.0, 0.0, 0.0, 1.0),
    # 44 days after t5: all windows empty, gap capped; d1 was seen on this card before
    "t6": (0, 0, 0, 0.0, 0.0, 1.0, NO_HISTORY_SECONDS, ONE_DEGREE_KM, 0.0, 45.0),
    # a device another card used is still new for this card
    "b1": (0, 0, 0, 0.0, 0.0, 1.0, NO_HISTORY_SECONDS, 0.0, 1.0, 0.0),
    "b2": (0, 0, 0, 0.0, 0.0, 1.0, NO_HISTORY_SECONDS, 0.0, 0.0, 365.0),
}


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


def test_hand_built_frame_matches_expected_values_and_keeps_input_order():
    result = add_history_features(HAND_BUILT)
    assert list(result["transaction_id"]) == list(HAND_BUILT["transaction_id"])
    assert list(result.index) == list(HAND_BUILT.index)
    for name in HISTORY_FEATURES:
        assert result[name].dtype == np.float64, name
    for _, row in result.iterrows():
        actual = tuple(row[name] for name in HISTORY_FEATURES)
        tx = row["transaction_id"]
        np.testing.assert_allclose(actual, EXPECTED[tx], atol=1e-9, err_msg=tx)
    assert "card_txn_count_1h" not in HAND_BUILT.columns  # the input is not modified


def test_ties_without_transaction_id_follow_input_order():
    frame = HAND_BUILT.drop(columns="transaction_id")
    result = add_history_features(frame)
    # t3 is before t2 in the input: now t3 is the earlier of the tie
    t3, t2 = result.iloc[1], result.iloc[4]
    assert (t3["card_txn_count_1h"], t2["card_txn_count_1h"]) == (1.0, 2.0)
    assert (t3["new_device_for_card"], t2["new_device_for_card"]) == (1.0, 0.0)


def test_online_store_matches_hand_built_expectations():
    store = OnlineHistoryStore()
    ordered = HAND_BUILT.sort_values(["timestamp", "transaction_id"])
    for txn in _records(ordered):
        features = store.enrich(txn)
        actual = tuple(features[name] for name in HISTORY_FEATURES)
        tx = txn["transaction_id"]
        np.testing.assert_allclose(actual, EXPECTED[tx], atol=1e-9, err_msg=tx)


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate_transactions(3_000, n_cards=60, n_merchants=40, days=40, fraud_rate=0.02, seed=7)


def test_online_replay_equals_offline(generated):
    offline = add_history_features(generated)
    store = OnlineHistoryStore()
    online = pd.DataFrame([store.enrich(txn) for txn in _records(generated)])
    for name in HISTORY_FEATURES:
        np.testing.assert_allclose(online[name], offline[name], rtol=0, atol=1e-6, err_msg=name)
    assert offline["card_txn_count_1h"].max() >= 2  # the comparison covered non-trivial windows


def test_from_frame_equals_replay_and_round_trips_through_parquet(generated, tmp_path):
    history, future = generated.iloc[:2_000], generated.iloc[2_000:]
    replayed = OnlineHistoryStore()
    for txn in _records(history):
        replayed.update(txn)
    warmed = OnlineHistoryStore.from_frame(history.sample(frac=1.0, random_state=0))  # unsorted is fine
    assert warmed.stored_transaction_count() == replayed.stored_transaction_count()

    warmed.to_parquet(tmp_path / "state.parquet")
    restored = OnlineHistoryStore.from_parquet(tmp_path / "state.parquet")
    assert len(restored) == len(warmed) and restored.max_window == warmed.max_window
    for txn in _records(future):
        expected = replayed.enrich(txn)
        assert warmed.enrich(txn) == expected
        assert restored.enrich(txn) == expected


def test_features_does_not_mutate_state_but_update_does():
    store = OnlineHistoryStore()
    txn = _records(HAND_BUILT)[2]  # t1
    first = store.features(txn)
    assert store.features(txn) == first
    assert len(store) == 0 and store.stored_transaction_count() == 0
    enriched = store.enrich(txn, record=False)
    assert len(store) == 0 and enriched["transaction_id"] == "t1"
    store.update(txn)
    assert store.features(txn)["card_txn_count_1h"] == 1.0


def test_store_evicts_transactions_older_than_max_window():
    store = OnlineHistoryStore(max_window=pd.Timedelta(days=30))
    for day, card in [(0, "A"), (1, "A"), (2, "B"), (40, "A")]:
        when = pd.Timestamp("2025-01-01") + pd.Timedelta(days=day)
        store.update(_row("x", when, card, 10.0, "d", 0.0, 0.0))
    assert store.stored_transaction_count("A") == 1
    assert store.stored_transaction_count("B") == 1  # B has been quiet; it is trimmed by evict()
    store.evict()
    assert store.stored_transaction_count("B") == 0 and len(store) == 2
    # what was evicted is still remembered where it matters
    later = store.features(_row("y", "2025-02-12", "B", 10.0, "d", 0.0, 0.0))
    assert later["new_device_for_card"] == 0.0 and later["card_history_days"] == 40.0


def test_online_accepts_iso_strings_and_epoch_seconds():
    store = OnlineHistoryStore()
    store.update(_row("x", "2025-01-01", "A", 10.0, None, 0.0, 0.0) | {"timestamp": "2025-01-01T00:00:00"})
    epoch = pd.Timestamp("2025-01-01 00:10").timestamp()
    features = store.features(_row("y", "2025-01-01", "A", 10.0, None, 0.0, 0.0) | {"timestamp": epoch})
    assert features["seconds_since_last_txn"] == 600.0


def test_store_is_safe_to_share_between_threads():
    store = OnlineHistoryStore()
    start = pd.Timestamp("2025-01-01")

    def work(card: str) -> None:
        for minute in range(200):
            store.enrich(_row("x", start + pd.Timedelta(minutes=minute), card, 1.0, "d", 0.0, 0.0))

    threads = [threading.Thread(target=work, args=(f"card_{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 4 and store.stored_transaction_count() == 800


@pytest.mark.filterwarnings("ignore:Could not infer format")
def test_bad_input_raises_helpful_errors():
    with pytest.raises(ValueError, match="missing \\['device_id'\\]"):
        add_history_features(HAND_BUILT.drop(columns="device_id"))
    with pytest.raises(ValueError, match="card_id"):
        add_history_features(HAND_BUILT.assign(card_id=None))
    with pytest.raises(ValueError, match="timestamp"):
        add_history_features(HAND_BUILT.assign(timestamp="not a date"))
    with pytest.raises(ValueError, match="at least 30 days"):
        OnlineHistoryStore(max_window=pd.Timedelta(days=7))
    with pytest.raises(ValueError, match="missing \\['amount'\\]"):
        OnlineHistoryStore().features(
            {"timestamp": "2025-01-01", "card_id": "A", "merchant_lat": 0, "merchant_lon": 0}
        )


def test_empty_frame_gets_empty_feature_columns():
    result = add_history_features(HAND_BUILT.iloc[:0])
    assert len(result) == 0 and set(HISTORY_FEATURES) <= set(result.columns)


def test_missing_merchant_coordinates_give_zero_distance_on_both_paths():
    frame = HAND_BUILT.assign(merchant_lat=np.nan, merchant_lon=np.nan)
    offline = add_history_features(frame)
    assert (offline["distance_from_last_km"] == 0.0).all()
    store = OnlineHistoryStore()
    for txn in _records(frame.sort_values(["timestamp", "transaction_id"])):
        assert store.enrich(txn | {"merchant_lat": None})["distance_from_last_km"] == 0.0


def test_many_at_once_equals_one_by_one(generated):
    """The server's path for large requests: a batch read as columns (``transactions_from_columns``),
    looked up at once (``features_many``; cards repeated inside the batch see their earlier rows) and
    recorded at once, gives what ``enrich`` gives one transaction at a time."""
    from fraud_detection.history import transactions_from_columns

    records = _records(generated)
    warm, batches = records[:1_500], [records[start : start + 256] for start in range(1_500, len(records), 256)]
    one_by_one, at_once = OnlineHistoryStore(), OnlineHistoryStore()
    for txn in warm:
        one_by_one.update(txn)
        at_once.update(txn)
    for batch in batches:
        enriched = [one_by_one.enrich(txn) for txn in batch]  # each records itself before the next
        expected = [[row[name] for name in HISTORY_FEATURES] for row in enriched]
        columns = {key: [txn[key] if key != "timestamp" else txn[key].isoformat() for txn in batch] for key in batch[0]}
        transactions = transactions_from_columns(columns)
        np.testing.assert_allclose(at_once.features_many(transactions), expected, rtol=0, atol=1e-9)
        at_once.update_many(transactions)
    assert len({txn["card_id"] for txn in batches[0]}) < len(batches[0])  # batches did repeat cards
    assert at_once.stored_transaction_count() == one_by_one.stored_transaction_count()


def test_columns_with_odd_values_read_as_one_transaction_would():
    from fraud_detection.history import _parse_transaction, transactions_from_columns

    columns = {"timestamp": ["2025-01-01T00:00:00", 1735689600.0, "2025-01-01 00:00:00+01:00"], "card_id": [7, "7", "c"],
               "amount": [1, "2.5", 3.0], "device_id": [None, 5, "d"], "merchant_lat": [None, 1.0, 2], "merchant_lon": [0.0, None, 3]}
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    assert transactions_from_columns(columns) == [_parse_transaction(row) for row in rows]
    with pytest.raises(ValueError, match="amount"):
        transactions_from_columns({**columns, "amount": [1.0, "lots", 2.0]})
