"""``python -m tfdepth.convert FORMAT --input PATH --output DIR [options]``: convert a real RGB-D
dataset into tfdepth TFRecord shards + ``manifest.json`` (metres, range-checked, seeded shuffle,
curriculum chunks). Formats: nyu-mat, nyu-densedepth, nyu-h5, tfds, kitti, folder; see
``python -m tfdepth.convert FORMAT --help`` and :mod:`tfdepth.data.converters`.

Exit status: 0 converted (or already converted with identical arguments from unchanged inputs), 1
conversion error (the message names the file and what was expected), 2 usage error or a refused
operation (e.g. the input changed since the output was converted: --overwrite converts again).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

# Keep the top of this module free of TensorFlow: worker processes (spawn) re-import it.
from tfdepth.registries import DATASET_FORMATS


def _intrinsics(text: str):
    try:
        values = [float(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fx,fy,cx,cy numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 values fx,fy,cx,cy, got {len(values)}")
    return values


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.convert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT",
                                help=", ".join(DATASET_FORMATS.names()))
    for name in DATASET_FORMATS.names():
        module = DATASET_FORMATS.get(name)
        p = sub.add_parser(name, help=DATASET_FORMATS.entry(name).description,
                           description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        multiple = getattr(module, "MULTIPLE_INPUTS", False)
        p.add_argument("--input", required=True, nargs="+" if multiple else None,
                       help="source files or directories (several are combined)" if multiple else
                       "source file or directory")
        p.add_argument("--output", required=True, help="dataset directory to write (shards + manifest.json)")
        p.add_argument("--split", default=None,
                       help="single-split formats (folder, kitti): the split to write (default train); "
                            "others: convert only this split")
        p.add_argument("--chunks", type=int, default=1, help="curriculum chunks of the training split (default 1)")
        p.add_argument("--shard-mb", type=float, default=128.0, help="maximum MiB per shard (default 128)")
        p.add_argument("--workers", type=int, default=_default_workers(),
                       help="parallel decode/encode processes (default: CPUs available); output does not depend on it")
        p.add_argument("--seed", type=int, default=0, help="shuffle seed, recorded in the manifest (default 0)")
        p.add_argument("--skip-bad", action="store_true",
                       help="skip bad samples (logged, counted in the manifest) instead of stopping")
        p.add_argument("--max-depth", type=float, default=None,
                       help="plausible maximum depth in metres for the range check (default: per format/preset)")
        p.add_argument("--far-invalid", action="store_true",
                       help="mark depths beyond --max-depth invalid (0) instead of treating them as errors")
        p.add_argument("--intrinsics", type=_intrinsics, default=None,
                       help="fx,fy,cx,cy in pixels for every sample (overrides the format's default)")
        p.add_argument("--overwrite", action="store_true", help="replace splits already converted in --output")
        p.add_argument("--no-depth-check", action="store_true",
                       help="convert even when the decoded depth's median looks implausible for the dataset kind "
                            "(a wrong --depth-encoding); default: refuse, naming the preset that fits")
        p.add_argument("--name", default=None, help="dataset name in the manifest (default: the format)")
        module.add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from tfdepth.data.converters.conversion import convert, default_log
    from tfdepth.data.converters.errors import ConversionError
    from tfdepth.errors import UserError

    try:
        source = DATASET_FORMATS.get(args.format).from_args(args, log=default_log)
        result = convert(source, args.output, chunks=args.chunks, shard_mb=args.shard_mb, workers=args.workers,
                         seed=args.seed, skip_bad=args.skip_bad, overwrite=args.overwrite,
                         far_invalid=args.far_invalid, name=args.name, depth_check=not args.no_depth_check)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UserError) else 1
    m = result.manifest
    if result.status == "converted":
        bad = m.get("bad_samples", {}).get("count", 0)
        print(f"{args.output}: " + ", ".join(f"{s} {m['splits'][s]['count']}" for s in result.new_splits)
              + f" samples, depth_scale {m['depth_scale']:g}" + (f", {bad} bad samples skipped" if bad else "")
              + f" ({result.elapsed_s:.1f} s)")
    return 0


if __name__ == "__main__":
    from tfdepth import cli

    sys.exit(cli.run_main(main))
