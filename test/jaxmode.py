"""A fixture for tests that compile in JAX mode: skips without jax, enables float64."""

import pytest


@pytest.fixture
def jax_mode():
    """The mode name 'JAX', with the ops' JAX twins registered and float64 enabled.

    JAX computes float64 as float32 unless ``jax_enable_x64`` is set; theanets
    itself works in float32, but the float64 tests compare to 1e-10.
    """
    jax = pytest.importorskip('jax', reason='the JAX twins need jax (pip install jax)')
    from theanets.ops.base import register_jax_twins
    register_jax_twins()
    x64 = jax.config.jax_enable_x64
    jax.config.update('jax_enable_x64', True)
    yield 'JAX'
    jax.config.update('jax_enable_x64', x64)
