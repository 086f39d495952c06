"""The shared core of the reference ML solutions.

Importing this package is cheap and side-effect free: TensorFlow is imported only by the modules that
train, export or serve models, so `solutions list` and contract validation stay fast.
"""

__version__ = "0.1.0"
