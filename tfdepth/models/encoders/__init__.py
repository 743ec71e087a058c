"""Encoders: importing this package registers every encoder factory in ``ENCODERS``.

Factory contract (``tfdepth/models/build.py``)::

    fn(input_shape=(H, W, 3), weights="none", output_stride=32, freeze="none") -> keras.Model

RGB float32 [0, 1] in, ``{"P1": stride 2, ..., "P5": stride 32}`` out.  Registered names:
``resnet18``, ``resnet34`` (torchvision layout), ``resnet50``, ``resnet101`` (keras.applications
layout, dilatable), ``densenet169`` (keras.applications, output stride 32 only).
``encoder_parameter_count(name, model)`` gives the count in the convention of each encoder's
reference numbers (``PARAM_COUNT_CONVENTION``).
"""

from tfdepth.models.encoders import densenet, resnet  # noqa: F401
from tfdepth.models.encoders.common import (  # noqa: F401
    PARAM_COUNT_CONVENTION,
    count_parameters,
    encoder_parameter_count,
)
