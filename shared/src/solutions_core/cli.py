"""One CLI for every app: ``solutions list | validate | train | stage | evaluate | export | batch | monitor | performance | runs | serve | demo | new | remove``.

Orchestrators (Airflow, cron, CI) call these same commands or the functions behind them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="solutions",
    help="Reference ML solutions on TensorFlow/Keras: train, gate, export and serve each app.\n\n"
    "Start with `solutions list`, then `solutions demo` (all apps end to end) or "
    "`solutions train fraud_detection`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file of config overrides.")]
SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", "-s", help="Override one config field: key=value (dots for nesting).")
]
HomeOption = Annotated[Optional[Path], typer.Option("--home", help="Artifacts root (default ./artifacts or $SOLUTIONS_HOME).")]
ContractsDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--contracts-dir",
        help="Folder of contracts named by bare name (searched first; then the working folder, then the suite's data_contracts/).",
    ),
]


def _settings(home: Path | None = None, **overrides: Any):
    from solutions_core.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = home
    return Settings(**values)


def parse_overrides(config_file: Path | None, assignments: list[str] | None) -> dict[str, Any]:
    """Merge a YAML overrides file and ``key=value`` pairs (values parsed as YAML scalars)."""
    import yaml

    overrides: dict[str, Any] = {}
    if config_file:
        if not config_file.exists():
            raise typer.BadParameter(f"Config file {config_file} does not exist.")
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"Config file {config_file} must hold a mapping of fields.")
        overrides.update(loaded)
    for assignment in assignments or []:
        if "=" not in assignment:
            raise typer.BadParameter(f"--set expects key=value, got {assignment!r}.")
        key, raw = assignment.split("=", 1)
        target = overrides
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = yaml.safe_load(raw)
    return overrides


def _solution_and_config(name: str, config_file: Path | None, assignments: list[str] | None):
    from pydantic import ValidationError

    from solutions_core.registry import get_solution

    try:
        solution = get_solution(name)
    except KeyError as problem:
        console.print(f"[red]{problem.args[0]}[/red]")
        raise typer.Exit(2) from None
    try:
        config = solution.make_config(parse_overrides(config_file, assignments))
    except ValidationError as problem:
        console.print(f"[red]Invalid config for {solution.name}:[/red]\n{problem}")
        raise typer.Exit(2) from None
    return solution, config


def _quiet_tensorflow() -> None:
    """Less TensorFlow logging. GPUs stay visible: hiding them (``CUDA_VISIBLE_DEVICES=""``) is the
    user's choice, never ours, or ``--target gpu`` and ``serve`` could not see one."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def metrics_table(title: str, rows: dict[str, dict[str, float]], highlight: str | None = None) -> Table:
    """Metrics down, models across: fits a terminal however many metrics an app reports."""
    table = Table(title=title)
    metric_names = list(dict.fromkeys(k for metrics in rows.values() for k in metrics))
    table.add_column("metric")
    for model in rows:
        table.add_column(model, justify="right", style="bold green" if model == highlight else None)
    for metric in metric_names:
        table.add_row(metric, *[f"{rows[model].get(metric, float('nan')):.4f}" for model in rows])
    return table


def pick_version(registry: Any, name: str, version: int | None) -> Any:
    """The requested published version, or the champion; exits 1 with a message when there is none."""
    chosen = {v.version: v for v in registry.versions(name)}.get(version) if version else registry.champion(name)
    if chosen is None:
        console.print(f"[red]No published version {version or ''} of {name} in {registry.models_dir}.[/red]")
        raise typer.Exit(1)
    return chosen


@app.command("list")
def list_command() -> None:
    """List the installed apps (found through entry points; does not import TensorFlow)."""
    from solutions_core.registry import list_solutions

    table = Table(title="Installed solutions")
    for column in ("name", "package", "version", "entry point"):
        table.add_column(column)
    for entry in list_solutions():
        table.add_row(entry.name, entry.distribution, entry.version, entry.target)
    console.print(table)


@app.command()
def validate(
    name: Annotated[str, typer.Argument(help="App name, e.g. fraud_detection.")],
    config_file: ConfigOption = None,
    assignments: SetOption = None,
    source: Annotated[Optional[str], typer.Option(help="Data file/folder to check (default: generate).")] = None,
    contract: Annotated[Optional[str], typer.Option(help="Contract name or YAML path (default: the app's).")] = None,
    home: HomeOption = None,
    contracts_dir: ContractsDirOption = None,
) -> None:
    """Check data against the app's data contract; exit 1 and list every violated rule if it fails."""
    from solutions_core.training import acquire, context_for

    solution, config = _solution_and_config(name, config_file, assignments)
    updates = {k: v for k, v in {"source": source, "contract": contract}.items() if v}
    config = config.model_copy(update=updates)
    settings = _settings(home, contracts_dir=contracts_dir)
    with clear_errors(f"Cannot validate {solution.name}'s data"):
        context = context_for(solution, config, settings)
        tables = acquire(solution, context, settings)
    failed = False
    for table_name, table_contract in context.contracts.items():
        report = table_contract.validate(tables[table_name])
        console.print(report.format())
        failed |= not report.ok
    raise typer.Exit(1 if failed else 0)


def print_run(result: Any) -> None:
    from solutions_core.training import WorkerResult

    if isinstance(result, WorkerResult):  # a worker of a multi-worker run: the chief prints the run
        console.print(f"{result.app}: {result.task} of {result.workers} trained in step with the chief ({result.keras_steps} Keras steps"
                      + (", then the refit" if result.refitted else "") + "); the chief's output has the run's report.")
        return
    rows = {result.candidate: result.test.metrics}
    if result.champion_before and result.champion_before.get("value") is not None:
        rows[f"champion v{result.champion_before['version']}"] = {result.test.gate_metric: result.champion_before["value"]}
    rows.update({name: evaluation.metrics for name, evaluation in result.baselines.items()})
    console.print(metrics_table(f"{result.app}: test split (candidate vs champion and baselines)", rows, highlight=result.candidate))
    verdict = "[green]promoted[/green]" if result.promoted else "[yellow]rejected[/yellow]"
    version = f" as version {result.version.version} → {result.version.path}" if result.version else ""
    console.print(f"gate ({result.test.gate_metric}): {verdict}{version} — {result.reason}")
    console.print(f"report: {result.run_dir / 'report.json'}")
    for plot in result.plots:
        console.print(f"plot: {plot}")


@app.command()
def train(
    name: Annotated[str, typer.Argument(help="App name, e.g. fraud_detection.")],
    config_file: ConfigOption = None,
    assignments: SetOption = None,
    target: Annotated[str, typer.Option(help="cpu | gpu | tpu | edge.")] = "cpu",
    home: HomeOption = None,
    contracts_dir: ContractsDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    precision: Annotated[
        Optional[str], typer.Option(help="float32 | mixed_float16 | mixed_bfloat16 (default: the target's).")
    ] = None,
    jit_compile: Annotated[Optional[bool], typer.Option("--jit-compile/--no-jit-compile", help="XLA (default: the target's).")] = None,
) -> None:
    """Run the whole pipeline: validate → train candidates → evaluate vs baselines → gate → publish."""
    from solutions_core.contracts import ContractViolation
    from solutions_core.training import run_training

    _quiet_tensorflow()
    solution, config = _solution_and_config(name, config_file, assignments)
    settings = _settings(home, target=target, contracts_dir=contracts_dir, precision=precision, jit_compile=jit_compile)
    try:
        with clear_errors(f"Cannot train {solution.name} — nothing was published"):
            result = run_training(
                solution, config, settings, verbose=0 if quiet else 1, report=lambda m: console.print(f"[cyan]▸[/cyan] {m}")
            )
    except ContractViolation as violation:
        console.print(f"[red]Data contract violated — nothing was trained or published.[/red]\n{violation}")
        raise typer.Exit(1) from None
    print_run(result)


@app.command()
def stage(
    stage_name: Annotated[str, typer.Argument(metavar="STAGE", help="A pipeline stage, e.g. train_candidates.")],
    name: Annotated[str, typer.Argument(help="App name.")],
    run_id: Annotated[str, typer.Option(help="The run's folder name (the stages of one run share it).")],
    target: Annotated[str, typer.Option(help="cpu | gpu | tpu | edge.")] = "cpu",
    preset: Annotated[str, typer.Option(help="default | demo | tiny.")] = "default",
    overrides: Annotated[str, typer.Option("--overrides", help="Config overrides as a JSON object.")] = "{}",
    source: Annotated[Optional[str], typer.Option(help="Data to load instead of generating.")] = None,
    min_delta: Annotated[float, typer.Option(help="How much the candidate must beat the champion by.")] = 0.0,
    home: HomeOption = None,
) -> None:
    """Run one stage of a run, with what the earlier stages left in its folder; prints the stage's
    summary as JSON. What an orchestrator's pod runs (the Airflow DAG's stage in its own pod)."""
    import json

    from solutions_core.contracts import ContractViolation
    from solutions_core.orchestration import run_stage

    _quiet_tensorflow()
    try:
        parsed = json.loads(overrides)
    except json.JSONDecodeError as problem:
        raise typer.BadParameter(f"--overrides must be a JSON object: {problem}") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("--overrides must be a JSON object.")
    try:
        with clear_errors(f"Stage {stage_name} of {name} failed"):
            summary = run_stage(stage_name, name, run_id, target=target, source=source, preset=preset, overrides=parsed,
                                min_delta=min_delta, home=str(home) if home else None, report=lambda m: console.print(f"[cyan]▸[/cyan] {m}"))
    except ContractViolation as violation:
        console.print(f"[red]Data contract violated — nothing was trained or published.[/red]\n{violation}")
        raise typer.Exit(1) from None
    print(json.dumps(summary))


@contextmanager
def clear_errors(what: str) -> Iterator[None]:
    """Bad data or a bad config (a ``ValueError`` naming what is wrong, a missing file) ends the command
    with that message and exit code 1, not a traceback; ``SOLUTIONS_TRACEBACK=1`` shows the traceback.
    A contract violation passes through for the caller's own message."""
    from solutions_core.contracts import ContractViolation

    try:
        yield
    except ContractViolation:
        raise
    except (ValueError, FileNotFoundError) as problem:
        if os.environ.get("SOLUTIONS_TRACEBACK"):
            raise
        console.print(f"[red]{what}:[/red] {problem}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def evaluate(
    name: Annotated[str, typer.Argument(help="App name.")],
    version: Annotated[Optional[int], typer.Option(help="Model version (default: the champion).")] = None,
    config_file: ConfigOption = None,
    assignments: SetOption = None,
    home: HomeOption = None,
) -> None:
    """Score a published version on the test split of the configured data (generated or --set source=...)."""
    from solutions_core.export import load_signature, predict_frame
    from solutions_core.model_registry import ModelRegistry
    from solutions_core.training import acquire, context_for, scores_of, validate as validate_tables

    _quiet_tensorflow()
    solution, config = _solution_and_config(name, config_file, assignments)
    settings = _settings(home)
    registry = ModelRegistry(settings.resolved_models_dir())
    chosen = pick_version(registry, solution.name, version)
    context = context_for(solution, config, settings)
    tables = acquire(solution, context, settings)
    validate_tables(tables, context.contracts)
    examples = solution.data.prepare(context, tables)
    context = context_for(solution, solution.data.resolve_config(context, examples), settings)
    splits = solution.data.split(context, examples)
    signature = load_signature(chosen.path, chosen.metadata().get("custom_ops", solution.custom_ops))
    outputs = predict_frame(signature, splits.test, solution.predict_batch_size)
    scores = scores_of(solution, solution.evaluation.evaluate(context, splits.test, outputs))
    console.print(metrics_table(f"{solution.name} v{chosen.version}: test split", {f"v{chosen.version}": scores.metrics}))


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="App name.")],
    out: Annotated[Path, typer.Option(help="Destination folder.")],
    version: Annotated[Optional[int], typer.Option(help="Model version (default: the champion).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="saved_model | tflite.")] = "saved_model",
    home: HomeOption = None,
) -> None:
    """Copy a published version out as a SavedModel (TF Serving layout) or convert it to TFLite."""
    import shutil

    from solutions_core.model_registry import ModelRegistry

    settings = _settings(home)
    registry = ModelRegistry(settings.resolved_models_dir())
    chosen = pick_version(registry, name, version)
    if fmt == "saved_model":
        destination = out / name / str(chosen.version)
        shutil.copytree(chosen.path, destination, dirs_exist_ok=True)
        console.print(f"SavedModel v{chosen.version} → {destination}")
    elif fmt == "tflite":
        published = sorted((chosen.path / "assets.extra").glob("*.tflite"))
        if published:  # the app's own edge models, which passed its parity gate: copy them out
            out.mkdir(parents=True, exist_ok=True)
            for source in published:
                shutil.copyfile(source, out / f"{name}-v{chosen.version}-{source.name}")
                console.print(f"TFLite v{chosen.version} → {out / f'{name}-v{chosen.version}-{source.name}'}")
            return
        if (chosen.metadata().get("edge") or {}).get("passed") is False:
            console.print(f"[red]v{chosen.version} failed its edge parity gate ({chosen.metadata()['edge'].get('why')}); "
                          "no edge model was published.[/red]")
            raise typer.Exit(1)
        _quiet_tensorflow()
        from solutions_core.export import convert_to_tflite

        try:
            path = convert_to_tflite(chosen.path, out / f"{name}-v{chosen.version}.tflite")
        except ValueError as problem:
            console.print(f"[red]{problem}[/red]", soft_wrap=True)
            raise typer.Exit(1) from None
        console.print(f"TFLite v{chosen.version} → {path}")
    else:
        raise typer.BadParameter("--format must be saved_model or tflite.")


@app.command()
def batch(
    name: Annotated[str, typer.Argument(help="App name, e.g. fraud_detection.")],
    date: Annotated[Optional[str], typer.Option(help="Logical date YYYY-MM-DD (default: today).")] = None,
    config_file: ConfigOption = None,
    assignments: SetOption = None,
    source: Annotated[Optional[str], typer.Option(help="Input data (default: the tables the last training stored).")] = None,
    home: HomeOption = None,
    shards: Annotated[int, typer.Option(min=1, help="Parts the work is split into, run one after another (the batch DAG runs them in parallel).")] = 1,
) -> None:
    """The app's batch work with the champion for one date (what the batch DAG runs): e.g. score that
    day's transactions. Outputs replace <home>/batch/<app>/date=<date>/ (re-running a date is safe)."""
    import datetime as dt

    from solutions_core.batch import run_batch
    from solutions_core.contracts import ContractViolation

    _quiet_tensorflow()
    solution, config = _solution_and_config(name, config_file, assignments)
    if solution.batch is None:
        console.print(f"[yellow]{solution.name} has no batch work (its Solution sets no `batch` part).[/yellow]")
        raise typer.Exit(2)
    if source:
        config = config.model_copy(update={"source": source})
    try:
        logical_date = dt.date.fromisoformat(date) if date else dt.date.today()
    except ValueError:
        raise typer.BadParameter(f"--date must be YYYY-MM-DD, got {date!r}.") from None
    try:
        result = run_batch(solution, config, _settings(home), logical_date=logical_date, shards=shards,
                           report=lambda m: console.print(f"[cyan]▸[/cyan] {m}"))
    except ContractViolation as violation:
        console.print(f"[red]Data contract violated — no batch output was written.[/red]\n{violation}")
        raise typer.Exit(1) from None
    except FileNotFoundError as problem:
        console.print(f"[red]{problem}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"{solution.name} {result.logical_date}: champion v{result.champion_version} → {result.folder}")


@app.command()
def monitor(
    name: Annotated[str, typer.Argument(help="App name.")],
    date: Annotated[Optional[str], typer.Option(help="A day of the server's request log, YYYY-MM-DD (default: yesterday).")] = None,
    source: Annotated[
        Optional[Path], typer.Option(help="Instead of the log: served requests (Parquet or CSV), the contract's fields and the outputs if logged.")
    ] = None,
    version: Annotated[Optional[int], typer.Option(help="The version to compare with (default: the one that served most of the rows, else the champion).")] = None,
    label: Annotated[Optional[str], typer.Option(help="What the rows are (default: the date, or the file's name).")] = None,
    home: HomeOption = None,
) -> None:
    """Compare a day of served requests (the server's request log, or --source) with the version's
    training statistics, per column and output; writes drift.json, drift.png and index.html under
    <home>/runs/<app>/monitor/<label>/ and exits 1 when a column crosses its threshold."""
    import datetime as dt
    import re

    from solutions_core.model_registry import ModelRegistry
    from solutions_core.monitoring import monitor_version, read_served
    from solutions_core.serving.request_log import read_day, serving_version

    settings = _settings(home)
    registry = ModelRegistry(settings.resolved_models_dir())
    with clear_errors(f"Cannot monitor {name}"):
        if source is not None:
            served, label = read_served(source), label or source.stem
        else:
            try:
                day = dt.date.fromisoformat(date) if date else dt.date.today() - dt.timedelta(days=1)
            except ValueError:
                raise typer.BadParameter(f"--date must be YYYY-MM-DD, got {date!r}.") from None
            served, label = read_day(settings.resolved_data_dir(), name, day), label or day.isoformat()
        if version is None:
            version = serving_version(served)
        chosen = pick_version(registry, name, version)
        out_dir = settings.resolved_runs_dir() / name / "monitor" / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).lstrip(".") or "served")
        report, files = monitor_version(chosen, served, label=label, out_dir=out_dir)
    table = Table(title=f"{name} v{chosen.version}: {label}, {report.rows:,} served rows vs training")
    for column in ("part", "name", "measure", "value", "threshold", "verdict"):
        table.add_column(column)
    for drift in report.columns:
        verdict = "[red]DRIFTED[/red]" if drift.drifted else "ok"
        table.add_row(drift.part, drift.name, drift.measure, f"{drift.value:.4f}", f"{drift.threshold:g}", verdict)
    console.print(table)
    console.print(f"report: {files['html']}")
    if report.drifted:
        console.print(f"[red]Drift in {', '.join(d.name for d in report.drifted)}.[/red]")
        raise typer.Exit(1)


@app.command()
def performance(
    name: Annotated[str, typer.Argument(help="App name.")],
    outcomes: Annotated[
        Path,
        typer.Option(help="What happened after the requests (Parquet or CSV, the app's table format): labels that arrived later "
                          "(fraud chargebacks, confirmed defects), later interactions (recommendation), realized demand (forecasting)."),
    ],
    version: Annotated[Optional[int], typer.Option(help="Only requests this version answered (default: the one that answered most).")] = None,
    home: HomeOption = None,
) -> None:
    """The gate metric per day of the request log, on the requests whose outcome arrived; writes
    performance.csv and performance.png under <home>/runs/<app>/performance/."""
    from solutions_core.model_registry import ModelRegistry
    from solutions_core.monitoring import performance_by_day, plot_performance, read_served
    from solutions_core.registry import get_solution
    from solutions_core.serving.request_log import VERSION_COLUMN, read_log, serving_version

    settings = _settings(home)
    solution = get_solution(name)
    with clear_errors(f"Cannot score {name} over time"):
        logged = read_log(settings.resolved_data_dir(), solution.name)
        version = version if version is not None else serving_version(logged)
        chosen = pick_version(ModelRegistry(settings.resolved_models_dir()), solution.name, version)
        table = performance_by_day(solution, chosen, logged[logged[VERSION_COLUMN] == chosen.version], read_served(outcomes))
    folder = settings.resolved_runs_dir() / solution.name / "performance"
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "performance.csv", index=False)
    metric = solution.gate.metric
    tested = chosen.metadata().get("test_metrics", {}).get(metric)
    picture = plot_performance(table, metric, tested, folder / "performance.png", f"{solution.name} v{chosen.version}: {metric} per day, once outcomes arrived")
    shown = Table(title=f"{solution.name} v{chosen.version}: {metric} per day (test split at publish: {tested if tested is None else f'{tested:.4f}'})")
    for column in ("date", "requests with outcomes", metric):
        shown.add_column(column)
    for row in table.itertuples(index=False):
        shown.add_row(str(row.date), str(row.rows), f"{getattr(row, metric):.4f}")
    console.print(shown)
    console.print(f"plot: {picture}")


@app.command()
def runs(
    words: Annotated[Optional[list[str]], typer.Argument(metavar="[APP] | compare A B", help="An app to list, or `compare` and two runs (APP/RUN_ID).")] = None,
    home: HomeOption = None,
) -> None:
    """The run history: every training run with its gate verdict, gate metric, version, data
    fingerprints and contract versions (`solutions runs [APP]`), or two runs side by side
    (`solutions runs compare fraud_detection/RUN_A fraud_detection/RUN_B`). TensorBoard:
    `tensorboard --logdir <home>/runs/<app>`."""
    from solutions_core.runs import comparison, find_run, list_runs

    settings = _settings(home)
    words = words or []
    with clear_errors("Cannot show the runs"):
        if words[:1] == ["compare"]:
            if len(words) != 3:
                raise typer.BadParameter("Give two runs to compare: solutions runs compare APP/RUN_A APP/RUN_B")
            first, second = find_run(settings.resolved_runs_dir(), words[1]), find_run(settings.resolved_runs_dir(), words[2])
            table = Table(title=f"{first.reference} vs {second.reference}")
            for column in ("", first.reference, second.reference):
                table.add_column(column)
            for what, a, b in comparison(first, second):
                table.add_row(what, a, b, style="bold" if a != b and what.startswith(("test", "status", "data", "contract")) else None)
            console.print(table)
            return
        if len(words) > 1:
            raise typer.BadParameter("List one app's runs (solutions runs APP), or compare two (solutions runs compare A B).")
        records = list_runs(settings.resolved_runs_dir(), words[0] if words else None)
    if not records:
        console.print(f"No runs under {settings.resolved_runs_dir()}" + (f" for {words[0]}" if words else "") + ".")
        return
    table = Table(title=f"Runs under {settings.resolved_runs_dir()}")
    for column in ("run", "finished", "status", "version", "candidate", "gate metric", "best baseline", "data", "contracts"):
        table.add_column(column)
    for record in records:
        best = max((v for v in record.baselines.values() if v is not None), default=None) if record.baselines else None
        status = {"promoted": "[green]promoted[/green]", "rejected": "[yellow]rejected[/yellow]"}.get(record.status, f"[red]{record.status}[/red]")
        table.add_row(
            record.reference, record.finished_at.strftime("%Y-%m-%d %H:%M") if record.finished_at else "—", status,
            str(record.version or "—"), record.candidate or "—",
            f"{record.gate_metric} {record.value:.4f}" if record.value is not None else "—",
            f"{best:.4f}" if best is not None else "—",
            ", ".join(record.fingerprints.values()) or "—", ", ".join(record.contracts.values()) or "—",
        )
    console.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="REST port (TF Serving's default is 8501).")] = 8501,
    grpc_port: Annotated[Optional[int], typer.Option(help="gRPC port (TF Serving's default 8500; 0 = off).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Server processes on the port (each loads every model).")] = None,
    home: HomeOption = None,
    poll_seconds: Annotated[float, typer.Option(help="Check for new versions and config changes this often (0 = never).")] = 2.0,
) -> None:
    """Serve every published model with TF Serving's REST and gRPC APIs (hot-reloads new versions and
    the model config; limits, batching and the API key come from SOLUTIONS_* settings)."""
    from solutions_core.serving.app import serve as run_server

    _quiet_tensorflow()
    run_server(_settings(home, host=host, port=port, grpc_port=grpc_port, workers=workers), poll_seconds=poll_seconds)


def _edit_serving_config(home: Path | None, app_name: str, change: Any) -> None:
    """Apply ``change(entry, traffic) -> (entry, traffic)`` to one model's entry of the model config,
    after checking the versions it names exist; the running server picks the file up on its next poll."""
    from dataclasses import replace

    from solutions_core.model_registry import ModelRegistry
    from solutions_core.serving.model_config import ModelEntry, load_config, write_config

    models_dir = _settings(home).resolved_models_dir()
    try:
        config = load_config(models_dir)
    except ValueError as problem:
        console.print(f"[red]{problem}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    on_disk = [v.version for v in ModelRegistry(models_dir).versions(app_name)]
    if not on_disk:
        console.print(f"[red]No published version of {app_name} in {models_dir}.[/red]")
        raise typer.Exit(1)
    entry = config.models.get(app_name) or ModelEntry(app_name, models_dir / app_name)
    try:
        entry, split = change(entry, config.traffic.get(app_name), on_disk)
    except ValueError as problem:
        console.print(f"[red]{problem}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    traffic = {k: v for k, v in config.traffic.items() if k != app_name} | ({app_name: split} if split else {})
    path = write_config(models_dir, replace(config, models={**config.models, app_name: entry}, traffic=traffic))
    labels = ", ".join(f"{k}→v{v}" for k, v in sorted(entry.labels.items())) or "none"
    share = f"; {split.percent:g} % of un-versioned traffic to '{split.label}'" if split else ""
    console.print(f"{app_name}: labels {labels}{share} ({path}; a running server applies it within a poll)")


@app.command()
def label(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app (model name).")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="e.g. stable, canary.")],
    version: Annotated[Optional[int], typer.Argument(help="The version the label points at (omit with --remove).")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Delete the label (and its traffic share).")] = False,
    percent: Annotated[Optional[float], typer.Option(help="Send this % of un-versioned requests to the labelled version.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Request field that keeps an entity on one version (e.g. card_id).")] = None,
    home: HomeOption = None,
) -> None:
    """Point a version label at a version, without restarting the server: ``stable`` is what
    un-versioned requests get; with --percent a canary takes that share of them, sticky per --key."""
    from dataclasses import replace

    from solutions_core.serving.model_config import STABLE, TrafficSplit

    def change(entry: Any, split: Any, on_disk: list[int]) -> Any:
        labels = dict(entry.labels)
        if remove:
            labels.pop(label_name, None)
            return replace(entry, labels=labels), (None if split and split.label == label_name else split)
        if version is None or version not in on_disk:
            raise ValueError(f"{app_name} has no version {version}; published: {on_disk}.")
        labels[label_name] = version
        if percent is not None:
            if label_name == STABLE:
                raise ValueError("The stable label takes the traffic no split sends elsewhere; give --percent to a canary label.")
            split = TrafficSplit(label_name, percent, key)
        return replace(entry, labels=labels), split

    _edit_serving_config(home, app_name, change)


@app.command()
def rollback(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app (model name).")],
    to: Annotated[Optional[int], typer.Option("--to", help="The version to serve (default: the one before the served one).")] = None,
    home: HomeOption = None,
) -> None:
    """Serve an earlier version now: labels it ``stable`` (un-versioned requests go there) and ends any
    canary split. Newer versions stay on disk; ``solutions label APP stable N`` rolls forward."""
    from dataclasses import replace

    from solutions_core.serving.model_config import STABLE

    def change(entry: Any, split: Any, on_disk: list[int]) -> Any:
        current = entry.labels.get(STABLE, max(on_disk))
        target = to if to is not None else max((v for v in on_disk if v < current), default=None)
        if target is None:
            raise ValueError(f"{app_name} v{current} is the oldest published version: nothing to roll back to.")
        if target not in on_disk:
            raise ValueError(f"{app_name} has no version {target}; published: {on_disk}.")
        labels = {k: v for k, v in entry.labels.items() if split is None or k != split.label}
        return replace(entry, labels={**labels, STABLE: target}), None

    _edit_serving_config(home, app_name, change)


RootOption = Annotated[
    Optional[Path], typer.Option("--root", help="The suite's checkout (default: the workspace around the working folder).")
]
LockOption = Annotated[bool, typer.Option("--lock/--no-lock", help="Re-lock the workspace (uv lock) afterwards.")]


def _checkout(root: Path | None) -> Path:
    """The workspace root: the given folder, else the nearest folder up from here whose pyproject
    declares the uv workspace."""
    if root is not None:
        return root
    for folder in [Path.cwd(), *Path.cwd().parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.exists() and "[tool.uv.workspace]" in pyproject.read_text():
            return folder
    raise ValueError("Not inside the suite's checkout (no pyproject.toml with [tool.uv.workspace] here or above); pass --root.")


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="The new app's name, lower_snake_case (e.g. churn_prediction).")],
    source: Annotated[str, typer.Option("--from", help="The app to copy (e.g. fraud_detection).")],
    root: RootOption = None,
    lock: LockOption = True,
) -> None:
    """A complete new app from an existing one: package, contracts, config, model, tests, README,
    notebook and DAG settings, with the names replaced; added to the workspace and the lock. Then
    `make install` and `solutions train NAME`."""
    from solutions_core.scaffold import new_app

    with clear_errors("Cannot create the app"):  # a ScaffoldError is a ValueError: its message, no traceback
        written = new_app(_checkout(root), source, name, lock=lock)
    console.print(f"[green]{name}[/green]: {len(written)} files from {source}. Next: `make install`, then `solutions train {name}`.", soft_wrap=True)


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The app to remove.")],
    root: RootOption = None,
    lock: LockOption = True,
) -> None:
    """Remove an app: its package, tests, notebook, its contracts (and data-set contracts no other app
    names), its workspace entry and DAG settings. Published models and runs are left alone."""
    from solutions_core.scaffold import remove_app

    with clear_errors("Cannot remove the app"):
        checkout = _checkout(root)
        removed = remove_app(checkout, name, lock=lock)
    console.print(f"Removed {name}: " + ", ".join(str(path.relative_to(checkout.resolve())) for path in removed), soft_wrap=True)


@app.command()
def demo(
    apps: Annotated[Optional[list[str]], typer.Option("--app", help="Only these apps (default: all installed).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Examples to generate per app, in each app's unit: rows, images (default: each app's).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Each app's tiny configuration: seconds, not minutes (a smoke test).")] = False,
    home: HomeOption = None,
) -> None:
    """Every app end to end: train on generated data, show metrics vs baselines, publish, start the API
    on 127.0.0.1, send a TF-Serving request, print the answer, stop the server."""
    from solutions_core.demo import run_demo

    _quiet_tensorflow()
    code = run_demo(apps, size=size, home=home, console=console, quick=quick)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
