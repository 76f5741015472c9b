r"""Gradient-descent algorithms with downhill's names and defaults.

Each class computes, for a parameter :math:`p` with gradient :math:`g` (after
any clipping), the step :math:`\Delta` such that :math:`p \leftarrow p - \Delta`.
Momentum, when ``momentum > 0``, is applied on top by the base class:
:math:`v \leftarrow \mu v - \Delta` (or :math:`\mu^2 v - (1+\mu)\Delta` with
``nesterov=True``), then :math:`p \leftarrow p + v`.

Decay rates are given as half-lives in steps: an exponentially weighted moving
average with half-life :math:`h` uses :math:`\gamma = e^{-\ln 2 / h}`.
All arrays below have the shape of the parameter they belong to.
"""

import numpy as np
import pytensor.gradient
import pytensor.tensor as pt

from .base import Hyperparameter as H
from .base import Optimizer, one_of, positive, nonnegative

__all__ = ['SGD', 'NAG', 'RProp', 'ADAGRAD', 'RMSProp', 'ADADELTA', 'ESGD', 'Adam']

RMS = (
    H('rms_halflife', 14.0, positive, True),
    H('rms_regularizer', 1e-8, nonnegative, True),
)


def _decay(halflife):
    """Return the EWMA weight of the old value for a half-life (a shared scalar)."""
    return pt.exp(-np.log(2.0).astype('float32') / halflife)


def _ewma(gamma, old, new):
    return gamma * old + (1 - gamma) * new


class SGD(Optimizer):
    r"""Stochastic gradient descent: :math:`\Delta = \alpha g`.

    :math:`\alpha` is ``learning_rate``.
    """

    def _updates_for(self, param, grad):
        yield param, self._hp('learning_rate') * grad


class NAG(SGD):
    r"""SGD with Nesterov's accelerated gradient; forces ``nesterov=True``.

    It differs from :class:`SGD` only when ``momentum > 0``.
    """

    def _adjust(self, config):
        config['nesterov'] = True
        return config


class RProp(Optimizer):
    r"""Resilient backpropagation (iRprop-).

    Each element has its own step size, starting at ``learning_rate``. When the
    gradient keeps its sign the step is multiplied by ``rprop_increase``, when
    it flips by ``rprop_decrease`` (and that gradient element is then treated
    as zero), always kept within ``[rprop_min_step, rprop_max_step]``;
    :math:`\Delta = \mathrm{sign}(g) \cdot \mathrm{step}`.
    """

    HYPERPARAMETERS = (
        H('rprop_increase', 1.01, positive, True),
        H('rprop_decrease', 0.99, positive, True),
        H('rprop_min_step', 0.0, nonnegative, True),
        H('rprop_max_step', 100.0, nonnegative, True),
    )

    def _updates_for(self, param, grad):
        lr = self._hp('learning_rate')

        def initial_step():
            value = lr.get_value()
            return np.full_like(param.get_value(borrow=True), value)

        grad_tm1 = self._shared_like(param, 'grad')
        step_tm1 = self._shared_like(param, 'step', initial_step)
        agreement = grad * grad_tm1
        flipped = pt.lt(agreement, 0)
        factor = (pt.eq(agreement, 0) + pt.gt(agreement, 0) * self._hp('rprop_increase')
                  + flipped * self._hp('rprop_decrease'))
        step = pt.clip(step_tm1 * factor, self._hp('rprop_min_step'),
                       self._hp('rprop_max_step'))
        grad = pt.switch(flipped, 0, grad)
        yield param, pt.sign(grad) * step
        yield grad_tm1, grad
        yield step_tm1, step


class ADAGRAD(Optimizer):
    r"""Adaptive gradient: :math:`\Delta = \alpha g / \sqrt{G + \epsilon}`.

    :math:`G` is the running sum of :math:`g^2` and :math:`\epsilon` is
    ``rms_regularizer``.
    """

    HYPERPARAMETERS = (H('rms_regularizer', 1e-8, nonnegative, True), )

    def _updates_for(self, param, grad):
        g2_tm1 = self._shared_like(param, 'g2_sum')
        g2_t = g2_tm1 + pt.sqr(grad)
        yield g2_tm1, g2_t
        yield param, (self._hp('learning_rate') * grad
                      / pt.sqrt(g2_t + self._hp('rms_regularizer')))


class RMSProp(Optimizer):
    r"""RMSProp in Graves' form: :math:`\Delta = \alpha g / \sqrt{G - F^2 + \epsilon}`.

    :math:`F` and :math:`G` are moving averages of :math:`g` and :math:`g^2`
    with half-life ``rms_halflife``.
    """

    HYPERPARAMETERS = RMS

    def _updates_for(self, param, grad):
        gamma = _decay(self._hp('rms_halflife'))
        g1_tm1 = self._shared_like(param, 'g1_ewma')
        g2_tm1 = self._shared_like(param, 'g2_ewma')
        g1_t = _ewma(gamma, g1_tm1, grad)
        g2_t = _ewma(gamma, g2_tm1, pt.sqr(grad))
        rms = pt.sqrt(g2_t - pt.sqr(g1_t) + self._hp('rms_regularizer'))
        yield g1_tm1, g1_t
        yield g2_tm1, g2_t
        yield param, self._hp('learning_rate') * grad / rms


class ADADELTA(Optimizer):
    r"""ADADELTA: :math:`\Delta = g \sqrt{X + \epsilon} / \sqrt{G + \epsilon}`.

    :math:`G` and :math:`X` are moving averages (half-life ``rms_halflife``) of
    :math:`g^2` and of :math:`\Delta^2`; ``learning_rate`` is not used.
    """

    HYPERPARAMETERS = RMS

    def _updates_for(self, param, grad):
        gamma = _decay(self._hp('rms_halflife'))
        eps = self._hp('rms_regularizer')
        x2_tm1 = self._shared_like(param, 'x2_ewma')
        g2_tm1 = self._shared_like(param, 'g2_ewma')
        g2_t = _ewma(gamma, g2_tm1, pt.sqr(grad))
        delta = grad * pt.sqrt(x2_tm1 + eps) / pt.sqrt(g2_t + eps)
        yield g2_tm1, g2_t
        yield x2_tm1, _ewma(gamma, x2_tm1, pt.sqr(delta))
        yield param, delta


class ESGD(Optimizer):
    r"""Equilibrated SGD: :math:`\Delta = \alpha g / (\sqrt{D} + \epsilon)`.

    :math:`D` is a moving average (half-life ``rms_halflife``) of
    :math:`(Hv)^2`, where :math:`H` is the Hessian and :math:`v \sim N(0, 1)`
    is drawn afresh at each step. ``hv_method`` chooses how :math:`Hv` is
    computed: ``'rop'`` (R-operator), ``'lop'`` (L-operator) or ``'grad'``
    (gradient of :math:`g \cdot v`). The ``rng`` hyperparameter, when given,
    reseeds the draws of :math:`v`.
    """

    HYPERPARAMETERS = RMS + (H('hv_method', 'rop', one_of('rop', 'lop', 'grad'), False), )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng = pt.random.shared_rng(seed=13, name='esgd_rng')
        self._rng_next = None

    def _structure(self, config):
        return super()._structure(config) + (('hv_method', config['hv_method']), )

    def _apply(self, config, key):
        super()._apply(config, key)
        rng = config['rng']
        if rng is not None:
            seed = rng if isinstance(rng, (int, np.integer)) else rng.randint(2 ** 30)
            self._rng.set_value(seed=int(seed))

    def _hessian_times(self, param, grad, v):
        """Return the Hessian of the loss (w.r.t. ``param``) times ``v``."""
        method = self._building['hv_method']
        if method == 'rop':
            return pytensor.gradient.pushforward(grad, param, v, disconnected_outputs='ignore')
        if method == 'lop':
            return pytensor.gradient.pullback(grad, param, v, disconnected_inputs='ignore')
        return pytensor.grad(pt.sum(grad * v), param, disconnected_inputs='ignore')

    def _build_updates(self, key):
        self._rng_next = self._rng
        return super()._build_updates(key)

    def _step_updates(self):
        return [(self._rng, self._rng_next)]

    def _updates_for(self, param, grad):
        gamma = _decay(self._hp('rms_halflife'))
        self._rng_next, v = self._rng_next.normal(0, 1, size=param.shape)
        hv = self._hessian_times(param, grad, v.astype(param.dtype))
        d_tm1 = self._shared_like(param, 'D_ewma')
        d_t = _ewma(gamma, d_tm1, pt.sqr(hv))
        yield d_tm1, d_t
        yield param, (self._hp('learning_rate') * grad
                      / (pt.sqrt(d_t) + self._hp('rms_regularizer')))


class Adam(Optimizer):
    r"""Adam with bias-corrected moment estimates.

    .. math::
        \Delta = \alpha \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}

    :math:`m` and :math:`v` are moving averages of :math:`g` and :math:`g^2`
    with half-lives ``beta1_halflife`` and ``beta2_halflife``
    (:math:`\beta = e^{-\ln 2 / h}`), :math:`t` counts steps and
    :math:`\epsilon` is ``rms_regularizer``.
    """

    HYPERPARAMETERS = (
        H('beta1_halflife', 7.0, positive, True),
        H('beta2_halflife', 69.0, positive, True),
        H('rms_regularizer', 1e-8, nonnegative, True),
    )

    def _build_updates(self, key):
        self._t_tm1 = self._shared_scalar('adam_t')
        self._t = self._t_tm1 + 1
        return super()._build_updates(key)

    def _step_updates(self):
        return [(self._t_tm1, self._t)]

    def _updates_for(self, param, grad):
        beta1 = _decay(self._hp('beta1_halflife'))
        beta2 = _decay(self._hp('beta2_halflife'))
        m_tm1 = self._shared_like(param, 'mu')
        v_tm1 = self._shared_like(param, 'var')
        m_t = _ewma(beta1, m_tm1, grad)
        v_t = _ewma(beta2, v_tm1, pt.sqr(grad))
        m_hat = m_t / (1 - beta1 ** self._t)
        v_hat = v_t / (1 - beta2 ** self._t)
        yield m_tm1, m_t
        yield v_tm1, v_t
        yield param, (self._hp('learning_rate') * m_hat
                      / (pt.sqrt(v_hat) + self._hp('rms_regularizer')))
