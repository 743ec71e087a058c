"""Export a trained model for serving: a SavedModel for TF Serving, or TFLite files for phones.

``python -m tfdepth.export --checkpoint PATH --output DIR --format saved_model|tflite [--version N]
[--quantize none|float16|dynamic|int8[,...]] [--report FILE.json]``

``PATH`` is a workdir (``config.yaml`` + ``checkpoints/``), a checkpoint directory or a ``ckpt-N``
prefix (see :func:`tfdepth.training.checkpoint.load_trained_model`).

SavedModel (Keras 3 ``keras.export.ExportArchive``), in TF Serving's layout ``DIR/N/saved_model.pb``
+ ``variables/`` (N = ``--version``, default 1; written to a temporary name and renamed, so a
running server never sees half a version), with the signatures ``serving_default`` (uint8 images)
and ``serving_bytes`` (encoded JPEG/PNG) of :mod:`tfdepth.serving.signature`.

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
import sys

from tfdepth import cli
from tfdepth.serving.errors import ExportError
from tfdepth.io.files import write_json
from tfdepth.serving.metadata import build_metadata
from tfdepth.serving.saved_model import export_saved_model
from tfdepth.serving.signature import BYTES_SIGNATURE, SERVING_SIGNATURE
from tfdepth.serving.tflite import check_quantize, export_tflite


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

    quantize = [check_quantize(q.strip()) for q in args.quantize.split(",") if q.strip()]
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

    report_images = args.report_images if args.report_images is not None else cfg.eval.max_images
    reports = export_tflite(model, cfg, args.output, quantize, checkpoint=args.checkpoint,
                            calibration_images=args.calibration_images, report_images=report_images)
    if args.report:
        write_json(args.report, {"checkpoint": args.checkpoint, "variants": reports})
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
