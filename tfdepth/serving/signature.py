"""The serving signature: its names and keys, and the in-graph pre- and post-processing.

- ``serving_default``: ``images`` uint8 [batch, H, W, 3] RGB of any H, W -> resized to the model
  input (bilinear, antialiased), divided by 255 -> model -> depth resized back to H, W (bilinear)
  -> ``depth`` float32 metres [batch, H, W, 1].
- ``serving_bytes``: ``image_bytes`` string [batch] of encoded JPEG/PNG/BMP/GIF (what REST clients
  send as ``{"b64": ...}``) -> decoded to RGB -> the same. All images of one request must have the
  same size (the output is one dense tensor).

Every way of running a model (the SavedModel, :class:`tfdepth.serving.predictor.DepthPredictor` on a
checkpoint or a TFLite file) does this same computation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

OUTPUT_KEY = "depth"
IMAGES_KEY = "images"
BYTES_KEY = "image_bytes"
SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


def preprocess_images(images, input_size: Sequence[int]):
    """uint8 RGB [B, h, w, 3] (any h, w) -> float32 [B, H, W, 3] in [0, 1] at ``input_size`` = (H, W):
    bilinear antialiased resize (as the data pipeline resizes training images), then / 255."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    images = tf.image.resize(images, [int(input_size[0]), int(input_size[1])], method="bilinear", antialias=True)
    return tf.clip_by_value(images / 255.0, 0.0, 1.0)


def resize_depth(depth, size):
    """depth [B, h, w, 1] -> [B, size[0], size[1], 1] (bilinear; ``size`` may be a tensor)."""
    import tensorflow as tf

    return tf.image.resize(depth, size, method="bilinear")


def to_uint8(image_01: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 0..255 (rounded): what a uint8-input (int8 TFLite) model is fed."""
    return np.clip(np.rint(np.asarray(image_01, np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_depth_fn(model, input_size: Sequence[int]) -> Callable:
    """``fn(images uint8 [B, h, w, 3]) -> {"depth": float32 metres [B, h, w, 1]}`` (the
    ``serving_default`` computation)."""
    import tensorflow as tf

    def depth_from_images(images):
        size = tf.shape(images)[1:3]
        depth = model(preprocess_images(images, input_size), training=False)[OUTPUT_KEY]
        return {OUTPUT_KEY: resize_depth(tf.cast(depth, tf.float32), size)}

    return depth_from_images


def make_bytes_fn(model, input_size: Sequence[int]) -> Callable:
    """``fn(image_bytes string [B]) -> {"depth": float32 metres [B, h, w, 1]}`` (``serving_bytes``)."""
    import tensorflow as tf

    height, width = int(input_size[0]), int(input_size[1])

    def decode_one(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        return preprocess_images(image[None], input_size)[0], tf.shape(image)[0:2]

    def depth_from_bytes(image_bytes):
        images, sizes = tf.map_fn(
            decode_one, image_bytes,
            fn_output_signature=(tf.TensorSpec([height, width, 3], tf.float32), tf.TensorSpec([2], tf.int32)),
        )
        size = sizes[0]
        with tf.control_dependencies([tf.debugging.assert_equal(
                sizes, tf.broadcast_to(size, tf.shape(sizes)),
                message="serving_bytes: all images of one request must have the same height and width")]):
            depth = model(images, training=False)[OUTPUT_KEY]
        return {OUTPUT_KEY: resize_depth(tf.cast(depth, tf.float32), size)}

    return depth_from_bytes
