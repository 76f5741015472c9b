#!/usr/bin/env python
"""A recurrent autoencoder of noisy multichannel signals, through ``theanets.Experiment``.

Each sequence has ``--channels`` channels that are different mixtures of
the same two hidden oscillations, plus independent noise. A recurrent
autoencoder ``[channels, (hidden, 'gru'), channels]`` with a small hidden
layer has to find the shared oscillations to reconstruct all the channels,
and, since the noise is independent, its reconstruction is also a cleaner
version of the input.

The script prints the reconstruction R^2 against the noisy input and against
the clean signal, and saves a figure of one channel.

    python examples/recurrent-autoencoder.py --hidden 4 --noise 0.3
"""

import click
import numpy as np

import datasets
import theanets


class Signals(object):
    """Random sequences of mixed oscillations: ``batch()`` -> (clean, noisy), each (B, T, C)."""

    def __init__(self, channels, steps, noise, seed):
        self.rng = np.random.RandomState(seed)
        self.mixing = np.random.RandomState(0).randn(2, channels)
        self.steps = steps
        self.noise = noise

    def batch(self, size):
        t = np.arange(self.steps)[None, :]
        freq = self.rng.uniform(0.05, 0.2, size=(size, 2))
        phase = self.rng.uniform(0, 2 * np.pi, size=(size, 2))
        sources = np.stack([np.sin(2 * np.pi * freq[:, i, None] * t + phase[:, i, None])
                            for i in range(2)], axis=-1)          # (B, T, 2)
        clean = np.dot(sources, self.mixing) / 2
        noisy = clean + self.noise * self.rng.randn(*clean.shape)
        return clean.astype('float32'), noisy.astype('float32')

    def callable(self, size):
        return lambda: [self.batch(size)[1]]


def plot(noisy, clean, rebuilt, path):
    plt = datasets.pyplot()
    if plt is None or not path:
        return
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(noisy, '.', color='#999999', label='noisy input')
    ax.plot(clean, color='#3333cc', lw=2, label='clean signal')
    ax.plot(rebuilt, color='#cc3333', lw=1, label='reconstruction')
    ax.set_xlabel('time step')
    ax.legend(loc='upper right', fontsize='small')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print('saved figure', path)


@click.command()
@click.option('--channels', default=8, show_default=True, help='Signal channels.')
@click.option('--steps', default=50, show_default=True, help='Length of each sequence.')
@click.option('--noise', default=0.3, show_default=True, help='Std of the added noise.')
@click.option('--hidden', default=4, show_default=True, help='Recurrent units.')
@click.option('--layer', default='gru', show_default=True, help='Recurrent layer form.')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=1e-2, show_default=True)
@click.option('--max-updates', default=60, show_default=True,
              help='Maximum epochs of 20 batches.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(channels, steps, noise, hidden, layer, algo, learning_rate, max_updates, figures,
         seed, progress, quick):
    theanets.util.enable_default_logging()
    if quick:
        steps, max_updates = 10, 2
    signals = Signals(channels, steps, noise, seed)

    exp = theanets.Experiment(theanets.recurrent.Autoencoder,
                              [channels, (hidden, layer), channels], rng=seed)
    exp.train(signals.callable(32), signals.callable(32), algo=algo,
              learning_rate=learning_rate, train_batches=20, valid_batches=5, patience=5,
              validate_every=2, max_updates=max_updates, progress=progress)

    net = exp.network
    clean, noisy = signals.batch(200)
    rebuilt = net.predict(noisy)
    plot(noisy[0, :, 0], clean[0, :, 0], rebuilt[0, :, 0],
         datasets.figure_path(figures, 'recurrent-autoencoder.png'))
    print('parameters: {}; hidden code of the first sequence has shape {}'.format(
        net.num_params, net.encode(noisy[:1]).shape))
    print('mean squared difference from the clean signal: input {:.4f}, reconstruction {:.4f}'
          .format(float(((noisy - clean) ** 2).mean()), float(((rebuilt - clean) ** 2).mean())))
    print('reconstruction R^2 of 200 test sequences: {:.4f}'.format(net.score(noisy)))


if __name__ == '__main__':
    main()
