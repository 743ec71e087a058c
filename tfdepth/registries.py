"""The catalogue: every registry of tfdepth and all its entries, declared here and nowhere else.

Importing this module imports nothing but :mod:`tfdepth.registry` (no TensorFlow, no NumPy): the
config is checked against these names before TensorFlow starts, and ``tfdepth info --list`` prints
them. Each target is imported when first fetched with ``REGISTRY.get(name)``; ``tests/test_registry.py``
resolves every entry, so a moved function fails CI with its name.

Metadata:

- encoders: ``output_strides`` (allowed ``model.output_stride``), ``stages`` (``model.freeze``
  "N" may go up to it), ``imagenet`` (whether ``model.encoder_weights: imagenet`` exists),
  ``weight_files`` (the weight-file suffixes the encoder reads), ``patch_size`` (ViT encoders: both
  sides of ``data.input_size`` must be multiples of it);
- decoders: ``outputs`` (besides ``depth``: ``sid_logits`` for SID heads, ``depth_aux`` for
  ``depth_aux1``..), ``aux_outputs_arg`` (the ``decoder_args`` switch that turns ``depth_aux`` on),
  ``encoders`` (the only encoders the decoder reads, where it is limited to some), ``depth_types``
  (the allowed ``decoder_args.depth_type``, default first: metric metres or relative disparity);
- losses: ``input``: ``depth`` (the depth map), ``depth_norm`` (DenseDepth's m / d: the model's
  ``depth_norm`` output, else m / depth), ``sid_logits`` (SID logits), ``outputs`` (the whole
  output dict, deep supervision).
"""

from __future__ import annotations

from tfdepth.registry import Registry

_RESNET_WEIGHTS = (".weights.h5", ".h5", ".pth", ".pt", ".bin", ".ckpt", ".safetensors")

# --------------------------------------------------------------------------------------------------
ENCODERS = Registry("encoder", "backbones: RGB [0, 1] -> feature maps P1..P5 (strides 2..32)")
_ENC = "tfdepth.models.encoders"
ENCODERS.add("resnet18", f"{_ENC}.resnet:resnet18", "ResNet-18, torchvision layout (11.2 M parameters)",
             output_strides=(32, 16, 8), stages=5, imagenet=False, weight_files=_RESNET_WEIGHTS,
             zero_init_residual=True)
ENCODERS.add("resnet34", f"{_ENC}.resnet:resnet34", "ResNet-34, torchvision layout (21.3 M parameters)",
             output_strides=(32, 16, 8), stages=5, imagenet=False, weight_files=_RESNET_WEIGHTS,
             zero_init_residual=True)
ENCODERS.add("resnet50", f"{_ENC}.resnet:resnet50", "ResNet-50, keras.applications layout, dilatable",
             output_strides=(32, 16, 8), stages=5, imagenet=True, weight_files=_RESNET_WEIGHTS,
             zero_init_residual=True)
ENCODERS.add("resnet101", f"{_ENC}.resnet:resnet101", "ResNet-101, keras.applications layout, dilatable",
             output_strides=(32, 16, 8), stages=5, imagenet=True, weight_files=_RESNET_WEIGHTS,
             zero_init_residual=True)
ENCODERS.add("resnet50v2", f"{_ENC}.resnet_v2:resnet50v2",
             "ResNet-50 v2 (pre-activation), keras.applications ResNet50V2 layout, dilatable, multi-grid (1, 2, 4)",
             output_strides=(32, 16, 8), stages=5, imagenet=True, weight_files=(".weights.h5", ".h5"))
ENCODERS.add("densenet169", f"{_ENC}.densenet:densenet169", "DenseNet-169, keras.applications (output stride 32)",
             output_strides=(32,), stages=5, imagenet=True, weight_files=(".weights.h5", ".h5"))
# DINOv2 ViT/14 (keras-hub layers) for the Depth Anything V2 DPT decoder; whole-model weights come from
# model.init_from (hf:DIR / hf:REPO_ID / keras_hub:PRESET); stages = embeddings + transformer blocks
for _size, _blocks, _what in (("small", 12, "ViT-S/14, 22.1 M"), ("base", 12, "ViT-B/14, 86.6 M"),
                              ("large", 24, "ViT-L/14, 304 M"), ("tiny", 4, "32 wide, 4 blocks: CPU tests, demo")):
    ENCODERS.add(f"dinov2_{_size}", f"{_ENC}.dinov2:dinov2_{_size}",
                 f"DINOv2 {_what} (keras-hub), token maps for decoder dpt; input sides multiples of 14",
                 output_strides=(14,), stages=_blocks + 1, imagenet=False, weight_files=(), patch_size=14)

# --------------------------------------------------------------------------------------------------
DECODERS = Registry("decoder", "decoders / heads: features -> depth in metres (and extra outputs)")
_DEC = "tfdepth.models.decoders"
DECODERS.add("unet_transpose", f"{_DEC}.unet:unet_transpose",
             "U-Net with transposed-conv upsampling and skips (curriculum ResNet-34 paper)", outputs=())
DECODERS.add("densedepth", f"{_DEC}.densedepth:densedepth",
             "DenseDepth bilinear decoder with skips, half-resolution output (+ deep supervision)",
             outputs=("depth_aux", "depth_norm"), aux_outputs_arg="deep_supervision")
DECODERS.add("transpose5", f"{_DEC}.transpose5:transpose5",
             "five stride-2 transposed convolutions from P5 (ResNet-50 synthetic paper)", outputs=())
DECODERS.add("deeplabv3plus", f"{_DEC}.deeplabv3plus:deeplabv3plus",
             "DeepLabv3+ ASPP + decoder for depth (original and baseline+ variants)", outputs=())
DECODERS.add("deeplabv2_sid", f"{_DEC}.deeplabv2_sid:deeplabv2_sid",
             "DeepLab v2 ASPP classifier over SID depth bins (sid_logits + decoded depth)", outputs=("sid_logits",))
DECODERS.add("dpt", f"{_DEC}.dpt:dpt",
             "Depth Anything V2 DPT neck + head (keras-hub), metric (sigmoid x max) or relative; dinov2_* only",
             outputs=(), encoders=("dinov2_small", "dinov2_base", "dinov2_large", "dinov2_tiny"),
             depth_types=("metric", "relative"))

# --------------------------------------------------------------------------------------------------
LOSSES = Registry("loss", "loss terms: (prediction, ground truth metres, mask) -> per-example loss")
_L = "tfdepth.losses"
LOSSES.add("l1", f"{_L}:l1_loss", "masked mean |d - g| in metres", input="depth")
LOSSES.add("edge_aware", f"{_L}:edge_aware_loss", "L1 + lam * finite-difference gradient L1 (curriculum paper)",
           input="depth")
LOSSES.add("densedepth", f"{_L}:densedepth_loss", "DenseDepth: 0.1 L1 + gradient + (1 - SSIM) / 2 on y = m / d",
           input="depth_norm")
LOSSES.add("berhu", f"{_L}:berhu_loss", "reverse Huber, c = 1/5 of the batch's max error (Laina et al.)",
           input="depth")
LOSSES.add("grad_magnitude", f"{_L}:grad_magnitude_loss", "DeepLabv3+ l_grad.mg: Sobel gradient differences",
           input="depth")
LOSSES.add("grad_direction", f"{_L}:grad_direction_loss", "DeepLabv3+ l_grad.dr: normal direction cross term",
           input="depth")
LOSSES.add("silog", f"{_L}:silog_loss", "scale-invariant log loss (BTS form)", input="depth")
LOSSES.add("sid_ce", f"{_L}:sid_ce_loss", "softmax cross-entropy over SID bins (DeepLab v2 SID)", input="sid_logits")
LOSSES.add("sid_ordinal", f"{_L}:sid_ordinal_loss", "DORN ordinal regression over SID bins", input="sid_logits")
LOSSES.add("deep_supervision", f"{_L}:deep_supervision_loss",
           "weighted depth term over the auxiliary outputs depth_aux1..", input="outputs")

# --------------------------------------------------------------------------------------------------
SCHEDULES = Registry("schedule", "learning-rate schedules: (lr, total_steps, **args) -> step -> lr")
_S = "tfdepth.training.schedules"
SCHEDULES.add("constant", f"{_S}:constant", "lr throughout")
SCHEDULES.add("cosine", f"{_S}:cosine", "linear warm-up, then cosine from lr to lr_min")
SCHEDULES.add("cyclic", f"{_S}:cyclic", "triangular between lr_min and lr, half-cycle step_size (Smith 2017)")
SCHEDULES.add("polynomial", f"{_S}:polynomial", "lr * (1 - step / total)^power (DeepLab poly)")
SCHEDULES.add("exponential", f"{_S}:exponential", "lr * decay_rate^(step / decay_steps)")

# --------------------------------------------------------------------------------------------------
OPTIMIZERS = Registry("optimizer", "optimisers: (OptimizerConfig, common keras kwargs) -> keras optimiser")
_O = "tfdepth.training.optimizers"
OPTIMIZERS.add("adam", f"{_O}:adam", "Adam (weight decay per train.optimizer.weight_decay_mode), fused update")
OPTIMIZERS.add("adamw", f"{_O}:adamw", "AdamW, decoupled weight decay, fused update")
OPTIMIZERS.add("sgd", f"{_O}:sgd", "SGD with momentum (weight decay per train.optimizer.weight_decay_mode)")

# --------------------------------------------------------------------------------------------------
# model.init_from: SCHEME:ARG. A target is fn(arg: str, cfg: ExperimentConfig) -> keras.Model or
# {variable path: array} (weights matched by path and shape: tfdepth.training.init_from).
INIT_SOURCES = Registry("init source", "converted models for model.init_from SCHEME:ARG: weights by variable path")
_HF = "tfdepth.models.hf_depth_anything"
INIT_SOURCES.add("hf", f"{_HF}:init_from_hf",
                 "transformers DepthAnythingForDepthEstimation checkpoint: hf:DIR or hf:OWNER/NAME (dinov2_* + dpt)")
INIT_SOURCES.add("keras_hub", f"{_HF}:init_from_keras_hub",
                 "keras-hub Depth Anything V2 preset (relative): keras_hub:depth_anything_v2_small / base / large")

# --------------------------------------------------------------------------------------------------
STRATEGIES = Registry("strategy", "tf.distribute strategies: () -> tf.distribute.Strategy")
_T = "tfdepth.training.strategy"
STRATEGIES.add("default", f"{_T}:default_strategy", "one device, no distribution")
STRATEGIES.add("mirrored", f"{_T}:mirrored_strategy", "synchronous data parallel over this machine's GPUs")
STRATEGIES.add("multi_worker", f"{_T}:multi_worker_strategy",
               "synchronous data parallel over the workers of TF_CONFIG")

# --------------------------------------------------------------------------------------------------
PROTOCOLS = Registry("evaluation protocol", "how predictions are scored: valid depth range, crop, clipping")
_P = "tfdepth.metrics:PROTOCOLS"
PROTOCOLS.add("nyu", f"{_P}[nyu]", "NYU Depth V2: 1 mm..10 m, Eigen crop, predictions clipped to 10 m")
PROTOCOLS.add("kitti", f"{_P}[kitti]", "KITTI: 1 mm..80 m, Garg crop, predictions clipped to 80 m")
PROTOCOLS.add("none", f"{_P}[none]", "every positive ground truth pixel, no crop")

# --------------------------------------------------------------------------------------------------
DEPTH_ENCODINGS = Registry("depth encoding", "depth file encodings read and written by tfdepth")
_E = "tfdepth.io.depth:ENCODINGS"
DEPTH_ENCODINGS.add("mm16", f"{_E}[mm16]", "16-bit PNG, millimetres (v / 1000)")
DEPTH_ENCODINGS.add("kitti16", f"{_E}[kitti16]", "16-bit PNG, metres = v / 256 (KITTI)")
DEPTH_ENCODINGS.add("tum16", f"{_E}[tum16]", "16-bit PNG, metres = v / 5000 (TUM RGB-D)")
DEPTH_ENCODINGS.add("sun16", f"{_E}[sun16]", "16-bit PNG, bits rotated, then millimetres (SUN RGB-D)")
DEPTH_ENCODINGS.add("nyu-raw", f"{_E}[nyu-raw]", "NYU raw Kinect PGM disparity, metres = 351.3 / (1092.5 - d)")
DEPTH_ENCODINGS.add("npy-m", f"{_E}[npy-m]", ".npy float array in metres")
DEPTH_ENCODINGS.add("png8-10m", f"{_E}[png8-10m]", "8-bit PNG, metres = v / 255 * 10")

# --------------------------------------------------------------------------------------------------
DATASET_FORMATS = Registry("dataset format", "source formats `tfdepth convert FORMAT` reads (converter modules)")
_C = "tfdepth.data.converters"
DATASET_FORMATS.add("nyu-mat", f"{_C}.nyu_mat",
                    "NYU Depth V2 labeled .mat (MATLAB v7.3/HDF5) with the official splits.mat")
DATASET_FORMATS.add("nyu-densedepth", f"{_C}.nyu_densedepth",
                    "DenseDepth nyu_data.zip (8-bit train / 16-bit test depth, detected per file)")
DATASET_FORMATS.add("nyu-h5", f"{_C}.nyu_h5", "sparse-to-dense / FastDepth nyudepthv2 tree of .h5 files")
DATASET_FORMATS.add("tfds", f"{_C}.tfds_nyu", "TFDS nyu_depth_v2 prepared in a data_dir (never downloads)")
DATASET_FORMATS.add("kitti", f"{_C}.kitti", "KITTI annotated depth + raw RGB from a BTS/Eigen file list")
DATASET_FORMATS.add("folder", f"{_C}.folder",
                    "your own RGB + depth pairs: DIR with rgb/ and depth/, or a pair-list file")

ALL = (ENCODERS, DECODERS, LOSSES, SCHEDULES, OPTIMIZERS, INIT_SOURCES, STRATEGIES, PROTOCOLS, DEPTH_ENCODINGS,
       DATASET_FORMATS)
