"""Load-time checks of an :class:`~tfdepth.config.ExperimentConfig`: every value, before TensorFlow starts.

:func:`check_experiment` (run by ``ExperimentConfig.__post_init__``, so by every ``load_config``)
raises :class:`ConfigError` naming the key, the value and what is allowed for

* names against the catalogue (``tfdepth.registries``): encoder, decoder, loss terms (and the
  deep-supervision inner term), schedules, optimiser, strategy, evaluation protocol;
* other enumerations: dataset, resize_mode, phase chunks, precision, crop, gt_resolution,
  best_metric (a lower-is-better metric), freeze, encoder_weights kinds, SID inference;
* ``args`` of decoders, losses and schedules against their factories' parameters (read from source);
* sizes (positive batch sizes, epochs, steps, input_size [H, W], shuffle buffer, ...; a phase may have
  ``epochs: 0`` to skip it, but not every phase), finite positive learning rates, finite non-negative
  weights;
* consistency: a SID loss needs a SID decoder reading its logits the way the loss trains them; deep
  supervision needs auxiliary outputs; keys that moved (``model.max_depth_m``, a loss's
  ``max_depth_m`` or SID bins) name their one place.

:func:`config_warnings` lists what is legal but probably unintended (a warm-up as long as its phase,
validation less often than the run has epochs); ``load_config`` emits them as :class:`ConfigWarning`.
Where they depend on the dataset's size (a tfrecord dataset), :func:`plan_warnings` checks them once the
run's plan is known (``tfdepth.training.plan`` emits them, before the first step).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

from tfdepth import registries as reg
from tfdepth import sid
from tfdepth.errors import ConfigError

DATASETS = ("synthetic", "tfrecord")  # tfrecord: data_dir holds manifest.json (``tfdepth convert``)
RESIZE_MODES = ("resize", "center_crop")
PHASE_CHUNKS = ("all", "each")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
GT_RESOLUTIONS = ("native", "input")
CAMERA_MODES = ("none", "canonical")  # model.camera (docs/camera.md)
WEIGHT_DECAY_MODES = ("coupled", "decoupled")  # train.optimizer.weight_decay_mode (training/optimizers.py)
# the parts of a model (tfdepth.models.build.model_parts): train.optimizer.lr_multipliers keys
MODEL_PARTS = ("encoder", "decoder")
_NONE_WEIGHTS = ("", "none", "null", "random")
_FREEZE_OFF, _FREEZE_ALL = ("none", "", "0", "false"), ("all", "true")

class ConfigWarning(UserWarning):
    """A legal but probably unintended setting (printed once at load)."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}: expected {allowed}, got {value!r}")


def _one_of(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def _int_at_least(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(key, value, f"an integer >= {low}")


def _finite(key: str, value: Any, low: float = -math.inf, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if not ok:
        bound = f" > {low:g}" if low_open else (f" >= {low:g}" if low > -math.inf else "")
        _fail(key, value, f"a finite number{bound}")


def _check_args(key: str, args: Dict[str, Any], params: Optional[Dict[str, Any]], skip: int, what: str,
                exclude: Iterable[str] = ()) -> None:
    """``args`` keys must be keyword parameters of the factory (after its ``skip`` leading inputs),
    other than ``exclude`` (values the run sets elsewhere)."""
    if not isinstance(args, dict):
        _fail(key, args, "a mapping")
    if params is None:
        return  # not readable from source: the factory checks at build
    allowed = [p for p in list(params)[skip:] if p not in exclude]
    for name in args:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}: unknown argument of {what}; allowed: {', '.join(allowed) or '(none)'}")


# --------------------------------------------------------------------------------------------------


def check_data(data) -> None:
    _one_of("data.dataset", data.dataset, DATASETS)
    if not isinstance(data.data_dir, str) or not data.data_dir:
        _fail("data.data_dir", data.data_dir, "a directory path")
    for key in ("train_split", "val_split"):
        if not getattr(data, key):
            _fail(f"data.{key}", getattr(data, key), "a split name")
    size = data.input_size
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        _fail("data.input_size", size, "[H, W] of two positive integers")
    _one_of("data.resize_mode", data.resize_mode, RESIZE_MODES)
    _finite("data.max_depth_m", data.max_depth_m, 0.0, low_open=True)
    _int_at_least("data.shuffle_buffer", data.shuffle_buffer, 0)
    if data.parallel_calls != -1:
        _int_at_least("data.parallel_calls", data.parallel_calls, 1)  # -1 = tf.data.AUTOTUNE
    syn = data.synthetic
    _int_at_least("data.synthetic.num_train", syn.num_train, 1)
    _int_at_least("data.synthetic.num_val", syn.num_val, 0)
    _int_at_least("data.synthetic.height", syn.height, 8)
    _int_at_least("data.synthetic.width", syn.width, 8)
    _int_at_least("data.synthetic.seed", syn.seed, 0)
    _int_at_least("data.synthetic.records_per_shard", syn.records_per_shard, 1)
    _int_at_least("data.synthetic.chunks", syn.chunks, 1)
    if syn.hfov_deg is not None:
        fov = syn.hfov_deg
        if (len(fov) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 180
                                     for v in fov) or fov[0] > fov[1]):
            _fail("data.synthetic.hfov_deg", fov, "[min, max] degrees with 0 < min <= max < 180 (or null: Kinect)")
    if not isinstance(syn.haze, bool):
        _fail("data.synthetic.haze", syn.haze, "true (distance haze, the default) or false (none)")
    shards = -(-syn.num_train // syn.records_per_shard)
    if syn.chunks > shards:
        _fail("data.synthetic.chunks", syn.chunks,
              f"at most the {shards} train shards of num_train={syn.num_train} at records_per_shard="
              f"{syn.records_per_shard}")


def _check_weights(model, meta) -> None:
    weights = model.encoder_weights
    text = str(weights).strip()
    if text.lower() in _NONE_WEIGHTS:
        return
    if text.lower() == "imagenet":
        if not meta["imagenet"]:
            raise ConfigError(
                f"model.encoder_weights: 'imagenet' is not available for {model.encoder} (keras.applications has "
                f"none): give a torchvision / timm checkpoint (.pth / .safetensors) or a converted .weights.h5 "
                f"(tools/convert_resnet_checkpoint.py)")
        return
    if not text.lower().endswith(tuple(meta["weight_files"])):
        _fail("model.encoder_weights", weights,
              f"'none'{', imagenet' if meta['imagenet'] else ''} or a weights file ending in "
              f"{' / '.join(meta['weight_files'])} for {model.encoder}")


def check_model(model) -> None:
    reg.ENCODERS.check(model.encoder, "model.encoder")
    reg.DECODERS.check(model.decoder, "model.decoder")
    meta = reg.ENCODERS.meta(model.encoder)
    _check_weights(model, meta)
    if model.output_stride not in meta["output_strides"]:
        _fail("model.output_stride", model.output_stride,
              f"one of {', '.join(map(str, meta['output_strides']))} for {model.encoder}")
    freeze = str(model.freeze).strip().lower()
    if freeze not in _FREEZE_OFF + _FREEZE_ALL and not (freeze.isdigit() and int(freeze) <= meta["stages"]):
        _fail("model.freeze", model.freeze, f"'none', 'all' or a number of leading stages 0..{meta['stages']}")
    _check_zero_init_residual(model, meta)
    args = model.decoder_args
    if isinstance(args, dict) and "max_depth_m" in args:
        raise ConfigError("model.decoder_args.max_depth_m: set the depth range once, in data.max_depth_m "
                          "(it scales the depth head)")
    _check_args("model.decoder_args", args, reg.DECODERS.parameters(model.decoder), 2,
                f"decoder {model.decoder!r}", exclude=["max_depth_m"])
    if "sid_logits" in reg.DECODERS.meta(model.decoder)["outputs"]:
        _one_of("model.decoder_args.inference", sid.sid_inference(args), sid.INFERENCE_MODES)
    check_encoder_decoder_pair(model)
    _one_of("model.camera", model.camera, CAMERA_MODES)
    if model.camera == "canonical" and model.canonical_focal_px is None:
        _fail("model.canonical_focal_px", None, "the canonical focal length in pixels of the model input "
              "(model.camera: canonical needs it)")
    if model.canonical_focal_px is not None:
        _finite("model.canonical_focal_px", model.canonical_focal_px, 0.0, low_open=True)
    if model.focal_range_px is not None:
        rng = model.focal_range_px
        if (not isinstance(rng, (list, tuple)) or len(rng) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                           for v in rng) or rng[0] >= rng[1]):
            _fail("model.focal_range_px", rng, "[f_min, f_max] pixels of the model input with 0 < f_min < f_max "
                  "(the trained focal range of a canonical model, docs/camera.md), or null")
    _check_init_from(model)


def _check_zero_init_residual(model, meta) -> None:
    if not model.zero_init_residual:
        return
    if not meta.get("zero_init_residual"):
        _one_of("model.encoder (with model.zero_init_residual: true)", model.encoder,
                [n for n in reg.ENCODERS.names() if reg.ENCODERS.meta(n).get("zero_init_residual")])
    # (model.init_from may load only some blocks, e.g. a ResNet-50's into a ResNet-101: the others keep it)
    if str(model.encoder_weights).strip().lower() not in _NONE_WEIGHTS:
        raise ConfigError("model.zero_init_residual: true sets the initial weights of a from-scratch encoder; "
                          f"model.encoder_weights={model.encoder_weights!r} would replace all of them (set "
                          "encoder_weights: none, or zero_init_residual: false)")


def _check_init_from(model) -> None:
    """``model.init_from``: null, a path (checked when training starts: a saved config.yaml must load
    after its source is gone) or ``SCHEME:ARG`` with a scheme of ``registries.INIT_SOURCES``."""
    if not isinstance(model.init_strict, bool):
        _fail("model.init_strict", model.init_strict, "true or false")
    spec = model.init_from
    if spec is None:
        return
    if not isinstance(spec, str) or not spec.strip():
        _fail("model.init_from", spec, "null, a workdir / checkpoint / .keras / SavedModel path or SCHEME:ARG")
    scheme = init_scheme(spec)
    if scheme is not None and scheme not in reg.INIT_SOURCES:
        raise ConfigError(f"model.init_from: {spec!r} names the source scheme {scheme!r}, which is not known; "
                          f"allowed schemes: {', '.join(reg.INIT_SOURCES.names()) or '(none)'}, or a path "
                          f"(write ./{spec} for a path that contains ':')")


def init_scheme(spec: str) -> Optional[str]:
    """The ``SCHEME`` of an ``init_from`` value ``SCHEME:ARG`` (a word of 2+ letters, digits or ``_``
    before the first ``:``), or None: a path."""
    head, sep, _ = spec.partition(":")
    if sep and len(head) >= 2 and head.replace("_", "").isalnum() and head[0].isalpha():
        return head
    return None


def check_encoder_decoder_pair(model) -> None:
    """A decoder limited to some encoders (``dpt``: the DINOv2 token maps) gets one of them, and a ViT
    encoder (``patch_size`` in its metadata) a decoder that reads tokens; ``dpt``'s depth_type is known."""
    readers = reg.DECODERS.meta(model.decoder).get("encoders")
    if readers is not None and model.encoder not in readers:
        _one_of("model.encoder", model.encoder, readers)
    if "patch_size" in reg.ENCODERS.meta(model.encoder) and readers is None:
        token_decoders = [n for n in reg.DECODERS.names() if model.encoder in (reg.DECODERS.meta(n).get("encoders") or ())]
        raise ConfigError(f"model.decoder: {model.decoder!r} reads feature maps P1..P5, which {model.encoder!r} "
                          f"(ViT tokens) does not output; use model.decoder: {' or '.join(token_decoders)}")
    depth_types = reg.DECODERS.meta(model.decoder).get("depth_types")
    if depth_types and isinstance(model.decoder_args, dict):
        _one_of("model.decoder_args.depth_type", model.decoder_args.get("depth_type", depth_types[0]), depth_types)


def check_patch_size(cfg) -> None:
    """ViT encoders cut the image into patches: both sides of data.input_size are multiples of the patch."""
    patch = reg.ENCODERS.meta(cfg.model.encoder).get("patch_size")
    if patch and any(int(side) % patch or int(side) < 6 * patch for side in cfg.data.input_size):
        near = [max(6 * patch, round(int(side) / patch) * patch) for side in cfg.data.input_size]
        _fail("data.input_size", cfg.data.input_size,
              f"[H, W] multiples of {patch} (the patch size of {cfg.model.encoder}), at least {6 * patch} "
              f"(6 patches), e.g. {near}")


def _check_loss_args(key: str, name: str, args: Dict[str, Any], what: str) -> None:
    if "max_depth_m" in args:
        raise ConfigError(f"{key}.max_depth_m: set the depth range once, in data.max_depth_m (every loss term "
                          "that takes max_depth_m gets it from there)")
    set_elsewhere = ["max_depth_m"]
    if reg.LOSSES.meta(name)["input"] == "sid_logits":
        set_elsewhere += sid.BIN_KEYS
        for bin_key in sid.BIN_KEYS:
            if bin_key in args:
                raise ConfigError(f"{key}.{bin_key}: the SID bins are set once, in model.decoder_args "
                                  f"({', '.join(sid.BIN_KEYS)}; the loss reads them there); remove it here")
    _check_args(key, args, reg.LOSSES.parameters(name), 2, what, exclude=set_elsewhere)


def check_loss(terms, model) -> None:
    if not terms:
        _fail("loss", terms, "a list of at least one {name, weight, args} term")
    decoder_outputs = reg.DECODERS.meta(model.decoder)["outputs"] if model.decoder in reg.DECODERS else ()
    for i, term in enumerate(terms):
        key = f"loss[{i}]"
        reg.LOSSES.check(term.name, f"{key}.name")
        _finite(f"{key}.weight", term.weight, 0.0)
        _check_loss_args(f"{key}.args", term.name, term.args, f"loss {term.name!r}")
        kind = reg.LOSSES.meta(term.name)["input"]
        if kind == "sid_logits" and "sid_logits" not in decoder_outputs:
            with_sid = [n for n in reg.DECODERS.names() if "sid_logits" in reg.DECODERS.meta(n)["outputs"]]
            raise ConfigError(f"{key}.name: {term.name!r} trains SID logits, which decoder {model.decoder!r} does "
                              f"not output; use model.decoder: {' or '.join(with_sid)}")
        if kind == "outputs":
            inner = term.args.get("loss", "l1")
            reg.LOSSES.check(inner, f"{key}.args.loss")
            if reg.LOSSES.meta(inner)["input"] not in ("depth", "depth_norm"):
                depth_terms = [n for n in reg.LOSSES.names() if reg.LOSSES.meta(n)["input"] in ("depth", "depth_norm")]
                _one_of(f"{key}.args.loss", inner, depth_terms)
            _check_loss_args(f"{key}.args.loss_args", inner, term.args.get("loss_args") or {}, f"loss {inner!r}")
            weights = term.args.get("weights")
            if weights is not None:
                if not isinstance(weights, list) or not weights:
                    _fail(f"{key}.args.weights", weights, "a list of weights, one per auxiliary output")
                for j, w in enumerate(weights):
                    _finite(f"{key}.args.weights[{j}]", w, 0.0)
            switch = reg.DECODERS.meta(model.decoder).get("aux_outputs_arg")
            if "depth_aux" not in decoder_outputs or not model.decoder_args.get(switch, False):
                with_aux = [f"{n} with decoder_args.{reg.DECODERS.meta(n)['aux_outputs_arg']}: true"
                            for n in reg.DECODERS.names() if "depth_aux" in reg.DECODERS.meta(n)["outputs"]]
                raise ConfigError(f"{key}.name: 'deep_supervision' needs auxiliary outputs depth_aux1..: use "
                                  f"model.decoder: {' or '.join(with_aux)}")
    check_sid_consistency(terms, model)


def check_sid_consistency(terms, model) -> None:
    """A SID loss must train logits that the SID decoder (``deeplabv2_sid``) reads the same way (a
    ``sid_ordinal``-trained head decoded by arg-max gives wrong depths without any error)."""
    if "sid_logits" not in reg.DECODERS.meta(model.decoder)["outputs"]:
        return
    inference = sid.sid_inference(model.decoder_args)
    for i, term in enumerate(terms):
        readings = sid.LOSS_READINGS.get(term.name)
        if readings is not None and inference not in readings:
            raise ConfigError(f"loss[{i}] {term.name!r} trains logits that model.decoder_args.inference "
                              f"{inference!r} does not decode; use inference: {' or '.join(readings)}")


def _check_phase_length(key: str, phase) -> None:
    """Exactly one of ``epochs`` / ``steps``, each an integer >= 0 (0 skips the phase)."""
    if phase.epochs is not None and phase.steps is not None:
        raise ConfigError(f"{key}: give epochs or steps, not both (got epochs: {phase.epochs}, steps: {phase.steps}); "
                          f"e.g. --set {key.replace('[', '.').rstrip(']')}.epochs=null to keep steps")
    if phase.steps is not None:
        _int_at_least(f"{key}.steps", phase.steps, 0)  # 0: the phase is skipped
    else:
        _int_at_least(f"{key}.epochs", phase.epochs, 0)  # 0: the phase is skipped (--set train.phases.1.epochs=0)


def _check_schedule(key: str, schedule) -> None:
    reg.SCHEDULES.check(schedule.name, f"{key}.name")
    _finite(f"{key}.lr", schedule.lr, 0.0, low_open=True)
    _check_args(f"{key}.args", schedule.args, reg.SCHEDULES.parameters(schedule.name), 2,
                f"schedule {schedule.name!r}")
    for name, value in schedule.args.items():
        where = f"{key}.args.{name}"
        if name in ("step_size", "decay_steps"):
            _int_at_least(where, value, 1)
        elif name.endswith("_steps"):
            _int_at_least(where, value, 0)
        elif name.startswith("lr"):
            _finite(where, value, 0.0)
        elif name in ("decay_rate", "power"):
            _finite(where, value, 0.0, low_open=True)


def check_train(train) -> None:
    _int_at_least("train.batch_size", train.batch_size, 1)
    if not train.phases:
        _fail("train.phases", train.phases, "a list of at least one phase")
    names = set()
    for p, phase in enumerate(train.phases):
        key = f"train.phases[{p}]"
        if not phase.name or phase.name in names:
            _fail(f"{key}.name", phase.name, "a name, unique among the phases")
        names.add(phase.name)
        _check_phase_length(key, phase)
        _one_of(f"{key}.chunks", phase.chunks, PHASE_CHUNKS)
        if phase.min_chunks is not None:
            _int_at_least(f"{key}.min_chunks", phase.min_chunks, 1)
            if phase.chunks != "each":
                _fail(f"{key}.min_chunks", phase.min_chunks,
                      "null unless chunks: each (the paper's chunk count of a phase that trains each chunk in turn)")
        _check_schedule(f"{key}.schedule", phase.schedule)
    if not any(phase.epochs or phase.steps for phase in train.phases):  # 0 skips a phase, but not every phase
        raise ConfigError(f"train.phases[*].epochs: every phase has epochs: 0 (or steps: 0) "
                          f"({', '.join(ph.name for ph in train.phases)}), so the run would train nothing; "
                          "expected at least one phase with epochs >= 1 or steps >= 1 (0 skips a phase)")
    opt = train.optimizer
    reg.OPTIMIZERS.check(opt.name, "train.optimizer.name")
    _finite("train.optimizer.weight_decay", opt.weight_decay, 0.0)
    _finite("train.optimizer.momentum", opt.momentum, 0.0)
    if opt.momentum >= 1.0:
        _fail("train.optimizer.momentum", opt.momentum, "a number in [0, 1)")
    if opt.clipnorm is not None:
        _finite("train.optimizer.clipnorm", opt.clipnorm, 0.0, low_open=True)
    _finite("train.optimizer.epsilon", opt.epsilon, 0.0, low_open=True)
    _one_of("train.optimizer.weight_decay_mode", opt.weight_decay_mode, WEIGHT_DECAY_MODES)
    if opt.name == "adamw" and opt.weight_decay_mode != "decoupled":
        raise ConfigError("train.optimizer.weight_decay_mode: 'coupled' contradicts optimizer 'adamw' (decoupled by "
                          "definition); use name: adam with weight_decay_mode: coupled (PyTorch Adam weight_decay=) "
                          "or keep adamw with weight_decay_mode: decoupled")
    if not isinstance(opt.lr_multipliers, dict):
        _fail("train.optimizer.lr_multipliers", opt.lr_multipliers,
              f"a mapping of {' / '.join(MODEL_PARTS)} to factors")
    for part, factor in opt.lr_multipliers.items():
        _one_of("train.optimizer.lr_multipliers (key)", part, MODEL_PARTS)
        _finite(f"train.optimizer.lr_multipliers.{part}", factor, 0.0)
    if train.steps_per_epoch is not None:
        _int_at_least("train.steps_per_epoch", train.steps_per_epoch, 1)
    _int_at_least("train.grad_accum_steps", train.grad_accum_steps, 1)
    _one_of("train.mixed_precision", train.mixed_precision, PRECISIONS)
    reg.STRATEGIES.check(train.strategy, "train.strategy")
    _int_at_least("train.seed", train.seed, 0)
    _int_at_least("train.log_every_steps", train.log_every_steps, 1)
    _int_at_least("train.image_summary_every_steps", train.image_summary_every_steps, 0)
    _int_at_least("train.checkpoint_every_steps", train.checkpoint_every_steps, 0)
    _int_at_least("train.validate_every_epochs", train.validate_every_epochs, 0)
    _int_at_least("train.keep_checkpoints", train.keep_checkpoints, 1)
    if not isinstance(train.best_with_optimizer, bool):  # (a config built in code, not loaded from YAML)
        _fail("train.best_with_optimizer", train.best_with_optimizer, "true or false")
    from tfdepth.metrics import LOWER_IS_BETTER, METRIC_KEYS

    _one_of("train.best_metric", train.best_metric, [k for k in METRIC_KEYS if k in LOWER_IS_BETTER])
    _int_at_least("train.max_consecutive_nonfinite", train.max_consecutive_nonfinite, 1)


def check_eval(ev) -> None:
    from tfdepth.metrics import CROPS

    reg.PROTOCOLS.check(ev.protocol, "eval.protocol")
    if ev.crop is not None:
        _one_of("eval.crop", ev.crop, CROPS)
    _one_of("eval.gt_resolution", ev.gt_resolution, GT_RESOLUTIONS)
    if ev.max_images is not None:
        _int_at_least("eval.max_images", ev.max_images, 1)
    _int_at_least("eval.batch_size", ev.batch_size, 1)


def check_experiment(cfg) -> None:
    """Every check above, section by section; raises the first problem as a ConfigError."""
    if not cfg.name:
        _fail("name", cfg.name, "a run name")
    check_data(cfg.data)
    check_model(cfg.model)
    check_patch_size(cfg)
    check_loss(cfg.loss, cfg.model)
    check_train(cfg.train)
    check_eval(cfg.eval)


# --------------------------------------------------------------------------------------------------


def _phase_groups(cfg, phase) -> Optional[int]:
    """The chunk groups ``phase`` trains in turn (1 for ``chunks: all``), when known at load."""
    if phase.chunks == "all":
        return 1
    return cfg.data.synthetic.chunks if cfg.data.dataset == "synthetic" else None


def _phase_steps(cfg, phase) -> Optional[int]:
    """About how many steps ``phase`` has, when that is known before the data exist (else None):
    a synthetic dataset's size is in the config, ``train.steps_per_epoch`` caps every epoch, and a
    ``steps`` phase has exactly ``steps`` per chunk group."""
    train, syn = cfg.train, cfg.data.synthetic
    groups = _phase_groups(cfg, phase)
    if phase.steps is not None:
        return None if groups is None else phase.steps * groups
    cap = train.steps_per_epoch
    if cfg.data.dataset == "synthetic":
        per_group = syn.num_train // groups // train.batch_size
        per_group = min(per_group, cap) if cap else per_group
    elif cap and phase.chunks == "all":  # tfrecord: at most cap steps per epoch
        per_group = cap
    else:
        return None
    return phase.epochs * groups * per_group


def _phase_units(cfg, phase) -> Optional[int]:
    """The epoch units of ``phase`` (``tfdepth.training.plan``) when known at load, else None."""
    groups = _phase_groups(cfg, phase)
    if groups is None:
        return None
    if phase.steps is None:
        return phase.epochs * groups
    if cfg.data.dataset != "synthetic":
        return None  # a steps phase's units are passes over the data: their size is in the manifest
    per_pass = cfg.data.synthetic.num_train // groups // cfg.train.batch_size
    unit = min(per_pass, cfg.train.steps_per_epoch or per_pass)
    return groups * -(-phase.steps // unit) if unit > 0 else None


def _warmup_warning(p: int, warmup: int, steps: int, exact: bool) -> Optional[str]:
    if warmup < steps:
        return None
    return (f"train.phases[{p}].schedule.args.warmup_steps = {warmup} is as long as the whole phase "
            f"({'' if exact else 'about '}{steps} step(s)): the learning rate never leaves the warm-up")


def _validation_warning(every: int, units: int) -> Optional[str]:
    if not every or not 0 < units < every:
        return None
    return (f"train.validate_every_epochs = {every} but the run has {units} epoch(s): validation runs "
            "only once, after the last")


def _units_known_at_load(cfg) -> bool:
    return all(_phase_units(cfg, ph) is not None for ph in cfg.train.phases)


def config_warnings(cfg) -> List[str]:
    """Settings that are legal but probably not meant (each a one-line message). What depends on the
    dataset's size (a tfrecord dataset's steps or chunks) is checked by :func:`plan_warnings` instead."""
    out = []
    for p, phase in enumerate(cfg.train.phases):
        warmup = phase.schedule.args.get("warmup_steps")
        steps = _phase_steps(cfg, phase) if warmup and (phase.epochs or phase.steps) else None
        if steps is not None:
            out.append(_warmup_warning(p, warmup, steps, exact=phase.steps is not None))
    if _units_known_at_load(cfg):
        units = sum(_phase_units(cfg, ph) for ph in cfg.train.phases)
        out.append(_validation_warning(cfg.train.validate_every_epochs, units))
    return [m for m in out if m]


def plan_warnings(cfg, phase_steps: List[int], units: int) -> List[str]:
    """The warnings of :func:`config_warnings` that load could not check because they depend on the
    dataset's size, now that the plan (``tfdepth.training.plan``) knows ``phase_steps`` (the step count
    of each phase) and ``units`` (the run's epoch units); those load did check are not repeated."""
    out = []
    for p, phase in enumerate(cfg.train.phases):
        warmup = phase.schedule.args.get("warmup_steps")
        if warmup and (phase.epochs or phase.steps) and _phase_steps(cfg, phase) is None:
            out.append(_warmup_warning(p, warmup, phase_steps[p], exact=True))
    if not _units_known_at_load(cfg):
        out.append(_validation_warning(cfg.train.validate_every_epochs, units))
    return [m for m in out if m]
