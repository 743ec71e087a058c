"""The machine a benchmark runs on: CPU model and features, GPU, TensorFlow threads, load average, and
which mixed-precision policies are worth timing on its device."""

from __future__ import annotations

import os
from typing import Dict, List, Optional


def cpu_info() -> dict:
    info = {"cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    info["cpu_features"] = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                                                            "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"))
    return info


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    info = {"tensorflow": tf.__version__, "keras": keras.__version__, **cpu_info(),
            "load_average_start": load_average(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default"}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device"] = "GPU"
        info["gpu"] = details.get("device_name", gpus[0].name)
        cc = details.get("compute_capability")
        info["gpu_compute_capability"] = list(cc) if cc else None
        info["gpu_count"] = len(gpus)
    else:
        info["device"] = "CPU"
    return info


def mixed_precision_support(machine: dict) -> Dict[str, Optional[str]]:
    """Policy -> None (try it) or the reason it is skipped on this device."""
    if machine["device"] == "GPU":
        cc = machine.get("gpu_compute_capability") or [0, 0]
        cc = tuple(cc)
        return {
            "mixed_float16": None if cc >= (7, 0) else f"GPU compute capability {cc} < 7.0: no fast float16",
            "mixed_bfloat16": None if cc >= (8, 0) else f"GPU compute capability {cc} < 8.0: no bfloat16 units",
        }
    # bfloat16 runs on any CPU (oneDNN uses AVX512_BF16 / AMX where present, else converts): try it.
    return {
        "mixed_float16": "CPU: TensorFlow has no fast float16 kernels on CPU (float16 math is emulated); "
                         "mixed_float16 is for GPUs of compute capability >= 7.0",
        "mixed_bfloat16": None,
    }
