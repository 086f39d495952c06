"""Card history at serving time.

A REST request carries one transaction, but the model also needs the card's recent history. The server
keeps an online feature table — ``history.OnlineHistoryStore``, per-card state for the last 30 days —
warmed from the transactions in the embedded store and persisted as Parquet beside them. ``lookup``
gives each request that does not bring its own history features the card's features as of that
transaction (earlier transactions of the same request count, exactly as offline); ``record`` adds the
answered transactions to the table, so the next transaction of the same card sees them.

Only answered requests are recorded, each transaction id once (a client's retry is not a second
purchase). When the server loads a new version the live table is carried over (``carry_over``), and
``save`` persists it with the recorded ids, so neither a hot reload nor a restart forgets a purchase.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_detection.history import HISTORY_FEATURES, OnlineHistoryStore
from solutions_core.solution import FeatureStore

STATE_FILE = "online_history.parquet"
IDS_FILE = "online_history_ids.parquet"
TABLE_FILE = "fraud_transactions.parquet"
REMEMBERED_IDS = 1_000_000  # recent transaction ids kept to make retries idempotent (~100 MB at most)


class CardHistoryStore(FeatureStore):
    def __init__(self, store: OnlineHistoryStore, folder: Path, canonical_record: Callable[[dict[str, Any]], dict[str, Any]]):
        self.store = store  # it locks itself: it is thread-safe
        self.folder = folder
        self._canonical_record = canonical_record
        self._recorded_ids: OrderedDict[str, None] = OrderedDict()  # oldest first
        self._ids_lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path, canonical: Callable[[pd.DataFrame], pd.DataFrame], canonical_record: Callable[[dict], dict]) -> "CardHistoryStore":
        """Resume the persisted state, else replay the stored transactions, else start empty."""
        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            store = OnlineHistoryStore.from_parquet(folder / STATE_FILE)
        elif (folder / TABLE_FILE).exists():
            store = OnlineHistoryStore.from_frame(canonical(pd.read_parquet(folder / TABLE_FILE)))
        else:
            store = OnlineHistoryStore()
        opened = cls(store, folder, canonical_record)
        if (folder / IDS_FILE).exists():
            opened._recorded_ids = OrderedDict.fromkeys(pd.read_parquet(folder / IDS_FILE)["transaction_id"].astype(str))
        return opened

    @staticmethod
    def needs_history(instance: dict[str, Any]) -> bool:
        return any(instance.get(name) is None for name in HISTORY_FEATURES)

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """History features for the instances that lack them, as of each transaction; the table is
        left unchanged. When a card appears twice in a request, a scratch copy of its state records
        the earlier transaction, so the later one counts it, as offline."""
        transactions = {index: self._canonical_record(instance) for index, instance in enumerate(instances) if self.needs_history(instance)}
        if not transactions:
            return instances
        cards = [str(t["card_id"]) for t in transactions.values() if t["card_id"] is not None]
        if len(set(cards)) == len(transactions):
            # No card twice in the request (the common case, one transaction): the table answers as
            # it stands, without copying any card's state.
            history = self.store.features
        else:
            history = self.store.scratch(set(cards)).enrich  # records into the copy as it goes
        enriched = []
        for index, instance in enumerate(instances):
            if index in transactions:
                features = history(transactions[index])
                instance = {**instance, **{name: features[name] for name in HISTORY_FEATURES}}
            enriched.append(instance)
        return enriched

    def record(self, instances: list[dict[str, Any]]) -> None:
        for instance in instances:
            if not self.needs_history(instance):
                continue
            transaction = self._canonical_record(instance)
            identifier = transaction.get("transaction_id")
            if identifier is not None:
                with self._ids_lock:
                    if str(identifier) in self._recorded_ids:
                        continue  # a retry of an answered transaction
                    self._recorded_ids[str(identifier)] = None
                    if len(self._recorded_ids) > REMEMBERED_IDS:
                        self._recorded_ids.popitem(last=False)
            self.store.update(transaction)

    def carry_over(self, previous: FeatureStore) -> None:
        if isinstance(previous, CardHistoryStore):
            self.store = previous.store
            with previous._ids_lock:
                self._recorded_ids = previous._recorded_ids
            self._ids_lock = previous._ids_lock

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store.to_parquet(self.folder / STATE_FILE)
        with self._ids_lock:
            ids = list(self._recorded_ids)
        pd.DataFrame({"transaction_id": ids}).to_parquet(self.folder / IDS_FILE)
