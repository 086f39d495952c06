"""The batch seam (the app's ``Batch`` part + ``solutions_core.batch.run_batch``): inputs are validated
first, outputs land per logical date, a re-run replaces them, a failure keeps them, the work runs
with the champion's config as it was published, and shards of a date publish the output one task would."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from solutions_core.batch import plan_batch, publish_shards, run_batch, run_batch_shard
from solutions_core.contracts import ContractViolation
from solutions_core.data import DataStore
from solutions_core.settings import Settings
from solutions_core.solution import Batch, BatchContext, Context
from tiny_app import APP, CONTRACTS, TinyApp

DAY = dt.date(2025, 1, 5)


class Counting(Batch):
    """Batch work that only counts the day's rows (no model call)."""

    def __init__(self, fail: bool = False, label: str = "first"):
        self.fail, self.label = fail, label

    def run(self, context: BatchContext) -> list[Path]:
        frame = context.tables["tiny_points"]
        rows = int((pd.to_datetime(frame["timestamp"]).dt.date == context.logical_date).sum())
        path = context.output_dir / "counts.parquet"
        pd.DataFrame({"rows": [rows], "label": [self.label], "champion": [context.champion.version],
                      "hidden_units": [context.config.hidden_units]}).to_parquet(path)
        if self.fail:
            raise RuntimeError("the batch job broke half way")
        return [path]


def counting(**options) -> TinyApp:
    class CountingApp(TinyApp):
        batch = Counting(**options)

    return CountingApp()


@pytest.fixture()
def batch_home(tmp_path) -> Settings:
    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS)
    tables = APP.data.generate(Context(APP.name, APP.make_config({"size": 600}), {}), tmp_path)
    DataStore(settings.resolved_data_dir()).write(APP.name, "tiny_points", tables["tiny_points"])
    champion = settings.resolved_models_dir() / APP.name / "3"
    (champion / "assets.extra").mkdir(parents=True)
    (champion / "saved_model.pb").write_bytes(b"")  # the registry only needs the file to list the version
    published = APP.make_config({"hidden_units": 5}).model_dump(mode="json")
    (champion / "assets.extra" / "solution_metadata.json").write_text(json.dumps({"version": 3, "config": published}))
    return settings


def test_outputs_are_per_date_and_a_rerun_replaces_them(batch_home):
    solution = counting()
    first = run_batch(solution, solution.make_config(), batch_home, logical_date=DAY)
    assert first.folder == batch_home.resolved_batch_dir() / APP.name / "date=2025-01-05"
    assert first.champion_version == 3 and [f.name for f in first.files] == ["counts.parquet"]
    assert pd.read_parquet(first.files[0])["rows"].iloc[0] > 0

    again = counting(label="second")
    run_batch(again, again.make_config(), batch_home, logical_date=DAY)
    app_folder = batch_home.resolved_batch_dir() / APP.name
    assert sorted(p.name for p in app_folder.iterdir()) == ["batch.duckdb", "date=2025-01-05"]
    assert pd.read_parquet(first.files[0])["label"].tolist() == ["second"]

    run_batch(solution, solution.make_config(), batch_home, logical_date=DAY + dt.timedelta(days=1))
    with duckdb.connect(str(app_folder / "batch.duckdb"), read_only=True) as connection:
        rows = connection.execute("select cast(date as varchar), label from counts order by 1").fetchall()
    assert rows == [("2025-01-05", "second"), ("2025-01-06", "first")]


def test_the_work_runs_with_the_champions_published_config(batch_home):
    solution = counting()
    result = run_batch(solution, solution.make_config({"hidden_units": 99}), batch_home, logical_date=DAY)
    assert pd.read_parquet(result.files[0])["hidden_units"].tolist() == [5]


def test_a_failed_batch_keeps_the_previous_outputs(batch_home):
    run_batch(counting(), APP.make_config(), batch_home, logical_date=DAY)
    with pytest.raises(RuntimeError, match="half way"):
        run_batch(counting(fail=True, label="broken"), APP.make_config(), batch_home, logical_date=DAY)
    app_folder = batch_home.resolved_batch_dir() / APP.name
    assert pd.read_parquet(app_folder / "date=2025-01-05" / "counts.parquet")["label"].tolist() == ["first"]
    assert not [p for p in app_folder.iterdir() if p.name.startswith(".")]


def test_contract_violating_input_writes_nothing(batch_home, tmp_path):
    bad = DataStore(batch_home.resolved_data_dir()).read(APP.name, "tiny_points")
    bad.loc[:4, "x"] = -99.0
    source = tmp_path / "day.parquet"
    bad.to_parquet(source)
    solution = counting()
    with pytest.raises(ContractViolation, match="x"):
        run_batch(solution, solution.make_config({"source": str(source)}), batch_home, logical_date=DAY)
    assert not (batch_home.resolved_batch_dir() / APP.name / "date=2025-01-05").exists()


def test_no_champion_or_no_batch_work_is_a_clear_error(batch_home, tmp_path):
    empty = Settings(home=tmp_path / "empty", contracts_dir=CONTRACTS)
    with pytest.raises(FileNotFoundError, match="train one first"):
        run_batch(counting(), APP.make_config(), empty, logical_date=DAY)

    class NoBatch(TinyApp):
        batch = None

    with pytest.raises(ValueError, match="no batch work"):
        run_batch(NoBatch(), APP.make_config(), batch_home, logical_date=DAY)


def test_cli_batch_says_when_an_app_has_no_batch_work(tiny_registered, monkeypatch):
    from solutions_core.cli import app

    monkeypatch.setattr(TinyApp, "batch", None)
    result = CliRunner().invoke(app, ["batch", APP.name, "--date", "2025-01-05"])
    assert result.exit_code == 2 and "no batch work" in result.output
    assert "batch" in CliRunner().invoke(app, ["--help"]).output


# ---- shards -----------------------------------------------------------------------------------------


def test_three_shards_publish_exactly_the_output_of_one(tiny_run, tiny_home, tmp_path):
    """The tiny app's real batch scoring of a day with the champion, in one shard and in three (as the
    batch DAG's mapped tasks run them): the same rows in the same order, the same scores."""
    stored = DataStore(Settings(home=tiny_home).resolved_data_dir()).read(APP.name, "tiny_points")
    day = pd.to_datetime(stored["timestamp"]).dt.date.value_counts().idxmax()
    outputs = {}
    for shards in (1, 3):
        settings = Settings(home=tiny_home, batch_dir=tmp_path / f"shards-{shards}", contracts_dir=CONTRACTS)
        plan = plan_batch(APP, settings, logical_date=day, shards=shards)
        assert plan.shards == shards and plan.champion_version == tiny_run.version.version
        written = [run_batch_shard(APP, APP.make_config(), settings, plan, index) for index in range(shards)]
        if shards == 3:
            sizes = [len(pd.read_parquet(files[0])) for files in written]
            assert min(sizes) > 0 and sum(sizes) == (pd.to_datetime(stored["timestamp"]).dt.date == day).sum()
        result = publish_shards(settings, plan)
        outputs[shards] = result.files[0]
        assert sorted(p.name for p in (settings.resolved_batch_dir() / APP.name).iterdir()) == ["batch.duckdb", f"date={day.isoformat()}"]
    one, three = (pd.read_parquet(outputs[shards]) for shards in (1, 3))
    # Ids exactly; the scores to float32 rounding (a shard's model calls hold other rows; here they match bit for bit).
    pd.testing.assert_frame_equal(one.drop(columns="probability"), three.drop(columns="probability"), check_exact=True)
    pd.testing.assert_series_equal(one["probability"], three["probability"], check_exact=False, rtol=1e-6, atol=1e-6)


def test_in_shard_deals_each_key_to_one_shard_evenly():
    keys = pd.Series([f"card-{i % 10}" for i in range(100)])
    masks = [BatchContext(APP.name, APP.make_config(), {}, shard=(index, 3)).in_shard(keys) for index in range(3)]
    assert (sum(mask.astype(int) for mask in masks) == 1).all()  # every row in exactly one shard
    for mask in masks:
        assert keys[mask].nunique() in (3, 4)  # 10 cards over 3 shards
        assert set(keys[mask]).isdisjoint(set(keys[~mask]))  # a card's rows stay together
    assert BatchContext(APP.name, APP.make_config(), {}).in_shard(keys).all()


def test_a_missing_shard_publishes_nothing_and_keeps_the_previous_outputs(batch_home):
    class ShardedCounting(Counting):
        shardable = True

    class ShardedApp(TinyApp):
        batch = ShardedCounting()

    solution = ShardedApp()
    run_batch(counting(), APP.make_config(), batch_home, logical_date=DAY)
    plan = plan_batch(solution, batch_home, logical_date=DAY, shards=2)
    run_batch_shard(solution, APP.make_config(), batch_home, plan, 0)
    with pytest.raises(FileNotFoundError, match=r"Shards \[1\]"):
        publish_shards(batch_home, plan)
    assert pd.read_parquet(batch_home.resolved_batch_dir() / APP.name / "date=2025-01-05" / "counts.parquet")["label"].tolist() == ["first"]
    with pytest.raises(ValueError, match="not one of the plan's 2 shards"):
        run_batch_shard(solution, APP.make_config(), batch_home, plan, 2)
    # A new attempt at the date clears what the failed one left.
    plan_batch(solution, batch_home, logical_date=DAY, shards=2)
    assert not list((batch_home.resolved_batch_dir() / APP.name / ".shards").iterdir())


def test_work_that_cannot_shard_runs_as_one_shard(batch_home):
    assert plan_batch(counting(), batch_home, logical_date=DAY, shards=4).shards == 1
    with pytest.raises(ValueError, match="at least 1"):
        plan_batch(counting(), batch_home, logical_date=DAY, shards=0)
