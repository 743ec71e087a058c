"""``python -m tfdepth.data.synthetic [--benchmark N] [--size H W]``: render speed of :func:`render_scene`."""

from __future__ import annotations

import time
from typing import Optional, Sequence

from tfdepth.data.synthetic.render import render_scene


def _main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m tfdepth.data.synthetic [--benchmark N] [--size H W]`` prints render_scene samples/s."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tfdepth.data.synthetic", description=_main.__doc__)
    parser.add_argument("--benchmark", type=int, default=200, metavar="N", help="number of scenes to render")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args(argv)
    render_scene(args.first_seed, *args.size)  # warm-up (ray grid cache)
    wall, cpu = time.perf_counter(), time.process_time()
    for seed in range(args.first_seed, args.first_seed + args.benchmark):
        render_scene(seed, *args.size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"render_scene at {args.size[0]}x{args.size[1]}: {args.benchmark} samples, "
          f"{args.benchmark / wall:.1f} samples/s wall ({wall:.2f} s), "
          f"{args.benchmark / cpu:.1f} samples/s of CPU time")


if __name__ == "__main__":
    _main()
