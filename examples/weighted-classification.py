#!/usr/bin/env python
"""Weighted classification: make a rare class count more during training.

The data set has two classes, and only 1% of the examples belong to class 1.
A classifier that always answers 0 is 99% accurate, so an unweighted model
has little reason to find the rare examples. Training a ``weighted=True``
classifier with weight 10 on every rare example (1 elsewhere) makes each
mistake on them cost ten times more.

The script trains both models on the same data and prints, for the test set,
how many rare examples there are, how many each model predicts, and its
confusion matrix.

    python examples/weighted-classification.py --rare-weight 10
"""

import click
import numpy as np
from sklearn.datasets import make_classification
from sklearn.metrics import confusion_matrix

import theanets


def make_data(samples, seed):
    """Return (train, test) lists [x, y] of an imbalanced two-class problem."""
    x, y = make_classification(
        n_samples=samples, n_features=100, n_informative=20, n_redundant=0, n_classes=2,
        n_clusters_per_class=1, weights=[0.99, 0.01], flip_y=0, class_sep=0.7,
        random_state=seed)
    x = x.astype('float32')
    y = y.astype('int32')
    cut = int(0.75 * samples)
    return [x[:cut], y[:cut]], [x[cut:], y[cut:]]


def train(weighted, data, rare_weight, hidden, settings, seed):
    net = theanets.Classifier([100, hidden, 2], weighted=weighted, rng=seed)
    x, y = data
    arrays = [x, y]
    if weighted:
        arrays.append(np.where(y == 1, rare_weight, 1.0).astype('float32'))
    net.train(arrays, weight_l2=1e-3, **settings)
    return net


@click.command()
@click.option('--samples', default=20000, show_default=True, help='Number of examples.')
@click.option('--rare-weight', default=10.0, show_default=True,
              help='Weight of each example of the rare class.')
@click.option('--hidden', default=10, show_default=True, help='Hidden layer size.')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=1e-3, show_default=True)
@click.option('--max-updates', default=40, show_default=True, help='Maximum epochs.')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(samples, rare_weight, hidden, algo, learning_rate, max_updates, seed, progress,
         quick):
    theanets.util.enable_default_logging()
    train_data, test = make_data(2000 if quick else samples, seed)
    settings = dict(algo=algo, learning_rate=learning_rate, batch_size=64, patience=3,
                    validate_every=2, max_updates=2 if quick else max_updates,
                    progress=progress)
    print('{} test examples, {} of class 1'.format(len(test[1]), int(test[1].sum())))
    results = {}
    for weighted in (False, True):
        net = train(weighted, train_data, rare_weight, hidden, settings, seed)
        predicted = net.predict(test[0])
        label = 'weighted' if weighted else 'unweighted'
        results[label] = predicted
        print('{} model: predicts {} of class 1, accuracy {:.4f}'.format(
            label, int(predicted.sum()), net.score(*test)))
        print(confusion_matrix(test[1], predicted, labels=[0, 1]))

    def recall(predicted):
        rare = test[1] == 1
        return float((predicted[rare] == 1).mean()) if rare.any() else float('nan')

    print('rare-class recall: unweighted {:.3f}, weighted {:.3f}'.format(
        recall(results['unweighted']), recall(results['weighted'])))


if __name__ == '__main__':
    main()
