"""Encoders (backbones). The names live in the catalogue, ``tfdepth.registries.ENCODERS``.

Factory contract (``tfdepth/models/build.py``)::

    fn(input_shape=(H, W, 3), weights="none", output_stride=32, freeze="none") -> keras.Model

RGB float32 [0, 1] in, ``{"P1": stride 2, ..., "P5": stride 32}`` out.  Factories: ``resnet18``,
``resnet34`` (torchvision layout), ``resnet50``, ``resnet101`` (keras.applications layout,
dilatable) in ``resnet.py``; ``resnet50v2`` (keras.applications ResNet50V2 layout, dilatable with
multi-grid as TF-slim's resnet_v2) in ``resnet_v2.py``; ``densenet169`` (keras.applications, output stride 32 only) in
``densenet.py``. ``common.encoder_parameter_count(name, model)`` gives the count in the convention of
each encoder's reference numbers (``common.PARAM_COUNT_CONVENTION``).
"""
