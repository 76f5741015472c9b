"""What every compiled theanets op shares: C sources from files, BLAS, JAX twins.

Each op is defined once, in three faces:

- C code in real source files under ``theanets/ops/c/`` (shipped as package
  data): the shared header ``theanets.h`` and the op's own ``.c`` files, which
  :class:`CSourceOp` reads and returns from ``c_support_code``. An op's
  ``c_code`` only fills in a call to a function defined there;
- a NumPy ``perform``, the reference that tests compare C and JAX against;
- a JAX implementation, registered with :func:`jax_twin` and handed to
  PyTensor's ``jax_funcify`` when a function is compiled in JAX mode.

The compile-cache version of an op is a hash of its C files and of the Python
module that defines it, so any edit recompiles; there are no version numbers
to bump by hand. If the C code of an op cannot be compiled (no compiler, a
broken toolchain), the op logs one warning and runs its NumPy ``perform``.
"""

import functools
import hashlib
import importlib.resources
import inspect
import logging
import os
import platform
import re
import shlex
import sys

import pytensor
import pytensor.tensor as pt
from pytensor.link.c.op import COp

__all__ = ['CSourceOp', 'OpInputError', 'float_inputs', 'c_source', 'digest', 'blas_flags',
           'portable', 'threads', 'jax_twin', 'register_jax_twins', 'warn_once']

log = logging.getLogger(__name__)

#: The header every op's support code starts with.
HEADER = 'theanets.h'


@functools.lru_cache(maxsize=None)
def c_source(name):
    """Return the text of ``theanets/ops/c/<name>``."""
    return importlib.resources.files(__package__).joinpath('c', name).read_text()


@functools.lru_cache(maxsize=None)
def _module_source(module_name):
    module = __import__(module_name, fromlist=['_'])
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):  # no source shipped: the module's name must do
        return module_name


@functools.lru_cache(maxsize=None)
def digest(module_name, files):
    """Compile-cache version: a hash of theanets.h, ``files`` and the module's source."""
    sha = hashlib.sha256()
    for name in (HEADER,) + files:
        sha.update(c_source(name).encode())
    sha.update(_module_source(module_name).encode())
    return tuple(int(sha.hexdigest()[i:i + 8], 16) for i in range(0, 32, 8))


def blas_flags():
    """Split PyTensor's ``blas__ldflags`` into ``(libraries, lib_dirs, other flags)``.

    theanets sets these flags at import to link scipy-openblas32 (see
    :mod:`theanets.backend`); a user's own setting is used as given.
    """
    flags = shlex.split(pytensor.config.blas__ldflags)
    return ([f[2:] for f in flags if f.startswith('-l')],
            [f[2:] for f in flags if f.startswith('-L')],
            [f for f in flags if not f.startswith(('-l', '-L'))])


def portable():
    """Whether to compile the C ops for CPUs without AVX-512 (``THEANETS_PORTABLE=1``).

    PyTensor compiles for the CPU it runs on. With this setting the ops are
    compiled as for a CPU with AVX2 but no AVX-512, which is how tests and
    benchmarks check the code most laptops run on an AVX-512 machine. It is
    read whenever a function is compiled, and is part of the compile-cache key.
    """
    return os.environ.get('THEANETS_PORTABLE', '0') not in ('', '0')


_AVX512_FLAGS = ('-mavx512', '-mevex512', '-mavx10')


def threads():
    """Threads a C op may split its work among (see ``c/parallel.c``).

    ``OMP_NUM_THREADS`` if set, else every CPU this process may use; at run time
    the ops use no more than OpenBLAS's own thread count, and one thread with
    another BLAS (they must hold BLAS to one thread meanwhile; a warning says so).
    Read when a function is compiled.
    """
    given = os.environ.get('OMP_NUM_THREADS', '')
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    count = int(given) if given.isdigit() and int(given) > 0 else usable or os.cpu_count() or 1
    if count > 1 and not any('openblas' in lib for lib in blas_flags()[0]):
        warn_once('threads', 'the C ops of recurrent layers, convolutions, pooling and products '
                  'run on one thread unless the BLAS linked (%s) is OpenBLAS, whose thread count '
                  'they set', pytensor.config.blas__ldflags or 'none')
    return count


class OpInputError(TypeError, ValueError):
    """An op's input has the wrong number of axes (caught as TypeError or ValueError)."""


def float_inputs(op, names, values, ndims):
    """``values`` as tensors of the first one's float dtype (floatX if it is not a float).

    Raises :class:`OpInputError` naming ``op`` and the input when one does not have
    the axes ``ndims`` gives for it (an int, or None for one or more).
    """
    tensors = [pt.as_tensor_variable(v) for v in values]
    dtype = tensors[0].dtype if tensors[0].dtype in ('float32', 'float64') else \
        pytensor.config.floatX
    for name, t, ndim in zip(names, tensors, ndims):
        if t.ndim != ndim and not (ndim is None and t.ndim):
            raise OpInputError('{}: {} must have {} axes, got {}'.format(
                op, name, 'one or more' if ndim is None else ndim, t.ndim))
    return [t if t.dtype == dtype else pt.cast(t, dtype) for t in tensors]


_WARNED = set()


def warn_once(key, message, *args):
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


class CSourceOp(COp):
    """A PyTensor op whose C implementation lives in ``theanets/ops/c/``.

    Subclasses list their files in :attr:`C_SOURCES` and write :meth:`c_call` as a
    call to a function defined there; ``perform`` is the NumPy reference.

    Attributes
    ----------
    C_SOURCES : tuple of str
        File names under ``theanets/ops/c/``, included after ``theanets.h``.
    USES_BLAS : bool
        Whether the C code calls BLAS (then it links the library of
        ``pytensor.config.blas__ldflags``).
    """

    C_SOURCES = ()
    USES_BLAS = False
    __props__ = ()

    def c_support_code(self, **kwargs):
        return '\n'.join(c_source(name) for name in (HEADER,) + tuple(self.C_SOURCES))

    def c_call(self, node, inputs, outputs, sub):
        """A C expression that computes the outputs, nonzero (a Python error set) on failure."""
        raise NotImplementedError

    def c_code(self, node, name, inputs, outputs, sub):
        """:meth:`c_call`, writing into the node's last outputs again once nobody else holds
        them (``thn_reuse_output`` in c/theanets.h: fresh arrays of a few MB page-fault)."""
        keep = ['thn_keep_{}[{}]'.format(name, k) for k in range(len(outputs))]
        return ''.join(['thn_reuse_output(&{}, {});\n'.format(*a) for a in zip(outputs, keep)] + [
            'if ({}) {{ {} }}\n'.format(self.c_call(node, inputs, outputs, sub), sub['fail'])] + [
            'thn_keep_output(&{}, {});\n'.format(*a) for a in zip(keep, outputs)])

    def c_support_code_struct(self, node, name):
        return 'PyArrayObject* thn_keep_{}[{}];\n'.format(name, len(node.outputs))

    def c_init_code_struct(self, node, name, sub):
        return 'memset(thn_keep_{0}, 0, sizeof thn_keep_{0});\n'.format(name)

    def c_cleanup_code_struct(self, node, name):
        return 'for (int k = 0; k < {}; ++k) Py_CLEAR(thn_keep_{}[k]);\n'.format(
            len(node.outputs), name)

    def c_code_cache_version(self):
        return digest(type(self).__module__, tuple(self.C_SOURCES))

    def c_compile_args(self, **kwargs):
        # -fno-trapping-math: without AVX-512 (no masked moves) GCC vectorizes the selects of
        # thn_exp & co. only if comparisons may not trap; the ops never rely on FP traps
        x86 = platform.machine().lower() in ('x86_64', 'amd64')
        gcc = re.search(r'(?:^|\s)(\d+)(?:\.|$)', pytensor.config.gcc_version_str)  # '12.2.0'
        openmp = sys.platform.startswith('linux') and 'clang' not in pytensor.config.cxx and \
            gcc is not None and int(gcc.group(1)) >= 9  # c/parallel.c: OpenMP 5's pause at fork
        if 'parallel.c' in self.C_SOURCES and not openmp:
            warn_once('openmp', 'C ops: no OpenMP (GCC 9+ on Linux) with %s on %s; threads start '
                      'at every call (30-240 us)', pytensor.config.gcc_version_str, sys.platform)
        return ['-fopenmp-simd', '-fno-trapping-math'] + (
            ['-mno-avx512f'] if portable() and x86 else []) + (
            blas_flags()[2] if self.USES_BLAS else []) + (
            ['-pthread'] + ['-fopenmp'] * openmp if 'parallel.c' in self.C_SOURCES else [])

    def c_no_compile_args(self, c_compiler=None, **kwargs):
        """On the portable path, drop the AVX-512 flags PyTensor adds for this CPU.

        PyTensor puts its own flags (``-march=...``, ``-mavx512f``...) after the
        ops' ``c_compile_args``, so ``-mno-avx512f`` alone would be overridden.
        """
        if not portable() or c_compiler is None:
            return []
        return [f for f in c_compiler.compile_args() if f.startswith(_AVX512_FLAGS)]

    def c_libraries(self, **kwargs):
        return blas_flags()[0] if self.USES_BLAS else []

    def c_lib_dirs(self, **kwargs):
        return blas_flags()[1] if self.USES_BLAS else []

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        """Compile the C code; if that fails, warn once and run ``perform``."""
        try:
            return super().make_thunk(node, storage_map, compute_map, no_recycling, impl)
        except Exception as err:  # a compiler error of any kind: fall back to NumPy
            if impl == 'c':
                raise
            warn_once(('compile', type(self).__name__),
                      '%s: C code failed to compile (%s: %s); running its NumPy '
                      'implementation, which is much slower', type(self).__name__,
                      type(err).__name__, str(err).splitlines()[0] if str(err) else '')
            return self.make_py_thunk(node, storage_map, compute_map, no_recycling)


_JAX_TWINS = {}
_JAX_REGISTERED = set()


def jax_twin(op_class):
    """Register the decorated function as the JAX implementation of ``op_class``.

    The function takes ``(op, node=None, **kwargs)`` and returns a function of
    JAX arrays, as PyTensor's ``jax_funcify`` expects. Nothing imports JAX
    until a function is compiled in JAX mode (:func:`register_jax_twins`).
    """
    def register(factory):
        _JAX_TWINS[op_class] = factory
        return factory
    return register


def register_jax_twins():
    """Hand every JAX twin defined so far to PyTensor's ``jax_funcify`` (imports JAX)."""
    pending = [cls for cls in _JAX_TWINS if cls not in _JAX_REGISTERED]
    if not pending:
        return
    from pytensor.link.jax.dispatch import jax_funcify
    for cls in pending:
        jax_funcify.register(cls)(_JAX_TWINS[cls])
        _JAX_REGISTERED.add(cls)
