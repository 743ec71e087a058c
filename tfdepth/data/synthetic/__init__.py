"""The embedded procedural RGB-D dataset: ray-cast indoor-like rooms with exact metric depth.

- :mod:`.scene`: primitives (:class:`Plane`, :class:`Box`, :class:`Cylinder`, :class:`Sphere`), materials,
  the pinhole :class:`Camera` (Kinect intrinsics), :class:`Scene`, and :func:`random_scene` (a seeded
  random furnished room); the frames and units are documented there.
- :mod:`.render`: :func:`render` (vectorised NumPy ray caster + shader) and :func:`render_scene` (the
  random room of a seed with Kinect-like invalid pixels).
- :mod:`.source`: :class:`SyntheticSource`, the dataset as a source like every converter format
  (samples of :func:`sample_seed`, split names, loading).
- :mod:`.generate`: :func:`write_synthetic_dataset` (render worker pool -> the one dataset writer) and
  :func:`ensure_synthetic_dataset` (write once, cached by settings and generator version).

``python -m tfdepth.data.synthetic`` times :func:`render_scene`. TensorFlow is only imported when a
dataset is written, so rendering (and worker processes) stay light.
"""

from tfdepth.data.synthetic.generate import ensure_synthetic_dataset, write_synthetic_dataset
from tfdepth.data.synthetic.render import (GRAZING_LIMIT_DEG, MAX_VALID_DEPTH_M, MIN_VALID_DEPTH_M, render,
                                           render_scene)
from tfdepth.data.synthetic.scene import (PATTERNS, Box, Camera, Cylinder, Material, Plane, Scene, Sphere,
                                          kinect_intrinsics, random_scene)
from tfdepth.data.synthetic.source import (DEPTH_RANGE_M, DEPTH_SCALE, GENERATOR_VERSION, SPLITS, SyntheticSource,
                                           sample_seed, source_description)

__all__ = [
    "Box", "Camera", "Cylinder", "Material", "Plane", "Scene", "Sphere", "PATTERNS", "kinect_intrinsics",
    "random_scene", "render", "render_scene", "MAX_VALID_DEPTH_M", "MIN_VALID_DEPTH_M", "GRAZING_LIMIT_DEG",
    "SyntheticSource", "sample_seed", "source_description", "GENERATOR_VERSION", "SPLITS", "DEPTH_SCALE",
    "DEPTH_RANGE_M", "write_synthetic_dataset", "ensure_synthetic_dataset",
]
