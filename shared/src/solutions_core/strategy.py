"""One place that maps a deployment target to a tf.distribute strategy, a precision policy and XLA.

CPU is the default and what tests use. ``gpu`` uses every visible GPU with MirroredStrategy (or
MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster) and mixed float16; ``tpu`` resolves the
TPU cluster and uses bfloat16. ``edge`` trains like ``cpu``; the difference is at export (TFLite).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

TARGETS = ("cpu", "gpu", "tpu", "edge")


@dataclass
class Runtime:
    target: str
    strategy: Any
    precision: str  # keras dtype policy name
    jit_compile: bool | str
    seed: int = 0
    verbose: int = 1  # candidates with their own learners show progress when > 0

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "strategy": type(self.strategy).__name__,
            "replicas": int(getattr(self.strategy, "num_replicas_in_sync", 1)),
            "precision": self.precision,
            "jit_compile": self.jit_compile,
        }


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_runtime(
    target: str = "cpu", *, seed: int = 0, mixed_precision: bool | None = None, precision: str | None = None, jit_compile: bool | None = None
) -> Runtime:
    """Build the runtime for ``target``; raises ValueError for unknown targets or missing hardware.
    ``precision`` and ``jit_compile`` override the target's choices (``Settings.precision`` /
    ``Settings.jit_compile``): accelerator settings can be exercised on CPU (mixed_bfloat16 runs there)."""
    import keras
    import tensorflow as tf

    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; choose one of {', '.join(TARGETS)}.")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    precision_arg = precision
    keras.utils.set_random_seed(seed)

    if target == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise ValueError("target 'gpu' was requested but TensorFlow sees no GPU; use --target cpu.")
        if "TF_CONFIG" in os.environ and len(json.loads(os.environ["TF_CONFIG"]).get("cluster", {})) > 0:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy()
        precision = "mixed_float16" if mixed_precision is not False else "float32"
        jit: bool | str = True
    elif target == "tpu":
        try:
            # On a TPU VM the resolver finds the local TPU; elsewhere it reads TPU_NAME (a TPU node).
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as problem:
            raise ValueError(
                f"target 'tpu' was requested but no TPU was found ({problem}); run on a TPU VM or set TPU_NAME, or use --target cpu."
            ) from problem
        strategy = tf.distribute.TPUStrategy(resolver)
        precision = "mixed_bfloat16" if mixed_precision is not False else "float32"
        jit = True  # TPUs always compile with XLA
    else:
        strategy = tf.distribute.get_strategy()  # the default (no-op) strategy
        precision = "mixed_float16" if mixed_precision else "float32"
        # XLA on CPU compiles slowly and rarely pays off for small tabular models.
        jit = False

    precision = precision_arg if precision_arg is not None else precision
    jit = jit_compile if jit_compile is not None else jit
    keras.mixed_precision.set_dtype_policy(precision)
    return Runtime(target=target, strategy=strategy, precision=precision, jit_compile=jit, seed=seed)
