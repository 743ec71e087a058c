"""Shards -> batches: interleaved reading, parallel decode, resize, augmentation, batch, prefetch.

Every element is ``(image, depth)``: image float32 [B, H, W, 3] in [0, 1], depth float32 [B, H, W, 1]
metres with 0 = invalid (depths above ``max_depth_m`` are set to 0). Augmentation randomness is
stateless, seeded by ``(seed, element index)``, so a seeded pipeline is deterministic and its
iterator state can be checkpointed and restored exactly.
"""

from __future__ import annotations

import math
import sys
from typing import Iterable, Optional, Tuple

import tensorflow as tf

from tfdepth.config import AugmentConfig, DataConfig
from tfdepth.data import records, shards
from tfdepth.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE

# The six orderings of the RGB channels, for the colour-channel permutation augmentation.
# (A Python list: creating a tensor at import would start TensorFlow's runtime before a
# MultiWorkerMirroredStrategy can configure its collectives.)
_CHANNEL_PERMUTATIONS = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]


def resolve_dataset(data_cfg: DataConfig) -> Tuple[str, dict]:
    """The dataset directory and its manifest; generates the synthetic dataset on first use.

    Every shard is checked against the manifest before anything is read (:func:`shards.verify_shards`:
    file size, record count): a mismatch raises :class:`shards.ManifestError` naming the shard and
    what was expected. A manifest without shard sizes (an older tfdepth) prints a one-line note."""
    if data_cfg.dataset == "synthetic":
        from tfdepth.data.synthetic.generate import ensure_synthetic_dataset  # the generator is only needed here

        manifest = ensure_synthetic_dataset(data_cfg.synthetic, data_cfg.data_dir)
    elif data_cfg.dataset == "tfrecord":
        manifest = shards.read_manifest(data_cfg.data_dir)
    else:
        raise ValueError(f"data.dataset must be 'synthetic' or 'tfrecord', got {data_cfg.dataset!r}")
    for note in shards.verify_shards(data_cfg.data_dir, manifest):
        print(f"note: {note}", file=sys.stderr)
    return data_cfg.data_dir, manifest


def read_error(error: Exception, data_dir: str, manifest: dict, split: str,
               chunks: Optional[Iterable[int]] = None) -> UserError:
    """The :class:`UserError` to raise for a ``tf.errors.DataLossError`` met while iterating a dataset
    of ``split``: TensorFlow's message names neither the file nor the record, so each shard of the
    split is read again on its own to find the first damaged one (and its record index)."""
    for path in shards.shard_paths(data_dir, manifest, split, chunks):
        problem = shards.first_unreadable_record(path)
        if problem:
            return UserError(f"{problem}; the shard is damaged: `python -m tfdepth.data.inspect {data_dir} --scan` "
                             "names every bad shard, converting again rewrites them")
    return UserError(f"reading split {split!r} of {data_dir} failed ({error}); every shard reads back on its own: "
                     f"`python -m tfdepth.data.inspect {data_dir} --scan` checks them")


def center_crop_to_aspect(image: tf.Tensor, depth: tf.Tensor, aspect_w_over_h: float) -> Tuple[tf.Tensor, tf.Tensor]:
    """The largest centred window of ``image`` [H, W, C] and ``depth`` with the given aspect ratio."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    crop_w = tf.minimum(w, tf.cast(tf.round(tf.cast(h, tf.float32) * aspect_w_over_h), tf.int32))
    crop_h = tf.minimum(h, tf.cast(tf.round(tf.cast(crop_w, tf.float32) / aspect_w_over_h), tf.int32))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[top:top + crop_h, left:left + crop_w], depth[top:top + crop_h, left:left + crop_w]


def resize_pair(image: tf.Tensor, depth: tf.Tensor, size: Tuple[int, int], mode: str,
                resize_depth: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
    """Resize one image [H, W, 3] (bilinear, antialiased) and depth [H, W, 1] (nearest: no blending
    across invalid pixels or depth edges) to ``size`` = (H, W). ``mode`` "center_crop" first crops the
    largest centred window with the target aspect ratio. ``resize_depth=False`` keeps the depth at its
    (cropped) stored resolution."""
    if mode == "center_crop":
        image, depth = center_crop_to_aspect(image, depth, size[1] / size[0])
    elif mode != "resize":
        raise ValueError(f"data.resize_mode must be 'resize' or 'center_crop', got {mode!r}")
    image = tf.clip_by_value(tf.image.resize(image, size, method="bilinear", antialias=True), 0.0, 1.0)
    if resize_depth:
        depth = tf.image.resize(depth, size, method="nearest")
    return image, depth


# Indices into the per-sample vector of stateless uniforms drawn by ``augment_pair``. 0-3 are the
# original draws (a seeded pipeline with only those options on gives the same output as before the
# others were appended: a stateless_uniform vector's leading values do not depend on its length).
_U_HFLIP, _U_BRIGHTNESS, _U_PERMUTE, _U_PERMUTATION = 0, 1, 2, 3
_U_SCALE, _U_CROP_X, _U_CROP_Y, _U_ROTATION, _U_COLOR = 4, 5, 6, 7, 8  # colour uses 8, 9, 10
_NUM_UNIFORMS = 11


def warp_transform(height, width, scale, angle_rad, crop_x=0.5, crop_y=0.5) -> tf.Tensor:
    """The ``ImageProjectiveTransformV3`` transform [1, 8] float32 of a zoom, crop and rotation.

    Output pixel p = (x, y) (column, row; pixel centres at integers) samples the input at
    ``q = c + t + R(angle_rad) (p - c) / scale`` with c = ((W-1)/2, (H-1)/2) the centre,
    R(a) = [[cos a, -sin a], [sin a, cos a]] and t = ((crop_x - 0.5) W, (crop_y - 0.5) H) (1 - 1/scale).
    With angle 0 this is exactly ``tf.image.resize`` (half-pixel centres) to (scale H, scale W) followed
    by the H x W crop whose top-left corner is at (crop_y (scale H - H), crop_x (scale W - W)):
    crop fractions in [0, 1] keep the window inside the zoomed image, 0.5 centres it. The rotation then
    turns the content by ``angle_rad`` counter-clockwise on screen (y points down) about the centre.
    """
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    scale = tf.cast(scale, tf.float32)
    angle = tf.cast(angle_rad, tf.float32)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    tx = (tf.cast(crop_x, tf.float32) - 0.5) * w * (1.0 - 1.0 / scale)
    ty = (tf.cast(crop_y, tf.float32) - 0.5) * h * (1.0 - 1.0 / scale)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx + tx - (a0 * cx + a1 * cy)
    b2 = cy + ty - (b0 * cx + b1 * cy)
    zero = tf.zeros_like(a0)
    return tf.reshape(tf.stack([a0, a1, a2, b0, b1, b2, zero, zero]), [1, 8])


def _warp(x: tf.Tensor, transform: tf.Tensor, interpolation: str, fill_mode: str) -> tf.Tensor:
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[tf.newaxis], transforms=transform, output_shape=tf.shape(x)[:2], fill_value=0.0,
        interpolation=interpolation, fill_mode=fill_mode)[0]
    out.set_shape(x.shape)
    return out


def warp_pair(image: tf.Tensor, depth: tf.Tensor, scale, angle_rad, crop_x=0.5, crop_y=0.5
              ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Zoom by ``scale`` >= 1, crop back to the input size and rotate (``warp_transform``) one image
    [H, W, 3] float32 and depth [h, w, 1] float32 metres (each with its own size, same geometry).

    The image is sampled bilinearly (the half-pixel margin of the zoom repeats the edge pixels) and is 0
    where the source point lies outside the input; the depth is sampled nearest (never a blend of two
    depths or of valid and invalid pixels), is 0 (invalid) outside the input and is divided by
    ``scale``: an image s times larger shows the scene as if the camera were s times closer.
    """
    scale = tf.cast(scale, tf.float32)
    image_shape, depth_shape = tf.shape(image), tf.shape(depth)
    image_transform = warp_transform(image_shape[0], image_shape[1], scale, angle_rad, crop_x, crop_y)
    depth_transform = warp_transform(depth_shape[0], depth_shape[1], scale, angle_rad, crop_x, crop_y)
    inside = _warp(tf.ones_like(image[..., :1]), image_transform, "NEAREST", "CONSTANT")
    image = _warp(image, image_transform, "BILINEAR", "NEAREST") * inside
    depth = _warp(depth, depth_transform, "NEAREST", "CONSTANT") / scale
    return image, depth


def augment_pair(image: tf.Tensor, depth: tf.Tensor, aug: AugmentConfig, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Stateless augmentation of one sample; ``seed`` is an int64 [2] tensor unique to the sample.

    image [H, W, 3] float32 in [0, 1], depth [H, W, 1] float32 metres (0 = invalid). In order:
    horizontal flip; zoom s ~ U[1, scale_max] with a centred or random crop and rotation
    r ~ U[-rotation_deg, rotation_deg] (``warp_pair``: depth / s, 0 outside); brightness; per-channel
    colour factors c ~ U[1 - color_scale, 1 + color_scale]^3; channel permutation. Options at their
    defaults add no op.
    """
    u = tf.random.stateless_uniform([_NUM_UNIFORMS], seed=seed)
    if aug.hflip > 0:
        flip = u[_U_HFLIP] < aug.hflip
        image = tf.where(flip, tf.reverse(image, [1]), image)
        depth = tf.where(flip, tf.reverse(depth, [1]), depth)
    if aug.scale_max > 1.0 or aug.rotation_deg > 0:
        scale = 1.0 + (aug.scale_max - 1.0) * u[_U_SCALE]
        angle = math.radians(aug.rotation_deg) * (2.0 * u[_U_ROTATION] - 1.0)
        crop_x, crop_y = (u[_U_CROP_X], u[_U_CROP_Y]) if aug.random_crop else (0.5, 0.5)
        image, depth = warp_pair(image, depth, scale, angle, crop_x, crop_y)
    if aug.brightness > 0:
        factor = 1.0 + aug.brightness * (2.0 * u[_U_BRIGHTNESS] - 1.0)
        image = tf.clip_by_value(image * factor, 0.0, 1.0)
    if aug.color_scale > 0:
        factors = 1.0 + aug.color_scale * (2.0 * u[_U_COLOR:_U_COLOR + 3] - 1.0)
        image = tf.clip_by_value(image * factors, 0.0, 1.0)
    if aug.channel_permutation > 0:
        permutations = tf.constant(_CHANNEL_PERMUTATIONS, tf.int32)
        index = tf.cast(tf.minimum(u[_U_PERMUTATION] * 6.0, 5.0), tf.int32)
        perm = tf.where(u[_U_PERMUTE] < aug.channel_permutation, permutations[index], permutations[0])
        image = tf.gather(image, perm, axis=-1)
    return image, depth


def build_dataset(
    data_cfg: DataConfig,
    split: str,
    batch_size: int,
    training: bool,
    chunks: Optional[Iterable[int]] = None,
    seed: int = 0,
    data_dir: Optional[str] = None,
    manifest: Optional[dict] = None,
    drop_remainder: Optional[bool] = None,
    depth_at_input_size: bool = True,
) -> tf.data.Dataset:
    """Batches of (image [B,H,W,3] in [0,1], depth [B,H,W,1] metres) from the shards of ``split``.

    ``training`` shuffles (seeded by ``seed``) and augments; ``chunks`` restricts to curriculum chunks.
    ``data.input_size`` of ``None``/``[]`` keeps the stored size (then every sample must have it).
    ``depth_at_input_size=False`` resizes only the image and keeps the depth at its stored resolution
    (evaluation against full-resolution ground truth, as the published tables do).
    One call is one pass over the data (one epoch); build a new dataset with another seed per epoch.
    """
    if data_dir is None or manifest is None:
        data_dir, manifest = resolve_dataset(data_cfg)
    files = shards.shard_paths(data_dir, manifest, split, chunks)
    deterministic = data_cfg.deterministic or training is False
    parallel = AUTOTUNE if data_cfg.parallel_calls < 0 else data_cfg.parallel_calls
    size = tuple(int(s) for s in data_cfg.input_size) if data_cfg.input_size else None
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        block_length=1,
        num_parallel_calls=min(len(files), 4),
        deterministic=deterministic,
    )
    if training and data_cfg.shuffle_buffer > 1:
        # Shuffle serialised records (cheap to hold) before decoding.
        ds = ds.shuffle(data_cfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=False)
    ds = ds.enumerate()

    aug = data_cfg.augment
    max_depth = float(data_cfg.max_depth_m)
    resize_mode = data_cfg.resize_mode

    def parse(index, serialized):
        example = records.parse_example(serialized)
        image, depth = example["image"], example["depth"]
        if size is not None:
            image, depth = resize_pair(image, depth, size, resize_mode, resize_depth=depth_at_input_size)
        depth = tf.where(tf.math.is_finite(depth) & (depth <= max_depth), depth, 0.0)
        if training:
            image, depth = augment_pair(image, depth, aug, tf.stack([tf.cast(seed, tf.int64), index]))
        return image, depth

    ds = ds.map(parse, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return ds.prefetch(AUTOTUNE).with_options(options)


def build_eval_dataset(data_cfg: DataConfig, eval_cfg, split: str, data_dir: Optional[str] = None,
                       manifest: Optional[dict] = None) -> tf.data.Dataset:
    """Evaluation batches: images at the model's input size; depth at the stored resolution (centre-
    cropped like the image when ``data.resize_mode`` is "center_crop") when ``eval.gt_resolution`` is
    "native" (batch 1 if the dataset's image sizes vary), else at input size."""
    if data_dir is None or manifest is None:
        data_dir, manifest = resolve_dataset(data_cfg)
    native = eval_cfg.gt_resolution == "native"
    if eval_cfg.gt_resolution not in ("native", "input"):
        raise ValueError(f"eval.gt_resolution must be 'native' or 'input', got {eval_cfg.gt_resolution!r}")
    batch = eval_cfg.batch_size if (not native or manifest.get("image_size")) else 1
    return build_dataset(data_cfg, split, batch, training=False, data_dir=data_dir, manifest=manifest,
                         depth_at_input_size=not native)


def steps_per_epoch(manifest: dict, split: str, batch_size: int, chunks: Optional[Iterable[int]] = None,
                    drop_remainder: bool = True) -> int:
    n = shards.split_count(manifest, split, chunks)
    return n // batch_size if drop_remainder else -(-n // batch_size)
