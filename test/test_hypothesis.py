"""Property-based tests: random small models, data and options either work or fail clearly.

Hypothesis draws a model (kind, 2-4 layers of 1-4 units, forms ff, tied and
classifier, activations from a list), then data shaped for that model with
at most one deliberate mistake, and training options with at most one
mistake. Each example must either

- train for one update and predict arrays of the expected shape, or
- raise one of the documented errors (ConfigurationError, ValueError,
  TypeError, KeyError, or NonFiniteLossError for a diverging loss) from
  theanets' own code, never from inside PyTensor or NumPy.

A deliberate mistake must raise, and before any function is compiled.
Most examples hit a validation error, so few of them compile anything; the
examples are derandomized, so the run time is stable.
"""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import theanets
from theanets import backend
from theanets.optimizers import NonFiniteLossError
from theanets.util import ConfigurationError

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

DOCUMENTED = (ConfigurationError, ValueError, TypeError, KeyError, NonFiniteLossError)
PACKAGE = os.path.dirname(os.path.abspath(theanets.__file__))

ACTIVATIONS = ['relu', 'tanh', 'linear', 'sigmoid', 'softplus', 'prelu', 'norm:z', 'maxout:2']
KINDS = ['regressor', 'classifier', 'autoencoder', 'recurrent']
DATA_MISTAKES = ['columns', 'ndim', 'examples', 'empty', 'nan', 'inf-target', 'float-labels',
                 'label-range', 'target-columns', 'weights-shape', 'negative-weights',
                 'missing-array', 'extra-array', 'not-a-list', 'strings']
OPTION_MISTAKES = ['algo', 'learning-rate-negative', 'learning-rate-str',
                   'batch-float', 'unknown-kwarg', 'other-algorithm-kwarg', 'max-updates-zero',
                   'negative-regularizer', 'dropout-range']


def raised_in_theanets(err):
    """True if the innermost frame of the traceback is in the theanets package."""
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(PACKAGE)


@st.composite
def layer_specs(draw):
    specs = [draw(st.integers(1, 4))]
    for _ in range(draw(st.integers(1, 3))):
        form = draw(st.sampled_from(['ff', 'ff', 'tied', 'classifier']))
        size = draw(st.integers(1, 4))
        activation = draw(st.sampled_from(ACTIVATIONS))
        if form == 'tied':
            specs.append(draw(st.sampled_from([('tied', activation), (size, 'tied')])))
        elif form == 'classifier':
            specs.append((size, 'classifier'))
        else:
            specs.append((size, activation))
    return specs


def build(kind, specs, weighted):
    if kind == 'recurrent':
        return theanets.recurrent.Regressor([specs[0], (specs[-1][0], 'rnn'), 2])
    model = dict(regressor=theanets.Regressor, classifier=theanets.Classifier,
                 autoencoder=theanets.Autoencoder)[kind]
    return model(specs, weighted=weighted)


def make_data(net, kind, n, rng):
    """Return correct training data for ``net`` (recurrent models get 2-D data: a mistake)."""
    n_in = net.layers[0].output_size
    n_out = net.layers[-1].output_size
    x = rng.randn(n, n_in).astype('f')
    if kind == 'classifier':
        target = rng.randint(n_out, size=n).astype('i')
    elif kind == 'autoencoder':
        target = x
    else:
        target = rng.randn(n, n_out).astype('f')
    arrays = [x] if kind == 'autoencoder' else [x, target]
    if net._weighted:
        arrays.append(np.ones(target.shape, 'f'))
    return arrays


def spoil_data(arrays, mistake, kind, net):
    """Apply one mistake; return (data, True if the data must be refused).

    Recurrent models get 2-D data, and autoencoders whose output size differs
    from their input size cannot train: both must be refused even without a
    mistake in the data.
    """
    x = arrays[0]
    target = arrays[1] if kind != 'autoencoder' else None
    if mistake == 'columns':
        return [np.hstack([x, x[:, :1]])] + arrays[1:], True
    if mistake == 'ndim':
        return [x[:, :, None]] + arrays[1:], True
    if mistake == 'examples' and len(arrays) > 1:
        return arrays[:-1] + [arrays[-1][:-1] if len(x) > 1 else arrays[-1][:0]], True
    if mistake == 'empty':
        return [a[:0] for a in arrays], True
    if mistake == 'nan':
        x = x.copy()
        x[0, 0] = np.nan
        return [x] + arrays[1:], True
    if mistake == 'inf-target' and kind == 'regressor':
        return [x, target * np.inf] + arrays[2:], True
    if mistake == 'float-labels' and kind == 'classifier':
        return [x, target + 0.5] + arrays[2:], True
    if mistake == 'label-range' and kind == 'classifier':
        return [x, target + net.layers[-1].output_size] + arrays[2:], True
    if mistake == 'target-columns' and kind == 'regressor':
        return [x, np.hstack([target, target[:, :1]])] + arrays[2:], True
    if mistake == 'weights-shape' and net._weighted:
        return arrays[:-1] + [arrays[-1][..., None]], True
    if mistake == 'negative-weights' and net._weighted:
        return arrays[:-1] + [-arrays[-1]], True
    if mistake == 'missing-array' and len(arrays) > 1:
        return arrays[:-1], True
    if mistake == 'extra-array':
        return arrays + [x], True
    if mistake == 'not-a-list':
        return x, True
    if mistake == 'strings':
        return [x.astype(str)] + arrays[1:], True
    wrong_model = kind == 'recurrent' or (
        kind == 'autoencoder' and net.layers[-1].output_size != net.layers[0].output_size)
    return arrays, wrong_model


def make_options(draw):
    algo = draw(st.sampled_from(['sgd', 'adam', 'rmsprop', 'nag', 'adagrad']))
    options = dict(algo=algo, max_updates=1,
                   batch_size=draw(st.sampled_from([1, 2, 4, 64])),
                   learning_rate=draw(st.sampled_from([1e-3, 1e-2, 0.1])))
    mistake = draw(st.sampled_from([None] * len(OPTION_MISTAKES) + OPTION_MISTAKES))
    spoil = {
        'algo': dict(algo=draw(st.sampled_from(['sdg', 'adamm', 'rms-prop', 3]))),
        'learning-rate-negative': dict(learning_rate=-0.1),
        'learning-rate-str': dict(learning_rate='fast'),
        'batch-float': dict(batch_size=2.5),
        'unknown-kwarg': dict(learnin_rate=0.1),
        'other-algorithm-kwarg': dict(beta1_halflife=3) if algo != 'adam' else dict(rms_halflife=0),
        'max-updates-zero': dict(max_updates=0),
        'negative-regularizer': dict(weight_l2=-0.5),
        'dropout-range': dict(hidden_dropout=1.5),
    }.get(mistake, {})
    options.update(spoil)
    return options, mistake is not None


def check_predictions(net, kind, x):
    n, n_out = len(x), net.layers[-1].output_size
    out = net.predict(x)
    if kind == 'classifier':
        assert out.shape == (n, ) and out.min() >= 0 and out.max() < n_out
        assert net.predict_proba(x).shape == (n, n_out)
    else:
        assert out.shape == (n, n_out)
    before = backend.compile_count()
    with pytest.raises(ConfigurationError, match='expected .* values on axis 1'):
        net.predict(np.hstack([x, x[:, :1]]))
    assert backend.compile_count() == before


@SETTINGS
@given(data=st.data())
def test_random_models_train_or_fail_clearly(data):
    draw = data.draw
    kind = draw(st.sampled_from(KINDS))
    specs = draw(layer_specs())
    weighted = draw(st.booleans())
    try:
        net = build(kind, specs, weighted)
    except DOCUMENTED as err:
        assert raised_in_theanets(err), err
        event('model refused')
        return
    rng = np.random.RandomState(draw(st.integers(0, 9)))
    arrays = make_data(net, kind, draw(st.integers(1, 6)), rng)
    mistake = draw(st.sampled_from([None] * (len(DATA_MISTAKES) // 2) + DATA_MISTAKES)) \
        if kind != 'recurrent' else None
    train_data, must_fail = spoil_data(arrays, mistake, kind, net)
    options, bad_option = make_options(draw)
    must_fail = must_fail or bad_option
    before = backend.compile_count()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net.train(train_data, **options)
    except DOCUMENTED as err:
        assert raised_in_theanets(err), 'raised inside a dependency: {!r}'.format(err)
        event('training refused: {}'.format(type(err).__name__))
        if must_fail:
            assert not isinstance(err, NonFiniteLossError), err
            assert backend.compile_count() == before, 'compiled before failing: {}'.format(err)
        else:
            assert isinstance(err, NonFiniteLossError), 'valid input refused: {!r}'.format(err)
        return
    assert not must_fail, 'accepted {} / {}'.format(mistake, options)
    event('trained')
    check_predictions(net, kind, arrays[0])
