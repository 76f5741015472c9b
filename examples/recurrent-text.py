#!/usr/bin/env python
"""Character-level language models: predict the next character of a text.

Each model reads a text one character at a time (as a one-hot vector) and
outputs, at every step, a distribution over the next character. The
:class:`theanets.recurrent.Text` helper turns the text into classes and
draws training batches of random windows; after training, the model writes
new text with :meth:`theanets.recurrent.Classifier.predict_sequence`.

By default the text is the short story shipped with theanets
(``theanets/data/lighthouse.txt``); give ``--text FILE`` for your own.
Several recurrent layer forms are compared; the script prints each one's
parameter count, its next-character accuracy on held-out batches and a
sample of generated text, and saves the validation loss curves.

    python examples/recurrent-text.py --forms gru,lstm --hidden 128
"""

import os

import click
import numpy as np

import datasets
import theanets


def bundled_text():
    path = os.path.join(os.path.dirname(theanets.__file__), 'data', 'lighthouse.txt')
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def layer_spec(form, hidden):
    spec = dict(form=form, size=hidden, activation='tanh')
    if form == 'clockwork':
        spec['periods'] = (1, 2, 4, 8)
        spec['size'] -= hidden % 4
    return spec


def plot(curves, path):
    plt = datasets.pyplot()
    if plt is None or not path:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for form, losses in sorted(curves.items()):
        ax.plot(np.arange(1, len(losses) + 1), losses, label=form)
    ax.set_xlabel('epoch')
    ax.set_ylabel('validation cross-entropy')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print('saved figure', path)


@click.command()
@click.option('--text', 'path', type=click.Path(exists=True, dir_okay=False),
              help='A text file (default: the story shipped with theanets).')
@click.option('--forms', default='rnn,gru,lstm,mrnn,scrn,clockwork', show_default=True,
              help='Comma-separated recurrent layer forms to compare.')
@click.option('--hidden', default=64, show_default=True, help='Recurrent units.')
@click.option('--steps', default=40, show_default=True, help='Characters per sequence.')
@click.option('--batch-size', default=32, show_default=True)
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=30, show_default=True,
              help='Maximum epochs of 20 batches for each model.')
@click.option('--sample', default=120, show_default=True,
              help='Length of the generated text.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(path, forms, hidden, steps, batch_size, algo, learning_rate, max_updates, sample,
         figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    if path:
        with open(path, encoding='utf-8') as handle:
            raw = handle.read()
    else:
        raw = bundled_text()
    forms = [f.strip() for f in forms.split(',') if f.strip()]
    if quick:
        forms, hidden, steps, max_updates, sample = forms[:2], 8, 10, 2, 20
    text = theanets.recurrent.Text(raw, min_count=3, unknown='_')
    classes = 1 + len(text.alpha)
    print('{} characters, alphabet of {}: {!r}'.format(len(text.text), classes - 1, text.alpha))

    # train on the first 90% of the text, validate on the rest.
    cut = int(0.9 * len(text.text))
    train = theanets.recurrent.Text(text.text[:cut], alpha=text.alpha)
    valid = theanets.recurrent.Text(text.text[cut:], alpha=text.alpha)
    seed_text = 'The keeper '

    curves, results = {}, []
    for form in forms:
        net = theanets.recurrent.Classifier([classes, layer_spec(form, hidden), classes],
                                            rng=seed)
        net.train(train.classifier_batches(steps, batch_size, rng=seed),
                  valid.classifier_batches(steps, batch_size, rng=seed + 1),
                  algo=algo, learning_rate=learning_rate, max_gradient_norm=5,
                  train_batches=20, valid_batches=10, patience=3, validate_every=2,
                  max_updates=max_updates, progress=progress)
        curves[form] = [v['loss'] for _, v in net.history]
        x, y = valid.classifier_batches(steps, 64, rng=seed + 2)()
        accuracy = net.score(x, y)
        chars = net.predict_sequence(text.encode(seed_text), sample, rng=seed)
        results.append((accuracy, form, net.num_params, seed_text + text.decode(chars)))

    plot(curves, datasets.figure_path(figures, 'recurrent-text.png'))
    for accuracy, form, count, generated in sorted(results, reverse=True):
        print('--- {}: {} parameters, next-character accuracy {:.3f}'.format(
            form, count, accuracy))
        print(generated.replace('\n', ' '))
    best = max(results)
    print('best layer: {} (next-character accuracy {:.3f})'.format(best[1], best[0]))


if __name__ == '__main__':
    main()
