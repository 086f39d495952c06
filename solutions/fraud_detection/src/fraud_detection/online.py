"""Card history at serving time.

A REST request carries one transaction, but the model also needs the card's recent history. The server
keeps an online feature table — ``history.OnlineHistoryStore``, per-card state for the last 30 days —
warmed from the transactions in the embedded store and persisted as Parquet beside them. Each request
that does not bring its own history features is enriched from that table and then recorded in it, so
the next transaction of the same card sees it (exactly as the offline features would).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_detection.config import FraudConfig
from fraud_detection.history import HISTORY_FEATURES, OnlineHistoryStore

STATE_FILE = "online_history.parquet"
TABLE_FILE = "fraud_transactions.parquet"


class OnlineFeatures:
    def __init__(self, store: OnlineHistoryStore, folder: Path, config: FraudConfig, canonical_record: Callable[..., dict]):
        self.store = store
        self.folder = folder
        self.config = config
        self._canonical_record = canonical_record  # the store locks itself: it is thread-safe

    @classmethod
    def open(
        cls,
        folder: Path,
        config: FraudConfig,
        canonical: Callable[..., pd.DataFrame],
        canonical_record: Callable[..., dict],
    ) -> "OnlineFeatures":
        """Resume the persisted state, else replay the stored transactions, else start empty."""
        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            store = OnlineHistoryStore.from_parquet(folder / STATE_FILE)
        elif (folder / TABLE_FILE).exists():
            frame = pd.read_parquet(folder / TABLE_FILE)
            store = OnlineHistoryStore.from_frame(canonical(frame, config))
        else:
            store = OnlineHistoryStore()
        return cls(store, folder, config, canonical_record)

    def __call__(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add history features to instances that lack them (and record those transactions)."""
        enriched = []
        for instance in instances:
            if all(instance.get(name) is not None for name in HISTORY_FEATURES):
                enriched.append(instance)
                continue
            transaction = self._canonical_record(instance, self.config)
            features = self.store.enrich(transaction)
            enriched.append({**instance, **{name: features[name] for name in HISTORY_FEATURES}})
        return enriched

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store.to_parquet(self.folder / STATE_FILE)
        return self.folder / STATE_FILE
