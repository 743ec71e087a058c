"""The SavedModel export for TF Serving.

Keras 3 ``keras.export.ExportArchive``, in TF Serving's layout ``DIR/N/saved_model.pb`` + ``variables/``
(N = the version), written to a temporary name and renamed, so a running server never sees half a
version. Signatures ``serving_default`` and ``serving_bytes`` (see :mod:`tfdepth.serving.signature`);
the metadata goes to ``DIR/N/assets.extra/tfdepth.json``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional, Sequence

from tfdepth.io.files import write_json
from tfdepth.serving.errors import ExportError
from tfdepth.serving.metadata import METADATA_RELPATH
from tfdepth.serving.signature import (BYTES_KEY, BYTES_SIGNATURE, IMAGES_KEY, SERVING_SIGNATURE, make_bytes_fn,
                                       make_depth_fn)


def export_saved_model(model, input_size: Sequence[int], output_dir: str, version: int = 1,
                       metadata: Optional[dict] = None, overwrite: bool = False) -> str:
    """Write ``output_dir/version`` (TF Serving layout) with ``serving_default`` and ``serving_bytes``.

    Returns the version directory. Refuses an existing non-empty version unless ``overwrite``.
    """
    import keras
    import tensorflow as tf

    if int(version) < 1:
        raise ExportError(f"--version must be a positive integer (TF Serving version directory), got {version}")
    version_dir = os.path.join(output_dir, str(int(version)))
    if os.path.isdir(version_dir) and os.listdir(version_dir):
        if not overwrite:
            raise ExportError(f"{version_dir} already exists; choose another --version or pass --overwrite")
    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{int(version)}.tmp-", dir=output_dir)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SERVING_SIGNATURE, make_depth_fn(model, input_size),
                             input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_KEY)])
        archive.add_endpoint(BYTES_SIGNATURE, make_bytes_fn(model, input_size),
                             input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_KEY)])
        archive.write_out(staging, verbose=False)
        if metadata is not None:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            write_json(os.path.join(staging, METADATA_RELPATH), metadata)
        if os.path.isdir(version_dir):
            shutil.rmtree(version_dir)
        os.replace(staging, version_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return version_dir
