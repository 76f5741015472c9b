#!/usr/bin/env python
"""Compare recurrent layer types at generating a sum of sine waves.

The network receives no information at all (its input is a constant 0) and
must produce, step by step, a fixed waveform: the sum of a few sine waves of
different periods. The task measures how well a layer's own dynamics can
keep time. It follows the experiment of the Clockwork RNN paper (Koutnik et
al., 2014), where the clockwork layer, whose modules tick at different
rates, does best.

For each layer form the script trains ``recurrent.Regressor([1, (hidden,
form), 1])`` on the same waveform, prints its number of parameters and its
final mean squared error, and saves a figure of every model's output.

    python examples/recurrent-sinusoid.py --forms rnn,lstm,clockwork
"""

import click
import numpy as np

import datasets
import theanets

PERIODS = (5, 11, 23, 47)


def waveform(steps):
    """Return the target (steps,): a sum of sines with periods PERIODS, scaled to [-1, 1]."""
    t = np.arange(steps)
    wave = sum(np.sin(2 * np.pi * t / p + p) for p in PERIODS)
    return (wave / abs(wave).max()).astype('float32')


def layer_spec(form, hidden):
    spec = dict(form=form, size=hidden, activation='tanh')
    if form == 'clockwork':
        spec['periods'] = (1, 2, 4, 8, 16, 32, 64, 128)[:max(1, min(8, hidden // 4))]
        spec['size'] -= hidden % len(spec['periods'])
    return spec


def plot(target, outputs, path):
    plt = datasets.pyplot()
    if plt is None or not path:
        return
    fig, axes = plt.subplots(len(outputs), 1, figsize=(8, 1.5 * len(outputs)),
                             sharex=True, squeeze=False)
    for ax, (form, output) in zip(axes[:, 0], sorted(outputs.items())):
        ax.plot(target, color='#999999', lw=3, label='target')
        ax.plot(output, color='#cc3333', lw=1, label=form)
        ax.legend(loc='upper right', fontsize='small')
    axes[-1, 0].set_xlabel('time step')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print('saved figure', path)


@click.command()
@click.option('--forms', default='rnn,rrnn,scrn,gru,lstm,clockwork', show_default=True,
              help='Comma-separated recurrent layer forms to compare.')
@click.option('--hidden', default=32, show_default=True, help='Units in each model.')
@click.option('--steps', default=100, show_default=True, help='Length of the waveform.')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=1e-2, show_default=True)
@click.option('--max-updates', default=300, show_default=True,
              help='Maximum epochs of each model (one batch each).')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(forms, hidden, steps, algo, learning_rate, max_updates, figures, seed, progress,
         quick):
    theanets.util.enable_default_logging()
    forms = [f.strip() for f in forms.split(',') if f.strip()]
    if quick:
        forms, hidden, steps, max_updates = forms[:2], 8, 20, 2
    target = waveform(steps)
    # batch of 2 identical sequences: zero inputs, the waveform as target.
    x = np.zeros((2, steps, 1), 'float32')
    y = np.tile(target[None, :, None], (2, 1, 1))

    outputs, results = {}, []
    for form in forms:
        net = theanets.recurrent.Regressor([1, layer_spec(form, hidden), 1], rng=seed)
        net.train([x, y], algo=algo, learning_rate=learning_rate, max_gradient_norm=10,
                  batch_size=2, patience=10, validate_every=5, max_updates=max_updates,
                  progress=progress)
        outputs[form] = net.predict(x)[0, :, 0]
        mse = float(((outputs[form] - target) ** 2).mean())
        results.append((mse, form, net.num_params))

    plot(target, outputs, datasets.figure_path(figures, 'recurrent-sinusoid.png'))
    for mse, form, count in sorted(results):
        print('{:>10s}: {:6d} parameters, mean squared error {:.5f}'.format(form, count, mse))
    print('best layer: {} (mean squared error {:.5f}; the target has variance {:.5f})'.format(
        min(results)[1], min(results)[0], float(target.var())))


if __name__ == '__main__':
    main()
