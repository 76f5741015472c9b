"""Trainers: the strategies ``Network.itertrain`` runs for each ``algo``.

- :class:`DownhillTrainer` runs one of the optimizers (``'sgd'``, ``'rmsprop'``, ...).
- :class:`SampleTrainer` (``'sample'``) sets weights to samples of the data.
- :class:`SupervisedPretrainer` (``'layerwise'``, ``'sup*'``) trains a growing
  stack of layers, one stage per hidden layer, then the full network.
- :class:`UnsupervisedPretrainer` (``'pretrain'``, ``'unsup*'``) pretrains the
  hidden layers as a tied autoencoder on the inputs, then copies the weights.

Every trainer yields ``(train_monitors, valid_monitors)`` pairs.
"""

import collections
import logging
import time

import numpy as np

from . import checks
from . import optimizers
from . import regularizers
from . import util

__all__ = ['DownhillTrainer', 'SampleTrainer', 'SupervisedPretrainer',
           'UnsupervisedPretrainer', 'build', 'check_train_kwargs', 'ProgressSaver']

log = logging.getLogger(__name__)

#: train() keywords the network itself reads (not the optimizer).
NETWORK_KWARGS = {'monitors', 'monitor_gradients', 'rng', 'allow_nonfinite'}


def build(algo, subalgo, network):
    """Return the trainer for ``algo`` (a name, or an object with ``itertrain``)."""
    if not isinstance(algo, str):
        if hasattr(algo, 'itertrain'):
            return algo
        raise util.ConfigurationError(
            'algo must be an algorithm name or an object with an itertrain method, '
            'got {!r}'.format(algo))
    name = algo.lower()
    if name == 'sample':
        return SampleTrainer(network)
    if name.startswith('layer') or name.startswith('sup'):
        return SupervisedPretrainer(subalgo, network)
    if name.startswith('pre') or name.startswith('unsup'):
        return UnsupervisedPretrainer(subalgo, network)
    if not optimizers.Optimizer.is_registered(name) or name == 'optimizer':
        known = sorted(k for k in optimizers.Optimizer._registry.classes if k != 'optimizer')
        known += ['sample', 'layerwise', 'pretrain']
        near = util.closest(name, known)
        raise util.ConfigurationError('unknown training algorithm {!r}{}; known: {}'.format(
            algo, ' (did you mean {}?)'.format(', '.join(map(repr, near))) if near else '',
            ', '.join(known)))
    return DownhillTrainer(name, network)


def check_train_kwargs(network, runner, kwargs):
    """Raise TypeError for ``train()`` keywords that nothing reads."""
    algo = getattr(runner, 'algo', None)
    valid = set(NETWORK_KWARGS) | regularizers.keyword_names()
    if algo is not None:
        valid |= optimizers.hyperparameter_names(algo)
    elif isinstance(runner, SampleTrainer):
        valid |= optimizers.hyperparameter_names()
    else:
        return
    util.check_kwargs(kwargs, valid, 'train()')


def _freeze(value):
    """A hashable stand-in for a monitors spec or other kwargs value."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if callable(value):
        return ('callable', id(value))
    return value


def _graph_kwargs(kwargs):
    names = regularizers.keyword_names() | {'monitors', 'rng'}
    return {k: v for k, v in kwargs.items() if k in names}


def _prepare(network, data, kwargs):
    if isinstance(data, (list, tuple)):
        return checks.dataset(network, data, kwargs.get('allow_nonfinite', False))
    return data


class DownhillTrainer(object):
    """Train a network with one optimizer algorithm, caching the compiled optimizer.

    Parameters
    ----------
    algo : str
        An optimizer name such as ``'rmsprop'``.
    network : :class:`theanets.Network`
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _key(self, kwargs):
        net = self.network
        regs = regularizers.from_kwargs(net, **kwargs)
        losses = tuple((type(l).__name__, l.weight, l.output_name) for l in net.losses)
        return (self.algo, net._graph_key(regs), losses, _freeze(kwargs.get('monitors')),
                bool(kwargs.get('monitor_gradients')))

    def _optimizer(self, kwargs):
        net = self.network
        graph_kwargs = _graph_kwargs(kwargs)
        key = self._key(graph_kwargs)
        if key not in net._optimizers:
            net._optimizers[key] = optimizers.build(
                self.algo, loss=net.loss(**graph_kwargs), params=net.params,
                inputs=net.variables, updates=net.updates(**graph_kwargs),
                monitors=net.monitors(**graph_kwargs),
                monitor_gradients=bool(kwargs.get('monitor_gradients')))
        return net._optimizers[key]

    def itertrain(self, train, valid=None, **kwargs):
        """Yield ``(train_monitors, valid_monitors)`` after each epoch."""
        net = self.network
        train = _prepare(net, train, kwargs)
        valid = _prepare(net, valid, kwargs) if valid is not None else None
        opt = self._optimizer(kwargs)
        hyper = {k: v for k, v in kwargs.items()
                 if k not in _graph_kwargs(kwargs) and k not in NETWORK_KWARGS}
        hyper['rng'] = kwargs.get('rng', net._rng)
        hyper.setdefault('batch_size', 32)
        return opt.iterate(train, valid, **hyper)


def _arrays(data):
    if callable(data):
        return list(data())
    if isinstance(data, optimizers.Dataset):
        return [np.concatenate(parts) for parts in zip(*list(data))]
    return list(data)


def _unit_rows(rows):
    norms = np.sqrt((rows * rows).sum(axis=1, keepdims=True))
    return rows / np.where(norms > 0, norms, 1)


def _sample_rows(data, count, rng):
    """Draw ``count`` rows of ``data`` (with jittered repeats when there are too few)."""
    data = np.asarray(data).reshape(len(data), -1)
    index = rng.permutation(len(data))[:count]
    rows = data[index]
    while len(rows) < count:
        extra = data[rng.randint(len(data), size=min(len(data), count - len(rows)))]
        rows = np.vstack([rows, extra + 1e-3 * rng.randn(*extra.shape)])
    return _unit_rows(rows.astype(util.FLOAT))


class SampleTrainer(object):
    """Set weights to unit-norm samples of the data, then stop (``algo='sample'``).

    Weight matrices whose row count equals the input width get sampled input
    vectors as columns; the output layer's matrices whose column count equals
    the target width get sampled target vectors as rows.
    """

    def __init__(self, network):
        self.network = network

    def itertrain(self, train, valid=None, **kwargs):
        net = self.network
        arrays = _arrays(train)
        rng = util.as_rng(kwargs.get('rng', net._rng))
        x = arrays[0].reshape(len(arrays[0]), -1)
        for param in net.params:
            value = param.get_value()
            if value.ndim == 2 and value.shape[0] == x.shape[1]:
                param.set_value(_sample_rows(x, value.shape[1], rng).T)
        n_in = len(net.inputs)
        if len(arrays) > n_in and np.issubdtype(arrays[n_in].dtype, np.floating):
            y = arrays[n_in].reshape(len(arrays[n_in]), -1)
            for param in net.layers[-1].params:
                value = param.get_value()
                if value.ndim == 2 and value.shape[1] == y.shape[1]:
                    param.set_value(_sample_rows(y, value.shape[0], rng))
        zero = collections.OrderedDict(loss=0.0)
        yield zero, zero


class SupervisedPretrainer(object):
    """Train growing prefixes of the network, one stage per hidden layer (``'layerwise'``).

    In an untied network of L layers, stage i trains ``layers[:i + 1]`` plus a
    temporary output layer ``'lwout'`` shaped like the real output; the last
    stage trains the whole network. A network with tied layers instead grows
    mirrored encoder/decoder pairs.
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _stages(self):
        from .layers import Tied, Feedforward
        net = self.network
        layers = list(net.layers)
        out = layers[-1]
        if any(isinstance(l, Tied) for l in layers):
            for i in range(1, (len(layers) - 1) // 2):
                yield layers[:i + 1] + layers[len(layers) - i:], layers[len(layers) - i]
        else:
            for i in range(1, len(layers) - 1):
                tap = Feedforward(size=out.output_size, inputs=layers[i].output_name,
                                  name='lwout', activation=out.activation,
                                  rng=int(net._rng.randint(2 ** 31 - 1)))
                yield layers[:i + 1] + [tap], None
        yield layers, None

    def itertrain(self, train, valid=None, **kwargs):
        net = self.network
        original, names = list(net.layers), [l.output_name for l in net.losses]
        try:
            for stage, decoder in self._stages():
                yield from self._train_stage(stage, decoder, train, valid, kwargs)
        finally:
            net.layers = original
            for loss, name in zip(net.losses, names):
                loss.output_name = name
            net._reset_caches()

    def _train_stage(self, stage, decoder, train, valid, kwargs):
        net = self.network
        saved = dict(decoder._input_shapes) if decoder is not None else None
        if decoder is not None:
            feeder = stage[stage.index(decoder) - 1]
            decoder._input_shapes = collections.OrderedDict(
                [(feeder.output_name, feeder.output_shape)])
        net.layers = stage
        if stage[-1].activate is None:
            stage[-1].bind(net)
        for loss in net.losses:
            loss.output_name = stage[-1].output_name
        net._reset_caches()
        log.info('layerwise: training %s', ' -> '.join(l.name for l in stage))
        try:
            yield from DownhillTrainer(self.algo, net).itertrain(train, valid, **kwargs)
        finally:
            if decoder is not None:
                decoder._input_shapes = saved


class UnsupervisedPretrainer(object):
    """Pretrain hidden layers as a tied autoencoder of the inputs (``'pretrain'``).

    A shadow :class:`~theanets.Autoencoder` mirrors every layer but the
    output with tied layers; it is trained layerwise on the input arrays only,
    then its parameters are copied into the network by name.
    """

    def __init__(self, algo, network):
        self.algo = algo
        self.network = network

    def _shadow(self):
        from .feedforward import Autoencoder
        net = self.network
        specs = [l.to_spec() for l in net.layers[:-1]]
        for spec in specs:
            spec.pop('inputs', None)
            if spec['form'] == 'input':
                spec.pop('activation', None)
        hidden = net.layers[1:-1]
        for i, layer in enumerate(reversed(hidden)):
            last = i == len(hidden) - 1
            specs.append(dict(form='tied', partner=layer.name, name='tied-' + layer.name,
                              activation='linear' if last else layer.kwargs['activation']))
        log.info('creating shadow network')
        return Autoencoder(specs, rng=int(net._rng.randint(2 ** 31 - 1)))

    def itertrain(self, train, valid=None, **kwargs):
        net = self.network
        n_in = len(net.inputs)
        shadow = self._shadow()
        for layer in shadow.layers:
            for param in layer.params:
                for own in net.params:
                    if own.name == param.name and own.get_value().shape == param.get_value().shape:
                        param.set_value(own.get_value())
        inputs = _inputs_only(train, n_in)
        valid = _inputs_only(valid, n_in) if valid is not None else None
        yield from SupervisedPretrainer(self.algo, shadow).itertrain(inputs, valid, **kwargs)
        self._copy_back(shadow)

    def _copy_back(self, shadow):
        for param in self.network.params:
            for other in shadow.params:
                if other.name == param.name:
                    log.info('copying pretrained parameter %s', param.name)
                    param.set_value(other.get_value())


def _inputs_only(data, n_inputs):
    if callable(data):
        return lambda: list(data())[:n_inputs]
    if isinstance(data, optimizers.Dataset):
        return [np.concatenate(parts) for parts in zip(*list(data))][:n_inputs]
    return list(data)[:n_inputs]


class ProgressSaver(object):
    """Save a network during training: every ``save_every`` epochs (int) or minutes (float).

    With ``save_every=0`` the network is saved after every epoch.
    """

    def __init__(self, network, save_every, save_progress):
        self.network = network
        self.save_every = save_every
        self.target = save_progress
        self.count = 0
        self.last = time.time()

    def tick(self):
        if not self.target:
            return
        self.count += 1
        every = self.save_every
        if isinstance(every, float):
            due = time.time() - self.last >= 60 * every
        else:
            due = every <= 0 or self.count % every == 0
        if due:
            self.save()

    def save(self):
        target = self.target
        if isinstance(target, str) and '{}' in target:
            target = target.format(int(time.time()))
        self.network.save(target)
        self.last = time.time()
