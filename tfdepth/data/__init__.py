"""Data: one path from any source to batches.

- :mod:`.records`: the record schema (encode / decode one RGB-D example).
- :mod:`.shards`: shard files, ``manifest.json`` reading, depth statistics, chunk grouping.
- :mod:`.writer`: the one dataset writer every source uses (shards, chunks, statistics, manifest last).
- The sources: :mod:`.converters` (real datasets; ``python -m tfdepth.convert``) and :mod:`.synthetic`
  (the procedural generator), both :class:`~tfdepth.data.converters.source.Source` s.
- :mod:`.pipeline`: shards -> tf.data batches (decode, resize, augmentation); :mod:`.inspect`: a
  dataset's counts, histogram and contact sheet.
"""
