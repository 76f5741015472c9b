r"""Regularizers: terms added to the loss, and noise or dropout applied to the graph.

:func:`from_kwargs` builds regularizers from the keywords of ``train()``,
``loss()``, ``monitors()``, ``predict()`` and ``feed_forward()``:

=========================================  ============================  ======================
keyword (aliases)                          class                         default pattern
=========================================  ============================  ======================
``weight_l2`` (``weight_decay``)           :class:`WeightL2`             every weight matrix
``weight_l1`` (``weight_sparsity``)        :class:`WeightL1`             every weight matrix
``hidden_l1`` (``hidden_sparsity``)        :class:`HiddenL1`             hidden ``':out'``
``hidden_l2``                              :class:`HiddenL2`             hidden ``':out'``
``recurrent_norm``                         :class:`RecurrentNorm`        (required)
``recurrent_state``                        :class:`RecurrentState`       (required)
``contractive``                            :class:`Contractive`          hidden ``':out'``
``input_noise``, ``hidden_noise``,         :class:`GaussianNoise`        input / hidden /
``output_noise``, ``noise={pat: std}``                                   output ``':out'``
``input_dropout``, ``hidden_dropout``,     :class:`BernoulliDropout`     input / hidden /
``output_dropout``, ``dropout={pat: p}``                                 output ``':out'``
=========================================  ============================  ======================

A value is either the weight (a number) or a dict of constructor arguments such
as ``dict(weight=0.1, pattern='hid1:out')``. Patterns are shell globs over graph
output names (``'hid1:out'``, ``'*:pre'``) or, for weight penalties, over
parameter names (``'hid1.w'``, ``'*.w'``); a list of patterns matches any of
them. ``regularizers=[...]`` adds Regularizer instances to those the other
keywords build. Any :class:`Regularizer` subclass is a keyword too, by its
lowercase class name.

Noise and dropout rewrite the graph as each layer is connected, so they affect
every later layer; they apply during training and, only when given there, in
``predict`` and ``feed_forward`` (which then also return the unmodified values
as ``'<name>-prenoise'`` / ``'<name>-predrop'``). Their random streams are
seeded from the network's ``rng`` (or an int ``rng=`` keyword), so the same
seed gives the same training run.

Examples
--------
>>> import theanets
>>> net = theanets.Regressor([3, 4, 2])
>>> [type(r).__name__ for r in theanets.regularizers.from_kwargs(
...     net, weight_l2=1e-4, hidden_dropout=0.5)]
['BernoulliDropout', 'WeightL2']

A custom regularizer is used by its lowercase class name:

>>> class WeightInverse(theanets.Regularizer):
...     def loss(self, layers, outputs):
...         return sum((1 / (w * w).sum()) for l in layers for w in l.params if w.ndim > 1)
>>> [type(r).__name__ for r in theanets.regularizers.from_kwargs(net, weightinverse=1e-6)]
['WeightInverse']
"""

import fnmatch
import logging

import numpy as np
import pytensor
import pytensor.tensor as TT
import pytensor.tensor.random

from . import util

__all__ = ['from_kwargs', 'keyword_names', 'Regularizer', 'WeightL2', 'WeightL1', 'HiddenL1',
           'HiddenL2', 'RecurrentNorm', 'RecurrentState', 'Contractive', 'GaussianNoise',
           'BernoulliDropout']

log = logging.getLogger(__name__)

#: Canned keywords: name -> (kind, layer group).
_CANNED = {
    'input_noise': ('noise', 'inputs'), 'hidden_noise': ('noise', 'hiddens'),
    'output_noise': ('noise', 'outputs'), 'input_dropout': ('dropout', 'inputs'),
    'hidden_dropout': ('dropout', 'hiddens'), 'output_dropout': ('dropout', 'outputs'),
}

#: Keywords from_kwargs reads that are not registry keys.
_SPECIAL = set(_CANNED) | {'noise', 'dropout', 'regularizers'}


def _as_tuple(pattern):
    if pattern is None or isinstance(pattern, str):
        return pattern
    return tuple(pattern)


class Regularizer(util.Registrar):
    """Base class for regularizers.

    A subclass overrides :meth:`loss` to add a term to the model's loss, or
    :meth:`modify_graph` to rewrite outputs while the graph is built.
    Subclasses are registered under their lowercase class name, so
    ``class WeightInverse(Regularizer)`` is used with ``train(weightinverse=1e-6)``.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Shell glob(s) over graph output names (``'hid1:out'``) or parameter
        names (``'hid1.w'``), depending on the regularizer.
    weight : float, optional
        Multiplier of the loss term (the std for noise, the probability for dropout).
    """

    _registry = util.Registry('regularizer')

    def __init__(self, pattern=None, weight=0.0):
        self.pattern = pattern
        self.weight = weight

    @property
    def key(self):
        """A hashable description used to cache graphs and compiled functions."""
        return (type(self).__name__, self.weight, _as_tuple(self.pattern))

    def modify_graph(self, outputs):
        """Rewrite one layer's outputs while the graph is built (default: nothing).

        Parameters
        ----------
        outputs : dict
            The layer's outputs, ``{'hid1:out': expr, ...}``; changed in place.

        Returns
        -------
        list of (shared variable, expression)
            Updates the compiled functions must apply (e.g. random states).
        """
        return []

    def loss(self, layers, outputs):
        """Return a scalar term added (times ``weight``) to the model's loss.

        Parameters
        ----------
        layers : list of Layer
            The network's layers.
        outputs : dict
            All graph outputs by name.
        """
        return 0

    def log(self):
        """Log what this regularizer does."""
        log.info('regularizer: %s * %s(%s)', self.weight, type(self).__name__, self.pattern)

    def _require_pattern(self):
        if not self.pattern:
            raise util.ConfigurationError(
                '{} needs a pattern naming graph outputs, e.g. {}=dict(weight=0.1, '
                'pattern="hid1:out")'.format(type(self).__name__, self._keyword()))

    def _keyword(self):
        keys = type(self).__dict__.get('__extra_registration_keys__') or [
            type(self).__name__.lower()]
        return keys[0]

    def __repr__(self):
        return '{}(pattern={!r}, weight={!r})'.format(
            type(self).__name__, self.pattern, self.weight)


Regularizer._registry.add(Regularizer)


def _mean_of(terms):
    terms = list(terms)
    if not terms:
        return 0
    return sum(terms) / len(terms)


def _hidden_outputs(layers):
    return [l.output_name for l in layers[1:-1]]


class WeightL2(Regularizer):
    r"""Penalize the squares of weight matrices ("weight decay").

    .. math::
       \frac{1}{|\Omega|} \sum_{W \in \Omega} \mathrm{mean}(W^2)

    :math:`\Omega` is the set of regularizable parameters (weight matrices and
    filters: those of two or more dimensions, not biases) whose names match
    ``pattern`` (default ``'*'``).
    """

    __extra_registration_keys__ = ['weight_l2', 'weight_decay']

    def loss(self, layers, outputs):
        return _mean_of(self._term(p) for _, p in util.params_matching(layers, self.pattern or '*')
                        if util.regularizable(p))

    def _term(self, param):
        return TT.sqr(param).mean()


class WeightL1(WeightL2):
    r"""Penalize the absolute values of weight matrices (sparse weights).

    .. math::
       \frac{1}{|\Omega|} \sum_{W \in \Omega} \mathrm{mean}(|W|)
    """

    __extra_registration_keys__ = ['weight_l1', 'weight_sparsity']

    def _term(self, param):
        return abs(param).mean()


class HiddenL1(Regularizer):
    r"""Penalize the absolute values of hidden activations (sparse representations).

    .. math::
       \frac{1}{|\Omega|} \sum_{h \in \Omega} \mathrm{mean}(|h|)

    :math:`\Omega` holds the outputs matching ``pattern``; by default the
    ``':out'`` output of every layer between the input and the output layer.
    """

    __extra_registration_keys__ = ['hidden_l1', 'hidden_sparsity']

    def loss(self, layers, outputs):
        pattern = self.pattern or _hidden_outputs(layers)
        return _mean_of(self._term(e) for _, e in util.outputs_matching(outputs, pattern))

    def _term(self, expr):
        return abs(expr).mean()


class HiddenL2(HiddenL1):
    r"""Penalize the squares of hidden activations.

    .. math::
       \frac{1}{|\Omega|} \sum_{h \in \Omega} \mathrm{mean}(h^2)
    """

    __extra_registration_keys__ = ['hidden_l2']

    def _term(self, expr):
        return TT.sqr(expr).mean()


class RecurrentNorm(Regularizer):
    r"""Penalize changes of the squared norm of recurrent outputs between time steps.

    For each matched output :math:`h` of shape (batch, time, n):

    .. math::
       \mathrm{mean}_{b,t} \left(\|h_{b,t+1}\|_2^2 - \|h_{b,t}\|_2^2\right)^2

    averaged over the matches. A ``pattern`` is required, e.g.
    ``recurrent_norm=dict(weight=0.1, pattern='hid1:out')``.
    """

    __extra_registration_keys__ = ['recurrent_norm']

    def loss(self, layers, outputs):
        self._require_pattern()
        return _mean_of(self._term(e) for _, e in util.outputs_matching(outputs, self.pattern))

    def _term(self, expr):
        norms = TT.sqr(expr).sum(axis=-1)
        return TT.sqr(norms[:, 1:] - norms[:, :-1]).mean()


class RecurrentState(RecurrentNorm):
    r"""Penalize changes of recurrent outputs between time steps.

    For each matched output :math:`h` of shape (batch, time, n):

    .. math::
       \mathrm{mean}_{b,t,i} \left(h_{b,t+1,i} - h_{b,t,i}\right)^2

    averaged over the matches. A ``pattern`` is required.
    """

    __extra_registration_keys__ = ['recurrent_state']

    def _term(self, expr):
        return TT.sqr(expr[:, 1:] - expr[:, :-1]).mean()


class Contractive(Regularizer):
    r"""Penalize the sensitivity of hidden activations to the inputs.

    For each matched output :math:`h` and each input variable :math:`x`
    matching ``wrt``:

    .. math::
       \mathrm{mean}\left( \left(\frac{\partial\, \mathrm{mean}(h)}{\partial x}\right)^2 \right)

    averaged over all (output, input) pairs. This is the cheap surrogate of
    the squared Jacobian norm that theanets has always used: the gradient of
    the mean activation, not the full Jacobian.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Outputs to regularize (default: the hidden layers' ``':out'``).
    weight : float, optional
    wrt : str or sequence of str, optional
        Glob(s) over input layer names (default ``'*'``: every input).
    """

    def __init__(self, pattern=None, weight=0.0, wrt='*'):
        super().__init__(pattern=pattern, weight=weight)
        self.wrt = wrt

    @property
    def key(self):
        return super().key + (_as_tuple(self.wrt), )

    def loss(self, layers, outputs):
        from .layers import Input
        patterns = (self.wrt, ) if isinstance(self.wrt, str) else tuple(self.wrt)
        wrt = [l.input for l in layers if isinstance(l, Input)
               and any(fnmatch.fnmatch(l.name, p) for p in patterns)]
        if not wrt:
            return 0
        terms = []
        for _, expr in util.outputs_matching(outputs, self.pattern or _hidden_outputs(layers)):
            grads = pytensor.grad(expr.mean(), wrt, disconnected_inputs='ignore')
            terms.extend(TT.sqr(g).mean() for g in grads)
        return _mean_of(terms)


class _Stochastic(Regularizer):
    """Shared base of noise and dropout: rewrite matched outputs using seeded random draws.

    Each matched output gets its own random generator, seeded from ``rng``
    and the order in which outputs are matched, so graphs built from the
    same seed draw the same values.
    """

    SUFFIX = ''

    def __init__(self, pattern='*:out', weight=0.0, rng=13):
        super().__init__(pattern=pattern, weight=weight)
        self._check_weight()
        if isinstance(rng, np.random.RandomState):
            rng = int(rng.randint(2 ** 30))
        if not isinstance(rng, (int, np.integer)) or isinstance(rng, bool):
            raise util.ConfigurationError(
                '{}: rng must be an int seed or a RandomState, got {!r}'.format(
                    type(self).__name__, rng))
        self.seed = int(rng)
        self._seeds = np.random.default_rng(self.seed)

    def _check_weight(self):
        pass

    @property
    def key(self):
        return super().key + (self.seed, )

    def modify_graph(self, outputs):
        updates = []
        for name, expr in list(util.outputs_matching(outputs, self.pattern)):
            if name.endswith(self.SUFFIX):
                continue
            state = TT.random.shared_rng(
                np.random.default_rng(self._seeds.integers(2 ** 63)),
                name='{}-{}-rng'.format(name, type(self).__name__.lower()))
            new_state, value = self._apply(state, expr)
            outputs[name + self.SUFFIX] = expr
            outputs[name] = value
            updates.append((state, new_state))
        return updates

    def _apply(self, state, expr):
        """Return ``(new random state, rewritten expr)``."""
        raise NotImplementedError


class GaussianNoise(_Stochastic):
    r"""Add Gaussian noise to matched outputs.

    Each matched value :math:`h` becomes :math:`h + \epsilon` with
    :math:`\epsilon \sim N(0, \sigma^2)`; ``weight`` is the standard
    deviation :math:`\sigma`. The unmodified value stays in the graph as
    ``'<name>-prenoise'``.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Outputs to corrupt (default every ``':out'``).
    weight : float, optional
        Standard deviation of the noise (>= 0).
    rng : int or RandomState, optional
        Seed of the random draws.
    """

    SUFFIX = '-prenoise'

    def _check_weight(self):
        if not (np.isscalar(self.weight) and self.weight >= 0):
            raise util.ConfigurationError(
                'noise for {!r} must be a standard deviation >= 0, got {!r}'.format(
                    self.pattern, self.weight))

    def _apply(self, state, expr):
        new_state, noise = state.normal(0, float(self.weight), size=expr.shape)
        return new_state, expr + TT.cast(noise, expr.dtype)


class BernoulliDropout(_Stochastic):
    r"""Inverted dropout: zero each matched value with probability ``weight``.

    The kept values are scaled by :math:`1 / (1 - p)`, so the expected value
    of every output is unchanged: :math:`h \cdot m / (1 - p)` with
    :math:`m \sim \mathrm{Bernoulli}(1 - p)`. The unmodified value stays in the
    graph as ``'<name>-predrop'``.

    Parameters
    ----------
    pattern : str or sequence of str, optional
        Outputs to drop (default every ``':out'``).
    weight : float, optional
        Probability p in [0, 1) of dropping a value.
    rng : int or RandomState, optional
        Seed of the random draws.
    """

    SUFFIX = '-predrop'

    def _check_weight(self):
        if not (np.isscalar(self.weight) and 0 <= self.weight < 1):
            raise util.ConfigurationError(
                'dropout for {!r} must be a probability in [0, 1), got {!r}'.format(
                    self.pattern, self.weight))

    def _apply(self, state, expr):
        keep = 1.0 - float(self.weight)
        new_state, mask = state.binomial(1, keep, size=expr.shape)
        return new_state, expr * TT.cast(mask, expr.dtype) / np.asarray(keep, expr.dtype)


def keyword_names():
    """Return the set of keywords that build regularizers (including custom classes)."""
    return _SPECIAL | {k for k in Regularizer._registry.classes if k != 'regularizer'}


def _layer_groups(graph):
    from .layers import Input
    return {
        'inputs': [l.output_name for l in graph.layers if isinstance(l, Input)],
        'hiddens': _hidden_outputs(graph.layers),
        'outputs': [graph.layers[-1].output_name] if graph.layers else [],
    }


def _stochastic_specs(graph, kwargs):
    """Yield ``(class, pattern, weight)`` for the noise and dropout keywords, in a fixed order."""
    groups = _layer_groups(graph)
    for kind, cls in (('noise', GaussianNoise), ('dropout', BernoulliDropout)):
        for key in sorted(k for k, (which, _) in _CANNED.items() if which == kind):
            if kwargs.get(key):
                yield cls, groups[_CANNED[key][1]], kwargs[key]
        table = kwargs.get(kind)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise util.ConfigurationError(
                '{0}= must be a dict {{pattern: {1}}}, e.g. {0}={{"hid1:out": 0.2}}; got {2!r} '
                '(for all hidden layers use hidden_{0}={2!r})'.format(
                    kind, 'std' if kind == 'noise' else 'probability', table))
        for pattern in sorted(table):
            if table[pattern]:
                yield cls, pattern, table[pattern]


def _noise_seed(graph, rng):
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return int(rng)
    return int(getattr(graph, 'noise_seed', 13))


def _explicit(regs):
    if isinstance(regs, Regularizer):
        regs = [regs]
    regs = list(regs)
    for reg in regs:
        if not isinstance(reg, Regularizer):
            raise util.ConfigurationError(
                'regularizers= must hold Regularizer instances, got {!r}'.format(reg))
    return regs


def _from_value(key, value, seed):
    """Build the regularizer registered under ``key`` from a weight or a dict of arguments."""
    cls = Regularizer.get_class(key)
    kwargs = dict(value) if isinstance(value, dict) else dict(weight=value)
    if issubclass(cls, _Stochastic):
        kwargs.setdefault('rng', seed)
    return cls(**kwargs)


def from_kwargs(graph, accept=('monitors', ), caller='regularizers.from_kwargs()', **kwargs):
    """Build the regularizers that keyword arguments ask for.

    Parameters
    ----------
    graph : :class:`theanets.Network`
        The network; its layers define the input, hidden and output patterns
        of the canned keywords.
    accept : sequence of str, optional
        Other keywords the caller reads itself (default ``monitors``, which
        training passes along with the regularizer keywords).
    caller : str, optional
        The function named in the error for an unknown keyword.
    **kwargs
        Regularizer keywords (see the module docs). ``regularizers`` may be a
        list of Regularizer instances (added to the others) or a dict of
        more keywords. ``rng`` (an int) seeds noise and dropout; by default
        the seed comes from the network's ``rng``.

    Returns
    -------
    list of :class:`Regularizer`
        Noise and dropout first (in graph order they apply per layer), then
        loss terms sorted by keyword.

    Raises
    ------
    TypeError
        For a keyword that is neither a regularizer keyword, ``rng`` nor in
        ``accept``, naming it, ``caller`` and the closest valid names.
    ConfigurationError
        For a dropout probability outside [0, 1), negative noise, a
        ``noise``/``dropout`` value that is not a dict, or arguments a
        regularizer does not take.
    """
    if not kwargs:  # (every prediction call)
        return []
    util.check_kwargs(kwargs, keyword_names() | {'rng'} | set(accept), caller)
    explicit = []
    extra = kwargs.get('regularizers')
    if isinstance(extra, dict):
        util.check_kwargs(extra, keyword_names() - {'regularizers'},
                          caller[:-1] + 'regularizers={...})')
        kwargs = dict(kwargs, **extra)
    elif extra is not None:
        explicit = _explicit(extra)
    seed = _noise_seed(graph, kwargs.get('rng'))
    result = [cls(pattern=pattern, weight=weight, rng=seed + i)
              for i, (cls, pattern, weight) in enumerate(_stochastic_specs(graph, kwargs))]
    offset = len(result)
    for key, value in sorted(kwargs.items()):
        if key in _SPECIAL or key == 'regularizer' or not Regularizer.is_registered(key):
            continue
        if value is None or value is False or (not isinstance(value, dict) and value == 0):
            continue
        result.append(_from_value(key, value, seed + offset))
        offset += 1
    return explicit + result
