"""TFLite: conversion of every variant, their sidecars, the interpreter, and the accuracy report.

One file per quantisation variant, ``depth_fp32.tflite``, ``depth_float16.tflite``,
``depth_dynamic.tflite``, ``depth_int8.tflite``. TFLite builtin ops only, fixed input [1, H, W, 3] at
the model's input size, output [1, h, w, 1] float32 metres at the model's output size (the
decoder's, e.g. half the input for DenseDepth). Input: float32 RGB in [0, 1] for ``none`` /
``float16`` / ``dynamic``; uint8 RGB 0..255 for ``int8`` (full integer quantisation, calibrated on
images of the validation split). Each file gets a JSON sidecar ``<name>.json`` (input size, dtype and
normalisation, output size and units, intrinsics, quantisation) and an accuracy report
``<name>.report.json`` (max / mean |difference| from the Keras model and AbsRel / delta1 on the
validation split, file size).

Files run on the LiteRT interpreter (``ai_edge_litert``), or on ``tf.lite.Interpreter`` where LiteRT
is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from tfdepth.progress import Progress, native_logs_quiet, native_stderr_parked, track
from tfdepth.serving.errors import ExportError, ModelLoadError
from tfdepth.io.files import write_bytes, write_json
from tfdepth.serving.metadata import build_metadata
from tfdepth.serving.signature import OUTPUT_KEY, to_uint8

QUANTIZE_CHOICES = ("none", "float16", "dynamic", "int8")
TFLITE_VARIANT_NAMES = {"none": "fp32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


def check_quantize(quantize: str) -> str:
    """``quantize`` if it is one of :data:`QUANTIZE_CHOICES`, else an :class:`ExportError` naming them."""
    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    return quantize


# --------------------------------------------------------------------------------------------------
# Running TFLite files
# --------------------------------------------------------------------------------------------------


def make_tflite_interpreter(model_path: Optional[str] = None, model_content: Optional[bytes] = None,
                            num_threads: Optional[int] = None):
    """A LiteRT interpreter (``ai_edge_litert``), or ``tf.lite.Interpreter`` where LiteRT is absent.
    Tensors are allocated (its C++ log lines kept out of the terminal unless ``--verbose``, as the
    converter's). The attribute ``tfdepth_backend`` says which one."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        backend = "ai_edge_litert"
    except ImportError:  # LiteRT not installed
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
        backend = "tf.lite"
    # allocating prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2: only with --verbose
    with native_stderr_parked(native_logs_quiet()):
        interpreter = Interpreter(model_path=model_path, model_content=model_content, num_threads=num_threads)
        interpreter.allocate_tensors()
    interpreter.tfdepth_backend = backend
    return interpreter


def sidecar_path(tflite_path: str) -> str:
    """The JSON sidecar beside a ``.tflite`` file."""
    return os.path.splitext(tflite_path)[0] + ".json"


class TFLiteModel:
    """A depth TFLite file with a fixed input [1, H, W, 3] (float32 [0, 1] or uint8 0..255)."""

    def __init__(self, path: str, num_threads: Optional[int] = None):
        if not os.path.isfile(path):
            raise ModelLoadError(f"{path}: no such TFLite file")
        try:
            self.interpreter = make_tflite_interpreter(model_path=path, num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{path}: not a loadable TFLite model ({e})") from None
        self.path = path
        self.backend = self.interpreter.tfdepth_backend
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise ModelLoadError(f"{path}: expected one input [1, H, W, 3], got "
                                 f"{[list(d['shape']) for d in inputs]}")
        self._input = inputs[0]
        self._output = outputs[0]
        self.input_dtype = np.dtype(self._input["dtype"]).type
        self.input_size = (int(self._input["shape"][1]), int(self._input["shape"][2]))
        self.output_size = (int(self._output["shape"][1]), int(self._output["shape"][2]))
        self.metadata = None
        if os.path.isfile(sidecar_path(path)):
            with open(sidecar_path(path)) as f:
                self.metadata = json.load(f)

    def run(self, image: np.ndarray) -> np.ndarray:
        """One model-input-sized image [H, W, 3] (dtype of the input: float32 [0, 1] or uint8) ->
        depth float32 metres [h, w] at the model's output size."""
        image = np.asarray(image)
        expected = self.input_size + (3,)
        if image.shape != expected:
            raise ValueError(f"{self.path}: input must be {expected}, got {image.shape}")
        if self.input_dtype == np.uint8:
            if image.dtype != np.uint8:  # raw pixels 0..255 (tfdepth's int8 files cast and / 255 inside)
                raise ValueError(f"{self.path}: expects uint8 RGB 0..255, got {image.dtype}")
        else:
            image = image.astype(self.input_dtype)
        self.interpreter.set_tensor(self._input["index"], image[None])
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if out.dtype != np.float32:  # a quantised output: dequantise
            out = (out.astype(np.float32) - zero_point) * scale
        return out.reshape(self.output_size).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Conversion
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

        check_quantize(quantize)
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
                with Progress("int8 calibration", len(images), "image") as progress:
                    for image in images:
                        yield [image.reshape((1,) + expected)]
                        progress.update()

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            converter.inference_input_type = tf.uint8  # the graph input is uint8 already (cast inside)
            converter.inference_output_type = tf.float32  # depth stays in metres
        with native_stderr_parked(native_logs_quiet()):  # the converter's C++ log lines: only with --verbose
            return converter.convert()


def tflite_sidecar(metadata: dict, quantize: str, tflite_bytes: bytes, file_name: str) -> dict:
    """The JSON sidecar of one TFLite variant: ``metadata`` specialised to the fixed-size interface."""
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

    from tfdepth.metrics import MetricAccumulator, get_protocol

    runner = TFLiteModel(tflite_path)
    protocol = get_protocol(cfg.eval.protocol)
    acc_tflite, acc_keras = MetricAccumulator(protocol, per_range=False), MetricAccumulator(protocol, per_range=False)
    max_abs, sum_abs, count = 0.0, 0.0, 0
    n_images = 0
    samples = track(validation_samples(cfg, max_images), f"accuracy of {os.path.basename(tflite_path)}",
                    max_images, "image")
    for image, gt in samples:
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


# --------------------------------------------------------------------------------------------------
# Every variant into one folder
# --------------------------------------------------------------------------------------------------


def export_tflite(model, cfg, output_dir: str, quantize: Sequence[str] = ("none",), checkpoint: Optional[str] = None,
                  calibration_images: int = 64, report_images: Optional[int] = None,
                  log: Callable[[str], None] = print) -> List[dict]:
    """Write one TFLite file (+ sidecar + accuracy report) per variant in ``quantize`` into
    ``output_dir``; returns the reports (each with ``path`` and, when fp32 is among them,
    ``size_ratio_to_fp32``)."""
    quantize = list(dict.fromkeys(quantize))
    for q in quantize:
        check_quantize(q)
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
            write_bytes(path, flatbuffer)
            sidecar = tflite_sidecar(metadata, q, flatbuffer, os.path.basename(path))
            if q == "int8":
                sidecar["calibration"] = {"split": cfg.data.val_split, "images": len(calibration)}
            write_json(sidecar_path(path), sidecar)
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
        write_json(os.path.join(output_dir, os.path.basename(report["path"])[:-len(".tflite")] + ".report.json"),
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
