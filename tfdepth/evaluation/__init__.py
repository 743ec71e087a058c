"""Evaluating depth predictions with the published protocols (the library behind ``python -m tfdepth.evaluate``).

Modules (import them directly; this package imports nothing, so that importing one does not pull in
TensorFlow or matplotlib):

* :mod:`tfdepth.evaluation.model_eval` -- a model (any ``predict_fn``) scored over a dataset:
  ``evaluate_model`` (also the training loop's validation) and ``evaluate_trained_model``.
* :mod:`tfdepth.evaluation.files` -- prediction files against ground-truth files: matching by stem,
  decoding .npy / PNG depth, scoring (``evaluate_files``).
* :mod:`tfdepth.evaluation.report` -- the text table, the JSON file and the figures.

The metric formulas and the protocols with their crop boxes live in :mod:`tfdepth.metrics`.
This package sits below training (which calls ``evaluate_model``) and never imports it.
"""
