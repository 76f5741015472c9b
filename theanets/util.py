"""Utilities shared across the library: errors, registries, random init, name matching."""

import difflib
import fnmatch
import logging
import os
import tempfile

import numpy as np

from . import backend

__all__ = [
    'FLOAT', 'Error', 'ConfigurationError', 'Registry', 'closest', 'did_you_mean',
    'unknown_name', 'check_kwargs',
    'random_matrix', 'random_vector', 'outputs_matching', 'params_matching',
    'as_rng', 'enable_default_logging', 'basestring',
]

log = logging.getLogger(__name__)

FLOAT = backend.FLOAT
basestring = str


class Error(Exception):
    """Base class for errors raised by theanets."""


class ConfigurationError(Error, ValueError):
    """A model, layer, loss or training option was configured wrongly."""


def closest(name, candidates, n=3):
    """Return up to ``n`` names from ``candidates`` that look like ``name``."""
    return difflib.get_close_matches(str(name), sorted(candidates), n=n, cutoff=0.5)


def did_you_mean(name, candidates):
    """Return ``" (did you mean 'a', 'b'?)"`` naming the candidates closest to ``name``, or ``''``.

    Every "unknown name" message of theanets is built with this function.
    """
    near = closest(name, candidates) or closest(str(name).lower(), candidates)
    return ' (did you mean {}?)'.format(', '.join(repr(c) for c in near)) if near else ''


def unknown_name(kind, name, known, error=None, hint='', where=''):
    """Return the error for an unknown ``kind`` of name, with suggestions and the known names.

    Parameters
    ----------
    kind : str
        What was looked up, e.g. ``'loss'`` or ``'layer form'``.
    name : str
        The name that was given.
    known : iterable of str
        The valid names.
    error : exception class, optional
        Default :class:`ConfigurationError`.
    hint : str, optional
        Appended to the list of known names.
    where : str, optional
        What looked the name up, e.g. ``"layer 'hid1'"``; starts the message.

    Examples
    --------
    >>> print(unknown_name('loss', 'msee', ['mse', 'mae']))
    unknown loss 'msee' (did you mean 'mse', 'mae'?); known losses: mae, mse
    """
    known = sorted(set(known))
    plural = kind[:-1] + 'ies' if kind.endswith('y') else kind + ('es' if kind.endswith(
        's') else 's')
    return (error or ConfigurationError)('{}unknown {} {!r}{}; known {}: {}{}'.format(
        where + ': ' if where else '', kind, name, did_you_mean(name, known), plural,
        ', '.join(known), hint))


def check_kwargs(kwargs, valid, where):
    """Raise a TypeError naming each unknown keyword and the closest valid ones.

    Parameters
    ----------
    kwargs : iterable of str
        Keyword names that were given.
    valid : iterable of str
        Keyword names that are accepted.
    where : str
        What received them, e.g. ``"train()"`` or ``"layer 'hid1'"``.
    """
    valid = set(valid)
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        parts = ['{!r}{}'.format(k, did_you_mean(k, valid)) for k in unknown]
        raise TypeError('{} got unknown keyword argument{} {}'.format(
            where, 's' if len(unknown) > 1 else '', '; '.join(parts)))


def accepted_kwargs(cls):
    """Return the keyword names the constructors along ``cls``'s MRO declare.

    Returns None (anything goes) when a constructor defined outside theanets
    takes ``**kwargs``: that class reads its keywords itself.
    """
    import inspect
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None or init is object.__init__:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind == p.VAR_KEYWORD and not klass.__module__.startswith('theanets.'):
                return None
            if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                names.add(p.name)
    return names


class Registry(object):
    """A family of classes registered by lowercase class name plus aliases.

    A family base class creates its registry with ``_registry = Registry('layer')``
    and defines ``__init_subclass__`` to call :meth:`add`. Each subclass may set
    ``__extra_registration_keys__`` to a sequence of aliases.
    """

    def __init__(self, kind):
        self.kind = kind
        self.classes = {}

    def add(self, cls):
        if cls.__name__.startswith('_'):
            return
        keys = [cls.__name__.lower()] + [
            k.lower() for k in cls.__dict__.get('__extra_registration_keys__', ())]
        for key in keys:
            self.classes[key] = cls

    def get(self, key):
        """Return the class registered under ``key`` (case-insensitive)."""
        if isinstance(key, type):
            return key
        if not isinstance(key, str):
            raise TypeError('expected a {} name, got {!r}'.format(self.kind, key))
        try:
            return self.classes[key.lower()]
        except KeyError:
            raise unknown_name(self.kind, key, self.classes, error=KeyError) from None

    def __contains__(self, key):
        return isinstance(key, str) and key.lower() in self.classes


class Registrar(object):
    """Mixin giving a class family ``build``, ``get_class`` and ``is_registered``.

    Creating an instance checks its keyword arguments first: an unknown one
    raises a TypeError naming it, the class and the closest valid names.
    """

    _registry = None

    def __new__(cls, *args, **kwargs):
        valid = cls.valid_kwargs(kwargs)
        if valid is not None:
            check_kwargs(kwargs, valid, cls.kwargs_owner(kwargs))
        return super().__new__(cls)

    @classmethod
    def valid_kwargs(cls, kwargs):
        """Return the keyword names the constructor takes (None: any)."""
        return accepted_kwargs(cls)

    @classmethod
    def kwargs_owner(cls, kwargs):
        """How errors about keyword arguments name the constructor."""
        return '{}()'.format(cls.__name__)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if '_registry' not in cls.__dict__:
            cls._registry.add(cls)

    @classmethod
    def build(cls, key, *args, **kwargs):
        """Create an instance of the class registered under ``key``."""
        return cls._registry.get(key)(*args, **kwargs)

    @classmethod
    def get_class(cls, key):
        return cls._registry.get(key)

    @classmethod
    def is_registered(cls, key):
        return key in cls._registry


def as_rng(rng):
    """Return a ``numpy.random.RandomState`` for an int seed, a RandomState or None."""
    if isinstance(rng, np.random.RandomState):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.RandomState(rng)
    raise TypeError('rng must be an int seed or a numpy RandomState, got {!r}'.format(rng))


def _number(value, what, low=None, high=None, high_open=False):
    """Check an initial-value option: a real number in [low, high] (or [low, high))."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = '' if low is None else ' >= {}'.format(low) if high is None else \
            ' in [{}, {}{}'.format(low, high, ')' if high_open else ']')
        raise ConfigurationError('{} must be a number{}, got {!r}'.format(what, bounds, value))
    return value


def random_matrix(rows, cols, mean=0, std=1, sparsity=0, radius=None, diagonal=None, rng=None):
    """Create a matrix of randomly-initialized weights.

    Zero is a value for every option: ``std=0`` gives the constant ``mean``,
    ``diagonal=0`` a matrix of zeros; ``None`` leaves an option out.

    Parameters
    ----------
    rows, cols : int
        Shape of the matrix.
    mean, std : float
        Mean and standard deviation (>= 0) of the Gaussian the values are drawn from.
    sparsity : float in [0, 1]
        Fraction of values set to zero (the leading diagonal is kept).
    radius : float >= 0, optional
        Rescale so the largest singular value equals this.
    diagonal : float or vector of min(rows, cols) floats, optional
        Return these values on the diagonal and zeros elsewhere.
    rng : RandomState or int, optional

    Returns
    -------
    ndarray of shape (rows, cols), dtype floatX

    Raises
    ------
    ConfigurationError
        For an option out of range, e.g. a negative ``std``.
    """
    if diagonal is not None:
        return _diagonal_matrix(rows, cols, diagonal)
    rng = as_rng(rng)
    arr = _number(mean, 'mean') + _number(std, 'std', 0) * rng.randn(rows, cols)
    if _number(sparsity, 'sparsity', 0, 1) > 0:
        k = min(rows, cols)
        mask = rng.binomial(n=1, p=1 - sparsity, size=(rows, cols)).astype(bool)
        mask[:k, :k] |= np.eye(k, dtype=bool)
        arr *= mask
    if radius is not None:
        u, s, vT = np.linalg.svd(arr, full_matrices=False)
        scale = _number(radius, 'radius', 0) / abs(s[0]) if s[0] else 0
        arr = np.dot(np.dot(u, np.diag(scale * s)), vT)
    return arr.astype(FLOAT)


def _diagonal_matrix(rows, cols, diagonal):
    k = min(rows, cols)
    try:
        values = np.asarray(diagonal, dtype=float)
    except (TypeError, ValueError):
        values = np.zeros((0, 0))
    if values.ndim > 1 or values.size not in (1, k):
        raise ConfigurationError('diagonal must be a number or a vector of {} values for a '
                                 '{}x{} matrix, got shape {}'.format(k, rows, cols, values.shape))
    arr = np.zeros((rows, cols))
    arr[np.arange(k), np.arange(k)] = values
    return arr.astype(FLOAT)


def random_vector(size, mean=0, std=1, rng=None):
    """Create a vector of Gaussian values, shape (size,), dtype floatX (``std=0``: constant)."""
    rng = as_rng(rng)
    return (_number(mean, 'mean') + _number(std, 'std', 0) * rng.randn(size)).astype(FLOAT)


def _as_patterns(patterns):
    return (patterns, ) if isinstance(patterns, str) else tuple(patterns or ())


def outputs_matching(outputs, patterns):
    """Yield ``(name, expr)`` for graph outputs whose name matches a glob pattern."""
    patterns = _as_patterns(patterns)
    for name, expr in sorted(outputs.items()):
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            yield name, expr


def params_matching(layers, patterns):
    """Yield ``(name, param)`` for layer parameters whose name matches a glob pattern."""
    patterns = _as_patterns(patterns)
    for layer in layers:
        for param in layer.params:
            if any(fnmatch.fnmatch(param.name, p) for p in patterns):
                yield param.name, param


def make_param(name, value, regularizable=None):
    """Create a learnable parameter: the one place theanets makes them.

    Layers (``Layer.add_weights``, ``add_bias``...) and activations with
    learnable values (``prelu``, ``maxout``...) create their parameters here.

    Parameters
    ----------
    name : str
        Full name, ``'<layer>.<param>'``.
    value : ndarray
        Initial value, cast to floatX; its shape is the parameter's static shape.
    regularizable : bool, optional
        Whether weight penalties (``weight_l2``...) apply; by default to
        parameters of two or more dimensions (not to biases).

    Returns
    -------
    shared variable
    """
    import pytensor
    value = np.asarray(value, dtype=FLOAT)
    param = pytensor.shared(value, name=name, shape=value.shape)
    param.tag.regularizable = value.ndim > 1 if regularizable is None else bool(regularizable)
    return param


def regularizable(param):
    """True if weight penalties (``weight_l2``...) apply to the parameter ``param``.

    Set when the parameter is created (see ``Layer.make_param``); by default
    for parameters of two or more dimensions, not for biases.
    """
    return getattr(param.tag, 'regularizable', param.ndim > 1)


def atomic_write(path, write):
    """Write a file atomically: ``write(handle)`` fills a temporary binary file in the
    same directory, which is synced and then renamed onto ``path``.

    A crash or exception part-way leaves any previous file at ``path`` intact and
    no temporary file behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='-' + os.path.basename(path), dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, 'wb') as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def enable_default_logging(level=logging.INFO):
    """Send theanets' log messages to stderr (for scripts; the library adds no handlers)."""
    logger = logging.getLogger('theanets')
    if not any(getattr(h, '_theanets_default', False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            '%(levelname).1s %(asctime)s %(name)s:%(lineno)d %(message)s', '%Y%m%d %H:%M:%S'))
        handler._theanets_default = True
        logger.addHandler(handler)
    logger.setLevel(level)
    return logger
