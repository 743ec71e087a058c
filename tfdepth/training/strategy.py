"""``train.strategy``: the tf.distribute strategy of a run, by name, and which worker is the chief.

TensorFlow is imported inside the functions; the names a config may use are the catalogue's
``tfdepth.registries.STRATEGIES``, read without starting it. A strategy must be made before any
other TensorFlow op runs: a ``MultiWorkerMirroredStrategy`` configures the collectives of the process.
"""

from __future__ import annotations


def default_strategy():
    """The default (single-device) strategy."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def mirrored_strategy():
    """Synchronous data parallelism over this machine's devices."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def multi_worker_strategy():
    """Synchronous data parallelism over the workers of ``TF_CONFIG``."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def make_strategy(name: str):
    """The strategy called ``name`` (an entry of the catalogue's ``STRATEGIES``)."""
    from tfdepth.registries import STRATEGIES

    STRATEGIES.check(name, "train.strategy")
    return STRATEGIES.get(name)()


def is_chief(strategy) -> bool:
    """Whether this process is the chief of the run (the one that writes the workdir's files)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
