#!/usr/bin/env python
"""Train a classifier on scikit-learn's bundled 8x8 digits and print held-out accuracy.

    python examples/digits-classifier.py --hidden 100 --algo adam
"""

import time

import click
import numpy as np

import theanets


def load_digits(seed):
    """Return (train, test) lists [x, labels], an 80/20 split of the 1797 digits."""
    from sklearn.datasets import load_digits as sk_digits
    digits = sk_digits()
    x = (digits.data / 16.0).astype('float32')
    y = digits.target.astype('int32')
    order = np.random.RandomState(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return [x[order[:cut]], y[order[:cut]]], [x[order[cut:]], y[order[cut:]]]


@click.command()
@click.option('--hidden', default=100, show_default=True, help='Hidden layer size.')
@click.option('--algo', default='adam', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--batch-size', default=32, show_default=True)
@click.option('--patience', default=5, show_default=True)
@click.option('--max-updates', default=300, show_default=True, help='Maximum epochs.')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(hidden, algo, learning_rate, batch_size, patience, max_updates, seed, progress,
         quick):
    theanets.util.enable_default_logging()
    train, test = load_digits(seed)
    net = theanets.Classifier([64, hidden, 10], rng=seed)
    start = time.time()
    net.train(train, algo=algo, learning_rate=learning_rate, batch_size=batch_size,
              patience=patience, validate_every=2, max_updates=3 if quick else max_updates,
              progress=progress)
    elapsed = time.time() - start
    print('held-out accuracy: {:.4f} ({} test digits, {:.1f} s training)'.format(
        net.score(*test), len(test[0]), elapsed))


if __name__ == '__main__':
    main()
