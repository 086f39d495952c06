"""The embedded default: daily unit sales of store × product series with the structure retail has,
seeded. Everything is drawn for all series at once ([series, days] arrays).

- Weekly and yearly seasonality (per category), a slow trend per series, store and product levels.
- Prices that change now and then, promotions (discounts with an extra lift) and a price elasticity
  per category: known in advance, so the model can use them for the forecast horizon.
- Holidays and events with their own effect per category; stores closed on some of them.
- Stock-outs: demand above what was on the shelf is lost, so sales are censored (flagged).
- Intermittent slow movers (most days zero) and new products that start mid-history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = {
    # name: (weekly shape Mon..Sun, yearly amplitude, elasticity, promotion lift)
    "grocery": ([1.0, 0.95, 0.95, 1.0, 1.15, 1.35, 0.9], 0.05, -0.8, 0.3),
    "beverages": ([0.9, 0.9, 0.95, 1.0, 1.2, 1.45, 1.0], 0.35, -1.4, 0.5),
    "household": ([1.0, 1.0, 1.0, 1.0, 1.05, 1.3, 0.85], 0.05, -1.1, 0.4),
    "toys": ([0.8, 0.8, 0.85, 0.9, 1.1, 1.7, 1.3], 0.6, -1.8, 0.6),
    "garden": ([0.85, 0.9, 0.9, 0.95, 1.1, 1.6, 1.35], 0.8, -1.3, 0.4),
    "electronics": ([0.9, 0.9, 0.9, 0.95, 1.1, 1.5, 1.2], 0.3, -2.2, 0.8),
}
REGIONS = ["north", "south", "east", "west"]


def holidays(start: pd.Timestamp, days: int) -> pd.DataFrame:
    """Fixed-date and moving events over the period: date, name, whether stores close."""
    rows = []
    for year in range(start.year, (start + pd.Timedelta(days=days)).year + 1):
        thanksgiving = pd.Timestamp(year, 11, 1) + pd.offsets.Week(weekday=3) * 4 - pd.offsets.Week(weekday=3)
        easter = _easter(year)
        rows += [
            (pd.Timestamp(year, 1, 1), "new_year", True),
            (easter - pd.Timedelta(days=2), "good_friday", False),
            (easter, "easter", True),
            (pd.Timestamp(year, 7, 4), "summer_festival", False),
            (thanksgiving + pd.Timedelta(days=1), "black_friday", False),
            (pd.Timestamp(year, 12, 24), "christmas_eve", False),
            (pd.Timestamp(year, 12, 25), "christmas", True),
            (pd.Timestamp(year, 12, 31), "new_years_eve", False),
        ]
    frame = pd.DataFrame(rows, columns=["date", "holiday", "closed"])
    end = start + pd.Timedelta(days=days - 1)
    return frame[(frame["date"] >= start) & (frame["date"] <= end)].reset_index(drop=True)


def _easter(year: int) -> pd.Timestamp:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 - the algorithm's own name
    m = (a + 11 * h + 22 * l) // 451
    month = (h + l - 7 * m + 114) // 31
    day = (h + l - 7 * m + 114) % 31 + 1
    return pd.Timestamp(year, month, day)


def generate_sales(
    stores: int = 10,
    products: int = 50,
    days: int = 730,
    *,
    seed: int = 0,
    start: str = "2024-01-01",
    slow_mover_share: float = 0.2,
    new_product_share: float = 0.1,
) -> dict[str, pd.DataFrame]:
    """Return ``{"demand_sales": daily rows, "demand_series": one row per series}`` (see data_contracts/)."""
    if stores < 1 or products < 1 or days < 14:
        raise ValueError(f"Need at least 1 store, 1 product and 14 days; got {stores}, {products}, {days}.")
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp(start)
    dates = pd.date_range(origin, periods=days, freq="D")
    day_of_year = dates.dayofyear.to_numpy()
    weekday = dates.weekday.to_numpy()
    names = list(CATEGORIES)

    product_category = rng.integers(0, len(names), size=products)
    product_level = rng.lognormal(1.5, 0.8, size=products)
    slow = rng.random(products) < slow_mover_share
    product_level[slow] = rng.uniform(0.05, 0.4, size=slow.sum())  # most days zero
    base_price = np.round(rng.lognormal(1.8, 0.7, size=products), 2)
    store_level = rng.lognormal(0.0, 0.3, size=stores)
    store_region = rng.integers(0, len(REGIONS), size=stores)

    store_of = np.repeat(np.arange(stores), products)
    product_of = np.tile(np.arange(products), stores)
    series = len(store_of)
    category_of = product_category[product_of]

    weekly = np.array([CATEGORIES[n][0] for n in names])[category_of][:, weekday]
    amplitude = np.array([CATEGORIES[n][1] for n in names])[category_of]
    phase = rng.uniform(0, 2 * np.pi, size=len(names))[category_of]
    yearly = 1.0 + amplitude[:, None] * np.sin(2 * np.pi * day_of_year[None, :] / 365.25 + phase[:, None])
    trend = np.exp(rng.normal(0, 0.25, size=series)[:, None] * np.arange(days)[None, :] / 365.0)
    mean = (product_level[product_of] * store_level[store_of])[:, None] * weekly * yearly * trend

    # Prices: a few permanent changes per product, plus promotions per series (known in advance).
    price = np.tile(base_price[:, None], (1, days))
    for product in range(products):
        for change_day in np.sort(rng.choice(days, size=rng.integers(0, 4), replace=False)):
            price[product, change_day:] *= rng.uniform(0.9, 1.12)
    price = price[product_of]
    promotion = np.zeros((series, days), dtype=np.int64)
    starts = rng.random((series, days)) < 1 / 45
    for row, day in zip(*np.nonzero(starts)):
        promotion[row, day : day + rng.integers(3, 11)] = 1
    discount = np.where(promotion == 1, rng.uniform(0.1, 0.35, size=(series, 1)), 0.0)
    price = np.round(price * (1 - discount), 2)
    elasticity = np.array([CATEGORIES[n][2] for n in names])[category_of]
    lift = np.array([CATEGORIES[n][3] for n in names])[category_of]
    mean = mean * (price / base_price[product_of][:, None]) ** elasticity[:, None] * (1 + lift[:, None] * promotion)

    # Holidays: category-specific effects; stores close on some.
    events = holidays(origin, days)
    holiday_name = np.full(days, "", dtype=object)
    store_open = np.ones((series, days), dtype=np.int64)
    for _, event in events.iterrows():
        index = (event["date"] - origin).days
        holiday_name[index] = event["holiday"]
        effect = rng.uniform(0.6, 2.5, size=len(names))[category_of]
        mean[:, index] *= effect
        if event["closed"]:
            store_open[:, index] = 0
        elif event["holiday"] in ("christmas_eve", "black_friday"):  # the days before are busy too
            mean[:, max(0, index - 3) : index] *= 1.3

    # New products start mid-history: no rows before their launch.
    launch = np.zeros(products, dtype=np.int64)
    new = rng.random(products) < new_product_share
    # Late enough to be new, early enough to leave some history before the end.
    launch[new] = rng.integers(days // 4, max(days // 4 + 1, days - min(60, days // 3)), size=new.sum())
    launch_of = launch[product_of]

    demand = rng.negative_binomial(5, 5 / (5 + np.maximum(mean, 1e-6)))  # overdispersed counts
    demand = np.where(store_open == 1, demand, 0)
    # Stock-outs: spells where the shelf holds less than demand; lost sales are not observed.
    stockout = np.zeros((series, days), dtype=np.int64)
    for row, day in zip(*np.nonzero(rng.random((series, days)) < 1 / 120)):
        stockout[row, day : day + rng.integers(1, 6)] = 1
    on_shelf = np.floor(demand * rng.uniform(0.0, 0.6, size=(series, days))).astype(np.int64)
    sales = np.where(stockout == 1, np.minimum(demand, on_shelf), demand)
    stockout = stockout * (sales < demand)  # flagged only where it bit

    keep = np.arange(days)[None, :] >= launch_of[:, None]
    rows, columns = np.nonzero(keep)
    series_ids = np.array([f"s{store:03d}_p{product:04d}" for store, product in zip(store_of, product_of)], dtype=object)
    sales_frame = pd.DataFrame(
        {
            "series_id": series_ids[rows],
            "date": dates[columns],
            "quantity": sales[rows, columns].astype(np.float64),
            "price": price[rows, columns],
            "promotion": promotion[rows, columns],
            "holiday": pd.array(holiday_name[columns], dtype=object),
            "store_open": store_open[rows, columns],
            "stockout": stockout[rows, columns],
        }
    )
    sales_frame["holiday"] = sales_frame["holiday"].replace("", None)
    series_frame = pd.DataFrame(
        {
            "series_id": series_ids,
            "store_id": [f"s{store:03d}" for store in store_of],
            "product_id": [f"p{product:04d}" for product in product_of],
            "category": [names[c] for c in category_of],
            "region": [REGIONS[store_region[store]] for store in store_of],
            "launch_date": dates[launch_of],
            "frequency": "D",
            "horizon": pd.array([None] * series, dtype="Int64"),
            "test_start": pd.Series([pd.NaT] * series, dtype="datetime64[ns]"),
        }
    )
    return {"demand_sales": sales_frame, "demand_series": series_frame}
