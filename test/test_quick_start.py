"""Quick start: networks run a Python version of each function until its C code is compiled."""

import logging

import numpy as np
import pytensor
import pytest

import theanets
from theanets import backend

RNG = np.random.RandomState(5)
X = RNG.randn(32, 4).astype('f')
LABELS = RNG.randint(3, size=32).astype('i')
TRAIN = dict(algo='sgd', momentum=0.5, learning_rate=0.05, batch_size=8, max_updates=4,
             validate_every=1, hidden_dropout=0.3, rng=7)


@pytest.fixture
def quick_start():
    """Restore the quick-start setting after the test."""
    before = backend.get_quick_start()
    yield backend.set_quick_start
    backend.set_quick_start(before)


def net():
    return theanets.Classifier([4, (8, 'relu'), 3], rng=3)


def staged(model):
    """The training step of the network's cached optimizer."""
    runner = theanets.trainer.DownhillTrainer('sgd', model)
    runner.itertrain([X, LABELS], **{k: v for k, v in TRAIN.items() if k != 'algo'})
    return runner.optimizer.function


def trained(switch_after=None):
    """Train a fresh network; with ``switch_after``, move to C code after that many epochs."""
    model = net()
    for epoch, _ in enumerate(model.itertrain([X, LABELS], **TRAIN), 1):
        if epoch == switch_after:
            staged(model).finish()
    return model, {p.name: p.get_value() for p in model.params}


def test_same_result_whichever_version_runs_a_batch(quick_start):
    """Dropout draws and parameter updates agree between the Python and C versions."""
    quick_start(False)
    _, in_c = trained()
    quick_start(float('inf'))
    model, in_python = trained()
    assert isinstance(staged(model), backend.StagedFunction) and not staged(model).compiled
    quick_start(0)
    model, switched = trained(switch_after=2)
    step = staged(model)
    assert step.compiled
    assert step.function.maker.mode.linker.c_thunks    # the C version, from the cache
    for name in in_c:
        np.testing.assert_allclose(in_python[name], in_c[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(switched[name], in_c[name], rtol=1e-4, atol=1e-5)
    assert not np.allclose(in_c['hid1.w'], net().find('hid1', 'w').get_value())


def test_python_version_compiles_no_c_code(quick_start):
    quick_start(float('inf'))
    model = net()
    model.train([X, LABELS], **TRAIN)
    step = staged(model)
    linker = step.function.maker.mode.linker
    assert not linker.c_thunks and not linker.use_cloop
    assert not step.compiled


def test_helper_failure_compiles_here(quick_start, monkeypatch, caplog):
    quick_start(0)

    def unpicklable(specs):
        raise TypeError('cannot pickle this graph')

    monkeypatch.setattr(backend, '_write_specs', unpicklable)
    caplog.set_level(logging.INFO, logger='theanets.backend')
    model = net()
    model.train([X, LABELS], **dict(TRAIN, max_updates=1))
    backend.finish_compiling()
    assert staged(model).compiled
    assert 'cannot hand the C compilation to a helper process' in caplog.text
    assert 'failed' not in caplog.text


@pytest.mark.parametrize('value, seconds', [
    (True, backend.QUICK_START_SECONDS), ('on', backend.QUICK_START_SECONDS), (False, None),
    (None, None), ('off', None), (0, 0.0), ('2.5', 2.5), ('inf', float('inf')),
])
def test_settings(quick_start, value, seconds):
    quick_start(value)
    assert backend.get_quick_start() == seconds


@pytest.mark.parametrize('value', [-1, 'soon', float('nan')])
def test_bad_settings(value):
    with pytest.raises(ValueError, match='quick start'):
        backend.set_quick_start(value)


def test_setting_is_part_of_the_cache_key(quick_start):
    quick_start(float('inf'))
    model = net()
    model.predict(X)
    count = backend.compile_count()
    quick_start(False)
    model.predict(X)
    assert backend.compile_count() == count + 1
    quick_start(float('inf'))
    model.predict(X)
    assert backend.compile_count() == count + 1


def test_no_quick_start_outside_c_modes(quick_start, monkeypatch):
    quick_start(0)
    monkeypatch.setattr(backend, '_MODE', 'FAST_COMPILE')
    x = pytensor.tensor.matrix()
    assert not isinstance(backend.function([x], 2 * x, staged=True), backend.StagedFunction)
