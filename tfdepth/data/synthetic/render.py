"""The ray caster and shader of the synthetic dataset, and :func:`render_scene` (a seed -> RGB-D sample).

:func:`render` ray-casts a :class:`~tfdepth.data.synthetic.scene.Scene` through a pinhole
:class:`~tfdepth.data.synthetic.scene.Camera`; every intersection is vectorised NumPy over all rays of
the object's screen-space bounding rectangle, and the nearest hit wins. :func:`render_scene` renders the
random room of a seed with Kinect-like invalid pixels. Depth is z-depth (distance along the optical
axis), not ray length; 0 marks an invalid pixel. No TensorFlow here (worker processes stay light).
"""

from __future__ import annotations

import functools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tfdepth.data.synthetic.scene import (NOISE_TILE, Box, Camera, Cylinder, Material, Plane, Scene, Sphere,
                                          random_scene)

# Kinect-like validity used by render_scene.
MAX_VALID_DEPTH_M = 9.5  # farther surfaces read as 0
MIN_VALID_DEPTH_M = 0.4  # closer surfaces read as 0
GRAZING_LIMIT_DEG = 80.0  # surfaces seen at a larger angle between ray and normal read as 0

_EPS_T = 1e-4  # smallest accepted hit distance (metres of z-depth)


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
    i = (_cells(s, cell_m) + int(offset[0])) & (NOISE_TILE - 1)
    j = (_cells(t, cell_m) + int(offset[1])) & (NOISE_TILE - 1)
    return tile_flat[(j << 6) | i] if NOISE_TILE == 64 else tile_flat[j * NOISE_TILE + i]


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
        tile = scene.noise_tile if scene.noise_tile is not None else np.full((NOISE_TILE, NOISE_TILE), 0.5, np.float32)
        if tile.shape != (NOISE_TILE, NOISE_TILE):
            raise ValueError(f"Scene.noise_tile must be {NOISE_TILE}x{NOISE_TILE}, got {tile.shape}")
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


def render_scene(seed: int, height: int = 240, width: int = 320,
                 hfov_deg: Optional[Sequence[float]] = None, haze: bool = True) -> Dict[str, object]:
    """Render the random room of ``seed`` (see :func:`random_scene`; ``hfov_deg`` = [min, max] degrees
    draws the camera's field of view, None = the Kinect camera; ``haze=False`` the same room without
    distance haze) with Kinect-like invalid pixels.

    Returns ``rgb`` uint8 [H, W, 3], ``depth_m`` float32 [H, W] (z-depth, metres, 0 = invalid: no
    return beyond 9.5 m or closer than 0.4 m, grazing angles beyond 80 degrees, a few random dropout
    blobs) and ``intrinsics`` (fx, fy, cx, cy) in pixels of this image size.
    """
    if height < 8 or width < 8:
        raise ValueError(f"synthetic image size must be at least 8x8, got {height}x{width} (HxW)")
    camera, scene = random_scene(seed, height, width, hfov_deg, haze)
    out = render(camera, scene, max_valid_depth_m=MAX_VALID_DEPTH_M, min_valid_depth_m=MIN_VALID_DEPTH_M,
                 grazing_limit_deg=GRAZING_LIMIT_DEG)
    blob_rng = np.random.default_rng([seed, 1])
    depth = out["depth_m"]
    depth[_blob_mask(blob_rng, height, width)] = 0.0
    return {"rgb": out["rgb"], "depth_m": depth, "intrinsics": out["intrinsics"]}
