"""Drift and skew against a version's training statistics (``solutions_core.monitoring``): statistics
written at publish, shifted columns flagged and stable ones not, thresholds from the contract, a report a
person opens, and ``solutions monitor``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from solutions_core.contracts import Contract, ContractError, load_contract
from solutions_core.monitoring import (
    STATISTICS_FILE,
    compare,
    l_infinity,
    population_stability_index,
    training_statistics,
    write_report,
)
from tiny_app import APP, CONTRACTS

CONTRACT = load_contract(CONTRACTS / "tiny_points.yaml")


def points(size: int, seed: int, *, x_shift: float = 0.0, colors=("red", "green", "blue"), color_p=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "point_id": [f"p{i}" for i in range(size)],
        "x": rng.uniform(-3, 3, size) + x_shift,
        "y": rng.uniform(-3, 3, size),
        "color": rng.choice(list(colors), size, p=color_p),
    })


def test_the_measures_are_zero_for_equal_shares_and_grow_with_the_change():
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0
    small, large = population_stability_index([0.5, 0.5], [0.45, 0.55]), population_stability_index([0.5, 0.5], [0.1, 0.9])
    assert 0 < small < 0.05 < 0.25 < large
    assert l_infinity({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.7, "c": 0.1}) == pytest.approx(0.3)


def test_a_shifted_column_and_a_reweighted_category_drift_the_stable_ones_do_not():
    statistics = training_statistics(points(3000, 0), CONTRACT, {"probability": np.random.default_rng(0).uniform(0, 1, 3000)})
    assert set(statistics["columns"]) == {"x", "y", "color"}  # served features only: not the id, time or label
    same = compare(statistics, points(800, 1), CONTRACT, {"probability": np.random.default_rng(1).uniform(0, 1, 800)})
    assert same.drifted == [], [(c.name, c.value) for c in same.columns]
    moved = compare(statistics, points(800, 2, x_shift=2.0, color_p=[0.7, 0.15, 0.15]), CONTRACT,
                    {"probability": np.random.default_rng(2).uniform(0.6, 1, 800)})
    assert {(c.part, c.name) for c in moved.drifted} == {("column", "x"), ("column", "color"), ("output", "probability")}
    assert {c.name: c.measure for c in moved.columns} == {"x": "psi", "y": "psi", "color": "linf", "probability": "psi"}


def test_a_column_arriving_empty_or_with_a_new_value_drifts():
    statistics = training_statistics(points(2000, 0), CONTRACT)
    served = points(500, 3)
    served.loc[: 300, "y"] = np.nan
    served.loc[: 200, "color"] = "purple"
    drifted = {c.name for c in compare(statistics, served, CONTRACT).drifted}
    assert drifted == {"y", "color"}


def test_thresholds_come_from_the_contract():
    strict = Contract.from_dict({**CONTRACT.to_dict(), "columns": {**CONTRACT.to_dict()["columns"], "x": {"type": "float", "drift": 0.001}}})
    statistics = training_statistics(points(3000, 0), strict)
    report = compare(statistics, points(800, 1), strict)
    assert {c.name: c.threshold for c in report.columns}["x"] == 0.001 and "x" in {c.name for c in report.drifted}
    with pytest.raises(ContractError, match="drift"):
        Contract.from_dict({**CONTRACT.to_dict(), "columns": {**CONTRACT.to_dict()["columns"], "x": {"type": "float", "drift": -1}}})


def test_nothing_served_is_a_clear_error():
    with pytest.raises(ValueError, match="No served rows"):
        compare(training_statistics(points(100, 0), CONTRACT), points(0, 0), CONTRACT)


def test_the_report_a_person_opens(tmp_path):
    statistics = training_statistics(points(2000, 0), CONTRACT)
    report = compare(statistics, points(500, 4, x_shift=3.0), CONTRACT, app="tiny_app", version=2, label="2026-12-01")
    files = write_report(report, tmp_path / "report")
    assert json.loads(files["json"].read_text())["drifted"] == ["column:x"]
    page = files["html"].read_text()
    assert "DRIFTED" in page and 'src="drift.png"' in page and "2026-12-01" in page
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files["png"].stat().st_size > 10_000


def test_a_published_version_carries_its_training_statistics(tiny_run):
    statistics = json.loads((tiny_run.version.path / "assets.extra" / STATISTICS_FILE).read_text())
    assert set(statistics["columns"]) == {"x", "y", "color"} and statistics["contract"]["name"] == "tiny_points"
    assert "probability" in statistics["outputs"] and statistics["rows"] > 0
    assert len(statistics["columns"]["x"]["edges"]) == 9  # deciles


def test_monitor_command_flags_a_shifted_day_and_passes_a_stable_one(tiny_registered, tiny_run, tiny_home, tmp_path):
    from solutions_core.cli import app

    runner = CliRunner()
    stable, shifted = tmp_path / "stable.parquet", tmp_path / "shifted.parquet"
    points(600, 5).to_parquet(stable)
    points(600, 6, x_shift=4.0).to_parquet(shifted)
    ok = runner.invoke(app, ["monitor", APP.name, "--source", str(stable), "--home", str(tiny_home)])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["monitor", APP.name, "--source", str(shifted), "--home", str(tiny_home), "--label", "2026-12-02"])
    assert bad.exit_code == 1 and "Drift in x" in bad.output
    assert (tiny_home / "runs" / APP.name / "monitor" / "2026-12-02" / "index.html").is_file()


# ---- the request log, from a real server -------------------------------------------------------------


def test_the_server_logs_answered_requests_and_the_monitor_reads_the_day(tiny_registered, tiny_run, tiny_home, tmp_path):
    """Requests over HTTP to a server over a copy of the tiny app's models: every answered one lands in
    the day's Parquet log with its answer and version when the server stops (a refused one does not),
    and ``solutions monitor --date`` compares that day with the version."""
    import datetime as dt
    import shutil
    import urllib.error
    import urllib.request

    from solutions_core.cli import app
    from solutions_core.demo import ServerProcess
    from solutions_core.serving.request_log import output_names, read_day
    from tiny_app import server_environment

    home = tmp_path / "home"
    shutil.copytree(tiny_home / "models", home / "models")
    served = points(300, 7).assign(point_id=lambda frame: "new-" + frame["point_id"])  # points the feature store does not know
    with ServerProcess(home, extra_env=server_environment()) as server:
        server.wait_ready([APP.name])
        url = f"{server.url}/v1/models/{APP.name}:predict"
        for start in range(0, len(served), 50):
            body = json.dumps({"instances": served.iloc[start : start + 50].to_dict(orient="records")}).encode()
            with urllib.request.urlopen(urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})) as answer:
                assert answer.status == 200
        refused = urllib.request.Request(url, data=json.dumps({"instances": [{"x": "far", "y": 0, "color": "red"}]}).encode())
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(refused)
    today = dt.datetime.now(dt.timezone.utc).date()
    logged = read_day(home / "data", APP.name, today)
    assert len(logged) == len(served)  # all answered rows, the refused one not
    assert {"x", "y", "color", "probability", "model_version", "logged_at"} <= set(logged.columns)
    assert (logged["model_version"] == tiny_run.version.version).all()
    assert sorted(output_names(logged)) == ["decision", "probability"]  # the answers, named in the files
    np.testing.assert_allclose(np.sort(logged["x"].to_numpy()), np.sort(served["x"].to_numpy()))

    result = CliRunner().invoke(app, ["monitor", APP.name, "--date", today.isoformat(), "--home", str(home)])
    assert result.exit_code == 0, result.output
    report = json.loads((home / "runs" / APP.name / "monitor" / today.isoformat() / "drift.json").read_text())
    assert {"x", "y", "color", "probability"} <= {column["name"] for column in report["columns"]}  # the fields, and the answers
    assert report["rows"] == len(served) and report["drifted"] == []
    missing = CliRunner().invoke(app, ["monitor", APP.name, "--date", "2001-01-01", "--home", str(home)])
    assert missing.exit_code == 1 and "No request log" in missing.output

    # Labels arrive later for some of the served points (the tiny app's own rule): the gate metric per day.
    labelled = served.iloc[::2]
    labels = tmp_path / "labels.csv"
    rule = 1.5 * labelled["x"] - labelled["y"] + (labelled["color"] == "red")
    pd.DataFrame({"point_id": labelled["point_id"], "label": (rule > 0).astype(int)}).to_csv(labels, index=False)
    scored = CliRunner().invoke(app, ["performance", APP.name, "--outcomes", str(labels), "--home", str(home)])
    assert scored.exit_code == 0, scored.output
    table = pd.read_csv(home / "runs" / APP.name / "performance" / "performance.csv")
    assert table["rows"].tolist() == [len(labelled)] and str(today) in table["date"].astype(str).tolist()
    assert table["auroc"].iloc[0] > 0.8  # the champion ranks the noiseless rule's labels well
    assert (home / "runs" / APP.name / "performance" / "performance.png").stat().st_size > 10_000


def test_prometheus_gauges_show_the_latest_report_per_model(tmp_path):
    from solutions_core.serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    metrics.watch_drift(tmp_path / "runs", lambda: [APP.name, "another_app"])
    assert b"solutions_drift{" not in metrics.exposition()  # no report yet: no figures
    statistics = training_statistics(points(2000, 0), CONTRACT)
    write_report(compare(statistics, points(500, 8), CONTRACT, app=APP.name, version=1, label="2026-12-01"),
                 tmp_path / "runs" / APP.name / "monitor" / "2026-12-01")
    newer = compare(statistics, points(500, 9, x_shift=3.0), CONTRACT, app=APP.name, version=1, label="2026-12-02")
    write_report(newer, tmp_path / "runs" / APP.name / "monitor" / "2026-12-02")
    text = metrics.exposition().decode()
    x = next(line for line in text.splitlines() if line.startswith("solutions_drift{") and 'name="x"' in line)
    assert float(x.split()[-1]) == pytest.approx(next(c.value for c in newer.columns if c.name == "x"))
    assert 'solutions_drift_report_timestamp_seconds{label="2026-12-02",model="tiny_app"}' in text
    assert 'solutions_drift_threshold{model="tiny_app",name="color",part="column"} 0.15' in text


# ---- the run history ------------------------------------------------------------------------------


def test_runs_lists_each_run_with_its_verdict_data_and_contract_and_compares_two(tiny_registered, tmp_path):
    from solutions_core.cli import app
    from solutions_core.runs import comparison, find_run, list_runs
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS)
    first = run_training(APP, APP.tiny_config(), settings, verbose=0, run_id="first")
    second = run_training(APP, APP.make_config({**APP.tiny_config().model_dump(), "size": 500}), settings, verbose=0, run_id="second")
    records = list_runs(tmp_path / "runs")
    assert [record.run_id for record in records] == ["first", "second"]
    assert records[0].status == first.status and records[0].version == first.version.version
    assert records[0].value == pytest.approx(first.test.gate_value) and records[0].gate_metric == "auroc"
    assert records[0].contracts == {"tiny_points": "tiny_points 1.0.0"}
    assert records[0].fingerprints["tiny_points"] != records[1].fingerprints["tiny_points"]  # other data
    assert records[1].champion_before["version"] == 1 and records[0].runtime["precision"] == "float32"
    rows = {what: (a, b) for what, a, b in comparison(find_run(tmp_path / "runs", "first"), find_run(tmp_path / "runs", f"{APP.name}/second"))}
    assert rows["status"] == (first.status, second.status) and "test auroc" in rows and "baseline x_alone" in rows
    with pytest.raises(ValueError, match="No run"):
        find_run(tmp_path / "runs", "third")

    runner = CliRunner()
    listed = runner.invoke(app, ["runs", APP.name, "--home", str(tmp_path)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "tiny_app/first" in listed.output and "tiny_points 1.0.0" in listed.output
    compared = runner.invoke(app, ["runs", "compare", "first", "second", "--home", str(tmp_path)], env={"COLUMNS": "250"})
    assert compared.exit_code == 0 and "test auroc" in compared.output, compared.output
    bad = runner.invoke(app, ["runs", "compare", "first", "--home", str(tmp_path)])
    assert bad.exit_code != 0


def test_the_request_log_keeps_every_shape_of_request_and_answer(tmp_path):
    """Flat requests take Arrow's JSON path; fields whose type changes between requests and nested
    objects (an image's {"b64": ...}) the Python path; both keep rows, answers, versions and order."""
    import datetime as dt

    from solutions_core.serving.request_log import TIME_COLUMN, VERSION_COLUMN, RequestLog, output_names, read_day

    log = RequestLog(tmp_path, flush_seconds=3600)
    try:
        log.record("flat", 3, [{"x": 1.5, "color": "red", "history": [1.0, None]}, {"x": 2, "color": None, "history": []}],
                   {"probability": np.array([0.25, 0.75], np.float32), "item_ids": np.array([[b"a", b"b"], [b"c", b"d"]], object),
                    "p50": np.array([[1.0, 2.0], [3.0, 4.0]])})
        log.record("flat", 4, [{"x": 3.0, "color": "blue", "history": [2.0]}], {"probability": np.array([0.5]),
                   "item_ids": np.array([[b"e", b"f"]], object), "p50": np.array([[5.0, 6.0]])})
        log.record("mixed", 1, [{"amount": 5.0, "image": {"b64": "AAAA"}}], {"score": np.array([0.1])})
        log.record("mixed", 1, [{"amount": "7.5", "image": {"b64": "BBBB"}}], {"score": np.array([0.2])})
        log.flush()
    finally:
        log.close()
    today = dt.datetime.now(dt.timezone.utc).date()
    flat = read_day(tmp_path, "flat", today)
    assert flat["x"].tolist() == [1.5, 2.0, 3.0] and flat["color"].tolist() == ["red", None, "blue"]
    assert [len(values) for values in flat["history"]] == [2, 0, 1]  # an unknown step stays unknown
    assert flat["history"][0][0] == 1.0 and np.isnan(flat["history"][0][1]) and flat["history"][2][0] == 2.0
    assert flat[VERSION_COLUMN].tolist() == [3, 3, 4] and flat[TIME_COLUMN].is_monotonic_increasing
    np.testing.assert_allclose(flat["probability"], [0.25, 0.75, 0.5])
    assert [list(ids) for ids in flat["item_ids"]] == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert [list(values) for values in flat["p50"]] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert sorted(output_names(flat)) == ["item_ids", "p50", "probability"]
    mixed = read_day(tmp_path, "mixed", today)
    assert mixed["amount"].tolist() == ["5.0", "7.5"]  # as sent, one type for the column
    assert [json.loads(value) for value in mixed["image"]] == [{"b64": "AAAA"}, {"b64": "BBBB"}]
    assert output_names(mixed) == ["score"] and mixed["score"].tolist() == pytest.approx([0.1, 0.2])


def test_a_field_that_changes_type_within_a_second_is_written_to_separate_files(tmp_path):
    import datetime as dt

    from solutions_core.serving.request_log import RequestLog, read_day

    log = RequestLog(tmp_path, flush_seconds=3600)
    try:
        log.record("app", 1, [{"amount": 5.0}], {"score": np.array([0.1])})
        with log._lock:
            log._convert()  # converted, not yet written: the next part holds the same field as text
        log.record("app", 1, [{"amount": "seven"}], {"score": np.array([0.2])})
        written = log.flush()
    finally:
        log.close()
    assert len(written) == 2 and log.written_rows == 2
    logged = read_day(tmp_path, "app", dt.datetime.now(dt.timezone.utc).date())
    assert sorted(map(str, logged["amount"])) == ["5.0", "seven"]
