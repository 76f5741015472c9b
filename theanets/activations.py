"""Activation functions for network layers.

Every activation is an :class:`Activation` instance: a callable mapping a
pre-activation tensor to an activation tensor of the same shape. Activations
are looked up by name with :func:`build`:

- the fixed functions of :data:`COMMON` (``'relu'``, ``'tanh'``, ``'norm:z'``, ...),
- learnable ones with parameters owned by their layer (``'prelu'``,
  ``'lgrelu'``, ``'elu'``, ``'maxout:k'``),
- any :class:`Activation` subclass, by its lowercase class name,
- compositions written with ``+``: ``'tanh+norm:z'`` applies ``tanh`` first.

Examples
--------
>>> import theanets
>>> net = theanets.Regressor([3, (4, 'tanh+norm:z'), (2, 'maxout:3')])
>>> net.layers[1].activate.name
'norm:z(tanh)'
"""

import numpy as np
import pytensor.tensor as TT

from . import util

__all__ = ['COMMON', 'build', 'Activation', 'Compose', 'Prelu', 'LGrelu', 'Elu', 'Maxout']


def _softmax(z):
    # Stabilized, with the closed-form gradient, in every mode (C, NumPy and JAX
    # faces): the row-wise op of theanets.ops.softmax.
    from .ops import softmax
    return softmax.softmax(z)


def _relu(z):
    return TT.maximum(0, z)


def _norm_std(z):
    return z / (z.std(axis=-1, keepdims=True) + 1e-8)


def _norm_z(z):
    c = z - z.mean(axis=-1, keepdims=True)
    return c / (z.std(axis=-1, keepdims=True) + 1e-8)


#: Fixed activation functions by name: each maps a tensor to a tensor of the same shape.
COMMON = {
    'linear': lambda z: z,
    'logistic': TT.sigmoid,
    'sigmoid': TT.sigmoid,
    'tanh': TT.tanh,
    'softplus': TT.softplus,
    'softmax': _softmax,
    'relu': _relu,
    'rect:max': _relu,
    'rect:min': lambda z: TT.minimum(1, z),
    'rect:minmax': lambda z: TT.clip(z, 0, 1),
    'norm:mean': lambda z: z - z.mean(axis=-1, keepdims=True),
    'norm:max': lambda z: z / (abs(z).max(axis=-1, keepdims=True) + 1e-8),
    'norm:std': _norm_std,
    'norm:z': _norm_z,
}


class Activation(util.Registrar):
    """Base class for activation functions.

    Parameters
    ----------
    name : str
        Name of the activation, e.g. ``'relu'`` or ``'maxout:3'``.
    layer : :class:`theanets.layers.Layer`
        The layer that owns this activation; learnable parameters are
        created with the layer's size and random stream and named after it.

    Attributes
    ----------
    params : list of shared variables
        Learnable parameters of the activation (empty for fixed functions).
    """

    _registry = util.Registry('activation')

    def __init__(self, name, layer, **kwargs):
        self.name = name
        self.layer = layer
        self.kwargs = kwargs
        self.params = []

    def __call__(self, x):
        """Apply the activation to a tensor of shape (..., size)."""
        return COMMON[self.name](x)

    def __repr__(self):
        return '<Activation {}>'.format(self.name)

    def _add_param(self, suffix, value):
        """Create a parameter ``'<layer>.<suffix>'`` (see :func:`theanets.util.make_param`)."""
        param = util.make_param('{}.{}'.format(self.layer.name, suffix), value)
        self.params.append(param)
        return param

    def _leak_init(self):
        return 0.1 * np.abs(self.layer.rng.randn(self.layer.output_size))


Activation._registry.add(Activation)


class Compose(Activation):
    """Apply activation ``f`` then activation ``g``; named ``'g(f)'``."""

    def __init__(self, f, g):
        super().__init__('{}({})'.format(g.name, f.name), f.layer)
        self.f = f
        self.g = g
        self.params = list(f.params) + list(g.params)

    def __call__(self, x):
        return self.g(self.f(x))


class Prelu(Activation):
    """Parametric relu: relu(z) + exp(leak) * min(0, z), one learnable ``leak`` per unit.

    The ``leak`` parameter (size,) is log-scale, initialised to ``0.1 * |N(0, 1)|``.
    """

    __extra_registration_keys__ = ['leaky-relu']

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.leak = self._add_param('leak', self._leak_init())

    def __call__(self, x):
        return _relu(x) + TT.exp(self.leak) * TT.minimum(0, x)


class LGrelu(Activation):
    """Leaky-gain relu: exp(gain) * relu(z) + exp(leak) * min(0, z).

    ``gain`` and ``leak`` (size,) are per-unit and log-scale.
    """

    __extra_registration_keys__ = ['leaky-gain-relu']

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = self._add_param('gain', self._leak_init())
        self.leak = self._add_param('leak', self._leak_init())

    def __call__(self, x):
        return TT.exp(self.gain) * _relu(x) + TT.exp(self.leak) * TT.minimum(0, x)


class Elu(Activation):
    """Exponential linear unit: z if z >= 0 else exp(gain) * (exp(z) - 1), per-unit ``gain``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = self._add_param('gain', self._leak_init())

    def __call__(self, x):
        return TT.switch(x >= 0, x, TT.exp(self.gain) * (TT.exp(TT.minimum(x, 0)) - 1))


class Maxout(Activation):
    """Maxout: max over ``pieces`` lines slope_k * z + intercept_k, per unit.

    Parameters ``slope`` and ``intercept`` have shape (size, pieces), drawn from N(0, 1).
    """

    def __init__(self, *args, pieces=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.pieces = int(pieces)
        if self.pieces < 1:
            raise util.ConfigurationError(
                'maxout needs at least 1 piece, got {!r} in layer {!r}'.format(
                    pieces, self.layer.name))
        shape = (self.layer.output_size, self.pieces)
        self.slope = self._add_param('slope', self.layer.rng.randn(*shape))
        self.intercept = self._add_param('intercept', self.layer.rng.randn(*shape))

    def __call__(self, x):
        return (x[..., None] * self.slope + self.intercept).max(axis=-1)


def _build_one(name, layer, **kwargs):
    if name in COMMON:
        return Activation(name, layer, **kwargs)
    if name.lower().startswith('maxout:'):
        pieces = name.split(':', 1)[1]
        if not pieces.isdigit():
            raise util.ConfigurationError(
                'activation {!r} of layer {!r}: maxout needs an integer piece count, '
                'e.g. "maxout:4"'.format(name, layer.name))
        return Maxout(name, layer, pieces=int(pieces), **kwargs)
    key = name.lower()
    if key in known_names():
        return Activation.build(key, name, layer, **kwargs)
    raise util.unknown_name('activation', name, known_names() | set(COMMON), hint=', maxout:K',
                            where='layer {!r}'.format(getattr(layer, 'name', None)))


def known_names():
    """Return the registered activation class names usable in a layer (not the bases)."""
    return set(Activation._registry.classes) - {'activation', 'compose'}


def is_activation(name):
    """True if ``name`` is an activation name: known names (or ``maxout:K``) joined by '+'."""
    for part in name.split('+'):
        part = part.strip()
        if not (part in COMMON or part.lower().startswith('maxout:')
                or part.lower() in known_names()):
            return False
    return True


def build(name, layer, **kwargs):
    """Build an activation function by name.

    Parameters
    ----------
    name : str or :class:`Activation`
        An activation instance (returned as-is), a name from :data:`COMMON`,
        ``'maxout:K'``, a registered class name, or several names joined with
        ``'+'`` (applied left to right).
    layer : :class:`theanets.layers.Layer`
        The layer that owns the activation.

    Returns
    -------
    :class:`Activation`

    Raises
    ------
    ConfigurationError
        If a name is not known; the message lists the known names.
    """
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise util.ConfigurationError(
            'activation of layer {!r} must be a string or Activation, got {!r}'.format(
                getattr(layer, 'name', None), name))
    parts = [p.strip() for p in name.split('+')]
    act = _build_one(parts[0], layer, **kwargs)
    for part in parts[1:]:
        act = Compose(act, _build_one(part, layer, **kwargs))
    return act
