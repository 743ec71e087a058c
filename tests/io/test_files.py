"""tfdepth.io.files: atomic writes; a failure mid-write leaves the old file and no temporary behind."""

import json
import os

import pytest

from tfdepth.io import files


def test_write_json_text_bytes(tmp_path):
    path = tmp_path / "new" / "a.json"  # the folder is created
    assert files.write_json(str(path), {"x": [1, 2.5]}) == str(path)
    assert json.loads(path.read_text()) == {"x": [1, 2.5]}
    files.write_text(str(tmp_path / "b.txt"), "héllo\n")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    files.write_bytes(str(tmp_path / "c.bin"), b"\x00\x01", fsync=True)
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "c.bin", "new"]
    with pytest.raises(ValueError):
        files.write_json(str(path), {"x": float("nan")}, allow_nan=False)
    assert json.loads(path.read_text()) == {"x": [1, 2.5]}  # not serialisable: the old file stays


def test_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    files.write_json(str(path), {"version": 1})
    written = []

    def failing_replace(src, dst):
        written.append(open(src).read())
        raise OSError("disk gone")  # the process dies between writing the temporary and renaming it

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        files.write_json(str(path), {"version": 2})
    monkeypatch.undo()
    assert json.loads(written[0]) == {"version": 2}  # the new content went to a temporary
    assert json.loads(path.read_text()) == {"version": 1}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # and the temporary is gone


def test_temporaries_are_unique_per_process_and_recognised(tmp_path):
    path = str(tmp_path / "manifest.json")
    a, b = files.temp_path(path), files.temp_path(path)
    assert a != b and a.startswith(path + f".{os.getpid()}.") and a.endswith(".tmp")
    open(a, "w").close()
    open(str(tmp_path / "manifest.json.tmp.bak"), "w").close()
    assert files.stale_temps(path) == [a]
