"""The synthetic transaction generator: schema, determinism, fraud patterns, learnability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score

from fraud_detection.generate import CHANNELS, COLUMNS, MERCHANT_CATEGORIES, generate_transactions
from fraud_detection.history import HISTORY_FEATURES, add_history_features


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """60k rows with a higher fraud rate than the default, so each pattern has enough examples."""
    return add_history_features(generate_transactions(60_000, fraud_rate=0.005, seed=0))


def test_same_seed_same_table_other_seed_other_table():
    first = generate_transactions(2_000, seed=1)
    pd.testing.assert_frame_equal(first, generate_transactions(2_000, seed=1))
    assert not first.equals(generate_transactions(2_000, seed=2))


def test_columns_types_and_values():
    frame = generate_transactions(5_000, fraud_rate=0.01, seed=3)
    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == 5_000
    assert frame["timestamp"].dtype == "datetime64[ns]"
    for name in ("amount", "merchant_lat", "merchant_lon", "home_lat", "home_lon"):
        assert frame[name].dtype == np.float64, name
    assert frame["is_fraud"].dtype == np.int64 and set(frame["is_fraud"]) == {0, 1}
    assert frame["transaction_id"].is_unique
    assert frame["card_id"].str.fullmatch(r"card_\d+").all()
    assert set(frame["merchant_category"]) <= set(MERCHANT_CATEGORIES)
    assert set(frame["channel"]) == set(CHANNELS)
    assert (frame["amount"] > 0).all() and (frame["amount"] == frame["amount"].round(2)).all()
    assert frame["merchant_lat"].between(-90, 90).all() and frame["merchant_lon"].between(-180, 180).all()
    assert frame["device_id"].isna().eq(frame["channel"] == "card_present").all()
    assert frame[["merchant_id", "merchant_category"]].drop_duplicates()["merchant_id"].is_unique
    assert frame[["card_id", "home_lat", "home_lon"]].drop_duplicates()["card_id"].is_unique
    resorted = frame.sort_values(["timestamp", "transaction_id"], kind="stable")
    assert resorted.index.equals(frame.index)


def test_fraud_rate_is_close_to_target():
    frame = generate_transactions(50_000, seed=4)
    assert 0.0015 <= frame["is_fraud"].mean() <= 0.0025


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="fraud_rate"):
        generate_transactions(100, fraud_rate=0.9)
    with pytest.raises(ValueError, match="n_transactions"):
        generate_transactions(0)


def test_card_testing_bursts_show_as_velocity_on_small_amounts(transactions):
    burst_like = (transactions["card_txn_count_1h"] >= 2) & (transactions["amount"] < 5)
    by_label = burst_like.groupby(transactions["is_fraud"]).mean()
    assert by_label[1] > 0.15 and by_label[0] < 0.01


def test_account_takeover_shows_as_new_device_at_night_with_big_amounts(transactions):
    takeover_like = (
        (transactions["new_device_for_card"] == 1)
        & (transactions["timestamp"].dt.hour < 6)
        & (transactions["amount_to_card_mean_30d"] > 2)
    )
    by_label = takeover_like.groupby(transactions["is_fraud"]).mean()
    assert by_label[1] > 0.02 and by_label[1] > 20 * by_label[0]


def test_compromised_merchants_precede_card_present_fraud(transactions):
    is_fraud, channel = transactions["is_fraud"], transactions["channel"]
    fraud_in_person = transactions[(is_fraud == 1) & (channel == "card_present")]
    first_fraud = fraud_in_person.groupby("card_id")["timestamp"].min().rename("fraud_time")
    in_person = transactions[(is_fraud == 0) & (channel != "online")]
    visits = in_person.merge(first_fraud, left_on="card_id", right_index=True)
    recent = visits["timestamp"].between(visits["fraud_time"] - pd.Timedelta(days=25), visits["fraud_time"])
    before = visits[recent]
    share_of_victims = before.groupby("merchant_id")["card_id"].nunique() / len(first_fraud)
    n_cards = transactions["card_id"].nunique()
    share_of_all_cards = in_person.groupby("merchant_id")["card_id"].nunique() / n_cards
    breached = share_of_victims[share_of_victims > 3 * share_of_all_cards[share_of_victims.index]]
    assert len(first_fraud) >= 10 and breached.max() >= 0.2


def test_drift_amounts_inflate_and_card_testing_grows(transactions):
    month = transactions["timestamp"].dt.month
    legit_median = transactions[transactions["is_fraud"] == 0].groupby(month)["amount"].median()
    assert legit_median.iloc[-1] > legit_median.iloc[0]
    fraud = transactions[transactions["is_fraud"] == 1]
    small_share = (fraud["amount"] < 5).groupby(fraud["timestamp"] < fraud["timestamp"].median()).mean()
    assert small_share[False] > small_share[True]  # later half has more card testing


def test_fraud_is_learnable_from_history_but_not_trivially(transactions):
    features = [*HISTORY_FEATURES, "amount"]
    cut = int(len(transactions) * 0.7)  # time split: rows are sorted by timestamp
    train, test = transactions.iloc[:cut], transactions.iloc[cut:]
    model = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=150,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    ).fit(train[features], train["is_fraud"])
    base_rate = test["is_fraud"].mean()
    auprc = average_precision_score(test["is_fraud"], model.predict_proba(test[features])[:, 1])
    assert auprc > max(0.2, 20 * base_rate)
    assert auprc < 0.99


def test_generated_table_satisfies_its_data_contract():
    from pathlib import Path

    from solutions_core.contracts import Contract

    contract_path = Path(__file__).resolve().parents[2] / "data_contracts" / "fraud_transactions.yaml"
    contract = Contract.from_yaml(contract_path)
    report = contract.validate(generate_transactions(5_000, fraud_rate=0.01, seed=5))
    assert report.ok, report.format()
    assert set(contract.columns) == set(COLUMNS)
