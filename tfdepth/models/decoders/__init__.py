"""Decoders and heads: importing this package registers every decoder factory in ``DECODERS``.

Registered: ``unet_transpose``, ``densedepth``, ``transpose5``, ``deeplabv3plus``, ``deeplabv2_sid``
(see each module's docstring for the architecture, ``decoder_args`` and output resolution).
"""

from tfdepth.models.decoders import deeplabv2_sid, deeplabv3plus, densedepth, transpose5, unet  # noqa: F401
