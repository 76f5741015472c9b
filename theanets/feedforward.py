"""Feedforward models: Autoencoder, Regressor and Classifier.

Each is a thin :class:`~theanets.graph.Network` subclass that sets the
default loss, output activation and data dimensions.

Examples
--------
>>> import numpy as np, theanets
>>> x = np.random.RandomState(0).randn(64, 4).astype('f')
>>> labels = (x[:, 0] > 0).astype('i')
>>> net = theanets.Classifier([4, 8, 2])
>>> _ = net.train([x, labels], algo='adam', learning_rate=1e-2, max_updates=3)
>>> net.predict(x).shape, net.predict_proba(x).shape
((64,), (64, 2))
"""

import warnings

import numpy as np

from . import checks
from . import graph
from . import regularizers
from . import util

__all__ = ['Autoencoder', 'Regressor', 'Classifier']


class Autoencoder(graph.Network):
    """A network trained to reproduce its input (default loss: MSE against the input).

    Training data is ``[x]`` (``[x, w]`` when weighted, w shaped like x).

    Examples
    --------
    >>> import numpy as np, theanets
    >>> model = theanets.Autoencoder([10, 20, (10, 'tied')])
    >>> x = np.random.randn(3, 10).astype('f')
    >>> model.encode(x).shape, model.decode(model.encode(x)).shape
    ((3, 20), (3, 10))
    """

    def __init__(self, layers=(), loss='mse', weighted=False, rng=13, **kwargs):
        super().__init__(layers=layers, loss=loss, weighted=weighted, rng=rng, **kwargs)

    def _default_target(self):
        return self.inputs[0]

    def _find_output(self, layer):
        """Return the output name for ``layer``: None (middle), int, name or Layer."""
        if layer is None:
            layer = len(self.layers) // 2
        if isinstance(layer, (int, np.integer)):
            if not -len(self.layers) <= layer < len(self.layers):
                raise util.ConfigurationError(
                    'layer={} is out of range for a network of {} layers {}; give an index '
                    'in [0, {}] or a layer name'.format(
                        layer, len(self.layers), [l.name for l in self.layers],
                        len(self.layers) - 1))
            return self.layers[layer].output_name
        if isinstance(layer, str):
            for candidate in self.layers:
                if candidate.name == layer:
                    return candidate.output_name
            if ':' in layer:
                return layer
            raise util.ConfigurationError('no layer named {!r}; layers are {}'.format(
                layer, [l.name for l in self.layers]))
        return layer.output_name

    def encode(self, x, layer=None, sample=False, **kwargs):
        """Encode data with a hidden layer's activations.

        Parameters
        ----------
        x : ndarray (batch, inputs)
        layer : int, str or Layer, optional
            The encoding layer; defaults to the middle layer ``layers[len // 2]``.
        sample : bool, optional
            Treat activations as Bernoulli probabilities and return 0/1 samples.

        Returns
        -------
        ndarray (batch, layer size)
        """
        arrays = self._input_arrays(x, (), kwargs)
        name = self._find_output(layer)
        enc = self._compute([name], arrays, kwargs, 'encode')[name]
        if sample:
            return np.random.binomial(n=1, p=np.clip(enc, 0, 1)).astype(np.uint8)
        return enc

    def decode(self, z, layer=None, **kwargs):
        """Decode an encoding: run the network from ``layer``'s output to the end.

        Parameters
        ----------
        z : ndarray (batch, layer size)
        layer : int, str or Layer, optional
            The layer that produced ``z`` (default: the middle layer).

        Returns
        -------
        ndarray (batch, outputs)
        """
        from . import backend
        self.ensure_ready()
        name = self._find_output(layer)
        allow = kwargs.pop('allow_nonfinite', False)
        regs = self._regularizers(kwargs, 'decode')
        outputs, updates = self.build_graph(regs)
        if name not in outputs:
            raise util.ConfigurationError('no graph output named {!r}; outputs are {}'.format(
                name, sorted(outputs)))
        z = checks.array(self._shape_of(name), z, 'decode() input for {!r}'.format(name),
                         allow)
        function = self.compiled(('decode', name), lambda: backend.function(
            [outputs[name]], outputs[self.layers[-1].output_name], updates=updates,
            name='decode', staged=True), regs)
        return function(z)

    def _shape_of(self, name):
        """Return the shape of the graph output ``name`` (None for unknown sizes)."""
        for layer in self.layers:
            shapes = layer.output_shapes()
            if name in shapes:
                return (None, ) + tuple(shapes[name])
        return (None, ) * self.INPUT_NDIM

    def score(self, x, w=None, **kwargs):
        """Return the R^2 of the reconstruction of ``x`` (weighted by ``w``)."""
        x = self._input_arrays(x, (), dict(kwargs))[0]
        if w is not None:
            w = checks.score_targets(self, len(x), x, w)[1]
        return graph.r2_score(x, self.predict(x, **kwargs), w)


class Regressor(graph.Network):
    """A network mapping inputs to real-valued targets (default loss: MSE).

    Training data is ``[x, y]`` (``[x, y, w]`` when weighted).
    """


class Classifier(graph.Network):
    """A network computing a distribution over class labels (default loss: cross-entropy).

    Training data is ``[x, labels]`` with int labels (batch,) (``[x, labels, w]``
    when weighted, w shaped like labels). The output layer uses softmax.
    """

    DEFAULT_OUTPUT_ACTIVATION = 'softmax'
    OUTPUT_NDIM = 1

    def __init__(self, layers=(), loss='xe', weighted=False, rng=13, **kwargs):
        super().__init__(layers=layers, loss=loss, weighted=weighted, rng=rng, **kwargs)

    def monitors(self, **kwargs):
        """Monitors of :class:`Network` plus ``'acc'``, the fraction of correct labels."""
        result = super().monitors(**kwargs)
        accuracy = getattr(self.losses[0], 'accuracy', None)
        if accuracy is not None:
            outputs, _ = self.build_graph(regularizers.from_kwargs(self, **kwargs))
            result.append(('acc', accuracy(outputs)))
        return result

    def predict(self, x, *more, **kwargs):
        """Return the most likely class of each example: ints (batch,) or (batch, time)."""
        if self.layers[-1].activation == 'softmax':  # order-preserving: skip computing it
            return self.predict_logit(x, *more, **kwargs).argmax(axis=-1)
        return self.predict_proba(x, *more, **kwargs).argmax(axis=-1)

    def classify(self, x, *more, **kwargs):
        """Deprecated alias of :meth:`predict`."""
        warnings.warn('classify() is deprecated; use predict()', DeprecationWarning,
                      stacklevel=2)
        return self.predict(x, *more, **kwargs)

    def predict_proba(self, x, *more, **kwargs):
        """Return class probabilities (batch, [time,] classes) from the softmax output."""
        return super().predict(x, *more, **kwargs)

    def predict_logit(self, x, *more, **kwargs):
        """Return the output layer's pre-softmax values (batch, [time,] classes)."""
        arrays = self._input_arrays(x, more, kwargs)
        name = self.layers[-1].full_name('pre')
        return self._compute([name], arrays, kwargs, 'predict_logit')[name]

    def score(self, x, y, w=None, **kwargs):
        """Return the fraction of correct labels (weighted by ``w`` if given)."""
        arrays = self._input_arrays(x, (), dict(kwargs))
        y, w = checks.score_targets(self, arrays[0].shape[0], y, w)
        correct = (self.predict(x, **kwargs) == y).astype(float)
        if w is None:
            return float(correct.mean())
        w = np.asarray(w, dtype=float)
        return float((w * correct).sum() / w.sum())
