"""The contact sheet of ``python -m tfdepth.data.inspect``: one colour range for all tiles, stated by the
header and by a colour bar in metres beside the depth row (the convention of tfdepth.io.colormap)."""

import cv2
import numpy as np
import pytest

from tfdepth.data import inspect
from tfdepth.io.colormap import colorbar_panel, colormap_table, depth_range


def _samples():
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        depth = np.tile(np.linspace(0.5 + k, 3.0 + 2 * k, 64, dtype=np.float32), (48, 1))
        depth[:4] = 0.0  # invalid rows
        out.append({"rgb": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "depth_m": depth})
    return out


def test_contact_sheet_has_a_bar_and_one_range(monkeypatch):
    samples = _samples()
    texts = []
    put_text = cv2.putText

    def recording_put_text(image, text, *args, **kwargs):
        texts.append(text)
        return put_text(image, text, *args, **kwargs)

    monkeypatch.setattr(cv2, "putText", recording_put_text)
    sheet = inspect.contact_sheet(samples, "tiny train")
    low, high = depth_range(*[s["depth_m"][s["depth_m"] > 0] for s in samples])

    bar = colorbar_panel(inspect.TILE_H, low, high)
    header = sheet.shape[0] - 2 * inspect.TILE_H
    assert 24 <= header <= 100 and sheet.shape[1:] == (3 * inspect.TILE_W + bar.shape[1], 3)
    # the bar beside the depth row is the colour bar of that range, its ends the map's end colours
    np.testing.assert_array_equal(sheet[header + inspect.TILE_H:, 3 * inspect.TILE_W:], bar)
    # the header states the range the tiles are drawn in, and the bar's end labels say the same
    header_text = " ".join(texts)
    assert f"colours: {low:.2f}-{high:.2f} m for every tile" in header_text and "near red, far blue" in header_text
    assert f"{high:.2f} m" in texts and f"{low:.2f} m" in texts
    # each tile's label is its own valid range (not the colour range), and the header says so
    for s in samples:
        valid = s["depth_m"][s["depth_m"] > 0]
        assert f"valid {valid.min():.2f}-{valid.max():.2f} m" in texts
    assert "each map's own valid range" in header_text
    # the tiles use that range: the nearest valid depth of all tiles is the first colour (and so on)
    depth_row = sheet[header + inspect.TILE_H:]
    table = colormap_table()
    nearest = depth_row[100, 0:4]  # first tile, leftmost column: 0.5 m (below the 1st percentile)
    farthest = depth_row[100, 3 * inspect.TILE_W - 4:3 * inspect.TILE_W]  # last tile, rightmost: 7 m
    assert (nearest == table[0]).all() and (farthest == table[-1]).all()
    assert (depth_row[0:8, 0:inspect.TILE_W] == 0).all()  # invalid rows are black
    assert low == pytest.approx(np.percentile(np.concatenate([s["depth_m"][s["depth_m"] > 0] for s in samples]), 1))


def test_inspect_writes_the_contact_sheet_into_a_folder_that_does_not_exist_yet(tmp_path, capsys):
    from helpers import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data", num_train=2, num_val=1, height=24, width=32)
    out = tmp_path / "not" / "yet" / "sheet.png"
    assert inspect.main([str(tmp_path / "data"), "--output", str(out), "--samples", "2"]) == 0
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert sheet is not None and sheet.shape[1] > 2 * inspect.TILE_W  # two tiles and the bar
    assert f"contact sheet (2 samples of train): {out}" in capsys.readouterr().out
