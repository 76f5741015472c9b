"""PyTensor set-up: float32, C mode, BLAS, and compiling each function once."""

import os
import subprocess
import sys

import numpy as np
import pytensor

import theanets
from theanets import backend


def test_floatx_is_float32_and_mode_is_c():
    assert pytensor.config.floatX == 'float32'
    assert backend.get_mode() == os.environ.get('THEANETS_MODE', 'CVM')


def test_blas_is_linked_without_warning():
    code = ('import warnings, logging\n'
            'import theanets, pytensor\n'
            'print(repr(pytensor.config.blas__ldflags))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=dict(os.environ, PYTENSOR_FLAGS=''), check=True)
    assert 'openblas' in out.stdout
    assert 'BLAS' not in out.stderr


# prints OPENBLAS_THREAD_TIMEOUT as it was when OpenBLAS (scipy_openblas32) loaded
_TIMEOUT_AT_LOAD = """
import builtins, os
real, seen = builtins.__import__, []
def spy(name, *args, **kwargs):
    if name.startswith('scipy_openblas32') and not seen:
        seen.append(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))
    return real(name, *args, **kwargs)
builtins.__import__ = spy
import theanets
print(seen)
"""


def test_openblas_thread_timeout_is_set_before_openblas_loads():
    env = {k: v for k, v in os.environ.items() if k != 'OPENBLAS_THREAD_TIMEOUT'}
    env['PYTENSOR_FLAGS'] = ''   # theanets then imports scipy_openblas32 to find its flags
    out = subprocess.run([sys.executable, '-c', _TIMEOUT_AT_LOAD], capture_output=True,
                         text=True, env=env, check=True)
    assert out.stdout.split()[-1] == "['16']"
    out = subprocess.run([sys.executable, '-c', _TIMEOUT_AT_LOAD], capture_output=True,
                         text=True, env=dict(env, OPENBLAS_THREAD_TIMEOUT='8'), check=True)
    assert out.stdout.split()[-1] == "['8']"     # the user's setting wins


def test_libgomp_spin_is_bounded_unless_the_user_sets_it():
    code = 'import os, theanets; print(os.environ["GOMP_SPINCOUNT"])'
    env = {k: v for k, v in os.environ.items() if k != 'GOMP_SPINCOUNT'}
    for given, expected in ((None, '10000'), ('500', '500')):
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             env=dict(env, **({'GOMP_SPINCOUNT': given} if given else {})),
                             check=True)
        assert out.stdout.split()[-1] == expected


def test_set_mode_is_used_for_new_functions(monkeypatch):
    modes = []
    real = pytensor.function

    def spy(*args, **kwargs):
        modes.append(kwargs.get('mode'))
        return real(*args, **kwargs)

    monkeypatch.setattr(backend.pytensor, 'function', spy)
    before = backend.get_mode()
    try:
        backend.set_mode('FAST_COMPILE')
        net = theanets.Regressor([2, 3, 1])
        assert net.predict(np.zeros((2, 2), 'f')).shape == (2, 1)
    finally:
        backend.set_mode(before)
    assert len(modes) == 1
    chosen = pytensor.compile.mode.get_mode('FAST_COMPILE')
    assert type(modes[0].linker) is type(chosen.linker)
    assert modes[0].linker.use_cloop == chosen.linker.use_cloop  # python VM, not CVM
    assert 'fast_compile' in modes[0].provided_optimizer.include


def test_each_function_compiles_once():
    rng = np.random.RandomState(0)
    x = rng.randn(40, 3).astype('f')
    y = rng.randint(2, size=40).astype('i')
    net = theanets.Classifier([3, 4, 2])
    net.train([x, y], algo='sgd', learning_rate=1e-2, max_updates=2)
    net.predict(x)
    net.predict_proba(x)
    count = backend.compile_count()
    # same configuration again: train, itertrain with other numeric settings, predict
    net.train([x, y], algo='sgd', learning_rate=1e-3, momentum=0, max_updates=2)
    for _ in zip(range(2), net.itertrain([x, y], algo='sgd', learning_rate=5e-3,
                                         max_updates=2)):
        pass
    net.predict(x[:7])
    net.predict_proba(x[:5])
    net.score(x, y)
    assert backend.compile_count() == count
    # a structural change (momentum on) compiles a new training function only
    net.train([x, y], algo='sgd', learning_rate=1e-3, momentum=0.5, max_updates=1)
    assert backend.compile_count() == count + 1


def test_set_mode_then_train_and_predict_compile_in_the_new_mode(monkeypatch):
    rng = np.random.RandomState(1)
    x = rng.randn(20, 3).astype('f')
    y = rng.randint(2, size=20).astype('i')
    net = theanets.Classifier([3, 4, 2])
    net.train([x, y], algo='sgd', max_updates=1)
    net.predict(x)
    modes = []
    real = pytensor.function

    def spy(*args, **kwargs):
        modes.append(kwargs.get('mode'))
        return real(*args, **kwargs)

    monkeypatch.setattr(backend.pytensor, 'function', spy)
    before = backend.get_mode()
    try:
        backend.set_mode('FAST_COMPILE')
        net.train([x, y], algo='sgd', max_updates=1)
        net.predict(x)
    finally:
        backend.set_mode(before)
    # the training step, the evaluation and the prediction functions, all new
    assert len(modes) == 3
    assert all(not m.linker.use_cloop and 'fast_compile' in m.provided_optimizer.include
               for m in modes)
    net.train([x, y], algo='sgd', max_updates=1)
    net.predict(x)
    assert len(modes) == 3     # the functions of the first mode are still cached
