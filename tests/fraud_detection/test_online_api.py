"""History at serving time: replaying transactions one by one through the real API gives the same
probabilities as the offline features computed over the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_detection.history import HISTORY_FEATURES
from solutions_core.demo import ServerProcess, http_json
from solutions_core.export import load_signature, predict_frame
from solutions_core.model_registry import ModelRegistry
from solutions_core.registry import get_solution
from solutions_core.training import context_for

APP = "fraud_detection"


def test_online_features_through_the_api_match_offline(trained, home, settings, tmp_path):
    solution = get_solution(APP)
    config = solution.tiny_config()
    context = context_for(solution, config.model_copy(update={"seed": 123, "size": 400}), settings)
    # New cards the server has never seen, so the online table starts empty for them.
    fresh = solution.data.generate(context, tmp_path)["fraud_transactions"]
    fresh["card_id"] = "new_" + fresh["card_id"]
    cards = fresh["card_id"].value_counts().index[:3]
    replay = fresh[fresh["card_id"].isin(cards)].sort_values(["timestamp", "transaction_id"]).head(40)
    offline = solution.data.prepare(context, {"fraud_transactions": replay})

    version = trained[APP].version
    assert version == ModelRegistry(home / "models").champion(APP)
    expected = predict_frame(load_signature(version.path, ("ydf_tf",)), offline)["fraud_probability"]

    # A server of its own, with a copy of the models and an empty online table.
    import shutil

    shutil.copytree(home / "models", tmp_path / "models")
    with ServerProcess(tmp_path) as server:
        server.wait_ready([APP])
        online = []
        for _, row in replay.iterrows():
            instance = {
                key: (value.isoformat() if isinstance(value, pd.Timestamp) else value)
                for key, value in row.drop(labels=["transaction_id", "is_fraud"]).items()
            }
            instance = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in instance.items()}
            assert not set(HISTORY_FEATURES) & set(instance)
            status, body = http_json("POST", f"{server.url}/v1/models/{APP}:predict", {"instances": [instance]})
            assert status == 200, body
            online.append(body["predictions"][0]["fraud_probability"])
    assert len(online) == len(replay) >= 10
    np.testing.assert_allclose(np.array(online), expected, atol=1e-5)
    # History made a difference: the same transactions scored without history would differ.
    assert offline["card_txn_count_24h"].max() > 0
