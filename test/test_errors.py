"""Every bad input of docs/errors.rst: its exception, its message, and no compiled function.

Each row of ``BAD_INPUTS`` is one row of the table in ``docs/errors.rst``: a
call with a bad input, the exception it raises and a regular expression the
message matches. Every check must run before PyTensor compiles or runs
anything, which ``backend.compile_count`` confirms.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse

import theanets
from theanets import backend
from theanets.checks import NonFiniteDataWarning
from theanets.util import ConfigurationError

import util as U

R = theanets.Regressor
C = theanets.Classifier
A = theanets.Autoencoder
RR = theanets.recurrent.Regressor
RC = theanets.recurrent.Classifier

X = U.inputs()                      # (8, 4)
Y = U.targets()                     # (8, 2)
L = U.labels()                      # (8,) in [0, 3)
X3 = U.rng(5).randn(6, 5, 4).astype('f')
Y3 = U.rng(6).randn(6, 5, 2).astype('f')
L3 = (np.arange(30) % 3).reshape(6, 5).astype('i')


def nan_at(array, index=(0, 0)):
    array = array.copy()
    array[index] = np.nan
    return array


def train(net, *data, **kwargs):
    kwargs.setdefault('max_updates', 1)
    return net.train(list(data), **kwargs)


def bad_batches():
    return [X[:, :3], Y]


BAD_INPUTS = [
    # ----- data given to predict and train
    pytest.param(lambda: R([4, 2]).predict(np.zeros((3, 5), 'f')), ConfigurationError,
                 r"expected 4 values on axis 1 of input 'in', got 5", id='columns-predict'),
    pytest.param(lambda: train(R([4, 2]), X[:, :3], Y), ConfigurationError,
                 r"expected 4 values on axis 1 of input 'in', got 3", id='columns-train'),
    pytest.param(lambda: RR([4, (3, 'rnn'), 2]).predict(X), ConfigurationError,
                 r"input 'in' expects 3-D data .* got 2-D .*\(batch, time, variables\)",
                 id='2d-data-to-recurrent'),
    pytest.param(lambda: R([4, 2]).predict(X[0]), ConfigurationError,
                 r"expects 2-D data of shape \(N, 4\), got 1-D", id='1d-data'),
    pytest.param(lambda: train(R([4, 2]), X, Y[:, :1]), ConfigurationError,
                 r"expected 2 columns in target array 'target' for output layer 'out', got 1",
                 id='target-columns'),
    pytest.param(lambda: train(C([4, 3]), X, L.astype('f')), ConfigurationError,
                 r"holds float32 values, not integer labels; convert with labels.astype",
                 id='float-labels'),
    pytest.param(lambda: train(C([4, 3]), X, L + 1), ConfigurationError,
                 r"labels in \[1, 3\] but output layer 'out' has 3 classes.*\[0, 2\]",
                 id='labels-out-of-range'),
    pytest.param(lambda: train(C([4, 3]), X, L - 1), ConfigurationError,
                 r"labels in \[-1, 1\]", id='negative-labels'),
    pytest.param(lambda: train(C([4, 3]), X, L[:, None]), ConfigurationError,
                 r"target array 'target' of Classifier must be 1-D, got 2-D.*one int per example",
                 id='labels-2d'),
    pytest.param(lambda: train(R([4, 2], weighted=True), X, Y, np.ones((8, 3))),
                 ConfigurationError, r"weights array has shape \(8, 3\) but must match the "
                 r"target 'target' shape \(8, 2\)", id='weights-shape'),
    pytest.param(lambda: train(R([4, 2], weighted=True), X, Y), ConfigurationError,
                 r"trains on 3 array\(s\) \['in', 'target', 'weights'\] but got 2",
                 id='weights-missing'),
    pytest.param(lambda: train(R([4, 2], weighted=True), X, Y, -np.ones_like(Y)),
                 ConfigurationError, r"weights array holds negative values", id='weights-negative'),
    pytest.param(lambda: train(R([4, 2], weighted=True), X, Y, np.zeros_like(Y)),
                 ConfigurationError, r"weights array is all zero", id='weights-all-zero'),
    pytest.param(lambda: train(R([4, 2]), X, Y[:5]), ConfigurationError,
                 r"different numbers of examples \(axis 0\): in=8, target=5", id='example-count'),
    pytest.param(lambda: train(RR([4, (3, 'rnn'), 2]), X3, Y3[:, :4]), ConfigurationError,
                 r"different numbers of time steps \(axis 1\): in=5, target=4",
                 id='time-steps'),
    pytest.param(lambda: train(A([4, 3]), X), ConfigurationError,
                 r"Autoencoder reproduces input 'in' \(4 values\) from output 'out:out', which "
                 r"has 3; give the last layer 4 units", id='autoencoder-output-size'),
    pytest.param(lambda: train(R([4, 2]), X[:0], Y[:0]), ConfigurationError,
                 r"input 'in' received an empty array", id='empty-data'),
    pytest.param(lambda: train(R([4, 2]), nan_at(X), Y), ConfigurationError,
                 r"input 'in' holds 1 NaN or infinite value.*allow_nonfinite=True",
                 id='nan-inputs'),
    pytest.param(lambda: train(R([4, 2]), X, Y * np.inf), ConfigurationError,
                 r"target array 'target' holds 16 NaN or infinite", id='inf-targets'),
    pytest.param(lambda: R([4, 2]).predict(nan_at(X)), ConfigurationError,
                 r"holds 1 NaN or infinite value", id='nan-predict'),
    pytest.param(lambda: R([4, 2]).predict(np.zeros((3, 4), complex)), ConfigurationError,
                 r"input 'in' needs real numbers, got .*complex", id='complex-data'),
    pytest.param(lambda: train(R([4, 2]), X, np.array([['a', 'b']] * 8)), ConfigurationError,
                 r"target array 'target' needs real numbers", id='string-data'),
    pytest.param(lambda: R([4, 2]).predict([[1, 2, 3, 4], [1, 2]]), ConfigurationError,
                 r"input 'in': cannot convert 'list' to an array", id='ragged-data'),
    pytest.param(lambda: R([4, 2]).predict(scipy.sparse.csr_matrix(X)), ConfigurationError,
                 r"received a sparse matrix; build the input with sparse=True",
                 id='sparse-to-dense-input'),
    pytest.param(lambda: R([4, 2]).predict(X, X), ConfigurationError,
                 r"has 1 input layer\(s\) \(\['in'\]\) but got 2 array\(s\)",
                 id='arrays-for-predict'),
    pytest.param(lambda: R([4, 2]).train(X), ConfigurationError,
                 r"training data must be a list of arrays.*wrap a single array in a list",
                 id='data-not-a-list'),
    pytest.param(lambda: R([4, 2]).train(bad_batches, max_updates=1), ConfigurationError,
                 r"first batch of the training data callable: expected 4 values",
                 id='callable-first-batch'),
    pytest.param(lambda: R([4, 2]).train(theanets.optimizers.Dataset([X[:, :3], Y]),
                                         max_updates=1),
                 ConfigurationError, r"expected 4 values on axis 1 of input 'in', got 3",
                 id='dataset-arrays'),
    pytest.param(lambda: A([4, 3, 4]).decode(np.zeros((2, 5), 'f')), ConfigurationError,
                 r"expected 3 values on axis 1 of decode\(\) input for 'hid1:out', got 5",
                 id='decode-shape'),
    pytest.param(lambda: A([4, 3, 4]).encode(X, layer=7), ConfigurationError,
                 r"layer=7 is out of range for a network of 3 layers", id='encode-layer'),
    pytest.param(lambda: R([4, 2]).score(X, Y[:3]), ConfigurationError,
                 r"score\(\) got 8 input example\(s\) but 3 target row\(s\)", id='score-targets'),
    # ----- the model and its layers
    pytest.param(lambda: R([4, dict(form='fedforward', size=2)]), ConfigurationError,
                 r"unknown layer form 'fedforward' \(did you mean 'feedforward'.*known layer forms: ",
                 id='unknown-form'),
    pytest.param(lambda: R([4, (2, 'rleu')]), ConfigurationError,
                 r"unknown activation 'rleu' or layer form \(did you mean 'relu'.*known forms: "
                 r".*known activations: ", id='unknown-name-in-tuple'),
    pytest.param(lambda: R([4, dict(size=2, activation='tahn')]), ConfigurationError,
                 r"layer 'out': unknown activation 'tahn' \(did you mean 'tanh'.*known "
                 r"activations: ", id='unknown-activation'),
    pytest.param(lambda: R([4, 2], loss='msee'), ConfigurationError,
                 r"unknown loss 'msee' \(did you mean 'mse'.*known losses: ", id='unknown-loss'),
    pytest.param(lambda: train(R([4, 2]), X, Y, weight_l3=0.1), TypeError,
                 r"train\(\) got unknown keyword argument 'weight_l3' \(did you mean 'weight_l2'",
                 id='unknown-regularizer'),
    pytest.param(lambda: train(R([4, 2]), X, Y, regularizers={'wieght_l2': 0.1}), TypeError,
                 r"regularizers=\{...\}\) got unknown keyword argument 'wieght_l2' \(did you "
                 r"mean 'weight_l2'", id='unknown-regularizer-in-dict'),
    pytest.param(lambda: train(R([4, 2]), X, Y, algo='adamm'), ConfigurationError,
                 r"unknown training algorithm 'adamm' \(did you mean 'adam'.*known: ",
                 id='unknown-algorithm'),
    pytest.param(lambda: train(R([4, 3, 2]), X, Y, algo='layerwise', subalgo='sgdd'),
                 ConfigurationError, r"unknown training sub-algorithm \(subalgo\) 'sgdd' \(did "
                 r"you mean 'sgd'", id='unknown-subalgo'),
    pytest.param(lambda: R([4, (2, 3, 'relu')]), ConfigurationError,
                 r"layer spec \(2, 3, 'relu'\) gives two sizes \(2 and 3\)", id='two-sizes'),
    pytest.param(lambda: R([4, 'ff']), ConfigurationError,
                 r"layer 'out' \(Feedforward\) does not specify a size", id='no-size'),
    pytest.param(lambda: R([4, 0]), ConfigurationError,
                 r"layer 'out': size must be a positive integer, got 0", id='zero-size'),
    pytest.param(lambda: R([4, -3]), ConfigurationError,
                 r"size must be a positive integer, got -3", id='negative-size'),
    pytest.param(lambda: R([(4, 0), 2]), ConfigurationError,
                 r"layer 'in': shape must hold positive integers", id='zero-in-shape'),
    pytest.param(lambda: R([4, dict(size=2, shape=4)]), ConfigurationError,
                 r"layer 'out': shape must be a tuple of positive integers such as \(4, \).* "
                 r"got 4; for a number of units give size=4", id='shape-not-a-tuple'),
    pytest.param(lambda: R([4, (True, 'relu')]), ConfigurationError,
                 r"layer spec \(True, 'relu'\): cannot interpret element True", id='bool-size'),
    pytest.param(lambda: R([4, (2, 3)]), ConfigurationError,
                 r"layer 'out' \(Feedforward\): shape=\(2, 3\) does not fit its input shape "
                 r"\(4,\).*add a \"reshape\" layer", id='multi-dim-shape-on-ff'),
    pytest.param(lambda: R([4, dict(size=3, shape=(2,))]), ConfigurationError,
                 r"layer 'out' \(Feedforward\): size=3 but its output has 2 values on the last axis",
                 id='size-and-shape'),
    pytest.param(lambda: R([4, dict(form='classifier', size=3, activation='tanh')]),
                 ConfigurationError, r"layer 'out' \(Classifier\): a classifier layer always "
                 r"uses softmax, so activation='tanh' cannot apply", id='fixed-activation'),
    pytest.param(lambda: R([4, dict(size=3, std=-1)]), ConfigurationError,
                 r"layer 'out', parameter 'w': std must be a number >= 0, got -1",
                 id='negative-std'),
    pytest.param(lambda: R([4, 3, dict(size=2, inputs='hid9')]), ConfigurationError,
                 r"layer 'out': input 'hid9:out' is not an output of an earlier layer.*"
                 r"available outputs: ", id='inputs-missing-output'),
    pytest.param(lambda: R([4, dict(size=2, inputs=5.5)]), ConfigurationError,
                 r"layer 'out': inputs= must be an output name", id='inputs-bad-type'),
    pytest.param(lambda: R([4, (2, 'tied')]), ConfigurationError,
                 r"cannot find a partner for a tied layer.*partner=", id='tied-no-partner'),
    pytest.param(lambda: A([4, 3, dict(form='tied', partner='zzz')]), ConfigurationError,
                 r"tied layer 'out': partner 'zzz' is not a layer of this network",
                 id='tied-unknown-partner'),
    pytest.param(lambda: A([(2, 3), 'flatten', dict(form='tied', partner='hid1')]),
                 ConfigurationError, r"tied layer 'out': partner 'hid1' \(Flatten\) has no weight "
                 r"matrix 'w' of shape \(3, 6\)", id='tied-partner-without-weights'),
    pytest.param(lambda: RR([3, dict(form='reshape', shape=(3, ))]), ConfigurationError,
                 r"layer 'out': cannot reshape input \(None, 3\) to \(3,\): the input has an "
                 r"axis of varying length", id='reshape-varying-to-fixed'),
    pytest.param(lambda: R([4, dict(size=2, inputs={'in': 5})]), ConfigurationError,
                 r"layer 'out': input 'in:out' has size 4, but inputs= declared 5",
                 id='declared-input-size'),
    pytest.param(lambda: R([4, 3, dict(size=2, std_x=0.1)]), ConfigurationError,
                 r"'std_x' applies to no parameter of this layer; its parameters are b, w",
                 id='init-kwarg-no-parameter'),
    pytest.param(lambda: RR([4, dict(form='recurrent', size=2)]), ConfigurationError,
                 r"layer 'out' \(Recurrent\): Recurrent is a base class that computes nothing; "
                 r"use one of its forms: clockwork, gru, lstm", id='base-class-form'),
    pytest.param(lambda: R([4, dict(form='input', size=2)]), ConfigurationError,
                 r"layer spec .*: the output layer of Regressor cannot be an input layer",
                 id='input-as-output'),
    pytest.param(lambda: train(theanets.convolution.Classifier([(5, 4), 3]), X3, L[:6]),
                 ConfigurationError,
                 r"Classifier: the CrossEntropy loss compares 1-D class labels 'target' with "
                 r"output 'out:out', which must then be 2-D .* but is 3-D of shape \(N, 5, 3\); "
                 r"add a \"flatten\" layer", id='output-dims-for-loss'),
    pytest.param(lambda: train(R([4, 2], loss='gll'), X, Y), ConfigurationError,
                 r"Regressor: the GaussianLogLikelihood loss reads an output: unknown output "
                 r"'mean:out'.*known outputs: in:out, out:out, out:pre", id='loss-output-missing'),
    pytest.param(lambda: train(A([4, 'flatten']), X), ConfigurationError,
                 r"Autoencoder has no parameters to train: none of its layers 'in' \(Input\), "
                 r"'out' \(Flatten\) has weights", id='no-parameters'),
    pytest.param(lambda: R(5), ConfigurationError,
                 r"Regressor\(layers=...\) needs a list of layer specs", id='layers-not-a-list'),
    pytest.param(lambda: R([4]).predict(X), ConfigurationError,
                 r"Regressor has 1 layer\(s\); add an input and an output layer",
                 id='too-few-layers'),
    # ----- keyword arguments
    pytest.param(lambda: R([4, 2], wieghted=True), TypeError,
                 r"Regressor\(\) got unknown keyword argument 'wieghted' \(did you mean "
                 r"'weighted'", id='unknown-constructor-kwarg'),
    pytest.param(lambda: R([4, dict(size=2, sparsty=0.1)]), TypeError,
                 r"layer 'out' \(Feedforward\) got unknown keyword argument 'sparsty' \(did you "
                 r"mean 'sparsity'", id='unknown-layer-kwarg'),
    pytest.param(lambda: train(R([4, 2]), X, Y, learnin_rate=0.1), TypeError,
                 r"train\(\) got unknown keyword argument 'learnin_rate' \(did you mean "
                 r"'learning_rate'", id='unknown-train-kwarg'),
    pytest.param(lambda: train(R([4, 2]), X, Y, algo='sgd', beta1_halflife=3), TypeError,
                 r"'beta1_halflife', which is not a hyperparameter of algo='sgd' \(it belongs "
                 r"to adam\)", id='other-algorithms-kwarg'),
    pytest.param(lambda: R([4, 2]).loss(hiden_l2=1), TypeError,
                 r"Regressor.loss\(\) got unknown keyword argument 'hiden_l2' \(did you mean "
                 r"'hidden_l2'", id='loss-kwarg'),
    pytest.param(lambda: theanets.Loss.build('mse', target=2, wieght=1), TypeError,
                 r"MeanSquaredError\(\) got unknown keyword argument 'wieght' \(did you mean "
                 r"'weight'", id='class-kwarg'),
    pytest.param(lambda: R([4, 2]).predict(X, dropuot=0.5), TypeError,
                 r"predict\(\) got unknown keyword argument 'dropuot' \(did you mean 'dropout'",
                 id='unknown-predict-kwarg'),
    pytest.param(lambda: train(R([4, 2]), X, Y, monitors=3), ConfigurationError,
                 r"monitors= must be a dict \{pattern: levels\} or a list", id='monitors-form'),
    pytest.param(lambda: train(R([4, 3, 2]), X, Y, monitors={'hid1:out': 'x'}),
                 ConfigurationError, r"monitors= levels for 'hid1:out' must be numbers",
                 id='monitors-levels'),
    # ----- training options
    pytest.param(lambda: train(R([4, 2]), X, Y, learning_rate=-0.1), ConfigurationError,
                 r"learning_rate must be a number >= 0, got -0.1", id='negative-learning-rate'),
    pytest.param(lambda: train(R([4, 2]), X, Y, learning_rate=float('nan')), ConfigurationError,
                 r"learning_rate must be a number >= 0, got nan", id='nan-learning-rate'),
    pytest.param(lambda: train(R([4, 2]), X, Y, batch_size=2.5), ConfigurationError,
                 r"batch_size must be an integer", id='fractional-batch-size'),
    pytest.param(lambda: train(R([4, 2]), X, Y, max_updates=0), ConfigurationError,
                 r"max_updates must be an integer >= 1 or None", id='zero-max-updates'),
    pytest.param(lambda: train(R([4, 2]), X, Y, weight_l2=-1), ConfigurationError,
                 r"train\(\) got weight_l2=-1; regularizer weights and noise levels must be >= 0",
                 id='negative-regularizer'),
    pytest.param(lambda: train(R([4, 3, 2]), X, Y, hidden_dropout=1.5), ConfigurationError,
                 r"dropout for \['hid1:out'\] must be a probability in \[0, 1\), got 1.5",
                 id='dropout-range'),
]


@pytest.mark.parametrize('call,kind,pattern', BAD_INPUTS)
def test_bad_input_raises_before_compiling(call, kind, pattern):
    before = backend.compile_count()
    with pytest.raises(kind, match=pattern):
        call()
    assert backend.compile_count() == before


def test_configuration_errors_are_value_errors():
    assert issubclass(ConfigurationError, ValueError)
    with pytest.raises(ValueError, match='size must be a positive integer, got 0'):
        R([4, 0])


# ----- warnings instead of errors ----------------------------------------------------------

def test_allow_nonfinite_warns_instead_of_raising_in_predict():
    net = R([4, 2])
    with pytest.warns(NonFiniteDataWarning, match="input 'in' holds 1 NaN.*allow_nonfinite"):
        out = net.predict(nan_at(X), allow_nonfinite=True)
    assert out.shape == (8, 2)
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()


def test_finite_values_whose_sum_overflows_are_accepted():
    # the finite check sums first; an overflowing sum must not count as a bad value
    big = np.full((8, 4), 3e38, 'f')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # neither a NonFiniteDataWarning nor numpy's overflow
        assert R([4, 2]).predict(big).shape == (8, 2)


def test_allow_nonfinite_warns_in_train_and_decode():
    net = A([4, 3, 4])
    with pytest.warns(NonFiniteDataWarning, match="input 'in' holds"):
        with pytest.raises(theanets.optimizers.NonFiniteLossError, match='diverged to nan'):
            train(net, nan_at(X), allow_nonfinite=True, algo='sgd', batch_size=8)
    with pytest.warns(NonFiniteDataWarning, match='decode'):
        net.decode(np.full((1, 3), np.inf, 'f'), allow_nonfinite=True)


def test_batch_size_larger_than_data_is_clamped_with_a_warning():
    net = R([4, 2])
    with pytest.warns(UserWarning, match=r'batch_size=100 is larger than the training data '
                                         r'\(8 examples\); using one batch of 8'):
        train(net, X, Y, batch_size=100, algo='sgd')
    # the default batch size (32) is not the user's choice: no warning
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        train(net, X, Y, algo='sgd')


# ----- behaviour that replaced an error -------------------------------------------------

def test_std_w_applies_to_every_input_weight_of_a_multi_input_layer():
    net = R([4, 3, dict(size=2, inputs=('in', 'hid1'), std_w=1e-3, **{'std_w_hid1:out': 5})])
    small = net.find('out', 'w_in:out').get_value()
    large = net.find('out', 'w_hid1:out').get_value()
    assert 0 < np.abs(small).max() < 0.01
    assert np.abs(large).max() > 1


def test_shape_of_one_dimension_means_size_in_recurrent_models():
    net = RR([4, dict(shape=(3,)), 2])
    assert net.layers[1].output_shape == (None, 3)
    assert net.predict(X3).shape == (6, 5, 2)


def test_first_batch_of_a_callable_is_used_not_lost(monkeypatch):
    calls = []

    def batches():
        calls.append(1)
        return [X + len(calls), Y]

    seen = []
    original = theanets.optimizers.Optimizer._step

    def spy(self, batch):
        seen.append(int(round(float(batch[0][0, 0] - X[0, 0]))))
        return original(self, batch)

    monkeypatch.setattr(theanets.optimizers.Optimizer, '_step', spy)
    R([4, 2]).train(batches, [X, Y], algo='sgd', iteration_size=2, max_updates=1)
    # called once up front for the check; the first step used that very batch
    assert seen == [1, 2] and len(calls) == 2


def test_sparse_input_is_checked():
    net = R([dict(size=4, sparse='csr'), 2])
    with pytest.raises(ConfigurationError, match='expects a scipy sparse csr matrix'):
        net.predict(X)
    assert net.predict(scipy.sparse.csr_matrix(X)).shape == (8, 2)
