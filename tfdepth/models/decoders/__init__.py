"""Decoders and heads. The names live in the catalogue, ``tfdepth.registries.DECODERS``.

Factories: ``unet_transpose`` (``unet.py``), ``densedepth``, ``transpose5``, ``deeplabv3plus``,
``deeplabv2_sid`` (one module each; see each module's docstring for the architecture,
``decoder_args`` and output resolution). Shared pieces: ``blocks.py``, ``heads.py``.
"""
