"""Depth Anything V2 weights into tfdepth's Keras layout: Hugging Face checkpoints and keras-hub presets.

Hugging Face (``transformers``' ``DepthAnythingForDepthEstimation``: ``config.json`` + ``model.safetensors``,
e.g. ``depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf``)::

    spec = "hf:/path/to/dir"          # a local directory, or
    spec = "hf:depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"   # downloaded once, cached
    model, info = build_hf_model(spec, input_size=(518, 518))
    load_weights_into(model, spec)    # a model of tfdepth's dinov2_* + dpt config (fine-tuning start)

The Keras model is tfdepth's encoder ``dinov2_vit`` (keras-hub's DINOv2 layers) + decoder ``dpt``
(keras-hub's neck and head, tfdepth's final activation) with the checkpoint's sizes; every tensor of
the checkpoint is assigned (a missing, unexpected or mis-shaped tensor is an error naming it). The
position embeddings (trained at 518 x 518) are interpolated to the model's input grid H/14 x W/14 with
PyTorch's bicubic rule (a = -0.75, half-pixel centres), as transformers does, so a non-square input
gives the same depth as the PyTorch model.

keras-hub presets (the relative Depth Anything V2 small / base / large, downloaded from Kaggle by
keras-hub)::

    load_weights_into(model, "keras_hub:depth_anything_v2_small")

``info`` (:class:`HFDepthAnything`) records the depth type (``metric``: sigmoid x ``max_depth``
metres; ``relative``: ReLU disparity), ``max_depth``, the sizes and the PyTorch parameter count.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from tfdepth.errors import UserError

HF_PREFIX = "hf:"
KERAS_HUB_PREFIX = "keras_hub:"
CHECKPOINT_FILES = ("config.json", "model.safetensors")
DEFAULT_SHORT_SIDE = 518


@dataclass
class HFDepthAnything:
    """What a Depth Anything checkpoint's ``config.json`` says about the model."""

    source: str
    depth_type: str  # "metric" | "relative"
    max_depth: float  # metric: the head's scale in metres (20 indoor, 80 outdoor); relative: 1
    patch_size: int
    image_size: int  # the position embeddings' training resolution (518)
    encoder: Dict[str, object] = field(default_factory=dict)  # dinov2_vit keyword arguments
    decoder: Dict[str, object] = field(default_factory=dict)  # dpt keyword arguments
    torch_params: Optional[int] = None  # sum of the checkpoint's tensor sizes (transformers' count)

    def as_dict(self) -> dict:
        return {"source": self.source, "depth_type": self.depth_type, "max_depth_m": self.max_depth,
                "patch_size": self.patch_size, "image_size": self.image_size, "torch_params": self.torch_params}


# --------------------------------------------------------------------------------------------------
# Files


def is_hf_spec(text) -> bool:
    return isinstance(text, str) and text.startswith(HF_PREFIX)


def resolve_hf_dir(spec: str) -> str:
    """``hf:DIR`` -> DIR (must hold config.json + model.safetensors); ``hf:OWNER/NAME`` -> the local
    cache of that Hugging Face repository (downloaded once where a network is reachable)."""
    target = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    if not target:
        raise UserError(f"{spec!r}: expected hf:DIR or hf:OWNER/NAME (a DepthAnythingForDepthEstimation checkpoint)")
    if os.path.isdir(target):
        missing = [f for f in CHECKPOINT_FILES if not os.path.isfile(os.path.join(target, f))]
        if missing:
            raise UserError(f"{target}: a Hugging Face checkpoint directory needs {' and '.join(CHECKPOINT_FILES)}; "
                            f"missing {', '.join(missing)}")
        return target
    if target.count("/") != 1 or target.startswith((".", "/")):
        raise UserError(f"{spec}: no such directory, and not a Hugging Face repository id OWNER/NAME")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # declared in setup.cfg; a stripped environment
        raise UserError(f"{spec}: downloading needs huggingface_hub (pip install huggingface_hub), or give hf:DIR "
                        "with a downloaded config.json + model.safetensors") from None
    try:
        return snapshot_download(target, allow_patterns=list(CHECKPOINT_FILES))
    except Exception as e:  # no network, unknown repository, gated model
        raise UserError(f"{spec}: could not download {target} from the Hugging Face Hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); download config.json + model.safetensors "
                        "where a network is reachable and give hf:DIR") from None


def read_hf_config(directory: str, source: str = "") -> HFDepthAnything:
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the checkpoint's config ({e})") from None
    return spec_from_config(config, source or directory, path)


def spec_from_config(config: dict, source: str, path: str = "config.json") -> HFDepthAnything:
    """The tfdepth encoder / decoder arguments of a transformers ``DepthAnythingConfig`` dict."""
    if config.get("model_type") != "depth_anything":
        raise UserError(f"{path}: model_type {config.get('model_type')!r}; expected 'depth_anything' "
                        "(a transformers DepthAnythingForDepthEstimation checkpoint)")
    backbone = config.get("backbone_config") or {}
    if backbone.get("model_type", "dinov2") != "dinov2":
        raise UserError(f"{path}: backbone_config.model_type {backbone.get('model_type')!r}; only dinov2 is supported")
    if backbone.get("reshape_hidden_states", False):
        raise UserError(f"{path}: backbone_config.reshape_hidden_states is true; Depth Anything uses false")
    depth_type = config.get("depth_estimation_type", "relative")
    if depth_type not in ("metric", "relative"):
        raise UserError(f"{path}: depth_estimation_type {depth_type!r}; expected metric or relative")
    if list(config.get("reassemble_factors", [4, 2, 1, 0.5])) != [4, 2, 1, 0.5]:
        raise UserError(f"{path}: reassemble_factors {config.get('reassemble_factors')}; expected [4, 2, 1, 0.5]")
    if int(config.get("head_in_index", -1)) != -1:
        raise UserError(f"{path}: head_in_index {config.get('head_in_index')}; expected -1")
    patch = int(backbone.get("patch_size", 14))
    if int(config.get("patch_size", patch)) != patch:
        raise UserError(f"{path}: patch_size {config.get('patch_size')} differs from the backbone's {patch}")
    hidden = int(backbone.get("hidden_size", 768))
    if int(config.get("reassemble_hidden_size", hidden)) != hidden:
        raise UserError(f"{path}: reassemble_hidden_size {config.get('reassemble_hidden_size')} != hidden_size {hidden}")
    out_indices = backbone.get("out_indices")
    if not out_indices:
        names = backbone.get("out_features") or []
        out_indices = [int(str(n).replace("stage", "")) for n in names]
    if len(out_indices) != 4:
        raise UserError(f"{path}: backbone_config.out_indices {out_indices}; expected 4 stages")
    if backbone.get("hidden_act", "gelu") != "gelu" and not backbone.get("use_swiglu_ffn", False):
        raise UserError(f"{path}: hidden_act {backbone.get('hidden_act')!r}; keras-hub's DINOv2 MLP uses gelu")
    image_size = int(backbone.get("image_size", 518))
    encoder = dict(hidden_dim=hidden, num_layers=int(backbone.get("num_hidden_layers", 12)),
                   num_heads=int(backbone.get("num_attention_heads", 12)), out_indices=tuple(int(i) for i in out_indices),
                   patch_size=patch, mlp_ratio=float(backbone.get("mlp_ratio", 4)),
                   layer_scale_init_value=float(backbone.get("layerscale_value", 1.0)),
                   num_register_tokens=int(backbone.get("num_register_tokens", 0) or 0),
                   use_swiglu_ffn=bool(backbone.get("use_swiglu_ffn", False)), position_embedding_size=image_size,
                   apply_layernorm=bool(backbone.get("apply_layernorm", True)))
    if encoder["num_register_tokens"]:
        raise UserError(f"{path}: num_register_tokens {encoder['num_register_tokens']}; Depth Anything uses none")
    decoder = dict(depth_type=depth_type, neck_hidden_dims=tuple(int(d) for d in config.get("neck_hidden_sizes")),
                   fusion_hidden_dim=int(config.get("fusion_hidden_size", 64)),
                   head_hidden_dim=int(config.get("head_hidden_size", 32)), patch_size=patch)
    max_depth = float(config.get("max_depth") or 1.0)
    return HFDepthAnything(source, depth_type, max_depth, patch, image_size, encoder, decoder)


def read_hf_state(directory: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = os.path.join(directory, "model.safetensors")
    try:
        state = load_file(path)
    except Exception as e:  # truncated / not a safetensors file
        raise UserError(f"{path}: cannot read the safetensors checkpoint ({e})") from None
    return {k: np.asarray(v, np.float32) for k, v in state.items()}


# --------------------------------------------------------------------------------------------------
# Model


def preprocess_size(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE, multiple: int = 14
                    ) -> Tuple[int, int]:
    """The model input size of Depth Anything's processor for a picture of ``height x width``: scale so
    that the side needing the smaller change becomes ``short_side`` (keeping the aspect ratio), then
    round each side to the nearest multiple of ``multiple`` (transformers' DPT resize, keep_aspect_ratio,
    ensure_multiple_of)."""
    scale_h, scale_w = short_side / height, short_side / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
    return tuple(max(multiple, int(round(side * scale / multiple)) * multiple) for side in (height, width))


def build_depth_anything(info: HFDepthAnything, input_size: Sequence[int], name: str = "depth_anything_v2"
                         ) -> keras.Model:
    """tfdepth's DINOv2 encoder + DPT decoder with the sizes of ``info`` (random weights)."""
    from tfdepth.models.decoders.dpt import dpt
    from tfdepth.models.encoders.dinov2 import dinov2_vit

    height, width = int(input_size[0]), int(input_size[1])
    image = keras.Input((height, width, 3), name="image")
    encoder = dinov2_vit((height, width, 3), name="dinov2_encoder", **info.encoder)
    outputs = dpt(encoder(image), image, max_depth_m=info.max_depth, **info.decoder)
    return keras.Model(image, outputs, name=name)


def build_hf_model(spec: str, input_size: Optional[Sequence[int]] = None) -> Tuple[keras.Model, HFDepthAnything]:
    """The converted model of ``hf:DIR`` / ``hf:REPO`` at ``input_size`` (default: the checkpoint's square
    training size, 518 x 518) with every checkpoint tensor assigned."""
    directory = resolve_hf_dir(spec)
    info = read_hf_config(directory, spec)
    state = read_hf_state(directory)
    info.torch_params = int(sum(v.size for v in state.values()))
    size = input_size or (info.image_size, info.image_size)
    for side in size:
        if int(side) % info.patch_size:
            raise UserError(f"{spec}: input size {tuple(size)} must be multiples of the patch size {info.patch_size}")
    model = build_depth_anything(info, size)
    assign_hf_state(model, state, info, spec)
    return model, info


# --------------------------------------------------------------------------------------------------
# Weights


def torch_bicubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """[n_out, n_in] weights of ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``
    along one axis (source x = (i + 0.5) n_in / n_out - 0.5, taps clamped at the border)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    matrix = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        base = int(np.floor(src))
        t = src - base
        for offset, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            matrix[i, min(max(base + offset, 0), n_in - 1)] += w
    return matrix


def interpolate_position_embeddings(position_embeddings: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """[1, 1 + S*S, C] (cls first) -> [1, 1 + gh*gw, C], patch part resized as transformers' Dinov2
    (bicubic, float32, unchanged when ``grid`` is S x S)."""
    pos = np.asarray(position_embeddings, np.float32)
    side = int(round((pos.shape[1] - 1) ** 0.5))
    gh, gw = int(grid[0]), int(grid[1])
    if (gh, gw) == (side, side):
        return pos.copy()
    patches = pos[0, 1:].reshape(side, side, -1).astype(np.float64)
    rows, cols = torch_bicubic_matrix(side, gh), torch_bicubic_matrix(side, gw)
    resized = np.einsum("ij,jkc,lk->ilc", rows, patches, cols).reshape(1, gh * gw, -1).astype(np.float32)
    return np.concatenate([pos[:, :1], resized], axis=1)


def _conv(w):  # torch Conv2d [out, in, kh, kw] -> Keras [kh, kw, in, out]
    return np.transpose(w, (2, 3, 1, 0))


def _deconv(w):  # torch ConvTranspose2d [in, out, kh, kw] -> Keras Conv2DTranspose [kh, kw, out, in]
    return np.transpose(w, (2, 3, 1, 0))


def find_parts(model: keras.Model):
    """(encoder sub-model, neck layer, head layer) of a tfdepth Depth Anything model."""
    encoder = next((layer for layer in model.layers
                    if isinstance(layer, keras.Model) and any(sub.name == "embeddings" for sub in layer.layers)), None)
    names = {layer.name for layer in model.layers}
    if encoder is None or "neck" not in names or "head" not in names:
        raise UserError(f"model {model.name!r} is not a DINOv2 + DPT model (model.encoder dinov2_*, "
                        "model.decoder dpt); Depth Anything weights do not fit it")
    return encoder, model.get_layer("neck"), model.get_layer("head")


def _pairs(model: keras.Model, info: HFDepthAnything, state: Dict[str, np.ndarray]):
    """(keras variable, checkpoint key, converted array) for every tensor of the model."""
    encoder, neck, head = find_parts(model)
    emb, blocks, norm = encoder.get_layer("embeddings"), encoder.get_layer("encoder"), encoder.get_layer("layernorm")
    e = "backbone.embeddings"
    grid = (int(model.input.shape[1]) // info.patch_size, int(model.input.shape[2]) // info.patch_size)
    out = [(emb.cls_token, f"{e}.cls_token", None), (emb.mask_token, f"{e}.mask_token", None),
           (emb.position_embeddings, f"{e}.position_embeddings", None),
           (emb.interpolated_position_embeddings, f"{e}.position_embeddings",
            lambda x: interpolate_position_embeddings(x, grid)),
           (emb.patch_embeddings.projection.kernel, f"{e}.patch_embeddings.projection.weight", _conv),
           (emb.patch_embeddings.projection.bias, f"{e}.patch_embeddings.projection.bias", None)]
    hidden, heads = blocks.hidden_dim, blocks.num_heads
    for i, block in enumerate(blocks.layers):
        p = f"backbone.encoder.layer.{i}"
        mha = block.attention.attention
        for dense, key in ((mha.query_dense, "attention.attention.query"), (mha.key_dense, "attention.attention.key"),
                           (mha.value_dense, "attention.attention.value")):
            out.append((dense.kernel, f"{p}.{key}.weight", lambda x: x.T.reshape(hidden, heads, hidden // heads)))
            out.append((dense.bias, f"{p}.{key}.bias", lambda x: x.reshape(heads, hidden // heads)))
        out.append((mha.output_dense.kernel, f"{p}.attention.output.dense.weight",
                    lambda x: x.T.reshape(heads, hidden // heads, hidden)))
        out.append((mha.output_dense.bias, f"{p}.attention.output.dense.bias", None))
        for ln in ("norm1", "norm2"):
            out += [(getattr(block, ln).gamma, f"{p}.{ln}.weight", None), (getattr(block, ln).beta, f"{p}.{ln}.bias", None)]
        out += [(block.layer_scale1.lambda1, f"{p}.layer_scale1.lambda1", None),
                (block.layer_scale2.lambda1, f"{p}.layer_scale2.lambda1", None)]
        fcs = ("weights_in", "weights_out") if block.use_swiglu_ffn else ("fc1", "fc2")
        for fc in fcs:
            dense = getattr(block.mlp, fc)
            out += [(dense.kernel, f"{p}.mlp.{fc}.weight", lambda x: x.T), (dense.bias, f"{p}.mlp.{fc}.bias", None)]
    out += [(norm.gamma, "backbone.layernorm.weight", None), (norm.beta, "backbone.layernorm.bias", None)]

    def conv(layer, key, bias=True, fn=_conv):
        return [(layer.kernel, f"{key}.weight", fn)] + ([(layer.bias, f"{key}.bias", None)] if bias else [])

    for i, stage in enumerate(neck.reassemble_stage):
        k = f"neck.reassemble_stage.layers.{i}"
        out += conv(stage.projection, f"{k}.projection")
        if isinstance(stage.resize, keras.layers.Conv2DTranspose):
            out += conv(stage.resize, f"{k}.resize", fn=_deconv)
        elif isinstance(stage.resize, keras.layers.Conv2D):
            out += conv(stage.resize, f"{k}.resize")
    for i, c in enumerate(neck.convs):
        out += conv(c, f"neck.convs.{i}", bias=False)
    for i, fusion in enumerate(neck.fusion_stage):
        k = f"neck.fusion_stage.layers.{i}"
        out += conv(fusion.projection, f"{k}.projection")
        for r in ("residual_layer1", "residual_layer2"):
            for c in ("convolution1", "convolution2"):
                out += conv(getattr(getattr(fusion, r), c), f"{k}.{r}.{c}")
    for c in ("conv1", "conv2", "conv3"):
        scale = info.max_depth if (c == "conv3" and info.depth_type == "relative") else 1.0
        # relative: relu(z) * max_depth == relu(max_depth * z) (max_depth > 0): folded into conv3
        out.append((getattr(head, c).kernel, f"head.{c}.weight", lambda x, s=scale: _conv(x) * s))
        out.append((getattr(head, c).bias, f"head.{c}.bias", lambda x, s=scale: x * s))
    return out


def assign_hf_state(model: keras.Model, state: Dict[str, np.ndarray], info: HFDepthAnything, source: str) -> int:
    """Assign every tensor of a transformers Depth Anything state dict; returns the number assigned.
    Missing / unexpected / mis-shaped tensors raise :class:`UserError` naming them."""
    pairs = _pairs(model, info, state)
    missing = sorted({key for _, key, _ in pairs if key not in state})
    used = {key for _, key, _ in pairs}
    unexpected = sorted(k for k in state if k not in used)
    mismatched = []
    for variable, key, fn in pairs:
        if key in missing:
            continue
        value = state[key] if fn is None else fn(state[key])
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(f"{key} {tuple(value.shape)} -> {variable.path} {tuple(variable.shape)}")
            continue
        variable.assign(value.astype(np.float32))
    problems = [f"{what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
                if items]
    if problems:
        raise UserError(f"{source}: the checkpoint does not fit model {model.name!r} ({'; '.join(problems)})")
    return len(pairs)


def load_weights_into(model: keras.Model, spec: str, max_depth_m: Optional[float] = None) -> HFDepthAnything:
    """Whole-model initialisation of a tfdepth ``dinov2_* + dpt`` model from ``hf:DIR`` / ``hf:REPO`` or
    ``keras_hub:PRESET`` (``model.init_from``). ``max_depth_m`` (the run's ``data.max_depth_m``) must equal
    a metric checkpoint's ``max_depth``: the head was trained for that scale."""
    if spec.startswith(KERAS_HUB_PREFIX):
        return load_keras_hub_preset(model, spec[len(KERAS_HUB_PREFIX):])
    directory = resolve_hf_dir(spec)
    info = read_hf_config(directory, spec)
    if info.depth_type == "metric" and max_depth_m is not None and abs(float(max_depth_m) - info.max_depth) > 1e-6:
        raise UserError(f"{spec}: a metric checkpoint with max_depth {info.max_depth:g} m; set data.max_depth_m: "
                        f"{info.max_depth:g} (got {float(max_depth_m):g}): the sigmoid head is scaled by it")
    state = read_hf_state(directory)
    info.torch_params = int(sum(v.size for v in state.values()))
    assign_hf_state(model, state, info, spec)
    return info


def copy_keras_hub_backbone(model: keras.Model, backbone, source: str = "keras-hub backbone") -> int:
    """Copy a ``keras_hub.models.DepthAnythingBackbone``'s weights into a tfdepth ``dinov2_* + dpt`` model
    (the same keras-hub layers); the position embeddings are interpolated to the model's input grid."""
    encoder, neck, head = find_parts(model)
    image_encoder = backbone.image_encoder
    emb = encoder.get_layer("embeddings")
    keys = [f"stage{i}" for i in _out_indices(encoder)]
    if list(backbone.feature_keys) != keys or not image_encoder.apply_layernorm:
        raise UserError(f"{source}: feature keys {backbone.feature_keys} (layernorm {image_encoder.apply_layernorm}) "
                        f"do not match the model's {keys} (layernorm true)")
    pairs = [(emb, image_encoder.embeddings), (encoder.get_layer("encoder"), image_encoder.encoder),
             (encoder.get_layer("layernorm"), image_encoder.layernorm), (neck, backbone.neck), (head, backbone.head)]
    count = 0
    for target, src in pairs:
        if len(target.weights) != len(src.weights):
            raise UserError(f"{source}: layer {src.name} has {len(src.weights)} weights, the model's {target.name} "
                            f"{len(target.weights)}: different sizes")
        for t, s in zip(target.weights, src.weights):
            if tuple(t.shape) != tuple(s.shape) and t is not emb.interpolated_position_embeddings:
                raise UserError(f"{source}: {s.path} {tuple(s.shape)} does not fit {t.path} {tuple(t.shape)}")
            if t is not emb.interpolated_position_embeddings:
                t.assign(s.numpy())
                count += 1
    grid = (int(model.input.shape[1]) // emb.patch_size, int(model.input.shape[2]) // emb.patch_size)
    emb.interpolated_position_embeddings.assign(interpolate_position_embeddings(emb.position_embeddings.numpy(), grid))
    return count


def _out_indices(encoder) -> list:
    """The block numbers (1-based) a dinov2_* encoder returns (its variant's ``out_indices``)."""
    from tfdepth.models.encoders.dinov2 import VARIANTS

    blocks = encoder.get_layer("encoder")
    for variant in VARIANTS.values():
        if (variant["hidden_dim"], variant["num_layers"]) == (blocks.hidden_dim, blocks.num_layers):
            return list(variant["out_indices"])
    raise UserError(f"encoder {encoder.name!r} ({blocks.hidden_dim} wide, {blocks.num_layers} blocks) is not one "
                    f"of the dinov2_* variants ({', '.join(VARIANTS)})")


def load_keras_hub_preset(model: keras.Model, preset: str) -> HFDepthAnything:
    """The relative Depth Anything V2 presets of keras-hub (``depth_anything_v2_small`` / base / large)."""
    try:
        import keras_hub

        backbone = keras_hub.models.DepthAnythingBackbone.from_preset(preset)
    except Exception as e:  # unknown preset, no network / Kaggle access
        raise UserError(f"keras_hub:{preset}: cannot load the keras-hub preset ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    copy_keras_hub_backbone(model, backbone, f"keras_hub:{preset}")
    return HFDepthAnything(f"keras_hub:{preset}", "relative", 1.0, 14, 518)


# --------------------------------------------------------------------------------------------------
# model.init_from sources (registries.INIT_SOURCES): the run's own model with the converted weights


def _run_model(cfg):
    from tfdepth.models.build import build_model

    return build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)


def init_from_hf(arg: str, cfg) -> keras.Model:
    """``model.init_from: hf:DIR`` / ``hf:OWNER/NAME``: the run's dinov2_* + dpt model with the checkpoint."""
    model = _run_model(cfg)
    load_weights_into(model, HF_PREFIX + arg, cfg.data.max_depth_m)
    return model


def init_from_keras_hub(arg: str, cfg) -> keras.Model:
    """``model.init_from: keras_hub:PRESET`` (relative Depth Anything V2 presets)."""
    model = _run_model(cfg)
    load_keras_hub_preset(model, arg)
    return model
