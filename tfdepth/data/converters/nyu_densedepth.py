"""``nyu-densedepth``: the DenseDepth ``nyu_data.zip``, read straight from the zip (nothing is extracted).

The zip holds ``data/nyu2_train.csv`` and ``data/nyu2_test.csv`` (``rgb,depth`` member paths per row,
e.g. ``data/nyu2_train/living_room_0038_out/37.jpg,data/nyu2_train/living_room_0038_out/37.png``).
A zip with everything below one extra top folder works too (CSV paths are then resolved below it).

Train depth is 8-bit PNG meaning v / 255 x 10 m; test depth is 16-bit PNG in millimetres. The
encoding is detected **per file from the PNG header** (:func:`tfdepth.io.depth.decode_nyu_densedepth`
states the exact rule); anything fitting neither is refused naming the member. The manifest counts
the detected encodings per split (``splits.<split>.depth_encodings``). A CSV row naming a member that is
not in the zip is a bad sample naming the CSV line.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import Dict, List, Optional, Sequence

from tfdepth.data.converters.source import LoadedSample, NyuSource, SampleRef
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.io import depth as depth_io
from tfdepth.io.images import decode_rgb

CSV_NAMES = {"train": "nyu2_train.csv", "test": "nyu2_test.csv"}


class NyuDenseDepthSource(NyuSource):
    format_name = "nyu-densedepth"

    def __init__(self, input_path: str, split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        super().__init__(input_path, split, max_depth_m, intrinsics)
        self._cache_zip: dict = {}
        try:
            with zipfile.ZipFile(self.input_path) as zf:
                names = zf.namelist()
                members = set(names)
                self.rows: Dict[str, List[tuple]] = {}
                for split_name, csv_name in CSV_NAMES.items():
                    csv_member = next((n for n in names if n == f"data/{csv_name}" or n.endswith(f"/data/{csv_name}")),
                                      None) or next((n for n in names if n.endswith(csv_name)), None)
                    if csv_member is None:
                        continue
                    prefix = csv_member[: -len(f"data/{csv_name}")] if csv_member.endswith(f"data/{csv_name}") else ""
                    text = zf.read(csv_member).decode("utf-8-sig")
                    self.rows[split_name] = self._parse_csv(text, csv_member, prefix, members)
        except (zipfile.BadZipFile, OSError) as e:
            raise ConversionError(f"{self.input_path}: cannot open as a zip ({e})") from None
        if not self.rows:
            csvs = [n for n in names if n.lower().endswith(".csv")]
            raise ConversionError(f"{self.input_path}: no data/nyu2_train.csv or data/nyu2_test.csv in the zip "
                                  f"(CSV members: {csvs or 'none'})")
        self.splits = self.restrict(list(self.rows))

    def _parse_csv(self, text: str, csv_member: str, prefix: str, members: set) -> List[tuple]:
        rows = []
        for line_no, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            fields = [x.strip() for x in line.split(",")]
            if len(fields) != 2 or not all(fields):
                raise ConversionError(f"{self.input_path}:{csv_member}:{line_no}: expected 'rgb,depth', got {line!r}")
            resolved = []
            for entry in fields:
                entry = entry[2:] if entry.startswith("./") else entry
                candidates = [entry, prefix + entry]
                resolved.append(next((c for c in candidates if c in members), None) or entry)
            where = f"{csv_member}:{line_no}"
            rows.append((resolved[0], resolved[1], where, all(r in members for r in resolved)))
        if not rows:
            raise ConversionError(f"{self.input_path}:{csv_member}: CSV has no rows")
        return rows

    def split_names(self) -> List[str]:
        return list(self.splits)

    def refs(self, split: str) -> List[SampleRef]:
        return [SampleRef(split, f"{self.input_path}:{depth}", (rgb, depth, where))
                for rgb, depth, where, _ in self.rows[split]]

    def _zip(self) -> zipfile.ZipFile:
        zf = self._cache_zip.get("zip")
        if zf is None:
            zf = self._cache_zip["zip"] = zipfile.ZipFile(self.input_path)
        return zf

    def _read(self, member: str, where: str) -> bytes:
        try:
            return self._zip().read(member)
        except KeyError:
            raise SampleError(f"{self.input_path}: {member} (listed in {where}) is missing from the zip") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise SampleError(f"{self.input_path}:{member}: cannot read from the zip ({e})") from None

    def load(self, ref: SampleRef) -> LoadedSample:
        rgb_member, depth_member, where = ref.key
        rgb_bytes = self._read(rgb_member, where)
        depth_bytes = self._read(depth_member, where)
        rgb = decode_rgb(rgb_bytes, f"{self.input_path}:{rgb_member}")
        stored, units, kind = depth_io.decode_nyu_densedepth_stored(depth_bytes, f"{self.input_path}:{depth_member}")
        return LoadedSample(f"{self.input_path}:{depth_member} [rgb {rgb_member}]", rgb, depth_kind=kind,
                            depth_stored=stored, stored_units_per_m=units, depth_file=depth_bytes,
                            source_name=rgb_member)




def add_arguments(parser) -> None:
    pass


def from_args(args, log=None) -> NyuDenseDepthSource:
    return NyuDenseDepthSource(args.input, args.split, args.max_depth, args.intrinsics)
