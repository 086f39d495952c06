"""Vision QC: the chosen model vs the baselines on the test split, and its edge (int8 TFLite) figures,
over several seeds.

    .venv/bin/python benchmarks/vision_quality.py --size 800 --seeds 0 1 [--set image_size=128 ...]
    .venv/bin/python benchmarks/vision_quality.py --config solutions/vision_qc/configs/mnist-5k.yaml --seeds 0 1 2

Each seed is a full `run_training` (new images, new models, baselines in the same run) in a temporary
home. Printed: each candidate's validation AUROC, the chosen model's test image AUROC and pixel AUROC
next to every baseline of the run (patch Gaussian, histogram and pixel logistic regression; ratio = model /
best baseline), what the gate did, and the int8 edge model's size, single-thread latency, XNNPACK
partitions and parity with the SavedModel. ``--config`` takes a committed real-data config (its
``source`` and settings; ``--size`` then does not apply).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_overrides(pairs: list[str]) -> dict:
    overrides: dict = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = overrides
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800, help="Images to generate per seed.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--set", nargs="*", default=[], help="Config overrides, e.g. image_size=128 training.epochs=20.")
    parser.add_argument("--config", default=None, help="A YAML config (e.g. solutions/vision_qc/configs/mnist-5k.yaml).")
    arguments = parser.parse_args()
    file_overrides: dict = {}
    if arguments.config:
        import yaml

        file_overrides = yaml.safe_load(open(arguments.config)) or {}

    from solutions_core.registry import get_solution
    from solutions_core.settings import Settings
    from solutions_core.training import run_training

    solution = get_solution("vision_qc")
    rows = []
    for seed in arguments.seeds:
        with tempfile.TemporaryDirectory() as home:
            started = time.perf_counter()
            from solutions_core.solution import deep_merge

            base = file_overrides if arguments.config else {"size": arguments.size}
            config = solution.make_config(deep_merge(deep_merge(base, parse_overrides(arguments.set)), {"seed": seed}))
            result = run_training(solution, config, Settings(home=home), verbose=0)
            edge = result.edge.report if result.edge else {}
            rows.append(
                {
                    "seed": seed,
                    "chosen": result.candidate,
                    "valid": {c.name: round(c.valid.gate_value, 3) for c in result.candidates},
                    "test": result.test.metrics,
                    "baselines": {name: ev.metrics for name, ev in result.baselines.items()},
                    "int8": edge.get("int8", {}),
                    "edge_passed": edge.get("passed"),
                    "gate": f"{result.status}: {result.reason}",
                    "seconds": time.perf_counter() - started,
                }
            )
            print(json.dumps(rows[-1], default=str), flush=True)

    print(f"\n{arguments.config or f'size={arguments.size}'} overrides={arguments.set}")
    names = sorted({name for row in rows for name in row["baselines"]})
    print("| seed | chosen (valid AUROC) | test AUROC | accuracy | " + " | ".join(f"{n} AUROC / acc" for n in names)
          + " | model / best baseline | gate | int8 KB | int8 ms | partitions | int8 agreement | edge gate | s |")
    print("|" + "---|" * (10 + len(names)))
    for row in rows:
        baselines = {name: metrics["image_auroc"] for name, metrics in row["baselines"].items()}
        best = max(baselines.values())
        int8 = row["int8"]
        cells = [f"{row['baselines'][n]['image_auroc']:.3f} / {row['baselines'][n]['accuracy']:.3f}" if n in row["baselines"] else "-" for n in names]
        print(
            f"| {row['seed']} | {row['chosen']} ({', '.join(f'{k} {v}' for k, v in row['valid'].items())}) "
            f"| {row['test']['image_auroc']:.3f} | {row['test']['accuracy']:.3f} | " + " | ".join(cells)
            + f" | {row['test']['image_auroc'] / best:.3f} | {row['gate'].split(':')[0]} | {int8.get('size_kb', '-')} "
            f"| {int8.get('latency_ms_1_thread', '-')} | {int8.get('delegate_partitions', '-')} "
            f"| {int8.get('validation', {}).get('decision_agreement', float('nan')):.3f} "
            f"| {'passed' if row['edge_passed'] else 'failed'} | {row['seconds']:.0f} |"
        )

if __name__ == "__main__":
    main()
