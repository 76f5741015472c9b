#!/usr/bin/env python
"""Learn the XOR function with a tiny regression network trained by Rprop.

XOR is the classic problem a network without a hidden layer cannot solve.
This one has two inputs, a small hidden layer and one linear output, and
learns to map (0, 0) and (1, 1) to 0, and (0, 1) and (1, 0) to 1.

    python examples/xor-classifier.py
"""

import click
import numpy as np

import theanets


@click.command()
@click.option('--hidden', default=4, show_default=True, help='Hidden units (tanh).')
@click.option('--algo', default='rprop', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=0.01, show_default=True,
              help='Rprop initial step size.')
@click.option('--patience', default=10, show_default=True)
@click.option('--max-updates', default=500, show_default=True, help='Maximum epochs.')
@click.option('--seed', default=13, show_default=True, help='Random seed of the model.')
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(hidden, algo, learning_rate, patience, max_updates, seed, progress, quick):
    theanets.util.enable_default_logging()
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], 'float32')
    y = np.array([[0], [1], [1], [0]], 'float32')

    net = theanets.Regressor([2, (hidden, 'tanh'), 1], rng=seed)
    net.train([x, y], algo=algo, learning_rate=learning_rate, batch_size=4,
              patience=patience, validate_every=10, max_updates=5 if quick else max_updates,
              progress=progress)

    predictions = net.predict(x)[:, 0]
    for inputs, output in zip(x.astype(int).tolist(), predictions):
        print('{} -> {:.3f}'.format(inputs, output))
    rounded = [int(round(float(p))) for p in predictions]
    print('rounded predictions: {} (want [0, 1, 1, 0]); mean squared error {:.4f}'.format(
        rounded, float(np.mean((predictions - y[:, 0]) ** 2))))


if __name__ == '__main__':
    main()
