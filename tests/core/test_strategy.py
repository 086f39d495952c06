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
