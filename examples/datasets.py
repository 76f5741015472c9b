"""Data sets shared by the example scripts, plus PCA whitening and figure helpers.

By default every example runs offline:

- ``digits()`` is scikit-learn's bundled 8x8 handwritten digits (1797 images);
- ``generated_images()`` draws small colour images of gratings and blobs.

The original data sets are still available for full-size runs, with
``--dataset mnist`` or ``--dataset cifar``: ``mnist()`` and ``cifar()``
download them once into ``$THEANETS_DATA`` (default ``~/.cache/theanets``) and
fail with a clear message when the download is impossible.
"""

import os
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np

MNIST_URL = 'https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz'
CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'


class DataUnavailable(RuntimeError):
    """A data set could not be downloaded or read."""


def cache_dir():
    """Return the directory where downloaded data sets are kept (created if needed)."""
    path = os.environ.get('THEANETS_DATA') or os.path.join(
        os.path.expanduser('~'), '.cache', 'theanets')
    os.makedirs(path, exist_ok=True)
    return path


def _download(url, filename, what):
    """Return the local path of ``filename``, downloading it from ``url`` if missing."""
    path = os.path.join(cache_dir(), filename)
    if os.path.exists(path):
        return path
    print('downloading {} from {} ...'.format(what, url))
    partial = path + '.part'
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, 'wb') as out:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        if os.path.exists(partial):
            os.unlink(partial)
        raise DataUnavailable(
            'could not download {} from {} ({}). If this machine is offline, fetch the '
            'file elsewhere and save it as {}, or run the example without --dataset to '
            'use the data bundled with scikit-learn.'.format(what, url, err, path)) from err
    os.replace(partial, path)
    return path


def _split(x, y, sizes, seed):
    """Shuffle (x, y) with ``seed`` and cut it into consecutive parts of the given sizes."""
    order = np.random.RandomState(seed).permutation(len(x))
    parts, start = [], 0
    for size in sizes:
        index = order[start:start + size]
        parts.append((x[index], y[index]))
        start += size
    return parts


class ImageData(object):
    """Images of one data set, flattened to rows of floats in [0, 1].

    Attributes
    ----------
    train, valid, test : tuple (x float32 (n, pixels), labels int32 (n,))
    shape : tuple of int
        Shape of one image: (height, width) or (height, width, channels).
    name : str
    """

    def __init__(self, name, shape, train, valid, test):
        self.name = name
        self.shape = tuple(shape)
        self.train, self.valid, self.test = train, valid, test

    @property
    def size(self):
        """Number of values in one image."""
        return int(np.prod(self.shape))

    def subset(self, n):
        """Return a copy keeping at most ``n`` training and ``n // 4`` other images."""
        def cut(part, k):
            return part[0][:k], part[1][:k]
        return ImageData(self.name, self.shape, cut(self.train, n), cut(self.valid, n // 4),
                         cut(self.test, n // 4))


def digits(seed=13):
    """Scikit-learn's 8x8 digits, split 1197 / 300 / 300 into train, valid and test."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.data / 16.0).astype('float32')
    y = data.target.astype('int32')
    train, valid, test = _split(x, y, (1197, 300, 300), seed)
    return ImageData('digits', (8, 8), train, valid, test)


def mnist(seed=13):
    """MNIST 28x28 digits, split 50000 / 10000 / 10000 (downloads 11 MB once)."""
    path = _download(MNIST_URL, 'mnist.npz', 'MNIST')
    with np.load(path) as data:
        x = np.concatenate([data['x_train'], data['x_test']]).reshape(-1, 784)
        y = np.concatenate([data['y_train'], data['y_test']]).astype('int32')
    x = (x / 255.0).astype('float32')
    order = np.random.RandomState(seed).permutation(60000)
    train = x[order[:50000]], y[order[:50000]]
    valid = x[order[50000:]], y[order[50000:]]
    return ImageData('mnist', (28, 28), train, valid, (x[60000:], y[60000:]))


def load(name, seed=13):
    """Return the data set ``name``: 'digits', 'mnist', 'generated' or 'cifar'.

    A download that fails ends the example with a message (click's usage error).
    """
    import click
    loaders = dict(digits=digits, mnist=mnist, generated=generated_images, cifar=cifar)
    try:
        return loaders[name](seed=seed)
    except DataUnavailable as err:
        raise click.ClickException(str(err))


def cifar(seed=13):
    """CIFAR-10 32x32 colour images, split 45000 / 5000 / 10000 (downloads 170 MB once)."""
    path = _download(CIFAR_URL, 'cifar-10-python.tar.gz', 'CIFAR-10')
    xs, ys = [], []
    try:
        with tarfile.open(path, 'r:gz') as archive:
            names = ['cifar-10-batches-py/data_batch_{}'.format(i) for i in range(1, 6)]
            for name in names + ['cifar-10-batches-py/test_batch']:
                batch = pickle.load(archive.extractfile(name), encoding='latin1')
                xs.append(batch['data'])
                ys.append(np.asarray(batch['labels'], 'int32'))
    except (tarfile.TarError, KeyError, EOFError, OSError) as err:
        raise DataUnavailable('{} is not a readable CIFAR-10 archive ({}); delete it and '
                              'try again'.format(path, err)) from err
    # rows are channel-major (3, 32, 32); store images as (32, 32, 3).
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, 3072)
    x = (x / 255.0).astype('float32')
    y = np.concatenate(ys)
    train, valid = _split(x[:50000], y[:50000], (45000, 5000), seed)
    return ImageData('cifar', (32, 32, 3), train, valid, (x[50000:], y[50000:]))


def generated_images(count=3000, side=12, seed=13):
    """Colour images of random gratings and blobs, shape (side, side, 3), in [0, 1].

    Each image is a background colour plus one oriented sinusoidal grating
    and one Gaussian blob, each with its own random colour, and a little
    pixel noise. The label is 0 for an image whose grating is closer to
    horizontal than to vertical, else 1.
    """
    rng = np.random.RandomState(seed)
    ys, xs = np.mgrid[0:side, 0:side] / float(side)
    images = np.empty((count, side, side, 3), 'float32')
    labels = np.empty(count, 'int32')
    for i in range(count):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(1.5, 4)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xs + np.sin(angle) * ys) + phase)
        cx, cy, width = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * width ** 2))
        image = (rng.uniform(0.2, 0.8, 3)
                 + 0.25 * wave[..., None] * rng.uniform(-1, 1, 3)
                 + 0.5 * blob[..., None] * rng.uniform(-1, 1, 3)
                 + 0.02 * rng.randn(side, side, 3))
        images[i] = np.clip(image, 0, 1)
        labels[i] = int(abs(np.cos(angle)) < abs(np.sin(angle)))
    x = images.reshape(count, -1)
    n_valid = n_test = count // 6
    train, valid, test = _split(x, labels, (count - n_valid - n_test, n_valid, n_test), seed)
    return ImageData('generated', (side, side, 3), train, valid, test)


def variance_explained(x, reconstruction):
    """Return 1 - (total squared error) / (total variance of ``x`` around its column means)."""
    x = np.asarray(x, 'float64')
    err = ((x - reconstruction) ** 2).sum()
    return float(1 - err / ((x - x.mean(axis=0)) ** 2).sum())


class Whitener(object):
    """PCA whitening: project centred data on the leading principal components.

    Parameters
    ----------
    x : ndarray (n, d)
        Data used to estimate the mean and the principal components.
    retain : float, optional
        Keep the smallest number of components that explains this fraction
        of the variance (default 0.99).
    eps : float, optional
        Added to each variance before dividing by its square root.

    Attributes
    ----------
    k : int
        Number of components kept.
    """

    def __init__(self, x, retain=0.99, eps=1e-4):
        x = np.asarray(x, 'float64')
        self.mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        var = s ** 2 / (len(x) - 1)
        self.k = int(np.searchsorted(np.cumsum(var) / var.sum(), retain) + 1)
        self.k = min(self.k, len(var))
        scale = np.sqrt(var[:self.k] + eps)
        self.components = vt[:self.k]
        self.scale = scale

    def encode(self, x):
        """Return whitened data (n, k) as float32."""
        z = np.dot(np.asarray(x, 'float64') - self.mean, self.components.T) / self.scale
        return z.astype('float32')

    def decode(self, z):
        """Map whitened data (n, k) back to the original space (n, d)."""
        return (np.dot(np.asarray(z, 'float64') * self.scale, self.components)
                + self.mean).astype('float32')

    def colour(self, w):
        """Map whitened-space directions (k, m) to data-space directions (m, d)."""
        return np.dot((np.asarray(w, 'float64') * self.scale[:, None]).T, self.components)


def pyplot():
    """Return matplotlib.pyplot (non-interactive backend), or None with a message."""
    try:
        import matplotlib
    except ImportError:
        print('matplotlib is not installed; skipping figures (pip install matplotlib)')
        return None
    matplotlib.use('Agg')
    matplotlib.rcParams['axes.unicode_minus'] = False
    import matplotlib.pyplot as plt
    return plt


def save_image_grid(images, shape, path, title=None, columns=None):
    """Save images (n, pixels) as a grid of tiles in a PNG file; return the path or None.

    Each image is rescaled to [0, 1] on its own before drawing.
    """
    plt = pyplot()
    if plt is None or not path:
        return None
    images = np.asarray(images, 'float64')
    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / float(columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image in zip(axes.ravel(), images):
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo) if hi > lo else image * 0
        image = image.reshape(shape)
        ax.imshow(image, cmap='gray' if image.ndim == 2 else None, interpolation='nearest')
    if title:
        fig.suptitle(title)
    fig.savefig(path)
    plt.close(fig)
    print('saved figure', path)
    return path


def figure_path(directory, name):
    """Return ``directory/name``, or None when figures are turned off (``directory`` empty)."""
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, name)
