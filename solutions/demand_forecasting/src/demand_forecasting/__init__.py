"""Demand forecasting: a reference app on the shared core. ``SOLUTION`` is what the core registers
(through the entry point in pyproject.toml). Importing this package does not import TensorFlow."""

from demand_forecasting.solution import DemandForecasting

SOLUTION = DemandForecasting()

__all__ = ["SOLUTION", "DemandForecasting"]
