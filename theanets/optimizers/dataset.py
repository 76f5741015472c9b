"""Mini-batches for training: :class:`Dataset`.

A dataset is either a list of arrays that all have the same number of examples
along one axis, cut into contiguous mini-batches whose order is shuffled, or a
zero-argument callable that returns one mini-batch (a list of arrays) per call.
"""

import logging

import numpy as np
import scipy.sparse

from .. import util

__all__ = ['Dataset']

log = logging.getLogger(__name__)


def _is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_array(array):
    """Return something that can be sliced along an axis: ndarray, sparse or pandas."""
    if scipy.sparse.issparse(array):
        if array.format not in ('csr', 'csc'):
            return array.tocsr()
        return array
    if hasattr(array, 'iloc'):  # pandas DataFrame or Series
        return array
    if hasattr(array, 'get_value'):  # a shared variable
        return np.asarray(array.get_value(borrow=True))
    return np.asarray(array)


def _slice(array, axis, start, stop):
    """Return examples ``start:stop`` of ``array`` along ``axis``."""
    if hasattr(array, 'iloc'):
        index = (slice(start, stop), ) if axis == 0 else (slice(None), slice(start, stop))
        return array.iloc[index]
    index = (slice(None), ) * axis + (slice(start, stop), )
    return array[index]


class Dataset(object):
    """Mini-batches of training or validation data.

    Parameters
    ----------
    inputs : list or tuple of arrays, or callable
        Arrays (numpy, scipy.sparse CSR/CSC, pandas) that all have the same
        number of examples along ``axis``, in the order of the model's input
        variables; or a callable taking no arguments and returning such a list
        for one mini-batch.
    name : str, optional
        Used in log messages, e.g. ``'train'`` or ``'valid'``.
    batch_size : int, optional
        Examples per mini-batch (default 32); the last batch may be shorter.
        A value of 0 or less puts all examples in one batch. Ignored for a
        callable.
    iteration_size : int, optional
        Mini-batches per pass (one training epoch or one validation). Defaults
        to the number of batches; a larger value wraps around. For a callable it
        defaults to ``len(callable)`` if defined, else 100.
    axis : int, optional
        The axis that indexes examples (default 0).
    rng : int or numpy.random.RandomState, optional
        Random state used to shuffle the order of the mini-batches.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset([np.zeros((10, 3)), np.zeros(10)], batch_size=4, rng=1)
    >>> ds.iteration_size, ds.num_examples
    (3, 10)
    >>> sorted(len(y) for x, y in ds)
    [2, 4, 4]
    """

    _count = 0

    def __init__(self, inputs, name=None, batch_size=32, iteration_size=None, axis=0,
                 rng=None):
        Dataset._count += 1
        self.name = name or 'dataset{}'.format(Dataset._count)
        self.batch_size = self._check_batch_size(batch_size)
        self.axis = axis
        self.rng = util.as_rng(rng)
        self.num_examples = None
        self._callable = None
        self._arrays = None
        self._slices = []
        self._order = []
        self._position = 0
        if callable(inputs):
            self._callable = inputs
            default_size = len(inputs) if hasattr(inputs, '__len__') else 100
        else:
            self._init_arrays(inputs)
            default_size = len(self._slices)
        self.iteration_size = self._check_iteration_size(iteration_size, default_size)
        log.info('%s', self.summary())

    # -- construction ------------------------------------------------------

    def _check_batch_size(self, batch_size):
        if not _is_integer(batch_size):
            raise util.ConfigurationError(
                'batch_size must be an integer (0 or less for one batch), got {!r}'.format(
                    batch_size))
        return int(batch_size)

    def _check_iteration_size(self, iteration_size, default):
        if iteration_size is None:
            return default
        if not _is_integer(iteration_size) or iteration_size < 1:
            raise util.ConfigurationError(
                'iteration_size for dataset {!r} must be a positive integer or None, '
                'got {!r}'.format(self.name, iteration_size))
        return int(iteration_size)

    def _init_arrays(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise util.ConfigurationError(
                'dataset {!r} needs a list of arrays or a callable, got {}; wrap a single '
                'array in a list: [x]'.format(self.name, type(inputs).__name__))
        if not inputs:
            raise util.ConfigurationError('dataset {!r} got no arrays'.format(self.name))
        arrays = [_as_array(a) for a in inputs]
        self._check_lengths(arrays)
        self._arrays = arrays
        self.num_examples = arrays[0].shape[self.axis]
        size = self.batch_size if self.batch_size > 0 else self.num_examples
        self._slices = [(start, min(start + size, self.num_examples))
                        for start in range(0, self.num_examples, size)]
        self.shuffle()

    def _check_lengths(self, arrays):
        shapes = [tuple(a.shape) for a in arrays]
        for i, shape in enumerate(shapes):
            if len(shape) <= self.axis:
                raise util.ConfigurationError(
                    'array {} of dataset {!r} has shape {}, which has no axis {}'.format(
                        i, self.name, shape, self.axis))
        lengths = [shape[self.axis] for shape in shapes]
        for i, length in enumerate(lengths):
            if length != lengths[0]:
                raise util.ConfigurationError(
                    'arrays of dataset {!r} differ in length along axis {}: array 0 has '
                    'shape {} but array {} has shape {}'.format(
                        self.name, self.axis, shapes[0], i, shapes[i]))
        if lengths[0] == 0:
            raise util.ConfigurationError(
                'dataset {!r} is empty: shapes {}'.format(self.name, shapes))

    # -- public interface --------------------------------------------------

    @property
    def num_batches(self):
        """Number of distinct mini-batches (None for a callable)."""
        return None if self._callable else len(self._slices)

    @property
    def shapes(self):
        """Shapes of the arrays (None for a callable)."""
        return None if self._callable else [tuple(a.shape) for a in self._arrays]

    def summary(self):
        """Return a one-line description such as ``'train: 4 of 4 mini-batches from (100, 4)'``."""
        if self._callable:
            return '{}: {} mini-batches from callable'.format(self.name, self.iteration_size)
        return '{}: {} of {} mini-batches from {}'.format(
            self.name, self.iteration_size, len(self._slices),
            ', '.join(str(s) for s in self.shapes))

    def shuffle(self):
        """Shuffle the order of the mini-batches (examples stay in their batch)."""
        self._order = list(self.rng.permutation(len(self._slices)))
        self._position = 0

    def __iter__(self):
        return self.iterate(True)

    def iterate(self, shuffle=True):
        """Yield ``iteration_size`` mini-batches, each a list of arrays.

        Parameters
        ----------
        shuffle : bool, optional
            Reshuffle the batch order whenever all batches have been used
            (default True); otherwise cycle through them in the current order.
        """
        if self._callable:
            return (self._call() for _ in range(self.iteration_size))
        return (self._next_batch(shuffle) for _ in range(self.iteration_size))

    def __len__(self):
        return self.iteration_size

    # -- helpers -------------------------------------------------------------

    def _next_batch(self, shuffle):
        if self._position >= len(self._order):
            if shuffle:
                self.shuffle()
            self._position = 0
        start, stop = self._slices[self._order[self._position]]
        self._position += 1
        return [_slice(a, self.axis, start, stop) for a in self._arrays]

    def _call(self):
        batch = self._callable()
        if not isinstance(batch, (list, tuple)):
            raise util.ConfigurationError(
                'the callable of dataset {!r} must return a list of arrays, got {}'.format(
                    self.name, type(batch).__name__))
        return list(batch)

