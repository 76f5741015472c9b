"""Code written for theanets 0.8 runs unchanged: shapes, specs, arguments, keyword checks.

Saved files (a pickle of the network, read by ``pickle`` and ``joblib``) are
tested in test_persistence.py; docs/differences.rst lists what differs on purpose.
"""

import logging

import numpy as np
import pytest

import theanets
from theanets import layers, losses
from theanets.util import ConfigurationError

import util as U


# ----- shapes are those of one example, without the batch axis --------------------------------

@pytest.mark.parametrize('build,shapes', [
    (lambda: theanets.Regressor([4, (6, 'tanh'), 2]), [(4, ), (6, ), (2, )]),
    (lambda: theanets.Regressor([1, dict(shape=(6, )), 2]), [(1, ), (6, ), (2, )]),
    (lambda: theanets.Regressor([(2, 3), 'flatten', dict(form='reshape', shape=(3, 2)), 2]),
     [(2, 3), (6, ), (3, 2), (3, 2)]),
    (lambda: theanets.recurrent.Regressor([3, (5, 'lstm'), (4, 'gru'), 2]),
     [(None, 3), (None, 5), (None, 4), (None, 2)]),
    (lambda: theanets.convolution.Classifier([
        (8, 8, 1), dict(form='conv2', size=2, filter_size=3), dict(form='pool2', pool_size=2),
        'flatten', 3]), [(8, 8, 1), (6, 6, 2), (3, 3, 2), (18, ), (3, )]),
    (lambda: theanets.recurrent.Regressor([
        3, dict(form='conv1', size=2, filter_size=2), dict(form='pool1', pool_size=2), 2]),
     [(None, 3), (None, 2), (None, 2), (None, 2)]),
])
def test_output_shapes_leave_out_the_batch_axis(build, shapes):
    net = build()
    assert [l.output_shape for l in net.layers] == shapes
    for layer, shape in zip(net.layers, shapes):
        assert layer.output_shapes()[layer.output_name] == shape
        assert layer.output_size == shape[-1]
    for layer, before in zip(net.layers[1:], shapes):
        if len(layer._input_shapes) == 1:
            assert layer.input_shape == before


def test_input_of_size_one_and_named_output_shapes():
    assert layers.Input(size=1, name='x').output_shape is None  # known once bound
    net = theanets.Regressor([1, 2])
    assert net.layers[0].output_shape == (1, )
    net = theanets.recurrent.Regressor([3, (9, 'mrnn'), (4, 'scrn'), 2])
    assert net.layers[1].output_shapes() == {
        'hid1:out': (None, 9), 'hid1:pre': (None, 9), 'hid1:factors': (None, 3)}
    assert net.layers[2].output_shapes()['hid2:state'] == (None, 4)


def test_construction_log_shows_shapes_without_batch_axis(caplog):
    with caplog.at_level(logging.INFO, logger='theanets'):
        theanets.Regressor([7, (8, 'relu'), 2])
    assert 'layer Feedforward "hid1" (8,) relu from "in:out" (7,)' in caplog.text


# ----- to_spec: the keywords given, plus form, name and activation ------------------------------

def test_to_spec_holds_only_what_was_given():
    assert layers.Feedforward(size=3, name='x').to_spec() == dict(
        size=3, form='feedforward', name='x', activation='relu')
    net = theanets.Regressor([4, dict(size=6, activation='tanh', std_w=0.5), 2])
    spec = net.layers[1].to_spec()
    assert set(spec) == {'size', 'activation', 'std_w', 'inputs', 'rng', 'form', 'name'}
    assert (spec['size'], spec['inputs'], spec['form'], spec['name']) == (
        6, 'in:out', 'feedforward', 'hid1')
    assert net.layers[0].to_spec() == dict(size=4, ndim=2, form='input', name='in',
                                           activation='linear')


@pytest.mark.parametrize('spec,extra', [
    ((5, 'rnn'), dict(h_0=None)),
    ((5, 'lstm'), dict(h_0=None, c_0=None)),
    (dict(form='scrn', size=5, rate='log'), dict(h_0=None, s_0=None, context_size=None,
                                                rate='log')),
    ((5, 'mrnn'), dict(h_0=None, factors=None)),
    (dict(form='clockwork', size=4, periods=(2, 1)), dict(h_0=None, periods=[1, 2])),
    (dict(form='bidirectional', size=4), dict(worker='rnn')),
])
def test_recurrent_to_spec_adds_the_layer_keys_only(spec, extra):
    net = theanets.recurrent.Regressor([3, spec, 2])
    got = net.layers[1].to_spec()
    assert 'direction' not in got and 'bptt_limit' not in got and 'shape' not in got
    for key, value in extra.items():
        assert got[key] == value, key


def test_tied_to_spec_names_its_partner():
    net = theanets.Autoencoder([4, 3, 'tied'])
    spec = net.layers[2].to_spec()
    assert spec['partner'] == 'hid1' and 'size' not in spec


def _copy_params(source, target):
    values = {p.name: p.get_value() for p in source.params}
    assert sorted(values) == sorted(p.name for p in target.params)
    for param in target.params:
        param.set_value(values[param.name])


ROUND_TRIPS = {
    'feedforward': (theanets.Regressor, lambda: [
        4, (3, 'tanh'), dict(size=5, inputs=('in', 'hid1'), activation='prelu'),
        dict(form='concatenate', inputs=('hid1', 'hid2'), name='cat'),
        dict(form='product', inputs=('hid1', 'hid1:pre'), name='prod'),
        dict(form='reshape', shape=(3, 1), inputs='prod', name='rs'),
        dict(form='flatten', name='fl'), dict(form='classifier', size=4, inputs='cat'),
        (3, 'maxout:2'), dict(form='tied', partner='hid1', activation='linear'),
        (2, 'linear')], U.inputs()),
    'classifier': (theanets.Classifier, lambda: [4, (3, 'lgrelu'), ('softmax', 3)],
                   U.inputs()),
    'autoencoder': (theanets.Autoencoder, lambda: [4, (3, 'elu'), 2, 'tied', 'tied'],
                    U.inputs()),
    'recurrent': (theanets.recurrent.Regressor, lambda: [
        3, (4, 'rnn', 'tanh'), dict(form='rrnn', size=4, rate='vector'), (4, 'mut1'),
        (4, 'gru'), (4, 'lstm'), dict(form='mrnn', size=4, factors=2),
        dict(form='scrn', size=4, context_size=2), dict(form='clockwork', size=4, periods=(1, 2)),
        dict(form='bidirectional', worker='gru', size=4), 2],
        np.random.RandomState(0).randn(2, 5, 3).astype('f')),
    'convolution': (theanets.convolution.Regressor, lambda: [
        (6, 6, 1), dict(form='conv2', size=2, filter_size=(3, 2), stride=(1, 2)),
        dict(form='pool2', pool_size=2, mode='mean'), 'flatten', 2],
        np.random.RandomState(0).randn(2, 6, 6, 1).astype('f')),
    'conv1': (theanets.recurrent.Regressor, lambda: [
        3, dict(form='conv1', size=2, filter_size=2, border_mode='full'),
        dict(form='pool1', pool_size=2), 2],
        np.random.RandomState(0).randn(2, 6, 3).astype('f')),
}


@pytest.mark.parametrize('kind', sorted(ROUND_TRIPS))
def test_specs_round_trip(kind):
    model, specs, x = ROUND_TRIPS[kind]
    net = model(specs())
    twin = model([l.to_spec() for l in net.layers])
    assert [(type(l), l.name, l.output_shape, l.activation) for l in twin.layers] == \
        [(type(l), l.name, l.output_shape, l.activation) for l in net.layers]
    assert [l.to_spec() for l in twin.layers] == [l.to_spec() for l in net.layers]
    _copy_params(net, twin)
    np.testing.assert_allclose(twin.predict(x), net.predict(x), rtol=1e-5, atol=1e-6)


def test_layer_build_from_spec():
    net = theanets.Regressor([4, dict(size=3, activation='tanh', std_w=0.5), 'tied'])
    for layer in net.layers:
        spec = layer.to_spec()
        clone = theanets.Layer.build(spec.pop('form'), **spec)
        assert type(clone) is type(layer) and clone.name == layer.name
        assert clone.activation == layer.activation and clone.to_spec() == layer.to_spec()


# ----- arguments: integer inputs, zero is a value ----------------------------------------------

def test_integer_inputs_is_the_size_of_the_previous_layer():
    net = theanets.Regressor([4, dict(size=3, inputs=4), dict(size=2, inputs=3)])
    assert [list(l._input_shapes) for l in net.layers[1:]] == [['in:out'], ['hid1:out']]
    x = U.inputs()
    expected = U.dense(U.relu(U.dense(x, U.value(net, 'hid1', 'w'), U.value(net, 'hid1', 'b'))),
                       U.value(net, 'out', 'w'), U.value(net, 'out', 'b'))
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigurationError, match=r"input 'in:out' has size 4, but inputs= "
                                                 r"declared 5"):
        theanets.Regressor([4, dict(size=3, inputs=5)])
    with pytest.raises(ConfigurationError, match='inputs must be a positive integer'):
        theanets.Regressor([4, dict(size=3, inputs=0)])
    net = theanets.Regressor([4])
    layer = net.add_layer(layers.Feedforward(size=2, inputs=4, name='x'))
    assert list(layer._input_shapes) == ['in:out']


@pytest.mark.parametrize('kwargs,w,b', [
    (dict(mean=0.5, std=0), 0.5, 0.5),
    (dict(mean_w=0.25, std_w=0, std_b=0), 0.25, 0.0),
    (dict(std=0), 0.0, 0.0),
    (dict(diagonal=0, std_b=0, mean_b=1), 0.0, 1.0),
])
def test_zero_is_a_value_for_initial_values(kwargs, w, b):
    layer = theanets.Regressor([4, dict(size=6, **kwargs), 2]).layers[1]
    assert np.array_equal(layer.find('w').get_value(), np.full((4, 6), w, 'f'))
    assert np.array_equal(layer.find('b').get_value(), np.full(6, b, 'f'))


def test_zero_std_in_recurrent_and_convolution_layers():
    net = theanets.recurrent.Regressor([3, dict(form='lstm', size=2, std=0, mean=0.1), 2])
    assert all(np.allclose(p.get_value(), 0.1) for p in net.layers[1].params)
    net = theanets.convolution.Regressor([(4, 4, 1), dict(form='conv2', size=2, filter_size=2,
                                                          std_w=0, mean_w=0.3), 'flatten', 2])
    assert np.allclose(net.find('hid1', 'w').get_value(), 0.3)


@pytest.mark.parametrize('kwargs,pattern', [
    (dict(std=-1), r"layer 'hid1', parameter 'w': std must be a number >= 0, got -1"),
    (dict(std_b='x'), r"layer 'hid1', parameter 'b': std must be a number >= 0, got 'x'"),
    (dict(sparsity=1.5), r"parameter 'w': sparsity must be a number in \[0, 1\], got 1.5"),
    (dict(radius=1), r"'radius' applies to no parameter of this layer"),
    (dict(sparsity_b=0.5), r"'sparsity_b' applies to no parameter.*biases take mean and std"),
])
def test_initial_value_options_are_checked(kwargs, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        theanets.Regressor([4, dict(size=3, **kwargs), 2])


def test_radius_of_one_named_matrix():
    w = theanets.Regressor([4, dict(size=4, radius_w=0.5)]).find('out', 'w').get_value()
    assert abs(np.linalg.svd(w, compute_uv=False)[0] - 0.5) < 1e-5


def test_add_layer_accepts_form_keyword():
    net = theanets.Regressor([4])
    layer = net.add_layer(form='ff', size=3, activation='tanh')
    assert type(layer) is layers.Feedforward and layer.activation == 'tanh'


# ----- an activation is honoured or refused with the reason -------------------------------------

@pytest.mark.parametrize('build,pattern', [
    (lambda: theanets.Classifier([4, dict(form='classifier', size=3, activation='tanh')]),
     r"layer 'out' \(Classifier\): a classifier layer always uses softmax, so "
     r"activation='tanh' cannot apply"),
    (lambda: theanets.Regressor([4, (3, 'linear', 'classifier')]),
     'always uses softmax'),
    (lambda: theanets.Regressor([dict(size=4, activation='relu'), 2]),
     r"an input layer passes its data on unchanged, so activation='relu'"),
    (lambda: theanets.Regressor([(2, 3), dict(form='flatten', activation='tanh'), 2]),
     'a flatten layer reshapes its input and applies no activation'),
    (lambda: theanets.Regressor([4, 3, dict(form='concatenate', inputs=('in', 'hid1'),
                                            activation='relu')]), 'a concatenate layer'),
    (lambda: theanets.convolution.Regressor([(4, 4, 1), dict(form='pool2', pool_size=2,
                                                             activation='relu'), 'flatten', 2]),
     'a pooling layer takes the max or mean of each window'),
    (lambda: theanets.recurrent.Regressor([3, (4, 'lstm', 'relu'), 2]),
     'an LSTM layer always uses logistic gates and tanh'),
    (lambda: theanets.recurrent.Regressor([
        3, dict(form='bidirectional', worker='lstm', size=4, activation='relu'), 2]),
     r"layer 'hid1' \(Bidirectional\): an LSTM layer always uses logistic gates and tanh"),
])
def test_fixed_activations_refuse_another(build, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        build()


def test_fixed_activations_accept_their_own_and_defaults():
    net = theanets.recurrent.Regressor([3, (4, 'lstm'), dict(form='bidirectional',
                                                              worker='lstm', size=4), 2])
    assert [l.activation for l in net.layers] == ['linear', 'tanh', 'tanh', 'linear']
    net = theanets.Regressor([4, ('softmax', 3), (3, 'classifier', 'softmax'), 'flatten', 2])
    assert [l.activation for l in net.layers] == ['linear', 'softmax', 'softmax', 'linear',
                                                   'linear']


# ----- every keyword is used or refused ------------------------------------------------------

class _Layer(object):
    name = 'lay'
    output_size = 3
    rng = np.random.RandomState(0)


FAMILIES = [
    (theanets.Layer, dict(sizee=3), 'size'),
    (theanets.Loss, dict(target=2, weigth=1), 'weight'),
    (theanets.Regularizer, dict(weigth=1), 'weight'),
    (theanets.Activation, dict(name='relu', layr=_Layer()), 'layer'),
]


@pytest.mark.parametrize('family,kwargs,near', FAMILIES, ids=lambda f: getattr(f, '__name__', ''))
def test_every_registered_class_refuses_a_misspelt_keyword(family, kwargs, near):
    classes = {k: c for k, c in family._registry.classes.items()
               if c.__module__.startswith('theanets')}
    assert len(classes) >= 4
    bad = [k for k in kwargs if k != 'target' and k != 'name'][0]
    for key, cls in sorted(classes.items()):
        with pytest.raises(TypeError) as info:
            family.build(key, **kwargs)
        message = str(info.value)
        assert repr(bad) in message and cls.__name__ in message, (key, message)
        assert 'did you mean {!r}'.format(near) in message, (key, message)


@pytest.mark.parametrize('call,method,near', [
    (lambda net: net.loss(hiden_l2=0.1), 'Regressor.loss()', 'hidden_l2'),
    (lambda net: net.monitors(monitor={'hid1:out': 1}), 'Regressor.monitors()', 'monitors'),
    (lambda net: net.updates(input_nosie=0.1), 'Regressor.updates()', 'input_noise'),
    (lambda net: net.predict(U.inputs(), hidden_dropuot=0.5), 'Regressor.predict()',
     'hidden_dropout'),
    (lambda net: net.feed_forward(U.inputs(), weight_l3=1), 'Regressor.feed_forward()',
     'weight_l2'),
    (lambda net: net.loss(regularizers=dict(wieght_l2=1)), 'Regressor.loss(regularizers=',
     'weight_l2'),
    (lambda net: net.predict(U.inputs(), monitors={}), 'Regressor.predict()', None),
])
def test_network_methods_refuse_unknown_keywords(call, method, near):
    net = theanets.Regressor([U.NUM_INPUTS, 3, 2])
    with pytest.raises(TypeError) as info:
        call(net)
    assert str(info.value).startswith(method)
    if near:
        assert 'did you mean {!r}'.format(near) in str(info.value)


def test_regularizer_keyword_values_reach_the_loss():
    net = theanets.Regressor([U.NUM_INPUTS, 3, 2])
    w = [p.get_value() for p in net.params if p.ndim == 2]
    expected = np.mean([(v ** 2).mean() for v in w])
    fn = theanets.backend.function(net.variables, net.loss(weight_l2=1.0) - net.loss())
    assert np.isclose(fn(U.inputs(), U.targets()), expected, rtol=1e-5)


def test_unknown_names_share_one_message_form():
    for make, kind in [(lambda: theanets.Regressor([4, (3, 'tanhh')]), 'activation'),
                       (lambda: theanets.Regressor([4, 2], loss='msee'), 'loss'),
                       (lambda: theanets.Regressor([4, dict(form='fedforward', size=2)]),
                        'layer form'),
                       (lambda: theanets.Regressor([4, dict(size=2, activation='rleu')]),
                        'activation')]:
        with pytest.raises(ConfigurationError, match=r"unknown {}.*\(did you mean".format(kind)):
            make()
    with pytest.raises(KeyError, match=r"unknown loss 'msee' \(did you mean 'mse'"):
        losses.Loss.build('msee', target=2)
