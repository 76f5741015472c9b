#!/usr/bin/env python
"""Classify handwritten digits with one hidden layer, and draw what it learned.

By default this uses scikit-learn's 8x8 digits, which need no download; add
``--dataset mnist`` for the 28x28 MNIST digits (downloaded once, 11 MB).

The model is ``Classifier([pixels, hidden, 10])`` trained with Nesterov
momentum. After training the script prints the accuracy on held-out test
digits and saves the incoming weights of the hidden units, drawn as images,
to ``mnist-classifier-weights.png``.

    python examples/mnist-classifier.py
    python examples/mnist-classifier.py --dataset mnist --train-batches 100
"""

import click

import datasets
import theanets


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--hidden', default=100, show_default=True, help='Hidden layer size.')
@click.option('--algo', default='nag', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=1e-2, show_default=True)
@click.option('--momentum', default=0.9, show_default=True)
@click.option('--min-improvement', default=0.001, show_default=True,
              help='Relative validation improvement that resets patience.')
@click.option('--train-batches', default=None, type=int,
              help='Mini-batches per epoch (default: one pass over the data).')
@click.option('--max-updates', default=200, show_default=True, help='Maximum epochs.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, hidden, algo, learning_rate, momentum, min_improvement, train_batches,
         max_updates, figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    if quick:
        data, hidden, max_updates = data.subset(400), 16, 3

    net = theanets.Classifier([data.size, hidden, 10], rng=seed)
    net.train(list(data.train), list(data.valid), algo=algo, learning_rate=learning_rate,
              momentum=momentum, min_improvement=min_improvement, patience=5,
              validate_every=2, train_batches=train_batches, max_updates=max_updates,
              batch_size=32, progress=progress)

    weights = net.find('hid1', 'w').get_value().T
    datasets.save_image_grid(weights[:100], data.shape,
                             datasets.figure_path(figures, 'mnist-classifier-weights.png'),
                             title='hidden unit weights')
    print('validation accuracy: {:.4f}'.format(net.score(*data.valid)))
    print('test accuracy: {:.4f} ({} test images of {})'.format(
        net.score(*data.test), len(data.test[0]), data.name))


if __name__ == '__main__':
    main()
