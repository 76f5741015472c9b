"""Property-based tests: random small models, data and options either work or fail clearly.

``test_random_models_train_or_fail_clearly`` draws a model (kind, 2-4 layers
of 1-4 units, forms ff, tied and classifier, activations from a list), then
data shaped for that model with
at most one deliberate mistake, and training options with at most one
mistake. Each example must either

- train for one update and predict arrays of the expected shape, or
- raise one of the documented errors (ConfigurationError, ValueError,
  TypeError, KeyError, or NonFiniteLossError for a diverging loss) from
  theanets' own code, never from inside PyTensor or NumPy.

A deliberate mistake must raise, and before any function is compiled.
``test_random_layer_specs_build_or_fail_clearly`` does the same for random
layer specs of every family (see the comment above it). Most examples hit a
validation error, so few of them compile anything; the examples are
derandomized, so the run time is stable.
"""

import os
import warnings

import numpy as np
import pytest
import scipy.sparse
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


# ----- random layer specs ------------------------------------------------------------------
#
# Hypothesis draws a model of one family (feedforward, recurrent or
# convolution) whose hidden and output layers are random specs: a form (one
# time in eight from any registered form, base classes and other families
# included), a size, an activation and keywords the form reads, with good
# values and, one layer in four, one mistake: a bad size, activation, keyword
# value or input, or a misspelt keyword. Half of the models end with a
# well-formed output layer. Each model must either build, train one step and
# predict arrays of the shapes its layers report, or be refused before
# anything is compiled with a ConfigurationError (or a TypeError for an
# unknown keyword) whose message names the layer, the spec or the keyword. A
# spec holding one of the drawn mistakes must be refused. A loss that
# diverges (NonFiniteLossError, e.g. 'norm:std' of a single unit) is allowed.

FAMILIES = {
    'feedforward': (theanets.Regressor, theanets.Classifier, theanets.Autoencoder),
    'recurrent': (theanets.recurrent.Regressor, theanets.recurrent.Classifier),
    'convolution': (theanets.convolution.Regressor, theanets.convolution.Classifier),
}
FORMS = {
    'feedforward': ['ff', 'feedforward', 'classifier', 'tied', 'concat', 'product', 'flatten',
                    'reshape'],
    'recurrent': ['rnn', 'lstm', 'gru', 'mrnn', 'mut1', 'rrnn', 'scrn', 'clockwork',
                  'bidirectional', 'ff'],
    'convolution': ['conv1', 'conv2', 'pool1', 'pool2', 'flatten', 'reshape', 'ff'],
}
ALL_FORMS = sorted(theanets.layers.Layer._registry.classes)
SIZES = ([1, 2, 3, 4], [0, -1, 2.5, '3', True])
ACTIVATIONS_SPEC = (sorted(theanets.activations.COMMON) + [
    'prelu', 'lgrelu', 'elu', 'maxout:2', 'tanh+norm:z'], ['tahn', 'relu+', 'maxout:x', 3])
MISTAKES = ['size', 'activation', 'option', 'typo', 'inputs']
#: Forms whose size follows from their inputs.
DERIVED_SIZE = {'flatten', 'concat', 'product', 'tied', 'pool1', 'pool2', 'reshape'}
#: Layers that end half of the models, so that more of them can train.
TAILS = dict(feedforward=[2], recurrent=[2], convolution=['flatten', 2])

#: form -> {keyword: (good values, bad values)}; required keywords are always given.
REQUIRED = {
    'conv1': dict(filter_size=([1, 2, (2, )], [0, (2, 2), 'x'])),
    'conv2': dict(filter_size=([1, 2, (1, 2)], [(2, ), 0, 'x'])),
    'pool1': dict(pool_size=([1, 2, (2, )], [0, 'x'])),
    'pool2': dict(pool_size=([1, 2, (2, 1)], [0, 'x'])),
    'clockwork': dict(periods=([(1, 2), [1, 2, 4]], [(), (0, 1), 'x', 3])),
    'reshape': dict(shape=([(2, 2), (4, ), (1, 4), (2, 1, 2), (None, 2)],
                           [(0, 2), ('x', 2), 4])),
}
OPTIONAL = {
    'conv1': dict(stride=([1, 2], [0, 'x']), border_mode=(['valid', 'same', 'full'], ['x'])),
    'conv2': dict(stride=([1, (1, 2)], [0, (1, )]),
                  border_mode=(['valid', 'same', 'full'], ['x', 3])),
    'pool1': dict(stride=([None, 1, 2], [0, 'x']), mode=(['max', 'mean'], ['x'])),
    'pool2': dict(stride=([None, 1, (1, 2)], [0]), mode=(['max', 'mean'], ['avg', None])),
    'mrnn': dict(factors=([None, 1, 3], [0, -2, 'x'])),
    'rrnn': dict(rate=(['matrix', 'vector', 'uniform', 'log', 0.5], ['x', True])),
    'scrn': dict(rate=(['vector', 'uniform', 0.5], ['matrix', 'x']),
                 context_size=([None, 1, 3], [0, 'x'])),
    'bidirectional': dict(worker=(['rnn', 'lstm', 'gru'], ['x', 'ff', 3])),
}
RECURRENT_OPTIONS = dict(direction=(['forward', 'backward'], ['sideways', 3]),
                         bptt_limit=([-1, 2, 3], [1.5, 'x']))
INIT_OPTIONS = dict(std=([0.1, 0], [-1, 'x']), mean=([0, 0.5], ['x']),
                    std_b=([0.1], [-0.5]), mean_b=([0, 0.5], ['x']),
                    sparsity=([0, 0.5], [1.5, -1]), std_x=([], [0.1]))


def value(draw, choices, wrong):
    """Draw from the bad values of ``choices = (good, bad)`` if ``wrong``, else from the good."""
    return draw(st.sampled_from(choices[1] if wrong else choices[0]))


def misspell(draw, key, valid):
    """Return a misspelling of ``key`` that is no valid keyword, or None."""
    i = draw(st.integers(0, len(key) - 1))
    how = draw(st.sampled_from(['drop', 'double', 'swap']))
    if how == 'drop':
        typo = key[:i] + key[i + 1:]
    elif how == 'double':
        typo = key[:i] + key[i] + key[i:]
    else:
        typo = key[:i] + key[i + 1:i + 2] + key[i:i + 1] + key[i + 2:]
    return None if not typo or typo in valid else typo


def form_options(draw, form, earlier, spoil):
    """Keywords ``form`` reads, with good values; with ``spoil``, one of them gets a bad one."""
    options = dict(OPTIONAL.get(form, {}))
    if form in FORMS['recurrent'][:-1]:
        options.update(RECURRENT_OPTIONS)
    if form == 'tied':
        options.update(partner=(earlier[1:], ['zzz', 3]))
    options.update(INIT_OPTIONS)
    usable = sorted(k for k, (good, _) in options.items() if good)
    keys = list(REQUIRED.get(form, {})) + draw(
        st.lists(st.sampled_from(usable), max_size=2, unique=True))
    options.update(REQUIRED.get(form, {}))
    spoilt = draw(st.sampled_from(sorted(options))) if spoil else None
    keys += [spoilt] if spoilt and spoilt not in keys else []
    return {key: value(draw, options[key], key == spoilt) for key in keys}


@st.composite
def layer_spec(draw, family, earlier):
    """One hidden or output layer spec; returns (spec, True if it holds a sure mistake)."""
    mistake = draw(st.sampled_from(MISTAKES + [None] * 3 * len(MISTAKES)))
    form = draw(st.sampled_from(ALL_FORMS if not draw(st.integers(0, 7)) else FORMS[family]))
    size = value(draw, SIZES, mistake == 'size')
    activation = value(draw, ACTIVATIONS_SPEC, mistake == 'activation')
    style = draw(st.sampled_from(['int', 'tuple', 'form-tuple', 'str', 'dict', 'dict', 'dict']))
    if form in REQUIRED:
        style = 'dict'
    elif style == 'str' and form not in DERIVED_SIZE:
        style = 'form-tuple'
    if style == 'int':
        return size, mistake == 'size'
    if style == 'tuple':   # (size, 3) would be a shape
        activation = activation if isinstance(activation, str) else 'tahn'
        return (size, activation), mistake in ('size', 'activation')
    if style == 'form-tuple':
        return (size, form), mistake == 'size'
    if style == 'str':
        return form, False
    spec = dict(form=form)
    if mistake == 'activation' or draw(st.booleans()):
        spec['activation'] = activation
    how = draw(st.sampled_from(['size', None, None, None] if form in DERIVED_SIZE else
                               ['size', 'size', 'size', 'shape']))
    if mistake == 'size' or how == 'size':
        spec['size'] = size
    elif how == 'shape':
        spec['shape'] = (size, )
    if earlier[1:] and (mistake == 'inputs' or not draw(st.integers(0, 3))):
        spec['inputs'] = value(
            draw, ([earlier[-1], earlier[0], list(earlier[-2:]), earlier[-1] + ':out'],
                   ['hid9', 5.5, earlier[-1] + ':nothing']), mistake == 'inputs')
    spec.update(form_options(draw, form, earlier, mistake == 'option'))
    typo, keys = None, sorted(k for k in spec if k != 'form')
    if mistake == 'typo' and keys:
        key = draw(st.sampled_from(keys))
        typo = misspell(draw, key, set(spec) | set(theanets.layers.Layer.get_class(
            form).valid_kwargs(spec) or ()))
        if typo is not None:
            spec[typo] = spec.pop(key)
    made = dict(size=True, activation=True, option=True, typo=typo is not None,
                inputs='inputs' in spec)
    return spec, made.get(mistake, False)


@st.composite
def input_spec(draw, family):
    n = draw(st.integers(1, 4))
    return draw(st.sampled_from(dict(
        feedforward=[n, (n, ), dict(form='input', size=n), dict(form='input', size=n,
                                                                  sparse='csr')],
        recurrent=[n, dict(form='input', size=n, ndim=3), (5, n)],
        convolution=[(6, n), (6, 5, n), dict(form='input', shape=(5, 6, n)), n],
    )[family]))


def example_array(shape, rng):
    """Random float data of ``shape`` (no batch axis): 3 examples, unknown axes of length 5."""
    return rng.randn(3, *[5 if s is None else s for s in shape]).astype('f')


def training_data(net, rng):
    """Arrays for ``net.variables``: inputs, then targets shaped like the outputs, then weights."""
    data = {}
    for layer in net.layers:
        if isinstance(layer, theanets.layers.Input):
            x = example_array(layer.output_shape, rng)
            data[layer.input] = scipy.sparse.csr_matrix(x) if layer.sparse else x
    inputs = [data[v] for v in net.inputs]
    outputs = net.feed_forward(*inputs)
    for loss in net.losses:
        out = outputs[loss.output_name]
        for var in loss.variables:
            if var in data:
                continue
            if var.dtype.startswith('int'):
                data[var] = rng.randint(out.shape[-1], size=out.shape[:var.ndim]).astype('i')
            elif var.name == 'weights':
                data[var] = np.ones(out.shape[:var.ndim], 'f')
            else:
                data[var] = rng.randn(*out.shape[:var.ndim]).astype('f')
    return inputs, outputs, [data[v] for v in net.variables]


def names_the_culprit(err, names, specs):
    """True if the message of ``err`` names a layer, a layer spec or a keyword given."""
    text = str(err)
    words = ['layer spec', 'input layer', 'output layer']
    words += ["'{}'".format(name) for name in names]
    for spec in specs:
        words.append(repr(spec))
        if isinstance(spec, dict):
            words += ["'{}'".format(key) for key in spec]
            words += [repr(v) for v in spec.values() if isinstance(v, str)]
    return any(word in text for word in words)


def check_named_error(err, names, specs, before):
    """Assert ``err`` is one of theanets' named errors about the spec, raised before compiling."""
    assert raised_in_theanets(err), 'raised inside a dependency: {!r}'.format(err)
    assert isinstance(err, ConfigurationError) or (
        type(err) is TypeError and 'unknown keyword argument' in str(err)), \
        'raw {}: {}'.format(type(err).__name__, err)
    assert names_the_culprit(err, names, specs), 'names no layer or keyword: {}'.format(err)
    assert backend.compile_count() == before, 'compiled before failing: {}'.format(err)


@pytest.mark.filterwarnings('ignore')   # e.g. PyTensor densifying a sparse input to reshape it
@settings(SETTINGS, max_examples=200)
@given(data=st.data())
def test_random_layer_specs_build_or_fail_clearly(data):
    draw = data.draw
    family = draw(st.sampled_from(sorted(FAMILIES)))
    model = draw(st.sampled_from(FAMILIES[family]))
    specs, must_fail, names = [draw(input_spec(family))], False, ['in']
    tail = TAILS[family] if draw(st.booleans()) else []
    count = draw(st.integers(1, 3))
    total = count + len(tail)
    for i in range(count):
        spec, bad = draw(layer_spec(family, names))
        specs.append(spec)
        must_fail = must_fail or bad
        names.append('out' if i == total - 1 else 'hid{}'.format(i + 1))
    specs += tail
    names += ['hid{}'.format(i + 1) for i in range(count, total - 1)] + ['out'] * bool(tail)
    before = backend.compile_count()
    try:
        net = model(specs, weighted=draw(st.booleans()))
        net.ensure_ready()
    except DOCUMENTED as err:
        check_named_error(err, names, specs, before)
        event('refused: {}'.format(type(err).__name__))
        return
    assert not must_fail, 'accepted {}'.format(specs)
    inputs, outputs, arrays = training_data(net, np.random.RandomState(0))
    for layer in net.layers:
        got, want = outputs[layer.output_name].shape, (3, ) + tuple(layer.output_shape)
        assert len(got) == len(want) and all(
            w is None or g == w for g, w in zip(got, want)), (layer, got, want)
    before = backend.compile_count()
    try:
        net.train(arrays, algo='sgd', max_updates=1, batch_size=3, learning_rate=1e-3)
    except ConfigurationError as err:   # e.g. an output a Classifier cannot read
        check_named_error(err, names, specs, before)
        event('built, cannot train')
        return
    except NonFiniteLossError:   # e.g. 'norm:std' of one unit divides by its zero spread
        event('diverged')
        return
    for layer in net.layers[1:]:
        event('trained a {} layer'.format(type(layer).__name__))
    out = outputs[net.layers[-1].output_name]
    got = net.predict(*inputs)
    if isinstance(net, theanets.Classifier):
        assert got.shape == out.shape[:-1] and got.max() < out.shape[-1]
    else:
        assert got.shape == out.shape and np.isfinite(got).all()
