"""Card-history features, computed identically offline (a whole table) and online (one transaction).

Most fraud is only visible against the card's own past: a burst of charges, a purchase far from the last
one, a ticket ten times the usual, a device never seen on the card. These features capture that.

Definition, shared by both paths: a transaction's features use only that card's *strictly earlier*
transactions, i.e. the rows before it when the table is sorted by timestamp, then transaction_id (when
present), then input position. A row with the same timestamp but earlier in that order counts as prior;
the row itself and its label never do. Windows are ``(t - window, t]`` over prior rows: a prior row
exactly one window old is out.

* :func:`add_history_features` computes them for a table at once (training, batch scoring).
Missing merchant coordinates give a distance of 0.0 (no evidence of a move) on both paths.

* :class:`OnlineHistoryStore` keeps a bounded per-card state and computes them for one incoming
  transaction (serving). Replaying a table through it in order gives the same values as the offline path.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "HISTORY_FEATURES",
    "NO_HISTORY_SECONDS",
    "REQUIRED_COLUMNS",
    "OnlineHistoryStore",
    "add_history_features",
    "haversine_km",
]

HISTORY_FEATURES: tuple[str, ...] = (
    "card_txn_count_1h",
    "card_txn_count_24h",
    "card_txn_count_7d",
    "card_amount_sum_24h",
    "card_amount_mean_30d",
    "amount_to_card_mean_30d",
    "seconds_since_last_txn",
    "distance_from_last_km",
    "new_device_for_card",
    "card_history_days",
)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "card_id",
    "amount",
    "device_id",
    "merchant_lat",
    "merchant_lon",
)

NO_HISTORY_SECONDS = 2_592_000.0  # 30 days: "no previous transaction" and the cap of seconds_since_last_txn
MAX_HISTORY_DAYS = 365.0  # card_history_days is capped: a card a year old is simply "established"

_NS_PER_SECOND = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_SECOND
_HOUR_NS = 3_600 * _NS_PER_SECOND
_COUNT_WINDOWS_NS = {
    "card_txn_count_1h": _HOUR_NS,
    "card_txn_count_24h": _NS_PER_DAY,
    "card_txn_count_7d": 7 * _NS_PER_DAY,
}
_DAY_WINDOW_NS = _NS_PER_DAY
_MONTH_WINDOW_NS = 30 * _NS_PER_DAY  # the longest window: what the online store must remember
_EARTH_RADIUS_KM = 6_371.0088


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km; works on floats and numpy arrays (one formula for both paths)."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    half_dphi = (phi2 - phi1) / 2.0
    half_dlambda = np.radians(np.asarray(lon2) - np.asarray(lon1)) / 2.0
    h = np.sin(half_dphi) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(half_dlambda) ** 2
    return 2.0 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


# --------------------------------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------------------------------


def add_history_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with the ``HISTORY_FEATURES`` columns (float64) added.

    Rows keep their input order and index; the input need not be sorted. Vectorized: grouping by card
    is one sort, window starts are one ``searchsorted`` per window.
    """
    _require_columns(frame, REQUIRED_COLUMNS, "add_history_features")
    result = frame.copy()
    if len(frame) == 0:
        for name in HISTORY_FEATURES:
            result[name] = pd.Series(dtype=np.float64, index=frame.index)
        return result

    columns = _columns_as_arrays(frame)
    order = _card_chronological_order(frame, columns)
    card = columns.card_codes[order]
    times = columns.times_ns[order]
    amount = columns.amount[order]
    lat, lon = columns.lat[order], columns.lon[order]
    device = columns.devices[order]

    n_rows = len(order)
    row = np.arange(n_rows)
    first_of_card = np.ones(n_rows, dtype=bool)
    first_of_card[1:] = card[1:] != card[:-1]
    card_start = np.maximum.accumulate(np.where(first_of_card, row, 0))
    has_previous = ~first_of_card
    previous = np.maximum(row - 1, 0)

    prefix_amount = np.concatenate([[0.0], np.cumsum(amount)])
    windows = [*_COUNT_WINDOWS_NS.values(), _DAY_WINDOW_NS, _MONTH_WINDOW_NS]
    window_start = _window_starts(card, times, windows)
    features: dict[str, np.ndarray] = {}
    for name, start in zip(_COUNT_WINDOWS_NS, window_start[:3], strict=True):
        features[name] = (row - start).astype(np.float64)
    day_start, month_start = window_start[3], window_start[4]
    features["card_amount_sum_24h"] = prefix_amount[row] - prefix_amount[day_start]
    month_count = row - month_start
    month_sum = prefix_amount[row] - prefix_amount[month_start]
    month_mean = np.divide(month_sum, month_count, out=np.zeros(n_rows), where=month_count > 0)
    features["card_amount_mean_30d"] = month_mean
    features["amount_to_card_mean_30d"] = np.divide(
        amount, month_mean, out=np.ones(n_rows), where=month_mean > 0
    )

    gap_seconds = (times - times[previous]) / _NS_PER_SECOND
    features["seconds_since_last_txn"] = np.where(
        has_previous, np.clip(gap_seconds, 0.0, NO_HISTORY_SECONDS), NO_HISTORY_SECONDS
    )
    distance = haversine_km(lat[previous], lon[previous], lat, lon)
    features["distance_from_last_km"] = np.where(has_previous & np.isfinite(distance), distance, 0.0)

    has_device = pd.notna(device)
    seen_before = pd.DataFrame({"card": card, "device": device}).duplicated().to_numpy()
    features["new_device_for_card"] = (has_device & ~seen_before).astype(np.float64)

    history_days = (times - times[card_start]) / _NS_PER_DAY
    features["card_history_days"] = np.where(has_previous, np.clip(history_days, 0.0, MAX_HISTORY_DAYS), 0.0)

    for name in HISTORY_FEATURES:
        values = np.empty(n_rows, dtype=np.float64)
        values[order] = features[name]
        result[name] = values
    return result


@dataclass
class _ColumnArrays:
    times_ns: np.ndarray  # int64 nanoseconds, naive (UTC when the input was timezone-aware)
    card_keys: np.ndarray  # card ids as str, the key used by the online store too
    card_codes: np.ndarray  # dense integer codes of card_keys
    amount: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    devices: np.ndarray  # object array of str, None where there is no device


def _columns_as_arrays(frame: pd.DataFrame) -> _ColumnArrays:
    if frame["card_id"].isna().any():
        missing = int(frame["card_id"].isna().sum())
        raise ValueError(f"card_id has {missing} missing values; every row needs a card")
    card_keys = frame["card_id"].astype(str).to_numpy(dtype=object)
    card_codes, _ = pd.factorize(card_keys)
    try:
        amount = frame["amount"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"amount must be numeric, got dtype {frame['amount'].dtype}") from error
    return _ColumnArrays(
        times_ns=_timestamps_to_ns(frame["timestamp"]),
        card_keys=card_keys,
        card_codes=card_codes.astype(np.int64),
        amount=amount,
        lat=pd.to_numeric(frame["merchant_lat"], errors="raise").to_numpy(dtype=np.float64),
        lon=pd.to_numeric(frame["merchant_lon"], errors="raise").to_numpy(dtype=np.float64),
        devices=np.array([_device_key(value) for value in frame["device_id"].tolist()], dtype=object),
    )


def _card_chronological_order(frame: pd.DataFrame, columns: _ColumnArrays) -> np.ndarray:
    """Row positions sorted by card, then timestamp, then transaction_id (if any), then input position."""
    position = np.arange(len(frame))
    if "transaction_id" in frame.columns:
        id_rank, _ = pd.factorize(frame["transaction_id"].astype(str).to_numpy(), sort=True)
    else:
        id_rank = np.zeros(len(frame))
    return np.lexsort((position, id_rank, columns.times_ns, columns.card_codes))


def _window_starts(card: np.ndarray, times: np.ndarray, windows_ns: list[int]) -> list[np.ndarray]:
    """For each window and row, the index of the card's first row with time > t - window.

    Rows are sorted by (card, time). Times and window starts are replaced by their ranks among all those
    values so that ``card * n_ranks + rank`` is an exact, overflow-free sort key across cards.
    """
    queries = [times - window for window in windows_ns]
    distinct, inverse = np.unique(np.concatenate([times, *queries]), return_inverse=True)
    n_ranks = len(distinct)
    ranks = inverse.reshape(len(windows_ns) + 1, len(times))
    data_key = card * n_ranks + ranks[0]
    return [np.searchsorted(data_key, card * n_ranks + query_rank, side="right") for query_rank in ranks[1:]]


def _timestamps_to_ns(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        parsed = pd.to_datetime(values, unit="s")  # epoch seconds, as the online path accepts
    else:
        try:
            parsed = pd.to_datetime(values)
        except (ValueError, TypeError) as error:
            raise ValueError(f"timestamp could not be parsed as datetimes: {error}") from error
    if parsed.isna().any():
        raise ValueError(f"timestamp has {int(parsed.isna().sum())} missing or unparseable values")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]").to_numpy().view(np.int64)


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], caller: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{caller} expects a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{caller} needs columns {list(required)}; missing {missing} "
            f"(columns present: {list(frame.columns)})"
        )


def _device_key(value: Any) -> str | None:
    """Devices are compared as strings; None/NaN mean no device (a card-present purchase)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


# --------------------------------------------------------------------------------------------------
# Online
# --------------------------------------------------------------------------------------------------


@dataclass
class _CardState:
    """What one card's future features need: its last 30 days, first and last purchase, its devices."""

    first_seen_ns: int
    last_time_ns: int
    last_lat: float
    last_lon: float
    window_times_ns: list[int] = field(default_factory=list)  # sorted
    window_amounts: list[float] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)


class _Transaction(NamedTuple):  # a tuple: a request's 256 are built in a tenth of a dataclass's time
    time_ns: int
    card: str
    amount: float
    device: str | None
    lat: float
    lon: float


_TRANSACTION_KEYS = ("timestamp", "card_id", "amount", "device_id", "merchant_lat", "merchant_lon")
_STATE_FORMAT_VERSION = "1"


class OnlineHistoryStore:
    """Per-card state for computing history features one transaction at a time, as the server does.

    ``features`` reads, ``update`` records, ``enrich`` does both atomically. All methods take a lock, so
    REST worker threads can share one store. Memory is bounded per card: only the transactions inside
    ``max_window`` are kept, plus the card's first-seen time, last transaction and set of devices.
    Transactions are expected to arrive roughly in time order; a late one is recorded in place, and a
    transaction is never treated as prior to one that happened before it.
    """

    def __init__(self, max_window: pd.Timedelta = pd.Timedelta(days=30)) -> None:
        max_window = pd.Timedelta(max_window)
        if max_window.value < _MONTH_WINDOW_NS:
            raise ValueError(
                f"max_window must be at least 30 days (the longest feature window), got {max_window}"
            )
        self.max_window = max_window
        self._max_window_ns = int(max_window.value)
        self._cards: dict[str, _CardState] = {}
        self._lock = threading.RLock()

    # --- features -----------------------------------------------------------------------------------

    def features(self, txn: Mapping[str, Any]) -> dict[str, float]:
        """History features of ``txn`` given everything recorded so far; the state is not changed."""
        parsed = _parse_transaction(txn)
        with self._lock:
            return self._features(parsed)

    def update(self, txn: Mapping[str, Any]) -> None:
        """Record ``txn`` as part of its card's history."""
        parsed = _parse_transaction(txn)
        with self._lock:
            self._update(parsed)

    def enrich(self, txn: Mapping[str, Any], *, record: bool = True) -> dict[str, Any]:
        """``txn`` plus its history features; records it too unless ``record`` is False."""
        parsed = _parse_transaction(txn)
        with self._lock:
            features = self._features(parsed)
            if record:
                self._update(parsed)
        return {**txn, **features}

    def features_many(self, transactions: list[_Transaction]) -> np.ndarray:
        """History features of many transactions (rows, in ``HISTORY_FEATURES`` order), each as of
        everything recorded so far plus the earlier transactions of the same list, exactly as
        ``enrich`` one by one would give them; the state is not changed. A card that appears more than
        once is worked on in a copy of its state, the others are read where they are."""
        return np.array(self.feature_rows(transactions), dtype=np.float64).reshape(len(transactions), len(HISTORY_FEATURES))

    def feature_rows(self, transactions: list[_Transaction]) -> list[tuple[float, ...]]:
        """``features_many`` as tuples (for a handful of transactions, cheaper than an array)."""
        cards = [txn.card for txn in transactions]
        repeated = set()
        if len(set(cards)) < len(cards):
            repeated = {card for card, count in Counter(cards).items() if count > 1}
        scratch = self.scratch(repeated) if repeated else None
        rows = []
        with self._lock:
            for txn in transactions:
                if txn.card in repeated:
                    rows.append(scratch._feature_values(txn))
                    scratch._update(txn)
                else:
                    rows.append(self._feature_values(txn))
        return rows

    def update_many(self, transactions: list[_Transaction]) -> None:
        """Record transactions, in order, under one lock."""
        with self._lock:
            for txn in transactions:
                self._update(txn)

    def _features(self, txn: _Transaction) -> dict[str, float]:
        return dict(zip(HISTORY_FEATURES, self._feature_values(txn), strict=True))

    def _feature_values(self, txn: _Transaction) -> tuple[float, ...]:
        """``HISTORY_FEATURES`` of one transaction, in that order."""
        state = self._cards.get(txn.card)
        if state is None:
            return (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, NO_HISTORY_SECONDS, 0.0, 0.0 if txn.device is None else 1.0, 0.0)
        times, amounts, time_ns = state.window_times_ns, state.window_amounts, txn.time_ns
        end = bisect.bisect_right(times, time_ns)  # later (late-arriving) entries are not prior
        hour_start = bisect.bisect_right(times, time_ns - _HOUR_NS, 0, end)
        day_start = bisect.bisect_right(times, time_ns - _NS_PER_DAY, 0, end)
        week_start = bisect.bisect_right(times, time_ns - 7 * _NS_PER_DAY, 0, end)
        month_start = bisect.bisect_right(times, time_ns - _MONTH_WINDOW_NS, 0, end)
        month_count = end - month_start
        month_mean = sum(amounts[month_start:end]) / month_count if month_count else 0.0
        gap_seconds = (time_ns - state.last_time_ns) / _NS_PER_SECOND
        history_days = (time_ns - state.first_seen_ns) / _NS_PER_DAY
        return (
            float(end - hour_start),
            float(end - day_start),
            float(end - week_start),
            float(sum(amounts[day_start:end])),
            float(month_mean),
            float(txn.amount / month_mean) if month_mean > 0 else 1.0,
            float(min(max(gap_seconds, 0.0), NO_HISTORY_SECONDS)),
            _known_distance(state.last_lat, state.last_lon, txn.lat, txn.lon),
            1.0 if txn.device is not None and txn.device not in state.devices else 0.0,
            float(min(max(history_days, 0.0), MAX_HISTORY_DAYS)),
        )

    def _update(self, txn: _Transaction) -> None:
        state = self._cards.get(txn.card)
        if state is None:
            state = _CardState(txn.time_ns, txn.time_ns, txn.lat, txn.lon)
            self._cards[txn.card] = state
        elif txn.time_ns >= state.last_time_ns:
            state.last_time_ns, state.last_lat, state.last_lon = txn.time_ns, txn.lat, txn.lon
        state.first_seen_ns = min(state.first_seen_ns, txn.time_ns)
        position = bisect.bisect_right(state.window_times_ns, txn.time_ns)
        state.window_times_ns.insert(position, txn.time_ns)
        state.window_amounts.insert(position, txn.amount)
        if txn.device is not None:
            state.devices.add(txn.device)
        self._evict_card(state, state.last_time_ns)

    def scratch(self, cards: Iterable[str]) -> "OnlineHistoryStore":
        """A new store holding copies of these cards' states: what a request may record into while
        it is looked up, leaving this store as it was."""
        copy = OnlineHistoryStore(self.max_window)
        with self._lock:
            for card in cards:
                state = self._cards.get(card)
                if state is not None:
                    copy._cards[card] = _CardState(
                        state.first_seen_ns, state.last_time_ns, state.last_lat, state.last_lon,
                        list(state.window_times_ns), list(state.window_amounts), set(state.devices),
                    )
        return copy

    # --- memory -------------------------------------------------------------------------------------

    def _evict_card(self, state: _CardState, now_ns: int) -> None:
        cut = bisect.bisect_right(state.window_times_ns, now_ns - self._max_window_ns)
        if cut:
            del state.window_times_ns[:cut]
            del state.window_amounts[:cut]

    def evict(self, now: Any = None) -> None:
        """Drop every card's transactions older than ``max_window`` before ``now`` (default: the latest
        transaction recorded). Cards evict themselves on update; this also trims cards gone quiet."""
        with self._lock:
            if now is None:
                if not self._cards:
                    return
                now_ns = max(state.last_time_ns for state in self._cards.values())
            else:
                now_ns = _timestamp_to_ns(now)
            for state in self._cards.values():
                self._evict_card(state, now_ns)

    def __len__(self) -> int:
        """Number of cards known to the store."""
        with self._lock:
            return len(self._cards)

    def stored_transaction_count(self, card_id: Any = None) -> int:
        """Transactions kept in the windows, for one card or for all (to check memory stays bounded)."""
        with self._lock:
            if card_id is not None:
                state = self._cards.get(str(card_id))
                return 0 if state is None else len(state.window_times_ns)
            return sum(len(state.window_times_ns) for state in self._cards.values())

    # --- warm start and persistence -----------------------------------------------------------------

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, max_window: pd.Timedelta = pd.Timedelta(days=30)
    ) -> OnlineHistoryStore:
        """A store in the state it would have after recording every row of ``frame`` in time order.

        The frame is sorted like the offline path (it need not be sorted on input); each card's state is
        then built from slices, which is far faster than replaying row by row.
        """
        _require_columns(frame, REQUIRED_COLUMNS, "OnlineHistoryStore.from_frame")
        store = cls(max_window)
        if len(frame) == 0:
            return store
        columns = _columns_as_arrays(frame)
        order = _card_chronological_order(frame, columns)
        card = columns.card_codes[order]
        times = columns.times_ns[order]
        amounts = columns.amount[order]
        devices = columns.devices[order]
        starts = np.flatnonzero(np.concatenate([[True], card[1:] != card[:-1]]))
        ends = np.append(starts[1:], len(order))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            last = end - 1
            window_start = start + int(
                np.searchsorted(times[start:end], times[last] - store._max_window_ns, side="right")
            )
            last_row = order[last]
            store._cards[columns.card_keys[last_row]] = _CardState(
                first_seen_ns=int(times[start]),
                last_time_ns=int(times[last]),
                last_lat=float(columns.lat[last_row]),
                last_lon=float(columns.lon[last_row]),
                window_times_ns=times[window_start:end].tolist(),
                window_amounts=amounts[window_start:end].tolist(),
                devices={device for device in devices[start:end].tolist() if device is not None},
            )
        return store

    def to_parquet(self, path: str | Path) -> None:
        """Save the state (one row per card) so a restarted server continues where it left off."""
        with self._lock:
            cards = sorted(self._cards.items())
            table = pa.table(
                {
                    "card_id": pa.array([card for card, _ in cards], pa.string()),
                    "first_seen_ns": pa.array([s.first_seen_ns for _, s in cards], pa.int64()),
                    "last_time_ns": pa.array([s.last_time_ns for _, s in cards], pa.int64()),
                    "last_lat": pa.array([s.last_lat for _, s in cards], pa.float64()),
                    "last_lon": pa.array([s.last_lon for _, s in cards], pa.float64()),
                    "window_times_ns": pa.array([s.window_times_ns for _, s in cards], pa.list_(pa.int64())),
                    "window_amounts": pa.array([s.window_amounts for _, s in cards], pa.list_(pa.float64())),
                    "devices": pa.array([sorted(s.devices) for _, s in cards], pa.list_(pa.string())),
                }
            )
        metadata = {
            b"fraud_detection.history.format_version": _STATE_FORMAT_VERSION.encode(),
            b"fraud_detection.history.max_window_ns": str(self._max_window_ns).encode(),
        }
        pq.write_table(table.replace_schema_metadata(metadata), str(path))

    @classmethod
    def from_parquet(cls, path: str | Path) -> OnlineHistoryStore:
        """Load a state written by :meth:`to_parquet`."""
        table = pq.read_table(str(path))
        metadata = table.schema.metadata or {}
        version = metadata.get(b"fraud_detection.history.format_version", b"").decode()
        if version != _STATE_FORMAT_VERSION:
            raise ValueError(
                f"{path} is not an OnlineHistoryStore state (format version {version!r}, "
                f"expected {_STATE_FORMAT_VERSION!r}); write it with OnlineHistoryStore.to_parquet"
            )
        store = cls(pd.Timedelta(int(metadata[b"fraud_detection.history.max_window_ns"]), unit="ns"))
        columns = table.to_pydict()
        for index, card in enumerate(columns["card_id"]):
            store._cards[card] = _CardState(
                first_seen_ns=columns["first_seen_ns"][index],
                last_time_ns=columns["last_time_ns"][index],
                last_lat=columns["last_lat"][index],
                last_lon=columns["last_lon"][index],
                window_times_ns=list(columns["window_times_ns"][index]),
                window_amounts=list(columns["window_amounts"][index]),
                devices=set(columns["devices"][index]),
            )
        return store


def _known_distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """``haversine_km`` for one pair, in ``math`` (numpy's per-call overhead on scalars was a tenth of
    a served request's CPU); 0 when either point is unknown, as offline."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((phi2 - phi1) / 2.0) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2.0) ** 2
    distance = 2.0 * _EARTH_RADIUS_KM * math.asin(math.sqrt(min(h, 1.0))) if h == h else math.nan
    return distance if math.isfinite(distance) else 0.0


def _parse_transaction(txn: Mapping[str, Any]) -> _Transaction:
    if not isinstance(txn, Mapping):
        raise ValueError(f"a transaction must be a mapping of field to value, got {type(txn).__name__}")
    missing = [key for key in _TRANSACTION_KEYS if key not in txn and key != "device_id"]
    if missing:
        raise ValueError(
            f"transaction is missing {missing}; history features need {list(_TRANSACTION_KEYS)}"
        )
    if txn["card_id"] is None:
        raise ValueError("transaction card_id is None; every transaction needs a card")
    try:
        amount = float(txn["amount"])
        lat, lon = (
            np.nan if txn[key] is None else float(txn[key]) for key in ("merchant_lat", "merchant_lon")
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"amount, merchant_lat and merchant_lon must be numbers: {error}") from error
    return _Transaction(
        time_ns=_timestamp_to_ns(txn["timestamp"]),
        card=str(txn["card_id"]),
        amount=amount,
        device=_device_key(txn.get("device_id")),
        lat=lat,
        lon=lon,
    )


def transactions_from_columns(columns: Mapping[str, Sequence[Any]]) -> list[_Transaction]:
    """Many transactions given as columns (``_TRANSACTION_KEYS``; ``device_id`` may be absent) at
    once: the serving path for large requests, with numpy doing the numbers and the timestamps. Any
    value the fast path cannot take is parsed on its own, so errors read as ``_parse_transaction``'s."""
    count = len(columns["card_id"])
    if count <= FEW_ROWS:  # numpy's per-call cost outweighs its speed on a handful of rows
        return _one_by_one(columns)
    times, cards, amounts = columns["timestamp"], columns["card_id"], columns["amount"]
    lats, lons = columns["merchant_lat"], columns["merchant_lon"]
    devices = columns.get("device_id") or [None] * count
    try:
        if not all(type(t) is str and _NAIVE_ISO_TIME.match(t) for t in times):
            raise ValueError("not all naive ISO strings")
        time_ns = np.array(times, dtype="datetime64[ns]").view(np.int64).tolist()
        if None in cards:
            raise ValueError("a missing card")
        amount = np.array(amounts, dtype=np.float64).tolist()  # None -> a TypeError, "x" -> a ValueError
        lat = np.array([np.nan if v is None else v for v in lats], dtype=np.float64).tolist()
        lon = np.array([np.nan if v is None else v for v in lons], dtype=np.float64).tolist()
    except (TypeError, ValueError):
        return _one_by_one(columns)
    card_keys = [c if type(c) is str else str(c) for c in cards]
    device_keys = [d if type(d) is str or d is None else _device_key(d) for d in devices]
    return list(map(_Transaction, time_ns, card_keys, amount, device_keys, lat, lon))


FEW_ROWS = 8  # up to this many transactions, plain Python beats numpy's per-call cost (lookups too)


def _one_by_one(columns: Mapping[str, Sequence[Any]]) -> list[_Transaction]:
    keys = [key for key in _TRANSACTION_KEYS if key in columns]
    return [_parse_transaction(dict(zip(keys, row, strict=True))) for row in zip(*(columns[key] for key in keys), strict=True)]


_NAIVE_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _timestamp_to_ns(value: Any) -> int:
    """Timestamps, datetimes, ISO strings and epoch seconds, as naive nanoseconds (UTC if tz-aware)."""
    if type(value) is str and _NAIVE_ISO_TIME.match(value):
        # The serving hot path: a naive ISO string read as pandas reads it, ~10x faster.
        return (datetime.fromisoformat(value) - _EPOCH) // _MICROSECOND * 1000
    try:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            timestamp = pd.Timestamp(value, unit="s")
        elif isinstance(value, (str, datetime, np.datetime64, pd.Timestamp)):
            timestamp = pd.Timestamp(value)
        else:
            raise TypeError(f"unsupported type {type(value).__name__}")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"timestamp {value!r} is not a datetime, ISO string or epoch seconds: {error}"
        ) from error
    if pd.isna(timestamp):
        raise ValueError("timestamp is missing (NaT)")
    if timestamp.tzinfo is not None:
        timestamp = timestamp.tz_convert("UTC").tz_localize(None)
    return int(timestamp.as_unit("ns").value)
