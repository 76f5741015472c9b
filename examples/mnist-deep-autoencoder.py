#!/usr/bin/env python
"""Train a deep autoencoder with tied weights, one layer pair at a time, then fine-tune.

The autoencoder mirrors its encoder: with hidden sizes (48, 32, 16) on 8x8
digits the layers are ``64 -> 48 -> 32 -> 16 -> 32 -> 48 -> 64``, and each
decoding layer is ``'tied'``: it reuses the transposed weights of its
partner in the encoder. Deep autoencoders are hard to train from random
weights, so training first runs ``algo='layerwise'``: it trains
``64 -> 48 -> 64``, then ``64 -> 48 -> 32 -> 48 -> 64``, and so on, and
finally the whole network is fine-tuned.

The script prints the reconstruction quality of held-out images after the
layerwise stage and after fine-tuning, and saves test images above their
reconstructions.

    python examples/mnist-deep-autoencoder.py
    python examples/mnist-deep-autoencoder.py --dataset mnist --hidden 256,100,64
"""

import click
import numpy as np

import datasets
import theanets


def build(size, hidden, seed):
    """Return a tied autoencoder [size, h1, ..., hk, tied hk-1, ..., tied size]."""
    layers = [size] + [(h, 'tanh') for h in hidden]
    for h in reversed(hidden[:-1]):
        layers.append((h, 'tied', 'tanh'))
    layers.append((size, 'tied', 'linear'))
    return theanets.Autoencoder(layers, rng=seed)


def report(stage, net, test):
    print('{}: R^2 {:.4f}, variance explained {:.4f}'.format(
        stage, net.score(test), datasets.variance_explained(test, net.predict(test))))


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--hidden', default='48,32,16', show_default=True,
              help='Comma-separated encoder layer sizes.')
@click.option('--algo', default='adam', show_default=True,
              help='Optimizer for each layerwise stage and for fine-tuning.')
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=100, show_default=True,
              help='Maximum epochs of each stage.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, hidden, algo, learning_rate, max_updates, figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    hidden = [int(h) for h in hidden.split(',')]
    if quick:
        data, hidden, max_updates = data.subset(400), [12, 8], 2
    train, valid, test = data.train[0], data.valid[0], data.test[0]

    net = build(data.size, hidden, seed)
    settings = dict(learning_rate=learning_rate, patience=5, validate_every=2,
                    max_updates=max_updates, batch_size=32, progress=progress)
    net.train([train], [valid], algo='layerwise', subalgo=algo, **settings)
    report('after layerwise training', net, test)
    net.train([train], [valid], algo=algo, **settings)
    report('after fine-tuning', net, test)

    sample = test[:10]
    datasets.save_image_grid(
        np.concatenate([sample, net.predict(sample)]), data.shape,
        datasets.figure_path(figures, 'mnist-deep-autoencoder.png'),
        title='test images (top) and reconstructions (bottom)', columns=10)
    print('reconstruction of {} test images: R^2 {:.4f}, variance explained {:.4f}'.format(
        len(test), net.score(test), datasets.variance_explained(test, net.predict(test))))


if __name__ == '__main__':
    main()
