"""Experiment configuration: YAML mapped onto typed dataclasses, strict keys, ``--set`` overrides,
every value checked at load.

An unknown or mistyped key, or a bad value, is a :class:`ConfigError` naming the key path, the value
and what is allowed::

    cfg = load_config("configs/synthetic_unet_resnet34.yaml", overrides=["train.batch_size=4"])

Names (encoder, decoder, loss, schedule, optimiser, strategy, evaluation protocol) are checked
against the catalogue ``tfdepth.registries`` and the ``args`` of decoders, losses and schedules
against their factories' parameters, read from source (:mod:`tfdepth.config_checks`). Nothing here
imports TensorFlow: a wrong value fails before it starts.

Values that several parts of a run share are set once: ``data.max_depth_m`` (the pipeline's valid
range, the model head's scale and the losses' ``max_depth_m``) and the SID bins
(``model.decoder_args`` ``num_bins`` / ``alpha_m`` / ``beta_m``, defaults in ``tfdepth.sid``).
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml


from tfdepth.errors import ConfigError  # noqa: F401 -- raised here, importable from here
from tfdepth.io.files import write_text

# keys that moved: old key path -> where the value lives now
MOVED = {
    "model.max_depth_m": "data.max_depth_m (the one depth range of a run: pipeline mask, depth head, losses)",
}


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """The embedded procedural dataset (written once to ``DataConfig.data_dir`` and cached)."""

    num_train: int = 1200
    num_val: int = 100
    height: int = 240
    width: int = 320
    seed: int = 0
    records_per_shard: int = 100
    chunks: int = 1
    # [min, max] horizontal field of view in degrees, drawn uniformly per sample (square pixels, centred
    # principal point; recorded in each record); None = the NYU Kinect camera for every sample
    hfov_deg: Optional[List[float]] = None
    # distance haze exp(-haze_per_m * r) in the pictures (a metric cue no camera geometry explains);
    # false renders the same rooms without it (docs/camera.md). true keeps the default dataset's files
    haze: bool = True


@dataclass
class AugmentConfig:
    """Training-time augmentation of each (image, depth) pair at input size (``pipeline.augment_pair``).

    The defaults flip only. ``scale_max``/``random_crop``/``rotation_deg``/``color_scale`` are the
    augmentations of Eigen et al. (NIPS 2014): NYU s in [1, 1.5], r in [-5, 5] deg, random crop, colour
    c in [0.8, 1.2]^3, flips 0.5; KITTI the same with s in [1, 1.2] and no rotation.
    """

    hflip: float = 0.5  # probability of a horizontal flip (image and depth together)
    brightness: float = 0.0  # max multiplicative brightness change: factor in [1-b, 1+b]
    channel_permutation: float = 0.0  # probability of a random RGB channel permutation
    # zoom factor s ~ U[1, scale_max] (unitless, 1 = off): image bilinear, depth nearest, cropped back to
    # the input size, depth metres divided by s (the camera moves s times closer)
    scale_max: float = 1.0
    # translation: the zoom's crop window lies at a uniformly random position (false: centred);
    # needs scale_max > 1 (the window can only move inside the zoomed image)
    random_crop: bool = False
    # in-plane rotation r ~ U[-rotation_deg, rotation_deg] degrees about the image centre (0 = off);
    # pixels rotated in from outside the image are 0 in the image and 0 (invalid) in the depth
    rotation_deg: float = 0.0
    # per-channel RGB factors c ~ U[1-x, 1+x]^3 (unitless, 0 = off), image clipped to [0, 1] after
    color_scale: float = 0.0

    def __post_init__(self):
        def bad(key, value, expected):
            raise ConfigError(f"data.augment.{key}: expected {expected}, got {value!r}")

        for key in ("hflip", "channel_permutation"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                bad(key, getattr(self, key), "a probability in [0, 1]")
        for key in ("brightness", "color_scale"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                bad(key, getattr(self, key), "a fraction in [0, 1] (factors in [1-x, 1+x])")
        if not 1.0 <= self.scale_max < float("inf"):
            bad("scale_max", self.scale_max, "a zoom factor >= 1 (1 = off)")
        if not 0.0 <= self.rotation_deg <= 180.0:
            bad("rotation_deg", self.rotation_deg, "degrees in [0, 180] (0 = off)")
        if self.random_crop and self.scale_max == 1.0:
            bad("random_crop", self.random_crop,
                "false while scale_max is 1 (the crop window can only move inside a zoomed image)")


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # "synthetic" (generated into data_dir) | "tfrecord" (data_dir has manifest.json)
    data_dir: str = "data/synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train_split: str = "train"
    val_split: str = "val"
    input_size: List[int] = field(default_factory=lambda: [240, 320])  # [H, W] fed to the model
    resize_mode: str = "resize"  # "resize" | "center_crop" (crop to the aspect ratio, then resize)
    max_depth_m: float = 10.0  # depths above are invalid (pipeline, loss); also the depth head's scale
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_buffer: int = 256
    # true: the training split is decoded and resized once and kept in memory (N x H x W x 16 bytes at
    # input_size), taken in the records' order and augmented anew each epoch; false: decoded every epoch
    cache: bool = False
    deterministic: bool = False
    parallel_calls: int = -1  # -1 = tf.data.AUTOTUNE


@dataclass
class ModelConfig:
    encoder: str = "resnet34"  # registries.ENCODERS
    encoder_weights: str = "none"  # "none" | "imagenet" | path to .weights.h5 / .pth / .safetensors
    output_stride: int = 32
    freeze: str = "none"  # "none" | "all" | number of leading stages to freeze ("2")
    # ResNet encoders with encoder_weights: none (init_from replaces what it loads): every residual branch's
    # last BatchNorm starts at gamma = 0 (Goyal et al. 2017; torchvision's zero_init_residual), so each block
    # starts as its shortcut; a deep network without skip connections needs it to learn in a few hundred steps
    zero_init_residual: bool = False
    decoder: str = "unet_transpose"  # registries.DECODERS
    decoder_args: Dict[str, Any] = field(default_factory=dict)  # keys checked against the decoder factory
    # "none": depth as seen by the training camera(s); "canonical" (Metric3D): the model predicts depth
    # for a camera of focal length canonical_focal_px at its input, targets are depth / (f / f_c) and
    # predictions are multiplied by f / f_c (f: each picture's focal length at the input; docs/camera.md)
    camera: str = "none"
    canonical_focal_px: Optional[float] = None  # f_c in pixels of the model input; required by "canonical"
    # the trained focal range [f_min, f_max] (pixels of the model input) of a canonical model: a picture whose
    # focal length f lies outside it is resized by clip(f) / f before the network (docs/camera.md); null: none.
    # Ignored with camera: none (like canonical_focal_px)
    focal_range_px: Optional[List[float]] = None
    # fine-tune from a trained model (tfdepth.training.init_from): a workdir / checkpoint, a .keras file,
    # a SavedModel; every weight matching by path and shape is loaded, then training starts at step 0
    init_from: Optional[str] = None
    init_strict: bool = False  # true: a weight skipped by init_from (shape or name mismatch) is an error


@dataclass
class LossTermConfig:
    name: str = "l1"  # registries.LOSSES
    weight: float = 1.0
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    name: str = "constant"  # registries.SCHEDULES: constant | cosine | cyclic | polynomial | exponential
    lr: float = 1e-4  # peak / base learning rate
    args: Dict[str, Any] = field(default_factory=dict)  # schedule-specific (warmup_steps, lr_min, ...)


@dataclass
class PhaseConfig:
    """One training phase: ``epochs`` epochs (or exactly ``steps`` optimizer steps) over all chunks,
    or on each chunk in turn. Give one of ``epochs`` / ``steps`` (neither: 1 epoch); the schedule decays
    over the phase's true length (``tfdepth.training.plan``)."""

    name: str = "main"
    epochs: Optional[int] = None  # epochs (one pass over the data, capped by train.steps_per_epoch); 0 skips
    # exactly this many optimizer steps (per chunk with chunks: each), in epoch units of one pass (or
    # train.steps_per_epoch batches), the last one cut short; 0 skips the phase
    steps: Optional[int] = None
    chunks: str = "all"  # "all" | "each"
    # chunks: each only: the chunk count of the recipe's paper; a dataset with fewer chunks is refused
    # before training (``train --allow-fewer-chunks`` makes it a warning)
    min_chunks: Optional[int] = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self):
        if self.epochs is None and self.steps is None:
            self.epochs = 1


@dataclass
class OptimizerConfig:
    name: str = "adam"  # registries.OPTIMIZERS: adam | adamw | sgd
    weight_decay: float = 0.0
    # coupled: L2, weight_decay * w added to the gradient (PyTorch SGD/Adam weight_decay=, TF1 slim L2
    # regularisers); decoupled: w -= lr * weight_decay * w (Keras, AdamW). Kernels only (rank >= 2).
    weight_decay_mode: str = "decoupled"
    momentum: float = 0.9  # sgd only
    clipnorm: Optional[float] = None
    epsilon: float = 1e-7
    # learning-rate factor per model part (tfdepth.models.build.model_parts: encoder, decoder); 1 if absent
    lr_multipliers: Dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    batch_size: int = 8  # global batch size
    phases: List[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps_per_epoch: Optional[int] = None  # cap per epoch (None: one pass over the data)
    grad_accum_steps: int = 1
    mixed_precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: bool = False
    strategy: str = "default"  # registries.STRATEGIES: default | mirrored | multi_worker
    seed: int = 0
    deterministic: bool = False
    log_every_steps: int = 10
    image_summary_every_steps: int = 200  # TensorBoard RGB / prediction / ground truth panel; 0 = off
    checkpoint_every_steps: int = 0  # also checkpoint mid-epoch every N steps (0: at epoch ends only)
    validate_every_epochs: int = 1
    keep_checkpoints: int = 3  # checkpoints/ keeps the newest N (model + optimiser state each)
    # checkpoints/best/ holds the model weights (+ step) only; true: also the optimiser state (~3x larger
    # with Adam), for resuming training from the best model
    best_with_optimizer: bool = False
    best_metric: str = "abs_rel"  # validation metric to keep the best checkpoint by (lower is better)
    max_consecutive_nonfinite: int = 10


@dataclass
class EvalConfig:
    protocol: str = "none"  # registries.PROTOCOLS: nyu | kitti | none
    crop: Optional[str] = None  # protocol's crop override: none | eigen | garg | kb
    gt_resolution: str = "native"  # native: score against stored ground truth; input: at model input size
    flip_average: bool = False
    pooled: bool = False  # pixel-pooled metrics instead of per-image averages
    with_ssim: bool = False
    max_images: Optional[int] = None
    batch_size: int = 8


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: List[LossTermConfig] = field(default_factory=lambda: [LossTermConfig()])
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        from tfdepth.config_checks import check_experiment

        check_experiment(self)


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (list, List, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_convert(v, args[0] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # "freeze: 2" reads naturally
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: Dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ConfigError naming allowed keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{path}." if path else ""
        if f"{where}{unknown[0]}" in MOVED:
            raise ConfigError(f"{where}{unknown[0]} has moved to {MOVED[f'{where}{unknown[0]}']}; "
                              "set it there and remove it here")
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s}; allowed keys{' in ' + path if path else ''}: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def _set_path(data: Dict[str, Any], dotted: str, value: Any, schema: type) -> None:
    """Set ``a.b.c = value`` in a nested dict, checking each key against ``schema``."""
    keys = dotted.split(".")
    node: Any = data
    tp: Any = schema
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {dotted}: {where} is not an index of a list of {len(node)}")
            idx = int(key)
            tp = typing.get_args(tp)[0] if typing.get_args(tp) else Any
            if last:
                node[idx] = value
                return
            node = node[idx]
            continue
        if dataclasses.is_dataclass(tp):
            names = [f.name for f in dataclasses.fields(tp)]
            if key not in names and where in MOVED:
                raise ConfigError(f"--set {dotted}: {where} has moved to {MOVED[where]}")
            if key not in names:
                raise ConfigError(f"--set {dotted}: unknown key {where}; allowed: {', '.join(names)}")
            tp = typing.get_type_hints(tp)[key]
            if typing.get_origin(tp) is Union:
                tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        if last:
            node[key] = value
            return
        if key not in node or node[key] is None:
            node[key] = {}
        node = node[key]


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str], schema: type = ExperimentConfig) -> Dict[str, Any]:
    """Apply ``key.path=value`` strings (value parsed as YAML) to a config dict."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(raw), schema)
    return data


def load_config(path: Optional[str] = None, overrides: Sequence[str] = (), warn: bool = False) -> ExperimentConfig:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides and check every
    value (ConfigError). ``warn``: also emit legal but doubtful training settings (a warm-up as long as
    its phase, ...) as :class:`~tfdepth.config_checks.ConfigWarning` (the train command does)."""
    data: Dict[str, Any] = to_dict(ExperimentConfig())
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: config file not found")
        with open(path) as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        try:
            cfg = from_dict(ExperimentConfig, loaded)  # strict check of the file as written
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        data = to_dict(cfg)
    apply_overrides(data, overrides)
    cfg = from_dict(ExperimentConfig, data)  # checks every value (config_checks.check_experiment)
    if warn:
        from tfdepth.config_checks import ConfigWarning, config_warnings

        for message in config_warnings(cfg):
            warnings.warn(message, ConfigWarning, stacklevel=2)
    return cfg


def save_config(cfg: ExperimentConfig, path: str) -> None:
    """Write ``cfg`` as YAML, atomically (several workers of one run may write the same file)."""
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
