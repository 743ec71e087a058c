"""The one colour convention for depth pictures.

Every depth picture tfdepth draws (the predict command's ``*_depth_color.png``, the measuring page,
the dataset contact sheet, the evaluation figures, TensorBoard images) uses:

* one colour map, :data:`COLORMAP` = matplotlib's ``turbo_r``: **near is red, far is blue**
  (:func:`colormap_table` is its 256-entry lookup table from near, index 0, to far, index 255);
* invalid depth (0, negative, non-finite) drawn black;
* one rule for the colour range (:func:`depth_range`): the 1st..99th percentile of the valid depths
  of the reference map(s), widened when that is empty; pictures meant to be compared (prediction and
  ground truth, the tiles of a contact sheet) share one range. A caller may give the range instead
  when it must stay fixed (TensorBoard: 0..the dataset's maximum depth, the same at every step);
* a colour bar in metres beside the map (:func:`colorbar_panel`): far at the top, near at the bottom,
  its ends labelled with the range.

Error maps are not depth pictures and may keep their own sequential colour map.

Only NumPy is needed at import time; OpenCV draws the bar's labels, matplotlib supplies the table.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

__all__ = ["COLORMAP", "COLORMAP_STOPS", "TABLE_SIZE", "colorbar_panel", "colorize", "colorize_depth", "colormap_stops",
           "colormap_table", "depth_range", "matplotlib_colormap", "write_depth_color"]

COLORMAP = "turbo_r"  # near = red, far = blue
COLORMAP_STOPS = 64  # samples of the map sent to the measuring page
TABLE_SIZE = 256
INVALID_RGB = (0, 0, 0)
BLOCK_ELEMENTS = 1 << 20  # pixels per row block of depth_range and colorize (bounds their temporaries)


@functools.lru_cache(maxsize=8)
def _table(size: int) -> np.ndarray:
    import matplotlib

    table = (matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, size))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    table.setflags(write=False)
    return table


def colormap_table(size: int = TABLE_SIZE) -> np.ndarray:
    """uint8 [size, 3] RGB samples of the colour map from near (index 0) to far (index size - 1).

    With the default 256 entries it is the map's own lookup table, so indexing it with
    ``min(floor(t * 256), 255)`` for t in [0, 1] gives exactly matplotlib's colours."""
    return _table(int(size))


def colormap_stops(count: int = COLORMAP_STOPS) -> list:
    """[[r, g, b], ...] uint8 samples of the colour map from near (index 0) to far (for the web page)."""
    return colormap_table(count).tolist()


def matplotlib_colormap(invalid: str = "black"):
    """The colour map as a matplotlib ``Colormap`` (masked / invalid pixels drawn ``invalid``)."""
    import matplotlib

    return matplotlib.colormaps[COLORMAP].with_extremes(bad=invalid)


def depth_range(*depth_maps: np.ndarray) -> Tuple[float, float]:
    """The colour range (low, high) in metres: the 1st..99th percentile of the valid depths (> 0 and
    finite) of all ``depth_maps`` together; their min..max when that is empty; widened by 1 mm when
    still empty; (0, 1) when there is no valid depth at all. (Only the valid values are copied, as
    float64, and partitioned in place.)"""
    maps = []
    for d in depth_maps:
        if d is None:
            continue
        d = np.asarray(d)
        if not np.issubdtype(d.dtype, np.floating) and not np.issubdtype(d.dtype, np.integer):
            d = d.astype(np.float64)
        maps.append(d.reshape(d.shape[0], -1) if d.ndim >= 2 else d.reshape(1, -1))

    def blocks():
        for d in maps:
            rows = max(1, BLOCK_ELEMENTS // max(d.shape[1], 1))
            for r0 in range(0, d.shape[0], rows):
                block = d[r0:r0 + rows]
                yield block[np.isfinite(block) & (block > 0)]

    # the valid values as float64, filled block by block (no float64 or valid-value copy of a whole map)
    valid = np.empty(sum(v.size for v in blocks()), np.float64)
    position = 0
    for v in blocks():
        valid[position:position + v.size] = v
        position += v.size
    if valid.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(valid, [1.0, 99.0], overwrite_input=True)
    if high - low < 1e-6:
        low, high = float(valid.min()), float(valid.max())
    if high - low < 1e-6:
        high = low + 1e-3
    return float(low), float(high)


def _as_map(depth_m: np.ndarray) -> np.ndarray:
    """The depth map as HxW (its own dtype; converted to float64 block by block where it is used)."""
    depth = np.asarray(depth_m)
    if not np.issubdtype(depth.dtype, np.floating) and not np.issubdtype(depth.dtype, np.integer):
        depth = depth.astype(np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth map must be HxW, got shape {np.shape(depth_m)}")
    return depth


def _resolve_range(depth: np.ndarray, min_m: Optional[float], max_m: Optional[float]) -> Tuple[float, float]:
    auto_low, auto_high = depth_range(depth) if min_m is None or max_m is None else (0.0, 1.0)
    low = auto_low if min_m is None else float(min_m)
    high = auto_high if max_m is None else float(max_m)
    if not high > low:
        raise ValueError(f"colour range must have max > min, got [{low}, {high}] m")
    return low, high


def colorize(depth_m: np.ndarray, min_m: Optional[float] = None, max_m: Optional[float] = None) -> np.ndarray:
    """Colour-mapped depth as RGB uint8 [H, W, 3] without a bar; invalid pixels black. The range
    defaults to :func:`depth_range` of this map."""
    depth = _as_map(depth_m)
    low, high = _resolve_range(depth, min_m, max_m)
    return _colorize_into(np.empty(depth.shape + (3,), np.uint8), depth, low, high)


def _colorize_into(out: np.ndarray, depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fills ``out`` (uint8 [H, W, 3]) with the colours of ``depth`` [H, W] in [low, high], in blocks of
    rows (float64 per block: the same numbers as on the whole map, without its float64 copy)."""
    table = colormap_table()
    rows = max(1, BLOCK_ELEMENTS // max(depth.shape[1], 1))
    for r0 in range(0, depth.shape[0], rows):
        block = np.asarray(depth[r0:r0 + rows], dtype=np.float64)
        valid = np.isfinite(block) & (block > 0)
        t = np.clip((np.where(valid, block, low) - low) / (high - low), 0.0, 1.0)
        index = np.minimum((t * TABLE_SIZE).astype(np.int64), TABLE_SIZE - 1)
        rgb = table[index]
        rgb[~valid] = INVALID_RGB
        out[r0:r0 + rows] = rgb
    return out


def colorbar_panel(height: int, min_m: float, max_m: float) -> np.ndarray:
    """White panel RGB uint8 [height, width, 3]: a vertical colour bar (far at the top, near at the
    bottom) with tick labels in metres, the ends labelled ``min_m`` and ``max_m``."""
    import cv2

    low, high = float(min_m), float(max_m)
    height = int(height)
    font_scale = float(np.clip(height / 480.0, 0.5, 1.2)) * 0.6  # at least 0.3: ~7 px labels
    thickness = 1 if height < 720 else 2
    label_width = cv2.getTextSize("88.88 m", cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][0]
    bar_width = max(6, height // 24)
    margin = max(3, height // 60)
    panel = np.full((height, margin + bar_width + margin + label_width + margin, 3), 255, np.uint8)
    top, bottom = margin, height - margin
    span = max(bottom - top, 1)
    t = 1.0 - np.arange(span) / max(span - 1, 1)  # top = far (high), bottom = near (low)
    column = colormap_table()[np.minimum((t * TABLE_SIZE).astype(np.int64), TABLE_SIZE - 1)]
    panel[top:bottom, margin:margin + bar_width] = column[:, None, :]
    ticks = 5 if height >= 120 else (3 if height >= 48 else 2)
    for i in range(ticks):
        frac = i / (ticks - 1)
        y = int(round(top + frac * (span - 1)))
        value = high - frac * (high - low)
        text = f"{value:.2f} m" if high - low < 10 else f"{value:.1f} m"
        (_, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        y_text = int(np.clip(y + text_h // 2, text_h, height - 1))
        cv2.line(panel, (margin + bar_width, y), (margin + bar_width + margin // 2 + 1, y), (0, 0, 0), 1)
        cv2.putText(panel, text, (2 * margin + bar_width, y_text), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
    return panel


def colorize_depth(depth_m: np.ndarray, min_m: Optional[float] = None, max_m: Optional[float] = None,
                   colorbar: bool = True) -> np.ndarray:
    """Colour-mapped depth as RGB uint8 [H, W (+ bar), 3]; invalid pixels black.

    The range defaults to :func:`depth_range` of this map (1st..99th percentile of the valid depths).
    Near is red, far is blue. With ``colorbar`` (the default) a panel on the right shows the colour
    scale with ticks in metres.
    """
    depth = _as_map(depth_m)
    low, high = _resolve_range(depth, min_m, max_m)
    if not colorbar:
        return colorize(depth, low, high)
    panel = colorbar_panel(depth.shape[0], low, high)
    picture = np.empty((depth.shape[0], depth.shape[1] + panel.shape[1], 3), np.uint8)
    picture[:, depth.shape[1]:] = panel
    _colorize_into(picture[:, :depth.shape[1]], depth, low, high)  # no separate map + concatenation
    return picture


def write_depth_color(path: str, depth_m: np.ndarray, **kwargs) -> np.ndarray:
    """Write :func:`colorize_depth` (with its bar) as a PNG, atomically; returns the picture."""
    from tfdepth.io.images import write_rgb

    picture = colorize_depth(depth_m, **kwargs)
    write_rgb(path, picture)
    return picture
