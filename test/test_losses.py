"""Tests for theanets.losses: formulas against NumPy, weights, gradients and custom losses."""

import numpy as np
import pytensor
import pytensor.graph.traversal
import pytensor.tensor as pt
import pytest
from pytensor.graph.replace import clone_replace

import theanets
from theanets import backend, losses

import util as U

B, N, K = 6, 3, 4
EPS = 1e-8


def real_data(seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(B, N), rng.randn(B, N).astype('f')


def prob_data(seed=0):
    rng = np.random.RandomState(seed)
    o = rng.uniform(0.05, 1, (B, N))
    t = rng.uniform(0.05, 1, (B, N))
    return o / o.sum(axis=1, keepdims=True), (t / t.sum(axis=1, keepdims=True)).astype('f')


def class_data(seed=0):
    rng = np.random.RandomState(seed)
    o = rng.uniform(0.05, 1, (B, K))
    return o / o.sum(axis=1, keepdims=True), (np.arange(B) % K).astype('i')


def np_mmd(o, t, bw=1.0):
    def k(a, b):
        d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
        return np.exp(-d / bw)
    return k(t, t).mean() - 2 * k(t, o).mean() + k(o, o).mean()


def np_kl(o, t):
    o, t = np.clip(o, EPS, 1 - EPS), np.clip(t, EPS, 1 - EPS)
    return np.abs(t * np.log(t / o))


def np_nlp(o, labels):
    return -np.log(np.clip(o[np.arange(len(labels)), labels], EPS, 1))


def np_hinge(o, labels):
    return np.maximum(0, (o - o[np.arange(len(labels)), labels][:, None]).max(axis=1))


# key -> (data maker, target ndim, per-element error of (o, t) or None, mean-only formula)
CASES = {
    'mse': (real_data, 2, lambda o, t: (o - t) ** 2),
    'mae': (real_data, 2, lambda o, t: np.abs(o - t)),
    'kl': (prob_data, 2, np_kl),
    'xe': (class_data, 1, np_nlp),
    'hinge': (class_data, 1, np_hinge),
}
ALIASES = {
    'mse': ['MeanSquaredError', 'meansquarederror', 'MSE'],
    'mae': ['MeanAbsoluteError', 'meanabsoluteerror'],
    'kl': ['KullbackLeiblerDivergence', 'kld'],
    'xe': ['CrossEntropy', 'crossentropy'],
    'hinge': ['Hinge'],
    'mmd': ['MaximumMeanDiscrepancy'],
    'gll': ['GaussianLogLikelihood'],
}


def evaluate(loss, o, t, w=None, extra=None):
    """Compile and run ``loss`` on output ``o`` (float64), target ``t`` and weights ``w``."""
    out = pt.matrix('o', dtype='float64')
    outputs = {loss.output_name: out}
    outputs.update(extra or {})
    args = [o, t] + ([w] if w is not None else [])
    fn = backend.function([out] + loss.variables, loss(outputs))
    return float(fn(*args))


@pytest.mark.parametrize('key', sorted(CASES))
def test_formula(key):
    make, ndim, err = CASES[key]
    o, t = make()
    loss = theanets.Loss.build(key, target=ndim)
    assert np.isclose(evaluate(loss, o, t), err(o, t).mean(), rtol=1e-5)


@pytest.mark.parametrize('key', sorted(CASES))
def test_weighted_formula(key):
    make, ndim, err = CASES[key]
    o, t = make()
    w = U.weights(t.shape)
    loss = theanets.Loss.build(key, target=ndim, weighted=True)
    assert [v.name for v in loss.variables] == ['target', 'weights']
    expected = (w * err(o, t)).sum() / w.sum()
    assert np.isclose(evaluate(loss, o, t, w), expected, rtol=1e-5)
    # a zero weight removes that element's error entirely.
    t2 = t.copy()
    t2.reshape(-1)[0] = t.reshape(-1)[1] if ndim == 1 else 0.5
    assert np.isclose(evaluate(loss, o, t2, w), expected, rtol=1e-5)


@pytest.mark.parametrize('key,aliases', sorted(ALIASES.items()))
def test_aliases_build_same_class(key, aliases):
    cls = theanets.Loss.get_class(key)
    assert cls.__module__ == 'theanets.losses'
    assert getattr(losses, cls.__name__) is cls
    for alias in aliases:
        assert theanets.Loss.get_class(alias) is cls


def test_seed_lists_predefined_losses():
    for name in ['Loss', 'CrossEntropy', 'GaussianLogLikelihood', 'Hinge',
                 'KullbackLeiblerDivergence', 'MaximumMeanDiscrepancy', 'MeanAbsoluteError',
                 'MeanSquaredError']:
        assert issubclass(getattr(losses, name), theanets.Loss)
    assert theanets.Loss is losses.Loss


def test_mmd_gaussian_and_callable_kernels():
    o, t = real_data()
    loss = theanets.Loss.build('mmd', target=2)
    assert np.isclose(evaluate(loss, o, t), np_mmd(o, t.astype('float64')), rtol=1e-5)
    wide = theanets.Loss.build('mmd', target=2, kernel=3.0)
    assert np.isclose(evaluate(wide, o, t), np_mmd(o, t.astype('float64'), 3.0), rtol=1e-5)
    linear = theanets.Loss.build('mmd', target=2, kernel=lambda x, y: pt.dot(x, y.T))
    mean_diff = o.mean(axis=0) - t.mean(axis=0)
    assert np.isclose(evaluate(linear, o, t), (mean_diff ** 2).sum(), rtol=1e-5)


def np_gll(t, mean, covar, eps=1e-3):
    prec = 1 / (np.abs(covar) + eps)
    nll = 0.5 * (prec * (t - mean) ** 2 - np.log(prec) + np.log(2 * np.pi))
    return nll


def test_gaussian_log_likelihood():
    rng = np.random.RandomState(4)
    mean, covar = rng.randn(B, N), rng.uniform(0.2, 2, (B, N))
    t = rng.randn(B, N).astype('f')
    loss = theanets.Loss.build('gll', target=2, mean_name='mu', covar_name='var')
    assert (loss.mean_name, loss.covar_name) == ('mu:out', 'var:out')
    m, c = pt.matrix('m', dtype='float64'), pt.matrix('c', dtype='float64')
    fn = backend.function([m, c, loss._target], loss({'mu:out': m, 'var:out': c}))
    nll = np_gll(t, mean, covar)
    assert np.isclose(fn(mean, covar, t), nll.sum(axis=1).mean(), rtol=1e-5)

    weighted = theanets.Loss.build('gll', target=2, mean_name='mu', covar_name='var',
                                   weighted=True)
    w = U.weights(t.shape)
    fn = backend.function([m, c] + weighted.variables,
                           weighted({'mu:out': m, 'var:out': c}))
    assert np.isclose(fn(mean, covar, t, w), (w * nll).sum() / w.sum() * N, rtol=1e-5)


def test_gll_in_network():
    net = theanets.Regressor([U.NUM_INPUTS, 3,
                              dict(size=2, name='mean', activation='linear', inputs='hid1'),
                              dict(size=2, name='covar', activation='softplus', inputs='hid1')])
    net.set_loss('gll', target=2, mean_name='mean', covar_name='covar')
    x, y = U.inputs(), U.targets()
    fn = backend.function(net.variables, net.loss())
    ff = net.feed_forward(x)
    expected = np_gll(y, ff['mean:out'], ff['covar:out']).sum(axis=1).mean()
    assert np.isclose(fn(x, y), expected, rtol=1e-4)


def test_cross_entropy_accuracy():
    o, labels = class_data()
    loss = theanets.Loss.build('xe', target=1)
    out = pt.matrix('o', dtype='float64')
    acc = backend.function([out, loss._target], loss.accuracy({'out:out': out}))
    assert np.isclose(acc(o, labels), (o.argmax(axis=1) == labels).mean())
    weighted = theanets.Loss.build('hinge', target=1, weighted=True)
    acc = backend.function([out] + weighted.variables, weighted.accuracy({'out:out': out}))
    w = U.weights(labels.shape)
    right = o.argmax(axis=1) == labels
    assert np.isclose(acc(o, labels, w), (w * right).sum() / w.sum())


def test_cross_entropy_over_time_steps():
    rng = np.random.RandomState(5)
    o = rng.uniform(0.05, 1, (2, 3, K))
    o /= o.sum(axis=-1, keepdims=True)
    labels = rng.randint(K, size=(2, 3)).astype('i')
    loss = theanets.Loss.build('xe', target=2)
    out = pt.tensor3('o', dtype='float64')
    fn = backend.function([out, loss._target], loss({'out:out': out}))
    expected = np_nlp(o.reshape(-1, K), labels.reshape(-1)).mean()
    assert np.isclose(fn(o, labels), expected)


@pytest.mark.parametrize('key', ['xe', 'hinge'])
@pytest.mark.parametrize('shape', [(B, K), (2, 3, K)])
def test_label_scores_without_arange_for_tracing_backends(key, shape, monkeypatch):
    """In JAX-like modes the label's score is picked by a one-hot mask over the
    static class count; it must equal the gather of the C modes."""
    rng = np.random.RandomState(7)
    o = rng.uniform(0.05, 1, shape)
    o /= o.sum(axis=-1, keepdims=True)
    labels = rng.randint(K, size=shape[:-1]).astype('i')
    loss = theanets.Loss.build(key, target=len(shape) - 1)
    out = pt.tensor(dtype='float64', shape=(None,) * (len(shape) - 1) + (K,))
    gather = loss({'out:out': out})
    monkeypatch.setattr(backend, 'runs_custom_ops', lambda mode=None: False)
    onehot = loss({'out:out': out})
    assert not any(type(v.owner.op).__name__ == 'ARange'
                   for v in pytensor.graph.traversal.ancestors([onehot]) if v.owner)
    fn = backend.function([out, loss._target], [gather, onehot])
    a, b = fn(o, labels)
    assert np.isclose(a, b)


@pytest.fixture
def float64_targets(monkeypatch):
    monkeypatch.setattr(theanets.util, 'FLOAT', 'float64')
    monkeypatch.setattr(losses.Loss, 'TARGET_DTYPE', 'float64')


@pytest.mark.parametrize('key', sorted(CASES) + ['mmd'])
@pytest.mark.parametrize('weighted', [False, True])
def test_gradient(float64_targets, key, weighted):
    make, ndim, _ = CASES.get(key, (real_data, 2, None))
    o, t = make()
    loss = theanets.Loss.build(key, target=ndim, weighted=weighted)
    replace = {loss._target: pt.constant(t.astype(loss._target.dtype))}
    if weighted:
        replace[loss._weights] = pt.constant(U.weights(t.shape).astype('float64'))

    def fun(out):
        return clone_replace(loss({loss.output_name: out}), replace)

    U.check_grad(fun, [o], seed=6)


@pytest.mark.parametrize('weighted', [False, True])
def test_gll_gradient(float64_targets, weighted):
    rng = np.random.RandomState(7)
    loss = theanets.Loss.build('gll', target=2, weighted=weighted)
    replace = {loss._target: pt.constant(rng.randn(B, N))}
    if weighted:
        replace[loss._weights] = pt.constant(U.weights((B, N)).astype('float64'))

    def fun(mean, covar):
        return clone_replace(loss({'mean:out': mean, 'covar:out': covar}), replace)

    U.check_grad(fun, [rng.randn(B, N), rng.uniform(0.2, 2, (B, N))])


def test_network_loss_is_the_weighted_sum_of_its_losses():
    net = theanets.Regressor([U.NUM_INPUTS, U.NUM_OUTPUTS], loss='mae')
    net.losses[0].weight = 0.5
    net.add_loss('mse', weight=2)
    x, y = U.inputs(), U.targets()
    err = net.predict(x).astype('float64') - y
    fn = backend.function(net.variables, net.loss())
    assert np.isclose(fn(x, y), 0.5 * np.abs(err).mean() + 2 * (err ** 2).mean(), rtol=1e-5)


def test_loss_attributes():
    loss = theanets.Loss.build('mse', target=2, weight=0.5, output_name='hid1')
    assert loss.weight == 0.5 and loss.output_name == 'hid1:out'
    assert loss._weights is None
    assert loss._target.name == 'target' and loss._target.ndim == 2
    assert theanets.Loss.build('xe', target=1)._target.dtype == 'int32'
    x = pt.matrix('x')
    assert theanets.Loss.build('mse', target=x)._target is x


def test_model_losses_by_name():
    assert isinstance(theanets.Regressor([10, 20, 3], loss='mae').losses[0],
                      losses.MeanAbsoluteError)
    assert isinstance(theanets.Regressor([3, 2]).losses[0], losses.MeanSquaredError)
    assert isinstance(theanets.Autoencoder([3, 2, 3]).losses[0], losses.MeanSquaredError)
    assert isinstance(theanets.Classifier([3, 2]).losses[0], losses.CrossEntropy)
    assert isinstance(theanets.Regressor([3, 2], loss=losses.MeanAbsoluteError(target=2))
                      .losses[0], losses.MeanAbsoluteError)
    with pytest.raises(theanets.util.ConfigurationError, match=r"unknown loss 'msr'.*'mse'"):
        theanets.Regressor([3, 2], loss='msr')
    with pytest.raises(TypeError, match=r"'wieght'.*'weight'"):
        theanets.Regressor([3, 2]).add_loss('mse', wieght=2)


class TestSeedStep:
    """The custom ``Step`` losses of the losses guide, exactly as written."""

    def test_unweighted_version(self):
        class Step(theanets.Loss):
            def __call__(self, outputs):
                return (outputs[self.output_name] > 0).mean()

        net = theanets.Regressor([5, 6, 7], loss='step')
        assert isinstance(net.losses[0], Step)
        x = U.inputs(m=5)
        fn = backend.function(net.variables, net.loss())
        expected = (net.predict(x) > 0).mean()
        assert np.isclose(fn(x, U.targets(m=7)), expected)

    @pytest.mark.parametrize('weighted', [False, True])
    def test_weighted_version(self, weighted):
        class Step(theanets.Loss):
            def __call__(self, outputs):
                step = outputs[self.output_name] > 0
                if self._weights:
                    return (self._weights * step).sum() / self._weights.sum()
                else:
                    return step.mean()

        net = theanets.Regressor([5, 6, 7], loss='step', weighted=weighted)
        x, y = U.inputs(m=5), U.targets(m=7)
        w = U.weights(y.shape, zeros=5)
        fn = backend.function(net.variables, net.loss())
        step = net.predict(x) > 0
        if weighted:
            assert np.isclose(fn(x, y, w), (w * step).sum() / w.sum(), rtol=1e-5)
        else:
            assert np.isclose(fn(x, y), step.mean())
