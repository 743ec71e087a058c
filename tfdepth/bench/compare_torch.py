"""The ``torch`` section (``bench --compare-torch``): tfdepth's training step against a PyTorch eager
twin of the same network on the same CPU, timed back to back in interleaved rounds.

The twin (:mod:`tfdepth.bench.torch_twin`) is translated from the Keras model's layer graph with the
Keras weights copied in, so both compute the same function with the same FLOPs
(:func:`tfdepth.models.flops.forward_flops` of the Keras model counts both). Both steps run the same
loss formula (the edge-aware loss of the U-Net recipe) and Adam with the config's learning rate and
weight decay (coupled: ``torch.optim.Adam(weight_decay=)``, decoupled: ``torch.optim.AdamW``) on the same
batch held in memory. ``ratio`` = tfdepth images/s / PyTorch images/s (> 1: tfdepth is faster).
"""

from __future__ import annotations

import math
from typing import List, Optional

from tfdepth.bench import BenchError
from tfdepth.bench.timing import RepeatedCalls, interleaved_rounds, inverted, scaled, summarize, timed
from tfdepth.bench.train import TRAIN_FLOPS_FACTOR, TrainVariant, bench_config


def _check_supported(cfg) -> None:
    terms = [(t.name, t.weight) for t in cfg.loss]
    if len(terms) != 1 or terms[0][0] != "edge_aware":
        raise BenchError(f"--compare-torch: the PyTorch twin implements the edge_aware loss (the U-Net recipe); "
                         f"this config's loss is {terms}")
    if cfg.train.optimizer.name not in ("adam", "adamw"):
        raise BenchError(f"--compare-torch: the twin trains with Adam; the config's optimizer is "
                         f"{cfg.train.optimizer.name!r}")
    if cfg.train.grad_accum_steps != 1:
        raise BenchError("--compare-torch: set train.grad_accum_steps=1 (the twin steps once per batch)")


class TorchVariant(RepeatedCalls):
    """The PyTorch twin's eager training step, warmed up like :class:`TrainVariant`."""

    def __init__(self, keras_model, cfg, image, depth, min_run_s: float):
        import torch

        from tfdepth.bench import torch_twin

        self.torch = torch
        self.batch = int(image.shape[0])
        twin, self.build_s = timed(lambda: torch_twin.build_twin(keras_model))
        opt = cfg.train.optimizer
        self.step = torch_twin.TwinTrainStep(twin, lr=float(cfg.train.phases[0].schedule.lr),
                                             weight_decay=float(opt.weight_decay), epsilon=float(opt.epsilon),
                                             weight_decay_mode=opt.weight_decay_mode)
        self.image = torch_twin.to_nchw(image)
        self.depth = torch_twin.to_nchw(depth)
        loss, self.first_step_s = timed(self.call)
        self.loss_finite = math.isfinite(loss)
        _, self.second_step_s = timed(self.call)
        self.calls_per_run = max(1, int(math.ceil(min_run_s / max(self.second_step_s, 1e-9))))
        self.runs: List[float] = []

    def call(self):
        return self.step(self.image, self.depth)

    def estimate_s(self) -> float:
        return self._estimate_s(fallback_call_s=self.second_step_s)

    def result(self, cut: bool) -> dict:
        seconds = summarize(self.runs)
        return {"images_per_s": inverted(seconds, self.batch), "step_s": seconds,
                "first_step_s": round(self.first_step_s, 3), "steps_per_run": self.calls_per_run,
                "cut_by_budget": cut, "loss_finite": self.loss_finite, "threads": self.torch.get_num_threads(),
                "torch_version": self.torch.__version__}


def bench_compare_torch(cfg, repeats: int, min_run_s: float, budget, data, log=print) -> dict:
    """Images/s of tfdepth's graph-mode float32 training step and of the PyTorch twin, and their ratio."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise BenchError("--compare-torch needs PyTorch: pip install -e '.[pth]'") from None
    _check_supported(cfg)
    image, depth = data
    graph_cfg = bench_config(cfg, jit_compile=False, mixed_precision="float32")
    log(f"torch: tfdepth graph step, batch {int(image.shape[0])}: trace + warm-up ...")
    tfd = TrainVariant("graph", graph_cfg, image, depth, min_run_s)
    twin: Optional[TorchVariant] = None
    try:
        log("torch: PyTorch twin (eager, float32): build + warm-up ...")
        twin = TorchVariant(tfd.train_step.model, graph_cfg, image, depth, min_run_s)
        log(f"torch: {repeats} interleaved rounds ...")
        cut = interleaved_rounds([tfd, twin], repeats, budget)
        ours, theirs = tfd.result(cut), twin.result(cut)
    finally:
        tfd.close()
    fwd = ours["forward_gflops_per_image"]
    for v in (ours, theirs):
        if fwd:
            v["gflops_per_s"] = scaled(v["images_per_s"], TRAIN_FLOPS_FACTOR * fwd)
    ratio = ours["images_per_s"]["median"] / theirs["images_per_s"]["median"]
    # per-round ratios: each round timed both back to back under the same load
    paired = [t / o for o, t in zip(ours["step_s"]["runs"], theirs["step_s"]["runs"])]
    log(f"torch: tfdepth {ours['images_per_s']['median']:.4g} images/s, PyTorch {theirs['images_per_s']['median']:.4g}"
        f" images/s: {ratio:.3f}x")
    return {
        "ratio": round(ratio, 4), "ratio_per_round": summarize(paired, 4),
        "tfdepth": ours, "torch": theirs, "batch_size": int(image.shape[0]),
        "input_size": [int(image.shape[1]), int(image.shape[2])], "forward_gflops_per_image": fwd,
        "model": f"{cfg.model.encoder}_{cfg.model.decoder}",
        "measurement": "tfdepth's TrainStep (graph mode, float32) and a PyTorch eager twin translated from the same "
                       "Keras layer graph with the same weights, loss formula and optimiser, on one batch held in "
                       "memory, timed in interleaved rounds",
    }
