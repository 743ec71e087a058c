"""What the measuring page asks of the server, without HTTP: predict a picture, hold its depth,
score uploaded ground truth.

Colour ranges: each depth map can be drawn in its own range (the rule of
:func:`tfdepth.io.colormap.depth_range` on that map: a flat prediction shows its structure, and its
bar's numbers show it is flat) or both in one shared range (the union: equal colours are equal
metres). :meth:`MeasureApp.color_png` draws either (``range`` "own" | "shared"); the answers carry
both under ``colors`` (``{"own"|"shared": {"pred"|"gt": {"url", "min_m", "max_m"}}}``); the older keys
``color_url`` / ``gt_color_url`` / ``color_min_m`` / ``color_max_m`` are the shared range.

Everything stays in memory: a small LRU of the last ``max_pictures`` pictures (their display RGB as
PNG bytes, the float32 depth in metres at the picture's own size, and the ground truth when given).
Nothing is written to disk.

The depth a picture gets is exactly ``DepthPredictor.predict(load_image(file))`` -- the same call
``python -m tfdepth.predict`` makes -- and the page reads the hovered value from that float32 array,
so the page and the predict command's ``_depth_m.npy`` agree at every pixel. Ground truth is scored
with the evaluate command's code (:class:`tfdepth.metrics.MetricAccumulator` with
:func:`tfdepth.metrics.get_protocol`), one image, so the numbers equal
``python -m tfdepth.evaluate --pred ... --gt ... --protocol P`` on the same pair.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from tfdepth.evaluation.report import finite_or_none
from tfdepth.geometry import DEFAULT_FOV_DEG, Intrinsics
from tfdepth.io.colormap import COLORMAP, colorize, colormap_stops, depth_range
from tfdepth.io.images import ImageReadError, decode_image, encode_png
from tfdepth.measure.groundtruth import GroundTruthError, decode_depth_bytes, parse_scale
from tfdepth.metrics import CROPS, DEPTH_RANGES, PROTOCOLS, MetricAccumulator, get_protocol, prepare_pair
from tfdepth.serving.batch import IntrinsicsChooser

DEFAULT_MAX_PIXELS = 50_000_000
PROTOCOL_NAMES = tuple(PROTOCOLS)
CROP_NAMES = CROPS
RANGE_LABELS = {"[0,1)": "< 1 m", "[1,3)": "1 – 3 m", "[3,5)": "3 – 5 m", "[5,inf)": "> 5 m"}
SUMMARY_KEYS = ("abs_rel", "rmse", "d1", "mae", "sq_rel", "rmse_log", "log10", "silog", "d2", "d3")
COLOR_MODES = ("own", "shared")  # each map in its own colour range | both in one


class RequestError(ValueError):
    """A request the page (or a client) got wrong; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Picture:
    """One predicted picture held in memory."""

    id: str
    name: str
    size: Tuple[int, int]  # (H, W)
    display_png: bytes  # the RGB the model saw (EXIF applied), PNG
    depth_m: np.ndarray  # float32 [H, W] metres
    pred_range_m: Tuple[float, float]  # the prediction's own colour range
    gt_range_m: Optional[Tuple[float, float]] = None  # the ground truth's own (its valid pixels)
    gt_m: Optional[np.ndarray] = None  # float64 [H, W] metres, 0 = invalid
    gt_name: Optional[str] = None
    gt_scale: Optional[float] = None
    colored: Dict[Tuple[str, str], bytes] = field(default_factory=dict)  # (pred|gt, own|shared) -> PNG
    color_version: int = 0  # bumped when the colour range changes (cache-busting URLs)

    @property
    def shared_range_m(self) -> Tuple[float, float]:
        """The union of the prediction's and the ground truth's ranges (the prediction's alone without one)."""
        if self.gt_range_m is None:
            return self.pred_range_m
        return (min(self.pred_range_m[0], self.gt_range_m[0]), max(self.pred_range_m[1], self.gt_range_m[1]))

    def color_range(self, which: str, mode: str) -> Tuple[float, float]:
        if mode == "shared":
            return self.shared_range_m
        return self.pred_range_m if which == "pred" else (self.gt_range_m or self.pred_range_m)

    def colors(self) -> dict:
        """``{mode: {map: {url, min_m, max_m}}}`` for both modes and the maps held."""
        maps = ("pred", "gt") if self.gt_m is not None else ("pred",)
        return {mode: {which: {"url": f"/api/color/{self.id}/{which}?range={mode}&v={self.color_version}",
                               "min_m": self.color_range(which, mode)[0], "max_m": self.color_range(which, mode)[1]}
                       for which in maps} for mode in COLOR_MODES}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def check_picture_bytes(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse, before decoding, pictures that are too big, and JPEGs that are cut short (OpenCV
    decodes those with a grey bottom and only a warning)."""
    import warnings

    from PIL import Image

    too_big = RequestError(f"{name}: the picture has more pixels than this server takes "
                           f"({max_pixels / 1e6:.0f} megapixels); scale it down", 413)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise too_big from None
        except Exception:  # a format Pillow does not know: OpenCV decides below
            return
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise RequestError(f"{name}: {width}x{height} pixels is more than this server takes "
                               f"({max_pixels / 1e6:.0f} megapixels); scale the picture down", 413)
        if image.format == "JPEG":
            try:
                image.load()
            except (OSError, SyntaxError) as e:
                raise RequestError(f"{name}: broken JPEG ({e})") from None


# --------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------


class MeasureApp:
    """Holds the predictor and the last few pictures; thread-safe (one prediction at a time).

    ``fixed_intrinsics`` / ``fov_deg`` (from the command line) pre-fill the page's camera fields.
    """

    def __init__(self, predictor, model_path: str = "", max_upload_bytes: int = 20_000_000,
                 max_pictures: int = 4, max_pixels: int = DEFAULT_MAX_PIXELS,
                 fixed_intrinsics: Optional[Intrinsics] = None, fov_deg: Optional[float] = None):
        if max_upload_bytes <= 0:
            raise ValueError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
        if max_pictures < 1:
            raise ValueError(f"max_pictures must be at least 1, got {max_pictures}")
        if fixed_intrinsics is not None and fov_deg is not None:
            raise ValueError("give either intrinsics or a field of view, not both")
        if fov_deg is not None:
            Intrinsics.from_fov(fov_deg, (2, 2))  # validates the range
        self.predictor = predictor
        self.model_path = model_path
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pictures = int(max_pictures)
        self.max_pixels = int(max_pixels)
        self.fixed_intrinsics = fixed_intrinsics
        self.fov_deg = fov_deg
        # the predict command's choice of camera (tfdepth.serving.batch.IntrinsicsChooser): the same
        # intrinsics logic for the page's depth (a canonical-camera model) as for predict's outputs
        self.camera = IntrinsicsChooser(predictor, fixed_intrinsics, fov_deg)
        self._pictures: "OrderedDict[str, Picture]" = OrderedDict()
        self._pictures_lock = threading.Lock()
        self._predict_lock = threading.Lock()
        self._stops = colormap_stops()

    # ---- pictures --------------------------------------------------------------------------------

    def _store(self, picture: Picture) -> None:
        with self._pictures_lock:
            self._pictures[picture.id] = picture
            while len(self._pictures) > self.max_pictures:
                self._pictures.popitem(last=False)

    def get(self, picture_id: str) -> Picture:
        with self._pictures_lock:
            picture = self._pictures.get(picture_id)
            if picture is not None:
                self._pictures.move_to_end(picture_id)
        if picture is None:
            raise RequestError(f"picture {picture_id!r} is not held by the server any more (it keeps the last "
                               f"{self.max_pictures}); open the picture again", 404)
        return picture

    # ---- API -------------------------------------------------------------------------------------

    def info(self) -> dict:
        protocols = {}
        for name in PROTOCOL_NAMES:
            p = get_protocol(name)
            protocols[name] = {"crop": p.crop, "min_depth_m": p.min_depth_m, "max_depth_m": p.max_depth_m}
        return finite_or_none({
            "model": self.predictor.describe(),
            "model_path": self.model_path,
            "input_size": list(self.predictor.input_size),
            "model_has_intrinsics": self.predictor.intrinsics is not None,
            "default_fov_deg": DEFAULT_FOV_DEG,
            "fov_deg": self.fov_deg,
            "intrinsics": None if self.fixed_intrinsics is None else self.fixed_intrinsics.as_list(),
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "protocols": protocols,
            "crops": list(CROP_NAMES),
            "colormap": {"name": COLORMAP, "stops": self._stops},
        })

    def predict(self, data: bytes, name: str) -> dict:
        """Decode an uploaded picture, predict its depth, keep both; returns the page's description."""
        if len(data) == 0:
            raise RequestError(f"{name}: empty file")
        check_picture_bytes(data, name, self.max_pixels)
        try:
            rgb = decode_image(data, name)
        except ImageReadError as e:
            raise RequestError(f"{e}. Open a JPEG, PNG, BMP, TIFF or WebP picture.") from None
        if rgb.shape[0] * rgb.shape[1] > self.max_pixels:
            raise RequestError(f"{name}: {rgb.shape[1]}x{rgb.shape[0]} pixels is more than this server takes "
                               f"({self.max_pixels / 1e6:.0f} megapixels); scale the picture down", 413)
        start = time.perf_counter()
        camera, camera_source = self.camera.choose(rgb.shape[:2], bytes(data))
        with self._predict_lock:
            depth_m = np.ascontiguousarray(self.predictor.predict(rgb, camera), dtype=np.float32)
            focal_resize = getattr(self.predictor, "last_focal_resize", None)  # docs/camera.md
        seconds = time.perf_counter() - start
        if depth_m.shape != rgb.shape[:2]:
            raise RuntimeError(f"the model returned depth {depth_m.shape} for a picture of {rgb.shape[:2]}")
        picture = Picture(id=secrets.token_hex(8), name=name, size=(int(rgb.shape[0]), int(rgb.shape[1])),
                          display_png=encode_png(rgb), depth_m=depth_m, pred_range_m=depth_range(depth_m))
        self._store(picture)
        valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
        model_intr = self.predictor.intrinsics_for(picture.size)
        return finite_or_none({
            "id": picture.id,
            "name": name,
            "width": picture.size[1],
            "height": picture.size[0],
            "depth_url": f"/api/depth/{picture.id}",
            "depth_dtype": "float32",
            "depth_byte_order": "little",
            "image_url": f"/api/image/{picture.id}",
            "color_url": f"/api/color/{picture.id}/pred",
            "color_min_m": picture.pred_range_m[0],
            "color_max_m": picture.pred_range_m[1],
            "colors": picture.colors(),
            "depth_min_m": float(valid.min()) if valid.size else None,
            "depth_median_m": float(np.median(valid)) if valid.size else None,
            "depth_max_m": float(valid.max()) if valid.size else None,
            "model_intrinsics": None if model_intr is None else model_intr.as_list(),
            "camera": {"intrinsics": camera.as_list(), "source": camera_source, "focal_resize": focal_resize},
            "predict_seconds": seconds,
        })

    def depth_bytes(self, picture_id: str) -> Tuple[bytes, Tuple[int, int]]:
        """The depth as float32 little-endian, row-major [H, W], and (H, W)."""
        picture = self.get(picture_id)
        return picture.depth_m.astype("<f4").tobytes(), picture.size

    def gt_bytes(self, picture_id: str) -> Tuple[bytes, Tuple[int, int]]:
        picture = self.get(picture_id)
        if picture.gt_m is None:
            raise RequestError(f"picture {picture_id!r} has no ground truth", 404)
        return picture.gt_m.astype("<f4").tobytes(), picture.size

    def display_png(self, picture_id: str) -> bytes:
        return self.get(picture_id).display_png

    def color_png(self, picture_id: str, which: str, mode: str = "shared") -> bytes:
        """Colour-mapped prediction (``pred``) or ground truth (``gt``) in its own colour range
        (``mode`` "own") or in the range shared by both ("shared")."""
        picture = self.get(picture_id)
        if which not in ("pred", "gt"):
            raise RequestError(f"colour map of {which!r}: expected 'pred' or 'gt'", 404)
        if mode not in COLOR_MODES:
            raise RequestError(f"colour range {mode!r}: expected {' or '.join(COLOR_MODES)}")
        if (which, mode) not in picture.colored:
            depth = picture.depth_m if which == "pred" else picture.gt_m
            if depth is None:
                raise RequestError(f"picture {picture_id!r} has no ground truth", 404)
            low, high = picture.color_range(which, mode)
            picture.colored[(which, mode)] = encode_png(colorize(depth, low, high))
        return picture.colored[(which, mode)]

    def set_ground_truth(self, picture_id: str, data: bytes, name: str, scale_text: Optional[str],
                         protocol: str = "nyu", crop: Optional[str] = None, allow_8bit: bool = False) -> dict:
        picture = self.get(picture_id)
        try:
            scale = parse_scale(scale_text)
        except GroundTruthError as e:
            raise RequestError(f"{name}: {e}") from None
        try:
            gt_m = decode_depth_bytes(data, name, scale, allow_8bit)
        except GroundTruthError as e:
            raise RequestError(str(e)) from None
        if gt_m.shape != picture.size:
            raise RequestError(f"{name}: ground truth is {gt_m.shape[1]}x{gt_m.shape[0]} pixels but the picture "
                               f"{picture.name} is {picture.size[1]}x{picture.size[0]}; they must be the same size")
        result = self.metrics(picture_id, protocol, crop, gt_m=gt_m)  # validates before anything is kept
        picture.gt_m, picture.gt_name = gt_m, name
        picture.gt_scale = scale
        # Each map's own colour range, and their union for the shared view.
        valid = np.isfinite(gt_m) & (gt_m > 0)
        picture.gt_range_m = depth_range(gt_m) if valid.any() else None
        picture.colored.clear()
        picture.color_version += 1
        result.update({
            "gt_name": name,
            "gt_url": f"/api/gt/{picture.id}",
            "gt_color_url": f"/api/color/{picture.id}/gt?v={picture.color_version}",
            "color_url": f"/api/color/{picture.id}/pred?v={picture.color_version}",
            "color_min_m": picture.shared_range_m[0],
            "color_max_m": picture.shared_range_m[1],
            "colors": picture.colors(),
            "gt_valid_fraction": float(valid.mean()),
        })
        return finite_or_none(result)

    def metrics(self, picture_id: str, protocol: str = "nyu", crop: Optional[str] = None,
                gt_m: Optional[np.ndarray] = None) -> dict:
        """The evaluate command's metrics of this picture's prediction against its ground truth
        (``gt_m``, default: the one held)."""
        picture = self.get(picture_id)
        gt_m = picture.gt_m if gt_m is None else gt_m
        if gt_m is None:
            raise RequestError(f"picture {picture.name} has no ground truth yet; open its depth file first")
        if protocol not in PROTOCOL_NAMES:
            raise RequestError(f"unknown protocol {protocol!r}; choose {', '.join(PROTOCOL_NAMES)}")
        crop = crop or None
        if crop is not None and crop not in CROP_NAMES:
            raise RequestError(f"unknown crop {crop!r}; choose {', '.join(CROP_NAMES)}")
        chosen = get_protocol(protocol, crop)
        accumulator = MetricAccumulator(chosen, per_range=True)
        try:
            accumulator.update(picture.depth_m, gt_m)
            _, gt, valid = prepare_pair(picture.depth_m, gt_m, chosen)
        except ValueError as e:  # e.g. the KB crop on a map smaller than 352x1216
            raise RequestError(f"protocol {protocol} (crop {chosen.crop}): {e}") from None
        result = accumulator.result()
        overall = result["overall"]
        valid_gt = gt[valid]
        summary = {k: overall[k] for k in SUMMARY_KEYS}
        summary["pixels"] = int(valid.sum())
        rows = []
        for label, low, high in DEPTH_RANGES:
            values = result["per_range"][label]
            row = {"range": label, "label": RANGE_LABELS[label],
                   "pixels": int(np.count_nonzero((valid_gt >= low) & (valid_gt < high)))}
            row.update({k: values[k] for k in SUMMARY_KEYS})
            rows.append(row)
        message = None
        if summary["pixels"] == 0:
            message = (f"no ground-truth pixel is valid under protocol {chosen.name} (crop {chosen.crop}, "
                       f"{chosen.min_depth_m:g} < gt < {chosen.max_depth_m:g} m)")
        return finite_or_none({
            "id": picture.id,
            "protocol": {"name": chosen.name, "crop": chosen.crop, "min_depth_m": chosen.min_depth_m,
                         "max_depth_m": chosen.max_depth_m, "pred_min_m": chosen.pred_min_m,
                         "pred_max_m": chosen.pred_max_m},
            "overall": summary,
            "per_range": rows,
            "total_pixels": int(gt.size),
            "message": message,
        })


__all__ = ["MeasureApp", "Picture", "RequestError"]
