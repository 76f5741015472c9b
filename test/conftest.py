"""Shared fixtures: deterministic layer counters and global NumPy seeds for every test.

The suite runs networks on their quick-start Python versions only
(``THEANETS_QUICK_START=inf``, also for the example scripts it starts), so
most tests compile no C code and results never depend on when a function
switched to C. Tests of C code use the ``c_mode`` fixture (networks compile
their C versions first, as with ``set_quick_start(False)``) or compile with
``theanets.backend.function``, which always uses the C mode.
"""

import os

os.environ.setdefault('THEANETS_QUICK_START', 'inf')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import theanets  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic():
    """Reset the stand-alone layer name counter and NumPy's global seed."""
    theanets.layers.Layer._count = 0
    np.random.seed(13)
    yield


@pytest.fixture
def c_mode():
    """Networks compile their C versions before the first call during the test."""
    before = theanets.backend.get_quick_start()
    theanets.backend.set_quick_start(False)
    yield
    theanets.backend.set_quick_start(before)
