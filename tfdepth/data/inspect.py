"""``python -m tfdepth.data.inspect DIR``: what is in a converted dataset directory.

Prints the manifest's summary (depth scale, range, image size, intrinsics, bad samples) and per split
the sample count, chunk sizes, valid-pixel fraction, depth statistics and a text histogram of depth;
writes a contact sheet PNG (RGB above colour-mapped depth in the colours of :mod:`tfdepth.io.colormap`,
black = invalid, with a colour bar in metres) of the first few samples of a split (``--output
FILE.png``, default ``DIR/contact_sheet.png``).

``--scan`` also checks every shard against the manifest (size, SHA-256, record count) and reads every
record (CRCs checked), recomputes counts and depth statistics from the data itself, and names each bad
shard (and the record index where known); exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from tfdepth.data import shards
from tfdepth.io.colormap import colorbar_panel, colorize, depth_range
from tfdepth.io.images import write_rgb

TILE_W, TILE_H = 320, 240


def text_histogram(stats: dict, rows: int = 10, width: int = 40) -> List[str]:
    """Lines of a text histogram from ``DepthStats.to_json()``: ``rows`` bars of '#' over depth ranges."""
    edges = np.asarray(stats["histogram"]["edges_m"], np.float64)
    counts = np.asarray(stats["histogram"]["counts"], np.int64)
    if counts.sum() == 0:
        return ["  (no valid depth)"]
    last = int(np.nonzero(counts)[0].max()) + 1  # drop empty bins beyond the largest depth
    per_row = -(-last // max(1, rows))  # equal-width rows
    groups = [np.arange(i, min(i + per_row, last)) for i in range(0, last, per_row)]
    total = counts.sum()
    peak = max(counts[g].sum() for g in groups)
    lines = []
    for g in groups:
        c = int(counts[g].sum())
        bar = "#" * int(round(width * c / peak)) if peak else ""
        lines.append(f"  {edges[g[0]]:6.2f}-{edges[g[-1] + 1]:6.2f} m |{bar:<{width}}| {100.0 * c / total:5.1f} %")
    return lines


def describe(manifest: dict, data_dir: str) -> List[str]:
    lines = [f"dataset {data_dir}: {manifest.get('name', '?')}",
             f"  depth_scale {manifest['depth_scale']:g} (metres = stored / scale), plausible range "
             f"{manifest.get('depth_range_m')} m, image_size {manifest.get('image_size')}, "
             f"intrinsics {manifest.get('intrinsics')}, shuffle_seed {manifest.get('shuffle_seed')}"]
    bad = manifest.get("bad_samples") or {}
    if bad.get("count"):
        lines.append(f"  bad samples skipped: {bad['count']}")
        lines += [f"    {f.get('split')}: {f.get('reason')}" for f in bad.get("files", [])[:10]]
    splits = sorted({s["split"] for s in manifest["shards"]}, key=lambda s: (s != "train", s))
    for split in splits:
        n_chunks = shards.num_chunks(manifest, split)
        per_chunk = [shards.split_count(manifest, split, [c]) for c in range(n_chunks)]
        n_shards = sum(1 for s in manifest["shards"] if s["split"] == split)
        lines.append(f"split {split}: {shards.split_count(manifest, split)} samples in {n_shards} shards, "
                     f"{n_chunks} chunk(s) of {per_chunk}")
        entry = (manifest.get("splits") or {}).get(split) or {}
        stats = entry.get("depth_stats")
        if stats:
            lines.append(f"  valid fraction {stats['valid_fraction']:.4f}; depth min {stats['min_m']:.3f}, mean "
                         f"{stats['mean_m']:.3f}, median {stats['median_m']:.3f}, max {stats['max_m']:.3f} m")
            lines += text_histogram(stats)
        for key in ("depth_encodings", "skipped"):
            if entry.get(key):
                lines.append(f"  {key}: {entry[key]}")
        if entry.get("far_pixels_invalidated"):
            lines.append(f"  far pixels invalidated: {entry['far_pixels_invalidated']}")
    return lines


def _records(data_dir: str, manifest: dict, split: str, limit: Optional[int] = None):
    import tensorflow as tf

    from tfdepth.data import records

    ds = tf.data.TFRecordDataset(shards.shard_paths(data_dir, manifest, split))
    if limit is not None:
        ds = ds.take(limit)
    for serialized in ds:
        yield records.decode_example_numpy(serialized.numpy())


def _fit(image: np.ndarray, interpolation: int) -> np.ndarray:
    """Resize to fit TILE_W x TILE_H keeping the aspect ratio, padded with black."""
    h, w = image.shape[:2]
    s = min(TILE_W / w, TILE_H / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(image, (nw, nh), interpolation=interpolation)
    tile = np.zeros((TILE_H, TILE_W) + image.shape[2:], image.dtype)
    top, left = (TILE_H - nh) // 2, (TILE_W - nw) // 2
    tile[top:top + nh, left:left + nw] = small
    return tile


def _wrap(text: str, width_px: int, scale: float) -> List[str]:
    """``text`` cut into lines no wider than ``width_px`` in OpenCV's simplex font at ``scale``."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        too_wide = line and cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width_px
        lines, line = (lines + [line], word) if too_wide else (lines, candidate)
    return lines + ([line] if line else [])


def contact_sheet(samples: Sequence[Dict[str, np.ndarray]], title: str = "") -> np.ndarray:
    """RGB uint8 image: a header strip, the RGB tiles in one row above their colour-mapped depth, and a
    colour bar in metres beside the depth row. All tiles share one colour range (the rule of
    :func:`tfdepth.io.colormap.depth_range` over every sample's depth), which the header and the bar
    state; each depth tile is labelled with its own valid-depth range."""
    depths = [s["depth_m"][s["depth_m"] > 0] for s in samples]
    low, high = depth_range(*depths)
    rgb_row, depth_row = [], []
    for s, d in zip(samples, depths):
        rgb_row.append(_fit(s["rgb"], cv2.INTER_AREA))
        tile = _fit(colorize(s["depth_m"], low, high), cv2.INTER_NEAREST)
        label = f"valid {d.min():.2f}-{d.max():.2f} m" if d.size else "no valid depth"
        cv2.rectangle(tile, (0, TILE_H - 20), (TILE_W - 1, TILE_H - 1), (0, 0, 0), -1)
        cv2.putText(tile, label, (4, TILE_H - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        depth_row.append(tile)
    bar = colorbar_panel(TILE_H, low, high)
    width = TILE_W * len(samples) + bar.shape[1]
    lines = [title] + _wrap(f"colours: {low:.2f}-{high:.2f} m for every tile (1st-99th percentile of their valid "
                            "depth; beyond it the end colours); near red, far blue, black = invalid. Tile labels: "
                            "each map's own valid range.", width - 8, 0.42)
    header = np.full((12 + 20 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(header, line, (4, 17 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5 if i == 0 else 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    rgb_row.append(np.full((TILE_H, bar.shape[1], 3), 255, np.uint8))
    depth_row.append(bar)
    return np.concatenate([header, np.concatenate(rgb_row, 1), np.concatenate(depth_row, 1)], 0)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.data.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", metavar="DIR")
    parser.add_argument("--output", default=None, help="contact sheet PNG (default DIR/contact_sheet.png)")
    parser.add_argument("--samples", type=int, default=6, help="samples on the contact sheet (default 6; 0 = none)")
    parser.add_argument("--split", default=None, help="split of the contact sheet (default: train, else the first)")
    parser.add_argument("--scan", action="store_true", help="read every record and check counts against the manifest")
    args = parser.parse_args(argv)
    try:
        manifest = shards.read_manifest(args.data_dir)
    except shards.ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(describe(manifest, args.data_dir)))
    status = 0
    if not args.scan:  # the cheap check (sizes, record counts); --scan does the full one
        try:
            for note in shards.verify_shards(args.data_dir, manifest):
                print(f"note: {note}")
        except shards.ManifestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if args.scan:
        try:
            print("\n".join(shards.scan(args.data_dir, manifest)))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if args.samples > 0:
        splits = sorted({s["split"] for s in manifest["shards"]}, key=lambda s: (s != "train", s))
        split = args.split or splits[0]
        import tensorflow as tf

        try:
            samples = list(_records(args.data_dir, manifest, split, args.samples))
        except shards.ManifestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except tf.errors.DataLossError:
            bad = [p for p in map(shards.first_unreadable_record, shards.shard_paths(args.data_dir, manifest, split)) if p]
            print(f"error: {'; '.join(bad) or 'a shard cannot be read'} (--scan checks every shard)", file=sys.stderr)
            return 1
        sheet = contact_sheet(samples, f"{manifest.get('name', '')} {split}")
        out = args.output or os.path.join(args.data_dir, "contact_sheet.png")
        try:
            write_rgb(out, sheet)
        except (OSError, ValueError) as e:
            print(f"error: cannot write {out}: {e}", file=sys.stderr)
            return 1
        print(f"contact sheet ({len(samples)} samples of {split}): {out}")
    return status


if __name__ == "__main__":
    from tfdepth import cli

    sys.exit(cli.run_main(main))
