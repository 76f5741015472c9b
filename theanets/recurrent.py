"""Recurrent models and helpers for sequence data.

Recurrent models take data with a time axis: inputs are (batch, time,
variables) arrays; regression targets (batch, time, outputs); class labels
(batch, time) ints. A weights array shaped like the target lets sequences of
different lengths share a batch: pad them and give the padded steps weight 0,
which removes them from the loss and from the accuracy.

A model may predict sequences of any length, and a batch of one sequence.

Examples
--------
>>> import numpy as np, theanets
>>> rng = np.random.RandomState(0)
>>> x = rng.randn(8, 5, 3).astype('f')
>>> labels = rng.randint(4, size=(8, 5)).astype('i')
>>> net = theanets.recurrent.Classifier([3, (6, 'lstm'), 4])
>>> _ = net.train([x, labels], algo='adam', max_updates=2)
>>> net.predict(rng.randn(2, 9, 3).astype('f')).shape
(2, 9)
>>> len(list(net.predict_sequence([1, 2, 3], 4, rng=0)))
4
"""

import collections
import logging

import numpy as np

from . import feedforward
from . import util

__all__ = ['batches', 'Text', 'Autoencoder', 'Regressor', 'Classifier']

log = logging.getLogger(__name__)


def batches(arrays, steps=100, batch_size=64, rng=None):
    """Return a callable drawing random windows of ``steps`` time steps from sequences.

    Parameters
    ----------
    arrays : list of ndarray
        Arrays of the same length along their first (time) axis, each (time,
        variables) or (time,) (e.g. labels).
    steps : int, optional
        Number of time steps in each window.
    batch_size : int, optional
        Number of windows in a batch.
    rng : int or RandomState, optional
        Random source of the window offsets.

    Returns
    -------
    callable
        With no arguments it returns a list with one array per input array,
        (batch_size, steps, variables) or (batch_size, steps). Row ``b`` of
        every array holds the same window (the same random offset).

    Examples
    --------
    >>> import numpy as np
    >>> x, y = np.arange(20.).reshape(10, 2), np.arange(10)
    >>> xb, yb = batches([x, y], steps=3, batch_size=4, rng=0)()
    >>> xb.shape, yb.shape, bool((xb[:, :, 0] == 2 * yb).all())
    ((4, 3, 2), (4, 3), True)
    """
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise ValueError('batches() needs a list of arrays, got {!r}'.format(type(arrays)))
    arrays = [np.asarray(a) for a in arrays]
    length = len(arrays[0])
    if any(a.ndim not in (1, 2) or len(a) != length for a in arrays):
        raise ValueError('batches() needs (time, variables) or (time,) arrays of equal '
                         'length, got shapes {}'.format([a.shape for a in arrays]))
    if batch_size < 1 or steps < 1:
        raise ValueError('batches() needs batch_size >= 1 and steps >= 1, got {} and {}'
                         .format(batch_size, steps))
    if steps > length:
        raise ValueError('batches(): steps={} is longer than the sequences ({} steps)'
                         .format(steps, length))
    rng = util.as_rng(rng)

    def sample():
        offsets = rng.randint(length - steps + 1, size=batch_size)
        index = offsets[:, None] + np.arange(steps)
        return [a[index] for a in arrays]

    return sample


class Text(object):
    """A text as a sequence of character classes, for training recurrent classifiers.

    Parameters
    ----------
    text : str
        The text.
    alpha : str, optional
        The alphabet, kept as given; default: the sorted characters that
        occur at least ``min_count`` times in ``text``.
    min_count : int, optional
        Minimum count of a character to enter the default alphabet.
    unknown : str, optional
        Character standing for everything outside the alphabet (class 0).

    Attributes
    ----------
    alpha : str
        The alphabet; character ``alpha[i]`` is class ``i + 1``.
    text : str
        The text with characters outside the alphabet replaced by ``unknown``.

    Examples
    --------
    >>> txt = Text('hello world, how are you!', min_count=2, unknown='_')
    >>> txt.alpha
    ' ehlorw'
    >>> txt.text
    'hello worl__ how _re _o__'
    >>> Text('hello', alpha='helo wrd,!').encode('hello!')
    [1, 2, 3, 3, 4, 10]
    >>> txt.decode(txt.encode('how now'))
    'how _ow'
    """

    def __init__(self, text, alpha=None, min_count=2, unknown='\0'):
        if alpha is None:
            counts = collections.Counter(text)
            alpha = ''.join(sorted(c for c, n in counts.items()
                                   if n >= min_count and c != unknown))
        if unknown in alpha:
            raise ValueError('the unknown character {!r} must not be in the alphabet {!r}'
                             .format(unknown, alpha))
        self.alpha = alpha
        self.unknown = unknown
        self._index = {c: i + 1 for i, c in enumerate(alpha)}
        self._chars = unknown + alpha
        self.text = ''.join(c if c in self._index else unknown for c in text)

    @property
    def alphabet(self):
        """The alphabet (same as :attr:`alpha`)."""
        return self.alpha

    def encode(self, txt):
        """Return the classes of the characters of ``txt``: list of int (0 = unknown)."""
        return [self._index.get(c, 0) for c in txt]

    def decode(self, enc):
        """Return the string of a sequence of classes."""
        return ''.join(self._chars[int(c)] for c in enc)

    def classifier_batches(self, steps, batch_size, rng=None):
        """Return a callable drawing training batches for a recurrent classifier.

        Parameters
        ----------
        steps : int
            Time steps per sequence.
        batch_size : int
            Sequences per batch.
        rng : int or RandomState, optional
            Random source of the sequence offsets in the text.

        Returns
        -------
        callable
            With no arguments it returns ``[inputs, outputs]``: inputs float32
            (batch_size, steps, 1 + len(alpha)) one-hot characters, outputs int32
            (batch_size, steps) holding the class of the next character of each
            input position.
        """
        if batch_size < 1 or steps < 1:
            raise ValueError('classifier_batches needs batch_size >= 1 and steps >= 1')
        if len(self.text) < steps + 1:
            raise ValueError('the text ({} characters) is too short for {} steps'.format(
                len(self.text), steps))
        encoded = np.array(self.encode(self.text), dtype='int32')
        width = 1 + len(self.alpha)
        rng = util.as_rng(rng)

        def sample():
            offsets = rng.randint(len(encoded) - steps, size=batch_size)
            window = encoded[offsets[:, None] + np.arange(steps + 1)]
            inputs = np.zeros((batch_size, steps, width), dtype=util.FLOAT)
            rows, cols = np.indices((batch_size, steps))
            inputs[rows, cols, window[:, :-1]] = 1
            return [inputs, window[:, 1:].astype('int32')]

        return sample


class Autoencoder(feedforward.Autoencoder):
    """A recurrent autoencoder: reproduces (batch, time, variables) inputs (MSE).

    Training data is ``[x]``, or ``[x, w]`` when ``weighted=True`` (w shaped like x).

    Examples
    --------
    >>> import theanets
    >>> net = theanets.recurrent.Autoencoder([3, (10, 'rnn'), 3], weighted=True)
    >>> [v.name for v in net.variables]
    ['in', 'weights']
    """

    INPUT_NDIM = 3
    OUTPUT_NDIM = 3


class Regressor(feedforward.Regressor):
    """A recurrent regressor: maps (batch, time, inputs) to (batch, time, outputs) (MSE).

    Training data is ``[x, y]``, or ``[x, y, w]`` when ``weighted=True``.
    """

    INPUT_NDIM = 3
    OUTPUT_NDIM = 3


class Classifier(feedforward.Classifier):
    """A recurrent classifier: a class distribution at each time step (cross-entropy).

    Training data is ``[x, labels]`` with x (batch, time, variables) and int
    labels (batch, time), or ``[x, labels, w]`` with w (batch, time) when
    ``weighted=True``. :meth:`predict` gives (batch, time) labels and
    :meth:`predict_proba` (batch, time, classes).
    """

    INPUT_NDIM = 3
    OUTPUT_NDIM = 2

    def predict_sequence(self, labels, steps, streams=1, rng=None, greedy=False):
        """Draw a sequence of class labels from this network, one step ahead at a time.

        The model reads the seed ``labels`` (as one-hot inputs), draws the next
        label from its predicted distribution at the last time step, appends
        it to the sequence, and repeats.

        Parameters
        ----------
        labels : sequence of int
            Class labels that start the sequence (at least one).
        steps : int
            Number of labels to draw.
        streams : int, optional
            Number of independent sequences drawn in parallel (default 1).
        rng : int or RandomState, optional
            Random source; default: a generator with an automatic seed.
        greedy : bool, optional
            Take the most likely label at each step instead of sampling.

        Yields
        ------
        int, or list of ``streams`` ints when ``streams > 1``
            The next label of each stream.

        Notes
        -----
        Labels are fed back as one-hot input vectors, so the input layer
        should have as many variables as the output has classes. When it has
        fewer (as in ``Classifier([10, (20, 'rnn'), 50])``), labels that do
        not fit are fed as all-zero vectors and a warning is logged.

        Raises
        ------
        ValueError
            If ``labels`` is empty.
        ConfigurationError
            If a seed label is negative or not below max(input size, classes).
        """
        width = self.layers[0].output_size
        classes = self.layers[-1].output_size
        if classes > width:
            log.warning('predict_sequence: the output has %d classes but the input only %d '
                        'variables; labels >= %d are fed back as zero vectors',
                        classes, width, width)
        labels = [int(l) for l in np.asarray(labels).ravel()]
        if not labels:
            raise ValueError('predict_sequence needs at least one seed label')
        if min(labels) < 0 or max(labels) >= max(width, classes):
            raise util.ConfigurationError('seed labels must be in [0, {}], got {}'.format(
                max(width, classes) - 1, labels))
        rng = util.as_rng(rng)
        start = len(labels)
        # one extra column receives the labels the input cannot represent.
        inputs = np.zeros((streams, start + steps, max(width, classes)), dtype=util.FLOAT)
        inputs[:, np.arange(start), labels] = 1
        for i in range(start, start + steps):
            proba = self.predict_proba(inputs[:, :i, :width])[:, -1]
            drawn = [self._draw(p, rng, greedy) for p in proba]
            inputs[np.arange(streams), i, drawn] = 1
            yield drawn[0] if streams == 1 else drawn

    @staticmethod
    def _draw(pdf, rng, greedy):
        pdf = np.asarray(pdf, dtype=np.float64)
        total = pdf.sum()
        if greedy or not np.isfinite(total) or total <= 0:
            return int(pdf.argmax())
        return int(rng.multinomial(1, pdf / total * (1 - 1e-9)).argmax())
