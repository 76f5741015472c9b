#!/usr/bin/env python
"""Classify digit images with a convolutional network, and draw its filters.

By default this uses scikit-learn's 8x8 digits, which need no download; add
``--dataset mnist`` for the 28x28 MNIST digits (downloaded once, 11 MB).

The model has the shape of the original example,
``convolution.Classifier([(H, W, 1), conv2 filters, 'flatten', 10])``, with a
max-pooling layer after the convolution. The script prints the held-out
accuracy and saves the learned filters to ``mnist-convolution-filters.png``.

    python examples/mnist-convolution.py
    python examples/mnist-convolution.py --dataset mnist --filters 32 --filter-size 5
"""

import click

import datasets
import theanets


def as_images(part, shape):
    """Reshape flattened rows (n, H*W) to channels-last images (n, H, W, 1)."""
    x, y = part
    return [x.reshape((len(x), ) + tuple(shape[:2]) + (1, )), y]


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--filters', default=16, show_default=True, help='Number of filters.')
@click.option('--filter-size', default=3, show_default=True, help='Filter width and height.')
@click.option('--algo', default='adam', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=30, show_default=True, help='Maximum epochs.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, filters, filter_size, algo, learning_rate, max_updates, figures, seed,
         progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    if quick:
        data, filters, max_updates = data.subset(300), 4, 2
    train, valid, test = (as_images(p, data.shape) for p in (data.train, data.valid, data.test))

    net = theanets.convolution.Classifier([
        tuple(data.shape[:2]) + (1, ),
        dict(form='conv2', size=filters, filter_size=filter_size, border_mode='same'),
        dict(form='pool2', pool_size=2),
        'flatten', 10], rng=seed)
    net.train(train, valid, algo=algo, learning_rate=learning_rate, batch_size=32,
              patience=4, validate_every=1, max_updates=max_updates, progress=progress)

    kernels = net.find('hid1', 'w').get_value()[:, 0]  # (filters, fw, fh)
    datasets.save_image_grid(kernels.reshape(len(kernels), -1), kernels.shape[1:],
                             datasets.figure_path(figures, 'mnist-convolution-filters.png'),
                             title='convolution filters')
    print('test accuracy: {:.4f} ({} test images of {})'.format(
        net.score(*test), len(test[0]), data.name))


if __name__ == '__main__':
    main()
