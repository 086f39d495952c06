"""Card history at serving time.

A REST request carries one transaction, but the model also needs the card's recent history. The server
keeps an online feature table — ``history.OnlineHistoryStore``, per-card state for the last 30 days —
warmed from the transactions in the embedded store and persisted as Parquet beside them. Each request
that does not bring its own history features is enriched from that table and then recorded in it, so
the next transaction of the same card sees it (exactly as the offline features would).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_detection.config import FraudConfig
from fraud_detection.history import HISTORY_FEATURES, OnlineHistoryStore

STATE_FILE = "online_history.parquet"
TABLE_FILE = "fraud_transactions.parquet"


class OnlineFeatures:
    def __init__(self, store: OnlineHistoryStore, folder: Path, config: FraudConfig, canonical: Callable[..., pd.DataFrame]):
        self.store = store
        self.folder = folder
        self.config = config
        self._canonical = canonical
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path, config: FraudConfig, canonical: Callable[..., pd.DataFrame]) -> "OnlineFeatures":
        """Resume the persisted state, else replay the stored transactions, else start empty."""
        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            store = OnlineHistoryStore.from_parquet(folder / STATE_FILE)
        elif (folder / TABLE_FILE).exists():
            frame = pd.read_parquet(folder / TABLE_FILE)
            store = OnlineHistoryStore.from_frame(canonical(frame, config))
        else:
            store = OnlineHistoryStore()
        return cls(store, folder, config, canonical)

    def __call__(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add history features to instances that lack them (and record those transactions)."""
        enriched = []
        for instance in instances:
            if all(instance.get(name) is not None for name in HISTORY_FEATURES):
                enriched.append(instance)
                continue
            canonical = self._canonical(pd.DataFrame([instance]), self.config).iloc[0].to_dict()
            with self._lock:
                features = self.store.enrich(canonical)
            enriched.append({**instance, **{name: features[name] for name in HISTORY_FEATURES}})
        return enriched

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.store.to_parquet(self.folder / STATE_FILE)
        return self.folder / STATE_FILE
