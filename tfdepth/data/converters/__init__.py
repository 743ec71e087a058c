"""Dataset converters: one module per source format, all feeding :func:`conversion.convert`.

The engine: :mod:`.source` (the :class:`~.source.Source` contract), :mod:`.checks` (per-sample range
checks and encoding), :mod:`.pool` (the in-order worker pool), :mod:`.conversion` (the run: splits,
seeded shuffle, existing output, streaming shuffle; writes through :class:`tfdepth.data.writer.DatasetWriter`).

The ``tfdepth convert FORMAT`` names, their modules and one-line descriptions are the catalogue's
``tfdepth.registries.DATASET_FORMATS`` (``DATASET_FORMATS.get(name)`` imports the module); each module
has ``add_arguments(parser)`` (its own options) and ``from_args(args, log)`` (-> a ``source.Source``).
None of these modules imports TensorFlow at import time (worker processes load them).
"""
