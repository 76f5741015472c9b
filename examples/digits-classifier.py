#!/usr/bin/env python
"""Train a classifier on scikit-learn's bundled 8x8 digits and print held-out accuracy.

The 1797 digits are split into training (60%), validation (20%) and test
(20%) sets. Training stops when the accuracy on the validation set stops
improving (early stopping); the test set is used only once, at the end.
This script is explained step by step in the documentation
(docs/examples/digits-classifier.rst).

    python examples/digits-classifier.py --hidden 100 --algo adam
"""

import time

import click
import numpy as np

import theanets


def load_digits(seed):
    """Return (train, valid, test) lists [x, labels]: a 60/20/20 split of the digits."""
    from sklearn.datasets import load_digits as sk_digits
    digits = sk_digits()
    x = (digits.data / 16.0).astype('float32')
    y = digits.target.astype('int32')
    order = np.random.RandomState(seed).permutation(len(x))
    cuts = [int(0.6 * len(x)), int(0.8 * len(x))]
    parts = np.split(order, cuts)
    return [[x[p], y[p]] for p in parts]


@click.command()
@click.option('--hidden', default=100, show_default=True, help='Hidden layer size.')
@click.option('--activation', default='relu', show_default=True,
              help='Hidden layer activation.')
@click.option('--algo', default='adam', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--batch-size', default=32, show_default=True)
@click.option('--patience', default=5, show_default=True)
@click.option('--validate-every', default=2, show_default=True)
@click.option('--max-updates', default=300, show_default=True, help='Maximum epochs.')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(hidden, activation, algo, learning_rate, batch_size, patience, validate_every,
         max_updates, seed, progress, quick):
    theanets.util.enable_default_logging()
    train, valid, test = load_digits(seed)
    net = theanets.Classifier([64, (hidden, activation), 10], rng=seed)
    start = time.time()
    net.train(train, valid, algo=algo, learning_rate=learning_rate, batch_size=batch_size,
              patience=patience, validate_every=validate_every,
              max_updates=3 if quick else max_updates, progress=progress)
    elapsed = time.time() - start
    print('{} epochs; validation accuracy: {:.4f}'.format(
        len(net.history), net.score(*valid)))
    print('held-out accuracy: {:.4f} ({} test digits, {:.1f} s training)'.format(
        net.score(*test), len(test[0]), elapsed))


if __name__ == '__main__':
    main()
