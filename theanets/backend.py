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

import atexit
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref

from . import devices

__all__ = ['FLOAT', 'set_mode', 'get_mode', 'mode_key', 'function', 'compile_count',
           'set_quick_start', 'get_quick_start', 'finish_compiling', 'StagedFunction']

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


# Idle OpenBLAS threads otherwise spin for about 2^28 cycles after each product and
# take the CPU from the threads of the C ops (docs/performance.rst). OpenBLAS reads
# this once, when it loads: before _configure imports scipy_openblas32, which loads it.
os.environ.setdefault('OPENBLAS_THREAD_TIMEOUT', '16')
# Likewise the threads of the C ops (libgomp's, c/parallel.c) wait for the next call
# spinning 10,000 times (a fraction of a millisecond), not 300,000 (milliseconds), then
# sleep: a convolution then a 2.4 ms OpenBLAS product ran in 5.2-6.2 ms, not 3.7-4.1 ms.
# libgomp reads it when it loads, with the first compiled op.
os.environ.setdefault('GOMP_SPINCOUNT', '10000')
_configure()

with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    import pytensor  # noqa: E402

_MODE = os.environ.get('THEANETS_MODE', 'CVM')
_COMPILES = [0]

# backends that translate every op into another framework
_TRANSPILED_MODES = ('JAX', 'NUMBA', 'PYTORCH', 'MLX')


# GRU and LSTM ops that keep no per-step cache where nothing reads it (theanets.ops.recurrent)
_FORWARD_ONLY_TAG = 'theanets_recurrent_forward_only'


# PyTensor's rewrite of ``scalar * dot(x, y)`` into ``Dot22Scalar(x, y, scalar)`` also
# applies when the product has other clients, and then computes the product twice:
# RMSProp's and Adam's gradients (used in several updates) ran two or three matrix
# products each, 13.5 ms a step of bench_mlp's model against 8.0 ms without it.
_DUPLICATING_REWRITE = 'local_dot22_to_dot22scalar'


def _compile_mode(mode=None):
    """The PyTensor mode object for :func:`function` (default: the current mode)."""
    mode = _MODE if mode is None else mode
    if not isinstance(mode, str) or mode.upper() in _TRANSPILED_MODES:
        return mode
    from pytensor.compile.mode import get_mode
    mode = get_mode(mode)
    if runs_custom_ops(mode):
        from .ops.elemwise import FLAT_ELEMWISE_TAG
        mode = mode.including(_FORWARD_ONLY_TAG, FLAT_ELEMWISE_TAG)
    return mode.excluding(_DUPLICATING_REWRITE)


def set_mode(mode):
    """Choose the PyTensor mode that theanets compiles its functions in.

    Parameters
    ----------
    mode : str or pytensor.compile.Mode
        For example ``'CVM'`` (the default, C code), ``'JAX'``, ``'NUMBA'``,
        ``'FAST_COMPILE'`` or ``'FAST_RUN'``. Functions compiled earlier keep
        their mode; networks key their compiled functions by the mode (see
        :func:`mode_key`), so their next ``train`` or ``predict`` compiles in
        the new one.
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
    """Whether ``mode`` (default: the current one) runs Ops' C or Python code.

    False for the JAX, NUMBA, PYTORCH and MLX backends, which translate every
    Op into another framework (theanets' own ops through their JAX twins in
    JAX mode). Graphs are the same in every mode; a few rewrites (e.g. the
    recurrent ops' forward-only form) and the class-score lookup of
    :class:`theanets.losses.CrossEntropy` check this.
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


def mode_key():
    """Return a hashable description of how new functions are compiled.

    It changes with :func:`set_mode` and :func:`set_quick_start`; networks
    include it in the keys of their compiled functions and graphs.
    """
    mode = _MODE if isinstance(_MODE, str) else ('mode', id(_MODE))
    return (mode, _QUICK_START[0] if quick_start_applies() else None,
            devices.get_data_parallel() if _sharded(_MODE) else None)


def _sharded(mode):
    """Whether functions compiled in ``mode`` split their batches among devices."""
    return devices.get_data_parallel() is not None and _linker_name(mode) == 'JAXLinker'


def compile_count():
    """Return the number of PyTensor functions theanets has compiled so far."""
    return _COMPILES[0]


def function(inputs, outputs, updates=None, name=None, staged=False, **kwargs):
    """Compile a PyTensor function in the library's mode and count it.

    Parameters
    ----------
    inputs : list of symbolic variables
    outputs : symbolic variable or list of them
    updates : list of (shared, expression) pairs, optional
    name : str, optional
        Used in log messages.
    staged : bool or list, optional
        Allow a quick start (see :func:`set_quick_start`): return a
        :class:`StagedFunction` that runs a Python version at once and
        switches to the C version when it is compiled. A list groups staged
        functions (pass the same list): one helper process compiles the C
        code of all of them. When quick start is off, or in modes that
        compile no C code, the function is returned as a
        :class:`SerializedFunction`. Both are safe to call from several
        threads.

    Returns
    -------
    pytensor.compile.function.types.Function, StagedFunction or SerializedFunction
    """
    _COMPILES[0] += 1
    kwargs.setdefault('on_unused_input', 'ignore')
    mode = _compile_mode()
    if _linker_name(mode) == 'JAXLinker':
        from .ops.base import register_jax_twins
        register_jax_twins()
    if staged is not False and quick_start_applies():
        group = staged if isinstance(staged, list) else []
        return StagedFunction(inputs, outputs, updates, name, kwargs, group)
    log.debug('compiling %s function', name or 'a')
    compiled = pytensor.function(inputs, outputs, updates=updates or [], mode=mode, name=name,
                                 **kwargs)
    if _sharded(mode):
        compiled = devices.ShardedFunction(compiled, devices.get_data_parallel())
    return SerializedFunction(compiled) if staged is not False else compiled


class SerializedFunction(object):
    """A compiled function that several threads may call: one call runs at a time.

    A PyTensor function keeps its inputs and outputs in storage of its own, so
    two threads calling it at once could read each other's results (with
    linkers that release the GIL between operations). Networks hand out their
    prediction functions wrapped in this (or in :class:`StagedFunction`).
    """

    def __init__(self, function):
        self.function = function
        self._lock = threading.Lock()

    def __call__(self, *args):
        with self._lock:
            return self.function(*args)


# ----- quick start: a Python version first, C code compiled in another process --------------

def _quick_start_setting(value):
    """Parse a quick-start setting: off, on (the default delay) or seconds >= 0."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ('off', 'false', 'no', 'none', ''):
            return None
        if word in ('on', 'true', 'yes'):
            return QUICK_START_SECONDS
    if value is None or value is False:
        return None
    if value is True:
        return QUICK_START_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float('nan')
    if not seconds >= 0:
        raise ValueError('quick start must be True, False/None, "on", "off" or a number of '
                         'seconds >= 0 (inf: never compile C code), got {!r}'.format(value))
    return seconds


#: Default seconds a staged function runs its Python version before its C code compiles.
QUICK_START_SECONDS = 1.0
_QUICK_START = [_quick_start_setting(os.environ.get('THEANETS_QUICK_START', 'on'))]


def set_quick_start(after=True):
    """Choose whether networks start computing before their C code is compiled.

    With quick start (the default), each function a network compiles for
    training or prediction first runs a version that needs no C compiler
    (PyTensor's Python linker: NumPy implementations of every operation),
    ready in about a second. Once that version has run for ``after`` seconds
    in all, a helper process compiles the C code into PyTensor's compile
    cache, and when it is done the function switches to its C version
    between two calls. Both versions read and update the same shared
    variables, so the switch changes results only within floating-point
    rounding. Short runs never wait for C compilation; long runs lose at
    most a few seconds.

    Parameters
    ----------
    after : bool, float, str or None
        True or ``'on'``: the default delay (:data:`QUICK_START_SECONDS`); a
        number of seconds (``0``: start compiling C code at the first call;
        ``float('inf')``: never); False, None or ``'off'``: compile the C
        version before the first call, as PyTensor does. The environment
        variable ``THEANETS_QUICK_START`` sets the initial value the same way
        (``on``, ``off`` or seconds).

    Notes
    -----
    Quick start applies in modes that compile C code (the default ``'CVM'``,
    given by name). Networks key their compiled functions by this setting
    too (see :func:`mode_key`). :func:`finish_compiling` switches every
    function to its C version at once.
    """
    _QUICK_START[0] = _quick_start_setting(after)


def get_quick_start():
    """Return the quick-start delay in seconds, or None when quick start is off."""
    return _QUICK_START[0]


def quick_start_applies(mode=None):
    """Whether new staged functions start on a Python version (see :func:`set_quick_start`)."""
    mode = _MODE if mode is None else mode
    if _QUICK_START[0] is None or not isinstance(mode, str):
        return False
    if mode not in _RUNS_C:
        _RUNS_C[mode] = _compiles_c(_compile_mode(mode))
    return _RUNS_C[mode]


#: Mode name -> whether it compiles C code (modes given by name do not change).
_RUNS_C = {}


def _compiles_c(mode):
    if isinstance(mode, str):
        from pytensor.compile.mode import get_mode as _get
        mode = _get(mode)
    linker = getattr(mode, 'linker', None)
    if type(linker).__name__ in ('CLinker', 'OpWiseCLinker', 'DualLinker'):
        return True
    return bool(getattr(linker, 'c_thunks', False) or getattr(linker, 'use_cloop', False))


def _python_mode():
    """The mode of the first stage: no C code, NumPy implementations of every Op."""
    from pytensor.compile.mode import get_mode as _get
    return _get('FAST_COMPILE')


class StagedFunction(object):
    """A compiled function that runs a Python version until its C version is ready.

    Made by :func:`function` with ``staged=...``. Calls return what the
    PyTensor function returns (a list of arrays). When the Python version has
    run for the quick-start delay, a separate process compiles the C code of
    the function (and of the others of its group) into PyTensor's compile
    cache; when it has finished, the next call compiles the C version in
    this process, now from the cache (about a second), and from then on calls
    run it. No thread is started: compiling happens in the calling thread,
    between two calls (one at a time when several threads call).

    Attributes
    ----------
    name : str
    """

    def __init__(self, inputs, outputs, updates, name, kwargs, group):
        self.name = name
        self._spec = (list(inputs), outputs, list(updates or []), dict(kwargs))
        self._mode = _MODE
        self._delay = _QUICK_START[0]
        log.debug('compiling %s function (Python version)', name or 'a')
        self._quick = pytensor.function(inputs, outputs, updates=updates or [],
                                        mode=_python_mode(), name=name, **kwargs)
        self._final = None
        self._elapsed = 0.0
        self._polled = 0.0
        self._call_lock = threading.Lock()  # one call at a time (see SerializedFunction)
        self._group = _Group.of(group)
        self._group.members.append(self)
        _STAGED.add(self)

    def __call__(self, *args):
        with self._call_lock:
            return self._call(args)

    def _call(self, args):
        final = self._final
        if final is not None:
            return final(*args)
        start = time.perf_counter()
        result = self._quick(*args)
        now = time.perf_counter()
        self._elapsed += now - start
        if self._group.state is None:
            if self._elapsed >= self._delay:
                with _LOCK:
                    if self._group.state is None:
                        self._group.start()
        elif now - self._polled > _POLL_SECONDS:
            self._polled = now
            with _LOCK:
                if self._final is None and self._group.ready(wait=False):
                    self._switch()
        return result

    @property
    def compiled(self):
        """True once calls run the C version."""
        return self._final is not None

    @property
    def function(self):
        """The PyTensor function that calls run now."""
        return self._final if self._final is not None else self._quick

    def finish(self):
        """Compile the C version now, if it is not in use yet, and use it from now on."""
        with _LOCK:
            if self._final is None and self._spec is not None:
                if self._group.state is None:
                    self._group.start()
                self._group.ready(wait=True)
                self._switch()

    def _switch(self):
        """Compile the C version in this process (from the cache the helper filled)."""
        if self._spec is None:
            return
        inputs, outputs, updates, kwargs = self._spec
        self._spec = None
        try:
            log.debug('compiling %s function (C version)', self.name or 'a')
            self._final = pytensor.function(inputs, outputs, updates=updates,
                                            mode=_compile_mode(self._mode), name=self.name,
                                            **kwargs)
        except Exception as err:  # the Python version keeps working; say why C is not used
            log.warning('compiling the C version of the %s function failed (%s: %s); it keeps '
                        'running its slower Python version', self.name or 'a',
                        type(err).__name__, err)


#: Seconds between two checks whether the helper process has finished.
_POLL_SECONDS = 0.2
#: Held while a staged function starts its helper or compiles its C version, so
#: that threads calling staged functions never compile at the same time.
_LOCK = threading.RLock()
_STAGED = weakref.WeakSet()
_HELPERS = weakref.WeakSet()


class _Group(object):
    """Staged functions whose C versions one helper process compiles together."""

    def __init__(self):
        self.members = []
        self.state = None       # None, 'running', 'done' or 'failed'
        self._process = None
        self._files = ()

    @classmethod
    def of(cls, group):
        """Return the _Group kept in the list ``group`` (made on first use)."""
        if group and isinstance(group[0], cls):
            return group[0]
        made = cls()
        group[:] = [made]
        return made

    def start(self):
        """Start the helper process that fills the compile cache for every member."""
        specs = [(m._spec, m._mode) for m in self.members if m._spec is not None]
        self.state = 'failed'
        if not specs or not isinstance(specs[0][1], str):
            # a Mode object cannot be passed to another process: compile here
            self.state = 'done'
            return
        try:
            path = _write_specs(specs)
        except Exception as err:  # e.g. a custom Op that cannot be pickled
            log.info('cannot hand the C compilation to a helper process (%s: %s); compiling '
                     'it now', type(err).__name__, err)
            self.state = 'done'
            return
        errors = tempfile.TemporaryFile()
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = ('import sys; sys.path.insert(0, sys.argv[1]); '
                'from theanets import backend; backend._compile_in_helper(sys.argv[2])')
        # the same compile cache as this process, even if it was set at run time
        env = dict(os.environ)
        env['PYTENSOR_FLAGS'] = ','.join(filter(None, [
            env.get('PYTENSOR_FLAGS', ''), 'compiledir=' + str(pytensor.config.compiledir),
            'floatX=' + str(pytensor.config.floatX)]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, '-c', code, package, path], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=errors, env=env,
                start_new_session=(os.name == 'posix'))
        except OSError as err:
            log.info('cannot start a helper process (%s); compiling C code now', err)
            os.unlink(path)
            errors.close()
            self.state = 'done'
            return
        log.debug('compiling the C versions of %s in a helper process (pid %d)',
                  ', '.join(m.name or 'a' for m in self.members), self._process.pid)
        self._files = (path, errors)
        self.state = 'running'
        _HELPERS.add(self)
        weakref.finalize(self, _stop, self._process, self._files)

    def ready(self, wait):
        """Return True when the members may compile their C versions here."""
        if self.state == 'running':
            code = self._process.wait() if wait else self._process.poll()
            if code is None:
                return False
            path, errors = self._files
            self.state = 'done' if code == 0 else 'failed'
            if code != 0:
                errors.seek(0)
                tail = errors.read().decode('utf-8', 'replace').strip().splitlines()[-3:]
                log.info('the helper process compiling C code failed (exit code %s%s); '
                         'compiling it here instead', code,
                         ': ' + ' / '.join(tail) if tail else '')
                self.state = 'done'
            _stop(None, self._files)
            self._process = None
        return self.state == 'done'


def _write_specs(specs):
    """Pickle what a helper process compiles to a new temporary file; return its path."""
    handle, path = tempfile.mkstemp(prefix='theanets-compile-', suffix='.pkl')
    try:
        with os.fdopen(handle, 'wb') as out:
            pickle.dump(specs, out, -1)
    except Exception:
        os.unlink(path)
        raise
    return path


def _stop(process, files):
    """Stop a helper process and delete its files.

    The helper gets SIGINT first, so that PyTensor removes the module it was
    compiling (as on Ctrl-C); a helper still running after two seconds is
    killed with the compiler it started.
    """
    if process is not None and process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            try:
                if os.name == 'posix':
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        except OSError:
            pass
    path, errors = files if files else (None, None)
    if errors is not None:
        errors.close()
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


@atexit.register
def _stop_helpers():
    for group in list(_HELPERS):
        if group.state == 'running':
            _stop(group._process, group._files)


def _compile_in_helper(path):
    """Entry point of a helper process: compile the pickled functions' C code.

    The functions are discarded; what remains is PyTensor's compile cache,
    which the parent process then loads from.
    """
    with open(path, 'rb') as handle:
        specs = pickle.load(handle)
    for (inputs, outputs, updates, kwargs), mode in specs:
        pytensor.function(inputs, outputs, updates=updates, mode=_compile_mode(mode), **kwargs)


def finish_compiling():
    """Use the C version of every staged function from now on, compiling what is missing.

    Waits for the helper processes. Use it before timing code, or to stop
    using the Python versions at a moment of your choice. Functions whose C
    version failed to compile keep their Python version (a warning said why).
    """
    for staged in list(_STAGED):
        staged.finish()
