"""Encoder weights: ``none``, ``imagenet`` (keras.applications), Keras ``.weights.h5``, torchvision checkpoints.

``weights`` values accepted by the encoder factories
----------------------------------------------------
``"none"``
    Random initialisation.
``"imagenet"``
    ResNet-50 / 101 and DenseNet-169: keras.applications ImageNet weights (downloaded once and cached in
    ``~/.keras/models``; offline, put the file there).  ResNet-50 / 101 copy them layer by layer (same
    names, shapes checked) into the dilatable implementation in ``resnet.py``.  ResNet-18 / 34 have no
    Keras ImageNet weights: convert a torchvision checkpoint (see below).
``path/to/file.weights.h5``
    ``model.save_weights`` of the same encoder (same name; any input size / output stride).
``path/to/file.pth`` / ``.pt`` / ``.safetensors``
    A torchvision or timm ResNet state dict (``conv1.weight``, ``bn1.running_mean``,
    ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ...; ``fc.*`` and
    ``*.num_batches_tracked`` are ignored, a ``module.`` prefix and ``state_dict`` / ``model`` wrappers
    are removed).  ``.safetensors`` is read with the ``safetensors`` NumPy API (no torch needed); ``.pth``
    needs torch.  Conv kernels are transposed OIHW -> HWIO.  Any missing, unexpected or shape-mismatched
    key is an error naming the keys.

    torchvision's ResNet-50 / 101 are "v1.5": the stride is in the 3x3 conv, BatchNorm eps is 1e-5, there
    are no conv biases and the input is mean / std normalised.  Loading such a checkpoint therefore builds
    the ``"torchvision"`` variant of the bottleneck ResNet (same weight shapes and names as
    keras.applications, conv biases set to zero) so that the outputs equal the checkpoint's forward pass.

``tools/convert_resnet_checkpoint.py`` converts a checkpoint once into a ``.weights.h5``; the file
records the encoder name and variant as HDF5 attributes so reloading it rebuilds the same variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import keras
import numpy as np

KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet50v2": "ResNet50V2",
    "densenet169": "DenseNet169",
}
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
H5_ATTR_ENCODER = "tfdepth_encoder"
H5_ATTR_VARIANT = "tfdepth_resnet_variant"


@dataclass(frozen=True)
class WeightsSource:
    """What to load: ``kind`` in {"none", "imagenet", "keras_h5", "checkpoint"}."""

    kind: str
    path: Optional[Path] = None
    variant: str = "keras"  # bottleneck ResNet layout: "keras" (v1) or "torchvision" (v1.5)


def _is_none(weights) -> bool:
    return weights is None or str(weights).strip().lower() in ("", "none", "null", "random")


def resolve_resnet_weights(name: str, weights) -> WeightsSource:
    """Parses a ResNet encoder's ``weights`` value (before the model is built: it picks the variant)."""
    if _is_none(weights):
        return WeightsSource("none")
    text = str(weights).strip()
    if text.lower() == "imagenet":
        if name not in KERAS_APPLICATIONS:
            raise ValueError(
                f"{name}: weights 'imagenet' are not available in Keras (keras.applications has no "
                f"{name}). Download a torchvision / timm {name} ImageNet checkpoint and either pass its "
                f".pth / .safetensors path as weights, or convert it once with "
                f"`python tools/convert_resnet_checkpoint.py --encoder {name} --checkpoint FILE "
                f"--output {name}.weights.h5` and pass that file."
            )
        return WeightsSource("imagenet")
    path = _existing_path(name, text)
    lower = path.name.lower()
    if lower.endswith(".h5"):
        attrs = read_h5_attrs(path)
        saved_name = attrs.get(H5_ATTR_ENCODER)
        if saved_name is not None and saved_name != name:
            raise ValueError(f"{name}: weights file {path} holds a {saved_name!r} encoder, not {name!r}")
        return WeightsSource("keras_h5", path, attrs.get(H5_ATTR_VARIANT, "keras"))
    if lower.endswith(".safetensors") or lower.endswith(TORCH_SUFFIXES):
        return WeightsSource("checkpoint", path, "torchvision")
    raise ValueError(
        f"{name}: weights file {path} has an unknown type; expected a Keras '.weights.h5', a torchvision "
        f"checkpoint '.pth' / '.pt' or a '.safetensors' file (or 'none' / 'imagenet')"
    )


def resolve_keras_weights(name: str, weights) -> WeightsSource:
    """``weights`` for encoders that only take Keras weights (DenseNet-169)."""
    if _is_none(weights):
        return WeightsSource("none")
    text = str(weights).strip()
    if text.lower() == "imagenet":
        return WeightsSource("imagenet")
    path = _existing_path(name, text)
    if not path.name.lower().endswith(".h5"):
        raise ValueError(
            f"{name}: weights file {path}: only Keras '.weights.h5' files (or 'none' / 'imagenet') are "
            f"supported for this encoder; torchvision checkpoints are converted for ResNets only"
        )
    attrs = read_h5_attrs(path)
    saved_name = attrs.get(H5_ATTR_ENCODER)
    if saved_name is not None and saved_name != name:
        raise ValueError(f"{name}: weights file {path} holds a {saved_name!r} encoder, not {name!r}")
    return WeightsSource("keras_h5", path)


def _existing_path(name: str, text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: weights {text!r} is neither 'none', 'imagenet' nor an existing file "
            f"(.weights.h5 / .pth / .safetensors)"
        )
    return path


def read_h5_attrs(path: Path) -> Dict[str, str]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()}
    except OSError as e:
        raise ValueError(f"weights file {path} is not a readable HDF5 file: {e}") from None


def save_encoder_weights(model: keras.Model, name: str, path) -> Path:
    """``model.save_weights(path)`` plus HDF5 attributes naming the encoder (and ResNet variant)."""
    import h5py

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weights file name must end in '.weights.h5', got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(path))
    with h5py.File(path, "a") as f:
        f.attrs[H5_ATTR_ENCODER] = name
        f.attrs[H5_ATTR_VARIANT] = model_variant(model)
    return path


def model_variant(model: keras.Model) -> str:
    """"keras" when the model normalises in caffe or tf mode (keras.applications ResNet v1 / v2), else "torchvision"."""
    try:
        mode = model.get_layer("normalize").mode
    except ValueError:
        return "keras"
    return "keras" if mode in ("caffe", "tf") else "torchvision"


def load_keras_h5(model: keras.Model, name: str, path: Path) -> None:
    try:
        model.load_weights(str(path))
    except Exception as e:  # Keras raises ValueError / KeyError with little context
        raise ValueError(
            f"{name}: could not load Keras weights {path} into the encoder (was it saved from a {name} "
            f"encoder with model.save_weights?): {e}"
        ) from None


def keras_applications_model(name: str, weights: Optional[str] = "imagenet") -> keras.Model:
    """keras.applications ResNet50 / ResNet101 / ResNet50V2 / DenseNet169 without top (weights downloaded and cached)."""
    cls = getattr(keras.applications, KERAS_APPLICATIONS[name])
    try:
        return cls(include_top=False, weights=weights, input_shape=(64, 64, 3))
    except Exception as e:
        raise RuntimeError(
            f"{name}: could not get keras.applications {KERAS_APPLICATIONS[name]} ImageNet weights "
            f"(download to ~/.keras/models failed: {e}). On an offline machine copy the weights file "
            f"into ~/.keras/models, or pass a .weights.h5 file as weights."
        ) from None


def copy_layer_weights(source: keras.Model, target: keras.Model, name: str) -> int:
    """Copies weights layer by layer by name (keras.applications names); shapes are checked.

    Every source layer with weights must have a same-named target layer and vice versa.
    Returns the number of arrays copied.
    """
    src = {layer.name: layer for layer in source.layers if layer.weights}
    dst = {layer.name: layer for layer in target.layers if layer.weights}
    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    mismatched = []
    for layer_name in sorted(set(src) & set(dst)):
        a = [tuple(w.shape) for w in src[layer_name].weights]
        b = [tuple(w.shape) for w in dst[layer_name].weights]
        if a != b:
            mismatched.append(f"{layer_name}: source {a} vs encoder {b}")
    _raise_if_problems(name, "keras.applications model", missing, unexpected, mismatched)
    copied = 0
    for layer_name, layer in dst.items():
        values = src[layer_name].get_weights()
        layer.set_weights(values)
        copied += len(values)
    return copied


# --------------------------------------------------------------------------------------------------
# torchvision / timm checkpoints


def read_torch_state_dict(path) -> Dict[str, np.ndarray]:
    """A torchvision / timm state dict as ``{name: float32 ndarray}`` (``.safetensors`` or ``.pth``)."""
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ImportError(
                f"reading {path} needs the 'safetensors' package: pip install safetensors"
            ) from None
        try:
            state = load_file(str(path))
        except Exception as e:
            raise ValueError(f"could not read safetensors checkpoint {path}: {e}") from None
    elif lower.endswith(TORCH_SUFFIXES):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading the PyTorch checkpoint {path} needs torch, which is not installed. Convert it "
                f"to .safetensors where torch is available (safetensors.torch.save_file(state_dict, "
                f"'model.safetensors')) and pass that file, or pip install 'tfdepth[pth]'."
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except TypeError:  # torch < 1.13 has no weights_only
            obj = torch.load(str(path), map_location="cpu")
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
        if not isinstance(obj, dict):
            raise ValueError(f"{path} holds a {type(obj).__name__}, expected a state dict")
        state = {k: v.detach().cpu().float().numpy() for k, v in obj.items() if hasattr(v, "detach")}
    else:
        raise ValueError(f"{path}: expected a .safetensors or .pth / .pt checkpoint")
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        out[key] = np.asarray(value, dtype=np.float32)
    return out


def torch_prefix(layer_name: str) -> Optional[str]:
    """torchvision module path of an encoder conv / BN layer (either layout), or None."""
    if layer_name in ("conv1", "bn1") or layer_name.startswith("layer"):
        return layer_name.replace("_", ".")  # torchvision layout: layer1_0_downsample_0 -> layer1.0.downsample.0
    if layer_name == "conv1_conv":
        return "conv1"
    if layer_name == "conv1_bn":
        return "bn1"
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", layer_name)
    if m:
        stage, block, index, kind = int(m[1]), int(m[2]), int(m[3]), m[4]
        module = f"layer{stage - 1}.{block - 1}"
        if index == 0:
            return f"{module}.downsample.{0 if kind == 'conv' else 1}"
        return f"{module}.{kind}{index}"
    return None


IGNORED_KEY = re.compile(r"^(fc\.|.*num_batches_tracked$)")


def assign_torch_state_dict(model: keras.Model, state: Dict[str, np.ndarray], name: str, source="checkpoint") -> int:
    """Assigns a torchvision-named state dict to the encoder's conv / BN layers (all or nothing).

    Conv ``weight`` [O, I, kh, kw] -> kernel [kh, kw, I, O]; a conv bias missing from the checkpoint (the
    keras-layout ResNet-50 / 101 have biases, torchvision has none) is set to zero.  BN ``weight``,
    ``bias``, ``running_mean``, ``running_var`` -> gamma, beta, moving_mean, moving_variance.
    Raises ``ValueError`` naming every missing, unexpected or shape-mismatched key.
    Returns the number of checkpoint tensors used.
    """
    missing, mismatched, plan = [], [], []
    used = set()

    def take(key, expected_shape, transform=None):
        if key not in state:
            missing.append(key)
            return None
        used.add(key)
        value = state[key] if transform is None else transform(state[key])
        if tuple(value.shape) != tuple(expected_shape):
            mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)} -> {tuple(value.shape)}, "
                              f"encoder expects {tuple(expected_shape)}")
            return None
        return value

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            prefix = torch_prefix(layer.name)
            if prefix is None:
                raise ValueError(f"{name}: no checkpoint name for conv layer {layer.name!r}")
            kernel = take(f"{prefix}.weight", layer.kernel.shape,
                          lambda w: np.transpose(w, (2, 3, 1, 0)) if w.ndim == 4 else w)
            plan.append((layer.kernel, kernel))
            if layer.use_bias:
                if f"{prefix}.bias" in state:
                    plan.append((layer.bias, take(f"{prefix}.bias", layer.bias.shape)))
                else:
                    plan.append((layer.bias, np.zeros(layer.bias.shape, np.float32)))
        elif isinstance(layer, keras.layers.BatchNormalization):
            prefix = torch_prefix(layer.name)
            if prefix is None:
                raise ValueError(f"{name}: no checkpoint name for BatchNorm layer {layer.name!r}")
            for var, suffix in ((layer.gamma, "weight"), (layer.beta, "bias"),
                                (layer.moving_mean, "running_mean"), (layer.moving_variance, "running_var")):
                plan.append((var, take(f"{prefix}.{suffix}", var.shape)))
        elif layer.weights and not isinstance(layer, keras.layers.InputLayer):
            raise ValueError(f"{name}: layer {layer.name!r} has weights but no checkpoint mapping")
    unexpected = sorted(k for k in state if k not in used and not IGNORED_KEY.match(k))
    _raise_if_problems(name, source, missing, unexpected, mismatched)
    for var, value in plan:
        var.assign(value)
    return len(used)


def _raise_if_problems(name, source, missing, unexpected, mismatched):
    if not (missing or unexpected or mismatched):
        return

    def show(items):
        items = list(items)
        head = ", ".join(items[:12])
        return head + (f", ... ({len(items)} in all)" if len(items) > 12 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches: {show(mismatched)}")
    raise ValueError(f"{name}: {source} does not match the encoder; " + "; ".join(parts))


# --------------------------------------------------------------------------------------------------
# Entry points used by the factories


def load_resnet_weights(model: keras.Model, name: str, source: WeightsSource) -> None:
    if source.kind == "none":
        return
    if source.kind == "imagenet":
        reference = keras_applications_model(name, "imagenet")
        copy_layer_weights(reference, model, name)
    elif source.kind == "keras_h5":
        load_keras_h5(model, name, source.path)
    elif source.kind == "checkpoint":
        assign_torch_state_dict(model, read_torch_state_dict(source.path), name, f"checkpoint {source.path}")
    else:
        raise ValueError(f"{name}: unknown weights kind {source.kind!r}")


def convert_checkpoint(encoder: str, checkpoint, output, input_size: int = 224) -> Dict[str, object]:
    """Converts a torchvision / timm ResNet checkpoint into a Keras ``.weights.h5`` for ``encoder``.

    Builds the encoder with ``weights=checkpoint`` (every key checked), saves it with
    :func:`save_encoder_weights` and returns a summary dict (encoder, variant, tensors, output).
    """
    from tfdepth.registries import ENCODERS

    if encoder not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise ValueError(f"convert_checkpoint: encoder {encoder!r}; expected resnet18 / 34 / 50 / 101")
    state = read_torch_state_dict(checkpoint)
    model = ENCODERS.get(encoder)(input_shape=(input_size, input_size, 3), weights=str(checkpoint))
    path = save_encoder_weights(model, encoder, output)
    return {
        "encoder": encoder,
        "variant": model_variant(model),
        "checkpoint_tensors": len(state),
        "ignored_keys": sorted(k for k in state if IGNORED_KEY.match(k)),
        "output": str(path),
    }
