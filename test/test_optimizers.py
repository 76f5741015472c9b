"""Tests for theanets.optimizers: Dataset, the update rules and early stopping."""

import collections
import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.sparse

from theanets import backend, util
from theanets import optimizers as O

ALGOS = ['sgd', 'nag', 'rprop', 'adagrad', 'rmsprop', 'adadelta', 'esgd', 'adam']
W_TRUE = np.array([1.0, -2.0, 0.5], 'f')


def make_data(n=64, seed=0, w=W_TRUE, bias=0.3):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, 3).astype('f')
    return [x, (x.dot(w) + bias).astype('f')]


class Problem(object):
    """Linear regression y ~ x.w + b with a squared-error loss (4 parameters)."""

    def __init__(self, algo='sgd', monitor_gradients=False, extra_param=False, scale=1.0):
        self.w = pytensor.shared(np.zeros(3, 'f'), name='w')
        self.b = pytensor.shared(np.float32(0), name='b')
        self.x = pt.matrix('x')
        self.y = pt.vector('y')
        err = self.x.dot(self.w) + self.b - self.y
        params = [self.w, self.b]
        if extra_param:
            self.unused = pytensor.shared(np.ones(2, 'f'), name='unused')
            params.append(self.unused)
        self.opt = O.build(algo, np.float32(scale) * pt.sqr(err).mean(), params,
                           [self.x, self.y],
                           monitors=[('err', abs(err).mean())],
                           monitor_gradients=monitor_gradients)

    @property
    def values(self):
        return np.concatenate([self.w.get_value(), [self.b.get_value()]])

    def set_values(self, values):
        self.w.set_value(np.asarray(values[:3], 'f'))
        self.b.set_value(np.float32(values[3]))

    def one_step(self, data, **kwargs):
        """Run a single full-batch update and return the parameters after it."""
        it = self.opt.iterate(data, batch_size=0, validate_every=1000, **kwargs)
        next(it)
        after = self.values
        it.close()
        return after

    def steps(self, data, count, **kwargs):
        """Run ``count`` full-batch updates; return the parameters after each."""
        it = self.opt.iterate(data, batch_size=0, validate_every=1000, **kwargs)
        result = []
        for _ in range(count):
            next(it)
            result.append(self.values)
        it.close()
        return result


def gradient(params, data):
    """NumPy oracle: gradient of mean((x.w + b - y)^2) w.r.t. (w, b)."""
    x, y = data
    r = x.dot(params[:3]) + params[3] - y
    return np.concatenate([2 * x.T.dot(r) / len(y), [2 * r.mean()]])


# -- the algorithms -------------------------------------------------------------

SETTINGS = dict(
    sgd=dict(learning_rate=0.05), nag=dict(learning_rate=0.05, momentum=0.5),
    rprop=dict(learning_rate=0.05), adagrad=dict(learning_rate=0.3),
    rmsprop=dict(learning_rate=0.03), esgd=dict(learning_rate=0.05),
    adam=dict(learning_rate=0.05),
    # ADADELTA has no learning rate; its first steps are about sqrt(rms_regularizer).
    adadelta=dict(rms_regularizer=1e-3))


@pytest.mark.parametrize('algo', ALGOS)
def test_every_algorithm_lowers_the_loss(algo):
    data = make_data()
    p = Problem(algo)
    before = p.opt.evaluate(data)['loss']
    p.opt.minimize(data, max_updates=20, batch_size=16, rng=1, **SETTINGS[algo])
    after = p.opt.evaluate(data)['loss']
    assert np.all(np.isfinite(p.values))
    assert after < before * 0.05


def _gamma(halflife):
    return np.exp(-np.log(2) / halflife)


FIRST_STEPS = {
    # algo -> (hyperparameters, expected first step as a function of gradient g and lr)
    'sgd': ({}, lambda g, lr: lr * g),
    'nag': ({}, lambda g, lr: lr * g),
    'rprop': ({}, lambda g, lr: lr * np.sign(g)),
    'adagrad': ({}, lambda g, lr: lr * g / np.sqrt(g * g + 1e-8)),
    'rmsprop': ({'rms_halflife': 5}, lambda g, lr: lr * np.sign(g) / np.sqrt(
        _gamma(5) * (1 - _gamma(5)))),
    'adadelta': ({'rms_regularizer': 1e-4}, lambda g, lr: g * np.sqrt(1e-4) / np.sqrt(
        (1 - _gamma(14)) * g * g + 1e-4)),
    'adam': ({}, lambda g, lr: lr * g / (np.abs(g) + 1e-8)),
}


@pytest.mark.parametrize('algo', sorted(FIRST_STEPS))
def test_first_step_matches_numpy_oracle(algo):
    data = make_data()
    p = Problem(algo)
    g = gradient(p.values, data)
    kwargs, delta = FIRST_STEPS[algo]
    after = p.one_step(data, learning_rate=0.01, **kwargs)
    np.testing.assert_allclose(after, -delta(g, 0.01), rtol=2e-4, atol=1e-7)


# NumPy oracles of the update rules: (gradient, state dict, step number t, hyperparameters)
# -> the step subtracted from the parameters. ``state`` starts as zeros.

def np_sgd(g, s, t, learning_rate):
    return learning_rate * g


def np_nag(g, s, t, learning_rate, momentum):
    s['vel'] = momentum ** 2 * s['vel'] - (1 + momentum) * learning_rate * g
    return -s['vel']


def np_rprop(g, s, t, learning_rate, rprop_increase, rprop_decrease, rprop_min_step,
             rprop_max_step):
    if t == 1:
        s['step'] = np.full_like(g, learning_rate)
    agreement = g * s['grad']
    factor = np.where(agreement > 0, rprop_increase,
                      np.where(agreement < 0, rprop_decrease, 1.0))
    unclipped = s['step'] * factor
    s['step'] = np.clip(unclipped, rprop_min_step, rprop_max_step)
    s['flips'] += agreement < 0
    s['limited'] += (unclipped < rprop_min_step) | (unclipped > rprop_max_step)
    s['grad'] = np.where(agreement < 0, 0, g)
    return np.sign(s['grad']) * s['step']


def np_adagrad(g, s, t, learning_rate):
    s['g2'] = s['g2'] + g * g
    return learning_rate * g / np.sqrt(s['g2'] + 1e-8)


def np_rmsprop(g, s, t, learning_rate, rms_halflife):
    gamma = _gamma(rms_halflife)
    s['g1'] = gamma * s['g1'] + (1 - gamma) * g
    s['g2'] = gamma * s['g2'] + (1 - gamma) * g * g
    return learning_rate * g / np.sqrt(s['g2'] - s['g1'] ** 2 + 1e-8)


def np_adadelta(g, s, t, rms_halflife, rms_regularizer):
    gamma = _gamma(rms_halflife)
    s['g2'] = gamma * s['g2'] + (1 - gamma) * g * g
    delta = g * np.sqrt(s['x2'] + rms_regularizer) / np.sqrt(s['g2'] + rms_regularizer)
    s['x2'] = gamma * s['x2'] + (1 - gamma) * delta * delta
    return delta


def np_adam(g, s, t, learning_rate, beta1_halflife, beta2_halflife):
    b1, b2 = _gamma(beta1_halflife), _gamma(beta2_halflife)
    s['m'] = b1 * s['m'] + (1 - b1) * g
    s['v'] = b2 * s['v'] + (1 - b2) * g * g
    return learning_rate * (s['m'] / (1 - b1 ** t)) / (np.sqrt(s['v'] / (1 - b2 ** t)) + 1e-8)


ORACLES = {
    'sgd': (np_sgd, dict(learning_rate=0.05)),
    'nag': (np_nag, dict(learning_rate=0.02, momentum=0.5)),
    # steps grow, hit the upper limit, and shrink to the lower one after a sign flip
    'rprop': (np_rprop, dict(learning_rate=0.5, rprop_increase=1.5, rprop_decrease=0.3,
                             rprop_min_step=0.2, rprop_max_step=0.6)),
    'adagrad': (np_adagrad, dict(learning_rate=0.1)),
    'rmsprop': (np_rmsprop, dict(learning_rate=0.01, rms_halflife=3)),
    'adadelta': (np_adadelta, dict(rms_halflife=3, rms_regularizer=1e-2)),
    'adam': (np_adam, dict(learning_rate=0.05, beta1_halflife=2, beta2_halflife=5)),
}


@pytest.mark.parametrize('algo', sorted(ORACLES))
def test_four_steps_match_numpy_oracle(algo):
    """Four full-batch steps follow the oracle: every state variable takes part."""
    data = make_data()
    oracle, kwargs = ORACLES[algo]
    params, state, expected = np.zeros(4), collections.defaultdict(lambda: np.zeros(4)), []
    for t in range(1, 5):
        params = params - oracle(gradient(params, data), state, t, **kwargs)
        expected.append(params)
    if algo == 'rprop':
        assert state['flips'].any() and state['limited'].any()
    got = Problem(algo).steps(data, 4, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def esgd_first_step(data, start, scale=1.0):
    p = Problem('esgd', scale=scale)
    p.set_values(start)
    return p.one_step(data, learning_rate=0.01, rng=5) - start


def test_esgd_steps_scale_with_the_gradient_over_the_curvature():
    """ESGD divides by a (random) estimate of the Hessian's diagonal, not by the gradient.

    On a quadratic loss the Hessian is the same everywhere, so with the same
    random draws the first step is the gradient times one fixed vector; and
    multiplying the loss by a constant scales the gradient and the Hessian
    alike, leaving the step unchanged.
    """
    data = make_data()
    far, near = np.zeros(4), np.array([0.9, -1.8, 0.45, 0.28])
    g_far, g_near = gradient(far, data), gradient(near, data)
    step_far, step_near = esgd_first_step(data, far), esgd_first_step(data, near)
    assert np.all(np.abs(g_far) > 2 * np.abs(g_near))
    np.testing.assert_allclose(step_far / g_far, step_near / g_near, rtol=1e-3)
    np.testing.assert_allclose(esgd_first_step(data, far, scale=100.0), step_far, rtol=1e-3)


def test_rprop_step_grows_while_sign_agrees():
    data = make_data()
    p = Problem('rprop')
    it = p.opt.iterate(data, batch_size=0, validate_every=1000, learning_rate=0.01,
                       rprop_increase=1.5)
    next(it)
    first = p.values
    next(it)
    second = p.values
    it.close()
    # far from the optimum, the gradient keeps its sign: second step = 1.5 * first step.
    np.testing.assert_allclose(second - first, 1.5 * first, rtol=1e-5)


@pytest.mark.parametrize('nesterov', [False, True])
def test_momentum_two_steps(nesterov):
    data = make_data()
    p = Problem('sgd')
    lr, mu = 0.01, 0.5
    it = p.opt.iterate(data, batch_size=0, validate_every=1000, learning_rate=lr,
                       momentum=mu, nesterov=nesterov)
    next(it)
    next(it)
    got = p.values
    it.close()
    # NumPy oracle of the velocity rule.
    params, vel = np.zeros(4), np.zeros(4)
    for _ in range(2):
        delta = lr * gradient(params, data)
        vel = mu * mu * vel - (1 + mu) * delta if nesterov else mu * vel - delta
        params = params + vel
    np.testing.assert_allclose(got, params, rtol=1e-4)


def test_nag_forces_nesterov():
    data = make_data()
    nag, sgd = Problem('nag'), Problem('sgd')
    a = nag.one_step(data, learning_rate=0.01, momentum=0.5)
    b = sgd.one_step(data, learning_rate=0.01, momentum=0.5, nesterov=True)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(a, sgd.one_step(data, learning_rate=0.01, momentum=0.5))


@pytest.mark.parametrize('method', ['rop', 'lop', 'grad'])
def test_esgd_hessian_vector_product(method):
    p = Problem('esgd')
    x, y = make_data(n=16)
    v = pt.vector('v')
    p.opt._building = {'hv_method': method}
    grad = pytensor.grad(p.opt.loss, p.w)
    hv = backend.function([p.x, p.y, v], p.opt._hessian_times(p.w, grad, v))
    vec = np.array([1.0, 2.0, -1.0], 'f')
    np.testing.assert_allclose(hv(x, y, vec), 2 * x.T.dot(x).dot(vec) / len(y), rtol=1e-4)


def test_esgd_runs_with_each_method_and_is_seeded():
    data = make_data()
    results = []
    for method in ['rop', 'lop', 'rop']:
        p = Problem('esgd')
        p.opt.minimize(data, learning_rate=0.05, max_updates=3, batch_size=16, rng=3,
                       hv_method=method, validate_every=1)
        results.append(p.values)
    np.testing.assert_allclose(results[0], results[2])
    assert np.all(np.isfinite(results[1]))


# -- gradient clipping ------------------------------------------------------------

@pytest.mark.parametrize('name', ['max_gradient_elem', 'max_gradient_clip', 'gradient_clip'])
def test_elementwise_clipping(name):
    data = make_data()
    p = Problem('sgd')
    g = gradient(p.values, data)
    assert np.abs(g).max() > 1  # the clip below is active
    after = p.one_step(data, learning_rate=1.0, **{name: 0.1})
    np.testing.assert_allclose(after, -np.clip(g, -0.1, 0.1), rtol=1e-5)


def test_norm_clipping_is_per_parameter():
    data = make_data()
    p = Problem('sgd')
    g = gradient(p.values, data)
    after = p.one_step(data, learning_rate=1.0, max_gradient_norm=0.5)
    gw = g[:3] * 0.5 / np.linalg.norm(g[:3])
    gb = g[3:] * min(1, 0.5 / abs(g[3]))
    np.testing.assert_allclose(after, -np.concatenate([gw, gb]), rtol=1e-5)
    assert np.linalg.norm(after[:3]) == pytest.approx(0.5, rel=1e-5)


def test_elementwise_clipping_takes_precedence():
    data = make_data()
    p = Problem('sgd')
    g = gradient(p.values, data)
    after = p.one_step(data, learning_rate=1.0, max_gradient_elem=0.1, max_gradient_norm=5)
    np.testing.assert_allclose(after, -np.clip(g, -0.1, 0.1), rtol=1e-5)


# -- early stopping and restoring the best parameters ----------------------------

def worsening():
    """Training data pulls w towards W_TRUE, validation data towards -W_TRUE."""
    return make_data(seed=0), make_data(seed=1, w=-W_TRUE, bias=-0.3)


@pytest.mark.parametrize('patience', [0, 2])
def test_patience_stops_and_restores_best(patience, caplog):
    train, valid = worsening()
    p = Problem('sgd')
    with caplog.at_level(logging.INFO, logger='theanets.optimizers'):
        results = list(p.opt.iterate(train, valid, learning_rate=0.05, patience=patience,
                                     validate_every=1, max_updates=50))
    # validation 0 is the best; each later one fails; stop after patience + 1 failures.
    assert len(results) == patience + 1
    np.testing.assert_array_equal(p.values, np.zeros(4))
    assert 'patience elapsed!' in caplog.text


def test_validate_every_spaces_validations():
    train, valid = worsening()
    p = Problem('sgd')
    results = list(p.opt.iterate(train, valid, learning_rate=0.05, patience=1,
                                 validate_every=3, max_updates=50))
    # validations at epochs 0 (best), 3 and 6 (failures): stop before epoch 7.
    assert len(results) == 6
    assert results[2][1] is results[0][1] and results[3][1] is not results[2][1]


def test_nan_validation_loss_never_improves():
    train = make_data()
    valid = [np.full((8, 3), np.nan, 'f'), np.zeros(8, 'f')]
    p = Problem('sgd')
    results = list(p.opt.iterate(train, valid, learning_rate=0.05, patience=2,
                                 validate_every=1, max_updates=20))
    assert len(results) == 2
    np.testing.assert_array_equal(p.values, np.zeros(4))  # the initial values


def test_min_improvement_is_relative():
    data = make_data()
    counts = []
    for min_improvement in [0, 0.9]:
        p = Problem('sgd')
        counts.append(len(list(p.opt.iterate(
            data, learning_rate=0.01, patience=0, validate_every=1, max_updates=30,
            min_improvement=min_improvement))))
    assert counts == [30, 1]


def test_max_updates_validates_the_final_params():
    data = make_data()
    p = Problem('sgd')
    seen = []
    for _ in p.opt.iterate(data, learning_rate=0.01, validate_every=2, max_updates=5):
        seen.append(p.values)
    assert len(seen) == 5
    # validations ran after 0, 2 and 4 updates, and once more after the 5th (the
    # last epoch fell between validations); the loss keeps falling, so the final
    # parameters are the best and are kept.
    np.testing.assert_array_equal(p.values, seen[4])


def test_max_updates_keeps_best_when_final_params_are_worse():
    train, valid = worsening()
    p = Problem('sgd')
    list(p.opt.iterate(train, valid, learning_rate=0.05, validate_every=10, max_updates=3))
    np.testing.assert_array_equal(p.values, np.zeros(4))


def test_breaking_out_restores_best():
    train, valid = worsening()
    p = Problem('sgd')
    for i, _ in enumerate(p.opt.iterate(train, valid, learning_rate=0.05, patience=100,
                                        validate_every=1)):
        if i == 3:
            assert not np.array_equal(p.values, np.zeros(4))
            break
    np.testing.assert_array_equal(p.values, np.zeros(4))


def test_closing_the_generator_restores_best():
    train, valid = worsening()
    p = Problem('sgd')
    it = p.opt.iterate(train, valid, learning_rate=0.05, validate_every=1)
    next(it)
    next(it)
    it.close()
    np.testing.assert_array_equal(p.values, np.zeros(4))


def _fail_on_call(opt, number, error):
    """Make the ``number``-th training batch of ``opt`` raise ``error``."""
    original, calls = opt._step, [0]

    def step(batch):
        calls[0] += 1
        if calls[0] == number:
            raise error
        return original(batch)
    opt._step = step


def test_keyboard_interrupt_ends_iteration_and_restores_best(caplog):
    train, valid = worsening()
    p = Problem('sgd')
    _fail_on_call(p.opt, 5, KeyboardInterrupt())  # 2 batches per epoch: during epoch 3
    with caplog.at_level(logging.INFO, logger='theanets.optimizers'):
        results = list(p.opt.iterate(train, valid, learning_rate=0.05, batch_size=32,
                                     validate_every=1, patience=100))
    assert len(results) == 2
    np.testing.assert_array_equal(p.values, np.zeros(4))
    assert 'interrupted!' in caplog.text


def test_other_exceptions_restore_best_and_propagate():
    train, valid = worsening()
    p = Problem('sgd')
    _fail_on_call(p.opt, 5, RuntimeError('boom'))
    with pytest.raises(RuntimeError, match='boom'):
        for _ in p.opt.iterate(train, valid, learning_rate=0.05, batch_size=32,
                               validate_every=1, patience=100):
            pass
    np.testing.assert_array_equal(p.values, np.zeros(4))


def test_diverging_loss_raises_and_leaves_params_finite():
    data = make_data()
    p = Problem('sgd')
    with pytest.raises(O.NonFiniteLossError, match='diverged.*lower learning_rate') as info:
        p.opt.minimize(data, learning_rate=1e4, batch_size=8, max_updates=100)
    assert isinstance(info.value, FloatingPointError)
    assert np.all(np.isfinite(p.values))
    np.testing.assert_array_equal(p.values, np.zeros(4))


# -- monitors, evaluation, logging ---------------------------------------------------

def test_monitor_order_and_gradient_monitors():
    data = make_data()
    p = Problem('sgd', monitor_gradients=True)
    train_mon, valid_mon = next(iter(p.opt.iterate(data, batch_size=0, learning_rate=0.01)))
    for monitors in (train_mon, valid_mon):
        assert isinstance(monitors, collections.OrderedDict)
        assert list(monitors) == ['loss', 'err', 'grad(w)', 'grad(b)']
    g = gradient(np.zeros(4), data)
    assert valid_mon['grad(w)'] == pytest.approx(np.sum(g[:3] ** 2), rel=1e-5)
    assert valid_mon['grad(b)'] == pytest.approx(g[3] ** 2, rel=1e-5)
    # training monitors are computed before the update, so epoch 1 equals validation 0.
    assert train_mon['loss'] == pytest.approx(valid_mon['loss'], rel=1e-6)


def test_evaluate_averages_batches():
    x, y = make_data(n=8)
    p = Problem('sgd')
    result = p.opt.evaluate(O.Dataset([x, y], batch_size=4))
    assert result['loss'] == pytest.approx(np.mean([np.mean(y[:4] ** 2),
                                                    np.mean(y[4:] ** 2)]), rel=1e-5)
    assert result['err'] == pytest.approx(np.mean(abs(y)), rel=1e-5)


def test_set_params():
    p = Problem('sgd')
    with pytest.raises(util.ConfigurationError, match='no best'):
        p.opt.set_params('best')
    p.opt.set_params([np.ones(3), 2.0])
    np.testing.assert_array_equal(p.values, [1, 1, 1, 2])
    assert p.b.get_value().dtype == np.float32
    with pytest.raises(util.ConfigurationError, match='expected 2'):
        p.opt.set_params([np.ones(3)])


def test_log_lines_and_progress_bar(caplog):
    data = make_data()
    p = Problem('sgd')
    with caplog.at_level(logging.INFO, logger='theanets.optimizers'):
        p.opt.minimize(data, learning_rate=0.01, max_updates=2, progress=True)
    text = caplog.text
    assert 'compiling SGD optimizer' in text
    assert 'train: 2 of 2 mini-batches from (64, 3), (64,)' in text
    assert 'validation 0 loss=' in text and ' *' in text
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith('SGD 1 ')][0]
    assert line.split()[2].startswith('loss=') and len(line.split()[2].split('.')[1]) == 6


def test_unconnected_parameter_is_left_alone(caplog):
    data = make_data()
    with caplog.at_level(logging.WARNING, logger='theanets.optimizers'):
        p = Problem('adam', extra_param=True)
        p.opt.minimize(data, learning_rate=0.05, max_updates=3)
    assert 'does not depend on parameter unused' in caplog.text
    np.testing.assert_array_equal(p.unused.get_value(), [1, 1])


# -- compilation reuse ----------------------------------------------------------------

def test_compiled_function_is_reused_across_iterate_calls():
    data = make_data()
    p = Problem('sgd')
    first = p.one_step(data, learning_rate=0.01)
    count = backend.compile_count()
    p.opt.set_params([np.zeros(3), 0.0])
    second = p.one_step(data, learning_rate=0.03)
    assert backend.compile_count() == count
    np.testing.assert_allclose(second, 3 * first, rtol=1e-5)  # the new value is used
    # a structural change (momentum on) compiles once; new momentum values do not.
    p.one_step(data, learning_rate=0.01, momentum=0.5)
    assert backend.compile_count() == count + 1
    p.one_step(data, learning_rate=0.01, momentum=0.9)
    assert backend.compile_count() == count + 1


@pytest.mark.parametrize('algo, kwargs', [
    ('rmsprop', {}), ('sgd', {'momentum': 0.5}), ('rprop', {'rprop_increase': 2.0})])
def test_algorithm_state_is_reset_by_each_iterate_call(algo, kwargs):
    data = make_data()
    p = Problem(algo)
    first = p.one_step(data, learning_rate=0.01, **kwargs)
    p.opt.set_params([np.zeros(3), 0.0])
    second = p.one_step(data, learning_rate=0.01, **kwargs)
    np.testing.assert_allclose(second, first, rtol=1e-6)


# -- hyperparameters ---------------------------------------------------------------------

@pytest.mark.parametrize('name, value', [
    ('learning_rate', -1e-3), ('learning_rate', float('nan')),
    ('momentum', 1.0), ('momentum', -0.1), ('patience', -1), ('patience', 1.5),
    ('validate_every', 0), ('min_improvement', -1), ('max_gradient_norm', -1),
    ('max_updates', 0), ('nesterov', 'yes'), ('progress', 1), ('batch_size', 2.5),
])
def test_bad_hyperparameter_values(name, value):
    p = Problem('sgd')
    with pytest.raises(util.ConfigurationError, match=name):
        p.opt.iterate(make_data(), **{name: value})  # raised by the call, not by next()


@pytest.mark.parametrize('algo, name, value', [
    ('rmsprop', 'rms_halflife', 0), ('adam', 'beta1_halflife', -1),
    ('esgd', 'hv_method', 'fd'), ('rprop', 'rprop_max_step', -1),
])
def test_bad_algorithm_hyperparameter_values(algo, name, value):
    p = Problem(algo)
    with pytest.raises(util.ConfigurationError, match=name):
        p.opt.iterate(make_data(), **{name: value})


def test_unknown_hyperparameters():
    p = Problem('sgd')
    with pytest.raises(TypeError, match="'min_improvment'.*did you mean 'min_improvement'"):
        p.opt.iterate(make_data(), min_improvment=0.1)
    with pytest.raises(TypeError, match='rms_halflife is not a hyperparameter of .sgd.'
                                        '.*rmsprop'):
        p.opt.iterate(make_data(), rms_halflife=5)


def test_conflicting_synonyms_and_monitor_gradients():
    p = Problem('sgd')
    with pytest.raises(util.ConfigurationError, match='gradient_clip'):
        p.opt.iterate(make_data(), gradient_clip=1, max_gradient_elem=2)
    with pytest.raises(util.ConfigurationError, match='monitor_gradients'):
        p.opt.iterate(make_data(), monitor_gradients=True)


def test_hyperparameter_names():
    sgd = O.hyperparameter_names('sgd')
    assert {'learning_rate', 'momentum', 'nesterov', 'patience', 'validate_every',
            'min_improvement', 'max_gradient_norm', 'max_gradient_elem', 'gradient_clip',
            'max_gradient_clip', 'max_updates', 'batch_size', 'iteration_size',
            'train_batches', 'valid_batches', 'rng', 'progress'} <= sgd
    assert 'rms_halflife' not in sgd
    assert {'rms_halflife', 'rms_regularizer'} <= O.hyperparameter_names('RMSProp')
    assert 'hv_method' in O.ESGD.hyperparameter_names()
    everything = O.Optimizer.hyperparameter_names()
    assert {'rprop_increase', 'beta2_halflife', 'hv_method'} <= everything


def test_defaults_are_downhills():
    p = Problem('adam')
    it = p.opt.iterate(make_data(), max_updates=1)
    next(it)
    it.close()
    config = p.opt.config
    assert (config['learning_rate'], config['momentum'], config['patience'],
            config['validate_every'], config['min_improvement']) == (1e-4, 0, 5, 10, 0)
    assert (config['beta1_halflife'], config['beta2_halflife']) == (7, 69)
    assert p.opt._hp('learning_rate').get_value() == np.float32(1e-4)


def test_unknown_algorithm_lists_known_names():
    p = Problem('sgd')
    with pytest.raises(KeyError, match='known optimizers: adadelta, adagrad, adam, esgd, '
                                       'nag, rmsprop, rprop, sgd'):
        O.build('rmsprpo', p.opt.loss, p.opt.params, p.opt.inputs)


def test_bad_constructor_arguments():
    p = Problem('sgd')
    with pytest.raises(util.ConfigurationError, match='scalar'):
        O.build('sgd', p.x, p.opt.params, p.opt.inputs)
    with pytest.raises(util.ConfigurationError, match='shared'):
        O.build('sgd', p.opt.loss, [p.x], p.opt.inputs)
    with pytest.raises(util.ConfigurationError, match='monitor'):
        O.build('sgd', p.opt.loss, p.opt.params, p.opt.inputs, monitors=[('m', p.x)])


# -- Dataset -----------------------------------------------------------------------------

def labelled(n):
    return [np.arange(2 * n).reshape(n, 2), np.arange(n)]


def test_dataset_batches_are_contiguous_and_cover_everything(caplog):
    with caplog.at_level(logging.INFO, logger='theanets.optimizers'):
        ds = O.Dataset(labelled(10), name='train', batch_size=4, rng=0)
    assert 'train: 3 of 3 mini-batches from (10, 2), (10,)' in caplog.text
    assert (ds.iteration_size, ds.num_examples, ds.num_batches) == (3, 10, 3)
    batches = list(ds)
    assert sorted(len(y) for _, y in batches) == [2, 4, 4]
    for x, y in batches:
        np.testing.assert_array_equal(y, np.arange(y[0], y[0] + len(y)))
        np.testing.assert_array_equal(x[:, 0], 2 * y)
    assert sorted(np.concatenate([y for _, y in batches])) == list(range(10))


def test_dataset_shuffles_batch_order_with_rng():
    def orders(seed, passes=6):
        ds = O.Dataset(labelled(40), batch_size=5, rng=seed)
        return [tuple(int(y[0]) for _, y in ds) for _ in range(passes)]
    first = orders(3)
    assert first == orders(3)  # seeded
    assert len(set(first)) > 1  # reshuffled when exhausted
    assert all(sorted(o) == list(range(0, 40, 5)) for o in first)
    plain = O.Dataset(labelled(40), batch_size=5, rng=3)
    in_order = [tuple(int(y[0]) for _, y in plain.iterate(shuffle=False)) for _ in range(3)]
    assert len(set(in_order)) == 1


def test_dataset_iteration_size_wraps():
    ds = O.Dataset(labelled(9), batch_size=3, iteration_size=7, rng=0)
    starts = [int(y[0]) for _, y in ds]
    assert len(starts) == 7
    assert sorted(starts[:3]) == [0, 3, 6] and sorted(starts[3:6]) == [0, 3, 6]


def test_dataset_one_batch_when_batch_size_not_positive():
    for size in [0, -1]:
        (x, y), = list(O.Dataset(labelled(5), batch_size=size))
        assert len(y) == 5


def test_dataset_along_another_axis():
    x = np.arange(12).reshape(2, 6)
    ds = O.Dataset([x], batch_size=4, axis=1, rng=0)
    assert sorted(b[0].shape for b in ds) == [(2, 2), (2, 4)]


@pytest.mark.parametrize('fmt', ['csr', 'csc'])
def test_dataset_sparse_rows(fmt):
    dense = np.arange(20.0).reshape(10, 2)
    ds = O.Dataset([scipy.sparse.csr_matrix(dense).asformat(fmt), np.arange(10)],
                   batch_size=3, rng=0)
    for x, y in ds:
        assert scipy.sparse.issparse(x)
        np.testing.assert_array_equal(x.toarray(), dense[y])


def test_dataset_from_callable():
    calls = []

    def batch():
        calls.append(1)
        return [np.zeros((2, 3))]
    ds = O.Dataset(batch, name='gen')
    assert ds.iteration_size == 100 and ds.num_examples is None
    assert len(list(ds)) == 100 and len(calls) == 100

    class Sized(object):
        def __call__(self):
            return (np.zeros(1), )

        def __len__(self):
            return 4
    assert len(list(O.Dataset(Sized()))) == 4
    assert len(list(O.Dataset(batch, iteration_size=3))) == 3
    with pytest.raises(util.ConfigurationError, match='must return a list'):
        next(iter(O.Dataset(lambda: np.zeros(3))))


def test_dataset_errors():
    with pytest.raises(util.ConfigurationError, match=r'array 1 .*\(3, 2\).*\(4,\)|'
                                                      r'\(3, 2\) but array 1 has shape \(4,\)'):
        O.Dataset([np.zeros((3, 2)), np.zeros(4)])
    with pytest.raises(util.ConfigurationError, match='no arrays'):
        O.Dataset([])
    with pytest.raises(util.ConfigurationError, match='empty'):
        O.Dataset([np.zeros((0, 3))])
    with pytest.raises(util.ConfigurationError, match='list of arrays'):
        O.Dataset(np.zeros((3, 2)))
    with pytest.raises(util.ConfigurationError, match='batch_size'):
        O.Dataset(labelled(3), batch_size='4')
    with pytest.raises(util.ConfigurationError, match='iteration_size'):
        O.Dataset(labelled(3), iteration_size=0)


def test_iterate_wraps_raw_data_with_batch_settings():
    data = make_data(n=64)
    p = Problem('sgd')
    sizes = []
    original = p.opt._step

    def step(batch):
        sizes.append(len(batch[1]))
        return original(batch)
    p.opt._step = step
    p.opt.minimize(data, learning_rate=0.01, batch_size=16, train_batches=3, max_updates=2)
    assert sizes == [16] * 6
    sizes[:] = []
    p.opt.minimize(O.Dataset(data, batch_size=8), learning_rate=0.01, max_updates=1)
    assert sizes == [8] * 8


@pytest.mark.parametrize('algo', [a for a in ALGOS if a != 'adadelta'])
def test_zero_learning_rate_leaves_parameters_unchanged(algo):
    # zero is a value, not "unset": downhill accepted it, e.g. to freeze a model
    p = Problem(algo)
    data = make_data()
    p.w.set_value(np.array([0.5, 0.1, -0.3], 'f'))
    before = p.values
    after = p.one_step(data, learning_rate=0.0, momentum=0.5)
    np.testing.assert_array_equal(after, before)
    assert not np.array_equal(p.one_step(data, learning_rate=0.01), before)


def test_zero_rms_regularizer_is_accepted():
    p = Problem('rmsprop')
    after = p.one_step(make_data(), learning_rate=0.01, rms_regularizer=0.0)
    assert np.isfinite(after).all() and not np.array_equal(after, np.zeros(4))


def _two_layer_problem(algo):
    """A ReLU layer then a linear one, parameters with static shapes as networks make them."""
    rng = np.random.RandomState(3)
    w1 = pytensor.shared(rng.randn(6, 5).astype('f'), name='w1', shape=(6, 5))
    w2 = pytensor.shared(rng.randn(5, 4).astype('f'), name='w2', shape=(5, 4))
    x, y = pt.matrix('x'), pt.matrix('y')
    loss = pt.sqr(pt.maximum(0, x.dot(w1)).dot(w2) - y).mean()
    data = [rng.randn(8, 6).astype('f'), rng.randn(8, 4).astype('f')]
    return O.build(algo, loss, [w1, w2], [x, y]), data


def _compiled_step(opt, data, **kwargs):
    it = opt.iterate(data, batch_size=0, validate_every=1000, **kwargs)
    next(it)
    it.close()
    return getattr(opt.function, 'function', opt.function)


def _matrix_products(function):
    return [node for node in function.maker.fgraph.toposort()
            if type(node.op).__name__ in ('Dot22', 'Dot22Scalar', 'Gemm', 'Dot')]


@pytest.mark.parametrize('algo, kwargs', [
    ('sgd', {}), ('sgd', {'momentum': 0.9}), ('rmsprop', {}), ('adam', {}), ('adagrad', {})])
def test_each_matrix_product_runs_once_per_step(c_mode, algo, kwargs):
    # two forward products, two weight gradients and one input gradient: PyTensor's
    # rewrite into Dot22Scalar repeated the weight gradients that several updates read
    opt, data = _two_layer_problem(algo)
    assert len(_matrix_products(_compiled_step(opt, data, **kwargs))) == 5


def test_momentum_folds_each_weight_gradient_into_the_velocity_product(c_mode):
    # mu * vel - lr * dot(x.T, d) is one in-place Gemm on the velocity, for the first
    # layer too (whose gradient pytensor.grad ends with a shape assertion)
    opt, data = _two_layer_problem('sgd')
    gemms = [node for node in _matrix_products(_compiled_step(opt, data, momentum=0.9))
             if type(node.op).__name__ == 'Gemm']
    accumulated = [node.inputs[0].name for node in gemms]
    assert accumulated.count('w1_vel') == 1 and accumulated.count('w2_vel') == 1


@pytest.mark.parametrize('algo', ['rmsprop', 'adam', 'adagrad', 'adadelta'])
def test_each_weight_update_is_one_flat_loop_in_place(c_mode, algo):
    # the hyperparameters are broadcast scalars: PyTensor's Elemwise would run a strided loop
    from theanets.ops.elemwise import FlatElemwise
    opt, data = _two_layer_problem(algo)
    flat = [node for node in _compiled_step(opt, data).maker.fgraph.toposort()
            if isinstance(node.op, FlatElemwise)]
    for weight in ('w1', 'w2'):
        updates = [n for n in flat if weight in [v.name for v in n.inputs]]
        assert len(updates) == 1 and updates[0].op.inplace_pattern
