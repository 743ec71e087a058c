"""The embedded procedural RGB-D dataset: ray-cast indoor-like rooms with exact metric depth.

Two layers:

- :func:`render` ray-casts a :class:`Scene` (planes, axis-aligned boxes, vertical cylinders, spheres,
  one point light) through a pinhole :class:`Camera`; every intersection is vectorised NumPy over all
  rays of the object's screen-space bounding rectangle, and the nearest hit wins.
- :func:`render_scene` builds a random room + furniture + camera from a seed and renders it with
  Kinect-like invalid pixels; :func:`write_synthetic_dataset` / :func:`ensure_synthetic_dataset`
  write (once, cached) TFRecord shards plus ``manifest.json`` in the schema of
  :mod:`tfdepth.data.records` / :mod:`tfdepth.data.shards`.

Frames and units (metres, radians):

- World: ``y`` is up, the floor of a generated room is ``y = 0``. At ``yaw = 0`` the camera looks along
  ``+z`` with ``+x`` to its right (a left-handed frame, as in Unity); positive yaw turns it from ``+z``
  towards ``+x``; positive pitch tilts it down.
- Camera: OpenCV convention, ``x`` right, ``y`` down, ``z`` forward; pixel ``(u, v)`` (column, row;
  integer pixel centres) looks along ``((u - cx) / fx, (v - cy) / fy, 1)``.
- Depth is z-depth (distance along the optical axis), not ray length; 0 marks an invalid pixel.

TensorFlow is only imported when a dataset is written, so rendering (and worker processes) stay light.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

GENERATOR_VERSION = "synthetic-room-v1"

# Kinect (NYU Depth v2) RGB intrinsics at 640x480.
KINECT_WIDTH_PX = 640
KINECT_HEIGHT_PX = 480
KINECT_FX = 518.8579
KINECT_FY = 518.8579
KINECT_CX = 325.5824
KINECT_CY = 253.7362

# Kinect-like validity used by render_scene.
MAX_VALID_DEPTH_M = 9.5  # farther surfaces read as 0
MIN_VALID_DEPTH_M = 0.4  # closer surfaces read as 0
GRAZING_LIMIT_DEG = 80.0  # surfaces seen at a larger angle between ray and normal read as 0

_EPS_T = 1e-4  # smallest accepted hit distance (metres of z-depth)
_TILE = 64  # side of the per-scene noise tile (power of two: indices wrap with & (_TILE - 1))

PATTERNS = ("plain", "stripes", "checks", "blotches")


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass
class Material:
    """Surface appearance: base colour, an optional second colour pattern and fine grain noise.

    ``pattern``: "plain" | "stripes" | "checks" | "blotches". Pattern and grain live in surface
    coordinates (metres), so their image scale follows perspective.
    ``period_m``: stripe / check period; blotch size. ``stripe_axis``: 0 = along s, 1 = along t,
    2 = diagonal. ``grain_amp``: relative albedo noise amplitude; ``grain_cell_m``: grain cell size.
    """

    color: Tuple[float, float, float] = (0.7, 0.7, 0.7)  # linear RGB albedo in [0, 1]
    pattern: str = "plain"
    color2: Tuple[float, float, float] = (0.3, 0.3, 0.3)
    period_m: float = 0.5
    stripe_axis: int = 0
    duty: float = 0.5
    grain_amp: float = 0.0
    grain_cell_m: float = 0.03
    tile_offset: Tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"Material.pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.period_m <= 0 or self.grain_cell_m <= 0:
            raise ValueError(
                f"Material.period_m and grain_cell_m must be > 0, got {self.period_m}, {self.grain_cell_m}")


@dataclass
class Plane:
    """Infinite plane ``dot(normal, p) = offset`` (normal need not be unit length)."""

    normal: Tuple[float, float, float]
    offset: float
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if len(self.normal) != 3 or not np.any(np.asarray(self.normal, np.float64) != 0):
            raise ValueError(f"Plane.normal must be a non-zero 3-vector, got {self.normal!r}")


@dataclass
class Box:
    """Axis-aligned box between corners ``lo`` and ``hi`` (world metres)."""

    lo: Tuple[float, float, float]
    hi: Tuple[float, float, float]
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if len(self.lo) != 3 or len(self.hi) != 3 or not all(a < b for a, b in zip(self.lo, self.hi)):
            raise ValueError(f"Box needs lo < hi on every axis, got lo={self.lo!r}, hi={self.hi!r}")


@dataclass
class Cylinder:
    """Vertical (y-axis) capped cylinder: axis through ``(center_x, center_z)``, ``y_min <= y <= y_max``."""

    center_x: float
    center_z: float
    radius: float
    y_min: float
    y_max: float
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if not (self.radius > 0 and self.y_min < self.y_max):
            raise ValueError(f"Cylinder needs radius > 0 and y_min < y_max, got radius={self.radius}, "
                             f"y_min={self.y_min}, y_max={self.y_max}")


@dataclass
class Sphere:
    """Sphere of ``radius`` around ``center`` (world metres)."""

    center: Tuple[float, float, float]
    radius: float
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if len(self.center) != 3 or not self.radius > 0:
            raise ValueError(f"Sphere needs a 3-vector center and radius > 0, got {self.center!r}, {self.radius}")


@dataclass
class Scene:
    """Everything :func:`render` draws. Light: one point light plus ambient; optional distance haze.

    Shading of a surface point ``p`` with albedo ``a`` (pattern times grain) and unit normal ``n``
    facing the camera, ``l`` the unit vector from ``p`` to the light::

        light = ambient + light_power * max(0, n . l) / (1 + |light_position - p|^2)
        colour = a * light * exp(-haze_per_m * r) + haze_color * (1 - exp(-haze_per_m * r))
        rgb = uint8(clip(255 * colour, 0, 255))

    where ``r`` is the ray length from the camera. No shadows.
    """

    planes: List[Plane] = field(default_factory=list)
    boxes: List[Box] = field(default_factory=list)
    cylinders: List[Cylinder] = field(default_factory=list)
    spheres: List[Sphere] = field(default_factory=list)
    light_position: Tuple[float, float, float] = (0.0, 2.5, 0.0)
    light_power: float = 4.0
    ambient: float = 0.25
    haze_per_m: float = 0.0
    haze_color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    noise_tile: Optional[np.ndarray] = None  # [_TILE, _TILE] float32 in [0, 1]; None = flat 0.5


@dataclass
class Camera:
    """Pinhole camera: image size, intrinsics (pixels), pose (world position, yaw, pitch in radians)."""

    height_px: int
    width_px: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    pitch: float = 0.0

    @classmethod
    def kinect(cls, height_px: int, width_px: int, position=(0.0, 0.0, 0.0), yaw: float = 0.0,
               pitch: float = 0.0) -> "Camera":
        """Kinect (NYU v2) intrinsics at 640x480, scaled to ``width_px`` x ``height_px``."""
        fx, fy, cx, cy = kinect_intrinsics(height_px, width_px)
        return cls(height_px, width_px, fx, fy, cx, cy, tuple(float(p) for p in position), float(yaw), float(pitch))

    @property
    def intrinsics(self) -> Tuple[float, float, float, float]:
        return (float(self.fx), float(self.fy), float(self.cx), float(self.cy))

    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are the camera's right, down and forward axes in world coordinates."""
        cy_, sy_ = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        right = (cy_, 0.0, -sy_)
        down = (-sp * sy_, -cp, -sp * cy_)
        forward = (cp * sy_, -sp, cp * cy_)
        return np.array([right, down, forward], np.float64).T


def kinect_intrinsics(height_px: int, width_px: int) -> Tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the Kinect RGB camera at 640x480 scaled to the given image size."""
    sx = width_px / KINECT_WIDTH_PX
    sy = height_px / KINECT_HEIGHT_PX
    return (KINECT_FX * sx, KINECT_FY * sy, KINECT_CX * sx, KINECT_CY * sy)


# --------------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _ray_grid(height_px: int, width_px: int, fx: float, fy: float, cx: float, cy: float):
    """Camera-frame rays d = (xc, yc, 1): xc [W], yc [H], and per pixel xc, yc, |d|^2, |d| [H, W]."""
    xc = ((np.arange(width_px, dtype=np.float64) - cx) / fx).astype(np.float32)
    yc = ((np.arange(height_px, dtype=np.float64) - cy) / fy).astype(np.float32)
    xc2 = np.ascontiguousarray(np.broadcast_to(xc[None, :], (height_px, width_px)))
    yc2 = np.ascontiguousarray(np.broadcast_to(yc[:, None], (height_px, width_px)))
    sq = (xc2 * xc2 + yc2 * yc2 + np.float32(1.0)).astype(np.float32)
    norm = np.sqrt(sq)
    for a in (xc, yc, xc2, yc2, sq, norm):
        a.setflags(write=False)
    return xc, yc, xc2, yc2, sq, norm


class _Caster:
    """Nearest-hit buffers of one render; each primitive updates them inside its screen rectangle."""

    def __init__(self, camera: Camera):
        if camera.height_px < 1 or camera.width_px < 1:
            raise ValueError(f"camera image size must be positive, got {camera.height_px}x{camera.width_px}")
        if not (camera.fx > 0 and camera.fy > 0):
            raise ValueError(f"camera focal lengths must be > 0, got fx={camera.fx}, fy={camera.fy}")
        self.cam = camera
        self.h, self.w = camera.height_px, camera.width_px
        (self.xc, self.yc, self.xc2, self.yc2, self.sq, self.norm) = _ray_grid(
            self.h, self.w, float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy))
        self.R = camera.rotation()
        self.o = np.asarray(camera.position, np.float64)
        self.t = np.full((self.h, self.w), np.inf, np.float32)
        self.ids = np.full((self.h, self.w), -1, np.int16)
        self.rects: Dict[int, Tuple[int, int, int, int]] = {}  # surface id -> pixel rectangle it may cover

    # d(world) . A for every ray d = R (xc, yc, 1), evaluated on a rectangle as an outer sum.
    def lin(self, a_world, rect) -> np.ndarray:
        v0, v1, u0, u1 = rect
        a = self.R.T @ np.asarray(a_world, np.float64)
        row = np.float32(a[0]) * self.xc[u0:u1]
        col = np.float32(a[1]) * self.yc[v0:v1] + np.float32(a[2])
        return row[None, :] + col[:, None]

    def rect_of(self, lo, hi) -> Optional[Tuple[int, int, int, int]]:
        """Pixel rectangle (v0, v1, u0, u1) covering the projection of an AABB; None if off screen."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        pc = (corners - self.o) @ self.R  # rows: camera-frame coordinates
        if np.any(pc[:, 2] <= 1e-3):
            if np.all(pc[:, 2] <= 0):
                return None
            return (0, self.h, 0, self.w)
        u = self.cam.fx * pc[:, 0] / pc[:, 2] + self.cam.cx
        v = self.cam.fy * pc[:, 1] / pc[:, 2] + self.cam.cy
        u0, u1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())) + 1, self.w)
        v0, v1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())) + 1, self.h)
        if u0 >= u1 or v0 >= v1:
            return None
        return (v0, v1, u0, u1)

    def commit(self, t: np.ndarray, rect, surface_id: int) -> None:
        v0, v1, u0, u1 = rect
        best = self.t[v0:v1, u0:u1]
        closer = t < best  # NaN compares False
        closer &= t > _EPS_T
        np.copyto(best, t, where=closer)
        np.copyto(self.ids[v0:v1, u0:u1], np.int16(surface_id), where=closer)
        self.rects[surface_id] = rect

    # --- primitives -------------------------------------------------------------------------------

    def plane(self, p: Plane, surface_id: int) -> None:
        rect = (0, self.h, 0, self.w)
        n = np.asarray(p.normal, np.float64)
        nd = self.lin(n, rect)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.float32(p.offset - n @ self.o) / nd
        self.commit(t, rect, surface_id)

    def box(self, b: Box, surface_id: int) -> None:
        lo, hi = np.asarray(b.lo, np.float64), np.asarray(b.hi, np.float64)
        rect = self.rect_of(lo, hi)
        if rect is None:
            return
        tnear = tfar = None
        with np.errstate(divide="ignore", invalid="ignore"):
            for axis in range(3):
                e = np.zeros(3)
                e[axis] = 1.0
                inv = np.float32(1.0) / self.lin(e, rect)
                t1 = np.float32(lo[axis] - self.o[axis]) * inv
                t2 = np.float32(hi[axis] - self.o[axis]) * inv
                tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
                tnear = tn if tnear is None else np.maximum(tnear, tn)
                tfar = tf if tfar is None else np.minimum(tfar, tf)
        inside = bool(np.all(self.o > lo) and np.all(self.o < hi))
        t = tfar if inside else tnear
        t = np.where(tnear <= tfar, t, np.float32(np.inf))
        self.commit(t, rect, surface_id)

    def sphere(self, s: Sphere, surface_id: int) -> None:
        c = np.asarray(s.center, np.float64)
        r = float(s.radius)
        rect = self.rect_of(c - r, c + r)
        if rect is None:
            return
        v0, v1, u0, u1 = rect
        oc = self.o - c
        b = self.lin(oc, rect)
        a = self.sq[v0:v1, u0:u1]
        c0 = float(oc @ oc - r * r)
        disc = b * b - a * np.float32(c0)
        with np.errstate(invalid="ignore"):
            root = np.sqrt(disc)  # NaN where the ray misses: never committed
        t = (-b + root) / a if c0 < 0 else (-b - root) / a
        self.commit(t, rect, surface_id)

    def cylinder(self, cyl: Cylinder, side_id: int, cap_id: int) -> None:
        r = float(cyl.radius)
        lo = np.array([cyl.center_x - r, cyl.y_min, cyl.center_z - r])
        hi = np.array([cyl.center_x + r, cyl.y_max, cyl.center_z + r])
        rect = self.rect_of(lo, hi)
        if rect is None:
            return
        ox, oy, oz = self.o
        ocx, ocz = ox - cyl.center_x, oz - cyl.center_z
        dx = self.lin((1.0, 0.0, 0.0), rect)
        dy = self.lin((0.0, 1.0, 0.0), rect)
        dz = self.lin((0.0, 0.0, 1.0), rect)
        a = dx * dx + dz * dz
        b = self.lin((ocx, 0.0, ocz), rect)
        c0 = ocx * ocx + ocz * ocz - r * r
        with np.errstate(invalid="ignore", divide="ignore"):
            root = np.sqrt(b * b - a * np.float32(c0))
            t = (-b + root) / a if c0 < 0 else (-b - root) / a
            y = np.float32(oy) + t * dy
            t = np.where((y >= cyl.y_min) & (y <= cyl.y_max), t, np.float32(np.inf))
            self.commit(t, rect, side_id)
            if oy > cyl.y_max or oy < cyl.y_min:
                y_cap = cyl.y_max if oy > cyl.y_max else cyl.y_min
                tc = np.float32(y_cap - oy) / dy
                px = np.float32(ocx) + tc * dx
                pz = np.float32(ocz) + tc * dz
                tc = np.where(px * px + pz * pz <= np.float32(r * r), tc, np.float32(np.inf))
                self.commit(tc, rect, cap_id)


_COORD_SHIFT = 1 << 14  # keeps cell indices of (bounded) negative coordinates positive before truncation


def _cells(coord: np.ndarray, cell_m: float) -> np.ndarray:
    """floor(coord / cell_m) + _COORD_SHIFT as int32 (truncation of a positive number is floor)."""
    return (coord * np.float32(1.0 / cell_m) + np.float32(_COORD_SHIFT)).astype(np.int32)


def _tile_lookup(tile_flat: np.ndarray, s: np.ndarray, t: np.ndarray, cell_m: float, offset) -> np.ndarray:
    i = (_cells(s, cell_m) + int(offset[0])) & (_TILE - 1)
    j = (_cells(t, cell_m) + int(offset[1])) & (_TILE - 1)
    return tile_flat[(j << 6) | i] if _TILE == 64 else tile_flat[j * _TILE + i]


def _pattern_mix(mat: Material, s: np.ndarray, t: np.ndarray, tile_flat: np.ndarray) -> Optional[np.ndarray]:
    """Weight of ``color2`` in [0, 1] at surface coordinates s, t (metres); None for plain surfaces."""
    if mat.pattern == "plain":
        return None
    if mat.pattern == "stripes":
        coord = s if mat.stripe_axis == 0 else t if mat.stripe_axis == 1 else (s + t) * np.float32(0.7071)
        x = coord * np.float32(1.0 / mat.period_m)
        return ((x - np.floor(x)) < np.float32(mat.duty)).astype(np.float32)
    if mat.pattern == "checks":
        return ((_cells(s, mat.period_m) + _cells(t, mat.period_m)) & 1).astype(np.float32)
    return _tile_lookup(tile_flat, s, t, mat.period_m / 6.0, (mat.tile_offset[1], mat.tile_offset[0]))


def _plane_axes(n: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Two unit tangents spanning a plane with unit normal n (world axes for axis-aligned planes)."""
    if abs(n[1]) < 0.9:  # t1 = normalise(up x n), t2 = n x t1
        t1 = np.array([n[2], 0.0, -n[0]])
    else:  # t1 = normalise(x x n)
        t1 = np.array([0.0, -n[2], n[1]])
    t1 /= math.sqrt(float(t1 @ t1))
    t2 = np.array([n[1] * t1[2] - n[2] * t1[1], n[2] * t1[0] - n[0] * t1[2], n[0] * t1[1] - n[1] * t1[0]])
    return t1, t2


class _Shader:
    """Colours (and grazing flags) of the pixels of one surface, written into planar output buffers."""

    def __init__(self, caster: "_Caster", scene: Scene, cos_limit: Optional[float]):
        self.caster = caster
        self.scene = scene
        self.cos_limit = cos_limit
        self.R = caster.R
        self.o = caster.o
        self.light = np.asarray(scene.light_position, np.float64)
        tile = scene.noise_tile if scene.noise_tile is not None else np.full((_TILE, _TILE), 0.5, np.float32)
        if tile.shape != (_TILE, _TILE):
            raise ValueError(f"Scene.noise_tile must be {_TILE}x{_TILE}, got {tile.shape}")
        self.tile_flat = np.ascontiguousarray(tile, np.float32).ravel()
        self.rgb = np.zeros((3, caster.h, caster.w), np.float32)  # planar, 0..255
        self.grazing = np.zeros((caster.h, caster.w), bool)
        self.haze = np.asarray(scene.haze_color, np.float32) * np.float32(255.0)

    def lin(self, a_world, xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
        """a . d for the gathered rays d = R (xc, yc, 1)."""
        a = self.R.T @ np.asarray(a_world, np.float64)
        return np.float32(a[0]) * xc + (np.float32(a[1]) * yc + np.float32(a[2]))

    def finish(self, sel, mat: Material, s_c, t_c, t, norm, ndotl_num, dist2, nd_abs) -> None:
        """Lambert + ambient, haze, pattern and grain; write the colours of the pixels that
        ``sel = (rect, mask within rect)`` picks."""
        sc = self.scene
        (v0, v1, u0, u1), mask = sel
        if self.cos_limit is not None:
            self.grazing[v0:v1, u0:u1][mask] = nd_abs < np.float32(self.cos_limit) * norm
        diffuse = np.maximum(ndotl_num, np.float32(0.0)) / (np.sqrt(dist2) * (dist2 + np.float32(1.0)))
        factor = np.float32(255.0 * sc.light_power) * diffuse + np.float32(255.0 * sc.ambient)
        if mat.grain_amp > 0:
            g = _tile_lookup(self.tile_flat, s_c, t_c, mat.grain_cell_m, mat.tile_offset)
            factor *= np.float32(1.0 - mat.grain_amp) + np.float32(2.0 * mat.grain_amp) * g
        hz = None
        if sc.haze_per_m > 0:
            att = np.exp(t * (norm * np.float32(-sc.haze_per_m)))
            factor *= att
            hz = np.float32(1.0) - att
        mix = _pattern_mix(mat, s_c, t_c, self.tile_flat)
        c1 = np.asarray(mat.color, np.float32)
        dc = np.asarray(mat.color2, np.float32) - c1
        for ch in range(3):
            col = c1[ch] * factor if mix is None else (c1[ch] + dc[ch] * mix) * factor
            if hz is not None:
                col += self.haze[ch] * hz
            self.rgb[ch, v0:v1, u0:u1][mask] = col

    def plane(self, sel, p: Plane, t, xc, yc, norm, sq) -> None:
        n = np.asarray(p.normal, np.float64)
        length = math.sqrt(float(n @ n))
        n, off = n / length, p.offset / length
        side = 1.0 if n @ self.o - off >= 0 else -1.0  # camera side: the visible face
        n_face = n * side
        t1, t2 = _plane_axes(n)
        s_c = np.float32(t1 @ self.o) + t * self.lin(t1, xc, yc)
        t_c = np.float32(t2 @ self.o) + t * self.lin(t2, xc, yc)
        lo = self.light - self.o
        dist2 = np.float32(lo @ lo) + t * (t * sq + self.lin(-2.0 * lo, xc, yc))
        np.maximum(dist2, np.float32(1e-12), out=dist2)
        ndotl_num = float(n_face @ self.light - side * off)  # n_face . (light - p), the same at every p
        nd_abs = np.abs(self.lin(n_face, xc, yc))
        self.finish(sel, p.material, s_c, t_c, t, norm, np.float32(ndotl_num), dist2, nd_abs)

    def solid(self, sel, kind: str, prim, t, xc, yc, norm, sq) -> None:
        R, o = self.R.astype(np.float32), self.o.astype(np.float32)
        dw = [R[i, 0] * xc + (R[i, 1] * yc + R[i, 2]) for i in range(3)]
        p = [o[i] + t * dw[i] for i in range(3)]
        if kind == "box":
            lo, hi = np.asarray(prim.lo, np.float64), np.asarray(prim.hi, np.float64)
            center, inv_half = (lo + hi) / 2, 2.0 / np.maximum(hi - lo, 1e-9)
            q = [np.abs(p[i] - np.float32(center[i])) * np.float32(inv_half[i]) for i in range(3)]
            on_x = (q[0] >= q[1]) & (q[0] >= q[2])
            on_y = ~on_x & (q[1] >= q[2])
            on_z = ~(on_x | on_y)
            # outward normal: +-1 on the face axis, the sign of (p - centre) on it
            one, zero = np.float32(1.0), np.float32(0.0)
            n = [np.where(on, np.where(p[i] > np.float32(center[i]), one, -one), zero)
                 for i, on in enumerate((on_x, on_y, on_z))]
            s_c = np.where(on_x, p[2], p[0])
            t_c = np.where(on_y, p[2], p[1])
            inside = bool(np.all(self.o > lo) and np.all(self.o < hi))
        elif kind == "sphere":
            c = np.asarray(prim.center, np.float32)
            inv_r = np.float32(1.0 / prim.radius)
            n = [(p[i] - c[i]) * inv_r for i in range(3)]
            s_c = np.arctan2(n[0], n[2]) * np.float32(prim.radius)
            t_c = p[1]
            inside = float(np.sum((self.o - np.asarray(prim.center)) ** 2)) < prim.radius ** 2
        elif kind == "cylinder_side":
            inv_r = np.float32(1.0 / prim.radius)
            zero = np.zeros_like(t)
            n = [(p[0] - np.float32(prim.center_x)) * inv_r, zero, (p[2] - np.float32(prim.center_z)) * inv_r]
            s_c = np.arctan2(n[0], n[2]) * np.float32(prim.radius)
            t_c = p[1]
            inside = math.hypot(self.o[0] - prim.center_x, self.o[2] - prim.center_z) < prim.radius
        else:  # cylinder_cap, facing the camera's side
            zero = np.zeros_like(t)
            n = [zero, np.full_like(t, np.float32(1.0 if self.o[1] > prim.y_max else -1.0)), zero]
            s_c, t_c = p[0], p[2]
            inside = False
        nd = n[0] * dw[0] + n[1] * dw[1] + n[2] * dw[2]
        if inside:  # outward normals face the camera unless it is inside the solid
            flip = np.where(nd > 0, np.float32(-1.0), np.float32(1.0))
            n = [n[i] * flip for i in range(3)]
        lv = [np.float32(self.light[i]) - p[i] for i in range(3)]
        dist2 = np.maximum(lv[0] * lv[0] + lv[1] * lv[1] + lv[2] * lv[2], np.float32(1e-12))
        ndotl_num = n[0] * lv[0] + n[1] * lv[1] + n[2] * lv[2]
        self.finish(sel, prim.material, s_c, t_c, t, norm, ndotl_num, dist2, np.abs(nd))


def render(camera: Camera, scene: Scene, max_valid_depth_m: Optional[float] = None,
           min_valid_depth_m: Optional[float] = None,
           grazing_limit_deg: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Ray-cast ``scene`` through ``camera``.

    Returns ``rgb`` uint8 [H, W, 3], ``depth_m`` float32 [H, W] z-depth in metres (0 = no hit or
    invalid), ``surface_id`` int16 [H, W] (-1 = no hit), ``intrinsics`` (fx, fy, cx, cy).
    Pixels whose z-depth exceeds ``max_valid_depth_m`` or falls below ``min_valid_depth_m``, or whose
    angle between ray and surface normal exceeds ``grazing_limit_deg``, get depth 0 (when given);
    their colour is still rendered.
    """
    caster = _Caster(camera)
    surfaces: List[Tuple[str, object]] = []  # surface id -> (kind, primitive)
    n_surfaces = len(scene.planes) + len(scene.boxes) + len(scene.spheres) + 2 * len(scene.cylinders)
    if n_surfaces >= np.iinfo(np.int16).max:
        raise ValueError(f"scene has {n_surfaces} surfaces; at most {np.iinfo(np.int16).max - 1} are supported")
    for p in scene.planes:
        caster.plane(p, len(surfaces))
        surfaces.append(("plane", p))
    for b in scene.boxes:
        caster.box(b, len(surfaces))
        surfaces.append(("box", b))
    for s in scene.spheres:
        caster.sphere(s, len(surfaces))
        surfaces.append(("sphere", s))
    for c in scene.cylinders:
        caster.cylinder(c, len(surfaces), len(surfaces) + 1)
        surfaces.append(("cylinder_side", c))
        surfaces.append(("cylinder_cap", c))

    h, w = caster.h, caster.w
    cos_limit = math.cos(math.radians(grazing_limit_deg)) if grazing_limit_deg is not None else None
    shader = _Shader(caster, scene, cos_limit)
    # Shade each surface on the pixels it won, found inside the rectangle it was cast on.
    for sid, (v0, v1, u0, u1) in caster.rects.items():
        kind, prim = surfaces[sid]
        mask = caster.ids[v0:v1, u0:u1] == sid
        if not mask.any():
            continue
        args = tuple(a[v0:v1, u0:u1][mask] for a in (caster.t, caster.xc2, caster.yc2, caster.norm, caster.sq))
        if kind == "plane":
            shader.plane(((v0, v1, u0, u1), mask), prim, *args)
        else:
            shader.solid(((v0, v1, u0, u1), mask), kind, prim, *args)

    depth_flat = caster.t.ravel()
    depth = np.where(np.isfinite(depth_flat), depth_flat, np.float32(0.0)).astype(np.float32)
    if max_valid_depth_m is not None:
        depth[depth > max_valid_depth_m] = 0.0
    if min_valid_depth_m is not None:
        depth[depth < min_valid_depth_m] = 0.0
    depth[shader.grazing.ravel()] = 0.0
    rgb = shader.rgb
    np.clip(rgb, 0.0, 255.0, out=rgb)
    rgb8 = cv2.merge(list(rgb.astype(np.uint8)))
    return {
        "rgb": rgb8,
        "depth_m": depth.reshape(h, w),
        "surface_id": caster.ids,
        "intrinsics": camera.intrinsics,
    }


# --------------------------------------------------------------------------------------------------
# Random rooms
# --------------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> Tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _random_material(rng: np.random.Generator, pattern_weights=(0.25, 0.25, 0.25, 0.25),
                     value_range=(0.3, 0.95), saturation_max: float = 0.7) -> Material:
    cum = np.cumsum(pattern_weights, dtype=np.float64)
    pattern = PATTERNS[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(PATTERNS) - 1)]
    h = float(rng.random())
    s = float(rng.uniform(0.05, saturation_max))
    v = float(rng.uniform(*value_range))
    color = _hsv(h, s, v)
    if rng.random() < 0.35:  # contrasting second colour
        color2 = _hsv(float(rng.random()), float(rng.uniform(0.05, saturation_max)), float(rng.uniform(0.2, 0.95)))
    else:  # a darker / lighter shade of the first
        k = float(rng.uniform(0.35, 0.8)) if rng.random() < 0.7 else float(rng.uniform(1.2, 1.5))
        color2 = tuple(min(c * k, 1.0) for c in color)
    period = {"plain": 0.5, "stripes": rng.uniform(0.08, 0.6), "checks": rng.uniform(0.15, 0.8),
              "blotches": rng.uniform(0.3, 1.5)}[pattern]
    return Material(
        color=color, pattern=pattern, color2=color2, period_m=float(period),
        stripe_axis=int(rng.integers(0, 3)), duty=float(rng.uniform(0.25, 0.75)),
        grain_amp=float(rng.uniform(0.03, 0.25)), grain_cell_m=float(rng.uniform(0.01, 0.08)),
        tile_offset=(int(rng.integers(0, _TILE)), int(rng.integers(0, _TILE))),
    )


def _noise_tile(rng: np.random.Generator) -> np.ndarray:
    """Smooth, wrapping [_TILE, _TILE] noise in [0, 1] (float32)."""
    white = rng.random((_TILE, _TILE), dtype=np.float32)
    pad = 8
    padded = np.pad(white, pad, mode="wrap")
    sigma = float(rng.uniform(0.7, 2.0))
    smooth = cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad]
    lo, hi = float(smooth.min()), float(smooth.max())
    return ((smooth - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _dist_point_rect(px: float, pz: float, x0: float, x1: float, z0: float, z1: float) -> float:
    dx = max(x0 - px, 0.0, px - x1)
    dz = max(z0 - pz, 0.0, pz - z1)
    return math.hypot(dx, dz)


def random_scene(seed: int, height_px: int = 240, width_px: int = 320) -> Tuple[Camera, Scene]:
    """A random furnished room and a Kinect-like camera inside it, fully determined by ``seed``.

    Room: floor y = 0, ceiling 2.4-3.2 m, walls spanning 3.5-9 m in x and z. Camera 1.0-1.8 m high,
    pitched 3-15 degrees down, facing roughly into the room. Furniture: boxes (some tables), vertical
    cylinders (some floor-to-ceiling pillars), spheres (mostly on the floor or on boxes), and thin
    boxes on walls (pictures, doors).
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    room_x = float(rng.uniform(3.5, 9.0))
    room_z = float(rng.uniform(3.5, 9.0))
    room_y = float(rng.uniform(2.4, 3.2))

    # Camera: inside the room, facing roughly towards its centre, at least ~1.8 m from the wall ahead.
    cam_h = float(rng.uniform(1.0, 1.8))
    pitch = math.radians(float(rng.uniform(3.0, 15.0)))
    fx, fy, cx, cy = kinect_intrinsics(height_px, width_px)
    half_fov = math.atan2(width_px / 2.0, fx)
    best = None
    for _ in range(12):
        px = float(rng.uniform(0.4, room_x - 0.4))
        pz = float(rng.uniform(0.4, room_z - 0.4))
        base = math.atan2(room_x / 2 - px, room_z / 2 - pz)
        yaw = base + float(rng.uniform(-1.0, 1.0))
        fwd = (math.sin(yaw), math.cos(yaw))
        ahead = min(
            ((room_x - px) / fwd[0]) if fwd[0] > 1e-6 else ((-px) / fwd[0]) if fwd[0] < -1e-6 else np.inf,
            ((room_z - pz) / fwd[1]) if fwd[1] > 1e-6 else ((-pz) / fwd[1]) if fwd[1] < -1e-6 else np.inf,
        )
        if best is None or ahead > best[3]:
            best = (px, pz, yaw, ahead)
        if ahead >= 1.8:
            break
    px, pz, yaw, ahead = best
    camera = Camera(height_px, width_px, fx, fy, cx, cy, (px, cam_h, pz), yaw, pitch)

    # Room surfaces (normals pointing into the room).
    floor_mat = _random_material(rng, (0.15, 0.35, 0.3, 0.2), value_range=(0.25, 0.8))
    ceil_mat = _random_material(rng, (0.7, 0.1, 0.05, 0.15), value_range=(0.7, 0.95), saturation_max=0.15)
    wall_mats = ([_random_material(rng, (0.4, 0.25, 0.05, 0.3), value_range=(0.45, 0.95), saturation_max=0.4)] * 4
                 if rng.random() < 0.5 else
                 [_random_material(rng, (0.4, 0.25, 0.05, 0.3), value_range=(0.45, 0.95), saturation_max=0.4)
                  for _ in range(4)])
    planes = [
        Plane((0.0, 1.0, 0.0), 0.0, floor_mat),
        Plane((0.0, -1.0, 0.0), -room_y, ceil_mat),
        Plane((1.0, 0.0, 0.0), 0.0, wall_mats[0]),
        Plane((-1.0, 0.0, 0.0), -room_x, wall_mats[1]),
        Plane((0.0, 0.0, 1.0), 0.0, wall_mats[2]),
        Plane((0.0, 0.0, -1.0), -room_z, wall_mats[3]),
    ]

    def place(half_x: float, half_z: float, against_wall: bool = False) -> Optional[Tuple[float, float]]:
        """Footprint centre inside the room, >= 0.8 m from the camera; mostly in the camera's view."""
        for _ in range(20):
            if not against_wall and rng.random() < 0.7:
                ang = yaw + float(rng.uniform(-0.9, 0.9)) * half_fov
                dist = float(rng.uniform(1.6, max(1.7, min(ahead - 0.2, 8.0))))
                x, z = px + dist * math.sin(ang), pz + dist * math.cos(ang)
            else:
                x, z = float(rng.uniform(0, room_x)), float(rng.uniform(0, room_z))
            if against_wall:  # push it to the nearest wall
                gaps = [x - half_x, room_x - x - half_x, z - half_z, room_z - z - half_z]
                k = int(np.argmin(gaps))
                x = half_x if k == 0 else room_x - half_x if k == 1 else x
                z = half_z if k == 2 else room_z - half_z if k == 3 else z
            x = min(max(x, half_x + 0.01), room_x - half_x - 0.01)
            z = min(max(z, half_z + 0.01), room_z - half_z - 0.01)
            if _dist_point_rect(px, pz, x - half_x, x + half_x, z - half_z, z + half_z) > 0.8:
                return x, z
        return None

    boxes: List[Box] = []
    box_tops: List[Tuple[float, float, float]] = []
    for _ in range(int(rng.integers(2, 6))):
        hx, hz = float(rng.uniform(0.15, min(0.7, room_x / 5))), float(rng.uniform(0.15, min(0.7, room_z / 5)))
        tall = rng.random() < 0.3
        at = place(hx, hz, against_wall=tall)
        if at is None:
            continue
        x, z = at
        mat = _random_material(rng)
        if not tall and rng.random() < 0.3:  # table: top slab on four legs
            top = float(rng.uniform(0.6, 0.9))
            thick = float(rng.uniform(0.03, 0.08))
            leg = float(rng.uniform(0.03, 0.06))
            boxes.append(Box((x - hx, top - thick, z - hz), (x + hx, top, z + hz), mat))
            for sx in (-1, 1):
                for sz in (-1, 1):
                    lx, lz = x + sx * (hx - leg), z + sz * (hz - leg)
                    boxes.append(Box((lx - leg, 0.0, lz - leg), (lx + leg, top - thick, lz + leg), mat))
            box_tops.append((x, top, z))
        else:
            height = float(rng.uniform(1.2, min(2.2, room_y - 0.2))) if tall else float(rng.uniform(0.25, 1.1))
            boxes.append(Box((x - hx, 0.0, z - hz), (x + hx, height, z + hz), mat))
            box_tops.append((x, height, z))
    for _ in range(int(rng.integers(0, 3))):  # pictures and doors on walls
        wall = int(rng.integers(0, 4))
        door = rng.random() < 0.4
        half_w = float(rng.uniform(0.4, 0.5)) if door else float(rng.uniform(0.2, 0.7))
        y0, y1 = (0.0, float(rng.uniform(1.95, 2.15))) if door else (float(rng.uniform(0.9, 1.4)), 0.0)
        if not door:
            y1 = min(y0 + float(rng.uniform(0.3, 1.0)), room_y - 0.1)
        depth = float(rng.uniform(0.02, 0.05))
        mat = _random_material(rng, (0.3, 0.2, 0.1, 0.4))
        along = room_x if wall < 2 else room_z
        c = float(rng.uniform(half_w + 0.1, max(half_w + 0.11, along - half_w - 0.1)))
        if wall < 2:  # wall z = 0 or z = room_z
            z0, z1 = (0.0, depth) if wall == 0 else (room_z - depth, room_z)
            boxes.append(Box((c - half_w, y0, z0), (c + half_w, y1, z1), mat))
        else:  # wall x = 0 or x = room_x
            x0, x1 = (0.0, depth) if wall == 2 else (room_x - depth, room_x)
            boxes.append(Box((x0, y0, c - half_w), (x1, y1, c + half_w), mat))

    cylinders: List[Cylinder] = []
    for _ in range(int(rng.integers(1, 4))):
        pillar = rng.random() < 0.2
        r = float(rng.uniform(0.12, 0.3)) if pillar else float(rng.uniform(0.08, 0.35))
        at = place(r, r)
        if at is None:
            continue
        top = room_y if pillar else float(rng.uniform(0.3, min(2.0, room_y - 0.2)))
        cylinders.append(Cylinder(at[0], at[1], r, 0.0, top, _random_material(rng)))

    spheres: List[Sphere] = []
    for _ in range(int(rng.integers(1, 4))):
        r = float(rng.uniform(0.1, 0.4))
        u = rng.random()
        if u < 0.25 and box_tops:
            x, top, z = box_tops[int(rng.integers(0, len(box_tops)))]
            if top + 2 * r < room_y - 0.05 and math.hypot(x - px, z - pz) > r + 0.6:
                spheres.append(Sphere((x, top + r, z), r, _random_material(rng)))
                continue
        at = place(r, r)
        if at is None:
            continue
        y = r if u < 0.85 else float(rng.uniform(r + 0.3, max(r + 0.31, room_y - r - 0.2)))
        spheres.append(Sphere((at[0], y, at[1]), r, _random_material(rng)))

    light = (float(rng.uniform(0.2, 0.8)) * room_x, room_y - float(rng.uniform(0.1, 0.4)),
             float(rng.uniform(0.2, 0.8)) * room_z)
    scene = Scene(
        planes=planes, boxes=boxes, cylinders=cylinders, spheres=spheres,
        light_position=light, light_power=float(rng.uniform(5.0, 12.0)), ambient=float(rng.uniform(0.15, 0.35)),
        haze_per_m=float(rng.uniform(0.01, 0.07)), haze_color=tuple(float(v) for v in rng.uniform(0.25, 0.6, 3)),
        noise_tile=_noise_tile(rng),
    )
    return camera, scene


def _blob_mask(rng: np.random.Generator, height_px: int, width_px: int) -> np.ndarray:
    """Kinect-like dropouts: a few random (ragged) ellipses; True = invalid."""
    mask = np.zeros((height_px, width_px), bool)
    for _ in range(int(rng.integers(1, 5))):
        a = float(rng.uniform(0.015, 0.07)) * width_px + 1.0
        b = float(rng.uniform(0.015, 0.07)) * height_px + 1.0
        uc, vc = float(rng.uniform(0, width_px)), float(rng.uniform(0, height_px))
        wob_f, wob_a, wob_p = float(rng.uniform(2, 6)), float(rng.uniform(0.0, 0.2)), float(rng.uniform(0, 2 * math.pi))
        u0, u1 = max(int(uc - a * 1.3), 0), min(int(uc + a * 1.3) + 1, width_px)
        v0, v1 = max(int(vc - b * 1.3), 0), min(int(vc + b * 1.3) + 1, height_px)
        if u0 >= u1 or v0 >= v1:
            continue
        du = ((np.arange(u0, u1, dtype=np.float32) - uc) / a)[None, :]
        dv = ((np.arange(v0, v1, dtype=np.float32) - vc) / b)[:, None]
        r2 = du * du + dv * dv
        ang = np.arctan2(dv, du)
        mask[v0:v1, u0:u1] |= r2 < (1.0 + wob_a * np.sin(wob_f * ang + wob_p)) ** 2
    return mask


def render_scene(seed: int, height: int = 240, width: int = 320) -> Dict[str, object]:
    """Render the random room of ``seed`` (see :func:`random_scene`) with Kinect-like invalid pixels.

    Returns ``rgb`` uint8 [H, W, 3], ``depth_m`` float32 [H, W] (z-depth, metres, 0 = invalid: no
    return beyond 9.5 m or closer than 0.4 m, grazing angles beyond 80 degrees, a few random dropout
    blobs) and ``intrinsics`` (fx, fy, cx, cy) in pixels of this image size.
    """
    if height < 8 or width < 8:
        raise ValueError(f"synthetic image size must be at least 8x8, got {height}x{width} (HxW)")
    camera, scene = random_scene(seed, height, width)
    out = render(camera, scene, max_valid_depth_m=MAX_VALID_DEPTH_M, min_valid_depth_m=MIN_VALID_DEPTH_M,
                 grazing_limit_deg=GRAZING_LIMIT_DEG)
    blob_rng = np.random.default_rng([seed, 1])
    depth = out["depth_m"]
    depth[_blob_mask(blob_rng, height, width)] = 0.0
    return {"rgb": out["rgb"], "depth_m": depth, "intrinsics": out["intrinsics"]}


# --------------------------------------------------------------------------------------------------
# Dataset writing and caching
# --------------------------------------------------------------------------------------------------

SPLITS = ("train", "val")
DEPTH_SCALE = 1000.0
DEPTH_RANGE_M = (0.0, 10.0)


def sample_seed(base_seed: int, split: str, index: int) -> int:
    """Seed of sample ``index`` of ``split``: distinct for every (base_seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if base_seed < 0 or not 0 <= index < 2 ** 32:
        raise ValueError(f"need base seed >= 0 and 0 <= index < 2**32, got {base_seed}, {index}")
    return (base_seed * len(SPLITS) + SPLITS.index(split)) * 2 ** 32 + index


def source_description(cfg) -> dict:
    """The manifest ``source``: the SyntheticConfig fields plus the generator and its version."""
    return {**dataclasses.asdict(cfg), "generator": "tfdepth.data.synthetic", "generator_version": GENERATOR_VERSION}


def _check_config(cfg) -> None:
    problems = []
    if cfg.num_train < 1:
        problems.append(f"num_train={cfg.num_train} (need >= 1)")
    if cfg.num_val < 0:
        problems.append(f"num_val={cfg.num_val} (need >= 0)")
    if cfg.height < 8 or cfg.width < 8:
        problems.append(f"height x width = {cfg.height}x{cfg.width} (need >= 8x8)")
    if cfg.seed < 0:
        problems.append(f"seed={cfg.seed} (need >= 0)")
    if cfg.records_per_shard < 1:
        problems.append(f"records_per_shard={cfg.records_per_shard} (need >= 1)")
    if cfg.chunks < 1:
        problems.append(f"chunks={cfg.chunks} (need >= 1)")
    elif -(-cfg.num_train // max(cfg.records_per_shard, 1)) < cfg.chunks:
        problems.append(f"chunks={cfg.chunks} needs at least that many train shards, but num_train={cfg.num_train} "
                        f"at records_per_shard={cfg.records_per_shard} gives "
                        f"{-(-cfg.num_train // max(cfg.records_per_shard, 1))}")
    if problems:
        raise ValueError("data.synthetic: invalid settings: " + "; ".join(problems))


def _sample_jobs(base_seed: int, num_train: int, num_val: int) -> List[Tuple[str, int, int]]:
    """(split, index, seed) of every sample, in the order records are written: train, then val."""
    return ([("train", i, sample_seed(base_seed, "train", i)) for i in range(num_train)]
            + [("val", i, sample_seed(base_seed, "val", i)) for i in range(num_val)])


class _RenderWorkers:
    """Renders samples in ``num_workers`` child interpreters (running :func:`_worker_main`); worker k
    renders jobs k, k + K, ... and streams raw arrays back, and iteration yields them strictly in job
    order, so the output does not depend on the number of workers.

    Separate interpreters (not fork) keep TensorFlow's threads out of the children and need no
    ``if __name__ == "__main__"`` guard in the caller's script.
    """

    def __init__(self, base_seed: int, num_train: int, num_val: int, height: int, width: int, num_workers: int):
        import subprocess
        import sys

        self.shape = (height, width)
        self.num_jobs = num_train + num_val
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.procs = []
        try:
            for k in range(num_workers):
                cmd = [sys.executable, "-c", "import sys; from tfdepth.data.synthetic import _worker_main; "
                       "_worker_main(sys.argv[1:])", str(base_seed), str(num_train), str(num_val), str(height),
                       str(width), str(k), str(num_workers)]
                self.procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env))
        except BaseException:
            self.close()
            raise

    def __iter__(self):
        h, w = self.shape
        n_rgb, n_depth = h * w * 3, h * w * 4
        for j in range(self.num_jobs):
            proc = self.procs[j % len(self.procs)]
            buf = proc.stdout.read(n_rgb + n_depth)
            if buf is None or len(buf) != n_rgb + n_depth:
                code = proc.wait()
                raise RuntimeError(f"synthetic render worker {j % len(self.procs)} (pid {proc.pid}) stopped at job {j} "
                                   f"with exit code {code}; see its error output above")
            rgb = np.frombuffer(buf, np.uint8, n_rgb).reshape(h, w, 3)
            depth = np.frombuffer(buf, np.float32, h * w, offset=n_rgb).reshape(h, w)
            yield rgb, depth

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _worker_main(args: Sequence[str]) -> None:
    """Child side of :class:`_RenderWorkers`: render every ``step``-th job from ``start``, raw to stdout.

    Arguments: base_seed num_train num_val height width start step.
    """
    import sys

    base_seed, num_train, num_val, height, width, start, step = (int(a) for a in args)
    cv2.setNumThreads(1)
    # Keep the data stream to ourselves: anything else written to stdout (fd 1) goes to stderr.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for _split, _index, seed in _sample_jobs(base_seed, num_train, num_val)[start::step]:
        sample = render_scene(seed, height, width)
        out.write(np.ascontiguousarray(sample["rgb"], np.uint8).tobytes())
        out.write(np.ascontiguousarray(sample["depth_m"], np.float32).tobytes())
    out.close()


def write_synthetic_dataset(cfg, output_dir: str, num_workers: Optional[int] = None) -> dict:
    """Render ``cfg.num_train`` train and ``cfg.num_val`` val samples into TFRecord shards + manifest.

    ``cfg`` is a :class:`tfdepth.config.SyntheticConfig`. Sample ``i`` of a split is
    ``render_scene(sample_seed(cfg.seed, split, i))``; records are written in sample order, so the
    files are the same for any ``num_workers`` (default: 2 render processes when there are two or
    more CPU cores and at least 64 samples, else rendering in this process).
    Returns the manifest (also written, last, to ``output_dir/manifest.json``).
    """
    from tfdepth.data import records, shards  # TensorFlow: only when writing

    _check_config(cfg)
    os.makedirs(output_dir, exist_ok=True)
    total = cfg.num_train + cfg.num_val
    if num_workers is None:
        num_workers = 2 if (os.cpu_count() or 1) >= 2 and total >= 64 else 1
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    start = time.time()
    log.info("synthetic: rendering %d train + %d val samples at %dx%d (HxW) into %s with %d process(es)",
             cfg.num_train, cfg.num_val, cfg.height, cfg.width, output_dir, num_workers)
    intrinsics = [float(v) for v in kinect_intrinsics(cfg.height, cfg.width)]
    jobs = _sample_jobs(cfg.seed, cfg.num_train, cfg.num_val)
    workers = None
    if num_workers > 1:
        workers = _RenderWorkers(cfg.seed, cfg.num_train, cfg.num_val, cfg.height, cfg.width, num_workers)
        samples = iter(workers)
    else:
        samples = ((s["rgb"], s["depth_m"]) for s in (render_scene(seed, cfg.height, cfg.width) for _, _, seed in jobs))
    all_shards = []
    splits_json = {}
    try:
        pos = 0
        for split, count in (("train", cfg.num_train), ("val", cfg.num_val)):
            if count == 0:
                continue
            stats = shards.DepthStats(max_depth_m=DEPTH_RANGE_M[1])
            with shards.ShardWriter(output_dir, split, max_records=cfg.records_per_shard) as writer:
                for _ in range(count):
                    rgb, depth_m = next(samples)
                    job_split, index, seed = jobs[pos]
                    pos += 1
                    stats.update(depth_m)
                    writer.write(records.encode_example(rgb, depth_m, DEPTH_SCALE, intrinsics,
                                                        source=f"synthetic {job_split}[{index}] (seed {seed})"))
            split_shards = writer.shards
            if split == "train":
                shards.assign_chunks(split_shards, cfg.chunks)
                n_chunks = cfg.chunks
            else:
                for s in split_shards:
                    s.chunk = 0
                n_chunks = 1
            all_shards.extend(split_shards)
            splits_json[split] = {"count": count, "chunks": n_chunks, "depth_stats": stats.to_json()}
    finally:
        if workers is not None:
            workers.close()
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "name": "synthetic",
        "depth_scale": DEPTH_SCALE,
        "depth_range_m": list(DEPTH_RANGE_M),
        "image_size": [cfg.height, cfg.width],
        "intrinsics": intrinsics,
        "shards": [s.to_json() for s in all_shards],
        "splits": splits_json,
        "shuffle_seed": int(cfg.seed),
        "bad_samples": {"count": 0, "files": []},
        "source": source_description(cfg),
    }
    shards.write_manifest(output_dir, manifest)
    log.info("synthetic: wrote %d samples in %d shards to %s in %.1f s", total, len(all_shards), output_dir,
             time.time() - start)
    return manifest


_GENERATED_NAME = re.compile(r"^(?:(?:train|val)-\d{5}\.tfrecord|manifest\.json)(?:\.tmp)?$")


def _generated_files(output_dir: str) -> List[str]:
    """Paths of files in ``output_dir`` named like the ones this generator writes (shards, manifest, temps)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(os.path.join(output_dir, n) for n in os.listdir(output_dir) if _GENERATED_NAME.match(n))


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return e


def _cached_manifest(cfg, output_dir: str) -> Tuple[Optional[dict], str]:
    """(manifest, "") if output_dir holds a complete dataset for cfg, else (None, why not).

    Raises ValueError if output_dir holds a manifest of some other dataset (never overwritten).
    """
    path = os.path.join(output_dir, "manifest.json")
    if not os.path.isfile(path):
        return None, "no manifest.json"
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        return None, f"unreadable manifest.json ({manifest})"
    source = manifest.get("source")
    if manifest.get("name") != "synthetic" or not isinstance(source, dict) or \
            source.get("generator") != "tfdepth.data.synthetic":
        raise ValueError(f"{path}: holds dataset {manifest.get('name')!r}, not the synthetic dataset; refusing to "
                         f"overwrite it (point data.data_dir elsewhere or use data.dataset: tfrecord)")
    if source != source_description(cfg):
        changed = sorted(k for k in set(source) | set(source_description(cfg))
                         if source.get(k) != source_description(cfg).get(k))
        return None, "settings changed: " + ", ".join(
            f"{k} {source.get(k)!r} -> {source_description(cfg).get(k)!r}" for k in changed)
    for shard in manifest.get("shards", []):
        if not os.path.isfile(os.path.join(output_dir, str(shard.get("path", "")))):
            return None, f"shard {shard.get('path')} listed in the manifest is missing"
    counts = {s: sum(int(x.get("count", 0)) for x in manifest.get("shards", []) if x.get("split") == s) for s in SPLITS}
    if counts["train"] != cfg.num_train or counts["val"] != cfg.num_val:
        return None, f"manifest shard counts {counts} differ from the settings"
    return manifest, ""


def ensure_synthetic_dataset(cfg, output_dir: str, num_workers: Optional[int] = None) -> dict:
    """Return the manifest of the synthetic dataset for ``cfg`` in ``output_dir``, writing it if needed.

    A complete dataset written with the same settings and generator version is reused as is (nothing
    is rewritten). Otherwise (other settings or version, an interrupted write, missing shards) the
    files this generator writes (``train-NNNNN.tfrecord``, ``val-NNNNN.tfrecord``, ``manifest.json``
    and their ``.tmp`` temporaries) are removed and the dataset is written again; other files are
    left alone. A directory holding another dataset's manifest is an error, never overwritten.
    """
    manifest, reason = _cached_manifest(cfg, output_dir)
    if manifest is not None:
        log.info("synthetic: using the cached dataset in %s (%s)", output_dir, GENERATOR_VERSION)
        return manifest
    stale = _generated_files(output_dir)
    if stale:
        log.warning("synthetic: regenerating %s (%s); removing %d old files", output_dir, reason, len(stale))
        # the manifest first: an interrupted clean-up must not leave a manifest over missing shards
        for path in sorted(stale, key=lambda p: os.path.basename(p) != "manifest.json"):
            os.remove(path)
    else:
        log.info("synthetic: generating the dataset in %s", output_dir)
    return write_synthetic_dataset(cfg, output_dir, num_workers=num_workers)


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
