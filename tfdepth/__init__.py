"""tfdepth: supervised monocular metric depth estimation in TensorFlow / Keras 3.

Depth is float32 metres everywhere inside the library; 0 (or non-finite) marks an invalid pixel.
Images are float32 in [0, 1] unless a docstring says otherwise.
"""

__version__ = "0.1.0"
