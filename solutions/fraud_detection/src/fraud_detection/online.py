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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_detection.history import FEW_ROWS, HISTORY_FEATURES, OnlineHistoryStore, transactions_from_columns
from solutions_core.solution import FeatureStore

STATE_FILE = "online_history.parquet"
IDS_FILE = "online_history_ids.parquet"
TABLE_FILE = "fraud_transactions.parquet"
REMEMBERED_IDS = 1_000_000  # recent transaction ids kept to make retries idempotent (~100 MB at most)
_HISTORY = frozenset(HISTORY_FEATURES)


class CardHistoryStore(FeatureStore):
    def __init__(self, store: OnlineHistoryStore, folder: Path, fields: Mapping[str, str | None]):
        self.store = store  # it locks itself: it is thread-safe
        self.folder = folder
        self.fields = dict(fields)  # history.py's names -> the client's request fields (None: not in the data)
        self._recorded_ids: OrderedDict[str, None] = OrderedDict()  # oldest first
        self._ids_lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path, canonical: Callable[[pd.DataFrame], pd.DataFrame], fields: Mapping[str, str | None]) -> "CardHistoryStore":
        """Resume the persisted state, else replay the stored transactions, else start empty."""
        folder = Path(folder)
        if (folder / STATE_FILE).exists():
            store = OnlineHistoryStore.from_parquet(folder / STATE_FILE)
        elif (folder / TABLE_FILE).exists():
            store = OnlineHistoryStore.from_frame(canonical(pd.read_parquet(folder / TABLE_FILE)))
        else:
            store = OnlineHistoryStore()
        opened = cls(store, folder, fields)
        if (folder / IDS_FILE).exists():
            opened._recorded_ids = OrderedDict.fromkeys(pd.read_parquet(folder / IDS_FILE)["transaction_id"].astype(str))
        return opened

    def _needing_history(self, instances: list[dict[str, Any]]) -> list[int]:
        """Positions of the instances that do not bring every history feature themselves."""
        if all(_HISTORY.isdisjoint(instance) for instance in instances):
            return list(range(len(instances)))  # the usual request: raw transactions only
        return [i for i, instance in enumerate(instances) if any(instance.get(name) is None for name in HISTORY_FEATURES)]

    def _transactions(self, instances: list[dict[str, Any]]) -> list[Any]:
        columns = {name: [instance.get(field) for instance in instances] if field else [None] * len(instances) for name, field in self.fields.items() if name != "transaction_id"}
        return transactions_from_columns(columns)

    def lookup_columns(self, instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The history features of every instance as columns: the card's, as of each transaction,
        for those that lack them (earlier transactions of the same request count, exactly as
        offline), their own for the others. The table is left unchanged."""
        needing = self._needing_history(instances)
        if not needing:
            return {}
        selected = instances if len(needing) == len(instances) else [instances[i] for i in needing]
        if len(instances) <= FEW_ROWS:  # one transaction per request, the usual call: plain lists are cheaper
            rows = iter(self.store.feature_rows(self._transactions(selected)))
            filled = [next(rows) if i in needing else tuple(instances[i].get(name) for name in HISTORY_FEATURES) for i in range(len(instances))]
            return {name: [float(row[j]) for row in filled] for j, name in enumerate(HISTORY_FEATURES)}
        values = self.store.features_many(self._transactions(selected))
        if len(needing) == len(instances):
            return {name: values[:, j] for j, name in enumerate(HISTORY_FEATURES)}
        columns = {name: np.array([instance.get(name) for instance in instances], dtype=object) for name in HISTORY_FEATURES}
        for j, name in enumerate(HISTORY_FEATURES):
            columns[name][needing] = values[:, j]
        return {name: column.astype(np.float64) for name, column in columns.items()}

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``lookup_columns`` as instances: each with its history features filled in."""
        columns = self.lookup_columns(instances)
        if not columns:
            return instances
        rows = np.column_stack([columns[name] for name in HISTORY_FEATURES]).tolist()
        return [{**instance, **dict(zip(HISTORY_FEATURES, row, strict=True))} for instance, row in zip(instances, rows, strict=True)]

    def record(self, instances: list[dict[str, Any]]) -> None:
        """Add answered transactions to their cards' history, each transaction id once."""
        instances = [instances[i] for i in self._needing_history(instances)]
        identifier = self.fields.get("transaction_id")
        if identifier and instances:
            fresh = []
            with self._ids_lock:
                for instance in instances:
                    key = instance.get(identifier)
                    if key is not None:
                        key = str(key)
                        if key in self._recorded_ids:
                            continue  # a retry of an answered transaction
                        self._recorded_ids[key] = None
                    fresh.append(instance)
                while len(self._recorded_ids) > REMEMBERED_IDS:
                    self._recorded_ids.popitem(last=False)
            instances = fresh
        if instances:
            self.store.update_many(self._transactions(instances))

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
