"""``folder``: the user's own RGB + depth pairs.

``--input`` is either

- a directory with ``rgb/`` and ``depth/`` sub-directories (searched recursively). Files are paired by
  their path relative to ``rgb/`` / ``depth/`` without the extension (``rgb/a/0001.jpg`` with
  ``depth/a/0001.png``). When that pairs fewer files than pairing by the *last number in the file
  name* (``rgb_00050.jpg`` with ``sync_depth_00050.png``, numbers unique on each side), the number is
  used. A file left without a partner is a bad sample naming it (stops the run unless ``--skip-bad``).
- or a text file with one ``rgb_path depth_path`` pair per line (absolute, or relative to the list
  file; shell-style quotes for paths with spaces; ``#`` comments).

The depth encoding is given by ``--depth-encoding`` (a preset of :mod:`tfdepth.io.depth`) or by
``--depth-scale S`` (8/16-bit single channel, metres = v / S). The plausible range is ``--max-depth``
or the preset's default (10 m for the indoor-sensor presets, 90 m for kitti16; none for npy-m and
explicit scales, which then need ``--max-depth``). Raw Kinect disparity (``nyu-raw``) close to 1092
maps to tens or hundreds of metres, which the sensor cannot measure (NYU's toolbox clamps at 10 m):
``--far-invalid`` marks such pixels invalid instead of stopping the run.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from tfdepth.data.converters.source import LoadedSample, SampleRef, Source
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.io import depth as depth_io
from tfdepth.io.images import decode_rgb

RGB_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}
DEPTH_EXTENSIONS = {"nyu-raw": {".pgm"}, "npy-m": {".npy"}}
IMAGE_DEPTH_EXTENSIONS = {".png", ".tif", ".tiff", ".pgm"}


def read_bytes(path: Optional[str], what: str, partner: str = "") -> bytes:
    """File bytes, or a SampleError naming the file (missing, unreadable)."""
    if path is None:
        raise SampleError(f"{partner}: has no matching {what} file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SampleError(f"{path}: {what} file does not exist" + (f" (paired with {partner})" if partner else "")) from None
    except OSError as e:
        raise SampleError(f"{path}: cannot read {what} file ({e.strerror or e})") from None


def resolve_encoding(depth_encoding: Optional[str], depth_scale: Optional[float]) -> depth_io.DepthEncoding:
    if depth_encoding and depth_scale is not None:
        raise ConversionError("give either --depth-encoding or --depth-scale, not both")
    if depth_scale is not None:
        return depth_io.explicit_scale_encoding(float(depth_scale))
    if not depth_encoding:
        raise ConversionError("the depth encoding is required: --depth-encoding "
                              + "|".join(depth_io.ENCODINGS) + " or --depth-scale UNITS_PER_METRE")
    try:
        return depth_io.get_encoding(depth_encoding)
    except depth_io.DepthFormatError as e:
        raise ConversionError(str(e)) from None


def _files(root: str, extensions: set) -> Dict[str, str]:
    """{relative path without extension: path} of the files under root with one of the extensions."""
    found: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            stem, ext = os.path.splitext(fn)
            if fn.startswith(".") or ext.lower() not in extensions:
                continue
            rel = os.path.relpath(os.path.join(dirpath, stem), root)
            if rel in found:
                raise ConversionError(f"{os.path.join(dirpath, fn)} and {found[rel]} have the same name; "
                                      "cannot pair them unambiguously")
            found[rel] = os.path.join(dirpath, fn)
    return found


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _number_key(rel: str) -> Optional[str]:
    head, base = os.path.split(rel)
    m = _LAST_NUMBER.search(base)
    return None if m is None else os.path.join(head, str(int(m.group(1))))


def pair_folder(rgb_files: Dict[str, str], depth_files: Dict[str, str]) -> Tuple[List[Tuple[Optional[str], Optional[str]]], str]:
    """Pairs (rgb, depth) (None where a file has no partner) and the rule used ("stem" or "number")."""
    exact = set(rgb_files) & set(depth_files)
    rule, rgb_keyed, depth_keyed = "stem", rgb_files, depth_files
    rgb_num = {_number_key(k): v for k, v in rgb_files.items()}
    depth_num = {_number_key(k): v for k, v in depth_files.items()}
    unique = (None not in rgb_num and None not in depth_num
              and len(rgb_num) == len(rgb_files) and len(depth_num) == len(depth_files))
    if unique and len(set(rgb_num) & set(depth_num)) > len(exact):
        rule, rgb_keyed, depth_keyed = "number", rgb_num, depth_num
    keys = sorted(set(rgb_keyed) | set(depth_keyed))
    return [(rgb_keyed.get(k), depth_keyed.get(k)) for k in keys], rule


def read_pair_list(path: str) -> List[Tuple[str, str]]:
    base = os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                fields = shlex.split(line, comments=True)
            except ValueError as e:
                raise ConversionError(f"{path}:{line_no}: cannot parse ({e})") from None
            if len(fields) != 2:
                raise ConversionError(f"{path}:{line_no}: expected 'rgb_path depth_path', got {len(fields)} fields")
            pairs.append(tuple(os.path.normpath(os.path.join(base, p)) for p in fields))
    if not pairs:
        raise ConversionError(f"{path}: pair list has no pairs")
    return pairs


class FolderSource(Source):
    format_name = "folder"
    single_split = True

    def __init__(self, input_path: str, depth_encoding: Optional[str] = None, depth_scale: Optional[float] = None,
                 split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None, log=None):
        self.encoding = resolve_encoding(depth_encoding, depth_scale)
        self.default_max_depth_m = self.encoding.default_max_depth_m
        self.preferred_store_scale = self.encoding.store_scale or (
            self.encoding.units_per_m if self.encoding.kind == "uint" else None)
        if self.encoding.default_max_depth_m is None and max_depth_m is None:
            raise ConversionError(f"depth encoding {self.encoding.name} has no default plausible range; "
                                  "give --max-depth METRES")
        super().__init__(input_path, split or "train", max_depth_m, intrinsics)
        self.rule = "list"
        if os.path.isdir(self.input_path):
            rgb_dir, depth_dir = os.path.join(self.input_path, "rgb"), os.path.join(self.input_path, "depth")
            if not (os.path.isdir(rgb_dir) and os.path.isdir(depth_dir)):
                raise ConversionError(f"{self.input_path}: expected sub-directories rgb/ and depth/ "
                                      "(or give a pair-list file as --input)")
            depth_ext = DEPTH_EXTENSIONS.get(self.encoding.kind, IMAGE_DEPTH_EXTENSIONS)
            rgb_files, depth_files = _files(rgb_dir, RGB_EXTENSIONS), _files(depth_dir, depth_ext)
            if not rgb_files:
                raise ConversionError(f"{rgb_dir}: no RGB images ({', '.join(sorted(RGB_EXTENSIONS))})")
            if not depth_files:
                raise ConversionError(f"{depth_dir}: no depth files ({', '.join(sorted(depth_ext))}) "
                                      f"for encoding {self.encoding.name}")
            self.pairs, self.rule = pair_folder(rgb_files, depth_files)
            if log and self.rule == "number":
                log(f"{self.input_path}: file stems differ; paired rgb/ and depth/ by the number in the file name")
        else:
            self.pairs = read_pair_list(self.input_path)

    def split_names(self) -> List[str]:
        return [self.split]

    def refs(self, split: str) -> List[SampleRef]:
        return [SampleRef(split, depth or rgb, (rgb, depth)) for rgb, depth in self.pairs]

    def format_args(self) -> dict:
        return {"depth_encoding": self.encoding.name, "pairing": self.rule}

    def linear_encoding(self) -> Optional[Tuple[str, float]]:
        if self.encoding.kind in ("uint16", "uint"):
            return self.encoding.name, float(self.encoding.units_per_m)
        return None

    def input_files(self) -> List[str]:
        """The pair list (if any) and every paired file."""
        listed = [p for pair in self.pairs for p in pair if p is not None]
        return ([self.input_path] if self.rule == "list" else []) + listed

    def load(self, ref: SampleRef) -> LoadedSample:
        rgb_path, depth_path = ref.key
        rgb_bytes = read_bytes(rgb_path, "RGB", depth_path)
        depth_bytes = read_bytes(depth_path, "depth", rgb_path)
        rgb = decode_rgb(rgb_bytes, rgb_path)
        name = f"{depth_path} [rgb {rgb_path}]"
        linear = depth_io.decode_linear16(depth_bytes, self.encoding, depth_path)
        if linear is not None:
            return LoadedSample(name, rgb, depth_stored=linear[0], stored_units_per_m=linear[1], depth_file=depth_bytes)
        return LoadedSample(name, rgb, depth_io.decode_depth(depth_bytes, self.encoding, depth_path))




def add_arguments(parser) -> None:
    parser.add_argument("--depth-encoding", choices=list(depth_io.ENCODINGS),
                        help="depth file encoding preset (see tfdepth.io.depth)")
    parser.add_argument("--depth-scale", type=float, default=None,
                        help="instead of a preset: 8/16-bit single-channel depth, metres = value / S")


def from_args(args, log=None) -> FolderSource:
    return FolderSource(args.input, args.depth_encoding, args.depth_scale, args.split, args.max_depth,
                        args.intrinsics, log=log)
