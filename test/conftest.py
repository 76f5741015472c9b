"""Shared fixtures: deterministic layer counters and global NumPy seeds for every test."""

import numpy as np
import pytest

import theanets


@pytest.fixture(autouse=True)
def _deterministic():
    """Reset the stand-alone layer name counter and NumPy's global seed."""
    theanets.layers.Layer._count = 0
    np.random.seed(13)
    yield
