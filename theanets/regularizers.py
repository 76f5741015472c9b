r"""Regularizers: terms added to the loss, and noise or dropout applied to the graph.

A regularizer is built from ``train()`` keywords by :func:`from_kwargs`:

- ``weight_l2`` / ``weight_decay``, ``weight_l1`` / ``weight_sparsity``: penalties on
  weight matrices (parameters with more than one dimension);
- ``hidden_l1`` / ``hidden_sparsity`` (and ``hidden_l2``): penalties on hidden activations;
- ``recurrent_norm``, ``recurrent_state``: penalties on recurrent outputs
  (a ``pattern`` is required);
- ``contractive``: the squared Jacobian of hidden activations w.r.t. the inputs;
- ``input_noise``, ``hidden_noise``, ``output_noise`` and ``noise={pattern: std}``: Gaussian noise;
- ``input_dropout``, ``hidden_dropout``, ``output_dropout`` and ``dropout={pattern: p}``:
  inverted Bernoulli dropout;
- any :class:`Regularizer` subclass by lowercase class name, e.g. ``weightinverse=1e-6``.

A value may be a number (the weight) or a dict such as
``dict(weight=0.1, pattern='hid1:out')``; ``regularizers=[...]`` gives instances directly.

Examples
--------
>>> import numpy as np, theanets
>>> net = theanets.Regressor([3, 4, 2])
>>> [type(r).__name__ for r in theanets.regularizers.from_kwargs(
...     net, weight_l2=1e-4, hidden_dropout=0.5)]
['BernoulliDropout', 'WeightL2']
"""

import fnmatch
import logging

import numpy as np
import pytensor
import pytensor.tensor as TT
from pytensor.tensor.random.utils import RandomStream

from . import util

__all__ = ['from_kwargs', 'keyword_names', 'Regularizer', 'WeightL2', 'WeightL1', 'HiddenL1',
           'HiddenL2', 'RecurrentNorm', 'RecurrentState', 'Contractive', 'GaussianNoise',
           'BernoulliDropout']

log = logging.getLogger(__name__)

_CANNED = {
    'input_noise': ('noise', 'inputs'), 'hidden_noise': ('noise', 'hiddens'),
    'output_noise': ('noise', 'outputs'), 'input_dropout': ('dropout', 'inputs'),
    'hidden_dropout': ('dropout', 'hiddens'), 'output_dropout': ('dropout', 'outputs'),
}


class Regularizer(util.Registrar):
    """Base class for regularizers.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Shell glob(s) over graph output names (``'hid1:out'``) or parameter
        names (``'hid1.w'``), depending on the regularizer.
    weight : float, optional
        Multiplier of the loss term (or std / probability for noise and dropout).
    """

    _registry = util.Registry('regularizer')

    def __init__(self, pattern=None, weight=0.0):
        self.pattern = pattern
        self.weight = weight

    @property
    def key(self):
        """A hashable description used to cache graphs and compiled functions."""
        pattern = self.pattern if isinstance(self.pattern, (str, type(None))) \
            else tuple(self.pattern)
        return (type(self).__name__, self.weight, pattern)

    def modify_graph(self, outputs):
        """Rewrite a layer's outputs dict in place while the graph is built (default: none)."""

    def loss(self, layers, outputs):
        """Return a scalar term added (times ``weight``) to the model's loss."""
        return 0

    def log(self):
        log.info('regularizer: %s * %s(%s)', self.weight, type(self).__name__, self.pattern)

    def _require_pattern(self):
        if self.pattern is None:
            raise util.ConfigurationError(
                '{} needs a pattern naming graph outputs, e.g. '
                '{}=dict(weight=0.1, pattern="hid1:out")'.format(
                    type(self).__name__, type(self).__name__.lower()))


Regularizer._registry.add(Regularizer)


def _mean_of(terms):
    terms = list(terms)
    if not terms:
        return 0
    return sum(terms) / len(terms)


class WeightL2(Regularizer):
    r"""Mean over matched weight matrices of :math:`\mathrm{mean}(W^2)` (pattern over params)."""

    __extra_registration_keys__ = ['weight_l2', 'weight_decay']

    def loss(self, layers, outputs):
        return _mean_of(self._term(p) for _, p in
                        util.params_matching(layers, self.pattern or '*') if p.ndim > 1)

    def _term(self, param):
        return TT.sqr(param).mean()


class WeightL1(WeightL2):
    r"""Mean over matched weight matrices of :math:`\mathrm{mean}|W|`."""

    __extra_registration_keys__ = ['weight_l1', 'weight_sparsity']

    def _term(self, param):
        return abs(param).mean()


class HiddenL1(Regularizer):
    r"""Mean over matched hidden outputs of :math:`\mathrm{mean}|h|`.

    The default pattern matches the ``'out'`` output of every hidden layer.
    """

    __extra_registration_keys__ = ['hidden_l1', 'hidden_sparsity']

    def loss(self, layers, outputs):
        pattern = self.pattern or [l.output_name for l in layers[1:-1]]
        return _mean_of(self._term(e) for _, e in util.outputs_matching(outputs, pattern))

    def _term(self, expr):
        return abs(expr).mean()


class HiddenL2(HiddenL1):
    r"""Mean over matched hidden outputs of :math:`\mathrm{mean}(h^2)`."""

    __extra_registration_keys__ = ['hidden_l2']

    def _term(self, expr):
        return TT.sqr(expr).mean()


class RecurrentNorm(Regularizer):
    r"""Penalise changes of the squared norm of recurrent outputs between time steps.

    :math:`\mathrm{mean}_t (\|h_{t+1}\|^2 - \|h_t\|^2)^2` for each matched
    (batch, time, n) output; a ``pattern`` is required.
    """

    __extra_registration_keys__ = ['recurrent_norm']

    def loss(self, layers, outputs):
        self._require_pattern()
        return _mean_of(self._term(e) for _, e in util.outputs_matching(outputs, self.pattern))

    def _term(self, expr):
        norms = TT.sqr(expr).sum(axis=-1)
        return TT.sqr(norms[:, 1:] - norms[:, :-1]).mean()


class RecurrentState(RecurrentNorm):
    r"""Penalise changes of recurrent states: :math:`\mathrm{mean}(h_{t+1} - h_t)^2`."""

    __extra_registration_keys__ = ['recurrent_state']

    def _term(self, expr):
        return TT.sqr(expr[:, 1:] - expr[:, :-1]).mean()


class Contractive(Regularizer):
    r"""Squared Jacobian of hidden activations with respect to the inputs.

    :math:`\mathrm{mean}((\partial\, \mathrm{mean}(h) / \partial x)^2)` for each
    matched hidden output ``h`` and each input variable matching ``wrt``.
    """

    def __init__(self, pattern=None, weight=0.0, wrt='*'):
        super().__init__(pattern=pattern, weight=weight)
        self.wrt = wrt

    def loss(self, layers, outputs):
        from .layers import Input
        pattern = self.pattern or [l.output_name for l in layers[1:-1]]
        wrt = [l.input for l in layers if isinstance(l, Input)
               and any(fnmatch.fnmatch(l.input.name, p) for p in
                       ([self.wrt] if isinstance(self.wrt, str) else self.wrt))]
        terms = []
        for _, expr in util.outputs_matching(outputs, pattern):
            grads = pytensor.grad(expr.mean(), wrt)
            terms.extend(TT.sqr(g).mean() for g in grads)
        return _mean_of(terms)


class _Stochastic(Regularizer):
    """Shared base of noise and dropout: rewrites matched outputs with a seeded stream."""

    SUFFIX = ''

    def __init__(self, pattern='*:out', weight=0.0, rng=13):
        super().__init__(pattern=pattern, weight=weight)
        self.rng = rng
        seed = rng if isinstance(rng, (int, np.integer)) else util.as_rng(rng).randint(2 ** 30)
        self.seed = int(seed)
        self.streams = RandomStream(self.seed)

    @property
    def key(self):
        return super().key + (self.seed, )

    def modify_graph(self, outputs):
        for name, expr in list(util.outputs_matching(outputs, self.pattern)):
            if self.SUFFIX in name:
                continue
            outputs[name + self.SUFFIX] = expr
            outputs[name] = self._apply(expr)


class GaussianNoise(_Stochastic):
    """Add N(0, weight^2) noise to matched outputs; the original is kept as ``'<name>-prenoise'``."""

    SUFFIX = '-prenoise'

    def _apply(self, expr):
        return expr + self.streams.normal(0, self.weight, size=expr.shape, dtype=expr.dtype)


class BernoulliDropout(_Stochastic):
    """Zero matched outputs with probability ``weight``, scaling the rest by 1 / (1 - weight).

    The original is kept as ``'<name>-predrop'``.
    """

    SUFFIX = '-predrop'

    def _apply(self, expr):
        keep = 1 - self.weight
        mask = self.streams.binomial(1, keep, size=expr.shape).astype(expr.dtype)
        return expr * mask / keep


def _layer_groups(graph):
    from .layers import Input
    return {
        'inputs': [l.output_name for l in graph.layers if isinstance(l, Input)],
        'hiddens': [l.output_name for l in graph.layers[1:-1]],
        'outputs': [graph.layers[-1].output_name] if graph.layers else [],
    }


def keyword_names():
    """Return the set of ``train()`` keywords that build regularizers."""
    return set(_CANNED) | {'noise', 'dropout', 'regularizers'} | {
        k for k in Regularizer._registry.classes if k != 'regularizer'}


def _stochastic(graph, kwargs, rng):
    groups = _layer_groups(graph)
    specs = {'noise': [], 'dropout': []}
    for key, (kind, group) in _CANNED.items():
        if kwargs.get(key):
            specs[kind].append((groups[group], kwargs[key]))
    for kind in ('noise', 'dropout'):
        for pattern, value in (kwargs.get(kind) or {}).items():
            specs[kind].append((pattern, value))
    result = []
    for kind, cls, offset in (('noise', GaussianNoise, 0), ('dropout', BernoulliDropout, 1)):
        for i, (pattern, value) in enumerate(specs[kind]):
            if value:
                _check_fraction(kind, pattern, value)
                result.append(cls(pattern=pattern, weight=value, rng=rng + offset + 2 * i))
    return result


def _check_fraction(kind, pattern, value):
    if value < 0 or (kind == 'dropout' and value >= 1):
        raise util.ConfigurationError(
            '{} for {!r} must be {}, got {!r}'.format(
                kind, pattern, 'in [0, 1)' if kind == 'dropout' else '>= 0', value))


def from_kwargs(graph, **kwargs):
    """Build the regularizers that ``train()`` keywords ask for.

    Parameters
    ----------
    graph : :class:`theanets.Network`
        The network; its layers define the canned input/hidden/output patterns.
    **kwargs
        Regularizer keywords (see the module docs); other keywords are ignored.
        ``rng`` (int) seeds noise and dropout; it defaults to a seed derived
        from the network's ``rng``.

    Returns
    -------
    list of :class:`Regularizer`
    """
    if 'regularizers' in kwargs and kwargs['regularizers'] is not None:
        regs = kwargs['regularizers']
        if isinstance(regs, dict):
            kwargs = dict(kwargs, **regs)
        else:
            return list(regs)
    rng = kwargs.get('rng')
    if not isinstance(rng, (int, np.integer)):
        rng = getattr(graph, '_noise_seed', 13)
    result = _stochastic(graph, kwargs, int(rng))
    for key, value in sorted(kwargs.items()):
        if key in _CANNED or key in ('noise', 'dropout', 'regularizers', 'rng'):
            continue
        if not Regularizer.is_registered(key) or key == 'regularizer' or not value:
            continue
        cls = Regularizer.get_class(key)
        if isinstance(value, dict):
            result.append(cls(**value))
        else:
            result.append(cls(weight=value))
    return result
