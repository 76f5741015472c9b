"""PyTensor set-up: float32, C-mode compilation, an optimized BLAS, and one compile helper.

This module must be imported before anything else imports :mod:`pytensor`, so
that its flags take effect. ``import theanets`` does that first.

What it does, unless the user chose otherwise through ``PYTENSOR_FLAGS`` or a
``.pytensorrc`` file:

- ``floatX`` is ``float32`` (the library's default float type);
- functions are compiled in PyTensor's C mode (``CVM``) rather than Numba,
  whose cold compiles are much slower; :func:`set_mode` or the environment
  variable ``THEANETS_MODE`` (e.g. ``JAX``, ``NUMBA``, ``FAST_COMPILE``)
  selects another mode;
- PyTensor's C code links to the OpenBLAS of the ``scipy-openblas32`` wheel,
  whose symbols carry a ``scipy_`` prefix; ``-D`` defines map the standard
  BLAS names onto them.
"""

import logging
import os
import sys
import warnings

__all__ = ['FLOAT', 'set_mode', 'get_mode', 'function', 'compile_count']

log = logging.getLogger(__name__)

FLOAT = 'float32'

# BLAS routines PyTensor's C code calls; each is renamed onto scipy-openblas32's symbol.
_BLAS_NAMES = ('sgemm dgemm sgemv dgemv sger dger sdot ddot '
               'saxpy daxpy sscal dscal scopy dcopy').split()


def _pytensorrc_text():
    paths = os.environ.get('PYTENSORRC', os.path.expanduser('~/.pytensorrc'))
    text = ''
    for path in paths.split(os.pathsep):
        try:
            with open(os.path.expanduser(path)) as handle:
                text += handle.read()
        except OSError:
            pass
    return text


def _user_sets(key, flags, rc_text):
    return any(item.strip().startswith(key + '=') for item in flags.split(',')) \
        or key in rc_text


def _openblas_ldflags():
    """Linker flags for scipy-openblas32, or '' when the wheel is unavailable."""
    try:
        import scipy_openblas32 as sob
    except ImportError:
        return ''
    libdir = sob.get_lib_dir()
    defines = ' '.join('-D{0}_=scipy_{0}_'.format(n) for n in _BLAS_NAMES)
    # no commas: PYTENSOR_FLAGS is comma-separated, so -Wl,-rpath cannot be used.
    return '-L{0} -l{1} -Xlinker -rpath -Xlinker {0} {2}'.format(
        libdir, sob.get_library(), defines)


def _configure():
    flags = os.environ.get('PYTENSOR_FLAGS', '')
    rc_text = _pytensorrc_text()
    extra = []
    if not _user_sets('floatX', flags, rc_text):
        extra.append('floatX=' + FLOAT)
    if not _user_sets('blas__ldflags', flags, rc_text) and 'ldflags' not in rc_text:
        ldflags = _openblas_ldflags()
        if ldflags:
            extra.append('blas__ldflags=' + ldflags)
    if not extra:
        return
    if 'pytensor' in sys.modules:
        # too late for flags: set what can still be set on the live config.
        import pytensor
        for item in extra:
            key, value = item.split('=', 1)
            try:
                setattr(pytensor.config, key, value)
            except Exception:  # pragma: no cover - depends on pytensor internals
                log.debug('could not set pytensor.config.%s', key)
        return
    os.environ['PYTENSOR_FLAGS'] = ','.join(([flags] if flags else []) + extra)


_configure()
# OpenBLAS worker threads otherwise spin after each call and compete with the
# threads of the fused recurrent ops; read once, when OpenBLAS loads.
os.environ.setdefault('OPENBLAS_THREAD_TIMEOUT', '4')

with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    import pytensor  # noqa: E402

_MODE = os.environ.get('THEANETS_MODE', 'CVM')
_COMPILES = [0]

# backends that translate every op into another framework
_TRANSPILED_MODES = ('JAX', 'NUMBA', 'PYTORCH', 'MLX')


# LSTM ops that keep no per-step cache where nothing reads it (theanets.ops.recurrent)
_LSTM_FORWARD_ONLY_TAG = 'theanets_lstm_forward_only'


def _compile_mode():
    """The PyTensor mode object for :func:`function`."""
    if not isinstance(_MODE, str) or _MODE.upper() in _TRANSPILED_MODES:
        return _MODE
    from pytensor.compile.mode import get_mode
    mode = get_mode(_MODE)
    if runs_custom_ops(mode):
        mode = mode.including(_LSTM_FORWARD_ONLY_TAG)
    return mode


def set_mode(mode):
    """Choose the PyTensor mode that theanets compiles its functions in.

    Parameters
    ----------
    mode : str or pytensor.compile.Mode
        For example ``'CVM'`` (the default, C code), ``'JAX'``, ``'NUMBA'``,
        ``'FAST_COMPILE'`` or ``'FAST_RUN'``. Functions compiled earlier keep
        their mode; networks compile new ones only when their cache is empty.
    """
    global _MODE
    _MODE = mode


# linkers that translate every Op to another framework: Ops with only C and
# Python implementations (the fused recurrent and convolution ops) cannot run there
_TRANSPILING_LINKERS = ('JAXLinker', 'NumbaLinker', 'PytorchLinker', 'MLXLinker')


def _linker_name(mode):
    """Class name of the linker of ``mode`` (a name or a Mode object)."""
    if isinstance(mode, str):
        from pytensor.compile.mode import get_mode as _get
        mode = _get(mode)
    return type(getattr(mode, 'linker', None)).__name__


def runs_custom_ops(mode=None):
    """Whether ``mode`` (default: the current one) runs Ops implemented in C/Python.

    False for the JAX, NUMBA, PYTORCH and MLX backends, which need a translation
    of every Op; layers then build their graphs from standard PyTensor Ops
    (e.g. ``scan`` instead of the fused recurrent ops).
    """
    mode = _MODE if mode is None else mode
    if isinstance(mode, str) and mode.upper() in _TRANSPILED_MODES:
        return False
    return _linker_name(mode) not in _TRANSPILING_LINKERS


def arange(n):
    """Symbolic ``0, 1, ..., n - 1`` (int64) with int64 bounds.

    ``pytensor.tensor.arange(n)`` starts from an int8 constant, and the JAX
    backend computes the length in the dtype of the bounds: 128 overflows.
    """
    import pytensor.tensor as TT
    zero, one = TT.constant(0, dtype='int64'), TT.constant(1, dtype='int64')
    return TT.arange(zero, TT.cast(n, 'int64'), one)


def get_mode():
    """Return the PyTensor mode used for new compiled functions."""
    return _MODE


def compile_count():
    """Return the number of PyTensor functions theanets has compiled so far."""
    return _COMPILES[0]


def function(inputs, outputs, updates=None, name=None, **kwargs):
    """Compile a PyTensor function in the library's mode and count it.

    Parameters
    ----------
    inputs : list of symbolic variables
    outputs : symbolic variable or list of them
    updates : list of (shared, expression) pairs, optional
    name : str, optional
        Used in log messages.

    Returns
    -------
    pytensor.compile.function.types.Function
    """
    _COMPILES[0] += 1
    log.debug('compiling %s function', name or 'a')
    kwargs.setdefault('on_unused_input', 'ignore')
    mode = _compile_mode()
    if _linker_name(mode) == 'JAXLinker':
        from .ops.base import register_jax_twins
        register_jax_twins()
    return pytensor.function(inputs, outputs, updates=updates or [], mode=mode,
                             name=name, **kwargs)
