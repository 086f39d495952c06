"""Synthetic card-transaction generator: the fraud app's embedded default data.

The data is built to behave like a real issuer feed, so the app's features and models are exercised the
way they would be in production:

* Card holders have a home location (around a few dozen US cities), a spending habit (a lognormal amount
  scale), typical active hours, a preferred channel mix, preferred merchant categories and one or two
  devices. Some open their card mid-period, travel for a few days, or switch to a new phone.
* Merchants have a category (each with its own amount distribution and online share), a location and a
  latent risk level that only fraudsters care about.
* Legitimate activity is a Poisson process per card; a small share of it is quick repeat purchases, so
  high velocity alone is not proof of fraud.
* Fraud comes in three patterns, each visible mostly through the card's history rather than the single
  row: card-testing bursts, account takeover, and compromised merchants (the breach itself is
  legitimate-looking; the fraud follows days later on the exposed cards).
* The period drifts: prices inflate a few percent and card testing grows at the expense of account
  takeover, so a time split is harder than a random one, as in real life.

Everything is driven by one seeded ``numpy.random.Generator``: the same arguments give the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["CHANNELS", "COLUMNS", "MERCHANT_CATEGORIES", "generate_transactions"]

COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "timestamp",
    "card_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "channel",
    "device_id",
    "merchant_lat",
    "merchant_lon",
    "home_lat",
    "home_lon",
    "is_fraud",
)

CHANNELS: tuple[str, ...] = ("card_present", "online", "contactless")
CARD_PRESENT, ONLINE, CONTACTLESS = 0, 1, 2

SECONDS_PER_DAY = 86_400
MAX_AMOUNT = 50_000.0


@dataclass(frozen=True)
class _CategoryProfile:
    popularity: float  # share of legitimate spend events
    median_amount: float  # typical ticket before the card's own habit is applied
    amount_sigma: float  # lognormal spread of the ticket
    online_share: float  # probability that a purchase in this category is online


_CATEGORY_PROFILES: dict[str, _CategoryProfile] = {
    "grocery": _CategoryProfile(0.22, 45.0, 0.60, 0.08),
    "restaurant": _CategoryProfile(0.17, 32.0, 0.60, 0.12),
    "fuel": _CategoryProfile(0.11, 48.0, 0.35, 0.0),
    "online_retail": _CategoryProfile(0.14, 55.0, 0.90, 1.0),
    "electronics": _CategoryProfile(0.03, 220.0, 0.90, 0.50),
    "travel": _CategoryProfile(0.03, 380.0, 0.80, 0.70),
    "entertainment": _CategoryProfile(0.08, 38.0, 0.70, 0.50),
    "health": _CategoryProfile(0.06, 65.0, 0.80, 0.15),
    "utilities": _CategoryProfile(0.06, 105.0, 0.50, 0.85),
    "jewelry": _CategoryProfile(0.01, 320.0, 1.00, 0.20),
    "gaming": _CategoryProfile(0.05, 22.0, 0.90, 0.95),
    "cash_advance": _CategoryProfile(0.04, 180.0, 0.70, 0.0),
}

MERCHANT_CATEGORIES: tuple[str, ...] = tuple(_CATEGORY_PROFILES)
_CATEGORY_INDEX = {name: index for index, name in enumerate(MERCHANT_CATEGORIES)}
_POPULARITY = np.array([p.popularity for p in _CATEGORY_PROFILES.values()])
_POPULARITY = _POPULARITY / _POPULARITY.sum()
_LOG_MEDIAN = np.log([p.median_amount for p in _CATEGORY_PROFILES.values()])
_AMOUNT_SIGMA = np.array([p.amount_sigma for p in _CATEGORY_PROFILES.values()])
_ONLINE_SHARE = np.array([p.online_share for p in _CATEGORY_PROFILES.values()])

# (latitude, longitude) of the cities card holders and merchants live in, biggest first.
_CITIES = np.array(
    [
        (40.71, -74.01),  # New York
        (34.05, -118.24),  # Los Angeles
        (41.88, -87.63),  # Chicago
        (29.76, -95.37),  # Houston
        (33.45, -112.07),  # Phoenix
        (39.95, -75.17),  # Philadelphia
        (29.42, -98.49),  # San Antonio
        (32.72, -117.16),  # San Diego
        (32.78, -96.80),  # Dallas
        (37.34, -121.89),  # San Jose
        (30.27, -97.74),  # Austin
        (30.33, -81.66),  # Jacksonville
        (39.96, -83.00),  # Columbus
        (35.23, -80.84),  # Charlotte
        (39.77, -86.16),  # Indianapolis
        (37.77, -122.42),  # San Francisco
        (47.61, -122.33),  # Seattle
        (39.74, -104.99),  # Denver
        (38.91, -77.04),  # Washington
        (42.36, -71.06),  # Boston
        (36.16, -86.78),  # Nashville
        (42.33, -83.05),  # Detroit
        (45.52, -122.68),  # Portland
        (36.17, -115.14),  # Las Vegas
        (35.15, -90.05),  # Memphis
        (33.75, -84.39),  # Atlanta
        (25.76, -80.19),  # Miami
        (44.98, -93.27),  # Minneapolis
        (29.95, -90.07),  # New Orleans
        (40.76, -111.89),  # Salt Lake City
        (39.10, -94.58),  # Kansas City
        (40.44, -80.00),  # Pittsburgh
    ]
)
_CITY_WEIGHTS = 1.0 / np.arange(1, len(_CITIES) + 1) ** 0.7
_CITY_WEIGHTS = _CITY_WEIGHTS / _CITY_WEIGHTS.sum()
_ONLINE_HQ_CITIES = 6  # online-first merchants are headquartered in the largest cities

# Fraud pattern mix. Card testing grows over the period while account takeover shrinks (drift);
# compromised-merchant fraud is a fixed share of the fraud rows.
_COMPROMISED_SHARE = 0.30
_CARD_TESTING_SHARE_START, _CARD_TESTING_SHARE_END = 0.35, 0.65
_LEGIT_REPEAT_SHARE = 0.03  # legitimate quick repeat purchases (retries, split payments, top-ups)
_INFLATION_OVER_PERIOD = 0.06
_MICRO_PRICE_POINTS = np.array([0.99, 1.99, 2.99, 4.99])
_MICRO_PURCHASE_SHARE = np.array(
    [
        {"gaming": 0.35, "entertainment": 0.15, "online_retail": 0.05}.get(name, 0.0)
        for name in MERCHANT_CATEGORIES
    ]
)


def generate_transactions(
    n_transactions: int = 200_000,
    *,
    n_cards: int | None = None,
    n_merchants: int | None = None,
    start: str = "2025-01-01",
    days: int = 120,
    fraud_rate: float = 0.002,
    seed: int = 0,
    inflation: float = _INFLATION_OVER_PERIOD,
) -> pd.DataFrame:
    """Return ``n_transactions`` synthetic card authorizations, sorted by timestamp then transaction_id.

    ``fraud_rate`` is the fraction of rows labelled ``is_fraud == 1`` (exact up to rounding). By default
    there is about one card per 40 transactions and one merchant per 200, so a card has a usable
    history. Columns are listed in ``COLUMNS``; ``device_id`` is None for card-present purchases.
    ``inflation`` is how much prices rise over the period (0.06: 6 %); the rest of the table does not
    depend on it, so the same arguments with a larger value give the same transactions at drifted
    prices (what the monitoring tests replay).
    """
    if n_transactions < 1:
        raise ValueError(f"n_transactions must be at least 1, got {n_transactions}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5), got {fraud_rate}")
    if not inflation > -1.0:
        raise ValueError(f"inflation must be above -1 (prices cannot fall to nothing), got {inflation}")
    n_cards = max(25, n_transactions // 40) if n_cards is None else n_cards
    n_merchants = max(50, n_transactions // 200) if n_merchants is None else n_merchants
    if n_cards < 1:
        raise ValueError(f"n_cards must be at least 1, got {n_cards}")
    if n_merchants < len(MERCHANT_CATEGORIES):
        raise ValueError(
            f"n_merchants must be at least {len(MERCHANT_CATEGORIES)} (one per category), got {n_merchants}"
        )
    try:
        start_time = pd.Timestamp(start)
    except ValueError as error:
        raise ValueError(f"start must be a date such as '2025-01-01', got {start!r}") from error

    rng = np.random.default_rng(seed)
    world = _World.build(rng, n_cards=n_cards, n_merchants=n_merchants, days=days)

    n_fraud = int(round(n_transactions * fraud_rate))
    legit = _legit_transactions(rng, world, n_transactions - n_fraud)
    n_compromised = int(round(n_fraud * _COMPROMISED_SHARE))
    fraud = _concat_rows(
        [
            _compromised_merchant_fraud(rng, world, legit, n_compromised),
            _card_testing_and_takeover_fraud(rng, world, n_fraud - n_compromised),
        ]
    )
    return _assemble(world, _concat_rows([legit, fraud]), start_time, inflation)


# --------------------------------------------------------------------------------------------------
# The world: cards and merchants
# --------------------------------------------------------------------------------------------------


@dataclass
class _World:
    """Cards, merchants and the lookup tables used to pick a plausible merchant quickly."""

    days: int
    total_seconds: int
    # cards
    card_city: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    amount_scale: np.ndarray
    activity: np.ndarray
    open_fraction: np.ndarray  # when in the period the card starts transacting
    peak_hour: np.ndarray
    hour_spread: np.ndarray
    online_affinity: np.ndarray  # logit shift of the category's online share
    contactless_share: np.ndarray
    category_cdf: np.ndarray  # (n_cards, n_categories) cumulative category preferences
    first_device: np.ndarray
    second_device: np.ndarray
    second_device_from: np.ndarray  # second of the period from which the new phone is used (inf: never)
    trip_city: np.ndarray
    trip_start: np.ndarray  # seconds; trip_end <= trip_start means no trip
    trip_end: np.ndarray
    # merchants
    merchant_category: np.ndarray
    merchant_city: np.ndarray
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray
    merchant_risk_weight: np.ndarray  # how much fraudsters favour the merchant
    # lookups: merchants sorted by (city, category), by city, and by category
    by_city_category: tuple[np.ndarray, np.ndarray]
    by_city: tuple[np.ndarray, np.ndarray]
    by_category: tuple[np.ndarray, np.ndarray]
    fraud_devices: np.ndarray  # the small pool of devices fraud rings reuse across the cards they attack

    @property
    def n_cards(self) -> int:
        return len(self.card_city)

    @classmethod
    def build(cls, rng: np.random.Generator, *, n_cards: int, n_merchants: int, days: int) -> _World:
        total_seconds = days * SECONDS_PER_DAY
        n_categories = len(MERCHANT_CATEGORIES)

        card_city = rng.choice(len(_CITIES), size=n_cards, p=_CITY_WEIGHTS)
        home_lat = _CITIES[card_city, 0] + rng.normal(0.0, 0.08, n_cards)
        home_lon = _CITIES[card_city, 1] + rng.normal(0.0, 0.08, n_cards)
        open_fraction = np.where(rng.random(n_cards) < 0.15, rng.uniform(0.0, 0.8, n_cards), 0.0)
        night_owl = rng.random(n_cards) < 0.08
        peak_hour = np.where(night_owl, rng.normal(23.0, 1.5, n_cards), rng.normal(14.5, 3.0, n_cards))
        category_weights = rng.dirichlet(_POPULARITY * 25.0, size=n_cards)
        category_cdf = np.cumsum(category_weights, axis=1)
        category_cdf[:, -1] = 1.0

        # Device ids are random 40-bit numbers, so nothing in the id tells a fraudster's device apart.
        first_device = rng.integers(0, 2**40, n_cards)
        second_device = rng.integers(0, 2**40, n_cards)
        switches_phone = rng.random(n_cards) < 0.15
        second_device_from = np.where(switches_phone, rng.uniform(0, total_seconds, n_cards), np.inf)

        travels = rng.random(n_cards) < 0.20
        trip_city = rng.choice(len(_CITIES), size=n_cards, p=_CITY_WEIGHTS)
        trip_start = rng.uniform(0, total_seconds, n_cards)
        trip_end = np.where(travels, trip_start + rng.uniform(2, 8, n_cards) * SECONDS_PER_DAY, trip_start)

        # Every category gets at least one merchant; the rest follow popularity (flattened a bit so
        # rare categories still have a few merchants).
        merchant_category = np.concatenate(
            [
                np.arange(n_categories),
                rng.choice(n_categories, size=n_merchants - n_categories, p=_normalized(_POPULARITY**0.6)),
            ]
        )
        online_first = _ONLINE_SHARE[merchant_category] >= 0.8
        merchant_city = np.where(
            online_first,
            rng.integers(0, _ONLINE_HQ_CITIES, n_merchants),
            rng.choice(len(_CITIES), size=n_merchants, p=_CITY_WEIGHTS),
        )
        merchant_lat = _CITIES[merchant_city, 0] + rng.normal(0.0, 0.06, n_merchants)
        merchant_lon = _CITIES[merchant_city, 1] + rng.normal(0.0, 0.06, n_merchants)
        risky_codes = [_CATEGORY_INDEX[name] for name in ("electronics", "jewelry", "gaming", "cash_advance")]
        risky_category = np.isin(merchant_category, risky_codes)
        risk_level = rng.choice(3, size=n_merchants, p=[0.80, 0.15, 0.05]) + risky_category
        merchant_risk_weight = np.array([1.0, 3.0, 10.0, 20.0])[risk_level]

        return cls(
            days=days,
            total_seconds=total_seconds,
            card_city=card_city,
            home_lat=home_lat,
            home_lon=home_lon,
            amount_scale=rng.lognormal(0.0, 0.35, n_cards),
            activity=rng.gamma(1.5, 1.0, n_cards),
            open_fraction=open_fraction,
            peak_hour=peak_hour,
            hour_spread=rng.uniform(2.0, 4.5, n_cards),
            online_affinity=rng.normal(0.0, 0.8, n_cards),
            contactless_share=rng.beta(2.0, 3.0, n_cards),
            category_cdf=category_cdf,
            first_device=first_device,
            second_device=second_device,
            second_device_from=second_device_from,
            trip_city=trip_city,
            trip_start=trip_start,
            trip_end=trip_end,
            merchant_category=merchant_category,
            merchant_city=merchant_city,
            merchant_lat=merchant_lat,
            merchant_lon=merchant_lon,
            merchant_risk_weight=merchant_risk_weight,
            by_city_category=_group_lookup(merchant_city * n_categories + merchant_category),
            by_city=_group_lookup(merchant_city),
            by_category=_group_lookup(merchant_category),
            fraud_devices=rng.integers(0, 2**40, max(5, n_cards // 100)),
        )

    def pick_merchants(
        self, rng: np.random.Generator, city: np.ndarray, category: np.ndarray, online: np.ndarray
    ) -> np.ndarray:
        """A merchant per purchase: online purchases go to any merchant of the category; in-person ones
        to a merchant of the category in the city, else any merchant in the city, else any of the category.
        """
        n_categories = len(MERCHANT_CATEGORIES)
        merchant, found = _pick_in_groups(rng, self.by_city_category, city * n_categories + category)
        merchant[online] = -1
        found &= ~online
        missing = ~found & ~online
        merchant[missing], found[missing] = _pick_in_groups(rng, self.by_city, city[missing])
        missing = ~found
        merchant[missing], _ = _pick_in_groups(rng, self.by_category, category[missing])
        return merchant

    def pick_risky_merchant(
        self, rng: np.random.Generator, categories: list[str], *, away_from_city: int | None = None
    ) -> int:
        """A merchant of one of ``categories``, favouring high-risk ones, optionally outside a city."""
        codes = [_CATEGORY_INDEX[name] for name in categories]
        candidates = np.flatnonzero(np.isin(self.merchant_category, codes))
        if away_from_city is not None:
            elsewhere = candidates[self.merchant_city[candidates] != away_from_city]
            candidates = elsewhere if len(elsewhere) else candidates
        weights = self.merchant_risk_weight[candidates]
        return int(rng.choice(candidates, p=weights / weights.sum()))

    def new_fraud_device(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.fraud_devices))

    def amount(self, rng: np.random.Generator, card: np.ndarray, category: np.ndarray) -> np.ndarray:
        """Ticket size for the category, scaled by the card holder's spending habit."""
        return np.exp(rng.normal(_LOG_MEDIAN[category], _AMOUNT_SIGMA[category])) * self.amount_scale[card]


def _normalized(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _group_lookup(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item indices sorted by key, and the sorted keys, so a key's items are found with searchsorted."""
    order = np.argsort(keys, kind="stable")
    return order, keys[order]


def _pick_in_groups(
    rng: np.random.Generator, lookup: tuple[np.ndarray, np.ndarray], wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each wanted key, a uniformly random item with that key (and whether one existed)."""
    order, sorted_keys = lookup
    first = np.searchsorted(sorted_keys, wanted, side="left")
    count = np.searchsorted(sorted_keys, wanted, side="right") - first
    found = count > 0
    offset = np.floor(rng.random(len(wanted)) * np.maximum(count, 1)).astype(np.int64)
    picked = np.full(len(wanted), -1, dtype=np.int64)
    picked[found] = order[(first + offset)[found]]
    return picked, found


# --------------------------------------------------------------------------------------------------
# Transactions, as dicts of equal-length column arrays ("rows")
# --------------------------------------------------------------------------------------------------

_ROW_FIELDS = ("card", "seconds", "merchant", "amount", "channel", "device", "is_fraud")


def _concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {field: np.concatenate([part[field] for part in parts]) for field in _ROW_FIELDS}


def _rows_from_records(records: list[tuple]) -> dict[str, np.ndarray]:
    """Column arrays from per-row tuples ordered like ``_ROW_FIELDS`` (used for the few fraud rows)."""
    dtypes = (np.int64, np.float64, np.int64, np.float64, np.int64, np.int64, np.int64)
    if not records:
        return {field: np.empty(0, dtype) for field, dtype in zip(_ROW_FIELDS, dtypes, strict=True)}
    columns = list(zip(*records, strict=True))
    return {
        field: np.asarray(column, dtype)
        for field, column, dtype in zip(_ROW_FIELDS, columns, dtypes, strict=True)
    }


def _legit_transactions(rng: np.random.Generator, world: _World, n_rows: int) -> dict[str, np.ndarray]:
    """Card holders' own purchases: habits for time, category, channel, place and ticket size."""
    n_repeats = int(round(n_rows * _LEGIT_REPEAT_SHARE)) if n_rows > 1 else 0
    n_base = n_rows - n_repeats

    card = rng.choice(world.n_cards, size=n_base, p=_normalized(world.activity))
    first_day = world.open_fraction[card] * world.days
    day = np.floor(first_day + rng.random(n_base) * (world.days - first_day))
    habitual = rng.random(n_base) < 0.85
    hour = np.where(
        habitual, rng.normal(world.peak_hour[card], world.hour_spread[card]), rng.uniform(0, 24, n_base)
    ) % 24.0
    seconds = np.minimum(day * SECONDS_PER_DAY + np.floor(hour * 3600.0), world.total_seconds - 1)

    category = (rng.random(n_base)[:, None] > world.category_cdf[card]).sum(axis=1)
    category = np.minimum(category, len(MERCHANT_CATEGORIES) - 1)
    share = np.clip(_ONLINE_SHARE[category], 1e-3, 1 - 1e-3)
    online_probability = 1.0 / (1.0 + np.exp(-(np.log(share / (1 - share)) + world.online_affinity[card])))
    online_probability = np.where(_ONLINE_SHARE[category] == 0.0, 0.0, online_probability)
    online = rng.random(n_base) < online_probability

    travelling = (seconds >= world.trip_start[card]) & (seconds < world.trip_end[card])
    city = np.where(travelling, world.trip_city[card], world.card_city[card])
    merchant = world.pick_merchants(rng, city, category, online)
    category = world.merchant_category[merchant]  # the in-city fallback may change the category

    taps = rng.random(n_base) < world.contactless_share[card]
    channel = np.where(online, ONLINE, np.where(taps, CONTACTLESS, CARD_PRESENT))
    uses_new_phone = (seconds >= world.second_device_from[card]) & (rng.random(n_base) < 0.8)
    device = np.where(uses_new_phone, world.second_device[card], world.first_device[card])
    borrowed = rng.random(n_base) < 0.01  # a work laptop, a partner's phone: a legitimately new device
    device = np.where(borrowed, rng.integers(0, 2**40, n_base), device)
    device = np.where(channel == CARD_PRESENT, -1, device)

    amount = world.amount(rng, card, category)
    # App-store style micro purchases: small online charges are normal too, not only a testing signature.
    micro = rng.random(n_base) < _MICRO_PURCHASE_SHARE[category]
    amount[micro] = rng.choice(_MICRO_PRICE_POINTS, size=int(micro.sum()))

    # Quick repeats of an earlier purchase (a retry after a decline, a split bill, in-game top-ups).
    source = rng.integers(0, n_base, n_repeats)
    repeat_seconds = np.minimum(seconds[source] + rng.uniform(20, 1_500, n_repeats), world.total_seconds - 1)
    return {
        "card": np.concatenate([card, card[source]]),
        "seconds": np.concatenate([seconds, np.floor(repeat_seconds)]),
        "merchant": np.concatenate([merchant, merchant[source]]),
        "amount": np.concatenate([amount, amount[source] * rng.uniform(0.2, 1.2, n_repeats)]),
        "channel": np.concatenate([channel, channel[source]]),
        "device": np.concatenate([device, device[source]]),
        "is_fraud": np.zeros(n_rows, dtype=np.int64),
    }


def _compromised_merchant_fraud(
    rng: np.random.Generator, world: _World, legit: dict[str, np.ndarray], n_rows: int
) -> dict[str, np.ndarray]:
    """Merchants are breached for ~10 days; cards used in person there are defrauded days later.

    The visits during the breach are ordinary legitimate rows; only the later cloned-card and online
    purchases are fraud. Moderate amounts and daytime hours make this the hardest pattern to catch.
    """
    if n_rows == 0:
        return _rows_from_records([])
    events_wanted = max(1, n_rows // 2)
    in_person = legit["channel"] != ONLINE
    visits = np.bincount(legit["merchant"][in_person], minlength=len(world.merchant_category)).astype(float)
    candidates = np.flatnonzero(visits > 0)
    breach_order = rng.choice(
        candidates, size=len(candidates), replace=False, p=_normalized(visits[candidates])
    )

    in_person_rows = np.flatnonzero(in_person)
    rows_by_merchant = in_person_rows[np.argsort(legit["merchant"][in_person_rows], kind="stable")]
    merchant_ends = np.cumsum(visits.astype(np.int64))

    # Several breaches spread over the period, each exploiting a handful of the cards it exposed.
    cards_per_breach = -(-events_wanted // 4)
    exposed_cards: dict[int, float] = {}  # card -> its last visit during a breach
    for merchant in breach_order:
        # Ten-day breaches, shorter on short periods so any `days` works.
        breach_length = min(10 * SECONDS_PER_DAY, 0.3 * world.total_seconds)
        breach_start = rng.uniform(0, max(0.85 * world.total_seconds - breach_length, 1.0))
        breach_end = breach_start + breach_length
        rows = rows_by_merchant[merchant_ends[merchant] - int(visits[merchant]) : merchant_ends[merchant]]
        seconds = legit["seconds"][rows]
        exposed = rows[(seconds >= breach_start) & (seconds < breach_end)]
        breach_cards: dict[int, float] = {}
        for card, visit in zip(legit["card"][exposed], legit["seconds"][exposed], strict=True):
            if int(card) not in exposed_cards:
                breach_cards[int(card)] = max(float(visit), breach_cards.get(int(card), 0.0))
        exploited = rng.permutation(list(breach_cards))[:cards_per_breach]
        exposed_cards.update({int(card): breach_cards[int(card)] for card in exploited})
        if len(exposed_cards) >= events_wanted:
            break
    if not exposed_cards:  # tiny tables: fall back to cards exposed somewhere we did not generate
        exposed_cards = {int(card): 0.0 for card in rng.integers(0, world.n_cards, events_wanted)}

    cards = list(exposed_cards)
    chosen = rng.choice(cards, size=min(events_wanted, len(cards)), replace=False)
    records: list[tuple] = []
    rows_left = n_rows
    for position, card in enumerate(chosen):
        events_left = len(chosen) - position
        size = rows_left if events_left == 1 else int(min(rows_left - (events_left - 1), rng.integers(1, 4)))
        rows_left -= size
        visit = exposed_cards[int(card)]
        moment = visit + rng.uniform(2, 20) * SECONDS_PER_DAY
        if moment >= world.total_seconds - SECONDS_PER_DAY:
            moment = rng.uniform(visit, max(visit, world.total_seconds - SECONDS_PER_DAY / 2))
        daytime = np.floor(moment / SECONDS_PER_DAY) * SECONDS_PER_DAY + rng.uniform(9, 22) * 3600
        moment = max(daytime, visit + 3600)
        online_device = world.new_fraud_device(rng)
        for _ in range(size):
            if rng.random() < 0.65:  # a cloned card used in person in another city
                category = str(rng.choice(["electronics", "jewelry", "cash_advance", "fuel", "grocery"]))
                merchant = world.pick_risky_merchant(rng, [category], away_from_city=world.card_city[card])
                channel, device = CARD_PRESENT, -1
            else:
                category = str(rng.choice(["online_retail", "electronics", "gaming"]))
                merchant = world.pick_risky_merchant(rng, [category])
                channel, device = ONLINE, online_device
            code = world.merchant_category[merchant]
            amount = float(world.amount(rng, np.array([card]), np.array([code]))[0]) * rng.uniform(1.2, 3.5)
            records.append((card, moment, merchant, amount, channel, device, 1))
            moment += rng.uniform(600, 8 * 3600)
    return _clip_to_period(_rows_from_records(records), world)


def _card_testing_and_takeover_fraud(
    rng: np.random.Generator, world: _World, n_rows: int
) -> dict[str, np.ndarray]:
    """Card-testing bursts and account takeovers until ``n_rows`` fraud rows exist.

    Card testing grows over the period (drift): late events are more often bursts than takeovers.
    """
    records: list[tuple] = []
    while len(records) < n_rows:
        moment = rng.uniform(0, world.total_seconds)
        progress = moment / world.total_seconds
        testing_share = _CARD_TESTING_SHARE_START + progress * (
            _CARD_TESTING_SHARE_END - _CARD_TESTING_SHARE_START
        )
        card = int(rng.integers(0, world.n_cards))
        rows_left = n_rows - len(records)
        if rng.random() < testing_share:
            records.extend(_card_testing_burst(rng, world, card, moment, rows_left))
        else:
            records.extend(_account_takeover(rng, world, card, moment, rows_left))
    return _clip_to_period(_rows_from_records(records), world)


def _card_testing_burst(
    rng: np.random.Generator, world: _World, card: int, moment: float, max_rows: int
) -> list[tuple]:
    """A bot checks a stolen card number: many tiny online charges within minutes from one device,
    sometimes followed by a larger cash-out purchase once a charge goes through."""
    size = int(min(max_rows, 3 + rng.poisson(3.0)))
    device = world.new_fraud_device(rng)
    test_categories = ["gaming", "online_retail", "entertainment"]
    merchants = [world.pick_risky_merchant(rng, test_categories) for _ in range(2)]
    records = []
    for index in range(size):
        cash_out = index == size - 1 and size > 3 and rng.random() < 0.4
        if cash_out:
            merchant = world.pick_risky_merchant(rng, ["electronics", "online_retail"])
            code = world.merchant_category[merchant]
            amount = float(world.amount(rng, np.array([card]), np.array([code]))[0]) * rng.uniform(2.0, 5.0)
        else:
            merchant = merchants[int(rng.random() < 0.3)]
            amount = 1.0 if rng.random() < 0.25 else rng.uniform(0.5, 4.99)
        records.append((card, moment, merchant, amount, ONLINE, device, 1))
        moment += 3 + rng.exponential(40.0)
    return records


def _account_takeover(
    rng: np.random.Generator, world: _World, card: int, moment: float, max_rows: int
) -> list[tuple]:
    """A phished account is drained: a new device, far from home, mostly at night, big tickets in
    resellable categories, a few purchases minutes apart."""
    size = int(min(max_rows, 1 + min(rng.poisson(1.2), 4)))
    if rng.random() < 0.7:
        moment = np.floor(moment / SECONDS_PER_DAY) * SECONDS_PER_DAY + rng.uniform(0, 5) * 3600
    device = world.new_fraud_device(rng)
    records = []
    for _ in range(size):
        if rng.random() < 0.85:
            category = str(rng.choice(["electronics", "jewelry", "gaming", "online_retail", "travel"]))
            channel = ONLINE
        else:  # the card provisioned into the fraudster's phone wallet and tapped in another city
            category = str(rng.choice(["electronics", "jewelry"]))
            channel = CONTACTLESS
        merchant = world.pick_risky_merchant(rng, [category], away_from_city=world.card_city[card])
        code = world.merchant_category[merchant]
        amount = float(world.amount(rng, np.array([card]), np.array([code]))[0]) * rng.uniform(1.5, 5.0)
        records.append((card, moment, merchant, amount, channel, device, 1))
        moment += rng.uniform(180, 5_400)
    return records


def _clip_to_period(rows: dict[str, np.ndarray], world: _World) -> dict[str, np.ndarray]:
    rows["seconds"] = np.floor(np.clip(rows["seconds"], 0, world.total_seconds - 1))
    return rows


# --------------------------------------------------------------------------------------------------
# Final table
# --------------------------------------------------------------------------------------------------


def _assemble(world: _World, rows: dict[str, np.ndarray], start_time: pd.Timestamp, inflation_over_period: float) -> pd.DataFrame:
    order = np.argsort(rows["seconds"], kind="stable")
    rows = {field: values[order] for field, values in rows.items()}
    n_rows = len(order)
    card, merchant, seconds = rows["card"], rows["merchant"], rows["seconds"]

    # Inflation: the same basket costs a few percent more at the end of the period.
    inflation = 1.0 + inflation_over_period * seconds / world.total_seconds
    amount = np.clip(np.round(rows["amount"] * inflation, 2), 0.5, MAX_AMOUNT)

    id_width = max(8, len(str(n_rows)))
    card_width = max(6, len(str(world.n_cards - 1)))
    merchant_width = max(5, len(str(len(world.merchant_category) - 1)))
    device = rows["device"]
    device_id = np.array(
        [None if value < 0 else f"dev_{value:010x}" for value in device.tolist()], dtype=object
    )
    start_ns = start_time.tz_localize(None).as_unit("ns")
    timestamp = start_ns + pd.to_timedelta(seconds.astype(np.int64), unit="s")

    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx_{index:0{id_width}d}" for index in range(1, n_rows + 1)],
            "timestamp": np.asarray(timestamp, dtype="datetime64[ns]"),
            "card_id": [f"card_{value:0{card_width}d}" for value in card.tolist()],
            "merchant_id": [f"merch_{value:0{merchant_width}d}" for value in merchant.tolist()],
            "merchant_category": np.asarray(MERCHANT_CATEGORIES, dtype=object)[
                world.merchant_category[merchant]
            ],
            "amount": amount,
            "channel": np.asarray(CHANNELS, dtype=object)[rows["channel"]],
            "device_id": device_id,
            "merchant_lat": np.round(world.merchant_lat[merchant], 5),
            "merchant_lon": np.round(world.merchant_lon[merchant], 5),
            "home_lat": np.round(world.home_lat[card], 5),
            "home_lon": np.round(world.home_lon[card], 5),
            "is_fraud": rows["is_fraud"].astype(np.int64),
        }
    )
    return frame[list(COLUMNS)]
