"""The record schema every tfdepth dataset uses: encode / decode one RGB-D example.

TensorFlow is imported inside the functions that need it, so converter worker processes can use
the NumPy side without it. Depth is quantised by :func:`tfdepth.io.depth.depth_to_uint16` and
encoded by :func:`tfdepth.io.images.encode_png`.

Keys (Model Garden style):

- ``image/encoded``   PNG or JPEG bytes of the RGB image (8-bit, 3 channels)
- ``image/format``    b"png" or b"jpeg"
- ``image/height``, ``image/width``  int64
- ``depth/encoded``   uint16 PNG bytes (lossless), single channel
- ``depth/scale``     float; metres = stored value / scale; stored 0 = invalid
- ``camera/intrinsics``  float list (fx, fy, cx, cy) in pixels of this image; optional (empty)
- ``source/name``     UTF-8 bytes: the sample's name in its source (e.g. ``rgb/rgb_00050.jpg`` relative
  to the converted folder); optional, absent in datasets written before it existed. Evaluation figures
  name their rows with it (:func:`decode_example_numpy` returns it as ``name``, None when absent).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from tfdepth.io.depth import depth_to_uint16
from tfdepth.io.images import encode_jpeg, encode_png


class RecordError(ValueError):
    """A sample cannot be encoded in the record schema."""


def make_example(
    image_encoded: bytes,
    image_format: str,
    height: int,
    width: int,
    depth_png: bytes,
    depth_scale: float,
    intrinsics: Optional[Sequence[float]] = None,
    source_name: Optional[str] = None,
) -> bytes:
    """Serialised tf.train.Example from already-encoded image and uint16 depth PNG bytes
    (``source_name``: the optional ``source/name`` feature)."""
    import tensorflow as tf

    def _bytes(v: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def _int(v: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    def _floats(v: Sequence[float]):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))

    if image_format not in ("png", "jpeg"):
        raise RecordError(f"image/format must be 'png' or 'jpeg', got {image_format!r}")
    if intrinsics is not None and len(intrinsics) != 4:
        raise RecordError(f"camera/intrinsics must be (fx, fy, cx, cy), got {intrinsics!r}")
    feature = {
        "image/encoded": _bytes(image_encoded),
        "image/format": _bytes(image_format.encode()),
        "image/height": _int(height),
        "image/width": _int(width),
        "depth/encoded": _bytes(depth_png),
        "depth/scale": _floats([depth_scale]),
        "camera/intrinsics": _floats(intrinsics if intrinsics is not None else []),
    }
    if source_name:
        feature["source/name"] = _bytes(str(source_name).encode("utf-8"))
    # deterministic: the feature map in key order (else its order varies per process), so the same
    # samples give the same shard bytes in every run
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def encode_example(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    depth_scale: float = 1000.0,
    intrinsics: Optional[Sequence[float]] = None,
    image_format: str = "png",
    jpeg_quality: int = 95,
    source: str = "sample",
    source_name: Optional[str] = None,
) -> bytes:
    """Serialised example from an RGB uint8 HxWx3 array and a float depth map in metres (HxW);
    ``source_name`` is stored as ``source/name`` when given.

    Raises RecordError naming ``source`` on a shape mismatch, :class:`tfdepth.io.depth.DepthFormatError`
    on depth that does not fit uint16 at ``depth_scale``.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise RecordError(f"{source}: RGB must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    depth_u16 = depth_to_uint16(depth_m, depth_scale, source)
    if depth_u16.shape != rgb.shape[:2]:
        raise RecordError(
            f"{source}: RGB is {rgb.shape[1]}x{rgb.shape[0]} but depth is {depth_u16.shape[1]}x{depth_u16.shape[0]} (WxH)"
        )
    image_bytes = encode_png(rgb) if image_format == "png" else encode_jpeg(rgb, jpeg_quality)
    return make_example(
        image_bytes, image_format, rgb.shape[0], rgb.shape[1], encode_png(depth_u16), depth_scale, intrinsics,
        source_name,
    )


def feature_spec() -> dict:
    """The tf.io parsing spec of the schema."""
    import tensorflow as tf

    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string, default_value=b"png"),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "depth/encoded": tf.io.FixedLenFeature([], tf.string),
        "depth/scale": tf.io.FixedLenFeature([], tf.float32),
        "camera/intrinsics": tf.io.VarLenFeature(tf.float32),
    }


def parse_example(serialized) -> dict:
    """Decode one serialised example inside a tf.data graph.

    Returns ``image`` float32 [H, W, 3] in [0, 1], ``depth`` float32 [H, W, 1] metres (0 = invalid),
    ``intrinsics`` float32 [4] (fx, fy, cx, cy; zeros when unknown).
    """
    import tensorflow as tf

    f = tf.io.parse_single_example(serialized, feature_spec())
    height = tf.cast(f["image/height"], tf.int32)
    width = tf.cast(f["image/width"], tf.int32)
    image = tf.io.decode_image(f["image/encoded"], channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.ensure_shape(image, [None, None, 3])
    depth_raw = tf.io.decode_png(f["depth/encoded"], channels=1, dtype=tf.uint16)
    checks = [
        tf.debugging.assert_equal(tf.shape(image)[:2], tf.stack([height, width]),
                                  message="image/encoded size differs from image/height, image/width"),
        tf.debugging.assert_equal(tf.shape(depth_raw)[:2], tf.stack([height, width]),
                                  message="depth/encoded size differs from image/height, image/width"),
    ]
    with tf.control_dependencies(checks):
        image = tf.image.convert_image_dtype(image, tf.float32)
        depth = tf.cast(depth_raw, tf.float32) / f["depth/scale"]
    intr = tf.sparse.to_dense(f["camera/intrinsics"])
    intr = tf.cond(tf.size(intr) == 4, lambda: intr, lambda: tf.zeros([4], tf.float32))
    return {"image": image, "depth": depth, "intrinsics": tf.reshape(intr, [4])}


def decode_example_numpy(serialized: bytes) -> Dict[str, np.ndarray]:
    """Eager/NumPy decode of one example: ``rgb`` uint8 HxWx3, ``depth_m`` float32 HxW, ``intrinsics``,
    ``name`` (the ``source/name`` feature as text, None in records without it)."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    feat = ex.features.feature
    rgb = cv2.imdecode(np.frombuffer(feat["image/encoded"].bytes_list.value[0], np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
    raw = cv2.imdecode(np.frombuffer(feat["depth/encoded"].bytes_list.value[0], np.uint8), cv2.IMREAD_UNCHANGED)
    scale = feat["depth/scale"].float_list.value[0]
    intr = list(feat["camera/intrinsics"].float_list.value)
    names = feat["source/name"].bytes_list.value if "source/name" in feat else []
    return {
        "rgb": rgb,
        "depth_m": raw.astype(np.float32) / np.float32(scale),
        "intrinsics": np.asarray(intr if len(intr) == 4 else [0, 0, 0, 0], np.float32),
        "name": names[0].decode("utf-8", errors="replace") if names else None,
    }
