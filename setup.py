"""Install theanets: `pip install .` (add `[test]` for the test suite)."""

import os
import re

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, 'theanets', '__init__.py')) as handle:
        return re.search(r"__version__ = '([^']+)'", handle.read()).group(1)


def _readme():
    with open(os.path.join(HERE, 'README.rst')) as handle:
        return handle.read()


setuptools.setup(
    name='theanets',
    version=_version(),
    description='Feedforward, convolutional and recurrent neural networks on PyTensor',
    long_description=_readme(),
    long_description_content_type='text/x-rst',
    license='MIT',
    packages=setuptools.find_packages(include=['theanets', 'theanets.*']),
    package_data={'theanets': ['data/*.txt', 'ops/c/*.h', 'ops/c/*.c']},
    python_requires='>=3.11',
    install_requires=[
        'pytensor>=3.0.7,<3.4',
        'numpy>=1.24',
        'scipy>=1.10',
        'scipy-openblas32>=0.3.27',
        'click>=8.0',
        'tqdm>=4.60',
    ],
    extras_require={
        'examples': ['scikit-learn>=1.2', 'matplotlib>=3.6', 'ipywidgets>=8'],
        'test': ['pytest>=7', 'pytest-xdist>=3', 'hypothesis>=6.50', 'scikit-learn>=1.2',
                 'sphinx>=7', 'joblib>=1.0', 'nbclient>=0.7', 'nbformat>=5.1', 'ipykernel>=6',
                 'matplotlib>=3.6', 'jax>=0.4.30'],
        'docs': ['sphinx>=7'],
        'jax': ['jax>=0.4.30'],
        'bench': ['torch>=2.0'],
    },
    entry_points={'console_scripts': ['theanets-char-rnn = theanets.scripts.char_rnn:main']},
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Science/Research',
        'License :: OSI Approved :: MIT License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Programming Language :: Python :: 3.13',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
