"""Where the training step's time goes: op time by category from a ``tf.profiler`` trace, and op counts
of a traced graph."""

from __future__ import annotations

import os
import re

# Categories of TensorFlow ops in a profile of the training step, by op name (Keras layer scopes) and
# type: first match wins. "optimizer" is the update inside the step's tf.cond (finite gradients).
PROFILE_CATEGORIES = (
    ("conv", lambda name, op: "Conv" in op or "MatMul" in op),
    ("batchnorm", lambda name, op: "BatchNorm" in op or bool(re.search(
        r"(_bn|/bn\d?|batch_norm|batchnorm|moments|downsample_1)(_\d+)?(/|$)", name))),
    ("finite_check", lambda name, op: op in ("IsFinite", "All")),
    ("optimizer", lambda name, op: bool(re.match(r"(cond|adam|adamw|sgd|loss_scale_optimizer)(_\d+)?/", name,
                                                 re.IGNORECASE)) or op.startswith("ResourceApply")),
    ("loss", lambda name, op: "loss" in name.lower()),
    ("other", lambda name, op: True),
)
_PROFILER_BOOKKEEPING = ("ThreadpoolListener::", "ExecutorState::")


def profile_summary(profile_dir: str, steps: int, top: int = 15) -> dict:
    """Op time per step by category and op type from the newest ``*.xplane.pb`` under ``profile_dir``
    (the host plane's TensorFlow executor threads: on CPU, the time each op ran; summed over threads,
    so it can exceed wall time)."""
    import collections
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(profile_dir, "plugins", "profile", "*", "*.xplane.pb")), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {profile_dir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    by_type, count, by_category = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                full = names.get(event.metadata_id, "")
                if not full or full.startswith(_PROFILER_BOOKKEEPING):
                    continue
                name, _, op = full.rpartition(":")
                name = name or op
                seconds = event.duration_ps / 1e12
                by_type[op] += seconds
                count[op] += 1
                category = next(c for c, match in PROFILE_CATEGORIES if match(name, op))
                by_category[category] += seconds
    total = sum(by_type.values())
    if total <= 0:
        raise ValueError(f"{paths[-1]}: no TensorFlow op events on the host plane (a GPU run: use TensorBoard)")
    return {
        "xplane": os.path.abspath(paths[-1]), "steps": steps,
        "op_seconds_per_step": round(total / steps, 4),
        "by_category": {c: {"seconds_per_step": round(v / steps, 4), "fraction": round(v / total, 4)}
                        for c, v in by_category.most_common()},
        "top_op_types": [{"op": op, "seconds_per_step": round(v / steps, 4), "fraction": round(v / total, 4),
                          "calls_per_step": count[op] / steps} for op, v in by_type.most_common(top)],
    }


def graph_op_counts(concrete_function, kinds=("Cast", "Transpose", "IsFinite", "Conv2D", "Identity")) -> dict:
    """Op counts of a traced function's graph (before Grappler): casts and layout transposes written
    by the model or the step show up here."""
    ops = [op.type for op in concrete_function.graph.get_operations()]
    return {"total": len(ops), **{k: sum(1 for t in ops if t == k) for k in kinds}}
