"""tfdepth.io.colormap: the one colour convention (turbo_r: near red, far blue; invalid black), the one
range rule, and the colour bar in metres whose ends are the map's end colours."""

import numpy as np
import pytest

from tfdepth.io.colormap import (COLORMAP, colorbar_panel, colorize, colorize_depth, colormap_stops, colormap_table,
                                 depth_range)


def _bar_ends(panel):
    """(top, bottom) colours of the colour bar in a white panel: the column with most colourful pixels."""
    colourful = panel.astype(int).max(-1) - panel.astype(int).min(-1) > 30
    column = int(np.argmax(colourful.sum(0)))
    rows = np.nonzero(colourful[:, column])[0]
    return panel[rows[0], column], panel[rows[-1], column]


def test_colour_map_picture_and_bar():
    ramp = np.tile(np.linspace(1.0, 4.0, 80, dtype=np.float32), (60, 1))
    ramp[10, 10] = 0.0
    picture = colorize_depth(ramp, min_m=1.0, max_m=4.0)
    assert picture.shape[0] == 60 and picture.shape[1] > 80 and picture.dtype == np.uint8
    assert picture[10, 10].tolist() == [0, 0, 0]  # invalid is black
    assert not np.array_equal(picture[30, 0], picture[30, 79])  # near and far differ
    np.testing.assert_array_equal(colorize_depth(ramp, 1.0, 4.0, colorbar=False), picture[:, :80])
    assert (picture[:, 80:] == 255).mean() > 0.5  # the colour-bar panel is mostly white paper
    with pytest.raises(ValueError, match="max > min"):
        colorize_depth(ramp, 3.0, 2.0)

    # the convention: near is red, far is blue, the ends of the table
    near, far = picture[30, 0].astype(int), picture[30, 79].astype(int)
    assert near[0] > near[1] and near[0] > near[2], near
    assert far[2] > far[0] and far[2] > far[1], far
    assert near.tolist() == colormap_table()[0].tolist() and far.tolist() == colormap_table()[-1].tolist()
    # the bar: far at the top, near at the bottom, its end colours the map's end colours
    top, bottom = _bar_ends(picture[:, 80:])
    assert top.tolist() == far.tolist() and bottom.tolist() == near.tolist()


def test_table_is_matplotlibs_turbo_r():
    import matplotlib

    assert COLORMAP == "turbo_r"
    depth = np.random.default_rng(0).uniform(0.5, 6.0, (30, 40))
    t = np.clip((depth - 1.0) / 4.0, 0, 1)
    expected = (matplotlib.colormaps["turbo_r"](t)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(colorize(depth, 1.0, 5.0), expected)
    stops = colormap_stops(64)
    assert len(stops) == 64 and stops[0] == colormap_table()[0].tolist() and stops[-1] == colormap_table()[-1].tolist()


def test_one_range_rule():
    depth = np.linspace(0.0, 10.0, 1001).reshape(7, 143)  # the first pixel is 0 = invalid
    low, high = depth_range(depth)
    valid = depth[depth > 0]
    assert (low, high) == pytest.approx(tuple(np.percentile(valid, [1, 99])))
    assert depth_range(np.zeros((3, 3))) == (0.0, 1.0)
    assert depth_range(np.full((3, 3), 2.0)) == pytest.approx((2.0, 2.001))
    # maps compared share one range, over all their valid depths
    a, b = np.full((4, 4), 1.0), np.full((4, 4), 3.0)
    assert depth_range(a, b) == pytest.approx(tuple(np.percentile([1.0] * 16 + [3.0] * 16, [1, 99])))
    # the default range of colorize_depth is that rule
    np.testing.assert_array_equal(colorize_depth(depth, colorbar=False), colorize(depth, low, high))


def test_bar_labels_fit_small_pictures():
    for height in (24, 48, 192, 800):
        panel = colorbar_panel(height, 0.5, 80.0)
        assert panel.shape[0] == height and panel.dtype == np.uint8 and panel.shape[1] >= 20
        top, bottom = _bar_ends(panel)
        assert top.tolist() == colormap_table()[-1].tolist() and bottom.tolist() == colormap_table()[0].tolist()
