"""Targets map to a strategy, precision and XLA setting in one place."""

from __future__ import annotations

import keras
import pytest

from solutions_core.strategy import make_runtime


def test_cpu_is_the_default_strategy_in_float32():
    runtime = make_runtime("cpu")
    assert runtime.describe()["replicas"] == 1
    assert runtime.precision == "float32" and runtime.jit_compile is False
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_edge_trains_like_cpu():
    assert make_runtime("edge").describe()["strategy"] == make_runtime("cpu").describe()["strategy"]


def test_unknown_target_is_a_clear_error():
    with pytest.raises(ValueError, match="cpu, gpu, tpu, edge"):
        make_runtime("quantum")


def test_gpu_target_uses_every_gpu_or_says_there_is_none():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        runtime = make_runtime("gpu")
        assert runtime.precision == "mixed_float16" and runtime.jit_compile is True
        make_runtime("cpu")  # restore the float32 policy for the other tests
    else:
        with pytest.raises(ValueError, match="no GPU"):
            make_runtime("gpu")


def test_accelerator_settings_can_be_forced_on_cpu():
    try:
        runtime = make_runtime("cpu", precision="mixed_bfloat16", jit_compile=True)
        assert runtime.precision == "mixed_bfloat16" and runtime.jit_compile is True
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        with pytest.raises(ValueError, match="float32, mixed_float16, mixed_bfloat16"):
            make_runtime("cpu", precision="float8")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_mixed_bfloat16_and_xla_train_on_cpu_and_export_float32(tmp_path, tiny_settings):
    """The accelerator settings (bfloat16 compute, XLA) exercised on CPU through the whole pipeline on the
    tiny app's Keras candidate: the SavedModel takes and gives float32, and answers within 0.05 (a
    probability) of the float32 run's model trained on the same data with the same seed."""
    import numpy as np

    from solutions_core.export import load_signature
    from solutions_core.settings import Settings
    from solutions_core.training import run_training
    from tiny_app import APP

    config = APP.make_config({"size": 300, "candidates": ["mlp"], "gate": {"beat_baselines": False}})
    try:
        contracts = tiny_settings.contracts_dir
        plain = run_training(APP, config, Settings(home=tmp_path / "float32", contracts_dir=contracts), verbose=0)
        accelerated = run_training(
            APP, config, Settings(home=tmp_path / "bf16", contracts_dir=contracts, precision="mixed_bfloat16", jit_compile=True), verbose=0
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert plain.version is not None and accelerated.version is not None
    runtime = accelerated.version.metadata()["runtime"]
    assert runtime["precision"] == "mixed_bfloat16" and runtime["jit_compile"] is True
    assert plain.version.metadata()["runtime"]["precision"] == "float32"
    signature = load_signature(accelerated.version.path, accelerated.version.metadata().get("custom_ops", ()))
    assert all(spec.dtype.name == "float32" for spec in signature.structured_outputs.values() if spec.dtype.is_floating)
    ours, theirs = accelerated.golden_outputs, plain.golden_outputs
    for name in theirs:
        a, b = np.asarray(ours[name], dtype=np.float64), np.asarray(theirs[name], dtype=np.float64)
        assert a.shape == b.shape and np.all(np.isfinite(a))
        assert np.max(np.abs(a - b)) < 0.05, (name, np.max(np.abs(a - b)))


def test_tpu_target_without_one_is_a_clear_error(monkeypatch):
    """What can be checked of the TPU path on a machine without a TPU: it says so, and how to get one."""
    monkeypatch.delenv("TPU_NAME", raising=False)
    keras.mixed_precision.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="target 'tpu' was requested but no TPU was found.*TPU_NAME"):
        make_runtime("tpu")
    assert keras.mixed_precision.dtype_policy().name == "float32"  # nothing was switched on the way
