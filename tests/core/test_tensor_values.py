"""JSON values -> tensors the way TF Serving does it: b64 binaries, nested arrays, timestamps."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from solutions_core.export import to_tensor_value


def test_b64_values_become_bytes_and_text_stays_text():
    payload = bytes(range(256))
    values = [{"b64": base64.b64encode(payload).decode()}, "plain", None]
    array = to_tensor_value(values, tf.string, tf.TensorShape([None]))
    assert array[0] == payload and array[1] == "plain" and array[2] == ""


@pytest.mark.parametrize("bad", [{"b64": "***"}, {"b64": 3}, {"base64": "AA=="}])
def test_bad_b64_is_a_value_error(bad):
    with pytest.raises(ValueError, match="b64|base64"):
        to_tensor_value([bad], tf.string, tf.TensorShape([None]))


def test_nested_lists_fill_a_rank_4_spec():
    images = [np.ones((2, 3, 1)).tolist(), np.zeros((2, 3, 1)).tolist()]
    array = to_tensor_value(images, tf.float32, tf.TensorShape([None, 2, 3, 1]))
    assert array.shape == (2, 2, 3, 1) and array.dtype == np.float32 and array[0].sum() == 6


def test_wrong_shape_names_the_expected_one():
    with pytest.raises(ValueError, match="2x3x1"):
        to_tensor_value([np.ones((3, 2, 1)).tolist()], tf.float32, tf.TensorShape([None, 2, 3, 1]))
    with pytest.raises(ValueError, match="nested lists of numbers"):
        to_tensor_value([[["a", "b"]]], tf.float32, tf.TensorShape([None, 1, 2]))


def test_timestamps_become_epoch_seconds():
    array = to_tensor_value(["1970-01-02T00:00:00"], tf.float64, tf.TensorShape([None]))
    assert array.tolist() == [86400.0]
    series = pd.Series(pd.to_datetime(["1970-01-01 00:01:00"]))
    assert to_tensor_value(series, tf.float64, tf.TensorShape([None])).tolist() == [60.0]
