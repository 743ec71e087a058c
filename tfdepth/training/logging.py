"""Observability of a run: console progress bar, TensorBoard, ``history.json`` and the loss curve."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfdepth.io.colormap import TABLE_SIZE, colorbar_panel, colormap_table
from tfdepth.io.files import write_json
from tfdepth.training.errors import TrainingError


def _fmt_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """One line per epoch: ``[phase chunk epoch] [====>   ] step/total loss terms lr img/s ETA``.

    Redraws in place on a terminal; elsewhere prints a line every ``every`` steps and at the end.
    """

    def __init__(self, total_steps: int, label: str, batch_size: int, every: int = 10, stream=None):
        self.total = max(total_steps, 1)
        self.label = label
        self.batch_size = batch_size
        self.every = max(every, 1)
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.first_step_time: Optional[float] = None
        self.steps_timed = 0

    def update(self, step: int, values: Dict[str, float], lr: float) -> None:
        now = time.perf_counter()
        if self.first_step_time is None:  # exclude the first step (tracing / compilation) from the rate
            self.first_step_time = now
            self.first_step = step
        done_timed = step - self.first_step
        rate = done_timed * self.batch_size / (now - self.first_step_time) if done_timed > 0 else 0.0
        if not (self.tty or step % self.every == 0 or step == self.total):
            return
        eta = (self.total - step) * self.batch_size / rate if rate > 0 else 0.0
        width = 20
        filled = int(width * step / self.total)
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + " " * (width - filled)
        terms = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        line = f"{self.label} [{bar}] {step}/{self.total} {terms} lr {lr:.2e} {rate:.1f} img/s ETA {_fmt_seconds(eta)}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if step == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def images_per_second(self, step: int) -> float:
        if self.first_step_time is None or step <= self.first_step:
            return 0.0
        return (step - self.first_step) * self.batch_size / (time.perf_counter() - self.first_step_time)


class History:
    """``history.json``: per-logging-step losses / lr and per-epoch records with phase and chunk."""

    def __init__(self, path: str):
        self.path = path
        self.data = {"steps": [], "epochs": []}
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    self.data = json.load(f)
                ok = isinstance(self.data, dict) and all(isinstance(self.data.get(k), list)
                                                         for k in ("steps", "epochs"))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                ok, reason = False, f"{type(e).__name__}: {e}"
            else:
                reason = 'expected a JSON object with "steps" and "epochs" lists'
            if not ok:
                raise TrainingError(f"{path}: unreadable training history ({reason}); move it aside to resume "
                                    "with a new history, or use a new --workdir")

    def truncate_to_step(self, global_step: int) -> None:
        """Drop records beyond ``global_step`` (written after the checkpoint a resumed run starts from)."""
        self.data["steps"] = [r for r in self.data["steps"] if r["step"] <= global_step]
        self.data["epochs"] = [r for r in self.data["epochs"] if r["end_step"] <= global_step]

    def log_step(self, record: dict) -> None:
        self.data["steps"].append(record)

    def log_epoch(self, record: dict) -> None:
        self.data["epochs"].append(record)

    def save(self) -> None:
        write_json(self.path, self.data)

    def plot(self, png_path: str) -> Optional[dict]:
        """Loss curve: the training loss per logged step (log scale); validation AbsRel on its own axis
        from 0, every point labelled with its value when there are few; a solid line where a phase
        starts, a dashed one where a chunk starts. The legend and title name only what is drawn.
        Returns ``{"title", "legend": [labels], "validations"}`` (None without logged steps)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter

        steps = self.data["steps"]
        if not steps:
            return None
        fig, ax = plt.subplots(figsize=(10, 4.5))
        x = [r["step"] for r in steps]
        handles = ax.plot(x, [r["loss"] for r in steps], lw=1, marker="." if len(x) < 30 else None,
                          label="training loss")
        drawn = set()
        prev = None
        for r in self.data["epochs"]:
            key = (r["phase"], r["chunk"])
            if prev is not None and key != prev:
                kind = "phase" if key[0] != prev[0] else "chunk"
                ax.axvline(r["start_step"], color="k", ls="-" if kind == "phase" else "--", lw=0.8)
                drawn.add(kind)
            prev = key
        if "phase" in drawn:
            handles.append(plt.Line2D([], [], color="k", ls="-", lw=0.8, label="phase starts"))
        if "chunk" in drawn:
            handles.append(plt.Line2D([], [], color="k", ls="--", lw=0.8, label="chunk starts"))
        val = [(r["end_step"], r["val"]["abs_rel"]) for r in self.data["epochs"]
               if r.get("val") and r["val"].get("abs_rel") is not None and np.isfinite(r["val"]["abs_rel"])]
        if val:
            ax2 = ax.twinx()
            vx, vy = zip(*val)
            handles += ax2.plot(vx, vy, "o-", color="tab:orange", label=f"validation AbsRel ({len(val)} "
                                f"validation{'s' if len(val) != 1 else ''})")
            ax2.set_ylim(0.0, max(vy) * 1.25)
            ax2.set_ylabel("validation AbsRel", color="tab:orange")
            if len(val) <= 12:
                for px, py in val:
                    ax2.annotate(f"{py:.3f}", (px, py), textcoords="offset points", xytext=(0, 7), ha="center",
                                 fontsize=8, color="tab:orange")
        ax.set_xlim(0, max(x + [r["end_step"] for r in self.data["epochs"]]) * 1.02 + 1)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (log scale)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.legend(handles=handles, loc="upper right", fontsize=8)
        title = "training loss" + (" and validation AbsRel" if val else " (no validation yet)")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
        plt.close(fig)
        return {"title": title, "legend": [h.get_label() for h in handles], "validations": len(val)}


def colorize_depth(depth: tf.Tensor, max_depth_m: float) -> tf.Tensor:
    """[B,H,W,1] metres -> [B,H,W,3] float in [0,1]: the colour map of :mod:`tfdepth.io.colormap` (near
    red, far blue) over the fixed range 0..``max_depth_m``, the same at every step; 0 = black."""
    table = tf.constant(colormap_table(), tf.float32) / 255.0
    t = tf.clip_by_value(tf.cast(depth[..., 0], tf.float32) / max_depth_m, 0.0, 1.0)
    index = tf.minimum(tf.cast(t * TABLE_SIZE, tf.int32), TABLE_SIZE - 1)
    return tf.where(depth > 0, tf.gather(table, index), 0.0)


def write_image_summary(writer, step: int, image, pred, gt, max_depth_m: float, max_outputs: int = 3) -> None:
    """``rgb | prediction | ground truth | colour bar (0..max_depth_m, in metres)`` panels."""
    pred = tf.image.resize(tf.cast(pred, tf.float32), tf.shape(gt)[1:3])
    bar = tf.constant(colorbar_panel(int(gt.shape[1]), 0.0, max_depth_m), tf.float32)[None] / 255.0
    bar = tf.tile(bar, [tf.shape(gt)[0], 1, 1, 1])
    panel = tf.concat([image, colorize_depth(pred, max_depth_m), colorize_depth(gt, max_depth_m), bar], axis=2)
    with writer.as_default(step=step):
        tf.summary.image("rgb | prediction | ground truth", panel, max_outputs=max_outputs)


def write_scalars(writer, step: int, scalars: Dict[str, float], prefix: str = "") -> None:
    with writer.as_default(step=step):
        for k, v in scalars.items():
            if np.isfinite(v):
                tf.summary.scalar(prefix + k, v)
