"""Files, pictures and colours: the one home for reading and writing them.

- :mod:`tfdepth.io.depth`: depth files in every encoding, both directions (float32 metres, 0 = invalid),
  the encoding table, PNG / PGM headers, the metres -> uint16 quantiser;
- :mod:`tfdepth.io.images`: pictures and videos read as RGB uint8, PNG / JPEG encoding;
- :mod:`tfdepth.io.files`: atomic writes (JSON, text, bytes);
- :mod:`tfdepth.io.colormap`: the one colour convention for depth pictures, with a bar in metres.

Nothing here imports TensorFlow or any tfdepth package but :mod:`tfdepth.errors` (its errors are
:class:`~tfdepth.errors.UserError`\ s that name the file).
"""
