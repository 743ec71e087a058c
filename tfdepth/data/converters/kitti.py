"""``kitti``: KITTI annotated depth + raw RGB selected by a BTS / Eigen file list.

``--input`` is the file list: one ``rgb_path depth_path focal`` per line, e.g.
``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png
2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377``. ``depth_path``
``None`` (frames without ground truth) is skipped and counted in the manifest (``skipped.no_depth``).

RGB paths are relative to ``--rgb-root`` (default: the list's directory), depth paths to
``--depth-root`` (default: the RGB root); a depth path not found there is also looked for under
``train/`` and ``val/`` of the depth root (the published layout of ``data_depth_annotated``).

Depth is the 16-bit ground truth, metres = v / 256, 0 = invalid, range-checked against 0-90 m and
stored at depth scale 256 (exactly). Per-sample intrinsics are ``(focal, focal, W / 2, H / 2)``: the
lists give only the focal length, so the principal point is approximated by the image centre.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

from tfdepth.data.converters.source import KITTI_MAX_DEPTH_M, LoadedSample, SampleRef, Source, relative_name
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.data.converters.folder import read_bytes
from tfdepth.io import depth as depth_io
from tfdepth.io.images import decode_rgb


class KittiSource(Source):
    format_name = "kitti"
    default_max_depth_m = KITTI_MAX_DEPTH_M
    preferred_store_scale = 256.0
    single_split = True

    def __init__(self, input_path: str, rgb_root: Optional[str] = None, depth_root: Optional[str] = None,
                 split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        super().__init__(input_path, split or "train", max_depth_m, intrinsics)
        if not os.path.isfile(self.input_path):
            raise ConversionError(f"{self.input_path}: kitti --input must be a BTS/Eigen file list "
                                  "('rgb_path depth_path focal' per line)")
        list_dir = os.path.dirname(self.input_path)
        self.rgb_root = os.path.abspath(rgb_root) if rgb_root else list_dir
        self.depth_root = os.path.abspath(depth_root) if depth_root else self.rgb_root
        self.lines = []
        with open(self.input_path) as f:
            for line_no, line in enumerate(f, 1):
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                if len(fields) != 3:
                    raise ConversionError(f"{self.input_path}:{line_no}: expected 'rgb_path depth_path focal', "
                                          f"got {len(fields)} fields")
                try:
                    focal = float(fields[2])
                except ValueError:
                    raise ConversionError(f"{self.input_path}:{line_no}: focal {fields[2]!r} is not a number") from None
                if not focal > 0:
                    raise ConversionError(f"{self.input_path}:{line_no}: focal must be positive, got {focal}")
                self.lines.append((line_no, fields[0], fields[1], focal))
        if not self.lines:
            raise ConversionError(f"{self.input_path}: file list has no entries")

    def split_names(self) -> List[str]:
        return [self.split]

    def _depth_path(self, rel: str) -> List[str]:
        if os.path.isabs(rel):
            return [rel]
        return [os.path.join(self.depth_root, rel), os.path.join(self.depth_root, "train", rel),
                os.path.join(self.depth_root, "val", rel)]

    def refs(self, split: str) -> List[SampleRef]:
        refs = []
        self._skipped.pop(split, None)
        for line_no, rgb_rel, depth_rel, focal in self.lines:
            if depth_rel == "None":
                self.count_skipped(split, "no_depth")
                continue
            rgb = rgb_rel if os.path.isabs(rgb_rel) else os.path.join(self.rgb_root, rgb_rel)
            candidates = self._depth_path(depth_rel)
            depth = next((p for p in candidates if os.path.isfile(p)), None)
            where = f"{self.input_path}:{line_no}"
            refs.append(SampleRef(split, depth or candidates[0], (rgb, depth, candidates, focal, where)))
        return refs

    def format_args(self) -> dict:
        return {"rgb_root": self.rgb_root, "depth_root": self.depth_root}

    def input_files(self) -> List[str]:
        """The file list and the RGB and depth files it names."""
        files = [self.input_path]
        for ref in self.refs(self.split):
            rgb, depth = ref.key[0], ref.key[1]
            files += [rgb] + ([depth] if depth else [])
        return files

    def load(self, ref: SampleRef) -> LoadedSample:
        rgb_path, depth_path, candidates, focal, where = ref.key
        if depth_path is None:
            raise SampleError(f"{where}: depth file not found (looked for {', '.join(candidates)})")
        rgb = decode_rgb(read_bytes(rgb_path, "RGB", where), rgb_path)
        depth_bytes = read_bytes(depth_path, "depth", where)
        stored, units = depth_io.decode_linear16(depth_bytes, "kitti16", depth_path)
        intr = None if self.intrinsics is not None else (focal, focal, rgb.width / 2.0, rgb.height / 2.0)
        return LoadedSample(f"{depth_path} [rgb {rgb_path}]", rgb, intrinsics=intr, depth_stored=stored,
                            stored_units_per_m=units, depth_file=depth_bytes,
                            source_name=relative_name(rgb_path, self.input_path))




def add_arguments(parser) -> None:
    parser.add_argument("--rgb-root", default=None, help="root of the RGB paths (default: the list's directory)")
    parser.add_argument("--depth-root", default=None,
                        help="root of the depth paths (default: the RGB root; train/ and val/ below it are searched too)")


def from_args(args, log=None) -> KittiSource:
    return KittiSource(args.input, args.rgb_root, args.depth_root, args.split, args.max_depth, args.intrinsics)
