"""The figure and table of docs/camera.md: AbsRel and delta1 per field of view, camera none vs canonical.

    python tools/camera_fov_figure.py OUT.png none:DIR canonical:DIR ["canonical + focal range:DIR" ...]

Each DIR holds ``fov<DEG>.json`` files written by ``python -m tfdepth.evaluate --output`` (one per test
field of view); LABEL:DIR names a bar series (the label is the text before the last colon that is
followed by a directory). Prints the Markdown table and writes the bar chart.
"""

from __future__ import annotations

import json
import os
import re
import sys


def read_runs(specs):
    runs = {}
    for spec in specs:
        label, directory = spec.rsplit(":", 1)
        results = {}
        for name in os.listdir(directory):
            match = re.fullmatch(r"fov(\d+(?:\.\d+)?)\.json", name)
            if match:
                with open(os.path.join(directory, name)) as f:
                    overall = json.load(f)["overall"]
                results[float(match.group(1))] = (overall["abs_rel"], overall["d1"])
        runs[label] = results
    return runs


def main(argv) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out, specs = argv[0], argv[1:]
    runs = read_runs(specs)
    fovs = sorted({fov for results in runs.values() for fov in results})
    print("| test hfov | " + " | ".join(f"{label} AbsRel | {label} δ1" for label in runs) + " |")
    print("|---" * (1 + 2 * len(runs)) + "|")
    for fov in fovs:
        cells = []
        for results in runs.values():
            abs_rel, d1 = results.get(fov, (float("nan"), float("nan")))
            cells += [f"{abs_rel:.3f}", f"{d1:.3f}"]
        print(f"| {fov:g}° | " + " | ".join(cells) + " |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(runs)
    x = np.arange(len(fovs))
    for k, (label, results) in enumerate(runs.items()):
        for ax, index in zip(axes, (0, 1)):
            values = [results.get(fov, (np.nan, np.nan))[index] for fov in fovs]
            ax.bar(x + (k - (len(runs) - 1) / 2) * width, values, width, label=label if " " in label else f"camera: {label}")
    for ax, title in zip(axes, ("AbsRel (lower is better)", "δ1 (higher is better)")):
        ax.set_xticks(x, [f"{fov:g}°" for fov in fovs])
        ax.set_xlabel("horizontal field of view of the test pictures (training: 55-85°)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, 1)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
