"""One place that maps a deployment target to a tf.distribute strategy, a precision policy and XLA.

CPU is the default and what tests use. ``gpu`` uses every visible GPU with MirroredStrategy and mixed
float16; ``tpu`` resolves the TPU cluster and uses bfloat16. ``edge`` trains like ``cpu``; the difference
is at export (TFLite).

Many machines: when ``TF_CONFIG`` lists a cluster of two or more tasks (a Kubeflow TFJob sets it; an
indexed Kubernetes Job gets it from ``cluster_from_indexed_job``), ``cpu``, ``edge`` and ``gpu`` train with
MultiWorkerMirroredStrategy: every worker runs the same Keras steps on its shard of each batch and the
gradients are all-reduced. The chief (task ``chief``, else worker 0) is the one that evaluates, gates and
publishes (``solutions_core.training.run_training``).
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
    workers: int = 1  # processes training together (MultiWorkerMirroredStrategy when > 1)
    task: str = "chief"  # this process's TF_CONFIG task, e.g. "worker 1"
    is_chief: bool = True  # the one process that evaluates, gates and publishes

    def describe(self) -> dict[str, Any]:
        described = {
            "target": self.target,
            "strategy": type(self.strategy).__name__,
            "replicas": int(getattr(self.strategy, "num_replicas_in_sync", 1)),
            "precision": self.precision,
            "jit_compile": self.jit_compile,
        }
        if self.workers > 1:
            described |= {"workers": self.workers, "task": self.task}
        return described


@dataclass(frozen=True)
class Cluster:
    """What ``TF_CONFIG`` says: every task's address by type, and which task this process is."""

    tasks: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        return sum(len(addresses) for addresses in self.tasks.values())

    @property
    def is_chief(self) -> bool:
        # TensorFlow's rule: the "chief" task when the cluster has one, else worker 0.
        if self.tasks.get("chief"):
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def cluster_from_environment(environ: Any = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None when it is unset or names a single task.
    A malformed ``TF_CONFIG`` is a ValueError naming the variable (TensorFlow would fail later and
    less clearly)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
        tasks = {str(kind): [str(address) for address in addresses] for kind, addresses in (parsed.get("cluster") or {}).items()}
        task = parsed.get("task") or {}
        cluster = Cluster(tasks, str(task.get("type", "")), int(task.get("index", 0)))
    except (ValueError, TypeError, AttributeError) as problem:
        raise ValueError(
            f"TF_CONFIG is not a valid cluster description ({problem}); it should look like "
            '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None
    if cluster.size < 2:
        return None
    if cluster.task_type not in cluster.tasks or not 0 <= cluster.task_index < len(cluster.tasks[cluster.task_type]):
        raise ValueError(
            f"TF_CONFIG's task {cluster.task_type!r} {cluster.task_index} is not in its cluster {cluster.tasks}; "
            "each process must name its own task."
        )
    if set(cluster.tasks) - {"chief", "worker"}:
        raise ValueError(
            f"TF_CONFIG lists task types {sorted(cluster.tasks)}; MultiWorkerMirroredStrategy takes 'chief' and 'worker' "
            "only (parameter servers are a different strategy: see the README's scale-out section)."
        )
    return cluster


def cluster_from_indexed_job(environ: Any = None) -> str | None:
    """``TF_CONFIG`` for a pod of an indexed Kubernetes Job: ``SOLUTIONS_WORKER_HOSTS`` (comma-separated
    ``host:port``, one per completion index, e.g. the pods' names under a headless Service) and the index
    Kubernetes sets in ``JOB_COMPLETION_INDEX``. None when those are not set."""
    environ = os.environ if environ is None else environ
    hosts = [host.strip() for host in environ.get("SOLUTIONS_WORKER_HOSTS", "").split(",") if host.strip()]
    index = environ.get("JOB_COMPLETION_INDEX")
    if not hosts or index is None:
        return None
    if not index.isdigit() or int(index) >= len(hosts):
        raise ValueError(f"JOB_COMPLETION_INDEX={index!r} does not name one of the {len(hosts)} SOLUTIONS_WORKER_HOSTS.")
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(index)}})


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

    if "TF_CONFIG" not in os.environ and (derived := cluster_from_indexed_job()):
        os.environ["TF_CONFIG"] = derived
    cluster = cluster_from_environment() if target != "tpu" else None
    if target == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise ValueError("target 'gpu' was requested but TensorFlow sees no GPU; use --target cpu.")
        strategy = tf.distribute.MultiWorkerMirroredStrategy() if cluster else tf.distribute.MirroredStrategy()
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
        # Many CPU workers all-reduce over gRPC; one is the default (no-op) strategy.
        strategy = tf.distribute.MultiWorkerMirroredStrategy() if cluster else tf.distribute.get_strategy()
        precision = "mixed_float16" if mixed_precision else "float32"
        # XLA on CPU compiles slowly and rarely pays off for small tabular models.
        jit = False

    precision = precision_arg if precision_arg is not None else precision
    jit = jit_compile if jit_compile is not None else jit
    keras.mixed_precision.set_dtype_policy(precision)
    runtime = Runtime(target=target, strategy=strategy, precision=precision, jit_compile=jit, seed=seed)
    if cluster:
        _repair_keras_for_multi_worker()
        runtime.workers, runtime.task, runtime.is_chief = cluster.size, f"{cluster.task_type} {cluster.task_index}", cluster.is_chief
    return runtime


def from_chief(runtime: Runtime, value: float) -> float:
    """The chief's ``value`` on every worker (a collective: every worker must call it at the same point
    of the run, as with any step). One process: ``value`` itself."""
    if runtime.workers < 2:
        return value
    import tensorflow as tf

    strategy = runtime.strategy
    mine = float(value) if runtime.is_chief else 0.0
    # Each worker contributes one replica value; only the chief's is non-zero, so the sum is its value.
    contributions = strategy.run(lambda: tf.constant(mine / len(strategy.extended.worker_devices), tf.float64))
    return float(strategy.reduce("SUM", contributions, axis=None))


# ---- Keras 3 with MultiWorkerMirroredStrategy ----------------------------------------------------------
# Keras 3.15's TensorFlow trainer has two bugs on MultiWorkerMirroredStrategy (keras-team/keras#20585,
# tensorflow/tensorflow#72388): it all-reduces the first data batch just to learn its shapes, which fails
# on per-replica values, and it reduces scalar logs (the loss) over axis 0, which scalars lack. The two
# repairs below change nothing else: shapes come from this worker's own batch, and scalars are averaged
# over the workers as the trainer means to. Installed when a run has two or more workers, and then only
# models on MultiWorkerMirroredStrategy take the repaired paths (fit and evaluate, whoever built the model).


def _repair_keras_for_multi_worker() -> None:
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "repaired_for_multi_worker", False):
        return
    original_reduce = trainer.reduce_per_replica
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=0 if value.shape.rank else None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if strategy is None or not trainer._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break

        def local_value(value: Any) -> Any:
            return strategy.experimental_local_results(value)[0] if isinstance(value, tf.distribute.DistributedValues) else value

        with strategy.scope():
            self._symbolic_build(data_batch=tree.map_structure(local_value, data_batch))

    reduce_per_replica.repaired_for_multi_worker = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
