"""Pinhole camera geometry: intrinsics, back-projection of depth maps, PLY point clouds.

Conventions (OpenCV): pixel ``(u, v)`` = (column, row) with integer coordinates at pixel centres;
the camera frame has x right, y down, z forward (the optical axis), all in metres. A pixel with depth
``z`` (metres along the optical axis, not along the ray) back-projects to::

    x = (u - cx) * z / fx,   y = (v - cy) * z / fy,   z = z

Intrinsics are ``fx, fy, cx, cy`` in pixels of one image size. Resizing an image by ``s`` (TF/OpenCV
"half-pixel centres" resizing, which is what ``tf.image.resize`` and the data pipeline do) maps pixel
centre ``u`` to ``(u + 0.5) * s - 0.5``, so ``fx' = fx * s`` and ``cx' = (cx + 0.5) * s - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

# Horizontal field of view assumed when nothing is known about the camera (a typical phone / webcam
# main camera is 60-70 degrees wide).
DEFAULT_FOV_DEG = 60.0

# NYU Depth V2's Kinect colour camera (the NYU toolbox's camera_params.m: fx_rgb, fy_rgb, cx_rgb,
# cy_rgb), in pixels of its 640x480 images. The NYU converters store it; the synthetic generator
# renders with it.
NYU_KINECT_SIZE = (640, 480)  # (W, H) the intrinsics belong to
NYU_KINECT_INTRINSICS = (518.857901, 519.469611, 325.582449, 253.736166)  # fx, fy, cx, cy


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths ``fx, fy`` and principal point ``cx, cy``."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"intrinsics must be finite numbers, got fx,fy,cx,cy = {values}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_sequence(cls, values: Sequence[float], source: str = "intrinsics") -> "Intrinsics":
        values = [float(v) for v in values]
        if len(values) != 4:
            raise ValueError(f"{source}: expected 4 numbers fx,fy,cx,cy, got {len(values)}: {values}")
        return cls(*values)

    @classmethod
    def parse(cls, text: str) -> "Intrinsics":
        """``"fx,fy,cx,cy"`` (pixels of the image they belong to)."""
        try:
            values = [float(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise ValueError(f"--intrinsics {text!r}: expected four numbers fx,fy,cx,cy") from None
        return cls.from_sequence(values, f"--intrinsics {text!r}")

    @classmethod
    def from_fov(cls, fov_deg: float, size: Sequence[int]) -> "Intrinsics":
        """Square pixels, horizontal field of view ``fov_deg`` over the width of ``size`` = (H, W),
        principal point at the image centre: ``fx = fy = (W / 2) / tan(fov / 2)``."""
        if not 0.0 < float(fov_deg) < 180.0:
            raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        height, width = int(size[0]), int(size[1])
        focal_px = 0.5 * width / math.tan(math.radians(float(fov_deg)) / 2.0)
        return cls(focal_px, focal_px, (width - 1) / 2.0, (height - 1) / 2.0)

    def scaled(self, from_size: Sequence[int], to_size: Sequence[int]) -> "Intrinsics":
        """The intrinsics of the image resized from ``from_size`` (H, W) to ``to_size`` (H, W)."""
        sy = int(to_size[0]) / int(from_size[0])
        sx = int(to_size[1]) / int(from_size[1])
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)

    def cropped(self, top: int, left: int) -> "Intrinsics":
        """The intrinsics of the window starting at row ``top``, column ``left``."""
        return Intrinsics(self.fx, self.fy, self.cx - left, self.cy - top)

    def flipped(self, width: int) -> "Intrinsics":
        """The intrinsics of the picture mirrored left-right (``width`` pixels): ``cx' = W - 1 - cx``."""
        return Intrinsics(self.fx, self.fy, int(width) - 1 - self.cx, self.cy)

    def padded(self, top: int, left: int) -> "Intrinsics":
        """The intrinsics of the picture with ``top`` rows and ``left`` columns added before it."""
        return Intrinsics(self.fx, self.fy, self.cx + left, self.cy + top)

    @property
    def focal_px(self) -> float:
        """The one focal length of the canonical camera: ``(fx + fy) / 2`` (Metric3D)."""
        return 0.5 * (self.fx + self.fy)

    def horizontal_fov_deg(self, width: int) -> float:
        return math.degrees(2.0 * math.atan(0.5 * int(width) / self.fx))

    def as_list(self) -> list:
        return [float(self.fx), float(self.fy), float(self.cx), float(self.cy)]

    def as_matrix(self) -> np.ndarray:
        """K, float64 [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def center_crop_window(size: Sequence[int], aspect_w_over_h: float) -> Tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred window with the given aspect ratio, rounded
    exactly as :func:`tfdepth.data.pipeline.resize_pair` does for ``resize_mode: center_crop``."""
    height, width = int(size[0]), int(size[1])
    crop_w = min(width, int(round(height * aspect_w_over_h)))
    crop_h = min(height, int(round(crop_w / aspect_w_over_h)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def intrinsics_for_model_input(intrinsics: Intrinsics, image_size: Sequence[int], input_size: Sequence[int],
                               resize_mode: str = "resize") -> Intrinsics:
    """Intrinsics of an ``image_size`` image as the model sees it after the data pipeline's resize
    (``resize_mode`` "resize" or "center_crop") to ``input_size``."""
    if resize_mode == "center_crop":
        top, left, crop_h, crop_w = center_crop_window(image_size, int(input_size[1]) / int(input_size[0]))
        return intrinsics.cropped(top, left).scaled((crop_h, crop_w), input_size)
    if resize_mode != "resize":
        raise ValueError(f"resize_mode must be 'resize' or 'center_crop', got {resize_mode!r}")
    return intrinsics.scaled(image_size, input_size)


def focal_px_from_35mm(focal_35mm: float, width: int) -> float:
    """Focal length in pixels of a picture ``width`` pixels wide from its EXIF ``FocalLengthIn35mmFilm``
    (mm): ``f_px = f35 / 36 * width``, a 35 mm frame being 36 mm wide (exact for a picture with the
    3:2 frame's width; the EXIF value itself is defined on the frame's diagonal, so for other aspect
    ratios this is the usual approximation)."""
    if not (math.isfinite(float(focal_35mm)) and float(focal_35mm) > 0):
        raise ValueError(f"35 mm equivalent focal length must be a positive number, got {focal_35mm}")
    return float(focal_35mm) / 36.0 * int(width)


def canonical_depth_scale(focal_px, canonical_focal_px: float):
    """``f / f_c``: metric depth = canonical depth * this (Metric3D's canonical camera transform).

    A camera of focal length ``f`` (pixels of the model input) sees a scene at depth ``d`` exactly as
    the canonical camera ``f_c`` sees it at depth ``d * f_c / f``; a canonical-camera model is trained on
    ``d / (f / f_c)`` and its prediction is multiplied by ``f / f_c``. Works on floats, NumPy arrays and
    TensorFlow tensors alike (``focal_px`` per sample, broadcast by the caller)."""
    if not (math.isfinite(float(canonical_focal_px)) and float(canonical_focal_px) > 0):
        raise ValueError(f"canonical focal length must be a positive number of pixels, got {canonical_focal_px}")
    return focal_px / float(canonical_focal_px)


def focal_resize_scale(focal_px: float, focal_range_px: Optional[Sequence[float]]) -> float:
    """``clip(f, f_min, f_max) / f``: how much a picture whose focal length is ``focal_px`` (pixels of the
    model input) is resized so that a canonical-camera model sees a lens of its trained focal range
    ``[f_min, f_max]`` (``model.focal_range_px``, docs/camera.md); 1.0 inside the range or without one.
    Resizing by s makes the focal length f s and leaves metric depth unchanged."""
    if focal_range_px is None:
        return 1.0
    f_min, f_max = float(focal_range_px[0]), float(focal_range_px[1])
    focal = float(focal_px)
    if not (math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal length must be a positive number of pixels, got {focal_px}")
    return min(max(focal, f_min), f_max) / focal


def backproject(depth_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Camera-frame points of every pixel: float32 [H, W, 3] (x, y, z metres) from depth [H, W] metres."""
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth map must be HxW, got shape {np.shape(depth_m)}")
    rows, cols = np.indices(depth.shape, dtype=np.float64)
    x = (cols - intrinsics.cx) * depth / intrinsics.fx
    y = (rows - intrinsics.cy) * depth / intrinsics.fy
    return np.stack([x, y, depth], axis=-1).astype(np.float32)


def point_cloud(depth_m: np.ndarray, intrinsics: Intrinsics, rgb: Optional[np.ndarray] = None, stride: int = 1
                ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Points of the valid pixels (depth finite and > 0) in row-major pixel order.

    Returns (points float32 [N, 3] metres, colours uint8 [N, 3] or None). ``rgb`` must be uint8
    [H, W, 3] of the same size as the depth map. ``stride`` N keeps every N-th pixel of every N-th row
    (rows and columns 0, N, 2N, ...), each back-projected at its own pixel coordinates with the
    picture's intrinsics (a large picture's point cloud at a bounded size); only those pixels are
    computed, so memory is proportional to the points, not to the picture.
    """
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"point cloud stride must be >= 1, got {stride}")
    depth = np.asarray(depth_m)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth map must be HxW, got shape {np.shape(depth_m)}")
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"colour image must be {depth.shape[0]}x{depth.shape[1]}x3 like the depth map, "
                             f"got {rgb.shape}")
    z32 = depth[::stride, ::stride].astype(np.float32)  # validity as the float32 points see it
    valid = np.isfinite(z32) & (z32 > 0)
    rows, cols = np.nonzero(valid)
    z = depth[::stride, ::stride][valid].astype(np.float64)
    # the same arithmetic as backproject (float64, then float32), on the kept pixels only
    x = (cols.astype(np.float64) * stride - intrinsics.cx) * z / intrinsics.fx
    y = (rows.astype(np.float64) * stride - intrinsics.cy) * z / intrinsics.fy
    points = np.stack([x, y, z], axis=-1).astype(np.float32)
    colors = None if rgb is None else rgb[::stride, ::stride][valid].astype(np.uint8)
    return points, colors


def write_ply(path: str, points: np.ndarray, colors: Optional[np.ndarray] = None, binary: bool = True) -> None:
    """Write a PLY point cloud: ``x y z`` float32 (+ ``red green blue`` uchar), binary little-endian
    by default, else ASCII."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(colors) != len(points):
            raise ValueError(f"{len(points)} points but {len(colors)} colours")
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
              "comment tfdepth point cloud: camera frame, x right, y down, z forward, metres",
              f"element vertex {len(points)}", "property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
            if colors is not None:
                fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
            record = np.empty(len(points), dtype=np.dtype(fields))
            record["x"], record["y"], record["z"] = points[:, 0], points[:, 1], points[:, 2]
            if colors is not None:
                record["red"], record["green"], record["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
            f.write(record.tobytes())
        else:
            lines = []
            for i in range(len(points)):
                line = f"{points[i, 0]:.9g} {points[i, 1]:.9g} {points[i, 2]:.9g}"
                if colors is not None:
                    line += f" {colors[i, 0]} {colors[i, 1]} {colors[i, 2]}"
                lines.append(line)
            f.write(("\n".join(lines) + ("\n" if lines else "")).encode("ascii"))


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read the vertices of a PLY file with scalar vertex properties (as :func:`write_ply` writes).

    Returns (points float32 [N, 3], colours uint8 [N, 3] or None).
    """
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a PLY file")
        fmt, count, props, in_vertex = None, None, [], False
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii").split()
            if not words or words[0] == "comment":
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                in_vertex = words[1] == "vertex"
                if in_vertex:
                    count = int(words[2])
            elif words[0] == "property" and in_vertex:
                if words[1] == "list":
                    raise ValueError(f"{path}: list properties on vertices are not supported")
                props.append((words[2], _PLY_TYPES[words[1]]))
        if count is None:
            raise ValueError(f"{path}: no vertex element")
        names = [name for name, _ in props]
        if fmt == "ascii":
            data = np.loadtxt(f, dtype=np.float64, max_rows=count, ndmin=2) if count else np.zeros((0, len(props)))
            columns = {name: data[:, i] for i, name in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(name, order + code) for name, code in props])
            record = np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype, count=count)
            columns = {name: record[name] for name in names}
        else:
            raise ValueError(f"{path}: unknown PLY format {fmt!r}")
    points = np.stack([columns["x"], columns["y"], columns["z"]], axis=-1).astype(np.float32)
    colors = None
    if all(c in columns for c in ("red", "green", "blue")):
        colors = np.stack([columns["red"], columns["green"], columns["blue"]], axis=-1).astype(np.uint8)
    return points, colors


__all__ = [
    "DEFAULT_FOV_DEG", "Intrinsics", "backproject", "canonical_depth_scale", "center_crop_window",
    "focal_px_from_35mm", "focal_resize_scale", "intrinsics_for_model_input",
    "point_cloud", "read_ply", "write_ply",
]
