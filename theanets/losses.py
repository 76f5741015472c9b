r"""Loss functions: scalar expressions comparing a graph output with a target.

A :class:`Loss` reads one graph output (``output_name``, default
``'out:out'``) and compares it with its target variable. All losses of a
network share one target variable (and one weights variable when the model is
weighted), so several losses can be trained together.

With weights :math:`w` (same shape as the target), each loss is the weighted
mean of its per-element error :math:`\sum w\, e / \sum w`.

Examples
--------
>>> import theanets
>>> net = theanets.Regressor([10, 20, 3], loss='mae')
>>> _ = net.add_loss('mse', weight=2)
>>> [type(l).__name__ for l in net.losses]
['MeanAbsoluteError', 'MeanSquaredError']
"""

import logging

import numpy as np
import pytensor.tensor as TT
from pytensor.tensor.variable import TensorVariable

from . import backend, util

__all__ = ['Loss', 'MeanSquaredError', 'MeanAbsoluteError', 'GaussianLogLikelihood',
           'MaximumMeanDiscrepancy', 'KullbackLeiblerDivergence', 'CrossEntropy', 'Hinge']

log = logging.getLogger(__name__)


class WeightsVariable(TensorVariable):
    """A weights variable that is truthy, so ``if self._weights:`` works in custom losses."""

    def __bool__(self):
        return True


def _variable(name, ndim, dtype):
    var = TT.tensor(dtype=dtype, shape=(None, ) * ndim, name=name)
    return var


class Loss(util.Registrar):
    """A loss function base class.

    Parameters
    ----------
    target : int or symbolic variable
        Number of dimensions of the target array (a new variable named
        ``'target'`` is created), or an existing variable (e.g. an
        autoencoder's input).
    weight : float, optional
        Multiplier of this loss in the model's total loss (default 1).
    weighted : bool, optional
        If True, a weights variable named ``'weights'`` with the target's
        shape scales each element's error.
    output_name : str, optional
        Graph output to compare with the target (default ``'out'``, meaning
        ``'out:out'``).

    Attributes
    ----------
    weight : float
        Mutable; takes effect at the next ``train``.
    """

    _registry = util.Registry('loss')

    #: dtype of a target variable this loss creates.
    TARGET_DTYPE = util.FLOAT

    def __init__(self, target, weight=1.0, weighted=False, output_name='out'):
        self.weight = weight
        if ':' not in output_name:
            output_name += ':out'
        self.output_name = output_name
        if isinstance(target, (int, )):
            self._target = _variable('target', target, self.TARGET_DTYPE)
        else:
            self._target = target
        self._weights = None
        if weighted:
            self._weights = _variable('weights', self._target.ndim, util.FLOAT)
            self._weights.__class__ = WeightsVariable

    @property
    def variables(self):
        """Symbolic variables the training data feeds: the target, then the weights."""
        result = [self._target]
        if self._weights is not None:
            result.append(self._weights)
        return result

    def output_names(self):
        """Names of the graph outputs this loss compares with its target."""
        return [self.output_name]

    def share_variables(self, others):
        """Reuse the target and weights variables of earlier losses of the same type."""
        for other in others:
            if other._target.type == self._target.type:
                self._target = other._target
            if self._weights is not None and other._weights is not None:
                self._weights = other._weights

    def _weighted_mean(self, err):
        if self._weights is None:
            return err.mean()
        return (self._weights * err).sum() / self._weights.sum()

    def __call__(self, outputs):
        """Return a scalar expression of this loss given the dict of graph outputs."""
        raise NotImplementedError

    def log(self):
        log.info('using loss: %s * %s (output %s)', self.weight, type(self).__name__,
                 self.output_name)

    def __repr__(self):
        return '{}(weight={}, output_name={!r})'.format(
            type(self).__name__, self.weight, self.output_name)


Loss._registry.add(Loss)


class MeanSquaredError(Loss):
    r"""Mean squared error: :math:`\mathrm{mean}((o - t)^2)`."""

    __extra_registration_keys__ = ['mse']

    def __call__(self, outputs):
        err = outputs[self.output_name] - self._target
        return self._weighted_mean(err * err)


class MeanAbsoluteError(Loss):
    r"""Mean absolute error: :math:`\mathrm{mean}(|o - t|)`."""

    __extra_registration_keys__ = ['mae']

    def __call__(self, outputs):
        return self._weighted_mean(abs(outputs[self.output_name] - self._target))


class GaussianLogLikelihood(Loss):
    r"""Negative log-likelihood of the target under a diagonal Gaussian.

    The mean and variances come from two graph outputs, ``mean_name`` and
    ``covar_name`` (each (batch, n)); precision is :math:`1 / (|c| + \epsilon)`:

    .. math::
        \frac{1}{2} \mathrm{mean}_{batch} \sum_i \left[
        p_i (t_i - \mu_i)^2 - \log p_i + \log 2\pi \right]

    Weights, when given, weight each element's term.
    """

    __extra_registration_keys__ = ['gll']

    def __init__(self, mean_name='mean', covar_name='covar', covar_eps=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.mean_name = mean_name if ':' in mean_name else mean_name + ':out'
        self.covar_name = covar_name if ':' in covar_name else covar_name + ':out'
        self.covar_eps = covar_eps

    def output_names(self):
        return [self.mean_name, self.covar_name]

    def __call__(self, outputs):
        mean = outputs[self.mean_name]
        prec = 1 / (abs(outputs[self.covar_name]) + self.covar_eps)
        diff = self._target - mean
        nll = 0.5 * (prec * diff * diff - TT.log(prec) + TT.log(2 * 3.141592653589793))
        if self._weights is not None:
            return (self._weights * nll).sum() / self._weights.sum() * nll.shape[-1]
        return nll.sum(axis=-1).mean()


class MaximumMeanDiscrepancy(Loss):
    r"""Maximum mean discrepancy between the output and target distributions.

    :math:`\mathrm{mean}\,k(t,t) - 2\,\mathrm{mean}\,k(t,o) + \mathrm{mean}\,k(o,o)`
    over all pairs in the batch, with the Gaussian kernel
    :math:`k(x, y) = \exp(-\|x - y\|^2 / \mathrm{kernel})` or a callable
    ``kernel(x, y)`` returning a (batch, batch) matrix. Weights are ignored
    (with a warning in the log).
    """

    __extra_registration_keys__ = ['mmd']

    def __init__(self, kernel=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel = kernel
        if self._weights is not None:
            log.warning('MaximumMeanDiscrepancy ignores weights')

    def _k(self, x, y):
        if callable(self.kernel):
            return self.kernel(x, y)
        d = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2 * TT.dot(x, y.T)
        return TT.exp(-d / self.kernel)

    def __call__(self, outputs):
        o = outputs[self.output_name]
        t = self._target
        return self._k(t, t).mean() - 2 * self._k(t, o).mean() + self._k(o, o).mean()


class KullbackLeiblerDivergence(Loss):
    r"""KL divergence of the output from the target distribution.

    :math:`\mathrm{mean} |t \log(t / o)|` with both clipped to [1e-8, 1 - 1e-8].
    """

    __extra_registration_keys__ = ['kl', 'kld']

    def __call__(self, outputs):
        o = TT.clip(outputs[self.output_name], 1e-8, 1 - 1e-8)
        t = TT.clip(self._target, 1e-8, 1 - 1e-8)
        return self._weighted_mean(abs(t * TT.log(t / o)))


class CrossEntropy(Loss):
    r"""Categorical cross-entropy with integer class labels.

    The output holds class probabilities on its last axis (batch, [time,] K);
    the target holds labels (batch, [time]). The loss is the mean of
    :math:`-\log \max(p_{label}, 10^{-8})` over all examples (and time steps).
    """

    __extra_registration_keys__ = ['xe']

    TARGET_DTYPE = 'int32'

    def _flat(self, outputs):
        prob = outputs[self.output_name]
        k = prob.shape[-1]
        return prob.reshape((-1, k)), self._target.flatten()

    def _label_scores(self, outputs):
        """Flat vector of ``prob[..., label]``: each example's score of its target class.

        A gather in modes that run C code. Backends that trace the graph (JAX)
        need ``arange`` bounds that are constants, so there, with the number of
        classes known from the output layer's weights, the score is picked by
        a one-hot mask instead.
        """
        prob, labels = outputs[self.output_name], self._target
        nd = prob.ndim
        classes = prob.type.shape[-1]
        if classes is not None and not backend.runs_custom_ops():
            onehot = TT.eq(TT.shape_padright(labels), np.arange(classes, dtype='int64'))
            return (prob * onehot).sum(axis=-1).flatten()
        index = []
        for axis in range(nd - 1):
            shape = [1] * (nd - 1)
            shape[axis] = -1
            index.append(backend.arange(prob.shape[axis]).reshape(tuple(shape)))
        return prob[tuple(index) + (labels,)].flatten()

    def _flat_weights(self):
        return None if self._weights is None else self._weights.flatten()

    def _mean(self, err):
        w = self._flat_weights()
        return err.mean() if w is None else (w * err).sum() / w.sum()

    def __call__(self, outputs):
        p_true = self._label_scores(outputs)
        return self._mean(-TT.log(TT.clip(p_true, 1e-8, 1)))

    def accuracy(self, outputs):
        """Fraction (in [0, 1], weighted if weights are given) of correct argmax labels."""
        prob, labels = self._flat(outputs)
        return self._mean(TT.eq(prob.argmax(axis=-1), labels))


class Hinge(CrossEntropy):
    r"""Multiclass hinge loss: :math:`\mathrm{mean}\max(0, \max_k (o_k - o_{label}))`."""

    def __call__(self, outputs):
        prob, _ = self._flat(outputs)
        true = self._label_scores(outputs)
        return self._mean(TT.maximum(0, (prob - true[:, None]).max(axis=-1)))
