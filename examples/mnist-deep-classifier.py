#!/usr/bin/env python
"""Pretrain a deep classifier as an autoencoder, then train it on the labels.

``algo='pretrain'`` builds a "shadow" autoencoder out of the classifier's
hidden layers (with tied decoding layers), which shares their weights, and
trains it layer by layer on the images alone. Supervised training then
starts from these weights instead of random ones. Pretraining helps most when
labels are scarce, so by default only 200 of the training images keep their
labels (``--labeled 0`` uses all of them).

The script prints the test accuracy of the pretrained classifier and of the
same classifier trained from random weights on the same labeled images. On
the small 8x8 digits the two usually end within a few points of each other;
try fewer labels (``--labeled 50``) or deeper networks to compare further.

    python examples/mnist-deep-classifier.py
    python examples/mnist-deep-classifier.py --dataset mnist --hidden 256,64 --labeled 1000
"""

import click

import datasets
import theanets


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--hidden', default='64,32', show_default=True,
              help='Comma-separated hidden layer sizes.')
@click.option('--labeled', default=200, show_default=True,
              help='Training images whose labels are used (0: all).')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=100, show_default=True,
              help='Maximum epochs of each training stage.')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, hidden, labeled, algo, learning_rate, max_updates, seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    hidden = [int(h) for h in hidden.split(',')]
    if quick:
        data, hidden, max_updates = data.subset(400), [12, 8], 2
    x, y = data.train
    labeled = labeled or len(x)
    settings = dict(algo=algo, learning_rate=learning_rate, patience=5, validate_every=2,
                    max_updates=max_updates, batch_size=32, progress=progress)
    layers = [data.size] + [(h, 'tanh') for h in hidden] + [10]

    pretrained = theanets.Classifier(layers, rng=seed)
    # the pretrainer uses only the images of the training data.
    pretrained.train([x, y], [data.valid[0], data.valid[1]], **dict(
        settings, algo='pretrain', subalgo=algo))
    pretrained.train([x[:labeled], y[:labeled]], list(data.valid), **settings)

    scratch = theanets.Classifier(layers, rng=seed)
    scratch.train([x[:labeled], y[:labeled]], list(data.valid), **settings)

    print('trained on {} labeled of {} images'.format(min(labeled, len(x)), len(x)))
    print('from random weights: test accuracy {:.4f}'.format(scratch.score(*data.test)))
    print('pretrained: test accuracy {:.4f}'.format(pretrained.score(*data.test)))


if __name__ == '__main__':
    main()
