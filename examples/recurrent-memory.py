#!/usr/bin/env python
"""A recurrent network that remembers the start of a sequence until its end.

Each example is a sequence of ``--steps`` random numbers. At the last
``--remember`` time steps the network must output the first ``--remember``
inputs, in order. Only those final outputs matter, so the model is a
``weighted=True`` recurrent regressor: the weights are 1 at the last steps
and 0 everywhere else, which removes the other steps from the loss.

The hidden layer is a relu RNN. ``--diagonal 1`` starts its recurrent matrix
as the identity (``diagonal_hh=1``), the initialization of Le, Jaitly and
Hinton (2015) for long dependencies; on this short task the default random
initialization does better. Gradients are clipped to a norm of 1 and their
sizes are logged (``monitor_gradients=True``).

The script prints the mean absolute error and the R^2 of the remembered
values on fresh sequences (a model that always answers 0 has R^2 0), and
saves a figure of a few test sequences with the network's outputs.

    python examples/recurrent-memory.py --steps 10 --remember 3
"""

import click
import numpy as np

import datasets
import theanets


def make_batches(steps, remember, batch_size, seed):
    """Return a callable producing [inputs, targets, weights], each (batch, steps, 1)."""
    rng = np.random.RandomState(seed)

    def batch():
        x = rng.uniform(-1, 1, size=(batch_size, steps, 1)).astype('f')
        y = np.zeros_like(x)
        y[:, -remember:] = x[:, :remember]
        w = np.zeros_like(x)
        w[:, -remember:] = 1
        return [x, y, w]

    return batch


def plot(x, y, path):
    plt = datasets.pyplot()
    if plt is None or not path:
        return
    fig, axes = plt.subplots(len(x), 1, figsize=(6, 1.6 * len(x)), sharex=True, squeeze=False)
    for ax, xs, ys in zip(axes[:, 0], x, y):
        ax.plot(xs[:, 0], 'o-', color='#999999', label='input')
        ax.plot(ys[:, 0], 's-', color='#cc3333', label='output')
        ax.axhline(0, color='#dddddd', lw=0.5)
    axes[0, 0].legend(loc='upper left', fontsize='small')
    axes[-1, 0].set_xlabel('time step')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print('saved figure', path)


@click.command()
@click.option('--steps', default=10, show_default=True, help='Length of each sequence.')
@click.option('--remember', default=3, show_default=True,
              help='Number of leading values to reproduce at the end.')
@click.option('--hidden', default=32, show_default=True, help='Recurrent units.')
@click.option('--layer', default='rnn', show_default=True,
              help='Recurrent layer form: rnn, gru, lstm, ...')
@click.option('--diagonal', default=0.0, show_default=True,
              help='If nonzero, start the RNN recurrent weights as this times the identity.')
@click.option('--algo', default='rmsprop', show_default=True)
@click.option('--learning-rate', default=1e-3, show_default=True)
@click.option('--batch-size', default=32, show_default=True)
@click.option('--max-updates', default=300, show_default=True,
              help='Maximum epochs of 50 batches.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(steps, remember, hidden, layer, diagonal, algo, learning_rate, batch_size, max_updates,
         figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    if quick:
        hidden, max_updates = 8, 2
    spec = dict(form=layer, size=hidden, activation='relu')
    if diagonal:
        spec['diagonal_hh'] = diagonal
    net = theanets.recurrent.Regressor([1, spec, 1], weighted=True, rng=seed)
    net.train(make_batches(steps, remember, batch_size, seed),
              make_batches(steps, remember, batch_size, seed + 1),
              algo=algo, learning_rate=learning_rate, max_gradient_norm=1,
              monitor_gradients=True, train_batches=50, valid_batches=10, patience=5,
              validate_every=2, max_updates=max_updates, progress=progress)

    x, y, w = make_batches(steps, remember, 500, seed + 2)()
    out = net.predict(x)
    plot(x[:4], out[:4], datasets.figure_path(figures, 'recurrent-memory.png'))
    target, guess = y[:, -remember:, 0], out[:, -remember:, 0]
    print('first test sequence:', np.round(x[0, :, 0], 2))
    print('network output:     ', np.round(out[0, :, 0], 2))
    print('last {} outputs should be {}, are {}'.format(
        remember, np.round(target[0], 2), np.round(guess[0], 2)))
    print('remembered values of 500 test sequences: mean absolute error {:.4f}, R^2 {:.4f}'
          .format(float(abs(target - guess).mean()), net.score(x, y, w)))


if __name__ == '__main__':
    main()
