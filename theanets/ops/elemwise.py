"""Element-wise operations with broadcast scalars, as one vectorized loop.

PyTensor compiles an Elemwise to a contiguous loop only when every operand has
the output's static shape. An optimizer's update, such as RMSProp's
``g2 = rho * g2 + (1 - rho) * g * g``, also reads hyperparameters broadcast
from shape (1, 1), and then runs as a strided loop that GCC does not vectorize:
2.6 ms of an 8 ms RMSProp step of an MLP 784-512-512-10. :class:`FlatElemwise`
runs such a node as one loop over C-contiguous operands (``c/flat.c``), each
scalar read once, and as the Elemwise's loop otherwise; theanets' C modes
apply it to every such node (rewrite tag :data:`FLAT_ELEMWISE_TAG`). Values,
gradients, NumPy and JAX implementations are the Elemwise's.
"""

from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.scalar import get_scalar_type
from pytensor.tensor.elemwise import Elemwise

from .base import HEADER, c_source, digest, warn_once

__all__ = ['FlatElemwise', 'FLAT_ELEMWISE_TAG']

FLAT_ELEMWISE_TAG = 'theanets_flat_elemwise'


def _is_scalar(var):
    return all(s == 1 for s in var.type.shape)


class FlatElemwise(Elemwise):
    """An Elemwise of arrays shaped like the output (at least one) and broadcast scalars."""

    def _task(self, node, name):
        """The scalar op's C code on ``in<k>`` and ``out<k>``, or None if it needs more."""
        scalar = Apply(self.scalar_op, *[[get_scalar_type(v.dtype).make_variable() for v in vs]
                                         for vs in (node.inputs, node.outputs)])
        names = [['%s%d' % (kind, k) for k in range(len(vs))]
                 for kind, vs in (('in', node.inputs), ('out', node.outputs))]
        try:
            return self.scalar_op.c_code(scalar, name + '_scalar_', *names, {'fail': 'return 1;'})
        except Exception as err:  # e.g. it reads sub['params']: the Elemwise's loop only
            warn_once(('flat', str(self.scalar_op)), 'FlatElemwise: no flat loop for %s (%s: %s); '
                      "running PyTensor's element-wise loop", self.scalar_op,
                      type(err).__name__, err)
            return None

    def c_support_code(self, **kwargs):
        return super().c_support_code(**kwargs) + '\n' + c_source(HEADER)

    def c_support_code_apply(self, node, name):
        code, task = super().c_support_code_apply(node, name), self._task(node, name)
        if task is None:
            return code
        params, load = [], []
        for k, var in enumerate(node.inputs):
            params.append('const npy_%s%s in%d%s' % ((var.dtype,) + (
                ('', k, '') if _is_scalar(var) else ('*', k, '_'))))
            load += [] if _is_scalar(var) else ['const npy_%s in%d = in%d_[i];' % (var.dtype, k, k)]
        for k, var in enumerate(node.outputs):
            params.append('npy_%s* out%d_' % (var.dtype, k))
            load.append('npy_%s out%d;' % (var.dtype, k))
        store = ' '.join('out%d_[i] = out%d;' % (k, k) for k in range(len(node.outputs)))
        return code + '\n' + c_source('flat.c') % dict(
            name=name, params=', '.join(params), load=' '.join(load), task=task, store=store)

    def c_code(self, node, name, inames, onames, sub):
        loop = super().c_code(node, name, inames, onames, sub)
        if self._task(node, name) is None:
            return loop
        full = [x for x, var in zip(inames, node.inputs) if not _is_scalar(var)]
        shaped = ' && '.join('PyArray_CompareLists(PyArray_DIMS(%s), PyArray_DIMS(%s), %d)' % (
            x, full[0], node.outputs[0].ndim) for x in full)
        contiguous = ' && '.join('PyArray_IS_C_CONTIGUOUS(%s)' % x for x in full)
        what = ''.join(c for c in str(self.scalar_op)[:60] if c not in '"\\%')
        told = ('static bool told = false;  /* once per process */\n'
                'if (!told && %s) { told = true; if (PyErr_WarnEx(PyExc_RuntimeWarning, '
                '"theanets FlatElemwise (%s): operands not C-contiguous, running '
                'PyTensor\'s strided loop (warned once)", 1)) %s }' % (shaped, what, sub['fail']))
        args = ['((npy_%s*)PyArray_DATA(%s))%s' % (var.dtype, x, '[0]' if _is_scalar(var) else '')
                for x, var in zip(inames, node.inputs)]
        flat = []
        for k, (out, var) in enumerate(zip(onames, node.outputs)):
            source = self.inplace_pattern.get(k)
            flat.append('Py_XDECREF({0}); {0} = {1}; Py_INCREF({0});'.format(
                out, inames[source]) if source is not None else
                'if (thn_output(&{}, {}, PyArray_DIMS({}), {}, false)) {}'.format(
                    out, var.ndim, full[0], var.type.dtype_specs()[2], sub['fail']))
            args.append('(npy_%s*)PyArray_DATA(%s)' % (var.dtype, out))
        flat.append('if (thn_flat_%s(PyArray_SIZE(%s), %s)) %s' % (
            name, full[0], ', '.join(args), sub['fail']))
        return 'if (%s && %s) {\n%s\n} else {\n%s\n%s\n}' % (
            shaped, contiguous, '\n'.join(flat), told, loop)

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fno-math-errno']  # vectorizes sqrt

    def c_code_cache_version_apply(self, node):
        version = super().c_code_cache_version_apply(node)
        return version and version + digest(__name__, ('flat.c',))


@node_rewriter([Elemwise])
def _flatten(fgraph, node):
    """An Elemwise of float arrays shaped like its output and of broadcast scalars."""
    op, out = node.op, node.outputs[0]
    if type(op) is not Elemwise or op.openmp or not out.ndim or any(out.broadcastable) or \
            any(v.dtype not in ('float32', 'float64') for v in node.outputs):
        return None
    scalar = [_is_scalar(v) for v in node.inputs]
    full = [v.broadcastable == out.broadcastable for v in node.inputs]
    if not (any(scalar) and any(full) and all(s or f for s, f in zip(scalar, full))):
        return None
    return FlatElemwise(op.scalar_op, op.inplace_pattern, op.name, op.nfunc_spec)(
        *node.inputs, return_list=True)


if FLAT_ELEMWISE_TAG not in optdb.__db__:
    optdb.register(FLAT_ELEMWISE_TAG, in2out(_flatten), position=99.5)
