"""Fixtures shared by the layer tests."""

import keras
import pytest


@pytest.fixture
def mixed_float16():
    """Keras' `mixed_float16` policy for one test, set back to float32 however it ends."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
