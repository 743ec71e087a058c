"""Shared test fixtures: quiet TensorFlow, tiny RGB-D datasets written with the record schema."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from helpers import REPO_ROOT, SHARED_DATA, write_tiny_dataset  # noqa: E402,F401


@pytest.fixture
def tiny_dataset(tmp_path):
    directory = tmp_path / "tiny"
    manifest, samples = write_tiny_dataset(directory)
    return directory, manifest, samples


@pytest.fixture(autouse=True)
def float32_policy():
    """Trainers set the global Keras precision policy; every test starts and ends in float32."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
