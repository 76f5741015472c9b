#!/usr/bin/env python
"""A denoising autoencoder of PCA-whitened colour images.

By default the images are generated: 12x12 colour pictures of random
gratings and blobs (no download needed). ``--dataset cifar`` uses the 32x32
CIFAR-10 images instead (downloaded once, 170 MB).

The images are PCA-whitened first, keeping the components that explain 99%
of the variance; the autoencoder then learns to reproduce the whitened data
from a copy corrupted with strong Gaussian noise (``input_noise=1``), which
makes it learn the structure shared across images rather than the identity.

The script prints the reconstruction R^2 of whitened test images and the
fraction of the pixel variance explained after mapping back to images, and
saves test images above their reconstructions.

    python examples/cifar-autoencoder.py
    python examples/cifar-autoencoder.py --dataset cifar --hidden 1024
"""

import click
import numpy as np

import datasets
import theanets


@click.command()
@click.option('--dataset', type=click.Choice(['generated', 'cifar']), default='generated',
              show_default=True, help='generated: 12x12 images; cifar: CIFAR-10 (download).')
@click.option('--hidden', default=256, show_default=True, help='Hidden layer size.')
@click.option('--retain', default=0.99, show_default=True,
              help='Fraction of the variance kept by PCA whitening.')
@click.option('--input-noise', default=1.0, show_default=True,
              help='Std of the Gaussian noise added to the whitened inputs.')
@click.option('--algo', default='adam', show_default=True)
@click.option('--learning-rate', default=1e-3, show_default=True)
@click.option('--max-updates', default=100, show_default=True, help='Maximum epochs.')
@click.option('--figures', default='.', show_default=True,
              help='Directory for figures ("" for none).')
@click.option('--seed', default=13, show_default=True)
@click.option('--progress/--no-progress', default=True, help='Show a progress bar.')
@click.option('--quick', is_flag=True, help='Tiny run for smoke tests.')
def main(dataset, hidden, retain, input_noise, algo, learning_rate, max_updates, figures,
         seed, progress, quick):
    theanets.util.enable_default_logging()
    data = datasets.load(dataset, seed)
    if quick:
        data, hidden, max_updates = data.subset(400), 32, 2

    whitener = datasets.Whitener(data.train[0], retain=retain)
    print('PCA keeps {} of {} dimensions ({:.0%} of the variance)'.format(
        whitener.k, data.size, retain))
    train, valid, test = (whitener.encode(part[0]) for part in (data.train, data.valid,
                                                                  data.test))

    net = theanets.Autoencoder([whitener.k, (hidden, 'relu'), whitener.k], rng=seed)
    net.train([train], [valid], algo=algo, learning_rate=learning_rate,
              input_noise=input_noise, patience=5, validate_every=2,
              max_updates=max_updates, batch_size=64, progress=progress)

    images = data.test[0][:8]
    rebuilt = np.clip(whitener.decode(net.predict(test[:8])), 0, 1)
    datasets.save_image_grid(
        np.concatenate([images, rebuilt]), data.shape,
        datasets.figure_path(figures, 'cifar-autoencoder.png'),
        title='test images (top) and reconstructions (bottom)', columns=8)
    explained = datasets.variance_explained(data.test[0],
                                            whitener.decode(net.predict(test)))
    print('reconstruction of {} test images: whitened R^2 {:.4f}, pixel variance explained '
          '{:.4f}'.format(len(test), net.score(test), explained))


if __name__ == '__main__':
    main()
