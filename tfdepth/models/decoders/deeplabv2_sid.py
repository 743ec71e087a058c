"""``deeplabv2_sid``: DeepLab v2 ASPP classification head over SID depth bins (DeepLab v2 SID paper).

Encoder: ResNet-101 at output stride 8 (``model.output_stride: 8``), KITTI crops 420x800.

DeepLab v2 ASPP: parallel branches with atrous rates 6, 12, 18, 24 on P5 (stride 8), each producing
K class logits; the branch logits are SUMMED (not concatenated)::

    branch_filters == 0 (default; the released ResNet-101 DeepLab v2 head):
        logits_r = Conv3x3(K, dilation r, bias)(P5)
    branch_filters  > 0 (DeepLab v2 "ASPP-L" branch of the VGG model, e.g. 1024):
        logits_r = Conv1x1(K)(Dropout(ReLU(Conv1x1(F)(Dropout(ReLU(Conv3x3(F, dilation r)(P5)))))))
    logits = sum_r logits_r                                   # [B, H/8, W/8, K], float32

The K = ``num_bins`` (71) classes are SID bins over [alpha_m, beta_m] (``tfdepth.sid``):
``t_i = exp(log alpha + i * log(beta / alpha) / K)``; the paper gives neither alpha nor beta, only
that depths beyond 80 m are ignored: beta = 80 m, alpha = 1 m as in DORN's shifted interval.

Resolution: the paper's DeepLab v2 "score map output is then interpolated for upsampling to original
image resolution", so by default (``logits_resolution: input``) ``sid_logits`` are bilinearly
upsampled to the INPUT size [B, H, W, K] and the loss sees the ground truth at full resolution
(important for sparse KITTI LiDAR, which nearest-neighbour downsampling would thin out).
``logits_resolution: feature`` returns ``sid_logits`` at stride 8 (the loss then resizes the ground
truth to it with nearest neighbour). ``depth`` is always decoded from the input-size logits:
[B, H, W, 1] metres.

Depth decoding (:class:`SIDDepth`, TFLite builtins only):

- ``inference: argmax``: the bin centre of the arg-max class (ARG_MAX + GATHER; not differentiable,
  training uses ``sid_logits``);
- ``inference: expectation``: sum_k softmax(logits)_k * centre_k (SOFTMAX, MUL, SUM);
- ``inference: ordinal`` (for a head trained with the ``sid_ordinal`` loss, DORN): channel k is the
  logit of P(label > k); label = sum_k [logit_k > 0], clipped to K - 1 (GREATER, CAST, SUM, MINIMUM,
  GATHER).

Centres: ``tfdepth.sid.sid_bin_centres(K, alpha, beta, centre)``, ``centre`` = "geometric"
(sqrt(t_l t_{l+1}), default) or "arithmetic" (DORN's (t_l + t_{l+1}) / 2).

decoder_args: ``num_bins`` (71), ``alpha_m`` (1.0), ``beta_m`` (80.0) (defaults ``tfdepth.sid``; these
are the run's one SID setting: the ``sid_ce`` / ``sid_ordinal`` loss receives them), ``atrous_rates``
([6, 12, 18, 24]), ``branch_filters`` (0), ``dropout`` (0.5, ASPP-L branches only),
``logits_resolution`` ("input" | "feature"), ``inference`` ("argmax" | "expectation" | "ordinal"),
``centre`` ("geometric" | "arithmetic").
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import BilinearResize, as_int_list, get_feature, static_hw
from tfdepth.models.layers import conv2d
from tfdepth.sid import (
    DEFAULT_ALPHA_M,
    DEFAULT_BETA_M,
    DEFAULT_INFERENCE,
    DEFAULT_K,
    INFERENCE_MODES,
    sid_bin_centres,
    sid_logits_to_depth,
)

NAME = "deeplabv2_sid"
LOGITS_RESOLUTIONS = ("input", "feature")


@keras.saving.register_keras_serializable(package="tfdepth")
class SIDDepth(keras.layers.Layer):
    """``sid_logits`` [B, h, w, K] -> depth [B, h, w, 1] float32 metres from SID bin centres."""

    def __init__(self, num_bins: int = DEFAULT_K, alpha_m: float = DEFAULT_ALPHA_M, beta_m: float = DEFAULT_BETA_M,
                 inference: str = DEFAULT_INFERENCE,
                 centre: str = "geometric", **kwargs):
        super().__init__(**kwargs)
        if inference not in INFERENCE_MODES:
            raise ValueError(f"SIDDepth: inference {inference!r} unknown; allowed: {', '.join(INFERENCE_MODES)}")
        self.num_bins = int(num_bins)
        self.alpha_m = float(alpha_m)
        self.beta_m = float(beta_m)
        self.inference = inference
        self.centre = centre
        sid_bin_centres(self.num_bins, self.alpha_m, self.beta_m, centre)  # checks the bins and ``centre``

    def call(self, logits):
        if logits.shape[-1] is not None and int(logits.shape[-1]) != self.num_bins:
            raise ValueError(f"SIDDepth: logits have {logits.shape[-1]} channels, expected num_bins={self.num_bins}")
        # Plain tf ops (tfdepth.sid): keras.ops.argmax adds a BitwiseAnd (negative-zero handling) that
        # TFLite builtins cannot express.
        return sid_logits_to_depth(logits, self.alpha_m, self.beta_m,
                                   mode="ordinal" if self.inference == "ordinal" else "ce",
                                   soft=self.inference == "expectation", mean=self.centre)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, alpha_m=self.alpha_m, beta_m=self.beta_m, inference=self.inference,
                      centre=self.centre)
        return config


def aspp_sum(x, num_classes: int, atrous_rates, branch_filters: int = 0, dropout: float = 0.5, name: str = "aspp"):
    """DeepLab v2 ASPP: per-rate class logits, summed. Returns float32 [B, h, w, num_classes]."""
    branches = []
    for rate in atrous_rates:
        prefix = f"{name}_rate{rate}"
        if branch_filters > 0:
            y = conv2d(branch_filters, 3, padding="same", dilation_rate=rate, name=f"{prefix}_conv3x3")(x)
            y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
            if dropout > 0:
                y = keras.layers.Dropout(dropout, name=f"{prefix}_dropout1")(y)
            y = keras.layers.Conv2D(branch_filters, 1, name=f"{prefix}_conv1x1")(y)
            y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
            if dropout > 0:
                y = keras.layers.Dropout(dropout, name=f"{prefix}_dropout2")(y)
            y = keras.layers.Conv2D(num_classes, 1, dtype="float32", name=f"{prefix}_logits")(y)
        else:
            y = conv2d(num_classes, 3, padding="same", dilation_rate=rate, dtype="float32", name=f"{prefix}_logits")(x)
        branches.append(y)
    if len(branches) == 1:
        return branches[0]
    return keras.layers.Add(dtype="float32", name=f"{name}_sum")(branches)


def deeplabv2_sid(
    features,
    image,
    max_depth_m: float,
    num_bins: int = DEFAULT_K,
    alpha_m: float = DEFAULT_ALPHA_M,
    beta_m: float = DEFAULT_BETA_M,
    atrous_rates=(6, 12, 18, 24),
    branch_filters: int = 0,
    dropout: float = 0.5,
    logits_resolution: str = "input",
    inference: str = DEFAULT_INFERENCE,
    centre: str = "geometric",
):
    """Returns ``{"sid_logits": [B, h, w, K], "depth": [B, H, W, 1]}`` (float32; see module doc).

    ``max_depth_m`` is unused: the depth range is ``[alpha_m, beta_m]``.
    """
    num_bins = as_int_list(num_bins, "num_bins", NAME, length=1)[0]
    if num_bins < 2:
        raise ValueError(f"decoder {NAME!r}: decoder_args.num_bins must be >= 2, got {num_bins}")
    if not (0 < float(alpha_m) < float(beta_m)):
        raise ValueError(f"decoder {NAME!r}: need 0 < alpha_m < beta_m, got alpha_m={alpha_m!r}, beta_m={beta_m!r}")
    atrous_rates = as_int_list(list(atrous_rates), "atrous_rates", NAME)
    if isinstance(branch_filters, bool) or not isinstance(branch_filters, int) or branch_filters < 0:
        raise ValueError(f"decoder {NAME!r}: decoder_args.branch_filters must be an integer >= 0, got {branch_filters!r}")
    if logits_resolution not in LOGITS_RESOLUTIONS:
        raise ValueError(
            f"decoder {NAME!r}: decoder_args.logits_resolution {logits_resolution!r} unknown; allowed: {', '.join(LOGITS_RESOLUTIONS)}"
        )
    if inference not in INFERENCE_MODES:
        raise ValueError(f"decoder {NAME!r}: decoder_args.inference {inference!r} unknown; allowed: {', '.join(INFERENCE_MODES)}")
    image_hw = static_hw(image, "image")

    logits = aspp_sum(get_feature(features, "P5", NAME), num_bins, atrous_rates, branch_filters, float(dropout))
    full = logits
    if static_hw(logits, "sid logits") != image_hw:
        full = BilinearResize(image_hw[0], image_hw[1], dtype="float32", name="sid_logits_upsample")(logits)
    depth = SIDDepth(num_bins, float(alpha_m), float(beta_m), inference, centre, dtype="float32", name="depth")(full)
    return {"sid_logits": full if logits_resolution == "input" else logits, "depth": depth}
