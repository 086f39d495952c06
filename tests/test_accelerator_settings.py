"""What GPUs and TPUs change, exercised on CPU for every app: each app's Keras candidate trained with
bfloat16 compute (``mixed_bfloat16``, TPU's policy, which CPUs run) and XLA (``jit_compile``), beside the
same candidate in float32 on the same data and seed. The SavedModel stays float32 at its boundary and
answers within TOLERANCE of the float32 model (relative to the size of the float32 answers); a ranking
shares RANKING_OVERLAP of its items with the float32 model's."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import registered_apps
from solutions_core.export import load_signature
from solutions_core.registry import get_solution
from solutions_core.training import run_training

pytestmark = pytest.mark.slow
TOLERANCE = 0.1  # bfloat16 keeps ~3 significant digits, and a few steps of training compound them
RANKING_OVERLAP = 0.8  # of a ranked list's items (recommendations): the order is the answer, not the logits' scale


@pytest.mark.parametrize("app", registered_apps())
def test_a_keras_candidate_in_mixed_bfloat16_with_xla_answers_like_float32(app, trained, settings, tmp_path):
    keras_candidates = [result.name for result in trained[app].candidates if result.keras_fits > 0]
    assert keras_candidates, f"{app}: no candidate fitted a Keras model through the Trainer"
    solution = get_solution(app)
    tiny = solution.tiny_config()
    config = tiny.model_copy(update={"candidates": keras_candidates[:1], "gate": tiny.gate.model_copy(update={"beat_baselines": False})})
    try:
        plain = run_training(solution, config, settings.model_copy(update={"home": tmp_path / "float32"}), verbose=0)
        fast = run_training(
            solution, config, settings.model_copy(update={"home": tmp_path / "bf16", "precision": "mixed_bfloat16", "jit_compile": True}), verbose=0
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert plain.version is not None and fast.version is not None, (plain.reason, fast.reason)
    assert fast.version.metadata()["runtime"]["precision"] == "mixed_bfloat16" and fast.version.metadata()["runtime"]["jit_compile"] is True
    signature = load_signature(fast.version.path, fast.version.metadata().get("custom_ops", ()))
    floating = {name: spec for name, spec in signature.structured_outputs.items() if spec.dtype.is_floating}
    assert floating and all(spec.dtype.name in ("float32", "float64") for spec in floating.values())
    ranked = {name for name, spec in signature.structured_outputs.items() if spec.dtype.name == "string" and len(spec.shape) == 2}
    for name in ranked:  # a ranking (item ids, best first): the same items, whatever the scores' scale
        ours, theirs = fast.golden_outputs[name], plain.golden_outputs[name]
        overlap = float(np.mean([len(set(a) & set(b)) / max(len(set(b)), 1) for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]))
        print(f"{app} {keras_candidates[0]} {name}: {overlap:.2f} of the float32 model's items")
        assert overlap >= RANKING_OVERLAP, (name, overlap)
    for name in floating:
        ours, theirs = np.asarray(fast.golden_outputs[name], dtype=np.float64), np.asarray(plain.golden_outputs[name], dtype=np.float64)
        assert ours.shape == theirs.shape and np.all(np.isfinite(ours))
        if ranked and ours.ndim == 2:
            continue  # the scores of a ranking: logits whose scale each training run sets for itself
        scale = max(float(np.max(np.abs(theirs))), 1e-6)
        difference = float(np.max(np.abs(ours - theirs))) / scale
        print(f"{app} {keras_candidates[0]} {name}: max |bf16+XLA - float32| = {difference:.4f} of the float32 scale")
        assert difference < TOLERANCE, (name, difference)
