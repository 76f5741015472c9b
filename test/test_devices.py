"""Data-parallel JAX mode (theanets.devices) on two CPU devices.

XLA makes its CPU devices when JAX starts, so each check runs in a fresh
process with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.
"""

import json
import os
import subprocess
import sys

import pytest

import theanets

jax = pytest.importorskip('jax')

SCRIPT = r'''
import json, sys
import numpy as np
import theanets
theanets.backend.set_mode('JAX')
rng = np.random.RandomState(0)
x = rng.randn(64, 5, 3).astype('f') if sys.argv[1] == 'lstm' else rng.randn(64, 6).astype('f')
y = rng.randint(3, size=64).astype('i')
if sys.argv[1] == 'lstm':
    y = rng.randint(3, size=(64, 5)).astype('i')

def run(devices):
    theanets.devices.set_data_parallel(devices)
    if sys.argv[1] == 'lstm':
        net = theanets.recurrent.Classifier([3, (4, 'lstm'), 3], rng=1)
    else:
        net = theanets.Classifier([6, 8, 3], rng=1)
    losses = [t['loss'] for t, _ in zip(
        (t for t, v in net.itertrain([x, y], algo='nag', learning_rate=0.1, batch_size=32,
                                      rng=2)), range(3))]
    proba = net.predict_proba(x[:6])
    return losses, proba

one, two = run(None), run(2)
print(json.dumps(dict(one=one[0], two=two[0], gap=float(np.abs(one[1] - two[1]).max()),
                      kind=type(two[1]).__name__)))
'''


@pytest.mark.parametrize('model', ['mlp', 'lstm'])
def test_two_devices_train_and_predict_as_one(model):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
               JAX_PLATFORMS='cpu')
    done = subprocess.run([sys.executable, '-c', SCRIPT, model], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['one'] == pytest.approx(result['two'], rel=1e-5)
    assert result['two'][-1] < result['two'][0]
    assert result['gap'] < 1e-5
    assert result['kind'] == 'ndarray'


def test_sharded_inputs_are_split_by_batch():
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
               JAX_PLATFORMS='cpu')
    script = ('import logging, numpy as np, jax, pytensor, pytensor.tensor as pt, theanets\n'
              'logging.basicConfig(level=logging.WARNING)\n'
              'from theanets.devices import ShardedFunction\n'
              'x = pt.matrix("x")\n'
              'f = pytensor.function([x], 2 * x, mode="JAX")\n'
              'g = ShardedFunction(f, tuple(jax.devices()))\n'
              'placed = g._place(np.ones((4, 3)), "float64")\n'
              'odd = g._place(np.ones((3, 3)), "float64")\n'
              'g._place(np.ones((3, 3)), "float64")\n'
              '# a mode given as an object: networks still key their functions by the devices\n'
              'theanets.backend.set_mode(pytensor.compile.mode.get_mode("JAX"))\n'
              'theanets.devices.set_data_parallel(2)\n'
              'print(len(jax.devices()), placed.sharding.is_fully_replicated,\n'
              '      odd.sharding.is_fully_replicated, float(g(np.ones((4, 3)))[0, 0]),\n'
              '      len(theanets.backend.mode_key()[2]))\n')
    done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ['2', 'False', 'True', '2.0', '2']
    # the batch of 3 that could not be split is reported, once
    assert done.stderr.count('a batch of 3 does not divide among 2 devices') == 1


def test_more_devices_than_exist_is_refused():
    with pytest.raises(ValueError, match='devices=999 but JAX has'):
        theanets.devices.set_data_parallel(999)
    assert theanets.devices.get_data_parallel() is None


def test_one_device_is_the_default_path():
    theanets.devices.set_data_parallel(1)
    assert theanets.devices.get_data_parallel() is None
    assert theanets.backend.mode_key()[2] is None
