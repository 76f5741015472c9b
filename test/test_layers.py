"""Tests for theanets.layers: NumPy forward passes, inputs, initialisation, custom layers."""

import numpy as np
import pytensor.tensor as TT
import pytest
import scipy.sparse

import theanets
from theanets import layers
from theanets.util import ConfigurationError

import util as U


# ----- forward passes ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def zoo():
    """One network holding every feedforward layer type, run once on a batch."""
    net = theanets.Regressor([
        U.NUM_INPUTS,
        (3, 'tanh'),
        dict(size=5, inputs=('in', 'hid1')),
        dict(form='concatenate', inputs=('hid1', 'hid2'), name='cat'),
        dict(form='product', inputs=('hid1', 'hid1:pre'), name='prod'),
        dict(form='reshape', shape=(3, 1), inputs='prod', name='rs'),
        dict(form='flatten', name='fl'),
        dict(form='classifier', size=4, inputs='cat', name='cls'),
        dict(form='tied', partner='hid1', inputs='fl', name='tied', activation='linear'),
        U.NUM_OUTPUTS,
    ])
    x = U.inputs()
    return net, x.astype('float64'), net.feed_forward(x)


def test_feedforward_layer(zoo):
    net, x, ff = zoo
    pre = U.dense(x, U.value(net, 'hid1', 'w'), U.value(net, 'hid1', 'b'))
    assert np.allclose(ff['hid1:pre'], pre, atol=1e-5)
    assert np.allclose(ff['hid1:out'], np.tanh(pre), atol=1e-5)


def test_multi_input_feedforward(zoo):
    net, x, ff = zoo
    assert [p.name for p in net.layers[2].params] == ['hid2.w_in:out', 'hid2.w_hid1:out',
                                                      'hid2.b']
    pre = (x.dot(U.value(net, 'hid2', 'w_in:out'))
           + ff['hid1:out'].dot(U.value(net, 'hid2', 'w_hid1:out'))
           + U.value(net, 'hid2', 'b'))
    assert np.allclose(ff['hid2:out'], U.relu(pre), atol=1e-5)


def test_concatenate(zoo):
    net, _, ff = zoo
    assert net.layers[3].output_shape == (8, )
    assert np.allclose(ff['cat:out'], np.concatenate([ff['hid1:out'], ff['hid2:out']], axis=1))


def test_product(zoo):
    _, _, ff = zoo
    assert np.allclose(ff['prod:out'], ff['hid1:out'] * ff['hid1:pre'], atol=1e-6)


def test_reshape_and_flatten(zoo):
    net, _, ff = zoo
    assert net.layers[5].output_shape == (3, 1)
    assert ff['rs:out'].shape == (U.NUM_EXAMPLES, 3, 1)
    assert np.array_equal(ff['rs:out'], ff['prod:out'].reshape((-1, 3, 1)))
    assert net.layers[6].output_shape == (3, )
    assert np.array_equal(ff['fl:out'], ff['prod:out'])


def test_classifier_layer(zoo):
    net, _, ff = zoo
    assert net.layers[7].activation == 'softmax'
    pre = U.dense(ff['cat:out'], U.value(net, 'cls', 'w'), U.value(net, 'cls', 'b'))
    assert np.allclose(ff['cls:pre'], pre, atol=1e-5)
    assert np.allclose(ff['cls:out'], U.softmax(pre), atol=1e-6)
    assert np.allclose(ff['cls:out'].sum(axis=1), 1, atol=1e-6)


def test_tied_layer(zoo):
    net, _, ff = zoo
    tied = net.layers[8]
    assert tied.partner is net.layers[1]
    assert [p.name for p in tied.params] == ['tied.b']
    assert tied.output_shape == (U.NUM_INPUTS, )
    pre = U.dense(ff['fl:out'], U.value(net, 'hid1', 'w').T, U.value(net, 'tied', 'b'))
    assert np.allclose(ff['tied:out'], pre, atol=1e-5)


def test_feed_forward_has_every_output(zoo):
    net, _, ff = zoo
    expected = {'in:out', 'hid1:out', 'hid1:pre', 'hid2:out', 'hid2:pre', 'cat:out', 'prod:out',
                'rs:out', 'fl:out', 'cls:out', 'cls:pre', 'tied:out', 'tied:pre', 'out:out',
                'out:pre'}
    assert set(ff) == expected


@pytest.mark.parametrize('fmt', ['csr', 'csc'])
def test_sparse_input_matches_dense(fmt):
    net = theanets.Regressor([dict(size=U.NUM_INPUTS, sparse=fmt), (3, 'tanh')])
    assert net.inputs[0].format == fmt
    x = U.inputs()
    x[np.abs(x) < 0.7] = 0
    sparse = getattr(scipy.sparse, fmt + '_matrix')(x)
    expected = np.tanh(U.dense(x, U.value(net, 'out', 'w'), U.value(net, 'out', 'b')))
    assert np.allclose(net.predict(sparse), expected, atol=1e-5)
    with pytest.raises(ConfigurationError, match='sparse'):
        net.predict(x)


def test_sparse_input_needs_2d():
    with pytest.raises(ConfigurationError, match='sparse input needs 2-D'):
        layers.Input(size=3, ndim=3, sparse=True)


# ----- inputs= --------------------------------------------------------------------------

class TestInputs:
    def net(self, **kwargs):
        return theanets.Regressor([U.NUM_INPUTS, 3, dict(size=2, **kwargs)])

    def shapes(self, net):
        return dict(net.layers[-1]._input_shapes)

    def test_default_is_previous_layer(self):
        assert self.shapes(self.net()) == {'hid1:out': (3, )}

    def test_layer_name_means_out(self):
        assert self.shapes(self.net(inputs='in')) == {'in:out': (U.NUM_INPUTS, )}

    def test_named_output(self):
        assert self.shapes(self.net(inputs='hid1:pre')) == {'hid1:pre': (3, )}

    def test_layer_instance(self):
        net = theanets.Regressor([U.NUM_INPUTS, 3])
        layer = net.add_layer(dict(size=2, inputs=net.layers[0], name='x'))
        assert self.shapes(net) == {'in:out': (U.NUM_INPUTS, )}
        assert layer.find('w').get_value().shape == (U.NUM_INPUTS, 2)

    def test_dict_with_sizes(self):
        assert self.shapes(self.net(inputs={'in': U.NUM_INPUTS})) == {
            'in:out': (U.NUM_INPUTS, )}
        with pytest.raises(ConfigurationError, match=r"'in:out' has size 4.*declared 5"):
            self.net(inputs={'in': 5})

    def test_several(self):
        net = self.net(inputs=('in', 'hid1:pre'))
        assert list(self.shapes(net)) == ['in:out', 'hid1:pre']
        assert [p.name for p in net.layers[-1].params] == ['out.w_in:out', 'out.w_hid1:pre',
                                                           'out.b']
        assert net.find('out', 'w_hid1:pre').get_value().shape == (3, 2)

    def test_unknown_name_suggests(self):
        with pytest.raises(ConfigurationError, match=r"'hdi1:out' is not an output.*'hid1:out'"):
            self.net(inputs='hdi1')

    def test_single_input_property_errors_with_several(self):
        net = self.net(inputs=('in', 'hid1'))
        with pytest.raises(ConfigurationError, match='exactly one input'):
            _ = net.layers[-1].input_name

    def test_concatenate_needs_matching_leading_dims(self):
        with pytest.raises(ConfigurationError, match='leading dimensions'):
            theanets.Regressor([(2, 3), 'flatten', dict(form='concat', inputs=('in', 'hid1'))])

    def test_product_needs_identical_shapes(self):
        with pytest.raises(ConfigurationError, match='identical shapes'):
            theanets.Regressor([4, 3, dict(form='prod', inputs=('in', 'hid1'))])

    def test_reshape_checks_counts(self):
        with pytest.raises(ConfigurationError, match='cannot reshape'):
            theanets.Regressor([4, dict(form='reshape', shape=(3, 2))])
        with pytest.raises(ConfigurationError, match='needs shape'):
            theanets.Regressor([4, 'reshape'])

    @pytest.mark.parametrize('model,first,shape,why', [
        ('Regressor', 4, (None, 3), r"input's known axes hold 4 values, not a multiple of the 3"),
        ('Regressor', 4, (None, None), r'may leave one axis as None .* not 2'),
        ('recurrent', 3, (None, 2), r'hold 3 values, not a multiple of the 2'),
        ('recurrent', 3, (3, ), r'axis of varying length, .* write None in shape='),
    ])
    def test_reshape_refuses_shapes_some_data_cannot_take(self, model, first, shape, why):
        cls = theanets.recurrent.Regressor if model == 'recurrent' else theanets.Regressor
        with pytest.raises(ConfigurationError, match=r"layer 'out': cannot reshape input .*"
                           + why):
            cls([first, dict(form='reshape', shape=shape)])

    def test_reshape_infers_the_axis_given_as_none(self):
        net = theanets.recurrent.Regressor([4, dict(form='reshape', shape=(None, 2, 2))])
        x = np.arange(2 * 3 * 4, dtype='f').reshape((2, 3, 4))
        assert net.layers[-1].output_shape == (None, 2, 2)
        np.testing.assert_array_equal(net.predict(x), x.reshape((2, 3, 2, 2)))

    def test_flatten_size_must_match(self):
        with pytest.raises(ConfigurationError, match=r'size=5 but its output has 6 values'):
            theanets.Regressor([(2, 3), dict(form='flatten', size=5)])


# ----- tied layers ------------------------------------------------------------------------

@pytest.mark.parametrize('spec,partners', [
    ([6, 5, 'tied'], {'out': 'hid1'}),
    ([6, 5, 4, 'tied', 'tied'], {'hid3': 'hid2', 'out': 'hid1'}),
    ([6, 5, 4, (5, 'tied'), (6, 'tied')], {'hid3': 'hid2', 'out': 'hid1'}),
    ([6, 5, 4, 3, 'tied', 'tied', 'tied'], {'hid4': 'hid3', 'hid5': 'hid2', 'out': 'hid1'}),
    ([6, 5, 'tied', 4, 'tied'], {'hid2': 'hid1', 'out': 'hid3'}),
])
def test_tied_partner_found(spec, partners):
    net = theanets.Autoencoder(spec)
    found = {l.name: l.partner.name for l in net.layers if isinstance(l, layers.Tied)}
    assert found == partners
    for layer in net.layers:
        if isinstance(layer, layers.Tied):
            assert layer.output_size == layer.partner.input_size
    assert net.layers[-1].output_size == 6


def test_tied_without_partner_is_an_error():
    with pytest.raises(ConfigurationError, match='partner'):
        theanets.Autoencoder([6, 'tied'])
    with pytest.raises(ConfigurationError, match='partner'):
        layers.Tied(size=3)
    with pytest.raises(ConfigurationError, match="partner 'nope'"):
        theanets.Autoencoder([6, 5, dict(form='tied', partner='nope')])


def test_tied_size_must_match_partner():
    with pytest.raises(ConfigurationError, match=r"layer 'out' \(Tied\): size=4 but its "
                                                 r"output has 6 values"):
        theanets.Autoencoder([6, 5, (4, 'tied')])


@pytest.mark.parametrize('partner', [
    dict(form='scrn', size=3),             # its 'w' maps the input to hidden and context units
    dict(form='conv1', size=3, filter_size=1),    # its 'w' is 4-D
    'flatten',                             # no 'w' at all
])
def test_tied_partner_needs_a_weight_matrix_from_input_to_output(partner):
    with pytest.raises(ConfigurationError, match=r"tied layer 'out': partner 'hid1' \(\w+\) has "
                                                 r"no weight matrix 'w' of shape \(4, "):
        theanets.recurrent.Regressor([(5, 4), partner, dict(form='tied', partner='hid1')])


# ----- base classes -----------------------------------------------------------------------

def test_base_classes_are_refused_with_their_forms():
    bases = {key: cls for key, cls in layers.Layer._registry.classes.items()
             if cls.is_abstract()}
    assert sorted(bases) == ['convolution', 'layer', 'pooling', 'recurrent']
    for key, cls in bases.items():
        forms = cls.concrete_forms()
        assert forms and not any(layers.Layer.get_class(f).is_abstract() for f in forms)
        with pytest.raises(ConfigurationError, match=r"layer 'x' \({}\): {} is a base class that "
                           r"computes nothing; use one of its forms: {}".format(
                               cls.__name__, cls.__name__, ', '.join(forms))):
            layers.Layer.build(key, size=2, name='x')
    assert 'lstm' in bases['recurrent'].concrete_forms()
    assert bases['convolution'].concrete_forms() == ['conv1', 'conv2']


def test_subclasses_of_a_base_class_are_concrete():
    class Doubler(layers.Feedforward):
        def transform(self, inputs):
            return 2 * inputs

    class Halver(layers.Layer):
        def transform(self, inputs):
            return inputs / 2

    assert not Doubler.is_abstract() and not Halver.is_abstract()
    net = theanets.Regressor([3, dict(form='halver', size=3)])
    np.testing.assert_allclose(net.predict(np.ones((2, 3), 'f')), 0.5)


def test_input_layer_cannot_be_the_output_layer():
    with pytest.raises(ConfigurationError, match=r"the output layer of Regressor cannot be an "
                                                 r"input layer"):
        theanets.Regressor([4, dict(form='input', size=2)])
    net = theanets.Regressor([4, dict(form='input', size=2, name='extra'),
                              dict(form='concat', inputs=('in', 'extra'))])
    assert net.layers[-1].output_shape == (6, )


# ----- initialisation -----------------------------------------------------------------------

def hidden(**kwargs):
    """The hidden layer of a 30-40-2 regressor built with ``kwargs``."""
    return theanets.Regressor([30, dict(size=40, **kwargs), 2]).layers[1]


def test_default_std():
    layer = hidden()
    w, b = layer.find('w').get_value(), layer.find('b').get_value()
    assert abs(w.std() - 1 / np.sqrt(70)) < 0.01 and abs(w.mean()) < 0.01
    assert 0.6 < b.std() < 1.4


def test_std_and_mean_apply_to_all_params():
    layer = hidden(std=3, mean=2)
    w, b = layer.find('w').get_value(), layer.find('b').get_value()
    assert abs(w.std() - 3) < 0.2 and abs(w.mean() - 2) < 0.2
    assert 1.5 < b.std() < 4.5 and abs(b.mean() - 2) < 1.5


def test_named_forms_apply_to_one_param():
    layer = hidden(std_w=0.01, mean_b=5, std_b=0)
    w, b = layer.find('w').get_value(), layer.find('b').get_value()
    assert abs(w.std() - 0.01) < 0.001
    assert np.array_equal(b, np.full(40, 5, 'f'))


def test_sparsity():
    w = hidden(sparsity=0.9).find('w').get_value()
    assert 0.85 < (w == 0).mean() < 0.93
    w = hidden(sparsity_w=0.5).find('w').get_value()
    assert 0.42 < (w == 0).mean() < 0.55


def test_diagonal():
    layer = hidden(diagonal=2)
    w = layer.find('w').get_value()
    assert np.array_equal(w, 2 * np.eye(30, 40))
    assert not np.all(layer.find('b').get_value() == 0)
    w = theanets.Regressor([3, dict(size=3, diagonal_w=[1, 2, 3])]).find('out', 'w')
    assert np.array_equal(w.get_value(), np.diag([1, 2, 3]))


def test_init_option_naming_no_param_is_an_error():
    with pytest.raises(ConfigurationError, match=r"'std_xyz' applies to no parameter.*b, w"):
        hidden(std_xyz=1)


def test_rng_repeatable_and_layers_differ():
    def values(net):
        return [p.get_value() for p in net.params]

    a = theanets.Regressor([4, 3, 3, 3], rng=5)
    b = theanets.Regressor([4, 3, 3, 3], rng=5)
    c = theanets.Regressor([4, 3, 3, 3], rng=np.random.RandomState(5))
    d = theanets.Regressor([4, 3, 3, 3], rng=6)
    assert all(np.array_equal(p, q) for p, q in zip(values(a), values(b)))
    assert all(np.array_equal(p, q) for p, q in zip(values(a), values(c)))
    assert not np.allclose(values(a)[0], values(d)[0])
    assert not np.allclose(a.find('hid2', 'w').get_value(), a.find('out', 'w').get_value())
    assert not np.allclose(a.find('hid2', 'b').get_value(), a.find('out', 'b').get_value())


def test_layer_rng_argument():
    def layer(rng):
        net = theanets.Regressor([4])
        return net.add_layer(layers.Feedforward(size=3, inputs='in', rng=rng, name='x'))

    assert np.array_equal(layer(7).find('w').get_value(), layer(7).find('w').get_value())
    assert not np.allclose(layer(7).find('w').get_value(), layer(8).find('w').get_value())


# ----- constructing layers by hand -------------------------------------------------------------

def test_default_layer_names():
    assert layers.Feedforward(size=3).name == 'layer1'
    assert layers.Feedforward(size=3).name == 'layer2'
    assert layers.Feedforward(size=3, name='x').name == 'x'


def test_layer_signatures():
    inp = layers.Input(size=3, name='a', ndim=3)
    assert (inp.name, inp.ndim, inp.sparse, inp.activation) == ('a', 3, False, 'linear')
    assert layers.Input(shape=(2, 3)).ndim == 3
    assert layers.Classifier(size=3).activation == 'softmax'
    assert layers.Tied(partner='hid1').partner == 'hid1'
    assert layers.Feedforward(size=3).activation == 'relu'
    for cls in (layers.Concatenate, layers.Flatten, layers.Product, layers.Reshape):
        assert cls(name='n').name == 'n'


def test_unknown_layer_kwarg():
    with pytest.raises(TypeError, match=r"'sze'.*did you mean 'size'"):
        layers.Feedforward(sze=3)
    with pytest.raises(TypeError, match=r"'activaton'.*'activation'"):
        theanets.Regressor([4, dict(size=3, activaton='tanh'), 2])


def test_bad_sizes():
    with pytest.raises(ConfigurationError, match='positive integer'):
        layers.Feedforward(size=0)
    with pytest.raises(ConfigurationError, match='positive integers'):
        layers.Input(shape=(2, -1))


def test_find_and_params():
    net = theanets.Regressor([4, (3, 'prelu'), 2])
    layer = net.layers[1]
    assert [p.name for p in layer.params] == ['hid1.w', 'hid1.b', 'hid1.leak']
    assert layer.find('w') is layer.find(0) is net.find('hid1', 'w')
    assert layer.find('leak') is layer.params[2]
    with pytest.raises(KeyError, match='no parameter'):
        layer.find('q')
    with pytest.raises(KeyError, match="layer 'hid1' has no parameter 5"):
        layer.find(5)


def test_to_spec_rebuilds_layer():
    net = theanets.Regressor([4, dict(size=3, activation='tanh', std_w=0.5), 'tied'])
    for layer in net.layers[1:]:
        spec = layer.to_spec()
        form = spec.pop('form')
        clone = theanets.Layer.build(form, **spec)
        assert type(clone) is type(layer) and clone.name == layer.name
        assert clone.activation == layer.activation
    assert net.layers[1].to_spec()['std_w'] == 0.5
    assert net.layers[2].to_spec()['partner'] == 'hid1'


# ----- the custom layer of the layers guide ---------------------------------------------------

class NoBias(theanets.Layer):
    def transform(self, inputs):
        return TT.dot(inputs, self.find('w'))

    def setup(self):
        self.add_weights('w', nin=self.input_size, nout=self.output_size)


@pytest.fixture
def nobias():
    # other modules (the docs' examples) may define a NoBias too; the latest
    # definition owns the name, so register this module's class again.
    theanets.Layer._registry.add(NoBias)
    return NoBias


def test_custom_layer_is_registered(nobias):
    layer = theanets.Layer.build('nobias', size=4)
    assert isinstance(layer, NoBias)
    net = theanets.Regressor([3, (4, 'nobias')])
    assert isinstance(net.layers[1], NoBias)
    assert [p.name for p in net.params] == ['out.w']


def test_custom_layer_pca_autoencoder(nobias):
    net = theanets.Autoencoder(layers=(4, (3, 'nobias', 'linear'), (4, 'tied', 'linear')))
    assert isinstance(net.layers[1], NoBias)
    assert net.layers[2].partner is net.layers[1]
    x = np.random.RandomState(0).randn(64, 4).dot(np.diag([3, 2, 1, 0.1])).astype('f')
    before = ((net.predict(x) - x) ** 2).mean()
    net.train([x], algo='adam', learning_rate=0.05, max_updates=30, batch_size=64)
    w, b = U.value(net, 'hid1', 'w'), U.value(net, 'out', 'b')
    expected = x.astype('float64').dot(w).dot(w.T) + b
    out = net.predict(x)
    assert np.allclose(out, expected, atol=1e-4)
    assert ((out - x) ** 2).mean() < before
