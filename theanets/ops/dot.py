r"""float32 matrix products on the AVX-512 register-tile kernels of the recurrent ops.

OpenBLAS may run with a kernel older than the CPU (``OPENBLAS_CORETYPE``, or
a build without AVX-512 support), while the fused recurrent ops carry their own
AVX-512 kernels. :class:`DotOp` computes ``A . B`` for float32 matrices with
those kernels, blocked for the caches and spread over the ops' shared thread
pool. A rewrite registered by :mod:`theanets.backend` puts it in place of
PyTensor's ``Dot`` in C modes when the CPU has AVX-512 (see
:func:`theanets.backend.fast_dot_enabled`); elsewhere ``Dot`` stays, and the
Op itself falls back to BLAS.

``A`` and ``B`` may have any strides (a transposed view costs nothing for
``A``; a ``B`` whose rows are not contiguous is packed once per call).
"""

import numpy as np

import pytensor.tensor as pt
from pytensor.graph.basic import Apply

from . import recurrent as _rec

_C_VERSION = 5

_DOT_CODE = r"""
#ifndef THN_DOT_SUPPORT
#define THN_DOT_SUPPORT

#define THN_DOT_KB 256   /* depth of a block: 32-wide B panels of 32 KB */
#define THN_DOT_RB 96    /* rows of a block: A block of 96 KB at most */

struct thn_dot_job {
    int M, N, K;
    const float* A;
    npy_intp ars, aks;
    const float* B;
    npy_intp ldb;
    float* C;
    npy_intp ldc;
    bool accumulate;
};

#ifdef THN_FAST
static void thn_dot_rows(const thn_dot_job* j, int r0, int r1) {
    for (int kb = 0; kb < j->K; kb += THN_DOT_KB) {
        const int kl = j->K - kb < THN_DOT_KB ? j->K - kb : THN_DOT_KB;
        for (int rb = r0; rb < r1; rb += THN_DOT_RB) {
            const int rl = r1 - rb < THN_DOT_RB ? r1 - rb : THN_DOT_RB;
            const float* a = j->A + rb * j->ars + kb * j->aks;
            for (int c = 0; c < j->N; c += 32) {
                const int nc = j->N - c < 32 ? j->N - c : 32;
                thn_mm(rl, kl, nc, a, j->ars, j->aks, j->B + (npy_intp)kb * j->ldb + c, j->ldb,
                       j->C + rb * j->ldc + c, j->ldc, kb > 0 || j->accumulate);
            }
        }
    }
}

static void thn_dot_task(void* ctx, int tid, int nt) {
    const thn_dot_job* j = (const thn_dot_job*)ctx;
    const int tiles = (j->M + 7) / 8, per = ((tiles + nt - 1) / nt) * 8;
    const int r0 = tid * per;
    const int r1 = r0 + per < j->M ? r0 + per : j->M;
    if (r0 < r1) thn_dot_rows(j, r0, r1);
}
#endif

struct thn_transpose_job {
    int R, C;
    const float* src;
    npy_intp lds;
    float* dst;
    npy_intp ldd;
};

/* thread tid transposes its share of the source columns, in blocks of 8 */
static void thn_transpose_task(void* ctx, int tid, int nt) {
    const thn_transpose_job* j = (const thn_transpose_job*)ctx;
    const int blocks = (j->C + 7) / 8, per = (blocks + nt - 1) / nt;
    const int c0 = tid * per * 8, c1 = (tid + 1) * per * 8 < j->C ? (tid + 1) * per * 8 : j->C;
    if (c0 < c1)
        thn_rec_transpose<float>(j->R, c1 - c0, j->src + c0, j->lds,
                                 j->dst + (npy_intp)c0 * j->ldd, j->ldd);
}

/* C (M x N, row stride ldc) = A (M x K) . B (K x N), or C += A . B with
   `accumulate`; A(r, k) = A[r ars + k aks], B(k, c) = B[k brs + c bcs].
   Returns -1 when out of memory. */
static int thn_dot(int M, int N, int K, const float* A, npy_intp ars, npy_intp aks,
                   const float* B, npy_intp brs, npy_intp bcs, float* C, npy_intp ldc,
                   bool accumulate = false) {
    if (M == 0 || N == 0) return 0;
    if (K == 0) {
        if (accumulate) return 0;
        for (int r = 0; r < M; ++r) memset(C + r * ldc, 0, N * sizeof(float));
        return 0;
    }
#ifdef THN_FAST
    if (THN_USE_FAST) {
        float* packed = NULL;
        npy_intp ldb = brs;
        if (bcs != 1) {   /* rows of B not contiguous: a row-major copy */
            packed = (float*)malloc(sizeof(float) * (size_t)K * N);
            if (!packed) return -1;
            if (brs == 1) {  /* B is the transpose of a row-major (N x K) matrix */
                thn_transpose_job tj = {N, K, B, bcs, packed, N};
                thn_run((double)N * K < 65536 ? 1 : thn_max_threads(), thn_transpose_task, &tj);
            } else
                for (int k = 0; k < K; ++k)
                    for (int c = 0; c < N; ++c) packed[(size_t)k * N + c] = B[k * brs + c * bcs];
            B = packed;
            ldb = N;
        }
        thn_dot_job job = {M, N, K, A, ars, aks, B, ldb, C, ldc, accumulate};
        int nt = 2.0 * M * N * K < 4e5 ? 1 : thn_max_threads();
        const int tiles = (M + 7) / 8;
        thn_run(nt < tiles ? nt : tiles, thn_dot_task, &job);
        free(packed);
        return 0;
    }
#endif
    /* BLAS: needs unit stride along one axis of each operand */
    const bool at = ars == 1, bt = brs == 1;
    thn_rec_gemm<float>(at, bt, M, N, K, 1.0f, A, at ? aks : ars, B, bt ? bcs : brs,
                        accumulate ? 1.0f : 0.0f, C, ldc);
    return 0;
}
#endif
"""


def support_code():
    """C support code defining ``thn_dot`` (with the recurrent ops' kernels and pool).

    Ops that include it should also take the link flags and cache version of
    :class:`DotOp` (subclass it or its base ``_RecurrentCOp``).
    """
    return _rec.support_code() + _DOT_CODE


class DotOp(_rec._RecurrentCOp):
    """``A . B`` for float32 matrices: inputs ``A`` (M, K), ``B`` (K, N); output (M, N)."""

    def c_support_code(self, **kwargs):
        return support_code()

    def c_code_cache_version(self):
        return (_C_VERSION,) + super().c_code_cache_version()

    def make_node(self, a, b):
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        if a.ndim != 2 or b.ndim != 2 or a.dtype != 'float32' or b.dtype != 'float32':
            raise TypeError('DotOp multiplies float32 matrices, got {} {} and {} {}'.format(
                a.ndim, a.dtype, b.ndim, b.dtype))
        out = pt.TensorType('float32', shape=(a.type.shape[0], b.type.shape[1]))
        return Apply(self, [a, b], [out()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def perform(self, node, inputs, outputs):
        a, b = inputs
        _check(a.shape, b.shape)
        outputs[0][0] = np.dot(a, b)

    def c_code(self, node, name, inputs, outputs, sub):
        return r"""
{
    PyArrayObject* a = %(a)s;
    PyArrayObject* b = %(b)s;
    const npy_intp M = PyArray_DIMS(a)[0], K = PyArray_DIMS(a)[1], N = PyArray_DIMS(b)[1];
    if (PyArray_DIMS(b)[0] != K) {
        PyErr_Format(PyExc_ValueError, "matrix product: A has shape (%%ld, %%ld) but B has "
                     "shape (%%ld, %%ld); A's columns must equal B's rows",
                     (long)M, (long)K, (long)PyArray_DIMS(b)[0], (long)N);
        %(fail)s
    }
    /* a unit stride along one axis of each operand (BLAS needs it; a copy otherwise) */
    npy_intp as0 = PyArray_STRIDES(a)[0] / 4, as1 = PyArray_STRIDES(a)[1] / 4;
    npy_intp bs0 = PyArray_STRIDES(b)[0] / 4, bs1 = PyArray_STRIDES(b)[1] / 4;
    bool acopy = (as0 != 1 || M == 1) && as1 != 1 && K > 1;
    bool bcopy = (bs0 != 1 || K == 1) && bs1 != 1 && N > 1;
    if (acopy) { a = (PyArrayObject*)PyArray_NewCopy(a, NPY_CORDER); if (!a) %(fail)s }
    if (bcopy) {
        b = (PyArrayObject*)PyArray_NewCopy(b, NPY_CORDER);
        if (!b) { if (acopy) Py_DECREF(a); %(fail)s }
    }
    as0 = PyArray_STRIDES(a)[0] / 4; as1 = PyArray_STRIDES(a)[1] / 4;
    bs0 = PyArray_STRIDES(b)[0] / 4; bs1 = PyArray_STRIDES(b)[1] / 4;
    if (M == 1) as0 = K;   /* strides of length-1 axes are arbitrary */
    if (K == 1) { as1 = 1; bs0 = N; }
    if (N == 1) bs1 = 1;
    npy_intp dims[2] = {M, N};
    int rc = thn_rec_alloc(&%(z)s, 2, dims, NPY_FLOAT32);
    if (!rc)
        rc = thn_dot((int)M, (int)N, (int)K, (const float*)PyArray_DATA(a), as0, as1,
                     (const float*)PyArray_DATA(b), bs0, bs1, (float*)PyArray_DATA(%(z)s), N);
    if (acopy) Py_DECREF(a);
    if (bcopy) Py_DECREF(b);
    if (rc) { if (!PyErr_Occurred()) PyErr_NoMemory(); %(fail)s }
}
""" % dict(a=inputs[0], b=inputs[1], z=outputs[0], fail=sub['fail'])


def _check(ashape, bshape):
    if ashape[1] != bshape[0]:
        raise ValueError('matrix product: A has shape {} but B has shape {}; A\'s columns '
                         'must equal B\'s rows'.format(ashape, bshape))
