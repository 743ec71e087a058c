"""Training: the train step, the loop over phases with its hooks, schedules, optimisers and checkpoints.

Modules (import them directly):

* :mod:`tfdepth.training.step` -- :class:`TrainStep`: model, loss, optimiser, precision policy,
  strategy and data of a run, built once from the config; one call = one optimisation step.
* :mod:`tfdepth.training.loop` -- :class:`Trainer`: a workdir's run over its epoch units, resume,
  final metrics.
* :mod:`tfdepth.training.hooks` -- what runs after each step / unit: progress and TensorBoard,
  images, validation, best model, history, checkpoints; the non-finite step guard.
* :mod:`tfdepth.training.plan` -- the phases unrolled into epoch units (steps, chunks, schedule).
* :mod:`tfdepth.training.strategy` -- ``train.strategy`` names and their tf.distribute strategies.
* :mod:`tfdepth.training.checkpoint` -- the workdir's checkpoints and config check; loading a
  trained model for inference.
* :mod:`tfdepth.training.init_from` -- ``model.init_from``: a trained model's weights by variable
  path into a new run, with the loaded / new / skipped report.
* :mod:`tfdepth.training.validation` -- validation metrics and ``metrics.json``.
* :mod:`tfdepth.training.logging` -- progress bar, ``history.json``, loss curve, TensorBoard writes.
* :mod:`tfdepth.training.schedules`, :mod:`tfdepth.training.optimizers` -- learning-rate schedules
  and optimisers from the config.
* :mod:`tfdepth.training.errors` -- :class:`TrainingError`.
"""
