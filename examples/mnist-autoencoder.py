#!/usr/bin/env python
"""Compress images of handwritten digits with a one-hidden-layer autoencoder.

The autoencoder ``[pixels, (features ** 2, 'tanh'), pixels]`` learns to
reproduce its input through a narrow hidden layer. Gaussian noise on the
input during training (a denoising autoencoder) and a small weight decay
keep the features smooth.

The script prints two measures of how well held-out images are
reconstructed: ``net.score``, the R^2 of each pixel averaged over pixels
(pixels that hardly vary, like the corners of the 8x8 digits, pull it
down), and the fraction of the total variance explained. It saves two
figures: the features (incoming weights of the hidden units) and test
images above their reconstructions.

    python examples/mnist-autoencoder.py --features 5
    python examples/mnist-autoencoder.py --dataset mnist --features 16
"""

import click
import numpy as np

import datasets
import theanets


@click.command()
@click.option('--dataset', type=click.Choice(['digits', 'mnist']), default='digits',
              show_default=True, help='digits: bundled 8x8; mnist: 28x28 (download).')
@click.option('--features', default=5, show_default=True,
              help='The hidden layer has features x features units.')
@click.option('--input-noise', default=0.05, show_default=True,
              help='Std of Gaussian noise added to the inputs during training.')
@click.option('--weight-l2', default=1e-5, show_default=True, help='Weight decay.')
@click.option('--algo', default='adam', show_default=True, help='Training algorithm.')
@click.option('--learning-rate', default=3e-3, show_default=True)
@click.option('--momentum', default=0.0, show_default=True)
@click.option('--max-updates', default=300, show_default=True, help='Maximum epochs.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, features, input_noise, weight_l2, algo, learning_rate, momentum, max_updates,
         figures, seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    if quick:
        data, features, max_updates = data.subset(400), 3, 3
    train, valid, test = data.train[0], data.valid[0], data.test[0]

    net = theanets.Autoencoder([data.size, (features ** 2, 'tanh'), data.size], rng=seed)
    net.train([train], [valid], algo=algo, learning_rate=learning_rate,
              momentum=momentum, input_noise=input_noise, weight_l2=weight_l2,
              patience=10, validate_every=2, max_updates=max_updates, batch_size=32,
              progress=progress)

    datasets.save_image_grid(
        net.find('hid1', 'w').get_value().T, data.shape,
        datasets.figure_path(figures, 'mnist-autoencoder-features.png'),
        title='features', columns=features)
    sample = test[:10]
    datasets.save_image_grid(
        np.concatenate([sample, net.predict(sample)]), data.shape,
        datasets.figure_path(figures, 'mnist-autoencoder-reconstructions.png'),
        title='test images (top) and reconstructions (bottom)', columns=10)
    print('hidden code of the first test image:', np.round(net.encode(test[:1])[0], 2))
    print('reconstruction of {} test images: R^2 {:.4f}, variance explained {:.4f}'.format(
        len(test), net.score(test), datasets.variance_explained(test, net.predict(test))))


if __name__ == '__main__':
    main()
