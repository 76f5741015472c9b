"""Tests for theanets.activations: every activation against a NumPy formula, plus gradients."""

import types

import numpy as np
import pytensor.tensor as pt
import pytest
from pytensor.graph.replace import clone_replace

import theanets
from theanets import activations, backend

import util as U

SIZE = 5


def _norm(z):
    return z - z.mean(axis=-1, keepdims=True)


def _std(z):
    return z.std(axis=-1, keepdims=True) + 1e-8


COMMON = {
    'linear': lambda z: z,
    'logistic': U.sigmoid,
    'sigmoid': U.sigmoid,
    'tanh': np.tanh,
    'softplus': lambda z: np.log1p(np.exp(z)),
    'softmax': U.softmax,
    'relu': U.relu,
    'rect:max': U.relu,
    'rect:min': lambda z: np.minimum(1, z),
    'rect:minmax': lambda z: np.clip(z, 0, 1),
    'norm:mean': _norm,
    'norm:max': lambda z: z / (np.abs(z).max(axis=-1, keepdims=True) + 1e-8),
    'norm:std': lambda z: z / _std(z),
    'norm:z': lambda z: _norm(z) / _std(z),
}


def _maxout(z, slope, intercept):
    return (z[..., None] * slope + intercept).max(axis=-1)


# name -> (numpy formula of (z, *params), param suffixes in creation order)
LEARNABLE = {
    'prelu': (lambda z, leak: U.relu(z) + np.exp(leak) * np.minimum(0, z), ['leak']),
    'leaky-relu': (lambda z, leak: U.relu(z) + np.exp(leak) * np.minimum(0, z), ['leak']),
    'lgrelu': (lambda z, g, l: np.exp(g) * U.relu(z) + np.exp(l) * np.minimum(0, z),
               ['gain', 'leak']),
    'leaky-gain-relu': (lambda z, g, l: np.exp(g) * U.relu(z) + np.exp(l) * np.minimum(0, z),
                        ['gain', 'leak']),
    'elu': (lambda z, g: np.where(z >= 0, z, np.exp(g) * (np.exp(z) - 1)), ['gain']),
    'maxout:3': (_maxout, ['slope', 'intercept']),
}


def fake_layer(name='lay', size=SIZE, seed=0):
    """The attributes an activation reads from its layer."""
    return types.SimpleNamespace(name=name, output_size=size, rng=np.random.RandomState(seed))


def away_from_kinks(shape=(3, SIZE), seed=0):
    """Float64 values at least 0.1 from the kinks at 0 and 1 of relu and rect:*."""
    rng = np.random.RandomState(seed)
    z = rng.uniform(0.1, 0.9, shape) * rng.choice([-1, 1], shape)
    z[0] = np.abs(z[0]) + 1.2
    return z


def randomize(act, seed=1):
    """Give an activation's parameters random values; return them as float64 arrays."""
    rng = np.random.RandomState(seed)
    values = []
    for param in act.params:
        value = 0.5 * rng.randn(*param.get_value().shape)
        param.set_value(value.astype(param.dtype))
        values.append(param.get_value().astype('float64'))
    return values


@pytest.fixture(scope='module')
def common_outputs():
    """Every COMMON activation of one float64 input, compiled in a single function."""
    z = pt.matrix('z', dtype='float64')
    names = sorted(COMMON)
    exprs = [activations.build(n, fake_layer())(z) for n in names]
    x = away_from_kinks()
    return x, dict(zip(names, backend.function([z], exprs)(x)))


@pytest.mark.parametrize('name', sorted(COMMON))
def test_common_matches_numpy(common_outputs, name):
    x, outputs = common_outputs
    assert np.allclose(outputs[name], COMMON[name](x), rtol=1e-6, atol=1e-7)


def test_common_table_is_complete():
    assert set(activations.COMMON) == set(COMMON)


@pytest.mark.parametrize('name', sorted(LEARNABLE))
def test_learnable_matches_numpy(name):
    act = activations.build(name, fake_layer())
    formula, suffixes = LEARNABLE[name]
    assert [p.name for p in act.params] == ['lay.' + s for s in suffixes]
    values = randomize(act)
    z = pt.matrix('z', dtype='float64')
    x = away_from_kinks()
    out = backend.function([z], act(z))(x)
    assert np.allclose(out, formula(x, *values), rtol=1e-5)


def test_learnable_initial_values():
    layer = fake_layer(size=7)
    prelu = activations.build('prelu', layer)
    leak = prelu.params[0].get_value()
    assert leak.shape == (7, ) and np.all(leak >= 0) and leak.max() < 1
    maxout = activations.build('maxout:4', fake_layer(size=7))
    assert [p.get_value().shape for p in maxout.params] == [(7, 4), (7, 4)]
    assert maxout.pieces == 4


@pytest.fixture
def float64_params(monkeypatch):
    """Create activation parameters in float64 so gradients can be checked precisely."""
    monkeypatch.setattr(theanets.util, 'FLOAT', 'float64')


@pytest.mark.parametrize('name', sorted(COMMON) + sorted(LEARNABLE) + ['tanh+norm:z'])
def test_gradient(float64_params, name):
    act = activations.build(name, fake_layer())
    randomize(act)

    def fun(z, *params):
        return clone_replace(act(z), dict(zip(act.params, params)))

    points = [away_from_kinks()] + [p.get_value() for p in act.params]
    U.check_grad(fun, points, seed=3)


def test_composition_applies_left_to_right():
    act = activations.build('tanh+norm:z', fake_layer())
    assert act.name == 'norm:z(tanh)'
    assert isinstance(act, activations.Compose)
    z = pt.matrix('z', dtype='float64')
    x = away_from_kinks()
    out = backend.function([z], act(z))(x)
    assert np.allclose(out, COMMON['norm:z'](np.tanh(x)), rtol=1e-6)


def test_composition_collects_params():
    act = activations.build('prelu+maxout:2', fake_layer())
    assert act.name == 'maxout:2(prelu)'
    assert [p.name for p in act.params] == ['lay.leak', 'lay.slope', 'lay.intercept']


def test_activation_instance_passes_through():
    act = activations.build('tanh', fake_layer())
    assert activations.build(act, fake_layer()) is act


def test_unknown_activation_suggests_close_names():
    with pytest.raises(theanets.util.ConfigurationError,
                       match=r"unknown activation 'tahn'.*'tanh'"):
        activations.build('tahn', fake_layer())
    with pytest.raises(theanets.util.ConfigurationError, match='integer piece count'):
        activations.build('maxout:x', fake_layer())
    with pytest.raises(theanets.util.ConfigurationError, match='must be a string'):
        activations.build(3, fake_layer())


def test_custom_activation_by_lowercase_name():
    class ThresholdedLinear(theanets.Activation):
        def __call__(self, x):
            return x * (abs(x) > 1)

    net = theanets.Regressor([3, (4, 'thresholdedlinear'), 2])
    assert isinstance(net.layers[1].activate, ThresholdedLinear)
    x = U.inputs(m=3) * 2
    ff = net.feed_forward(x)
    pre = ff['hid1:pre']
    assert np.allclose(ff['hid1:out'], pre * (np.abs(pre) > 1))


class TestInNetwork:
    """Learnable activations inside a network: params, names and the forward pass."""

    @pytest.fixture(scope='class')
    @staticmethod
    def net():
        return theanets.Regressor([
            U.NUM_INPUTS, (4, 'prelu'), (4, 'lgrelu'), (4, 'elu'), (4, 'maxout:3'),
            (4, 'tanh+norm:z'), U.NUM_OUTPUTS])

    def test_params_are_network_params(self, net):
        names = [p.name for p in net.params]
        for name in ['hid1.leak', 'hid2.gain', 'hid2.leak', 'hid3.gain', 'hid4.slope',
                     'hid4.intercept']:
            assert name in names
        assert net.find('hid1', 'leak') is net.layers[1].activate.params[0]
        assert net.layers[5].activate.name == 'norm:z(tanh)'
        sizes = {'hid1.leak': 4, 'hid2.gain': 4, 'hid4.slope': 12}
        for name, size in sizes.items():
            assert next(p for p in net.params if p.name == name).get_value().size == size

    def test_forward_pass(self, net):
        x = U.inputs()
        ff = net.feed_forward(x)
        for i, name in enumerate(('prelu', 'lgrelu', 'elu', 'maxout:3')):
            formula, suffixes = LEARNABLE[name]
            layer = 'hid{}'.format(i + 1)
            values = [U.value(net, layer, s) for s in suffixes]
            pre = ff[layer + ':pre'].astype('float64')
            assert np.allclose(ff[layer + ':out'], formula(pre, *values), rtol=1e-4, atol=1e-5)
        pre = ff['hid5:pre'].astype('float64')
        assert np.allclose(ff['hid5:out'], COMMON['norm:z'](np.tanh(pre)), atol=1e-4)
