#!/usr/bin/env python
"""Reconstruction ICA (RICA): learn sparse features of whitened digit images.

RICA (Le et al., 2011) is a linear autoencoder with tied weights whose hidden
activations are pushed towards sparsity with an L1 penalty. To stop the
weights from shrinking to zero, which would make the L1 penalty vanish
trivially, this example defines its own regularizer, ``WeightInverse``,
which penalises the inverse squared norm of each hidden unit's weights. Any
:class:`theanets.Regularizer` subclass becomes a training keyword under its
lowercase class name, here ``weightinverse=...``.

The images are first PCA-whitened, keeping the components that explain 99%
of the variance. During training the fraction of hidden activations within
each of the ``monitors`` thresholds is logged next to the loss.

The script prints the reconstruction R^2 of whitened test images and the
fraction of near-zero hidden activations, and saves the features mapped
back to pixel space.

    python examples/mnist-rica.py --features 100
"""

import click

import datasets
import theanets


class WeightInverse(theanets.Regularizer):
    r"""Penalise small weight vectors: the mean over hidden units of :math:`1 / \|w_j\|^2`.

    The pattern selects weight matrices by parameter name (default ``'*.w'``);
    column j of a matrix holds the incoming weights of unit j.
    """

    def loss(self, layers, outputs):
        terms = [(1 / (w * w).sum(axis=0)).mean()
                 for _, w in theanets.util.params_matching(layers, self.pattern or '*.w')
                 if w.ndim == 2]
        return sum(terms) / len(terms)


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--features', default=64, show_default=True, help='Number of hidden units.')
@click.option('--retain', default=0.99, show_default=True,
              help='Fraction of the variance kept by PCA whitening.')
@click.option('--hidden-l1', default=0.1, show_default=True,
              help='Weight of the L1 sparsity penalty on the hidden units.')
@click.option('--weight-inverse', default=1e-3, show_default=True,
              help='Weight of the WeightInverse regularizer.')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--max-updates', default=200, show_default=True, help='Maximum epochs.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, features, retain, hidden_l1, weight_inverse, algo, learning_rate,
         max_updates, figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    if quick:
        data, features, max_updates = data.subset(400), 16, 2

    whitener = datasets.Whitener(data.train[0], retain=retain)
    print('PCA keeps {} of {} dimensions ({:.0%} of the variance)'.format(
        whitener.k, data.size, retain))
    train, valid, test = (whitener.encode(part[0]) for part in (data.train, data.valid,
                                                                  data.test))

    net = theanets.Autoencoder(
        [whitener.k, (features, 'linear'), (whitener.k, 'tied')], rng=seed)
    net.train([train], [valid], algo=algo, learning_rate=learning_rate,
              hidden_l1=hidden_l1, weightinverse=weight_inverse,
              monitors={'hid1:out': (-0.9, -0.1, 0.1, 0.9)},
              patience=5, validate_every=2, max_updates=max_updates, batch_size=32,
              progress=progress)

    weights = net.find('hid1', 'w').get_value()          # (k, features)
    datasets.save_image_grid(
        whitener.colour(weights), data.shape,
        datasets.figure_path(figures, 'mnist-rica-features.png'), title='RICA features')
    hidden = net.encode(test)
    print('fraction of hidden activations with |h| < 0.1: {:.3f}'.format(
        float((abs(hidden) < 0.1).mean())))
    print('reconstruction R^2 of {} whitened test images: {:.4f}'.format(
        len(test), net.score(test)))


if __name__ == '__main__':
    main()
