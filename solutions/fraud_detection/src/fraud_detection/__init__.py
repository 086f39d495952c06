"""Fraud detection: a reference app on the shared core. ``SOLUTION`` is what the core registers
(through the entry point in pyproject.toml). Importing this package does not import TensorFlow."""

from fraud_detection.solution import FraudDetection

SOLUTION = FraudDetection()

__all__ = ["SOLUTION", "FraudDetection"]
