"""``python -m tfdepth.bench --config FILE [--what train,input,infer,scaling] [--output bench.json]
[--repeats N] [--budget-s S] [--compare-torch] [--set k=v]``

Measures how fast the configured model trains and runs on this machine and writes one JSON file
(sections are written as soon as they finish, so a partial run keeps what it measured):

- ``train``: images/s of the real training step (``tfdepth.training.step.TrainStep``: forward, loss,
  backward, finiteness check, optimiser update) on a batch held in memory, after warm-up (trace and
  first step, i.e. the compile time, reported separately). Variants: ``graph`` (``tf.function``, float32:
  the headline figure), ``graph_end_to_end`` (the same step fed by the real tf.data pipeline),
  ``xla`` (``train.jit_compile``), and mixed precision where the device supports it, timed in
  interleaved rounds so that they see the same machine load. Achieved
  GFLOP/s counts a training step as 3x the forward FLOPs (2 per multiply-add,
  :func:`tfdepth.models.flops.forward_flops`), and ``fraction_of_matmul`` relates it to this machine's
  own float32 ``tf.matmul`` rate (``machine.matmul``).
- ``input``: images/s the training tf.data pipeline (TFRecord shards -> decode -> resize ->
  augment -> batch) delivers with the model removed, and ``ratio_to_train`` = that / train images/s.
- ``infer``: latency per image (batch 1) and throughput (batch 8) of the Keras model, the exported
  SavedModel (``serving_default``) and the TFLite variants fp32 / float16 / dynamic / int8.
- ``torch`` (``--compare-torch``): tfdepth's graph-mode training step against a PyTorch eager twin of
  the same network (translated from the Keras layer graph, same weights, loss and Adam), interleaved,
  and their ratio (``tfdepth.bench.compare_torch``).
- ``scaling``: training-step and inference cost over image sizes (at batch 1) and batch sizes (at
  the smallest size), as rows of a table (also ``<output>_scaling.md``) and a log-log plot
  (``<output>_scaling.png``).

Every figure is ``{"median", "min", "max", "runs": [...]}`` over ``--repeats`` timed runs (a run
repeats the call until it lasts ``--min-run-s``); scalars beside them are the medians. Timings are
wall clock: on a shared machine they are as noisy as the machine (``machine.load_average_start`` /
``_end`` record the load). ``--budget-s`` bounds the whole command: each section gets a
share of the time left, optional measurements that would not fit are recorded as
``{"skipped": reason}``. The speed of an untrained (randomly initialised) model is measured; the
encoder's pretrained weights are not loaded (``model.encoder_weights`` is forced to ``none``).
See docs/benchmarks.md for how to read the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence

from tfdepth import cli
from tfdepth.bench import BenchError
from tfdepth.bench.infer import TFLITE_QUANTIZE
from tfdepth.bench.input_pipeline import DEFAULT_INPUT_BATCHES
from tfdepth.bench.report import SECTIONS, BenchOptions, run_bench, summary_text
from tfdepth.bench.scaling import DEFAULT_SCALING_BATCHES, DEFAULT_SCALING_SIZES
from tfdepth.bench.train import TRAIN_VARIANTS


def _parse_list(text: str, option: str, allowed: Optional[Sequence[str]] = None) -> List[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise BenchError(f"{option}: {item!r} is not one of {', '.join(allowed)}")
    return items


def _parse_ints(text: str, option: str) -> List[int]:
    try:
        values = [int(t) for t in _parse_list(text, option)]
    except ValueError:
        raise BenchError(f"{option}: expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise BenchError(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


def main(argv=None) -> int:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m tfdepth.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(parser)
    parser.add_argument("--what", default=",".join(SECTIONS), help="sections, comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--output", default="bench.json", help="JSON file (default bench.json); the scaling table "
                        "and plot go beside it as <stem>_scaling.md / .png")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument("--min-run-s", type=float, default=0.5,
                        help="a run repeats a call until it lasts this long (default 0.5 s)")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-clock budget of the whole command (default 540 s); optional measurements that "
                             "would not fit are skipped and say so")
    parser.add_argument("--matmul-size", type=int, default=2048, help="matrix size of the matmul reference")
    parser.add_argument("--train-variants", default=",".join(TRAIN_VARIANTS),
                        help="training variants besides graph mode (default xla,mixed_float16,mixed_bfloat16; "
                             "'' = graph mode only)")
    parser.add_argument("--tflite", default=",".join(TFLITE_QUANTIZE),
                        help="TFLite variants to convert and time (default none,float16,dynamic,int8; '' = none)")
    parser.add_argument("--tflite-threads", type=int, default=2, help="TFLite interpreter threads (default 2)")
    parser.add_argument("--calibration-images", type=int, default=8, help="int8 calibration images (default 8)")
    parser.add_argument("--input-batches", type=int, default=DEFAULT_INPUT_BATCHES,
                        help=f"batches per input-pipeline run (default {DEFAULT_INPUT_BATCHES}, or one epoch when "
                             "shorter; 0 = one epoch)")
    parser.add_argument("--scaling-sizes", default=",".join(map(str, DEFAULT_SCALING_SIZES)),
                        help=f"square image sizes (default {','.join(map(str, DEFAULT_SCALING_SIZES))})")
    parser.add_argument("--scaling-batches", default=",".join(map(str, DEFAULT_SCALING_BATCHES)),
                        help="batch sizes (default 1,2,4,8,16)")
    parser.add_argument("--scaling-grid", default="cross", choices=("cross", "full"),
                        help="cross: sizes at the smallest batch + batches at the smallest size (default); "
                             "full: every combination")
    parser.add_argument("--profile-dir", help="also write a tf.profiler trace of two graph-mode training steps "
                                              "here (open with TensorBoard's profile plugin)")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time a PyTorch eager twin of the model (same layers, weights, loss, Adam) against "
                             "tfdepth's training step, back to back (needs torch: pip install -e '.[pth]')")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    what = _parse_list(args.what, "--what", SECTIONS)
    if not what and not args.compare_torch:
        raise BenchError(f"--what: name at least one of {', '.join(SECTIONS)} (or '' with --compare-torch)")
    if args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {args.repeats}")
    if args.tflite_threads < 1:
        raise BenchError(f"--tflite-threads must be >= 1, got {args.tflite_threads}")
    tflite = _parse_list(args.tflite, "--tflite", TFLITE_QUANTIZE)
    train_variants = _parse_list(args.train_variants, "--train-variants", TRAIN_VARIANTS)
    sizes = _parse_ints(args.scaling_sizes, "--scaling-sizes")
    batches = _parse_ints(args.scaling_batches, "--scaling-batches")
    opts = BenchOptions(
        what=what, output=args.output, repeats=args.repeats, min_run_s=args.min_run_s, budget_s=args.budget_s,
        matmul_size=args.matmul_size, train_variants=train_variants, tflite=tflite, tflite_threads=args.tflite_threads,
        calibration_images=args.calibration_images, compare_torch=args.compare_torch,
        input_batches=args.input_batches, scaling_sizes=sizes,
        scaling_batches=batches, scaling_grid=args.scaling_grid, profile_dir=args.profile_dir)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench {time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    from tfdepth.config import load_config

    cfg = load_config(args.config, args.overrides)
    report = run_bench(cfg, args.config, args.overrides, opts, log, start=start)
    print(summary_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
