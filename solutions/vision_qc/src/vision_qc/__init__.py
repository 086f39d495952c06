"""Visual quality control: a reference app on the shared core. ``SOLUTION`` is what the core
registers (through the entry point in pyproject.toml). Importing this package does not import
TensorFlow."""

from vision_qc.solution import VisionQC

SOLUTION = VisionQC()

__all__ = ["SOLUTION", "VisionQC"]
