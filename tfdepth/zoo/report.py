"""``DIR/zoo.json`` and ``DIR/zoo.md`` from the finished entries of an output directory.

``zoo.json``: ``{"scale", "updated", "machine", "recipes": [entry, ...]}`` in the catalogue's order
(an entry is :func:`tfdepth.zoo.run.train_recipe`'s record). ``zoo.md``: one table, ours beside the
paper's published numbers, then the papers cited and what each recipe's CPU scale changed.
"""

from __future__ import annotations

import json
import os
import time
from typing import List, Optional

from tfdepth.errors import UserError
from tfdepth.io.files import write_json, write_text

ENTRY_FILE = "zoo_entry.json"


def check_scale(output: str, scale: str) -> None:
    """One scale per output directory: mixing cpu and paper runs in one table would mislead."""
    path = os.path.join(output, "zoo.json")
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f).get("scale")
        if previous and previous != scale:
            raise UserError(f"{path}: this directory holds a --scale {previous} zoo; use another --output for "
                            f"--scale {scale}")


def entries(output: str, order: List[str]) -> List[dict]:
    found = []
    for name in order:
        path = os.path.join(output, name, ENTRY_FILE)
        if os.path.isfile(path):
            with open(path) as f:
                found.append(json.load(f))
    return found


def _num(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: List[dict]) -> str:
    head = ("| recipe | params (M) | GFLOPs | input | steps × batch | train s | images/s | AbsRel | RMSE | δ1 "
            "| baseline AbsRel | baseline RMSE | baseline δ1 | AbsRel / baseline "
            "| paper dataset | paper AbsRel | paper RMSE | paper δ1 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for e in rows:
        paper = e.get("paper") or {}
        m, b = e["model"], e["baseline"]
        lines.append(" | ".join([
            f"| {e['recipe']}", f"{e['params'] / 1e6:.2f}", _num(e.get("forward_gflops"), 2),
            "x".join(str(s) for s in e["input_size"]), f"{e['steps']} × {e['batch_size']}",
            f"{e['train_seconds']:.0f}", _num(e.get("images_per_s"), 1),
            _num(m["abs_rel"]), _num(m["rmse"]), _num(m["d1"]),
            _num(b["abs_rel"]), _num(b["rmse"]), _num(b["d1"]), f"{e['abs_rel_ratio']:.2f}",
            paper.get("dataset") or "—", _num(paper.get("abs_rel")), _num(paper.get("rmse")),
            _num(paper.get("d1")) + " |"]))
    return "\n".join(lines)


def markdown(data: dict) -> str:
    rows = data["recipes"]
    mach = data.get("machine") or {}
    out = [f"# tfdepth zoo (--scale {data['scale']})", "",
           f"Updated {data['updated']} on {mach.get('cpu', '?')} ({mach.get('cores', '?')} cores). Ours: the "
           "validation split of the training data, each model against the constant-median baseline on the same "
           "images (protocol " + ", ".join(sorted({str(e.get('protocol')) for e in rows}) or ["—"]) + "); GFLOPs: "
           "forward, per image at the input size (— where the counter cannot see inside a layer). "
           "Paper: the numbers as printed in each paper, on its own dataset (— where it reports none): "
           "not comparable with ours, shown for reference.", "", table(rows), ""]
    out.append("Papers:")
    out.append("")
    for e in rows:
        p = e.get("paper") or {}
        where = ", ".join(x for x in [p.get("table"), f"row \"{p['row']}\"" if p.get("row") else None] if x)
        note = f" {p['note']}." if p.get("note") else ""
        out.append(f"- {e['recipe']}: {p.get('citation', '—')}" + (f" ({where})" if where else "") + "." + note)
    if data["scale"] == "cpu":
        out += ["", "What --scale cpu changes (tfdepth/zoo/recipes.yaml):", ""]
        out += [f"- {e['recipe']} (`{e['config']}`): {e['scaled']}" for e in rows]
    return "\n".join(out) + "\n"


def write(output: str, scale: str, order: List[str], machine: Optional[dict] = None) -> dict:
    data = {"scale": scale, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine,
            "recipes": entries(output, order)}
    write_json(os.path.join(output, "zoo.json"), data)
    write_text(os.path.join(output, "zoo.md"), markdown(data))
    return data
