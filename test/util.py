"""Tiny shared sizes, data makers and NumPy reference formulas for the core tests."""

import numpy as np

NUM_EXAMPLES = 8
NUM_INPUTS = 4
NUM_HID1 = 3
NUM_HID2 = 5
NUM_OUTPUTS = 2
NUM_CLASSES = 3


def rng(seed=0):
    return np.random.RandomState(seed)


def inputs(n=NUM_EXAMPLES, m=NUM_INPUTS, seed=0):
    """Float32 input data (n, m)."""
    return rng(seed).randn(n, m).astype('f')


def targets(n=NUM_EXAMPLES, m=NUM_OUTPUTS, seed=1):
    """Float32 regression targets (n, m)."""
    return rng(seed).randn(n, m).astype('f')


def labels(n=NUM_EXAMPLES, k=NUM_CLASSES, seed=2):
    """Int32 class labels (n,) covering every class."""
    return (np.arange(n) % k)[rng(seed).permutation(n)].astype('i')


def weights(shape, seed=3, zeros=1):
    """Positive float32 weights of ``shape`` whose first ``zeros`` entries are 0."""
    w = rng(seed).uniform(0.5, 2, size=shape).astype('f')
    w.reshape(-1)[:zeros] = 0
    return w


def value(net, layer, param):
    """The current value of a network parameter as a float64 array."""
    return net.find(layer, param).get_value().astype('float64')


# ----- NumPy references -----------------------------------------------------------------

def relu(z):
    return np.maximum(0, z)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def dense(x, w, b):
    """x . w + b in float64."""
    return np.asarray(x, 'float64').dot(w) + b


def r2(y, yhat, w=None):
    """Per-column R^2 averaged over columns, with optional element weights."""
    y = np.asarray(y, 'float64')
    w = np.ones_like(y) if w is None else np.asarray(w, 'float64')
    mean = (w * y).sum(axis=0) / w.sum(axis=0)
    num = (w * (y - yhat) ** 2).sum(axis=0)
    den = (w * (y - mean) ** 2).sum(axis=0)
    return float(np.mean(1 - num / den))


def check_grad(fun, points, seed=0):
    """``pytensor.gradient.verify_grad`` in the library's compile mode (C, not Numba)."""
    from pytensor.gradient import verify_grad
    from theanets import backend
    verify_grad(fun, points, rng=np.random.RandomState(seed), mode=backend.get_mode())
