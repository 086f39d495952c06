"""What the server knows about users between requests: their recent history, everything they have
seen (to exclude it) and their features, read from the tables the last training run stored.

A TF-Serving ``:predict`` request may then name only the user (``{"user_id": "u42"}``); fields the
request brings itself always win, so a client that tracks sessions can send a fresher history.

A request asks for recommendations; it is not an interaction, so ``record`` keeps the store as the
training run left it (the next training run brings the new interactions in).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd

from recommendation.config import RecommendationConfig
from recommendation.data import INTERACTIONS, ITEMS, USERS
from solutions_core.solution import FeatureStore

APP = "recommendation"


class OnlineStore(FeatureStore):
    """Users' histories (item ids, oldest first), their features and the item catalog, by id."""

    def __init__(self, histories: dict[str, list[str]], features: pd.DataFrame, items: pd.DataFrame, config: RecommendationConfig):
        self.histories = histories
        self.features = features  # indexed by user_id
        self.items = items  # indexed by item_id
        self.config = config
        self.lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, config: RecommendationConfig) -> "OnlineStore":
        folder = Path(data_dir) / APP
        histories: dict[str, list[str]] = {}
        columns = list(config.columns.user_categorical)
        features = pd.DataFrame(columns=columns, index=pd.Index([], name="user_id"))
        items = pd.DataFrame(index=pd.Index([], name="item_id"))
        if (folder / f"{INTERACTIONS}.parquet").exists():
            log = pd.read_parquet(folder / f"{INTERACTIONS}.parquet")
            # A log without timestamps keeps its stored order (there is no other).
            order = ["user_id", "timestamp"] if "timestamp" in log.columns else ["user_id"]
            log = log.astype({"user_id": str, "item_id": str}).sort_values(order, kind="stable")
            histories = log.groupby("user_id", sort=False)["item_id"].agg(list).to_dict()
        if (folder / f"{USERS}.parquet").exists():
            users = pd.read_parquet(folder / f"{USERS}.parquet")
            present = [c for c in columns if c in users.columns]
            features = users.astype({"user_id": str}).drop_duplicates("user_id").set_index("user_id")[present]
        if (folder / f"{ITEMS}.parquet").exists():
            table = pd.read_parquet(folder / f"{ITEMS}.parquet")
            items = table.astype({"item_id": str}).drop_duplicates("item_id").set_index("item_id")
        return cls(histories, features, items, config)

    def lookup(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each instance with the history, exclusions and user features it left out (None or absent)
        filled from the store: new dicts, neither the instances nor the store change."""
        length = self.config.towers.history_length
        enriched = []
        for instance in instances:
            user = str(instance.get("user_id", ""))
            with self.lock:
                seen = list(self.histories.get(user, ()))
            filled = dict(instance)
            if filled.get("history") is None:
                filled["history"] = " ".join(seen[-length:])
            if filled.get("exclude") is None:
                filled["exclude"] = " ".join(seen)
            for column in self.config.columns.user_categorical:
                if filled.get(column) is None:
                    value = self.features[column].get(user) if column in self.features.columns else None
                    filled[column] = "" if value is None or pd.isna(value) else str(value)
            enriched.append(filled)
        return enriched

    def details(self, item_ids: list[str]) -> list[dict[str, Any]]:
        """Catalog fields of each item (JSON-ready), {} for ids the store does not know."""
        out = []
        for item in item_ids:
            if item in self.items.index:
                row = self.items.loc[item]
                out.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if not pd.isna(v)})
            else:
                out.append({})
        return out

    def seen(self, user_id: str) -> list[str]:
        with self.lock:
            return list(self.histories.get(str(user_id), ()))
