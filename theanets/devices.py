"""Data-parallel computation over several JAX devices.

In JAX mode (``theanets.backend.set_mode('JAX')``) a compiled function is a
``jax.jit`` program. :func:`set_data_parallel` makes theanets place the data of
every call *sharded along the batch axis* over a mesh of devices (GPUs, or CPU
devices for a trial: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``),
and the parameters *replicated* on each of them. XLA then partitions the
program: each device computes the loss and gradients of its share of the
mini-batch, the gradient sums become all-reduces across devices, and every
device applies the same update to its copy of the parameters. Nothing in the
graph changes, so results equal those of one device up to the order of the
float sums.

An array whose leading (batch) axis does not divide among the devices, e.g.
the last, shorter mini-batch or a prediction on an odd number of examples, is
replicated instead: every device computes all of it (correct, not faster),
and a warning says so once per function and batch length.
"""

import logging

import numpy as np

__all__ = ['set_data_parallel', 'get_data_parallel', 'ShardedFunction']

_DEVICES = [None]
log = logging.getLogger(__name__)


def set_data_parallel(devices=None):
    """Split the batch of every JAX-mode call among ``devices``.

    Parameters
    ----------
    devices : None, int or list of jax devices, optional
        ``None`` or 1: one device (the default). An int ``n``: the first ``n``
        of ``jax.devices()``. A list: those devices.

    Raises
    ------
    ImportError
        When JAX is not installed.
    ValueError
        When fewer devices exist than asked for.

    Networks key their compiled functions by this setting (see
    :func:`theanets.backend.mode_key`), so their next call compiles for it.
    """
    if devices is None or devices == 1:
        _DEVICES[0] = None
        return
    try:
        import jax
    except ImportError:
        raise ImportError('set_data_parallel needs JAX: pip install "theanets[jax]"') from None
    available = jax.devices()
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                'set_data_parallel: devices={} but JAX has {} ({}); on a CPU, '
                'XLA_FLAGS=--xla_force_host_platform_device_count=N makes N'.format(
                    devices, len(available), available))
        devices = available[:devices]
    devices = tuple(devices)
    if not devices:
        raise ValueError('set_data_parallel: devices is empty')
    _DEVICES[0] = devices if len(devices) > 1 else None


def get_data_parallel():
    """Return the devices set by :func:`set_data_parallel`, or None for one device."""
    return _DEVICES[0]


class ShardedFunction(object):
    """A JAX-mode PyTensor function whose inputs are split by batch among devices.

    Parameters
    ----------
    function : pytensor.compile.function.types.Function
        Compiled in JAX mode.
    devices : tuple of jax devices
    """

    def __init__(self, function, devices):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        mesh = Mesh(np.array(devices), ('batch', ))
        self.function = function
        self.devices = devices
        self._split = NamedSharding(mesh, PartitionSpec('batch'))
        self._copy = NamedSharding(mesh, PartitionSpec())
        self._put = jax.device_put
        self._dtypes = [i.variable.type.dtype for i in function.maker.inputs
                        if not i.implicit]
        self._warned = set()
        # the arrays are placed here; PyTensor's input checks would copy them back
        function.trust_input = True

    def _place(self, value, dtype):
        array = np.asarray(value, dtype=dtype)
        split = array.ndim > 0 and array.shape[0] % len(self.devices) == 0
        if not split and array.ndim > 0 and array.shape[0] not in self._warned:
            self._warned.add(array.shape[0])
            log.warning('%s: a batch of %d does not divide among %d devices; every device '
                        'computes all of it (choose a multiple of %d to split it)',
                        self.function.name or 'function', array.shape[0], len(self.devices),
                        len(self.devices))
        return self._put(array, self._split if split else self._copy)

    def __call__(self, *args):
        if len(args) != len(self._dtypes):
            raise TypeError('{}: expected {} arrays, got {}'.format(
                self.function.name, len(self._dtypes), len(args)))
        outputs = self.function(*[self._place(a, d) for a, d in zip(args, self._dtypes)])
        # gathered into NumPy arrays, as the other modes return
        if isinstance(outputs, (list, tuple)):
            return [np.asarray(o) for o in outputs]
        return np.asarray(outputs)
