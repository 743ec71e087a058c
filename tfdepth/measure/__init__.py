"""A local web page to measure metric depth on your own photo.

``python -m tfdepth.measure --model PATH [--host 127.0.0.1] [--port 8080] [--max-upload-mb 20]``
serves a page (bound to loopback unless told otherwise) where you open or drop a picture (and
optionally its ground-truth depth file with a scale), see the picture and its colour-mapped depth
side by side with a colour bar in metres, hover to read the depth at a pixel (and the ground truth
and relative error), click two points to get their 3-D distance in metres from the camera
intrinsics (given, the model's training camera, or a stated field-of-view guess), and get the
evaluate command's AbsRel / RMSE / delta1 and per-range table for the picture.

Modules: :mod:`tfdepth.measure.app` (prediction, ground truth and metrics, in memory),
:mod:`tfdepth.measure.server` (the HTTP routes), :mod:`tfdepth.measure.groundtruth` (depth files
from bytes), ``static/`` (the page: plain HTML, CSS and JavaScript).
"""

from tfdepth.measure.app import MeasureApp, RequestError
from tfdepth.measure.server import MeasureServer, start_in_thread

__all__ = ["MeasureApp", "MeasureServer", "RequestError", "start_in_thread"]
