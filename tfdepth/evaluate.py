"""Score depth predictions with the published protocols: a trained model on a dataset, or files.

Model mode (a trained tfdepth model on a split of its dataset)::

    python -m tfdepth.evaluate --checkpoint runs/exp1 [--config FILE] [--protocol nyu] [--split val]
        [--flip-average] [--max-images N] [--align scale_shift] [--output metrics.json] [--plots DIR]

File mode (any model's outputs, matched to ground truth by file stem, or by the number in the name)::

    python -m tfdepth.evaluate --pred DIR --gt DIR --protocol nyu|kitti|none
        [--pred-scale S] [--gt-scale S] [--crop garg|eigen|kb|none] [--pooled]
        [--output FILE.json] [--plots DIR [--rgb DIR]]

``--pred`` may be a ``python -m tfdepth.predict`` output folder as it is: its ``predictions.json``
names each source picture (``rgb_00050.jpg`` -> stem ``rgb_00050``, paired with ``rgb_00050.png`` or,
by number, ``sync_depth_00050.png``), the depth file to score (``.npy``, else the millimetre PNG, no
``--pred-scale`` needed) and the photo for the qualitative plot.

File formats (file mode):

* ``.npy``: float depth in metres, HxW, or with extra axes of length 1 (HxWx1, 1x1xHxW from PyTorch
  tools) (``--*-scale`` does not apply).
* 16-bit PNG (single channel): metres = value / S with S from ``--pred-scale`` / ``--gt-scale``
  (1000 for millimetres as NYU, 256 for KITTI). The scale is REQUIRED when PNGs are present: a
  guessed scale silently gives wrong numbers.
* 8-bit PNG: refused unless ``--allow-8bit`` is given as well as the scale (e.g. NYU's 0..255 -> 0..10 m
  is scale 25.5). A value of 0 is invalid in every format; colour PNGs are refused.

Errors name the file: unmatched stems, unreadable files, size mismatches (or ``--resize-pred``), a scale
that is not > 0, implausible ground truth for the protocol (with the usual scale that fits, e.g. NYU
millimetres read with ``--gt-scale 256``), predictions more than 1 % NaN/inf, nothing scored; ``--force``
scores implausible or non-finite files anyway, with a warning (non-finite pixels are always counted).

Model mode scores the published protocol on the full frame: a model trained on centre crops
(``data.resize_mode: center_crop``) predicts the whole stored frame at its training scale, and the
protocol's crop is defined on the native ground truth (Garg rows 153:371, cols 44:1197 of 375x1242
KITTI; Eigen rows 45:471, cols 41:601 of 480x640 NYU); ``eval.gt_resolution: input`` scores the
centre crop at the input size instead.

Output: a table on stdout; ``--output`` writes JSON with ``overall`` and ``per_range`` (range label ->
metrics, keys ``abs_rel sq_rel rmse rmse_log log10 silog d1 d2 d3 mae`` plus ``ssim`` with
``--ssim``, and ``count`` = images), ``count``, ``skipped``, ``pixels``, ``protocol`` (``name``,
``crop``, ``crop_box`` [top, bottom, left, right] in ground-truth pixels, the ``gt_size`` [H, W] it
was applied to, the depth and clip limits; ``sizes`` per size when the ground truth has several),
``averaging``, and in model mode ``inference`` (``frame``: full | resized | center_crop, the sizes
the network ran at); non-finite numbers are written as null. ``--plots DIR`` writes ``error_vs_depth.png`` and
``qualitative.png`` (photo | prediction | ground truth | absolute error, one row per image named by its
file; in model mode the stored photo at its stored size and the record's ``source/name``, ``split #i``
for datasets converted before names were stored; the photo column in file mode only with ``--rgb DIR``).
Both modes report progress on stderr (images done / total, rate, an end summary).

The work is done by :mod:`tfdepth.evaluation` (``files``, ``model_eval``, ``report``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict

from tfdepth.cli import run_main
from tfdepth.evaluation.align import ALIGN_MODES
from tfdepth.evaluation.report import format_table, summary_line, write_json
from tfdepth.metrics import CROPS, PROTOCOLS, get_protocol

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model mode")
    model.add_argument("--checkpoint", help="workdir or checkpoint prefix of a trained model")
    model.add_argument("--config", help="experiment YAML (default: the workdir's config.yaml)")
    model.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable)")
    model.add_argument("--split", help="dataset split (default: data.val_split)")
    model.add_argument("--flip-average", action="store_true", default=None,
                       help="average with the flipped prediction of the flipped image")
    model.add_argument("--max-images", type=int, help="score at most N images")
    files = parser.add_argument_group("file mode")
    files.add_argument("--pred", help="folder of predictions (.npy metres or 16-bit PNG), or a predict output folder")
    files.add_argument("--gt", help="folder of ground truth (.npy metres or 16-bit PNG)")
    files.add_argument("--pred-scale", type=float, help="PNG predictions: metres = value / S")
    files.add_argument("--gt-scale", type=float, help="PNG ground truth: metres = value / S (1000 mm, 256 KITTI)")
    files.add_argument("--allow-8bit", action="store_true", help="accept 8-bit PNGs (with an explicit scale)")
    files.add_argument("--resize-pred", action="store_true", help="resize predictions bilinearly to the ground truth")
    files.add_argument("--rgb", help="folder of RGB images (matched by stem) for the qualitative plot")
    files.add_argument("--force", action="store_true", help="score implausible ground truth / NaN predictions anyway")
    common = parser.add_argument_group("both modes")
    common.add_argument("--protocol", choices=list(PROTOCOLS),
                        help="evaluation protocol (model mode default: eval.protocol; file mode: required)")
    common.add_argument("--crop", choices=list(CROPS), help="override the protocol's crop")
    model.add_argument("--align", choices=list(ALIGN_MODES), default="none",
                        help="scale_shift: least-squares scale and shift per image before scoring (zero-shot "
                             "protocol; in disparity for a relative model, in metres otherwise)")
    common.add_argument("--pooled", action="store_true", help="average over pixels instead of per image")
    common.add_argument("--ssim", action="store_true", help="also report SSIM of the depth maps")
    common.add_argument("--output", help="write the result as JSON")
    common.add_argument("--plots", help="folder for error_vs_depth.png and qualitative.png")
    return parser


def _file_mode(args) -> Dict[str, object]:
    from tfdepth.evaluation.files import evaluate_files
    from tfdepth.evaluation.report import PlotCollector

    protocol = get_protocol(args.protocol, args.crop)
    collector = PlotCollector(protocol) if args.plots else None
    result = evaluate_files(args.pred, args.gt, protocol, pred_scale=args.pred_scale, gt_scale=args.gt_scale,
                            pooled=args.pooled, with_ssim=args.ssim, resize_pred=args.resize_pred,
                            allow_8bit=args.allow_8bit, on_sample=collector, rgb_dir=args.rgb, force=args.force,
                            progress=True)
    if collector is not None:
        result["plots"] = collector.write(args.plots)
    return result


def _model_mode(args) -> Dict[str, object]:
    """Loads the trained model (workdir or checkpoint prefix; ``--config`` / ``--set`` change its config)."""
    from tfdepth.config import load_config
    from tfdepth.evaluation.model_eval import evaluate_trained_model
    from tfdepth.training.checkpoint import find_config_for, load_trained_model

    config = None
    if args.config or args.overrides:
        config = load_config(args.config or find_config_for(args.checkpoint), args.overrides)
    model, cfg = load_trained_model(args.checkpoint, config)
    return evaluate_trained_model(model, cfg, args.protocol, args.crop, args.split, args.flip_average,
                                  args.max_images, args.pooled, args.ssim, args.plots, checkpoint=args.checkpoint,
                                  align=args.align, progress=True)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    file_mode = args.pred is not None or args.gt is not None
    if file_mode and args.checkpoint:
        parser.error("give either --checkpoint (model mode) or --pred/--gt (file mode), not both")
    if file_mode:
        if not (args.pred and args.gt):
            parser.error("file mode needs both --pred DIR and --gt DIR")
        if not args.protocol:
            parser.error("file mode needs --protocol nyu|kitti|none")
        result = _file_mode(args)
    else:
        if not args.checkpoint:
            parser.error("give --checkpoint PATH (model mode) or --pred DIR --gt DIR (file mode)")
        result = _model_mode(args)
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(summary_line(result))
    print(format_table(result))
    if args.output:
        write_json(result, args.output)
        print(f"wrote {args.output}")
    for path in result.get("plots", []):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
