"""How fast a config's model trains and runs on this machine (the library behind ``python -m tfdepth.bench``).

Modules, one per section of the report (import them directly):

* :mod:`tfdepth.bench.timing` -- statistics of timed runs, repeated calls, interleaved rounds, the
  time budget shared by the sections.
* :mod:`tfdepth.bench.machine` -- the machine: CPU, GPU, load, which mixed precisions it supports.
* :mod:`tfdepth.bench.matmul` -- the float32 ``tf.matmul`` yardstick (GFLOP/s).
* :mod:`tfdepth.bench.train` -- the training step's images/s (graph, XLA, mixed precision,
  end to end), through :class:`tfdepth.training.step.TrainStep`'s public methods.
* :mod:`tfdepth.bench.profile` -- op time by category from a profiler trace, op counts of a graph.
* :mod:`tfdepth.bench.input_pipeline` -- the training tf.data pipeline without the model.
* :mod:`tfdepth.bench.infer` -- latency and throughput of the Keras model, the SavedModel and the
  TFLite variants.
* :mod:`tfdepth.bench.scaling` -- train and inference cost over image and batch sizes (table, plot).
* :mod:`tfdepth.bench.report` -- runs the chosen sections under the budget and writes the JSON.
"""

from tfdepth.errors import UserError


class BenchError(UserError, ValueError):
    """Bad benchmark arguments or data; the message names the option."""
