"""Serving: everything between a trained model and its users (after the Model Garden ``serving/`` layout).

- :mod:`tfdepth.serving.signature`   the serving signature: names, input/output keys, the in-graph
  pre- and post-processing (uint8 RGB of any size in, float32 metres at the picture's size out)
- :mod:`tfdepth.serving.metadata`    the deployment metadata (``tfdepth.json``) and where a SavedModel lives
- :mod:`tfdepth.serving.saved_model` the TF Serving SavedModel export
- :mod:`tfdepth.serving.tflite`      TFLite variants (fp32 / float16 / dynamic / int8), their sidecars,
  the interpreter and the accuracy report
- :mod:`tfdepth.serving.predictor`   :class:`~tfdepth.serving.predictor.DepthPredictor`, one interface over
  checkpoints, SavedModels and ``.tflite`` files
- :mod:`tfdepth.serving.outputs`     what a prediction is written as (16-bit PNG, colour PNG, ``.npy``, PLY)
- :mod:`tfdepth.serving.batch`       predicting files, folders and videos into an output folder
- :mod:`tfdepth.serving.errors`      the errors of this package

Nothing below serving (data, models, training, io, geometry, metrics) imports it; the commands
``tfdepth.export``, ``tfdepth.predict`` and ``tfdepth.measure`` call it.
"""
