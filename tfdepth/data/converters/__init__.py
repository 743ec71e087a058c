"""Dataset converters: one module per source format, all feeding :func:`base.convert`.

``FORMATS`` maps the ``python -m tfdepth.convert FORMAT`` names to their modules; each module has
``add_arguments(parser)`` (its own options) and ``from_args(args, log)`` (-> a ``base.Source``).
None of these modules imports TensorFlow at import time (worker processes load them).
"""

from __future__ import annotations

import importlib

from tfdepth.registry import Registry

FORMATS = Registry("dataset format")

_MODULES = {
    "nyu-mat": "tfdepth.data.converters.nyu_mat",
    "nyu-densedepth": "tfdepth.data.converters.nyu_densedepth",
    "nyu-h5": "tfdepth.data.converters.nyu_h5",
    "tfds": "tfdepth.data.converters.tfds_nyu",
    "kitti": "tfdepth.data.converters.kitti",
    "folder": "tfdepth.data.converters.folder",
}

for _name, _module in _MODULES.items():
    FORMATS.register(_name)(lambda _m=_module: importlib.import_module(_m))


def format_module(name: str):
    """The converter module of format ``name`` (KeyError listing the allowed names)."""
    return FORMATS.get(name)()
