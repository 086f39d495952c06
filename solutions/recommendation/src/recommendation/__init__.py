"""Recommendation: a reference app on the shared core. ``SOLUTION`` is what the core registers
(through the entry point in pyproject.toml). Importing this package does not import TensorFlow."""

from recommendation.solution import Recommendation

SOLUTION = Recommendation()

__all__ = ["SOLUTION", "Recommendation"]
