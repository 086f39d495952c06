"""Training speed of each app's Keras candidate on this CPU with the accelerator settings, in one run:
float32, XLA (jit_compile), mixed_bfloat16, and both, as ratios to float32 — the CPU baseline for what
GPUs and TPUs gain (on CPU, bfloat16 is emulated and XLA mostly pays for its compile).

    .venv/bin/python benchmarks/accelerator_settings.py [--apps fraud_detection ...] [--epochs 3]

Each cell is one full `run_training` of the app's tiny config restricted to its first Keras candidate
(the same data and seed in every cell, after one uncounted warm-up run); the figure is that candidate's
fit seconds (build, compile, fit).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {"float32": {}, "xla": {"jit_compile": True}, "mixed_bfloat16": {"precision": "mixed_bfloat16"},
            "mixed_bfloat16 + xla": {"precision": "mixed_bfloat16", "jit_compile": True}}
KERAS = {"fraud_detection": "keras_mlp", "vision_qc": "supervised", "recommendation": "two_tower_dcn", "demand_forecasting": "global_quantile_mlp"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", nargs="+", default=list(KERAS))
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()

    import keras

    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    print("| app | candidate | " + " | ".join(f"{name} s (× float32)" for name in SETTINGS) + " |")
    print("|---|---|" + "---|" * len(SETTINGS))
    for app in arguments.apps:
        solution = get_solution(app)
        tiny = solution.tiny_config()
        candidate = KERAS[app]
        config = tiny.model_copy(update={
            "candidates": [candidate],
            "gate": tiny.gate.model_copy(update={"beat_baselines": False}),
            "training": tiny.training.model_copy(update={"epochs": arguments.epochs}),
        })
        seconds = {}
        # A float32 run first, not counted: the first run of an app pays one-time costs (imports, traces)
        # that would otherwise flatter every later cell.
        for name, overrides in [("warm-up", {}), *SETTINGS.items()]:
            with tempfile.TemporaryDirectory() as home:
                try:
                    result = run_training(solution, config, Settings(home=home, **overrides), verbose=0)
                finally:
                    keras.mixed_precision.set_dtype_policy("float32")
                seconds[name] = next(c.fit_seconds for c in result.candidates if c.name == candidate)
        cells = " | ".join(f"{seconds[name]:.1f} ({seconds[name] / seconds['float32']:.2f})" for name in SETTINGS)
        print(f"| {app} | {candidate} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
