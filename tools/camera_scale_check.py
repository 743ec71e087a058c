"""Does a trained model read each picture's depth scale? The scale diagnosis of docs/camera.md.

    python tools/camera_scale_check.py WORKDIR --data-root DIR --fov 40 70 110 [--set KEY=VALUE ...]

For each field of view F, the model of WORKDIR runs on the 96 held-out synthetic rooms of
``DIR/test_fovF`` (``data.synthetic``: seed 1, ``hfov_deg: [F, F]``, one train + 96 val samples, as the
``evaluate`` commands of docs/camera.md write them; ``--set`` adds overrides such as
``data.synthetic.haze=false``). Valid ground-truth pixels (> 1 mm) of each image give:

* ``pred/gt``: the per-image median of prediction / ground truth in metres (canonical models: the
  network output times f / f_c); the median over images and the 10th-90th percentiles. 1 is right.
* ``output`` and ``target``: the geometric mean over images of the per-image median of the network's raw
  output and of what it was trained to output (the depth; canonical: depth x f_c / f).
* ``slope``: least squares of log(per-image median output) on log(per-image median target) over the
  images: 1 = the model reads every picture's scale, 0 = it predicts the same scale for every picture.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--data-root", required=True, help="folder holding test_fov<F> synthetic datasets")
    parser.add_argument("--fov", type=float, nargs="+", required=True, help="test fields of view, degrees")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tfdepth.config import load_config
    from tfdepth.data import pipeline
    from tfdepth.geometry import canonical_depth_scale
    from tfdepth.training.checkpoint import find_config_for, load_trained_model

    model = None
    for fov in args.fov:
        data_dir = os.path.join(args.data_root, f"test_fov{fov:g}")
        cfg = load_config(find_config_for(args.workdir), overrides=[
            f"data.data_dir={data_dir}", f"data.synthetic.hfov_deg=[{fov},{fov}]",
            "data.synthetic.seed=1", "data.synthetic.num_train=1", "data.synthetic.num_val=96", *args.set])
        if model is None:
            model, _ = load_trained_model(args.workdir, cfg)
        f_c = pipeline.canonical_focal(cfg)
        ratios, outputs, targets = [], [], []
        for images, gt, focal in pipeline.build_eval_dataset(cfg.data, cfg.eval, "val", with_focal=True):
            pred = model(images, training=False)
            pred = (pred["depth"] if isinstance(pred, dict) else pred).numpy()[..., 0]
            gt = gt.numpy()[..., 0]
            for b in range(gt.shape[0]):
                valid = gt[b] > 1e-3
                scale = float(canonical_depth_scale(float(focal[b]), f_c)) if f_c else 1.0
                out, g = pred[b][valid], gt[b][valid]
                ratios.append(np.median(out * scale / g))
                outputs.append(np.log(np.median(out)))
                targets.append(np.log(np.median(g / scale)))
        outputs, targets = np.array(outputs), np.array(targets)
        slope = float(np.polyfit(targets, outputs, 1)[0])
        p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
        print(f"{fov:g} deg ({len(ratios)} images): pred/gt {p50:.2f} (p10-p90 {p10:.2f}-{p90:.2f}); "
              f"output {np.exp(outputs.mean()):.2f} m, target {np.exp(targets.mean()):.2f} m; slope {slope:.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
