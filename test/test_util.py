"""Tests for theanets.util and theanets.backend: errors, registries, random init, matching."""

import numpy as np
import pytensor.tensor as pt
import pytest

import theanets
from theanets import backend, util


def test_configuration_error_is_a_value_error():
    assert issubclass(util.ConfigurationError, ValueError)
    assert issubclass(util.ConfigurationError, util.Error)


def test_closest_finds_typos():
    assert util.closest('min_improvment', ['min_improvement', 'momentum', 'patience'])[0] == \
        'min_improvement'
    assert util.closest('zzzz', ['min_improvement']) == []


def test_check_kwargs_names_argument_and_suggestion():
    util.check_kwargs(['a'], ['a', 'b'], 'f()')
    with pytest.raises(TypeError, match=r"f\(\) got unknown keyword argument 'lerning_rate'"
                       r".*did you mean 'learning_rate'"):
        util.check_kwargs(['lerning_rate'], ['learning_rate', 'momentum'], 'f()')
    with pytest.raises(TypeError, match="arguments 'x'; 'y'"):
        util.check_kwargs(['y', 'x'], ['a'], 'f()')


class TestRegistry:
    def test_builtin_families_and_aliases(self):
        assert theanets.Layer.get_class('FF') is theanets.layers.Feedforward
        assert theanets.Layer.get_class('softmax') is theanets.layers.Classifier
        assert theanets.Loss.get_class('XE') is theanets.losses.CrossEntropy
        assert theanets.Layer.is_registered('layer')
        assert theanets.Loss.is_registered('loss')
        assert not theanets.Layer.is_registered('nonesuch')
        assert not theanets.Layer.is_registered(3)

    def test_subclasses_register_by_lowercase_name_and_extra_keys(self):
        class MyCustomLayer(theanets.layers.Feedforward):
            __extra_registration_keys__ = ['mcl']

        assert theanets.Layer.get_class('mycustomlayer') is MyCustomLayer
        assert theanets.Layer.get_class('MCL') is MyCustomLayer
        layer = theanets.Layer.build('mcl', size=3, name='c')
        assert isinstance(layer, MyCustomLayer) and layer.name == 'c'

    def test_unknown_key_lists_closest_and_known(self):
        with pytest.raises(KeyError, match=r"unknown layer 'fedforward'.*'feedforward'"
                                           r".*known layers:.*tied"):
            theanets.Layer.get_class('fedforward')

    def test_non_string_key(self):
        with pytest.raises(TypeError, match='expected a layer name, got 3'):
            theanets.Layer.get_class(3)
        assert theanets.Layer.get_class(theanets.layers.Tied) is theanets.layers.Tied

    def test_families_are_separate(self):
        assert not theanets.Loss.is_registered('feedforward')
        assert not theanets.Layer.is_registered('mse')


class TestRandomMatrix:
    def test_shape_dtype_and_moments(self):
        m = util.random_matrix(200, 300, mean=2, std=0.5, rng=1)
        assert m.shape == (200, 300) and m.dtype == np.float32
        assert abs(m.mean() - 2) < 0.01 and abs(m.std() - 0.5) < 0.01

    def test_repeatable_with_int_or_state(self):
        a = util.random_matrix(3, 4, rng=5)
        b = util.random_matrix(3, 4, rng=np.random.RandomState(5))
        c = util.random_matrix(3, 4, rng=6)
        assert np.array_equal(a, b) and not np.allclose(a, c)

    def test_sparsity_zeroes_fraction_but_keeps_diagonal(self):
        m = util.random_matrix(100, 200, sparsity=0.9, rng=2)
        frac = (m == 0).mean()
        assert 0.85 < frac < 0.92
        assert np.all(np.diag(m) != 0)

    def test_diagonal(self):
        assert np.array_equal(util.random_matrix(2, 3, diagonal=1.5),
                              [[1.5, 0, 0], [0, 1.5, 0]])
        assert np.array_equal(util.random_matrix(3, 2, diagonal=np.array([1., 2.])),
                              [[1, 0], [0, 2], [0, 0]])
        with pytest.raises(util.ConfigurationError, match='vector of 2 values'):
            util.random_matrix(3, 2, diagonal=[1., 2., 3.])

    def test_radius(self):
        m = util.random_matrix(6, 6, radius=0.7, rng=3)
        assert np.isclose(np.linalg.svd(m, compute_uv=False)[0], 0.7, rtol=1e-5)

    def test_random_vector(self):
        v = util.random_vector(1000, mean=-1, std=2, rng=4)
        assert v.shape == (1000, ) and v.dtype == np.float32
        assert abs(v.mean() + 1) < 0.2 and abs(v.std() - 2) < 0.2
        assert np.array_equal(v, util.random_vector(1000, mean=-1, std=2, rng=4))


def test_as_rng():
    state = np.random.RandomState(1)
    assert util.as_rng(state) is state
    assert util.as_rng(3).randint(1000) == np.random.RandomState(3).randint(1000)
    with pytest.raises(TypeError, match='rng must be'):
        util.as_rng('seed')


def test_outputs_matching_globs():
    outputs = {'in:out': 1, 'hid1:out': 2, 'hid1:pre': 3, 'out:out': 4}
    assert list(util.outputs_matching(outputs, '*:out')) == [
        ('hid1:out', 2), ('in:out', 1), ('out:out', 4)]
    assert list(util.outputs_matching(outputs, ['hid?:pre', 'out:*'])) == [
        ('hid1:pre', 3), ('out:out', 4)]
    assert list(util.outputs_matching(outputs, 'nothing')) == []


def test_params_matching_globs():
    net = theanets.Regressor([2, 3, 4, 1])
    assert [n for n, _ in util.params_matching(net.layers, '*.w')] == [
        'hid1.w', 'hid2.w', 'out.w']
    assert [n for n, _ in util.params_matching(net.layers, ['hid2.*'])] == ['hid2.w', 'hid2.b']
    name, param = next(util.params_matching(net.layers, 'out.b'))
    assert param is net.find('out', 'b')


def test_backend_function_counts_compiles_and_uses_float32():
    x = pt.matrix('x')
    before = backend.compile_count()
    f = backend.function([x], 2 * x)
    assert backend.compile_count() == before + 1
    assert np.allclose(f(np.ones((2, 2), 'f')), 2)
    assert util.FLOAT == 'float32'
    import pytensor
    assert pytensor.config.floatX == 'float32'
