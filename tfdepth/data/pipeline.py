"""Shards -> batches: interleaved reading, parallel decode, resize, augmentation, batch, prefetch.

Every element is ``(image, depth)``: image float32 [B, H, W, 3] in [0, 1], depth float32 [B, H, W, 1]
metres with 0 = invalid (depths above ``max_depth_m`` are set to 0). Augmentation randomness is
stateless, seeded by ``(seed, element index)``, so a seeded pipeline is deterministic and its
iterator state can be checkpointed and restored exactly.

Each sample's intrinsics (``camera/intrinsics`` of the record, fx, fy, cx, cy; zeros = unknown) go
through every resize, crop, flip, zoom and rotation with it (:func:`resize_intrinsics`,
:func:`flip_intrinsics`, :func:`warp_intrinsics`). With a canonical camera (``canonical_focal_px``,
docs/camera.md) the training targets are ``depth / (f / f_c)``, f the sample's focal length at the
network input after augmentation; evaluation batches then carry f as a third element.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Iterable, Optional, Tuple

import tensorflow as tf

from tfdepth.config import AugmentConfig, DataConfig
from tfdepth.data import records, shards
from tfdepth.errors import UserError
from tfdepth.geometry import canonical_depth_scale

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


def canonical_focal(cfg) -> Optional[float]:
    """``model.canonical_focal_px`` of an :class:`~tfdepth.config.ExperimentConfig` with
    ``model.camera: canonical``, else None: what :func:`build_dataset` and the evaluation take."""
    model = cfg.model
    return float(model.canonical_focal_px) if getattr(model, "camera", "none") == "canonical" else None


def _known(intrinsics: tf.Tensor, transformed) -> tf.Tensor:
    """``transformed`` where the intrinsics are known (fx > 0), else the zeros of an unknown camera."""
    return tf.where(intrinsics[0] > 0, tf.cast(tf.stack(transformed), tf.float32), tf.zeros([4], tf.float32))


def resize_intrinsics(intrinsics: tf.Tensor, image_hw, size: Tuple[int, int], mode: str) -> tf.Tensor:
    """The intrinsics [4] of an ``image_hw`` picture after :func:`resize_pair` to ``size`` (H, W): a
    "center_crop" window moves the principal point; resizing by s (half-pixel centres) maps
    ``f -> f s`` and ``c -> (c + 0.5) s - 0.5`` (:meth:`tfdepth.geometry.Intrinsics.scaled`)."""
    h, w = tf.cast(image_hw[0], tf.float32), tf.cast(image_hw[1], tf.float32)
    fx, fy, cx, cy = tf.unstack(tf.cast(intrinsics, tf.float32))
    if mode == "center_crop":
        aspect = size[1] / size[0]
        crop_w = tf.minimum(w, tf.round(h * aspect))
        crop_h = tf.minimum(h, tf.round(crop_w / aspect))
        cx, cy = cx - tf.math.floordiv(w - crop_w, 2.0), cy - tf.math.floordiv(h - crop_h, 2.0)
        h, w = crop_h, crop_w
    sx, sy = size[1] / w, size[0] / h
    return _known(intrinsics, [fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5])


def flip_intrinsics(intrinsics: tf.Tensor, width) -> tf.Tensor:
    """The intrinsics after a left-right flip of a ``width``-pixel picture: ``cx -> W - 1 - cx``."""
    fx, fy, cx, cy = tf.unstack(tf.cast(intrinsics, tf.float32))
    return _known(intrinsics, [fx, fy, tf.cast(width, tf.float32) - 1.0 - cx, cy])


def warp_intrinsics(intrinsics: tf.Tensor, height, width, scale, angle_rad, crop_x=0.5, crop_y=0.5) -> tf.Tensor:
    """The intrinsics after :func:`warp_pair` (zoom ``scale``, crop, rotation ``angle_rad``).

    The warp maps input pixel q to output pixel ``p = c + s R(-a) (q - c - t)`` (:func:`warp_transform`),
    so a point seen at ``q = f (X/Z, Y/Z) + pp`` is seen at ``p = s f R(-a) (X/Z, Y/Z) + pp'`` with
    ``pp' = c + s R(-a) (pp - c - t)``: focal lengths ``f s``, principal point ``pp'``, depth z unchanged,
    the scene turned by -a about the optical axis. Exact for the zoom and crop; exact for the rotation
    when fx = fy (else an approximation of the order of |fx - fy| / f; the principal point may be
    anywhere, it is rotated about the image centre like the picture)."""
    fx, fy, cx, cy = tf.unstack(tf.cast(intrinsics, tf.float32))
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    s, a = tf.cast(scale, tf.float32), tf.cast(angle_rad, tf.float32)
    ccx, ccy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    dx = cx - ccx - (tf.cast(crop_x, tf.float32) - 0.5) * w * (1.0 - 1.0 / s)
    dy = cy - ccy - (tf.cast(crop_y, tf.float32) - 0.5) * h * (1.0 - 1.0 / s)
    cos, sin = tf.cos(a), tf.sin(a)
    return _known(intrinsics, [fx * s, fy * s, ccx + s * (cos * dx + sin * dy), ccy + s * (-sin * dx + cos * dy)])


def focal_px(intrinsics: tf.Tensor) -> tf.Tensor:
    """The focal length of the canonical camera transform: ``(fx + fy) / 2`` of intrinsics [..., 4]."""
    return 0.5 * (intrinsics[..., 0] + intrinsics[..., 1])


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


def warp_pair(image: tf.Tensor, depth: tf.Tensor, scale, angle_rad, crop_x=0.5, crop_y=0.5,
              zoom_depth: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
    """Zoom by ``scale`` >= 1, crop back to the input size and rotate (``warp_transform``) one image
    [H, W, 3] float32 and depth [h, w, 1] float32 metres (each with its own size, same geometry).

    The image is sampled bilinearly (the half-pixel margin of the zoom repeats the edge pixels) and is 0
    where the source point lies outside the input; the depth is sampled nearest (never a blend of two
    depths or of valid and invalid pixels), is 0 (invalid) outside the input and is divided by
    ``scale``: an image s times larger shows the scene as if the camera were s times closer.
    ``zoom_depth=False`` keeps the depth as it is (the true geometry of a zoom: the focal length grows
    by s, :func:`warp_intrinsics`).
    """
    scale = tf.cast(scale, tf.float32)
    image_shape, depth_shape = tf.shape(image), tf.shape(depth)
    image_transform = warp_transform(image_shape[0], image_shape[1], scale, angle_rad, crop_x, crop_y)
    depth_transform = warp_transform(depth_shape[0], depth_shape[1], scale, angle_rad, crop_x, crop_y)
    inside = _warp(tf.ones_like(image[..., :1]), image_transform, "NEAREST", "CONSTANT")
    image = _warp(image, image_transform, "BILINEAR", "NEAREST") * inside
    depth = _warp(depth, depth_transform, "NEAREST", "CONSTANT")
    return image, (depth / scale if zoom_depth else depth)


def augment_sample(image: tf.Tensor, depth: tf.Tensor, intrinsics: tf.Tensor, aug: AugmentConfig, seed: tf.Tensor
                   ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Stateless augmentation of one sample with its camera; ``seed`` is an int64 [2] tensor unique to it.

    image [H, W, 3] float32 in [0, 1], depth [h, w, 1] float32 metres (0 = invalid), intrinsics [4]
    (fx, fy, cx, cy in pixels of the image; zeros = unknown, kept zero). In order: horizontal flip
    (cx mirrored); zoom s ~ U[1, scale_max] with a centred or random crop and rotation
    r ~ U[-rotation_deg, rotation_deg] (``warp_pair``; focal lengths * s, principal point moved,
    :func:`warp_intrinsics`); brightness; per-channel colour factors c ~ U[1 - color_scale,
    1 + color_scale]^3; channel permutation. Options at their defaults add no op.

    Returns (image, depth, intrinsics, s): the depth in the TRUE geometry of the new picture (a zoom
    does not change it, 0 outside the input), so depth and intrinsics back-project to the same scene
    (mirrored by a flip, turned about the optical axis by a rotation). :func:`augment_pair` divides
    the depth by s instead (Eigen et al.: a fixed camera s times closer).
    """
    u = tf.random.stateless_uniform([_NUM_UNIFORMS], seed=seed)
    intrinsics = tf.cast(intrinsics, tf.float32)
    scale = tf.constant(1.0, tf.float32)
    if aug.hflip > 0:
        flip = u[_U_HFLIP] < aug.hflip
        image = tf.where(flip, tf.reverse(image, [1]), image)
        depth = tf.where(flip, tf.reverse(depth, [1]), depth)
        intrinsics = tf.where(flip, flip_intrinsics(intrinsics, tf.shape(image)[1]), intrinsics)
    if aug.scale_max > 1.0 or aug.rotation_deg > 0:
        scale = 1.0 + (aug.scale_max - 1.0) * u[_U_SCALE]
        angle = math.radians(aug.rotation_deg) * (2.0 * u[_U_ROTATION] - 1.0)
        crop_x, crop_y = (u[_U_CROP_X], u[_U_CROP_Y]) if aug.random_crop else (0.5, 0.5)
        intrinsics = warp_intrinsics(intrinsics, tf.shape(image)[0], tf.shape(image)[1], scale, angle, crop_x, crop_y)
        image, depth = warp_pair(image, depth, scale, angle, crop_x, crop_y, zoom_depth=False)
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
    return image, depth, intrinsics, scale


def augment_pair(image: tf.Tensor, depth: tf.Tensor, aug: AugmentConfig, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """:func:`augment_sample` without a camera, depth in Eigen et al.'s convention: a zoom by s divides
    the depth by s (the training camera s times closer), what a model without camera input learns."""
    image, depth, _, scale = augment_sample(image, depth, tf.zeros([4], tf.float32), aug, seed)
    if aug.scale_max > 1.0 or aug.rotation_deg > 0:
        depth = depth / scale
    return image, depth


def record_dataset(files, training: bool, seed: int = 0, deterministic: bool = True,
                   interleave: bool = True) -> tf.data.Dataset:
    """The serialised records of shard ``files`` in the order :func:`build_dataset` reads them
    (``training``: the shard order shuffled by ``seed``; then up to four shards interleaved record by
    record; ``interleave=False``: one shard after the other)."""
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=False)
    if not interleave:
        return ds.flat_map(tf.data.TFRecordDataset)
    return ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 4),
        block_length=1,
        num_parallel_calls=min(len(files), 4),
        deterministic=deterministic,
    )


def first_records(data_dir: str, manifest: dict, split: str, count: int) -> list:
    """The first ``count`` records of ``split`` in the order an evaluation dataset (``training=False``)
    yields them, decoded by :func:`tfdepth.data.records.decode_example_numpy` (the stored photo at its
    stored size, ``name`` from ``source/name`` or None): what evaluation figures show beside the
    ``count`` first scored images."""
    files = shards.shard_paths(data_dir, manifest, split)
    return [records.decode_example_numpy(r.numpy()) for r in record_dataset(files, False).take(int(count))]


def _decoder(data_cfg: DataConfig, depth_at_input_size: bool = True):
    """serialised record -> (image, depth, intrinsics) at the input size (``data.input_size``; None /
    [] keeps the stored size), depths above ``max_depth_m`` or not finite set to 0."""
    size = tuple(int(s) for s in data_cfg.input_size) if data_cfg.input_size else None
    max_depth, resize_mode = float(data_cfg.max_depth_m), data_cfg.resize_mode

    def decode(serialized):
        example = records.parse_example(serialized)
        image, depth, intrinsics = example["image"], example["depth"], example["intrinsics"]
        if size is not None:
            intrinsics = resize_intrinsics(intrinsics, tf.shape(image)[:2], size, resize_mode)
            image, depth = resize_pair(image, depth, size, resize_mode, resize_depth=depth_at_input_size)
        depth = tf.where(tf.math.is_finite(depth) & (depth <= max_depth), depth, 0.0)
        return image, depth, intrinsics

    return decode


def cached_samples(data_cfg: DataConfig, split: str, chunks: Optional[Iterable[int]] = None,
                   data_dir: Optional[str] = None, manifest: Optional[dict] = None) -> tf.data.Dataset:
    """(image, depth, intrinsics) of every sample of ``split`` (``chunks``) in the shards' order,
    decoded and resized to the input size once (here) and then kept in memory (``data.cache``):
    :func:`build_dataset` takes them in the order it would read the records, without decoding again.
    Refused when the decoded samples would need more than half of the machine's memory."""
    if data_dir is None or manifest is None:
        data_dir, manifest = resolve_dataset(data_cfg)
    count = shards.split_count(manifest, split, chunks)
    h, w = (int(s) for s in data_cfg.input_size) if data_cfg.input_size else manifest.get("image_size") or (0, 0)
    needed = count * h * w * (3 + 1) * 4
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > available // 2:
        raise UserError(f"data.cache: true keeps {count} decoded {h}x{w} samples of {data_dir} in memory, "
                        f"{needed / 2**30:.1f} GiB, more than half of this machine's {available / 2**30:.1f} GiB; "
                        "set data.cache: false (decode every epoch) or a smaller data.input_size")
    parallel = AUTOTUNE if data_cfg.parallel_calls < 0 else data_cfg.parallel_calls
    files = shards.shard_paths(data_dir, manifest, split, chunks)
    ds = record_dataset(files, False, interleave=False).map(_decoder(data_cfg), num_parallel_calls=parallel,
                                                             deterministic=True).cache()
    ds.reduce(0, lambda n, _: n + 1)  # fill the cache now: epochs read it from several places at once
    return ds


def _cached_records(cached: tf.data.Dataset, counts: list, training: bool, seed: int) -> tf.data.Dataset:
    """The samples of ``cached`` (the shards' records one shard after the other, ``counts`` each) in
    the order :func:`record_dataset` reads the shards: the same shard shuffle and interleave."""
    offsets = [sum(counts[:i]) for i in range(len(counts))]
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64)))
    if training:
        ds = ds.shuffle(len(counts), seed=seed, reshuffle_each_iteration=False)
    return ds.interleave(lambda offset, n: cached.skip(offset).take(n), cycle_length=min(len(counts), 4),
                         block_length=1, num_parallel_calls=min(len(counts), 4), deterministic=True)


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
    canonical_focal_px: Optional[float] = None,
    with_focal: bool = False,
    cached: Optional[tf.data.Dataset] = None,
) -> tf.data.Dataset:
    """Batches of (image [B,H,W,3] in [0,1], depth [B,H,W,1] metres) from the shards of ``split``.

    ``training`` shuffles (seeded by ``seed``) and augments; ``chunks`` restricts to curriculum chunks.
    ``data.input_size`` of ``None``/``[]`` keeps the stored size (then every sample must have it).
    ``depth_at_input_size=False`` resizes only the image and keeps the depth at its stored resolution
    (evaluation against full-resolution ground truth, as the published tables do).
    ``canonical_focal_px`` (f_c, :func:`canonical_focal`): training targets are ``depth * f_c / f`` (f
    the focal length at the network input after augmentation, :func:`focal_px`; canonical depths
    above ``max_depth_m`` are invalid, the depth head cannot reach them); otherwise a zoom divides the
    depth by s. ``with_focal``: elements are (image, depth, f [B]) (evaluation of a canonical model:
    the metric ground truth and the focal length its prediction is scaled by).
    ``cached``: the same split and chunks as :func:`cached_samples` gives them (``data.cache``); then
    the samples come from memory instead of from the records, in the same order (the same batches
    where the records' order is deterministic: ``data.deterministic``).
    One call is one pass over the data (one epoch); build a new dataset with another seed per epoch.
    """
    if data_dir is None or manifest is None:
        data_dir, manifest = resolve_dataset(data_cfg)
    deterministic = data_cfg.deterministic or training is False
    parallel = AUTOTUNE if data_cfg.parallel_calls < 0 else data_cfg.parallel_calls
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True

    if cached is not None:
        ds = _cached_records(cached, shards.shard_counts(manifest, split, chunks), training, seed)
    else:
        ds = record_dataset(shards.shard_paths(data_dir, manifest, split, chunks), training, seed, deterministic)
    if training and data_cfg.shuffle_buffer > 1:
        # Shuffle serialised records (cheap to hold) before decoding, or the cached samples' references.
        ds = ds.shuffle(data_cfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=False)
    ds = ds.enumerate()

    aug = data_cfg.augment
    max_depth = float(data_cfg.max_depth_m)
    decode = _decoder(data_cfg, depth_at_input_size)

    def finish(index, image, depth, intrinsics):
        if training:
            image, depth, intrinsics, zoom = augment_sample(image, depth, intrinsics, aug,
                                                            tf.stack([tf.cast(seed, tf.int64), index]))
            if canonical_focal_px is None:
                depth = depth / zoom if (aug.scale_max > 1.0 or aug.rotation_deg > 0) else depth
        if canonical_focal_px is None and not with_focal:
            return image, depth
        focal = focal_px(intrinsics)
        check = tf.debugging.assert_positive(
            focal, message=f"model.camera: canonical needs every sample's camera intrinsics, but a record of "
                           f"{data_dir} has none (convert it with --intrinsics fx,fy,cx,cy)")
        with tf.control_dependencies([check]):
            focal = tf.identity(focal)
        if training:
            depth = depth / canonical_depth_scale(focal, canonical_focal_px)
            depth = tf.where(depth <= max_depth, depth, 0.0)
            return image, depth
        return image, depth, focal

    if cached is not None:
        ds = ds.map(lambda index, sample: finish(index, *sample), num_parallel_calls=parallel,
                    deterministic=deterministic)
    else:
        ds = ds.map(lambda index, serialized: finish(index, *decode(serialized)), num_parallel_calls=parallel,
                    deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return ds.prefetch(AUTOTUNE).with_options(options)


def build_eval_dataset(data_cfg: DataConfig, eval_cfg, split: str, data_dir: Optional[str] = None,
                       manifest: Optional[dict] = None, with_focal: bool = False) -> tf.data.Dataset:
    """Evaluation batches: images at the model's input size; depth at the stored resolution (centre-
    cropped like the image when ``data.resize_mode`` is "center_crop") when ``eval.gt_resolution`` is
    "native" (batch 1 if the dataset's image sizes vary), else at input size. ``with_focal``: a third
    element, each image's focal length at the model input (a canonical-camera model's scale)."""
    if data_dir is None or manifest is None:
        data_dir, manifest = resolve_dataset(data_cfg)
    native = eval_cfg.gt_resolution == "native"
    if eval_cfg.gt_resolution not in ("native", "input"):
        raise ValueError(f"eval.gt_resolution must be 'native' or 'input', got {eval_cfg.gt_resolution!r}")
    batch = eval_cfg.batch_size if (not native or manifest.get("image_size")) else 1
    return build_dataset(data_cfg, split, batch, training=False, data_dir=data_dir, manifest=manifest,
                         depth_at_input_size=not native, with_focal=with_focal)


def steps_per_epoch(manifest: dict, split: str, batch_size: int, chunks: Optional[Iterable[int]] = None,
                    drop_remainder: bool = True) -> int:
    n = shards.split_count(manifest, split, chunks)
    return n // batch_size if drop_remainder else -(-n // batch_size)
