"""Shared fixtures: deterministic layer counters and global NumPy seeds for every test.

Compiling C code is most of a cold run of the suite, so tests compile C code
only where C code is what they test:

- networks run their quick-start Python versions only
  (``THEANETS_QUICK_START=inf``, also in the example scripts the suite
  starts), so results never depend on when a function switched to C. Tests
  of C code through networks use the ``c_mode`` fixture (networks compile
  their C versions first, as with ``set_quick_start(False)``);
- ``theanets.backend.function`` compiles C code (the op tests use it), except
  in the modules of :data:`FORMULA_MODULES`, which check formulas and
  gradients of PyTensor graphs and run in the ``FAST_COMPILE`` mode (NumPy
  implementations; the C ops have their own tests in ``test_ops_*.py``).
"""

import os

os.environ.setdefault('THEANETS_QUICK_START', 'inf')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import theanets  # noqa: E402


#: Test modules whose functions compile in FAST_COMPILE mode (see the module docs).
FORMULA_MODULES = {'test_activations', 'test_losses', 'test_regularizers'}


@pytest.fixture(autouse=True)
def _deterministic():
    """Reset the stand-alone layer name counter and NumPy's global seed."""
    theanets.layers.Layer._count = 0
    np.random.seed(13)
    yield


@pytest.fixture(scope='module', autouse=True)
def _formula_mode(request):
    """FAST_COMPILE mode for the modules of FORMULA_MODULES (before their other fixtures)."""
    mode = theanets.backend.get_mode()
    if request.module.__name__ in FORMULA_MODULES:
        theanets.backend.set_mode('FAST_COMPILE')
    yield
    theanets.backend.set_mode(mode)


@pytest.fixture
def c_mode():
    """Networks compile their C versions before the first call during the test."""
    before = theanets.backend.get_quick_start()
    theanets.backend.set_quick_start(False)
    yield
    theanets.backend.set_quick_start(before)
