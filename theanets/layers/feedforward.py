"""Feedforward layers: Feedforward, Classifier and Tied."""

import pytensor.sparse
import pytensor.tensor as TT

from .. import util
from ..ops.product import dot_last
from .base import Layer

__all__ = ['Feedforward', 'Classifier', 'Tied']


def _dot(x, w):
    if isinstance(x.type, pytensor.sparse.SparseTensorType):
        return pytensor.sparse.structured_dot(x, w)
    if x.ndim == 3:  # e.g. (batch, time, n) from a recurrent layer: one GEMM, JAX-safe
        return dot_last(x, w)
    return TT.dot(x, w)


class Feedforward(Layer):
    """A layer computing out = g(sum_i x_i . w_i + b).

    With one input the weights are ``'w'`` (input size, size); with several,
    one matrix per input named ``'w_<input name>'`` (e.g. ``'w_in:out'``).
    The bias ``'b'`` has shape (size,).

    Outputs: ``'out'`` (the activation) and ``'pre'`` (before activation),
    both (..., size).

    Examples
    --------
    >>> import theanets
    >>> net = theanets.Regressor([3, (4, 'tanh'), 2])
    >>> net.find('hid1', 'w').get_value().shape
    (3, 4)
    """

    __extra_registration_keys__ = ['ff']

    OUTPUTS = ('out', 'pre')

    def _weight_name(self, input_name):
        return 'w' if len(self._input_shapes) == 1 else 'w_' + input_name

    def setup(self):
        for name, shape in self._input_shapes.items():
            if shape[-1] is None:
                raise util.ConfigurationError(
                    'layer {!r}: the size of input {!r} is unknown'.format(self.name, name))
            self.add_weights(self._weight_name(name), shape[-1], self.output_size)
        self.add_bias('b', self.output_size)

    def transform(self, inputs):
        if not isinstance(inputs, dict):
            inputs = {self.input_name: inputs}
        pre = self.find('b')
        for name, x in inputs.items():
            pre = _dot(x, self.find(self._weight_name(name))) + pre
        return dict(pre=pre, out=self.activate(pre))


class Classifier(Feedforward):
    """A feedforward layer whose activation is always softmax."""

    __extra_registration_keys__ = ['softmax']
    FIXED_ACTIVATION = ('softmax', 'a classifier layer always uses softmax')


class Tied(Layer):
    """A layer whose weights are the transpose of another layer's ``'w'``.

    out = g(x . partner.w^T + b); the layer's size is the partner's input size
    and its only parameter is the bias ``'b'``.

    Parameters
    ----------
    partner : str or Layer
        The layer whose weights are shared. A network finds it automatically
        in mirrored autoencoders such as ``[784, 256, 64, ('tied', 256), ('tied', 784)]``.
    """

    OUTPUTS = ('out', 'pre')
    SPEC_KEYS = ('partner', )

    def __init__(self, partner=None, **kwargs):
        if partner is None:
            raise util.ConfigurationError(
                'tied layer {!r} needs a partner layer (name or Layer)'.format(
                    kwargs.get('name')))
        self.partner = partner
        super().__init__(**kwargs)

    def _partner_layer(self, layers):
        if isinstance(self.partner, Layer):
            return self.partner
        for layer in layers:
            if layer.name == self.partner:
                return layer
        raise util.ConfigurationError(
            'tied layer {!r}: partner {!r} is not a layer of this network; layers are {}'.format(
                self.name, self.partner, [l.name for l in layers]))

    def resolve_inputs(self, layers):
        super().resolve_inputs(layers)
        self.partner = self._partner_layer(layers)
        if len(self.partner._input_shapes) != 1:
            raise util.ConfigurationError(
                'tied layer {!r}: partner {!r} has inputs {}; a tied layer needs a partner with '
                'one input'.format(self.name, self.partner.name,
                                   list(self.partner._input_shapes)))
        weights = {p.name.split('.', 1)[-1]: p for p in self.partner.params}.get('w')
        want = (self.partner.input_shape[-1], self.partner.output_size)
        if weights is None or weights.get_value(borrow=True).shape != want:
            raise util.ConfigurationError(
                'tied layer {!r}: partner {!r} ({}) has no weight matrix \'w\' of shape {} (its '
                'input size by its size) to share; tie it to a feedforward layer'.format(
                    self.name, self.partner.name, type(self.partner).__name__, want))

    def resolve_outputs(self):
        self._output_shape = self.input_shape[:-1] + (self.partner.input_shape[-1], )
        if self.input_size != self.partner.output_size:
            raise util.ConfigurationError(
                'tied layer {!r}: input size {} does not match partner {!r} output size {}'
                .format(self.name, self.input_size, self.partner.name,
                        self.partner.output_size))

    def setup(self):
        self.add_bias('b', self.output_size)

    def transform(self, inputs):
        pre = TT.dot(inputs, self.partner.find('w').T) + self.find('b')
        return dict(pre=pre, out=self.activate(pre))
