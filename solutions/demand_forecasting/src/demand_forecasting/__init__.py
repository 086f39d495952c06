"""Demand forecasting (issue 5, in progress): the data layer — a retail generator and loaders for
forecasting-competition series. The model, evaluation and serving come next; until then the app is not
registered with the core. Importing this package does not import TensorFlow."""
