"""Procedural scenes of the synthetic dataset: primitives, materials, camera, random furnished rooms.

:class:`Scene` holds planes, axis-aligned boxes, vertical cylinders, spheres and one point light;
:class:`Camera` is a pinhole camera with a pose; :func:`random_scene` builds a random room + furniture
+ Kinect-like camera from a seed. Rendering is :mod:`tfdepth.data.synthetic.render`.

Frames and units (metres, radians):

- World: ``y`` is up, the floor of a generated room is ``y = 0``. At ``yaw = 0`` the camera looks along
  ``+z`` with ``+x`` to its right (a left-handed frame, as in Unity); positive yaw turns it from ``+z``
  towards ``+x``; positive pitch tilts it down.
- Camera: OpenCV convention, ``x`` right, ``y`` down, ``z`` forward; pixel ``(u, v)`` (column, row;
  integer pixel centres) looks along ``((u - cx) / fx, (v - cy) / fy, 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tfdepth.geometry import NYU_KINECT_INTRINSICS, NYU_KINECT_SIZE, Intrinsics

NOISE_TILE = 64  # side of the per-scene noise tile (power of two: indices wrap with & (NOISE_TILE - 1))

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
    noise_tile: Optional[np.ndarray] = None  # [NOISE_TILE, NOISE_TILE] float32 in [0, 1]; None = flat 0.5


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


def sample_intrinsics(seed: int, height_px: int, width_px: int,
                      hfov_deg: Optional[Sequence[float]] = None) -> Tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of sample ``seed``'s camera: the Kinect's (:func:`kinect_intrinsics`) when
    ``hfov_deg`` is None, else a horizontal field of view drawn uniformly from ``hfov_deg`` = [min, max]
    degrees by its own generator (``default_rng([seed, 2])``: the room of the seed does not change the
    draw), square pixels and the principal point at the centre (:meth:`tfdepth.geometry.Intrinsics.from_fov`)."""
    if hfov_deg is None:
        return kinect_intrinsics(height_px, width_px)
    low, high = float(hfov_deg[0]), float(hfov_deg[1])
    fov = low if high == low else float(np.random.default_rng([seed, 2]).uniform(low, high))
    return tuple(Intrinsics.from_fov(fov, (height_px, width_px)).as_list())


def kinect_intrinsics(height_px: int, width_px: int) -> Tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the NYU Kinect RGB camera (:data:`tfdepth.geometry.NYU_KINECT_INTRINSICS`,
    640x480) scaled to the given image size."""
    fx, fy, cx, cy = NYU_KINECT_INTRINSICS
    sx = width_px / NYU_KINECT_SIZE[0]
    sy = height_px / NYU_KINECT_SIZE[1]
    return (fx * sx, fy * sy, cx * sx, cy * sy)


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
        tile_offset=(int(rng.integers(0, NOISE_TILE)), int(rng.integers(0, NOISE_TILE))),
    )


def _noise_tile(rng: np.random.Generator) -> np.ndarray:
    """Smooth, wrapping [NOISE_TILE, NOISE_TILE] noise in [0, 1] (float32)."""
    white = rng.random((NOISE_TILE, NOISE_TILE), dtype=np.float32)
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


def random_scene(seed: int, height_px: int = 240, width_px: int = 320,
                 hfov_deg: Optional[Sequence[float]] = None, haze: bool = True) -> Tuple[Camera, Scene]:
    """A random furnished room and a Kinect-like camera inside it, fully determined by ``seed``
    (the camera's intrinsics by :func:`sample_intrinsics`: ``hfov_deg`` None = the Kinect's).
    ``haze=False``: the same room (every random draw is the same) with ``haze_per_m = 0``.

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
    fx, fy, cx, cy = sample_intrinsics(seed, height_px, width_px, hfov_deg)
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
    if not haze:  # drawn all the same, so the room is the same
        scene.haze_per_m = 0.0
    return camera, scene
