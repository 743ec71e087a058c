"""``folder``: the user's own RGB + depth pairs.

``--input`` is either

- a directory with ``rgb/`` and ``depth/`` sub-directories (searched recursively). Files are paired by
  their path relative to ``rgb/`` / ``depth/`` without the extension (``rgb/a/0001.jpg`` with
  ``depth/a/0001.png``). When that pairs fewer files than pairing by the *last number in the file
  name* (``rgb_00050.jpg`` with ``sync_depth_00050.png``, numbers unique on each side), the number is
  used. A file left without a partner is a bad sample naming it (stops the run unless ``--skip-bad``).
- or a text file with one ``rgb_path depth_path`` pair per line (absolute, or relative to the list
  file; shell-style quotes for paths with spaces; ``#`` comments).

Several ``--input`` folders / lists are combined into one dataset (each is at least a sequence of its
own). ``--val-fraction F`` / ``--test-fraction F`` cut splits ``val`` / ``test`` off the pairs, seeded by
``--seed``, keeping whole sequences together where the sub-folders or file names show them
(:mod:`tfdepth.data.converters.splits`; ``--split-by sample`` cuts single samples); without them every
pair goes into ``--split`` (default train).

Per-file cameras: ``--intrinsics-file F.csv`` lists ``name,fx,fy,cx,cy`` per line (pixels of that
picture; ``#`` comments, an optional ``name,fx,fy,cx,cy`` header); ``name`` is the RGB file's path
relative to its capture folder / pair list as recorded in ``source/name`` (``rgb/a/0001.jpg``, with the
folder's label in front when several inputs are combined) or its file name (``0001.jpg``) where that is
unique. Every pair needs a line (:func:`read_intrinsics_file`; errors name the file and line); it
cannot be combined with ``--intrinsics``.

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

from tfdepth.data.converters.source import LoadedSample, SampleRef, Source, relative_name
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.geometry import NYU_KINECT_INTRINSICS, NYU_KINECT_SIZE
from tfdepth.data.converters.splits import SPLIT_BY, assign_splits, sequences_of
from tfdepth.io import depth as depth_io
from tfdepth.io.images import decode_rgb

RGB_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}
DEPTH_EXTENSIONS = {"nyu-raw": {".pgm"}, "npy-m": {".npy"}}
IMAGE_DEPTH_EXTENSIONS = {".png", ".tif", ".tiff", ".pgm"}
# Default cameras of depth presets whose datasets have one: (fx, fy, cx, cy) at (W, H). TUM RGB-D: the
# intrinsics its registered depth images use ("ROS default", TUM's file-format page). SUN RGB-D has
# none: its four sensors differ (each sample ships an intrinsics.txt; give --intrinsics).
PRESET_INTRINSICS = {
    "tum16": ((525.0, 525.0, 319.5, 239.5), (640, 480)),
    "nyu-raw": (NYU_KINECT_INTRINSICS, NYU_KINECT_SIZE),
}


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


def _folder_labels(paths: Sequence[str]) -> List[str]:
    """A short unique label per capture folder (its name; ``name~2`` for a repeated name)."""
    labels: List[str] = []
    for path in paths:
        base = os.path.basename(os.path.normpath(path)) or "input"
        label, n = base, 1
        while label in labels:
            n += 1
            label = f"{base}~{n}"
        labels.append(label)
    return labels


def _strip(path: str, root: str) -> str:
    return os.path.splitext(os.path.relpath(path, root))[0]


def _read_input(path: str, encoding: depth_io.DepthEncoding, log=None):
    """(pairs, pairing rule, each pair's name relative to its folder without extension) of one capture
    folder (``rgb/`` + ``depth/``) or pair-list file."""
    if not os.path.isdir(path):
        pairs = read_pair_list(path)
        base = os.path.dirname(os.path.abspath(path))
        return pairs, "list", [_strip(rgb, base) for rgb, _ in pairs]
    rgb_dir, depth_dir = os.path.join(path, "rgb"), os.path.join(path, "depth")
    if not (os.path.isdir(rgb_dir) and os.path.isdir(depth_dir)):
        raise ConversionError(f"{path}: expected sub-directories rgb/ and depth/ "
                              "(or give a pair-list file as --input)")
    depth_ext = DEPTH_EXTENSIONS.get(encoding.kind, IMAGE_DEPTH_EXTENSIONS)
    rgb_files, depth_files = _files(rgb_dir, RGB_EXTENSIONS), _files(depth_dir, depth_ext)
    if not rgb_files:
        raise ConversionError(f"{rgb_dir}: no RGB images ({', '.join(sorted(RGB_EXTENSIONS))})")
    if not depth_files:
        raise ConversionError(f"{depth_dir}: no depth files ({', '.join(sorted(depth_ext))}) "
                              f"for encoding {encoding.name}")
    pairs, rule = pair_folder(rgb_files, depth_files)
    if log and rule == "number":
        log(f"{path}: file stems differ; paired rgb/ and depth/ by the number in the file name")
    rels = [_strip(rgb, rgb_dir) if rgb else _strip(depth, depth_dir) for rgb, depth in pairs]
    return pairs, rule, rels


def read_intrinsics_file(path: str) -> Dict[str, Tuple[float, float, float, float]]:
    """``{name: (fx, fy, cx, cy)}`` of a per-file intrinsics list (``name,fx,fy,cx,cy`` per line; blank
    lines, ``#`` comments and a ``name,...`` header are skipped). A malformed line, a non-positive
    focal length, a non-finite value or a name given twice is a :class:`ConversionError` naming the
    file and the line."""
    import math

    if not os.path.isfile(path):
        raise ConversionError(f"--intrinsics-file {path}: no such file")
    table: Dict[str, Tuple[float, float, float, float]] = {}
    seen_line: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [v.strip() for v in line.split(",")]
            if number == 1 and fields[0].lower() == "name":
                continue
            where = f"{path} line {number}"
            if len(fields) != 5 or not fields[0]:
                raise ConversionError(f"{where}: expected name,fx,fy,cx,cy (5 comma-separated fields), got {line!r}")
            try:
                values = tuple(float(v) for v in fields[1:])
            except ValueError:
                raise ConversionError(f"{where}: fx,fy,cx,cy must be numbers, got {','.join(fields[1:])!r}") from None
            if not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
                raise ConversionError(f"{where}: expected finite fx, fy > 0 and finite cx, cy, got {values}")
            name = fields[0].replace("\\", "/")
            if name in table:
                raise ConversionError(f"{where}: {name!r} is given twice (first on line {seen_line[name]})")
            table[name], seen_line[name] = values, number
    if not table:
        raise ConversionError(f"--intrinsics-file {path}: no name,fx,fy,cx,cy line")
    return table


class FolderSource(Source):
    format_name = "folder"
    single_split = True

    def __init__(self, input_path, depth_encoding: Optional[str] = None, depth_scale: Optional[float] = None,
                 split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None, log=None, val_fraction: float = 0.0,
                 test_fraction: float = 0.0, split_by: str = "auto", seed: int = 0,
                 intrinsics_file: Optional[str] = None):
        inputs = [input_path] if isinstance(input_path, str) else list(input_path)
        if intrinsics_file is not None and intrinsics is not None:
            raise ConversionError("give either --intrinsics (one camera for every pair) or --intrinsics-file "
                                  "(one per file), not both")
        if not inputs:
            raise ConversionError("--input: no capture folder or pair list given")
        self.encoding = resolve_encoding(depth_encoding, depth_scale)
        self.default_max_depth_m = self.encoding.default_max_depth_m
        # the preset's camera (scaled to each picture's size) when --intrinsics is not given
        self.default_intrinsics, self.intrinsics_size = PRESET_INTRINSICS.get(self.encoding.name, (None, None))
        self.preferred_store_scale = self.encoding.store_scale or (
            self.encoding.units_per_m if self.encoding.kind == "uint" else None)
        if self.encoding.default_max_depth_m is None and max_depth_m is None:
            raise ConversionError(f"depth encoding {self.encoding.name} has no default plausible range; "
                                  "give --max-depth METRES")
        fractions = bool(val_fraction or test_fraction)
        if fractions and split:
            raise ConversionError(f"give either --split {split} (all pairs into one split) or --val-fraction / "
                                  "--test-fraction (train/val/test cut from the pairs), not both")
        super().__init__(inputs[0], split or "train", max_depth_m, intrinsics)
        self.inputs = [os.path.abspath(p) for p in inputs]
        for path in inputs[1:]:
            if not os.path.exists(path):
                raise ConversionError(f"{path}: input does not exist")
        self.pairs: List[Tuple[Optional[str], Optional[str]]] = []
        rels, folders, rules = [], [], []
        labels = _folder_labels(self.inputs)
        for path, label in zip(self.inputs, labels):
            pairs, rule, pair_rels = _read_input(path, self.encoding, log)
            self.pairs += pairs
            rels += pair_rels
            folders += [label if len(self.inputs) > 1 else None] * len(pairs)
            rules.append(rule)
        self.rule = rules[0] if len(set(rules)) == 1 else ",".join(rules)
        self.single_split = not fractions
        self.split_args = ({"val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
                            "split_by": split_by} if fractions else {})
        self.intrinsics_file = os.path.abspath(intrinsics_file) if intrinsics_file else None
        self.per_file: Dict[str, Tuple[float, float, float, float]] = {}
        if intrinsics_file is not None:
            self.per_file = self._match_intrinsics(read_intrinsics_file(intrinsics_file), intrinsics_file)
        self.plan = None
        if fractions:
            self.plan = assign_splits(len(self.pairs), sequences_of(rels, folders), val_fraction, test_fraction,
                                      seed, split_by)
            if log:
                log(f"{', '.join(inputs)}: {self.plan.describe()} (seed {seed})")

    def _match_intrinsics(self, table: dict, path: str) -> Dict[str, Tuple[float, float, float, float]]:
        """``{rgb path: intrinsics}`` for every pair: by the recorded name, else by a unique file name."""
        by_base: Dict[str, List[str]] = {}
        for name in table:
            by_base.setdefault(os.path.basename(name), []).append(name)
        rgb_names = [rgb for rgb, _ in self.pairs if rgb]
        base_count: Dict[str, int] = {}
        for rgb in rgb_names:
            base_count[os.path.basename(rgb)] = base_count.get(os.path.basename(rgb), 0) + 1
        matched, missing = {}, []
        for rgb in rgb_names:
            short, base = self._source_name(rgb), os.path.basename(rgb)
            if short in table:
                matched[rgb] = table[short]
            elif base in table and base_count[base] == 1:
                matched[rgb] = table[base]
            else:
                missing.append(short)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ConversionError(f"--intrinsics-file {path}: no line for {', '.join(missing[:3])}{more} (name: the "
                                  f"RGB file as recorded, e.g. {missing[0]!r}, or its file name where unique)")
        return matched

    def split_names(self) -> List[str]:
        if self.plan is not None:
            return [s for s in ("train", "val", "test") if s in self.plan.splits]
        return [self.split]

    def refs(self, split: str) -> List[SampleRef]:
        chosen = [split == s for s in self.plan.splits] if self.plan is not None else [True] * len(self.pairs)
        return [SampleRef(split, depth or rgb, (rgb, depth)) for (rgb, depth), keep in zip(self.pairs, chosen) if keep]

    def format_args(self) -> dict:
        extra = {"inputs": self.inputs} if len(self.inputs) > 1 else {}
        if self.intrinsics_file:
            extra["intrinsics_file"] = self.intrinsics_file
        return {"depth_encoding": self.encoding.name, "pairing": self.rule, **extra, **self.split_args}

    def linear_encoding(self) -> Optional[Tuple[str, float]]:
        if self.encoding.kind in ("uint16", "uint"):
            return self.encoding.name, float(self.encoding.units_per_m)
        return None

    def input_files(self) -> List[str]:
        """The pair lists (if any) and every paired file."""
        listed = [p for pair in self.pairs for p in pair if p is not None]
        return [p for p in self.inputs if os.path.isfile(p)] + listed

    def load(self, ref: SampleRef) -> LoadedSample:
        rgb_path, depth_path = ref.key
        rgb_bytes = read_bytes(rgb_path, "RGB", depth_path)
        depth_bytes = read_bytes(depth_path, "depth", rgb_path)
        rgb = decode_rgb(rgb_bytes, rgb_path)
        name = f"{depth_path} [rgb {rgb_path}]"
        short = self._source_name(rgb_path)
        linear = depth_io.decode_linear16(depth_bytes, self.encoding, depth_path)
        intrinsics = self.per_file.get(rgb_path) if rgb_path else None  # --intrinsics-file
        if linear is not None:
            return LoadedSample(name, rgb, depth_stored=linear[0], stored_units_per_m=linear[1], depth_file=depth_bytes,
                                source_name=short, intrinsics=intrinsics)
        return LoadedSample(name, rgb, depth_io.decode_depth(depth_bytes, self.encoding, depth_path), source_name=short,
                            intrinsics=intrinsics)

    def _source_name(self, rgb_path: str) -> str:
        """The RGB file relative to its capture folder (``rgb/a/0001.jpg``) or pair list, after the
        folder's label when several inputs are combined (``kitchen/rgb/0001.jpg``)."""
        for root, label in zip(self.inputs, _folder_labels(self.inputs)):
            base = root if os.path.isdir(root) else os.path.dirname(root)
            if os.path.abspath(rgb_path).startswith(os.path.join(base, "")):
                short = relative_name(rgb_path, root)
                return f"{label}/{short}" if len(self.inputs) > 1 else short
        return os.path.basename(rgb_path)




MULTIPLE_INPUTS = True  # --input takes several capture folders / pair lists, combined into one dataset


def add_arguments(parser) -> None:
    parser.add_argument("--depth-encoding", choices=list(depth_io.ENCODINGS),
                        help="depth file encoding preset (see tfdepth.io.depth)")
    parser.add_argument("--depth-scale", type=float, default=None,
                        help="instead of a preset: 8/16-bit single-channel depth, metres = value / S")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="cut this fraction of the pairs off as split 'val' (seeded by --seed; whole "
                             "sequences where the folders / names show them)")
    parser.add_argument("--test-fraction", type=float, default=0.0, help="likewise for split 'test'")
    parser.add_argument("--intrinsics-file", default=None, metavar="F.csv",
                        help="per-file cameras: name,fx,fy,cx,cy per line (name: the RGB file relative to its "
                             "capture folder, e.g. rgb/0001.jpg, or its file name where unique)")
    parser.add_argument("--split-by", choices=SPLIT_BY, default="auto",
                        help="with the fractions: keep sequences whole (sequence), cut single samples (sample), "
                             "or sequences when there are enough of them (auto, default)")


def from_args(args, log=None) -> FolderSource:
    return FolderSource(args.input, args.depth_encoding, args.depth_scale, args.split, args.max_depth,
                        args.intrinsics, log=log, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                        split_by=args.split_by, seed=args.seed, intrinsics_file=args.intrinsics_file)
