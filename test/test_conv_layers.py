"""Convolution and pooling layers and the theanets.convolution models."""

import numpy as np
import pytest
import scipy.signal

import theanets
from theanets import util


def conv2_reference(x, w, b, stride, border_mode):
    """True 2-D convolution of channels-last x (B, W, H, C) with w (n, C, fw, fh)."""
    n, c, fw, fh = w.shape
    outs = []
    for example in x:
        maps = []
        for k in range(n):
            total = sum(scipy.signal.convolve(example[:, :, ch], w[k, ch], mode='full')
                        for ch in range(c))
            maps.append(total)
        outs.append(np.stack(maps, axis=-1))
    full = np.stack(outs)  # (B, W + fw - 1, H + fh - 1, n)
    if border_mode == 'valid':
        full = full[:, fw - 1:x.shape[1], fh - 1:x.shape[2]]
    elif border_mode == 'same':
        bw, bh = (fw - 1) // 2, (fh - 1) // 2
        full = full[:, fw - 1 - bw:, fh - 1 - bh:][:, :x.shape[1], :x.shape[2]]
    return full[:, ::stride[0], ::stride[1]] + b


def conv_net(border_mode, stride, filter_size=(3, 2), size=3, channels=2):
    return theanets.convolution.Regressor([
        (7, 6, channels),
        dict(form='conv2', size=size, filter_size=filter_size, stride=stride,
             border_mode=border_mode, activation='linear'),
        'flatten', 2], rng=3)


@pytest.mark.parametrize('border_mode', ['valid', 'full', 'same'])
@pytest.mark.parametrize('stride', [(1, 1), (2, 3)])
def test_conv2_matches_scipy_reference(border_mode, stride):
    net = conv_net(border_mode, stride)
    x = np.random.RandomState(0).randn(2, 7, 6, 2).astype('f')
    out = net.feed_forward(x)['hid1:out']
    w = net.find('hid1', 'w').get_value()
    b = net.find('hid1', 'b').get_value()
    expected = conv2_reference(x, w, b, stride, border_mode)
    assert out.shape == expected.shape
    assert net.layers[1].output_shape == expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('border_mode', ['valid', 'full', 'same'])
def test_conv1_matches_scipy_reference(border_mode):
    net = theanets.recurrent.Regressor([
        3, dict(form='conv1', size=2, filter_size=3, stride=2, border_mode=border_mode,
                activation='tanh'), 2], rng=4)
    x = np.random.RandomState(1).randn(2, 9, 3).astype('f')
    out = net.feed_forward(x)['hid1:out']
    w = net.find('hid1', 'w').get_value()
    assert w.shape == (2, 3, 1, 3)
    b = net.find('hid1', 'b').get_value()
    expected = conv2_reference(x[:, :, None, :], w.transpose(0, 1, 3, 2), b, (2, 1),
                               border_mode)[:, :, 0]
    np.testing.assert_allclose(out, np.tanh(expected), rtol=1e-4, atol=1e-4)
    assert net.predict(x).shape == (2, expected.shape[1], 2)


def pool_reference(x, size, stride, mode):
    reduce = np.max if mode == 'max' else np.mean
    nw = (x.shape[1] - size[0]) // stride[0] + 1
    nh = (x.shape[2] - size[1]) // stride[1] + 1
    out = np.empty((x.shape[0], nw, nh, x.shape[3]), x.dtype)
    for i in range(nw):
        for j in range(nh):
            window = x[:, i * stride[0]:i * stride[0] + size[0],
                       j * stride[1]:j * stride[1] + size[1]]
            out[:, i, j] = reduce(window, axis=(1, 2))
    return out


@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_pool2_matches_numpy(mode):
    net = theanets.convolution.Regressor([
        (7, 6, 2), dict(form='pool2', pool_size=(3, 2), stride=(2, 1), mode=mode),
        'flatten', 1])
    x = np.random.RandomState(2).randn(3, 7, 6, 2).astype('f')
    out = net.feed_forward(x)['hid1:out']
    np.testing.assert_allclose(out, pool_reference(x, (3, 2), (2, 1), mode), rtol=1e-5)
    assert net.layers[1].output_shape == (3, 5, 2)
    assert net.layers[1].params == []


@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_pool1_matches_numpy(mode):
    net = theanets.recurrent.Regressor([
        2, dict(form='pool1', pool_size=2, mode=mode), 1])
    x = np.random.RandomState(3).randn(2, 7, 2).astype('f')
    out = net.feed_forward(x)['hid1:out']
    expected = pool_reference(x[:, :, None, :], (2, 1), (2, 1), mode)[:, :, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_conv2_gradient_matches_finite_differences():
    net = conv_net('same', (2, 1))
    x = np.random.RandomState(4).randn(2, 7, 6, 2).astype('f')
    y = np.random.RandomState(5).randn(2, 2).astype('f')
    import pytensor
    w = net.find('hid1', 'w')
    loss = net.loss()
    fn = theanets.backend.function(net.variables, [loss, pytensor.grad(loss, w)])
    value, grad = fn(x, y)
    base = w.get_value()
    eps, index = 1e-2, (1, 0, 2, 1)
    bumped = base.copy()
    bumped[index] += eps
    w.set_value(bumped)
    up = fn(x, y)[0]
    bumped[index] -= 2 * eps
    w.set_value(bumped)
    down = fn(x, y)[0]
    w.set_value(base)
    np.testing.assert_allclose(grad[index], (up - down) / (2 * eps), rtol=2e-2, atol=1e-3)


def test_weight_shapes_and_param_count():
    net = theanets.convolution.Classifier([
        (8, 8, 3), dict(form='conv2', size=5, filter_size=(3, 2)), 'flatten', 4])
    assert net.find('hid1', 'w').get_value().shape == (5, 3, 3, 2)
    assert net.find('hid1', 'b').get_value().shape == (5, )
    assert net.layers[2].output_shape == (6 * 7 * 5, )
    assert net.num_params == 5 * 3 * 3 * 2 + 5 + 6 * 7 * 5 * 4 + 4


def test_mnist_convolution_shaped_model():
    # the original example's model: [(H, W, 1), conv2 filters, 'flatten', classes]
    net = theanets.convolution.Classifier([
        (12, 12, 1), dict(form='conv2', size=4, filter_size=(6, 6)), 'flatten', 10])
    assert net.INPUT_NDIM == 4 and net.inputs[0].ndim == 4
    probs = net.predict_proba(np.random.rand(3, 12, 12, 1).astype('f'))
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize('spec, words', [
    (dict(form='conv2', size=3), 'filter_size'),
    (dict(form='conv2', size=3, filter_size=3, border_mode='half'), 'border_mode'),
    (dict(form='conv2', size=3, filter_size=9), 'does not fit'),
    (dict(form='conv2', filter_size=3), 'size'),
    (dict(form='conv2', size=3, filter_size=(3, 0)), 'filter_size'),
    (dict(form='pool2', pool_size=(9, 9)), 'does not fit'),
    (dict(form='pool2', pool_size=2, mode='median'), 'mode'),
    (dict(form='conv1', size=3, filter_size=2), '3-D input'),
])
def test_configuration_errors(spec, words):
    with pytest.raises(util.ConfigurationError, match=words):
        theanets.convolution.Regressor([(6, 6, 1), spec, 'flatten', 2])


def test_conv_classifier_on_digits_reaches_097():
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16).astype('f').reshape(-1, 8, 8, 1)
    y = digits.target.astype('i')
    order = np.random.RandomState(13).permutation(len(x))
    cut = int(0.8 * len(x))
    train, valid, test = order[200:cut], order[:200], order[cut:]
    net = theanets.convolution.Classifier([
        (8, 8, 1), dict(form='conv2', size=16, filter_size=3, border_mode='same'),
        dict(form='pool2', pool_size=2),
        dict(form='conv2', size=32, filter_size=3, border_mode='same'), 'flatten', 10],
        rng=13)
    net.train([x[train], y[train]], [x[valid], y[valid]], algo='adam', learning_rate=3e-3,
              batch_size=32, validate_every=1, patience=4, max_updates=30)
    assert net.score(x[test], y[test]) >= 0.97


@pytest.mark.parametrize('algo', ['sgd', 'rmsprop'])
def test_conv_models_train_with_regularizers(algo):
    net = theanets.convolution.Regressor([
        (5, 5, 1), dict(form='conv2', size=2, filter_size=2), 'flatten', 1], rng=6)
    rng = np.random.RandomState(7)
    x = rng.randn(16, 5, 5, 1).astype('f')
    y = x.sum(axis=(1, 2)).astype('f')
    before = net.score(x, y)
    net.train([x, y], algo=algo, learning_rate=1e-2, momentum=0.5, max_updates=20,
              validate_every=1, weight_l2=1e-4, hidden_dropout=0.1)
    assert net.score(x, y) > before


def test_conv_net_graph_uses_the_ops():
    """A conv + pool net compiles to the ops of theanets.ops.conv; the input layer's
    input gradient is not computed."""
    import pytensor
    net = theanets.convolution.Regressor([
        (7, 6, 2), dict(form='conv2', size=3, filter_size=(3, 2), stride=(1, 2),
                        border_mode='same'),
        dict(form='pool2', pool_size=(2, 2)), 'flatten', 2], rng=8)
    loss = net.loss()
    fn = theanets.backend.function(net.variables, pytensor.grad(loss, net.find('hid1', 'w')))
    ops = {type(n.op).__name__ for n in fn.maker.fgraph.apply_nodes}
    assert {'ConvOp', 'ConvGradWeightsOp', 'PoolOp', 'PoolGradOp'} <= ops
    assert 'ConvGradInputsOp' not in ops


def _jax_models():
    """(name, build(rng) -> network, input shape, target maker) of tiny models."""
    rng = np.random.RandomState(10)
    images = [(8, 7, 2), dict(form='conv2', size=3, filter_size=(3, 2), border_mode='same'),
              dict(form='pool2', pool_size=2), 'flatten']
    return [
        ('conv2 classifier', lambda seed: theanets.convolution.Classifier(
            images + [3], rng=seed), (16, 8, 7, 2), rng.randint(3, size=16).astype('i')),
        ('conv2 regressor', lambda seed: theanets.convolution.Regressor([
            (8, 7, 2), dict(form='conv2', size=3, filter_size=2, stride=(2, 1),
                            border_mode='full'),
            dict(form='pool2', pool_size=(3, 2), stride=(2, 1), mode='mean'), 'flatten', 2],
            rng=seed), (16, 8, 7, 2), rng.randn(16, 2).astype('f')),
        ('conv1 regressor', lambda seed: theanets.recurrent.Regressor([
            2, dict(form='conv1', size=3, filter_size=4, border_mode='same',
                    activation='tanh'),
            dict(form='conv1', size=2, filter_size=1, activation='linear')], rng=seed),
         (16, 9, 2), rng.randn(16, 9, 2).astype('f')),
        ('mlp classifier', lambda seed: theanets.Classifier([5, 4, 3], rng=seed), (16, 5),
         rng.randint(3, size=16).astype('i')),
    ]


@pytest.fixture
def restore_mode():
    previous = theanets.backend.get_mode()
    yield
    theanets.backend.set_mode(previous)


@pytest.mark.parametrize('name,build,shape,target', _jax_models(),
                         ids=[m[0] for m in _jax_models()])
def test_models_in_jax_mode(restore_mode, name, build, shape, target):
    """Same weights: JAX mode predicts as C mode does; it trains (the loss falls)."""
    pytest.importorskip('jax')
    x = np.random.RandomState(11).randn(*shape).astype('f')
    outputs, losses = [], []
    for mode in ('CVM', 'JAX'):
        theanets.backend.set_mode(mode)
        net = build(12)
        outputs.append(net.predict(x))
        losses.append([monitors['loss'] for monitors, _ in net.itertrain(
            [x, target], algo='sgd', learning_rate=0.05, momentum=0.5, batch_size=16,
            max_updates=8)])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses[1][0], losses[0][0], rtol=1e-4)
    assert losses[1][-1] < losses[1][0]


def test_conv1_and_pool1_predict_in_jax_mode(restore_mode):
    pytest.importorskip('jax')
    x = np.random.RandomState(13).randn(4, 11, 2).astype('f')
    outputs = []
    for mode in ('CVM', 'JAX'):
        theanets.backend.set_mode(mode)
        net = theanets.recurrent.Regressor([
            2, dict(form='conv1', size=3, filter_size=3, stride=2, border_mode='full'),
            dict(form='pool1', pool_size=3, stride=1, mode='max'), 2], rng=14)
        outputs.append(net.predict(x))
    assert outputs[0].shape == (4, 5, 2)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
