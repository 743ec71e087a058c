"""Export a trained model for serving: a SavedModel for TF Serving, or TFLite files for phones.

``python -m tfdepth.export --checkpoint PATH --output DIR --format saved_model|tflite [--version N]
[--quantize none|float16|dynamic|int8[,...]] [--report FILE.json]``

``PATH`` is a workdir (``config.yaml`` + ``checkpoints/``), a checkpoint directory or a ``ckpt-N``
prefix (see :func:`tfdepth.training.checkpoint.load_trained_model`).

SavedModel (Keras 3 ``keras.export.ExportArchive``), in TF Serving's layout ``DIR/N/saved_model.pb``
+ ``variables/`` (N = ``--version``, default 1; written to a temporary name and renamed, so a
running server never sees half a version). Signatures:

- ``serving_default``: ``images`` uint8 [batch, H, W, 3] RGB of any H, W -> resized to the model
  input (bilinear, antialiased), divided by 255 -> model -> depth resized back to H, W (bilinear)
  -> ``depth`` float32 metres [batch, H, W, 1].
- ``serving_bytes``: ``image_bytes`` string [batch] of encoded JPEG/PNG/BMP/GIF (what REST clients
  send as ``{"b64": ...}``) -> decoded to RGB -> the same. All images of one request must have the
  same size (the output is one dense tensor).

``DIR/N/assets.extra/tfdepth.json`` holds the metadata (input size, output units, intrinsics of the
training data scaled to the model input, if the dataset manifest has them); TF Serving ignores it.

TFLite (``--format tflite``): one file per ``--quantize`` variant in DIR, ``depth_fp32.tflite``,
``depth_float16.tflite``, ``depth_dynamic.tflite``, ``depth_int8.tflite``. TFLite builtin ops only,
fixed input [1, H, W, 3] at the model's input size, output [1, h, w, 1] float32 metres at the model's
output size (the decoder's, e.g. half the input for DenseDepth). Input: float32 RGB in [0, 1] for
``none`` / ``float16`` / ``dynamic``; uint8 RGB 0..255 for ``int8`` (full integer quantisation,
calibrated on images of the validation split). Each file gets a JSON sidecar ``<name>.json``
(input size, dtype and normalisation, output size and units, intrinsics, quantisation) and an
accuracy report ``<name>.report.json`` (max / mean |difference| from the Keras model and AbsRel /
delta1 on the validation split, file size); ``--report`` also writes all reports into one file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from tfdepth import cli

OUTPUT_KEY = "depth"
IMAGES_KEY = "images"
BYTES_KEY = "image_bytes"
SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
METADATA_RELPATH = os.path.join("assets.extra", "tfdepth.json")
QUANTIZE_CHOICES = ("none", "float16", "dynamic", "int8")
TFLITE_VARIANT_NAMES = {"none": "fp32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}
METADATA_FORMAT = "tfdepth-deploy"
METADATA_VERSION = 1


class ExportError(ValueError):
    """The model or its output location cannot be exported as asked; the message says why."""


# --------------------------------------------------------------------------------------------------
# The in-graph pre- and post-processing (shared with tfdepth.inference)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------


def training_intrinsics(cfg):
    """Intrinsics of the training data at the model input size (:class:`tfdepth.geometry.Intrinsics`),
    from the dataset manifest (``intrinsics`` at ``image_size``), or None when unknown."""
    from tfdepth.data import shards
    from tfdepth.geometry import Intrinsics, intrinsics_for_model_input

    try:
        manifest = shards.read_manifest(cfg.data.data_dir)
    except Exception:  # dataset not present here (exporting on another machine): unknown
        return None
    values, image_size = manifest.get("intrinsics"), manifest.get("image_size")
    if not values or not image_size:
        return None
    try:
        intrinsics = Intrinsics.from_sequence(values, f"{cfg.data.data_dir} manifest intrinsics")
        return intrinsics_for_model_input(intrinsics, image_size, cfg.data.input_size, cfg.data.resize_mode)
    except ValueError:
        return None


def model_output_size(model) -> List[int]:
    shape = model.output[OUTPUT_KEY].shape if isinstance(model.output, dict) else model.outputs[0].shape
    return [int(shape[1]), int(shape[2])]


def build_metadata(model, cfg, checkpoint: Optional[str] = None) -> dict:
    """What a consumer needs to run the model (the SavedModel's tfdepth.json / TFLite sidecar base)."""
    import tfdepth

    intrinsics = training_intrinsics(cfg)
    input_size = [int(s) for s in cfg.data.input_size]
    return {
        "format": METADATA_FORMAT,
        "format_version": METADATA_VERSION,
        "tfdepth_version": getattr(tfdepth, "__version__", "unknown"),
        "model": {"name": cfg.name, "encoder": cfg.model.encoder, "decoder": cfg.model.decoder,
                  "max_depth_m": float(cfg.model.max_depth_m), "checkpoint": checkpoint},
        "input": {"size": input_size, "layout": "NHWC", "channels": "RGB", "dtype": "uint8", "range": [0, 255],
                  "normalization": "x / 255 then ImageNet mean/std inside the model",
                  "resize": "any size, bilinear antialiased to input.size inside the graph"},
        "output": {"key": OUTPUT_KEY, "units": "metres", "dtype": "float32", "model_size": model_output_size(model),
                   "size": "same as the input image (bilinear)", "invalid": "none (every pixel is a prediction)"},
        "intrinsics": None if intrinsics is None else {
            "fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy,
            "size": input_size, "source": f"manifest of {cfg.data.data_dir} scaled to the model input"},
        "eval_protocol": cfg.eval.protocol,
    }


def read_metadata(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# SavedModel
# --------------------------------------------------------------------------------------------------


def export_saved_model(model, input_size: Sequence[int], output_dir: str, version: int = 1,
                       metadata: Optional[dict] = None, overwrite: bool = False) -> str:
    """Write ``output_dir/version`` (TF Serving layout) with ``serving_default`` and ``serving_bytes``.

    Returns the version directory. Refuses an existing non-empty version unless ``overwrite``.
    """
    import keras
    import tensorflow as tf

    if int(version) < 1:
        raise ExportError(f"--version must be a positive integer (TF Serving version directory), got {version}")
    version_dir = os.path.join(output_dir, str(int(version)))
    if os.path.isdir(version_dir) and os.listdir(version_dir):
        if not overwrite:
            raise ExportError(f"{version_dir} already exists; choose another --version or pass --overwrite")
    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{int(version)}.tmp-", dir=output_dir)
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SERVING_SIGNATURE, make_depth_fn(model, input_size),
                             input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_KEY)])
        archive.add_endpoint(BYTES_SIGNATURE, make_bytes_fn(model, input_size),
                             input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_KEY)])
        archive.write_out(staging, verbose=False)
        if metadata is not None:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            _write_json(os.path.join(staging, METADATA_RELPATH), metadata)
        if os.path.isdir(version_dir):
            shutil.rmtree(version_dir)
        os.replace(staging, version_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def resolve_saved_model_dir(path: str) -> Optional[str]:
    """The SavedModel directory of ``path``: ``path`` itself if it holds ``saved_model.pb``, else the
    highest numeric version subdirectory that does (TF Serving layout); None if neither."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        return None
    versions = [int(n) for n in os.listdir(path)
                if n.isdigit() and os.path.isfile(os.path.join(path, n, "saved_model.pb"))]
    return os.path.join(path, str(max(versions))) if versions else None


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------


class TFLiteExporter:
    """Converts one model to TFLite variants, sharing one staged fixed-size SavedModel between them.

    The staging SavedModel (written with ``keras.export.ExportArchive``, which freezes cleanly under
    Keras 3, unlike ``TFLiteConverter.from_keras_model``) has two fixed-size endpoints:
    ``float_input`` float32 [1, H, W, 3] in [0, 1] and ``uint8_input`` uint8 [1, H, W, 3] (cast and
    / 255 in the graph), both returning ``depth`` [1, h, w, 1] metres.
    """

    FLOAT_ENDPOINT = "float_input"
    UINT8_ENDPOINT = "uint8_input"

    def __init__(self, model, input_size: Sequence[int]):
        self.model = model
        self.input_size = [int(s) for s in input_size]
        self._staging: Optional[str] = None

    def _stage(self) -> str:
        if self._staging is not None:
            return self._staging
        import keras
        import tensorflow as tf

        height, width = self.input_size
        model = self.model

        def from_float(image):
            return {OUTPUT_KEY: tf.cast(model(image, training=False)[OUTPUT_KEY], tf.float32)}

        def from_uint8(image):
            return from_float(tf.cast(image, tf.float32) / 255.0)

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(self.FLOAT_ENDPOINT, from_float,
                             input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="image")])
        archive.add_endpoint(self.UINT8_ENDPOINT, from_uint8,
                             input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8, name="image")])
        self._staging = tempfile.mkdtemp(prefix="tfdepth-tflite-")
        archive.write_out(self._staging, verbose=False)
        return self._staging

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def convert(self, quantize: str = "none", representative_images: Optional[Iterable[np.ndarray]] = None) -> bytes:
        """TFLite flatbuffer bytes. ``representative_images`` (int8 only): uint8 [H, W, 3] or
        [1, H, W, 3] RGB images at the model input size, used to calibrate activation ranges."""
        import tensorflow as tf

        if quantize not in QUANTIZE_CHOICES:
            raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
        staging = self._stage()
        endpoint = self.UINT8_ENDPOINT if quantize == "int8" else self.FLOAT_ENDPOINT
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=[endpoint])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            if representative_images is None:
                raise ExportError("int8 quantisation needs representative images (the validation split)")
            images = [np.asarray(im) for im in representative_images]
            if not images:
                raise ExportError("int8 quantisation: no representative images (is the validation split empty?)")
            expected = (self.input_size[0], self.input_size[1], 3)
            for i, image in enumerate(images):
                if image.shape[-3:] != expected or image.dtype != np.uint8:
                    raise ExportError(f"representative image {i}: expected uint8 {expected}, got "
                                      f"{image.dtype} {image.shape}")

            def representative_dataset():
                for image in images:
                    yield [image.reshape((1,) + expected)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            converter.inference_input_type = tf.uint8  # the graph input is uint8 already (cast inside)
            converter.inference_output_type = tf.float32  # depth stays in metres
        return converter.convert()


def tflite_sidecar(metadata: dict, quantize: str, tflite_bytes: bytes, file_name: str) -> dict:
    """The JSON sidecar of one TFLite variant: ``metadata`` specialised to the fixed-size interface."""
    from tfdepth.inference import make_tflite_interpreter

    interpreter = make_tflite_interpreter(model_content=tflite_bytes)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    sidecar = json.loads(json.dumps(metadata))
    input_size = [int(inp["shape"][1]), int(inp["shape"][2])]
    if quantize == "int8":
        sidecar["input"].update({"dtype": "uint8", "range": [0, 255],
                                 "normalization": "raw RGB 0..255; x / 255 then ImageNet mean/std inside the model"})
    else:
        sidecar["input"].update({"dtype": "float32", "range": [0.0, 1.0],
                                 "normalization": "RGB / 255 in [0, 1] (done by the caller); ImageNet mean/std "
                                                  "inside the model"})
    sidecar["input"].update({"size": input_size, "shape": [int(v) for v in inp["shape"]],
                             "resize": "fixed size: resize the image to input.size (bilinear, antialiased) first",
                             "tensor": inp["name"]})
    sidecar["output"] = {"key": OUTPUT_KEY, "units": "metres", "dtype": np.dtype(out["dtype"]).name,
                         "shape": [int(v) for v in out["shape"]],
                         "size": [int(out["shape"][1]), int(out["shape"][2])],
                         "note": "resize to the image size (bilinear) to get per-pixel depth of the image",
                         "tensor": out["name"]}
    sidecar["quantization"] = quantize
    sidecar["file"] = file_name
    sidecar["ops"] = "TFLite builtins only"
    return sidecar


# --------------------------------------------------------------------------------------------------
# Validation data for calibration and accuracy reports
# --------------------------------------------------------------------------------------------------


def validation_samples(cfg, max_images: Optional[int] = None):
    """Yields (image float32 [H, W, 3] in [0, 1], depth metres [H, W]) of the validation split at the
    model input size, in file order."""
    from tfdepth.data.pipeline import build_dataset

    data_cfg = dataclasses.replace(cfg.data, deterministic=True)
    dataset = build_dataset(data_cfg, data_cfg.val_split, 1, training=False)
    if max_images is not None:
        dataset = dataset.take(int(max_images))
    for image, depth in dataset.as_numpy_iterator():
        yield image[0], depth[0, ..., 0]


def to_uint8(image_01: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 0..255 (rounded)."""
    return np.clip(np.rint(np.asarray(image_01, np.float64) * 255.0), 0, 255).astype(np.uint8)


def representative_images(cfg, count: int) -> List[np.ndarray]:
    """``count`` uint8 RGB images [H, W, 3] of the validation split at the model input size."""
    try:
        return [to_uint8(image) for image, _ in validation_samples(cfg, count)]
    except Exception as e:
        raise ExportError(f"int8 calibration needs the validation split {cfg.data.val_split!r} of "
                          f"{cfg.data.data_dir} (pass --set data.data_dir=... if the dataset moved): {e}") from None


def accuracy_report(tflite_path: str, model, cfg, max_images: Optional[int] = None) -> dict:
    """Compare a TFLite file with the Keras model on the validation split.

    For each image the TFLite model gets what its sidecar says (float [0, 1], or uint8 0..255 for int8)
    and the Keras model gets the same pixels (for int8: the uint8-rounded image / 255), so the
    difference is the conversion's alone. Metrics use the config's evaluation protocol at the input
    size, predictions resized (bilinear) to the ground-truth size when the model outputs another size.
    """
    import tensorflow as tf

    from tfdepth.inference import TFLiteModel
    from tfdepth.metrics import MetricAccumulator, get_protocol

    runner = TFLiteModel(tflite_path)
    protocol = get_protocol(cfg.eval.protocol)
    acc_tflite, acc_keras = MetricAccumulator(protocol, per_range=False), MetricAccumulator(protocol, per_range=False)
    max_abs, sum_abs, count = 0.0, 0.0, 0
    n_images = 0
    for image, gt in validation_samples(cfg, max_images):
        if runner.input_dtype == np.uint8:
            fed = to_uint8(image)
            keras_input = fed.astype(np.float32) / 255.0
        else:
            fed = image.astype(np.float32)
            keras_input = fed
        pred = runner.run(fed)  # [h, w] metres at the model's output size
        ref = model(keras_input[None], training=False)[OUTPUT_KEY].numpy()[0, ..., 0]
        diff = np.abs(pred.astype(np.float64) - ref.astype(np.float64))
        max_abs = max(max_abs, float(diff.max()))
        sum_abs += float(diff.sum())
        count += diff.size
        if pred.shape != gt.shape:
            pred = tf.image.resize(pred[None, ..., None], gt.shape, method="bilinear").numpy()[0, ..., 0]
            ref = tf.image.resize(ref[None, ..., None], gt.shape, method="bilinear").numpy()[0, ..., 0]
        acc_tflite.update(pred, gt)
        acc_keras.update(ref, gt)
        n_images += 1
    if n_images == 0:
        raise ExportError(f"accuracy report: the validation split of {cfg.data.data_dir} has no images")

    def pick(result):
        overall = result["overall"]
        return {k: (None if not math.isfinite(overall[k]) else float(overall[k]))
                for k in ("abs_rel", "rmse", "d1", "d2", "d3", "mae")}

    return {
        "file": os.path.basename(tflite_path),
        "file_size_bytes": os.path.getsize(tflite_path),
        "quantization": runner.metadata.get("quantization") if runner.metadata else None,
        "input_dtype": np.dtype(runner.input_dtype).name,
        "images": n_images,
        "scored_images": acc_tflite.result()["count"],
        "diff_from_keras_m": {"max": max_abs, "mean": sum_abs / max(count, 1)},
        "metrics": pick(acc_tflite.result()),
        "keras_metrics": pick(acc_keras.result()),
        "protocol": cfg.eval.protocol,
        "split": cfg.data.val_split,
        "interpreter": runner.backend,
    }


def export_tflite(model, cfg, output_dir: str, quantize: Sequence[str] = ("none",), checkpoint: Optional[str] = None,
                  calibration_images: int = 64, report_images: Optional[int] = None,
                  log: Callable[[str], None] = print) -> List[dict]:
    """Write one TFLite file (+ sidecar + accuracy report) per variant in ``quantize`` into
    ``output_dir``; returns the reports (each with ``path`` and, when fp32 is among them,
    ``size_ratio_to_fp32``)."""
    quantize = list(dict.fromkeys(quantize))
    for q in quantize:
        if q not in QUANTIZE_CHOICES:
            raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {q!r}")
    os.makedirs(output_dir, exist_ok=True)
    metadata = build_metadata(model, cfg, checkpoint)
    calibration = representative_images(cfg, calibration_images) if "int8" in quantize else None
    reports = []
    with TFLiteExporter(model, cfg.data.input_size) as exporter:
        for q in quantize:
            name = f"depth_{TFLITE_VARIANT_NAMES[q]}"
            path = os.path.join(output_dir, name + ".tflite")
            start = time.perf_counter()
            flatbuffer = exporter.convert(q, calibration)
            with open(path + ".tmp", "wb") as f:
                f.write(flatbuffer)
            os.replace(path + ".tmp", path)
            sidecar = tflite_sidecar(metadata, q, flatbuffer, os.path.basename(path))
            if q == "int8":
                sidecar["calibration"] = {"split": cfg.data.val_split, "images": len(calibration)}
            _write_json(os.path.join(output_dir, name + ".json"), sidecar)
            log(f"wrote {path} ({len(flatbuffer) / 1e6:.2f} MB, {q}, {time.perf_counter() - start:.1f} s)")
            try:
                report = accuracy_report(path, model, cfg, report_images)
            except Exception as e:  # no validation data here: the file is still usable, say why no numbers
                report = {"file": os.path.basename(path), "file_size_bytes": os.path.getsize(path),
                          "quantization": q, "error": f"no accuracy report: {e}"}
                log(f"warning: {path}: no accuracy report ({e}); pass --set data.data_dir=... to point at "
                    f"the validation data")
            report["path"] = path
            reports.append(report)
    sizes = {r["quantization"]: r["file_size_bytes"] for r in reports}
    for report in reports:
        if "none" in sizes:
            report["size_ratio_to_fp32"] = report["file_size_bytes"] / sizes["none"]
        _write_json(os.path.join(output_dir, os.path.basename(report["path"])[:-len(".tflite")] + ".report.json"),
                    report)
        if "error" in report:
            continue
        m = report["metrics"]
        log(f"  {report['file']}: |diff| max {report['diff_from_keras_m']['max']:.2e} m mean "
            f"{report['diff_from_keras_m']['mean']:.2e} m, abs_rel {_fmt(m['abs_rel'])}, d1 {_fmt(m['d1'])} "
            f"(Keras: abs_rel {_fmt(report['keras_metrics']['abs_rel'])}, d1 {_fmt(report['keras_metrics']['d1'])}) "
            f"on {report['images']} {report['split']} images")
    return reports


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="workdir, checkpoint directory or ckpt-N prefix")
    parser.add_argument("--output", required=True, help="output directory (SavedModel base dir or TFLite dir)")
    parser.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    parser.add_argument("--version", type=int, default=1, help="SavedModel version directory N (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing SavedModel version")
    parser.add_argument("--quantize", default="none",
                        help="TFLite variant(s), comma-separated: none, float16, dynamic, int8 (default none)")
    parser.add_argument("--calibration-images", type=int, default=64,
                        help="validation images for int8 calibration (default 64)")
    parser.add_argument("--report-images", type=int, default=None,
                        help="validation images for the TFLite accuracy reports (default: eval.max_images or all)")
    parser.add_argument("--report", help="also write all TFLite accuracy reports into this JSON file")
    cli.add_config_args(parser, required=False)
    args = parser.parse_args(argv)

    from tfdepth.config import load_config
    from tfdepth.training.checkpoint import find_config_for, load_trained_model

    config = None
    if args.config or args.overrides:
        config = load_config(args.config or find_config_for(args.checkpoint), args.overrides)
    model, cfg = load_trained_model(args.checkpoint, config)
    if not cfg.data.input_size:
        raise ExportError("data.input_size is empty: export needs the fixed model input size")

    if args.format == "saved_model":
        if args.quantize != "none":
            raise ExportError("--quantize applies to --format tflite only")
        metadata = build_metadata(model, cfg, args.checkpoint)
        version_dir = export_saved_model(model, cfg.data.input_size, args.output, args.version, metadata,
                                         overwrite=args.overwrite)
        print(f"wrote SavedModel {version_dir} (signatures {SERVING_SIGNATURE}: uint8 images, "
              f"{BYTES_SIGNATURE}: encoded image bytes -> depth metres)")
        if metadata["intrinsics"] is None:
            print("note: no camera intrinsics in the training data manifest; predict will guess a field of view")
        return 0

    quantize = [q.strip() for q in args.quantize.split(",") if q.strip()]
    report_images = args.report_images if args.report_images is not None else cfg.eval.max_images
    reports = export_tflite(model, cfg, args.output, quantize, checkpoint=args.checkpoint,
                            calibration_images=args.calibration_images, report_images=report_images)
    if args.report:
        directory = os.path.dirname(os.path.abspath(args.report))
        os.makedirs(directory, exist_ok=True)
        _write_json(args.report, {"checkpoint": args.checkpoint, "variants": reports})
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
