"""Describing a network: ``summary()`` and ``repr``."""

import theanets


def test_summary_table(capsys):
    net = theanets.recurrent.Regressor([3, (6, 'lstm'), dict(size=2, inputs=('hid1', 'in'))])
    net.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'Regressor: 3 layers, {} learnable parameters'.format(net.num_params)
    assert lines[1].split() == ['name', 'form', 'activation', 'output', 'shape', 'inputs',
                                'parameters']
    # shapes without the batch axis: (None, 6) for 6 recurrent units
    assert lines[4].split() == ['hid1', 'LSTM', 'tanh', '(None,', '6)', 'in:out', '(None,',
                                '3)', str(sum(p.get_value().size for p in net.layers[1].params))]
    assert lines[5].split()[:4] == ['out', 'Feedforward', 'linear', '(None,']
    assert 'hid1:out (None, 6), in:out (None, 3)' in lines[5]
    assert lines[-1].split() == ['total', str(net.num_params)]


def test_summary_of_a_feedforward_network(capsys):
    net = theanets.Classifier([64, (100, 'relu'), 10])
    net.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[:4] == ['in', 'Input', 'linear', '(64,)']
    assert lines[4].split() == ['hid1', 'Feedforward', 'relu', '(100,)', 'in:out', '(64,)', '6500']
    assert lines[-1].split() == ['total', '7510']


def test_repr_is_one_line():
    net = theanets.Classifier([64, (100, 'tanh'), 10])
    text = repr(net)
    assert text == str(net) and '\n' not in text
    assert text == ('Classifier(in (64,), hid1 (100,) tanh, out (10,) softmax; '
                    'loss CrossEntropy; 7510 parameters)')
    assert repr(theanets.Regressor()) == 'Regressor(no layers; loss mse; 0 parameters)'
