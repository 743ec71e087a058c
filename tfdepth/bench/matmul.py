"""The float32 matrix-multiply yardstick: this machine's own ``tf.matmul`` rate in GFLOP/s."""

from __future__ import annotations

import math
from typing import List

from tfdepth.bench.timing import RepeatedCalls, inverted, summarize, timed


class Matmul(RepeatedCalls):
    """The float32 matrix-multiply yardstick: ``tf.matmul`` of two ``size`` x ``size`` matrices in a
    ``tf.function`` (2 size^3 FLOPs per product); a run repeats it for at least ``min_run_s``."""

    def __init__(self, size: int = 2048, min_run_s: float = 0.5):
        import tensorflow as tf

        self.size = int(size)
        a = tf.random.stateless_normal([size, size], seed=[1, 2])
        b = tf.random.stateless_normal([size, size], seed=[3, 4])

        @tf.function
        def product():
            return tf.reduce_sum(tf.matmul(a, b))  # the O(n^2) sum keeps the copy back to Python small

        self.call = lambda: product().numpy()
        _, self.first_call_s = timed(self.call)
        _, one = timed(self.call)
        self.calls_per_run = max(1, int(math.ceil(min_run_s / max(one, 1e-9))))
        self.runs: List[float] = []
        self.tensor_float_32 = bool(tf.config.experimental.tensor_float_32_execution_enabled())

    def estimate_s(self) -> float:
        return self._estimate_s(fallback_call_s=0.1)

    def result(self) -> dict:
        return {"gflops_per_s": inverted(summarize(self.runs), 2.0 * self.size ** 3 / 1e9), "size": self.size,
                "dtype": "float32", "calls_per_run": self.calls_per_run, "first_call_s": round(self.first_call_s, 4),
                "tensor_float_32": self.tensor_float_32}


def matmul_rate(size: int = 2048, repeats: int = 5, min_run_s: float = 0.5) -> dict:
    """This machine's float32 matrix-multiply rate (:class:`Matmul`), ``repeats`` runs, in GFLOP/s."""
    matmul = Matmul(size, min_run_s)
    for _ in range(repeats):
        matmul.run_once()
    return matmul.result()
