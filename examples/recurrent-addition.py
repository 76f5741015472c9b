#!/usr/bin/env python
"""The adding problem, trained through the ``theanets.Experiment`` wrapper.

Each input sequence has two channels: random numbers in [0, 1], and a marker
that is 1 at exactly two time steps (one in each half of the sequence) and 0
elsewhere. At the last time step the network must output the sum of the two
marked numbers. Only that final output is scored, so the regressor is
weighted: weight 1 at the last step, 0 elsewhere. Always answering 1 (the
mean of the sum) gives a mean squared error of about 0.167; a model that
solved the task would reach 0.

An :class:`theanets.Experiment` creates the model from its class and layer
list, trains it, and saves it; the script then loads the saved model back
and evaluates it on fresh sequences.

    python examples/recurrent-addition.py --steps 20 --layer lstm
"""

import os
import tempfile

import click
import numpy as np

import theanets


def make_batches(steps, batch_size, seed):
    """Return a callable producing [inputs (B, T, 2), targets (B, T, 1), weights (B, T, 1)]."""
    rng = np.random.RandomState(seed)

    def batch():
        x = np.zeros((batch_size, steps, 2), 'float32')
        x[:, :, 0] = rng.uniform(0, 1, size=(batch_size, steps))
        rows = np.arange(batch_size)
        first = rng.randint(steps // 2, size=batch_size)
        second = rng.randint(steps // 2, steps, size=batch_size)
        x[rows, first, 1] = 1
        x[rows, second, 1] = 1
        y = np.zeros((batch_size, steps, 1), 'float32')
        y[:, -1, 0] = x[rows, first, 0] + x[rows, second, 0]
        w = np.zeros_like(y)
        w[:, -1] = 1
        return [x, y, w]

    return batch


@click.command()
@click.option('--steps', default=20, show_default=True, help='Length of each sequence.')
@click.option('--hidden', default=32, show_default=True, help='Recurrent units.')
@click.option('--layer', default='lstm', show_default=True,
              help='Recurrent layer form: lstm, gru, rnn, ...')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=60, show_default=True,
              help='Maximum epochs of 50 batches.')
@click.option('--model', 'path', default=None,
              help='Where to save the trained model (default: a temporary file).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(steps, hidden, layer, algo, learning_rate, max_updates, path, seed, progress, quick):
    theanets.util.enable_default_logging()
    if quick:
        steps, hidden, max_updates = 6, 4, 2

    exp = theanets.Experiment(theanets.recurrent.Regressor,
                              layers=[2, (hidden, layer), (1, 'linear')],
                              weighted=True, rng=seed)
    exp.train(make_batches(steps, 32, seed), make_batches(steps, 32, seed + 1),
              algo=algo, learning_rate=learning_rate, max_gradient_norm=1,
              train_batches=50, valid_batches=10, patience=5, validate_every=2,
              max_updates=max_updates, progress=progress)

    with tempfile.TemporaryDirectory() as tmp:
        path = path or os.path.join(tmp, 'addition.pkl.gz')
        exp.save(path)
        net = theanets.Experiment(path).network

    x, y, w = make_batches(steps, 1000, seed + 2)()
    sums = y[:, -1, 0]
    guess = net.predict(x)[:, -1, 0]
    for i in range(3):
        print('marked numbers sum to {:.3f}; the network says {:.3f}'.format(sums[i], guess[i]))
    print('mean squared error on 1000 test sequences: {:.4f} (always answering 1: {:.4f})'
          .format(float(((guess - sums) ** 2).mean()), float(((1 - sums) ** 2).mean())))


if __name__ == '__main__':
    main()
