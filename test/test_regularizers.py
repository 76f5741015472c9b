"""Tests for theanets.regularizers: loss terms against NumPy, noise, dropout, keywords."""

import numpy as np
import pytensor.tensor as TT
import pytest

import theanets
from theanets import backend, regularizers, util

RNG = np.random.RandomState(7)
X = RNG.randn(16, 3).astype('f')
Y = RNG.randn(16, 2).astype('f')
SEQ_X = RNG.randn(5, 7, 3).astype('f')
SEQ_Y = RNG.randn(5, 7, 2).astype('f')


class WeightInverse(theanets.Regularizer):
    """The custom regularizer of the training guide: sum of 1 / ||W||^2."""

    def loss(self, layers, outputs):
        return sum((1 / (w * w).sum()) for l in layers for w in l.params if w.ndim > 1)


@pytest.fixture(scope='module')
def net():
    return theanets.Regressor([3, (4, 'tanh'), 2])


@pytest.fixture(scope='module')
def seq():
    """A graph with 3-D outputs (batch, time, n), standing in for a recurrent model."""
    return theanets.Network([dict(form='input', size=3, ndim=3),
                             dict(size=4, activation='tanh'),
                             dict(size=2, activation='linear')],
                            loss=dict(form='mse', target=3))


def values(net):
    return {p.name: p.get_value().astype('float64') for p in net.params}


def hidden(net, x):
    p = values(net)
    return np.tanh(x.dot(p['hid1.w']) + p['hid1.b'])


def mse(net, x, y):
    p = values(net)
    out = hidden(net, x).dot(p['out.w']) + p['out.b']
    return ((out - y) ** 2).mean()


def loss(net, data, **kwargs):
    """Evaluate the network's symbolic loss (with regularizers) on data."""
    function = backend.function(net.variables, net.loss(**kwargs))
    return float(function(*data))


def check_term(net, data, expected, **kwargs):
    """The loss with ``kwargs`` is the plain loss plus ``expected``.

    A non-zero term must be at least 1% of the plain loss, so that a
    regularizer adding nothing cannot pass within the tolerance.
    """
    base = mse(net, *data)
    plain = loss(net, data)
    np.testing.assert_allclose(plain, base, rtol=1e-5)
    assert expected == 0 or abs(expected) > 0.01 * base, (expected, base)
    np.testing.assert_allclose(loss(net, data, **kwargs) - plain, expected, rtol=1e-3, atol=1e-6)


# ----- loss terms -------------------------------------------------------------------------

@pytest.mark.parametrize('key', ['weight_l2', 'weight_decay', 'weightl2'])
def test_weight_l2(net, key):
    p = values(net)
    term = ((p['hid1.w'] ** 2).mean() + (p['out.w'] ** 2).mean()) / 2
    check_term(net, [X, Y], 0.5 * term, **{key: 0.5})


@pytest.mark.parametrize('key', ['weight_l1', 'weight_sparsity', 'weightl1'])
def test_weight_l1(net, key):
    p = values(net)
    term = (abs(p['hid1.w']).mean() + abs(p['out.w']).mean()) / 2
    check_term(net, [X, Y], 0.3 * term, **{key: 0.3})


@pytest.mark.parametrize('pattern, names', [
    ('hid1.w', ['hid1.w']),
    (['out.*'], ['out.w']),
    ('*.b', []),
])
def test_weight_penalty_patterns_match_parameter_names(net, pattern, names):
    p = values(net)
    terms = [(p[n] ** 2).mean() for n in names]
    term = sum(terms) / len(terms) if terms else 0
    check_term(net, [X, Y], 2 * term, weight_l2=dict(weight=2, pattern=pattern))


@pytest.mark.parametrize('key', ['hidden_l1', 'hidden_sparsity', 'hiddenl1'])
def test_hidden_l1(net, key):
    check_term(net, [X, Y], 0.1 * abs(hidden(net, X)).mean(), **{key: 0.1})


def test_hidden_l2_is_a_real_regularizer(net):
    check_term(net, [X, Y], 0.2 * (hidden(net, X) ** 2).mean(), hidden_l2=0.2)


def test_hidden_penalty_pattern_matches_output_names(net):
    p = values(net)
    pre = X.dot(p['hid1.w']) + p['hid1.b']
    term = (abs(pre).mean() + abs(np.tanh(pre)).mean()) / 2
    check_term(net, [X, Y], term, hidden_l1=dict(weight=1, pattern='hid1:*'))


def test_contractive(net):
    w = values(net)['hid1.w']
    h = hidden(net, X)
    grad = (1 - h ** 2).dot(w.T) / h.size
    # the gradient of a mean is small: a large weight makes the term visible
    check_term(net, [X, Y], 1e3 * (grad ** 2).mean(), contractive=1e3)


def test_contractive_wrt_selects_inputs(net):
    check_term(net, [X, Y], 0, contractive=dict(weight=3.0, wrt='nothing*'))


def seq_hidden(seq):
    p = values(seq)
    return np.tanh(SEQ_X.dot(p['hid1.w']) + p['hid1.b'])


def seq_mse(seq):
    p = values(seq)
    return ((seq_hidden(seq).dot(p['out.w']) + p['out.b'] - SEQ_Y) ** 2).mean()


@pytest.mark.parametrize('key', ['recurrent_state', 'recurrentstate'])
def test_recurrent_state(seq, key):
    h = seq_hidden(seq)
    term = ((h[:, 1:] - h[:, :-1]) ** 2).mean()
    got = loss(seq, [SEQ_X, SEQ_Y], **{key: dict(weight=0.5, pattern='hid1:out')})
    np.testing.assert_allclose(got, seq_mse(seq) + 0.5 * term, rtol=1e-4)


@pytest.mark.parametrize('key', ['recurrent_norm', 'recurrentnorm'])
def test_recurrent_norm(seq, key):
    norms = (seq_hidden(seq) ** 2).sum(axis=-1)
    term = ((norms[:, 1:] - norms[:, :-1]) ** 2).mean()
    got = loss(seq, [SEQ_X, SEQ_Y], **{key: dict(weight=0.5, pattern='hid1:out')})
    np.testing.assert_allclose(got, seq_mse(seq) + 0.5 * term, rtol=1e-4)


@pytest.mark.parametrize('key', ['recurrent_norm', 'recurrent_state'])
def test_recurrent_penalties_need_a_pattern(seq, key):
    with pytest.raises(util.ConfigurationError, match='pattern'):
        seq.loss(**{key: 0.1})


def test_custom_regularizer_by_lowercase_keyword(net):
    # the docs' examples define a WeightInverse too; register this module's again.
    theanets.Regularizer._registry.add(WeightInverse)
    p = values(net)
    term = 1 / (p['hid1.w'] ** 2).sum() + 1 / (p['out.w'] ** 2).sum()
    assert 'weightinverse' in regularizers.keyword_names()
    check_term(net, [X, Y], 0.1 * term, weightinverse=0.1)


def test_explicit_list_adds_to_keywords(net):
    p = values(net)
    l2 = ((p['hid1.w'] ** 2).mean() + (p['out.w'] ** 2).mean()) / 2
    l1 = abs(hidden(net, X)).mean()
    check_term(net, [X, Y], 0.5 * l2 + 0.1 * l1,
               regularizers=[regularizers.WeightL2(weight=0.5)], hidden_l1=0.1)
    check_term(net, [X, Y], 0.5 * l2, regularizers=dict(weight_decay=0.5))


def test_from_kwargs_builds_and_skips():
    net = theanets.Regressor([3, 4, 2])
    regs = regularizers.from_kwargs(
        net, weight_l2=0, hidden_l1=None, input_noise=0.1, dropout={'hid1:out': 0.2},
        hidden_dropout=0.3, contractive=dict(weight=1, wrt='in'), monitors={})
    assert [type(r).__name__ for r in regs] == [
        'GaussianNoise', 'BernoulliDropout', 'BernoulliDropout', 'Contractive']
    assert regs[0].pattern == ['in:out'] and regs[1].pattern == ['hid1:out']
    assert len({r.seed for r in regs[:3]}) == 3   # noise and dropout do not share streams


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(hidden_dropout=1.0), util.ConfigurationError, 'probability'),
    (dict(input_noise=-0.1), util.ConfigurationError, 'standard deviation'),
    (dict(noise=0.1), util.ConfigurationError, 'hidden_noise'),
    (dict(weight_l2=dict(weight=1, patern='*')), TypeError, 'pattern'),
    (dict(regularizers=['weight_l2']), util.ConfigurationError, 'Regularizer'),
])
def test_bad_regularizer_arguments(kwargs, error, message):
    net = theanets.Regressor([3, 4, 2])
    with pytest.raises(error, match=message):
        regularizers.from_kwargs(net, **kwargs)


# ----- noise and dropout ---------------------------------------------------------------------

def test_noise_not_applied_unless_asked(net):
    plain = net.feed_forward(X)
    assert not any('-pre' in name for name in plain)
    np.testing.assert_allclose(net.predict(X), net.predict(X))
    p = values(net)
    np.testing.assert_allclose(net.predict(X), hidden(net, X).dot(p['out.w']) + p['out.b'],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs, name', [
    (dict(input_noise=0.5), 'in:out'),
    (dict(hidden_noise=0.5), 'hid1:out'),
    (dict(output_noise=0.5), 'out:out'),
    (dict(noise={'hid1:p*': 0.5}), 'hid1:pre'),
])
def test_noise_has_requested_std(kwargs, name):
    net = theanets.Regressor([3, (200, 'linear'), 2])
    x = np.ones((100, 3), 'f')
    out = net.feed_forward(x, **kwargs)
    assert sorted(n for n in out if n.endswith('-prenoise')) == [name + '-prenoise']
    noise = out[name] - out[name + '-prenoise']
    assert abs(noise.std() - 0.5) < 0.05
    assert abs(noise.mean()) < 0.05


def test_input_dropout_halves_and_keeps_expectation():
    net = theanets.Regressor([200, 3, 2])
    x = np.ones((100, 200), 'f')
    out = net.feed_forward(x, input_dropout=0.5)
    dropped = out['in:out']
    assert set(np.unique(dropped)) == {0.0, 2.0}
    assert abs((dropped == 0).mean() - 0.5) < 0.02
    assert abs(dropped.mean() - 1) < 0.04
    np.testing.assert_array_equal(out['in:out-predrop'], x)
    # dropout applies as the layer is connected, so later layers see the dropped values
    p = values(net)
    np.testing.assert_allclose(out['hid1:pre'], dropped.dot(p['hid1.w']) + p['hid1.b'],
                               rtol=1e-4, atol=1e-4)


def test_random_streams_advance_between_calls():
    net = theanets.Regressor([50, 3, 2])
    x = np.ones((10, 50), 'f')
    first = net.feed_forward(x, input_dropout=0.5, hidden_noise=0.1)
    second = net.feed_forward(x, input_dropout=0.5, hidden_noise=0.1)
    assert not np.array_equal(first['in:out'], second['in:out'])
    assert not np.array_equal(first['hid1:out'], second['hid1:out'])


def test_dropout_dict_with_patterns():
    net = theanets.Regressor([3, (300, 'linear'), 2])
    out = net.feed_forward(np.ones((50, 3), 'f'), dropout={'hid1:out': 0.25, 'nothing': 0.5})
    assert sorted(n for n in out if n.endswith('-predrop')) == ['hid1:out-predrop']
    dropped = out['hid1:out'] == 0
    assert abs(dropped.mean() - 0.25) < 0.02


def test_dropout_applies_during_training():
    net = theanets.Regressor([3, (50, 'linear'), 2])
    zeros = {'zeros': lambda e: TT.eq(e, 0).mean()}
    train, _ = net.train([X, Y], algo='sgd', max_updates=1, batch_size=4,
                         hidden_dropout=0.5, monitors={'hid1:out': zeros})
    assert abs(train['hid1:out:zeros'] - 0.5) < 0.1
    train, _ = net.train([X, Y], algo='sgd', max_updates=1, batch_size=4,
                         monitors={'hid1:out': zeros})
    assert train['hid1:out:zeros'] == 0


def train_with_dropout(rng):
    net = theanets.Regressor([3, (6, 'relu'), 2], rng=rng)
    net.train([X, Y], algo='sgd', learning_rate=0.1, max_updates=3, batch_size=4,
              hidden_dropout=0.5, input_noise=0.1)
    return values(net)


def test_same_rng_gives_same_training_with_dropout():
    first, second = train_with_dropout(5), train_with_dropout(5)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    other = theanets.Regressor([3, (6, 'relu'), 2], rng=6)
    assert regularizers.from_kwargs(other, hidden_dropout=0.5)[0].seed != \
        regularizers.from_kwargs(theanets.Regressor([3, 2], rng=5), hidden_dropout=0.5)[0].seed


def test_hidden_l1_sparsifies_hidden_activations():
    x = np.random.RandomState(3).randn(60, 6).astype('f')

    def activations(**kwargs):
        net = theanets.Autoencoder([6, (8, 'relu'), 6])
        net.train([x], algo='adam', learning_rate=3e-2, max_updates=30, batch_size=20,
                  **kwargs)
        h = net.feed_forward(x)['hid1:out']
        return abs(h).mean(), (h == 0).mean()

    plain, plain_zeros = activations()
    sparse, sparse_zeros = activations(hidden_l1=1.0)
    assert sparse < 0.5 * plain
    assert sparse_zeros > plain_zeros + 0.1
