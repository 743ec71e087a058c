"""``python -m tfdepth.data.converters.benchmark [--pairs 1000] [--workers 2] [--dir DIR]``: time the
conversion of a generated folder dataset of 640x480 JPEG + 16-bit PNG (millimetres) pairs.

The pairs are made from smooth synthetic scenes with texture and noise (file sizes like NYU's: JPEG
~100 KB, depth PNG ~200-300 KB), written once into ``DIR/src`` (kept between runs), then converted
with ``python -m tfdepth.convert folder ... --depth-encoding mm16`` in a fresh process, so the figure
includes interpreter and TensorFlow start-up. Prints the wall time, samples per second and the CPU time
of the conversion's process tree (on a busy machine, CPU seconds / cores bounds the idle wall time).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np


def make_pairs(root: str, n: int, height: int = 480, width: int = 640, seed: int = 0) -> None:
    os.makedirs(os.path.join(root, "rgb"), exist_ok=True)
    os.makedirs(os.path.join(root, "depth"), exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(n):
        rgb_path = os.path.join(root, "rgb", f"{i:05d}.jpg")
        depth_path = os.path.join(root, "depth", f"{i:05d}.png")
        if os.path.exists(rgb_path) and os.path.exists(depth_path):
            continue
        a, b, c = rng.uniform(0.5, 2.0, 3)
        depth = 1.0 + 4.0 * (a * yy / height + 0.3 * b * np.sin(xx / (40 * c))) ** 2
        depth += rng.normal(0, 0.002, depth.shape).astype(np.float32)
        mm = np.clip(depth * 1000, 0, 9900).astype(np.uint16)
        mm[rng.random(mm.shape) < 0.2] = 0
        base = (np.stack([np.sin(xx / (17 * a)), np.cos(yy / (23 * b)), np.sin((xx + yy) / (31 * c))], -1) + 1) * 100
        rgb = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(rgb_path, rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(depth_path, mm)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "tfdepth_convert_bench"))
    args = parser.parse_args(argv)
    src, out = os.path.join(args.dir, "src"), os.path.join(args.dir, "out")
    t = time.time()
    make_pairs(src, args.pairs)
    print(f"source: {args.pairs} pairs in {src} (generated/checked in {time.time() - t:.1f} s)")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "tfdepth.convert", "folder", "--input", src, "--output", out, "--depth-encoding",
           "mm16", "--workers", str(args.workers), "--chunks", "4"]
    t = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.time() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"converted {args.pairs} pairs with {args.workers} workers in {elapsed:.1f} s "
          f"({args.pairs / elapsed:.1f} pairs/s, output {size / 2**20:.0f} MiB); CPU time {cpu:.1f} s "
          f"(load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
