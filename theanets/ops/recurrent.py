"""Fused recurrent-layer operations: a whole time loop in one PyTensor Op.

A recurrent layer built on :func:`pytensor.scan` spends most of its time in
the per-step loop machinery. The Ops here run the entire time loop of an RNN,
GRU or LSTM layer in a single Op written in C, and their gradient is another
single Op that runs backpropagation through time over the whole sequence.

The input projection ``x . W + b`` for all time steps is computed *outside*
the Ops as one big matrix product; the Ops receive the projected inputs
time-major, shape ``(T, B, k * n)`` (``T`` time steps, ``B`` sequences in the
batch, ``n`` units). For speed, project time-major inputs (dimshuffle ``x`` to
``(T, B, nin)`` before the product) so that the projection is contiguous; any
array whose last axis is contiguous is accepted without a copy.

Public functions (all return symbolic variables, time-major):

- :func:`lstm`, :func:`gru`, :func:`rnn` -- the fused Ops;
- :func:`lstm_scan`, :func:`gru_scan`, :func:`rnn_scan` -- plain
  :func:`pytensor.scan` formulations with the same signatures and outputs
  (used as references and as the fallback for truncated backpropagation or
  activations the fused Ops do not support);
- :func:`supports_activation` -- whether :func:`gru`/:func:`rnn` accept an
  activation name.

The forward Ops also return an internal ``cache`` output (gate activations)
that their gradient Op consumes, so the backward pass does not recompute the
gates; the public functions hide it. Only first derivatives are available.
Both ``float32`` and ``float64`` are supported (all inputs are cast to the
dtype of ``xproj``). Each Op has a C implementation (used in PyTensor's C
modes such as ``'CVM'``) and a NumPy ``perform`` used elsewhere.

Implementation notes. There are two C implementations of every loop:

- float32 on CPUs with AVX-512 (when PyTensor's compiler flags enable it):
  the recurrent weights are packed once per call and multiplied with
  register-tiled AVX-512 code, and the time loop is shared by a few threads,
  each owning a range of units (so one or two barriers per step); weight
  gradients accumulate inside the backward loop. On this kind of CPU the
  OpenBLAS wheel may select older AVX2 kernels, and this path is about twice
  as fast per product. Threads: ``THEANETS_NUM_THREADS``, else
  ``OMP_NUM_THREADS``, else the usable CPUs; small problems use one. When a
  thread loses its CPU for long (a busy machine), the call finishes on one
  thread.
- otherwise (float64, other CPUs, or ``THEANETS_FUSED_FAST=0``): BLAS
  (``sgemm``/``dgemm``) once or twice per step, elementwise work in C.
"""

import re

import numpy as np
import scipy.special

import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32 as scalar_int32
from pytensor.tensor.blas import ldflags
from pytensor.tensor.blas_headers import blas_header_text, blas_header_version
from pytensor.tensor.type import TensorType

from . import cmath

__all__ = ['lstm', 'gru', 'rnn', 'lstm_scan', 'gru_scan', 'rnn_scan',
           'supports_activation', 'LSTMOp', 'LSTMGradOp', 'GRUOp', 'GRUGradOp',
           'RNNOp', 'RNNGradOp']

# activation name -> (canonical name, code used in the C templates)
_ACTIVATIONS = {
    'linear': ('linear', 0),
    'relu': ('relu', 1),
    'rect:max': ('relu', 1),
    'tanh': ('tanh', 2),
    'logistic': ('logistic', 3),
    'sigmoid': ('logistic', 3),
}

_C_VERSION = 28

# The C modules' shared thread pool (a capsule set by the first one to run).
_thn_pool = None


def supports_activation(name):
    """Tell whether the fused :func:`rnn` and :func:`gru` support an activation.

    Parameters
    ----------
    name : str
        An activation name: ``'linear'``, ``'relu'`` (or ``'rect:max'``),
        ``'tanh'``, ``'logistic'`` or ``'sigmoid'`` are supported.

    Returns
    -------
    bool
        False for anything else (composed activations like ``'tanh+norm:z'``,
        learnable activations, ``Activation`` objects); callers then use the
        scan versions.
    """
    return isinstance(name, str) and name in _ACTIVATIONS


def _canonical(activation):
    if not supports_activation(activation):
        raise ValueError('activation {!r} is not supported by the fused recurrent '
                         'ops; supported: {}'.format(activation, sorted(_ACTIVATIONS)))
    return _ACTIVATIONS[activation][0]


# ---------------------------------------------------------------------------
# NumPy helpers (used by the Ops' perform methods)
# ---------------------------------------------------------------------------

def _np_act(name, x):
    if name == 'linear':
        return x.copy()
    if name == 'relu':
        return np.maximum(x, 0)
    if name == 'tanh':
        return np.tanh(x)
    return scipy.special.expit(x)


def _np_act_grad(name, pre, out):
    """Derivative of the activation, from its argument and its value."""
    if name == 'linear':
        return np.ones_like(pre)
    if name == 'relu':
        return (pre > 0).astype(pre.dtype)
    if name == 'tanh':
        return 1 - out * out
    return out * (1 - out)


_sigmoid = scipy.special.expit


# ---------------------------------------------------------------------------
# C support code shared by every Op of this module
# ---------------------------------------------------------------------------

_SUPPORT_CODE = r"""
#include <string.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef THN_REC_SUPPORT
#define THN_REC_SUPPORT

/* The loops below must be vectorized and the math inlined even though GCC
   may consider the generated call site cold. */
#define THN_INLINE static inline __attribute__((always_inline))
#define THN_HOT __attribute__((hot, noinline))

/* ---- row-major GEMM on top of the Fortran BLAS interface ----------------
   C (M x N, leading dim ldc) = alpha * op(A) op(B) + beta * C,
   op(A) is M x K, op(B) is K x N; all matrices row-major. */
static void thn_rec_gemm_f(char ta, char tb, int M, int N, int K, float alpha,
                           const float* A, int lda, const float* B, int ldb,
                           float beta, float* C, int ldc) {
    sgemm_(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
}
static void thn_rec_gemm_f(char ta, char tb, int M, int N, int K, double alpha,
                           const double* A, int lda, const double* B, int ldb,
                           double beta, double* C, int ldc) {
    dgemm_(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
}
template <typename T>
static void thn_rec_gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha,
                         const T* A, int lda, const T* B, int ldb,
                         T beta, T* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j)
                C[(size_t)i * ldc + j] = beta == 0 ? (T)0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    thn_rec_gemm_f(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                   A, lda, B, ldb, beta, C, ldc);
}

/* dst (C x R, leading dim ldd) = transpose of src (R x C, leading dim lds),
   8 destination rows at a time, each filled front to back: with power-of-two
   strides, square blocks map more lines to one cache set than it holds. */
template <typename T>
static void thn_rec_transpose(int R, int C, const T* src, npy_intp lds, T* dst, npy_intp ldd) {
    int c0 = 0;
    for (; c0 + 8 <= C; c0 += 8) {
        T* d = dst + (npy_intp)c0 * ldd;
        for (int r = 0; r < R; ++r) {
            const T* s = src + (npy_intp)r * lds + c0;
            for (int j = 0; j < 8; ++j) d[j * ldd + r] = s[j];
        }
    }
    for (; c0 < C; ++c0)
        for (int r = 0; r < R; ++r) dst[(npy_intp)c0 * ldd + r] = src[(npy_intp)r * lds + c0];
}

""" + cmath.ELEMENTWISE + r"""

/* activation codes: 0 linear, 1 relu, 2 tanh, 3 logistic */
template <int ACT, typename T> THN_INLINE T thn_rec_act(T x) {
    if (ACT == 0) return x;
    if (ACT == 1) return x > 0 ? x : (T)0;
    if (ACT == 2) return thn_rec_tanh(x);
    return thn_rec_sigmoid(x);
}
/* derivative from the argument and the value */
template <int ACT, typename T> THN_INLINE T thn_rec_dact(T pre, T out) {
    if (ACT == 0) return (T)1;
    if (ACT == 1) return pre > 0 ? (T)1 : (T)0;
    if (ACT == 2) return (T)1 - out * out;
    return out * ((T)1 - out);
}

/* ---- array plumbing ------------------------------------------------------ */

/* A new reference to `a` or to a copy of it, such that the last axis is
   contiguous and every stride is a multiple of the item size. */
static PyArrayObject* thn_rec_rowview(PyArrayObject* a) {
    int nd = PyArray_NDIM(a);
    npy_intp is = PyArray_ITEMSIZE(a);
    bool ok = PyArray_ISALIGNED(a) && PyArray_ISNOTSWAPPED(a);
    for (int k = 0; k < nd && ok; ++k) {
        if (PyArray_STRIDES(a)[k] % is) ok = false;
        if (k == nd - 1 && PyArray_DIMS(a)[k] > 1 && PyArray_STRIDES(a)[k] != is) ok = false;
    }
    if (ok) { Py_INCREF(a); return a; }
    return (PyArrayObject*)PyArray_NewCopy(a, NPY_CORDER);
}

/* A new reference to a C-contiguous version of `a`. */
static PyArrayObject* thn_rec_contig(PyArrayObject* a) {
    return (PyArrayObject*)PyArray_FromAny((PyObject*)a, NULL, 0, 0,
                                           NPY_ARRAY_CARRAY_RO, NULL);
}

/* Make *out a C-contiguous, writeable array of the given shape and type,
   reusing the current one when possible. */
static int thn_rec_alloc(PyArrayObject** out, int nd, const npy_intp* dims, int typenum) {
    PyArrayObject* o = *out;
    if (o && PyArray_NDIM(o) == nd && PyArray_TYPE(o) == typenum &&
        PyArray_IS_C_CONTIGUOUS(o) && PyArray_ISWRITEABLE(o)) {
        bool same = true;
        for (int k = 0; k < nd; ++k) same = same && PyArray_DIMS(o)[k] == dims[k];
        if (same) return 0;
    }
    Py_XDECREF(o);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, (npy_intp*)dims, typenum, 0);
    return *out ? 0 : -1;
}

static int thn_rec_check(PyArrayObject* a, int nd, const npy_intp* dims, const char* what) {
    bool ok = PyArray_NDIM(a) == nd;
    for (int k = 0; k < nd && ok; ++k) ok = PyArray_DIMS(a)[k] == dims[k];
    if (!ok) {
        char got[160] = "", want[160] = "";
        for (int k = 0; k < PyArray_NDIM(a) && k < 6; ++k)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%ld",
                     k ? ", " : "", (long)PyArray_DIMS(a)[k]);
        for (int k = 0; k < nd && k < 6; ++k)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%ld",
                     k ? ", " : "", (long)dims[k]);
        PyErr_Format(PyExc_ValueError,
                     "fused recurrent op: %s has shape (%s), expected (%s)", what, got, want);
        return -1;
    }
    return 0;
}

/* strides of a 3-d row view, in elements */
#define THN_S0(a) (PyArray_STRIDES(a)[0] / (npy_intp)PyArray_ITEMSIZE(a))
#define THN_S1(a) (PyArray_STRIDES(a)[1] / (npy_intp)PyArray_ITEMSIZE(a))

/* =========================================================================
   Per-row cell computations over the units [j0, j1). Shared by the generic
   kernels (j0 = 0, j1 = n) and by the threaded float32 kernels.
   ========================================================================= */

/* LSTM forward: g holds the row's 4n gate pre-activations on entry and the
   activations [i, f, u = tanh(cell input), o] on exit. */
template <typename T>
THN_INLINE void thn_lstm_row_fwd(int n, int j0, int j1, T* g, const T* cpb,
                                 const T* ci, const T* cf, const T* co, T* cb, T* hb) {
    T* gi = g;
    T* gf = g + n;
    T* gu = g + 2 * n;
    T* go = g + 3 * n;
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T cprev = cpb[j];
        T i = thn_rec_sigmoid(gi[j] + cprev * ci[j]);
        T f = thn_rec_sigmoid(gf[j] + cprev * cf[j]);
        T u = thn_rec_tanh(gu[j]);
        T cc = f * cprev + i * u;
        T o = thn_rec_sigmoid(go[j] + cc * co[j]);
        cb[j] = cc;
        hb[j] = o * thn_rec_tanh(cc);
        gi[j] = i; gf[j] = f; gu[j] = u; go[j] = o;
    }
}

/* LSTM backward for one row: dhr / dcr are the running gradients of h and c
   (updated to the previous step), d receives the 4n gate gradients. */
template <typename T>
THN_INLINE void thn_lstm_row_bwd(int n, int j0, int j1, const T* g, const T* cpb, const T* cb,
                                 const T* ci, const T* cf, const T* co,
                                 const T* dhob, const T* dcob, T* dhr, T* dcr, T* d,
                                 T* dci, T* dcf, T* dco_w) {
    const T* gi = g;
    const T* gf = g + n;
    const T* gu = g + 2 * n;
    const T* go = g + 3 * n;
    T* di = d;
    T* df = d + n;
    T* du = d + 2 * n;
    T* dout = d + 3 * n;
    if (dhob)
        for (int j = j0; j < j1; ++j) dhr[j] += dhob[j];
    if (dcob)
        for (int j = j0; j < j1; ++j) dcr[j] += dcob[j];
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T dh = dhr[j];
        T cc = cb[j], cprev = cpb[j];
        T i = gi[j], f = gf[j], u = gu[j], o = go[j];
        T tc = thn_rec_tanh(cc);
        T dgo = dh * tc * o * ((T)1 - o);
        T dc = dcr[j] + dh * o * ((T)1 - tc * tc) + dgo * co[j];
        T dgi = dc * u * i * ((T)1 - i);
        T dgf = dc * cprev * f * ((T)1 - f);
        T dgu = dc * i * ((T)1 - u * u);
        dcr[j] = dc * f + dgi * ci[j] + dgf * cf[j];
        dci[j] += dgi * cprev;
        dcf[j] += dgf * cprev;
        dco_w[j] += dgo * cc;
        di[j] = dgi; df[j] = dgf; du[j] = dgu; dout[j] = dgo;
    }
}

/* GRU forward, gates: tr / tz = h_{t-1} . hr / hz for the row */
template <typename T>
THN_INLINE void thn_gru_row_gates(int n, int j0, int j1, const T* xb, const T* tr, const T* tz,
                                  const T* hpb, T* rb, T* rhb, T* zb, T* pb) {
    const T* xr = xb + n;
    const T* xz = xb + 2 * n;
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T r = thn_rec_sigmoid(xr[j] + tr[j]);
        rb[j] = r;
        rhb[j] = r * hpb[j];
        zb[j] = thn_rec_sigmoid(xz[j] + tz[j]);
        pb[j] = xb[j];
    }
}

/* GRU forward, state update from pre */
template <int ACT, typename T>
THN_INLINE void thn_gru_row_state(int j0, int j1, const T* pb, const T* zb, const T* hpb,
                                  T* ab, T* hb) {
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T a = thn_rec_act<ACT>(pb[j]);
        ab[j] = a;
        hb[j] = ((T)1 - zb[j]) * hpb[j] + zb[j] * a;
    }
}

/* GRU backward, first part: dc is the running gradient of h (set to its
   direct part for the previous step); writes dpre (dp) and drate-gate (dz). */
template <int ACT, typename T>
THN_INLINE void thn_gru_row_bwd1(int j0, int j1, T* dc, const T* ghb, const T* gpb,
                                 const T* gab, const T* gzb, const T* zb, const T* ab,
                                 const T* pb, const T* hpb, T* dp, T* dz) {
    if (ghb)
        for (int j = j0; j < j1; ++j) dc[j] += ghb[j];
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T dh = dc[j], z = zb[j], a = ab[j];
        dz[j] = dh * (a - hpb[j]);
        dp[j] = dh * z;
        dc[j] = dh * ((T)1 - z);
    }
    if (gzb)
        for (int j = j0; j < j1; ++j) dz[j] += gzb[j];
    if (gab)
        for (int j = j0; j < j1; ++j) dp[j] += gab[j];
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T z = zb[j];
        dz[j] = dz[j] * z * ((T)1 - z);
        dp[j] = dp[j] * thn_rec_dact<ACT>(pb[j], ab[j]);
    }
    if (gpb)
        for (int j = j0; j < j1; ++j) dp[j] += gpb[j];
}

/* GRU backward, second part: drb = d(r * h_{t-1}) for the row */
template <typename T>
THN_INLINE void thn_gru_row_bwd2(int j0, int j1, const T* drb, const T* hpb, const T* rb,
                                 T* dr, T* dc) {
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) {
        T r = rb[j];
        dr[j] = drb[j] * hpb[j] * r * ((T)1 - r);
        dc[j] += drb[j] * r;
    }
}

template <int ACT, typename T>
THN_INLINE void thn_rnn_row_fwd(int j0, int j1, const T* pb, T* hb) {
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) hb[j] = thn_rec_act<ACT>(pb[j]);
}

template <int ACT, typename T>
THN_INLINE void thn_rnn_row_bwd(int j0, int j1, T* dc, const T* ghb, const T* gpb,
                                const T* pb, const T* hb, T* db) {
    if (ghb)
        for (int j = j0; j < j1; ++j) dc[j] += ghb[j];
#pragma GCC ivdep
    for (int j = j0; j < j1; ++j) db[j] = dc[j] * thn_rec_dact<ACT>(pb[j], hb[j]);
    if (gpb)
        for (int j = j0; j < j1; ++j) db[j] += gpb[j];
}

/* =========================================================================
   Generic kernels (any float type): BLAS for every product.
   Conventions: sequences are (T, B, k) C-contiguous except the projected
   inputs xp and the output gradients g*, whose rows are at strides
   (s0, s1) elements with a contiguous last axis; a NULL output gradient
   means "no gradient". Return 0, or -1 when out of memory.
   ========================================================================= */

/* Projected inputs: with xw == NULL, xp holds x . W + b for every step (4n
   columns); otherwise xp holds the raw inputs (nin columns) and the kernels
   project them, adding the bias xb (may be NULL) and, backward,
   accumulating the gradients dxw (nin x 4n) and dxb (4n). */
template <typename T>
static void thn_gates_init(int B, int G, int j0, int j1, int S, const T* xrow, npy_intp xs1,
                           const T* xb, T* g) {
    /* g[b, k S + j] for j in [j0, j1) and every block k: the projected row or the bias */
    for (int b = 0; b < B; ++b)
        for (int k = 0; k * S < G; ++k) {
            T* dst = g + (size_t)b * G + k * S + j0;
            const T* src = xrow ? xrow + b * xs1 + k * S + j0 : (xb ? xb + k * S + j0 : NULL);
            if (src) memcpy(dst, src, (j1 - j0) * sizeof(T));
            else memset(dst, 0, (j1 - j0) * sizeof(T));
        }
}

template <typename T>
static THN_HOT int thn_lstm_fwd(int nT, int B, int n,
                                const T* xp, npy_intp xs0, npy_intp xs1,
                                int nin, const T* xw, const T* xb,
                                const T* hh, const T* ci, const T* cf, const T* co,
                                const T* h0, const T* c0, T* h, T* c, T* cache,
                                bool keep) {
    const int G = 4 * n;
    const size_t Bn = (size_t)B * n, BG = keep ? (size_t)B * G : 0;
    for (int t = 0; t < nT; ++t) {
        T* g = cache + t * BG;
        const T* hp = t ? h + (t - 1) * Bn : h0;
        const T* cp = t ? c + (t - 1) * Bn : c0;
        thn_gates_init<T>(B, G, 0, n, n, xw ? NULL : xp + t * xs0, xs1, xb, g);
        if (xw) thn_rec_gemm<T>(false, false, B, G, nin, 1, xp + t * xs0, xs1, xw, G, 1, g, G);
        thn_rec_gemm<T>(false, false, B, G, n, 1, hp, n, hh, G, 1, g, G);
        for (int b = 0; b < B; ++b)
            thn_lstm_row_fwd<T>(n, 0, n, g + (size_t)b * G, cp + (size_t)b * n, ci, cf, co,
                                c + t * Bn + (size_t)b * n, h + t * Bn + (size_t)b * n);
    }
    return 0;
}

/* dh0 and dc0 double as the running recurrent gradients. */
/* dxw = sum_t x_t^T d_t and dxb = column sums of d (generic kernels) */
template <typename T>
static void thn_proj_grads(int nT, int B, int G, int nin, const T* xp, npy_intp xs0,
                           npy_intp xs1, const T* d, T* dxw, T* dxb) {
    memset(dxw, 0, (size_t)nin * G * sizeof(T));
    memset(dxb, 0, G * sizeof(T));
    for (int t = 0; t < nT; ++t)
        thn_rec_gemm<T>(true, false, nin, G, B, 1, xp + t * xs0, xs1, d + (size_t)t * B * G, G,
                        1, dxw, G);
    for (size_t r = 0; r < (size_t)nT * B; ++r)
        for (int j = 0; j < G; ++j) dxb[j] += d[r * G + j];
}

template <typename T>
static THN_HOT int thn_lstm_bwd(int nT, int B, int n,
                                const T* xp, npy_intp xs0, npy_intp xs1, int nin,
                                T* dxw, T* dxb,
                                const T* hh, const T* ci, const T* cf, const T* co,
                                const T* h0, const T* c0, const T* h, const T* c, const T* cache,
                                const T* dho, npy_intp hs0, npy_intp hs1,
                                const T* dco, npy_intp cs0, npy_intp cs1,
                                T* dx, T* dhh, T* dci, T* dcf, T* dco_w, T* dh0, T* dc0) {
    const int G = 4 * n;
    const size_t Bn = (size_t)B * n, BG = (size_t)B * G;
    /* hh^T (4n x n): the per-step product dgates . hh^T runs faster on it */
    T* hhT = (T*)malloc(sizeof(T) * ((size_t)G * n + 1));
    if (!hhT) return -1;
    thn_rec_transpose<T>(n, G, hh, G, hhT, n);
    memset(dh0, 0, Bn * sizeof(T));
    memset(dc0, 0, Bn * sizeof(T));
    memset(dci, 0, n * sizeof(T));
    memset(dcf, 0, n * sizeof(T));
    memset(dco_w, 0, n * sizeof(T));
    for (int t = nT - 1; t >= 0; --t) {
        const T* cp = t ? c + (t - 1) * Bn : c0;
        T* d = dx + t * BG;
        for (int b = 0; b < B; ++b)
            thn_lstm_row_bwd<T>(n, 0, n, cache + t * BG + (size_t)b * G, cp + (size_t)b * n,
                                c + t * Bn + (size_t)b * n, ci, cf, co,
                                dho ? dho + t * hs0 + b * hs1 : NULL,
                                dco ? dco + t * cs0 + b * cs1 : NULL,
                                dh0 + (size_t)b * n, dc0 + (size_t)b * n, d + (size_t)b * G,
                                dci, dcf, dco_w);
        thn_rec_gemm<T>(false, false, B, n, G, 1, d, G, hhT, n, 0, dh0, n);
    }
    /* dhh = sum_t h_{t-1}^T dgates_t */
    thn_rec_gemm<T>(true, false, n, G, B, 1, h0, n, dx, G, 0, dhh, G);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, G, (nT - 1) * B, 1, h, n, dx + BG, G, 1, dhh, G);
    if (dxw) thn_proj_grads<T>(nT, B, G, nin, xp, xs0, xs1, dx, dxw, dxb);
    free(hhT);
    return 0;
}

/* GRU: xproj blocks [candidate, reset, rate]; cache[t] = [r, r * h_{t-1}] */
template <int ACT, typename T>
static THN_HOT int thn_gru_fwd(int nT, int B, int n,
                               const T* xp, npy_intp xs0, npy_intp xs1,
                               const T* hh, const T* hr, const T* hz, const T* h0,
                               T* h, T* pre, T* hid, T* rate, T* cache) {
    const size_t Bn = (size_t)B * n;
    /* scratch: w2 = [hr | hz] (n x 2n), tmp = h_{t-1} . w2 (B x 2n) */
    T* w2 = (T*)malloc(sizeof(T) * (2 * (size_t)n * n + 2 * Bn + 1));
    if (!w2) return -1;
    T* tmp = w2 + 2 * (size_t)n * n;
    for (int i = 0; i < n; ++i) {
        memcpy(w2 + (size_t)i * 2 * n, hr + (size_t)i * n, n * sizeof(T));
        memcpy(w2 + (size_t)i * 2 * n + n, hz + (size_t)i * n, n * sizeof(T));
    }
    for (int t = 0; t < nT; ++t) {
        const T* hp = t ? h + (t - 1) * Bn : h0;
        T* ct = cache + 2 * t * Bn;
        const size_t o = t * Bn;
        thn_rec_gemm<T>(false, false, B, 2 * n, n, 1, hp, n, w2, 2 * n, 0, tmp, 2 * n);
        for (int b = 0; b < B; ++b) {
            const size_t ob = (size_t)b * n;
            thn_gru_row_gates<T>(n, 0, n, xp + t * xs0 + b * xs1, tmp + 2 * ob, tmp + 2 * ob + n,
                                 hp + ob, ct + 2 * ob, ct + 2 * ob + n, rate + o + ob,
                                 pre + o + ob);
        }
        thn_rec_gemm<T>(false, false, B, n, n, 1, ct + n, 2 * n, hh, n, 1, pre + o, n);
        for (int b = 0; b < B; ++b) {
            const size_t ob = (size_t)b * n;
            thn_gru_row_state<ACT, T>(0, n, pre + o + ob, rate + o + ob, hp + ob,
                                      hid + o + ob, h + o + ob);
        }
    }
    free(w2);
    return 0;
}

/* gradients arriving at outputs h, pre, hid, rate: g* (NULL when absent);
   dh0 doubles as the running recurrent gradient. */
template <int ACT, typename T>
static THN_HOT int thn_gru_bwd(int nT, int B, int n,
                               const T* hh, const T* hr, const T* hz, const T* h0,
                               const T* h, const T* pre, const T* hid, const T* rate,
                               const T* cache,
                               const T* gh, npy_intp gh0, npy_intp gh1,
                               const T* gp, npy_intp gp0, npy_intp gp1,
                               const T* ga, npy_intp ga0, npy_intp ga1,
                               const T* gz, npy_intp gz0, npy_intp gz1,
                               T* dx, T* dhh, T* dhr, T* dhz, T* dh0) {
    const int G = 3 * n;
    const size_t Bn = (size_t)B * n, BG = (size_t)B * G, nn = (size_t)n * n;
    /* scratch: hh^T (n x n), [hr | hz]^T (2n x n), gradient of [hr | hz]
       (n x 2n), d(r * h_{t-1}) (B x n) */
    T* hhT = (T*)malloc(sizeof(T) * (5 * nn + Bn + 1));
    if (!hhT) return -1;
    T* w2T = hhT + nn;
    T* dw2 = w2T + 2 * nn;
    T* drh = dw2 + 2 * nn;
    thn_rec_transpose<T>(n, n, hh, n, hhT, n);
    thn_rec_transpose<T>(n, n, hr, n, w2T, n);
    thn_rec_transpose<T>(n, n, hz, n, w2T + nn, n);
    memset(dh0, 0, Bn * sizeof(T));
    for (int t = nT - 1; t >= 0; --t) {
        const T* hp = t ? h + (t - 1) * Bn : h0;
        const T* ct = cache + 2 * t * Bn;
        const size_t o = t * Bn;
        T* d = dx + t * BG;
        for (int b = 0; b < B; ++b) {
            const size_t ob = (size_t)b * n;
            thn_gru_row_bwd1<ACT, T>(0, n, dh0 + ob, gh ? gh + t * gh0 + b * gh1 : NULL,
                                     gp ? gp + t * gp0 + b * gp1 : NULL,
                                     ga ? ga + t * ga0 + b * ga1 : NULL,
                                     gz ? gz + t * gz0 + b * gz1 : NULL,
                                     rate + o + ob, hid + o + ob, pre + o + ob, hp + ob,
                                     d + (size_t)b * G, d + (size_t)b * G + 2 * n);
        }
        /* d(r * h_{t-1}) = dpre . hh^T */
        thn_rec_gemm<T>(false, false, B, n, n, 1, d, G, hhT, n, 0, drh, n);
        for (int b = 0; b < B; ++b) {
            const size_t ob = (size_t)b * n;
            thn_gru_row_bwd2<T>(0, n, drh + ob, hp + ob, ct + 2 * ob, d + (size_t)b * G + n,
                                dh0 + ob);
        }
        /* dh_{t-1} += [dr | dz] . [hr | hz]^T */
        thn_rec_gemm<T>(false, false, B, n, 2 * n, 1, d + n, G, w2T, n, 1, dh0, n);
    }
    /* dhh = sum_t (r_t * h_{t-1})^T dpre_t */
    thn_rec_gemm<T>(true, false, n, n, nT * B, 1, cache + n, 2 * n, dx, G, 0, dhh, n);
    /* [dhr | dhz] = sum_t h_{t-1}^T [dr_t | dz_t] */
    thn_rec_gemm<T>(true, false, n, 2 * n, B, 1, h0, n, dx + n, G, 0, dw2, 2 * n);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, 2 * n, (nT - 1) * B, 1, h, n, dx + BG + n, G, 1,
                        dw2, 2 * n);
    for (int i = 0; i < n; ++i) {
        memcpy(dhr + (size_t)i * n, dw2 + (size_t)i * 2 * n, n * sizeof(T));
        memcpy(dhz + (size_t)i * n, dw2 + (size_t)i * 2 * n + n, n * sizeof(T));
    }
    free(hhT);
    return 0;
}

template <int ACT, typename T>
static THN_HOT int thn_rnn_fwd(int nT, int B, int n,
                               const T* xp, npy_intp xs0, npy_intp xs1,
                               const T* hh, const T* h0, T* h, T* pre) {
    const size_t Bn = (size_t)B * n;
    for (int t = 0; t < nT; ++t) {
        const T* hp = t ? h + (t - 1) * Bn : h0;
        T* pt_ = pre + t * Bn;
        for (int b = 0; b < B; ++b)
            memcpy(pt_ + (size_t)b * n, xp + t * xs0 + b * xs1, n * sizeof(T));
        thn_rec_gemm<T>(false, false, B, n, n, 1, hp, n, hh, n, 1, pt_, n);
        thn_rnn_row_fwd<ACT, T>(0, (int)Bn, pt_, h + t * Bn);
    }
    return 0;
}

template <int ACT, typename T>
static THN_HOT int thn_rnn_bwd(int nT, int B, int n,
                               const T* hh, const T* h0, const T* h, const T* pre,
                               const T* gh, npy_intp gh0, npy_intp gh1,
                               const T* gp, npy_intp gp0, npy_intp gp1,
                               T* dx, T* dhh, T* dh0) {
    const size_t Bn = (size_t)B * n;
    T* hhT = (T*)malloc(sizeof(T) * ((size_t)n * n + 1));
    if (!hhT) return -1;
    thn_rec_transpose<T>(n, n, hh, n, hhT, n);
    memset(dh0, 0, Bn * sizeof(T));
    for (int t = nT - 1; t >= 0; --t) {
        T* d = dx + t * Bn;
        for (int b = 0; b < B; ++b) {
            const size_t ob = (size_t)b * n;
            thn_rnn_row_bwd<ACT, T>(0, n, dh0 + ob, gh ? gh + t * gh0 + b * gh1 : NULL,
                                    gp ? gp + t * gp0 + b * gp1 : NULL,
                                    pre + t * Bn + ob, h + t * Bn + ob, d + ob);
        }
        thn_rec_gemm<T>(false, false, B, n, n, 1, d, n, hhT, n, 0, dh0, n);
    }
    thn_rec_gemm<T>(true, false, n, n, B, 1, h0, n, dx, n, 0, dhh, n);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, n, (nT - 1) * B, 1, h, n, dx + Bn, n, 1, dhh, n);
    free(hhT);
    return 0;
}

/* =========================================================================
   Fast float32 kernels: AVX-512 register-tile products, weights packed once
   per call, and a time loop shared by a few threads that each own a range of
   units (and so the matching columns of every gate block). One or two
   barriers per step; weight gradients accumulate inside the loop.
   ========================================================================= */

#if defined(__AVX512F__) && !defined(THN_NO_FAST)
#define THN_FAST 1
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

/* run-time switch: THEANETS_FUSED_FAST=0 selects the generic kernels */
static int thn_fast_enabled(void) {
    const char* v = getenv("THEANETS_FUSED_FAST");
    return !(v && v[0] == '0');
}

/* ---- a small thread pool ------------------------------------------------
   Own threads rather than OpenMP: an idle OpenMP worker keeps spinning for
   milliseconds after a parallel region, competing with the BLAS threads of
   the Ops that follow. Ours spin briefly, then sleep. Thread count:
   THEANETS_NUM_THREADS, else OMP_NUM_THREADS, else the usable CPUs. */

#define THN_MAX_THREADS 64
#define THN_IDLE_SPINS 2000       /* spins (pause) before an idle worker sleeps */
#define THN_WAIT_SPINS 4000       /* spins before a waiting thread yields its CPU */

typedef void (*thn_task_fn)(void* ctx, int tid, int nt);

struct thn_pool_t {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pid_t pid;
    int nworkers;
    volatile int generation;
    volatile int sleeping;
    volatile int finished;
    volatile int busy;
    thn_task_fn fn;
    void* ctx;
    int nt;
};
static thn_pool_t thn_pool_storage = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                                      0, 0, 0, 0, 0, 0, NULL, NULL, 0};
/* Every Op's C module carries this code, but the process has one pool: the
   first module to need it publishes its own as a capsule, attribute
   _thn_pool of theanets.ops.recurrent, and the others find it there (one
   set of worker threads, not one per module competing for the CPUs). */
static thn_pool_t* thn_P = NULL;
#define THN_POOL_CAPSULE "theanets.thn_pool.v1"

static thn_pool_t* thn_pool_get(void) {  /* with the GIL held */
    if (thn_P) return thn_P;
    PyObject* mod = PyImport_ImportModule("theanets.ops.recurrent");
    PyObject* cap = mod ? PyObject_GetAttrString(mod, "_thn_pool") : NULL;
    if (cap && PyCapsule_IsValid(cap, THN_POOL_CAPSULE)) {
        thn_P = (thn_pool_t*)PyCapsule_GetPointer(cap, THN_POOL_CAPSULE);
    } else {
        PyErr_Clear();
        thn_P = &thn_pool_storage;
        PyObject* own = PyCapsule_New(thn_P, THN_POOL_CAPSULE, NULL);
        if (!mod || !own || PyObject_SetAttrString(mod, "_thn_pool", own)) PyErr_Clear();
        Py_XDECREF(own);
    }
    Py_XDECREF(cap);
    Py_XDECREF(mod);
    return thn_P;
}

/* a worker starts from the job generation current when it was created, so
   that it takes the job posted right after its creation */
struct thn_worker_arg {
    int tid;
    int generation;
};

static void* thn_worker(void* arg) {
    const int tid = ((thn_worker_arg*)arg)->tid;
    int seen = ((thn_worker_arg*)arg)->generation;
    free(arg);
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&thn_P->generation, __ATOMIC_ACQUIRE) == seen) {
            _mm_pause();
            if (++spins >= THN_IDLE_SPINS) {
                pthread_mutex_lock(&thn_P->mutex);
                thn_P->sleeping++;
                while (__atomic_load_n(&thn_P->generation, __ATOMIC_ACQUIRE) == seen)
                    pthread_cond_wait(&thn_P->wake, &thn_P->mutex);
                thn_P->sleeping--;
                pthread_mutex_unlock(&thn_P->mutex);
                break;
            }
        }
        seen = __atomic_load_n(&thn_P->generation, __ATOMIC_ACQUIRE);
        if (tid < thn_P->nt) thn_P->fn(thn_P->ctx, tid, thn_P->nt);
        __atomic_add_fetch(&thn_P->finished, 1, __ATOMIC_ACQ_REL);
    }
    return NULL;
}

static int thn_env_int(const char* name) {
    const char* v = getenv(name);
    return v && *v ? atoi(v) : 0;
}

static int thn_max_threads(void) {
    int t = thn_env_int("THEANETS_NUM_THREADS");
    if (t <= 0) t = thn_env_int("OMP_NUM_THREADS");
    if (t <= 0) {
        cpu_set_t set;
        t = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                         : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    return t < 1 ? 1 : (t > THN_MAX_THREADS ? THN_MAX_THREADS : t);
}

/* threads for a loop over n units (32-unit panels) doing this much work per step */
static int thn_threads(int n, double flops_per_step) {
    const int panels = (n + 31) / 32;
    int t = flops_per_step < 2e5 ? 1 : thn_max_threads();
    return t < panels ? t : (panels < 1 ? 1 : panels);
}

static void thn_blas_share_pool(void);

/* Run fn(ctx, tid, nt) for tid = 0 .. nt-1, tid 0 on the calling thread, and
   return nt. With `exact`, the tasks must run at once on nt threads: when
   that cannot be had, nothing runs and 0 is returned. Otherwise fewer
   threads may be used (1 when the pool is in use by another caller). */
static int thn_run(int nt, thn_task_fn fn, void* ctx, bool exact = false) {
    if (nt > 1) thn_pool_get();
    if (nt > 1 && __atomic_exchange_n(&thn_P->busy, 1, __ATOMIC_ACQ_REL)) {
        if (exact) return 0;
        nt = 1;  /* pool in use by another caller: run alone */
    }
    if (nt <= 1) {
        fn(ctx, 0, 1);
        return 1;
    }
    if (thn_P->pid != getpid()) {  /* first use, or a forked child: no workers */
        thn_P->pid = getpid();
        thn_P->nworkers = 0;
        thn_P->sleeping = 0;
        pthread_mutex_init(&thn_P->mutex, NULL);
        pthread_cond_init(&thn_P->wake, NULL);
        thn_blas_share_pool();
    }
    while (thn_P->nworkers < nt - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        thn_worker_arg* arg = (thn_worker_arg*)malloc(sizeof(thn_worker_arg));
        if (!arg) break;
        arg->tid = thn_P->nworkers + 1;
        arg->generation = __atomic_load_n(&thn_P->generation, __ATOMIC_ACQUIRE);
        const int failed = pthread_create(&thread, &attr, thn_worker, arg);
        pthread_attr_destroy(&attr);
        if (failed) {
            free(arg);
            break;
        }
        thn_P->nworkers++;
    }
    if (nt > thn_P->nworkers + 1) {
        if (exact) {
            __atomic_store_n(&thn_P->busy, 0, __ATOMIC_RELEASE);
            return 0;
        }
        nt = thn_P->nworkers + 1;
    }
    thn_P->fn = fn;
    thn_P->ctx = ctx;
    thn_P->nt = nt;
    __atomic_store_n(&thn_P->finished, 0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&thn_P->mutex);
    __atomic_add_fetch(&thn_P->generation, 1, __ATOMIC_ACQ_REL);
    if (thn_P->sleeping) pthread_cond_broadcast(&thn_P->wake);
    pthread_mutex_unlock(&thn_P->mutex);
    fn(ctx, 0, nt);
    int spins = 0;
    while (__atomic_load_n(&thn_P->finished, __ATOMIC_ACQUIRE) < thn_P->nworkers) {
        _mm_pause();
        if (++spins >= THN_WAIT_SPINS) { sched_yield(); spins = 0; }
    }
    __atomic_store_n(&thn_P->busy, 0, __ATOMIC_RELEASE);
    return nt;
}

/* ---- OpenBLAS on this pool ------------------------------------------------
   OpenBLAS (0.3.27 and later) can hand its parallel jobs to a callback. Once
   this pool exists, OpenBLAS's jobs run on it, so that OpenBLAS's threads and
   ours never compete for the CPUs (they did: a BLAS product just before a
   fused Op made the Op twice as slow). OpenBLAS's jobs wait for one another,
   so they must all run at once; when the pool cannot take them, each gets a
   thread of its own. THN_BLAS_CALLBACK_SETTER names the library's setter
   (weak: absent from other BLAS libraries, then nothing is installed). */
typedef void (*thn_dojob_fn)(int thread_num, void* jobdata, int dojob_data);
typedef void (*thn_blas_callback_fn)(int sync, thn_dojob_fn dojob, int numjobs,
                                     size_t jobdata_elsize, void* jobdata, int dojob_data);

struct thn_blas_jobs {
    thn_dojob_fn dojob;
    char* data;
    size_t size;
    int arg;
    int index;  /* for the spare threads */
};

static void thn_blas_task(void* ctx, int tid, int nt) {
    thn_blas_jobs* jobs = (thn_blas_jobs*)ctx;
    jobs->dojob(tid, jobs->data + (size_t)tid * jobs->size, jobs->arg);
}

static void* thn_blas_spare(void* ctx) {
    thn_blas_jobs* job = (thn_blas_jobs*)ctx;
    job->dojob(job->index, job->data + (size_t)job->index * job->size, job->arg);
    return NULL;
}

static void thn_blas_callback(int sync, thn_dojob_fn dojob, int numjobs,
                              size_t jobdata_elsize, void* jobdata, int dojob_data) {
    thn_blas_jobs jobs = {dojob, (char*)jobdata, jobdata_elsize, dojob_data, 0};
    if (numjobs <= 1) {
        if (numjobs == 1) dojob(0, jobdata, dojob_data);
        return;
    }
    if (numjobs <= THN_MAX_THREADS && thn_run(numjobs, thn_blas_task, &jobs, true)) return;
    thn_blas_jobs* spare = (thn_blas_jobs*)malloc(sizeof(thn_blas_jobs) * numjobs);
    pthread_t* threads = (pthread_t*)malloc(sizeof(pthread_t) * numjobs);
    int started = 1;
    for (; spare && threads && started < numjobs; ++started) {
        spare[started] = jobs;
        spare[started].index = started;
        if (pthread_create(&threads[started], NULL, thn_blas_spare, &spare[started])) break;
    }
    /* out of threads: OpenBLAS's jobs would wait for each other forever */
    if (started < numjobs) abort();
    dojob(0, jobdata, dojob_data);
    for (int i = 1; i < numjobs; ++i) pthread_join(threads[i], NULL);
    free(spare);
    free(threads);
}

#ifdef THN_BLAS_CALLBACK_SETTER
extern "C" void THN_BLAS_CALLBACK_SETTER(thn_blas_callback_fn) __attribute__((weak));
static void thn_blas_share_pool(void) {
    const char* v = getenv("THEANETS_BLAS_POOL");
    if (THN_BLAS_CALLBACK_SETTER && !(v && v[0] == '0'))
        THN_BLAS_CALLBACK_SETTER(thn_blas_callback);
}
#else
static void thn_blas_share_pool(void) {}
#endif

template <typename F>
static void thn_trampoline(void* ctx, int tid, int nt) { (*(F*)ctx)(tid, nt); }

/* run the lambda body(tid, nt) on nt threads */
template <typename F>
static void thn_parallel(int nt, F& body) { thn_run(nt, &thn_trampoline<F>, (void*)&body); }

/* this thread's units [j0, j1): whole 32-unit panels */
static void thn_unit_range(int n, int tid, int nt, int* j0, int* j1) {
    const long panels = (n + 31) / 32;
    const int p0 = (int)(panels * tid / nt), p1 = (int)(panels * (tid + 1) / nt);
    *j0 = 32 * p0;
    *j1 = 32 * p1 < n ? 32 * p1 : n;
}

/* Barrier between the threads of a time loop. It spins, yielding the CPU
   now and then. On a busy machine a thread may lose its CPU for a scheduler
   time slice, and then every barrier waits that long: a thread that waited
   more than THN_SOLO_CYCLES asks to finish the loop alone, and at the next
   barrier every thread learns the decision (thn_barrier_wait returns 1). */
#define THN_SOLO_CYCLES 3000000ULL
struct thn_barrier {
    volatile int count;
    volatile int generation;
    volatile int want_solo;
    volatile int solo;
    unsigned long long solo_cycles;
};

/* THEANETS_FUSED_SOLO_CYCLES overrides the threshold (for tests) */
static void thn_barrier_init(thn_barrier* bar) {
    memset(bar, 0, sizeof *bar);
    const char* v = getenv("THEANETS_FUSED_SOLO_CYCLES");
    bar->solo_cycles = v && *v ? strtoull(v, NULL, 10) : THN_SOLO_CYCLES;
}

static inline int thn_barrier_wait(thn_barrier* bar, int nthreads) {
    if (nthreads <= 1) return 0;
    const int gen = __atomic_load_n(&bar->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&bar->count, 1, __ATOMIC_ACQ_REL) == nthreads) {
        __atomic_store_n(&bar->solo, __atomic_load_n(&bar->want_solo, __ATOMIC_ACQUIRE),
                         __ATOMIC_RELAXED);
        __atomic_store_n(&bar->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->generation, gen + 1, __ATOMIC_RELEASE);
    } else {
        const unsigned long long start = __rdtsc();
        int spins = 0;
        while (__atomic_load_n(&bar->generation, __ATOMIC_ACQUIRE) == gen) {
            _mm_pause();
            if (++spins >= THN_WAIT_SPINS) { sched_yield(); spins = 0; }
        }
        if (__rdtsc() - start > bar->solo_cycles)
            __atomic_store_n(&bar->want_solo, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&bar->solo, __ATOMIC_ACQUIRE);
}

/* After a barrier: when the loop goes solo, the other threads leave and
   thread 0 takes every unit. */
#define THN_BARRIER                                   \
    if (thn_barrier_wait(&thn_bar, nt)) {             \
        if (tid) return;                              \
        nt = 1; j0 = 0; j1 = n; w = n;                \
    }

/* C[MR x nc] (+)= A B: A(r, k) = A[r * ars + k * aks], row k of B at
   B + k * bks (32 wide, masked to nc = popcount(m0) + popcount(m1)). */
template <int MR>
THN_INLINE void thn_tile(int K, const float* A, npy_intp ars, npy_intp aks,
                         const float* Bp, npy_intp bks, float* C, npy_intp ldc,
                         __mmask16 m0, __mmask16 m1, bool beta) {
    __m512 c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        if (beta) {
            c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            c1[r] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
        } else {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        }
    }
    for (int k = 0; k < K; ++k) {
        const float* b = Bp + k * bks;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        const float* a = A + k * aks;
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_set1_ps(a[r * ars]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    for (int r = 0; r < MR; ++r) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
    }
}

/* C[M x nc] (+)= A[M x K] B[K x nc], nc <= 32, layouts as in thn_tile */
static void thn_mm(int M, int K, int nc, const float* A, npy_intp ars, npy_intp aks,
                   const float* Bp, npy_intp bks, float* C, npy_intp ldc, bool beta) {
    const __mmask16 m0 = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? (__mmask16)0xFFFF
                       : nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1) : (__mmask16)0;
    int r = 0;
    for (; r + 8 <= M; r += 8)
        thn_tile<8>(K, A + r * ars, ars, aks, Bp, bks, C + r * ldc, ldc, m0, m1, beta);
    const float* Ar = A + r * ars;
    float* Cr = C + r * ldc;
    switch (M - r) {
    case 7: thn_tile<7>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 6: thn_tile<6>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 5: thn_tile<5>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 4: thn_tile<4>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 3: thn_tile<3>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 2: thn_tile<2>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    case 1: thn_tile<1>(K, Ar, ars, aks, Bp, bks, Cr, ldc, m0, m1, beta); break;
    default: break;
    }
}

/* A weight matrix (K x N) packed in panels of 32 columns that never straddle
   a segment of S columns (the gate blocks): panel q of segment s holds
   columns s * S + 32 q ... as K rows of 32 (zero-padded). */
struct thn_pack {
    float* p;
    int K, S, nps;
};

/* W(k, c) = W[k * wk + c * wc] */
static int thn_pack_init(thn_pack* pk, int K, int N, int S, const float* W,
                         npy_intp wk, npy_intp wc) {
    pk->K = K;
    pk->S = S;
    pk->nps = (S + 31) / 32;
    const int nseg = S > 0 ? N / S : 0;
    const size_t count = (size_t)nseg * pk->nps * K * 32;
    void* mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(float) * count + 64)) return -1;
    pk->p = (float*)mem;
    for (int s = 0; s < nseg; ++s)
        for (int q = 0; q < pk->nps; ++q) {
            float* panel = pk->p + ((size_t)s * pk->nps + q) * K * 32;
            if (wk == 1) {
                /* a transposed W: read each column front to back (reading 32
                   columns in step has a power-of-two stride that thrashes L1) */
                for (int jj = 0; jj < 32; ++jj) {
                    const int col = 32 * q + jj;
                    const float* src = W + (npy_intp)(s * S + col) * wc;
                    if (col < S)
                        for (int k = 0; k < K; ++k) panel[(size_t)k * 32 + jj] = src[k];
                    else
                        for (int k = 0; k < K; ++k) panel[(size_t)k * 32 + jj] = 0.0f;
                }
                continue;
            }
            for (int k = 0; k < K; ++k)
                for (int jj = 0; jj < 32; ++jj) {
                    const int col = 32 * q + jj;
                    panel[(size_t)k * 32 + jj] =
                        col < S ? W[k * wk + (npy_intp)(s * S + col) * wc] : 0.0f;
                }
        }
    return 0;
}

/* C[:, c0:c1] (+)= A (M x K, row stride lda) . W[:, c0:c1]; c0 starts a panel
   and [c0, c1) lies in one segment; C points at column 0. */
static void thn_mul(const thn_pack* pk, int M, const float* A, npy_intp lda,
                    float* C, npy_intp ldc, int c0, int c1, bool beta) {
    for (int c = c0; c < c1; c += 32) {
        const int s = c / pk->S, q = (c - s * pk->S) / 32;
        const int nc = c1 - c < 32 ? c1 - c : 32;
        thn_mm(M, pk->K, nc, A, lda, 1, pk->p + ((size_t)s * pk->nps + q) * pk->K * 32, 32,
               C + c, ldc, beta);
    }
}

/* weight gradient: C[:, c0:c1] += A^T . D[:, c0:c1] with A (K x M, row stride
   lda) and D (K x ..., row stride ldd) */
static void thn_acc(int M, int K, const float* A, npy_intp lda, const float* D, npy_intp ldd,
                    float* C, npy_intp ldc, int c0, int c1) {
    for (int c = c0; c < c1; c += 32) {
        const int nc = c1 - c < 32 ? c1 - c : 32;
        thn_mm(M, K, nc, A, 1, lda, D + c, ldd, C + c, ldc, true);
    }
}

/* Weight gradients accumulate over chunks of steps, not step by step: one
   product with K = (steps in the chunk) x B reads and writes the gradient
   once per chunk, which keeps the per-step working set within the L2 cache.
   C[:, c0:c1] += sum over t in [t0, t1] of X_t^T D_t[:, c0:c1], where D_t
   is B rows of stride ldd at d + t B ldd and X_t is B rows of stride ldx at
   x + t B ldx; with `prev`, X_t is the previous step's rows instead, and x0
   for t = 0. */
static void thn_acc_steps(int t0, int t1, int B, int M, const float* x, npy_intp ldx,
                          const float* x0, bool prev, const float* d, npy_intp ldd,
                          float* C, npy_intp ldc, int c0, int c1) {
    if (prev && t0 == 0) {
        thn_acc(M, B, x0, ldx, d, ldd, C, ldc, c0, c1);
        t0 = 1;
    }
    if (t1 < t0) return;
    const float* xs = x + (size_t)(prev ? t0 - 1 : t0) * B * ldx;
    thn_acc(M, (t1 - t0 + 1) * B, xs, ldx, d + (size_t)t0 * B * ldd, ldd, C, ldc, c0, c1);
}

/* steps per weight-gradient chunk: about 256 rows */
static int thn_chunk_steps(int B) { return B >= 256 ? 1 : 256 / (B < 1 ? 1 : B); }

static THN_HOT int thn_lstm_fwd_fast(int nT, int B, int n,
                                     const float* xp, npy_intp xs0, npy_intp xs1,
                                     int nin, const float* xw, const float* xb,
                                     const float* hh, const float* ci, const float* cf,
                                     const float* co, const float* h0, const float* c0,
                                     float* h, float* c, float* cache, bool keep) {
    const int G = 4 * n;
    const size_t Bn = (size_t)B * n, BG = keep ? (size_t)B * G : 0;
    thn_pack W, WX;
    W.p = WX.p = NULL;
    if (thn_pack_init(&W, n, G, n, hh, G, 1) || (xw && thn_pack_init(&WX, nin, G, n, xw, G, 1))) {
        free(W.p);
        return -1;
    }
    const int nth = thn_threads(n, 2.0 * B * (n + (xw ? nin : 0)) * G);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        for (int t = 0; t < nT; ++t) {
            float* g = cache + t * BG;
            const float* hp = t ? h + (t - 1) * Bn : h0;
            const float* cp = t ? c + (t - 1) * Bn : c0;
            if (w > 0) {
                thn_gates_init<float>(B, G, j0, j1, n, xw ? NULL : xp + t * xs0, xs1, xb, g);
                if (xw)
                    for (int k = 0; k < 4; ++k)
                        thn_mul(&WX, B, xp + t * xs0, xs1, g, G, k * n + j0, k * n + j1, true);
                for (int k = 0; k < 4; ++k)
                    thn_mul(&W, B, hp, n, g, G, k * n + j0, k * n + j1, true);
                for (int b = 0; b < B; ++b)
                    thn_lstm_row_fwd<float>(n, j0, j1, g + (size_t)b * G, cp + (size_t)b * n,
                                            ci, cf, co, c + t * Bn + (size_t)b * n,
                                            h + t * Bn + (size_t)b * n);
            }
            THN_BARRIER
        }
    };
    thn_parallel(nth, body);
    free(W.p);
    free(WX.p);
    return 0;
}

/* The projection gradients of steps [t0, t1] for columns [c0, c1):
   dxw[:, c] += sum_t x_t^T d_t[:, c], dxb[c] += column sums of d_t. */
static void thn_proj_acc(int t0, int t1, int B, int nin, const float* xp, npy_intp xs0,
                         npy_intp xs1, const float* d, npy_intp G, float* dxw, float* dxb,
                         int c0, int c1) {
    const float* dc = d + (size_t)t0 * B * G;
    if (xs0 == (npy_intp)B * xs1)   /* time-major rows: one product for the chunk */
        thn_acc(nin, (t1 - t0 + 1) * B, xp + t0 * xs0, xs1, dc, G, dxw, G, c0, c1);
    else
        for (int t = t0; t <= t1; ++t)
            thn_acc(nin, B, xp + t * xs0, xs1, d + (size_t)t * B * G, G, dxw, G, c0, c1);
    for (size_t r = 0; r < (size_t)(t1 - t0 + 1) * B; ++r) {
        const float* row = dc + r * G;
#pragma GCC ivdep
        for (int j = c0; j < c1; ++j) dxb[j] += row[j];
    }
}

static THN_HOT int thn_lstm_bwd_fast(int nT, int B, int n,
                                     const float* xp, npy_intp xs0, npy_intp xs1, int nin,
                                     float* dxw, float* dxb,
                                     const float* hh, const float* ci, const float* cf,
                                     const float* co, const float* h0, const float* c0,
                                     const float* h, const float* c, const float* cache,
                                     const float* dho, npy_intp hs0, npy_intp hs1,
                                     const float* dco, npy_intp cs0, npy_intp cs1,
                                     float* dx, float* dhh, float* dci, float* dcf,
                                     float* dco_w, float* dh0, float* dc0) {
    const int G = 4 * n;
    const size_t Bn = (size_t)B * n, BG = (size_t)B * G;
    thn_pack WT;  /* hh^T: (4n x n) */
    if (thn_pack_init(&WT, G, n, n, hh, 1, G)) return -1;
    memset(dhh, 0, (size_t)n * G * sizeof(float));
    memset(dh0, 0, Bn * sizeof(float));
    memset(dc0, 0, Bn * sizeof(float));
    memset(dci, 0, n * sizeof(float));
    memset(dcf, 0, n * sizeof(float));
    memset(dco_w, 0, n * sizeof(float));
    float* xcopy = NULL;
    if (dxw) {
        memset(dxw, 0, (size_t)nin * G * sizeof(float));
        memset(dxb, 0, G * sizeof(float));
        if (xs0 != (npy_intp)B * xs1) {
            /* a time-major copy of the inputs, for one product per chunk */
            xcopy = (float*)malloc(sizeof(float) * ((size_t)nT * B * nin + 1));
            if (!xcopy) { free(WT.p); return -1; }
            for (int t = 0; t < nT; ++t)
                for (int b = 0; b < B; ++b)
                    memcpy(xcopy + ((size_t)t * B + b) * nin, xp + t * xs0 + b * xs1,
                           nin * sizeof(float));
            xp = xcopy;
            xs1 = nin;
            xs0 = (npy_intp)B * nin;
        }
    }
    const int nth = thn_threads(n, 2.0 * B * n * G);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    const int S = thn_chunk_steps(B);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        int t_hi = nT - 1;  /* last step not yet in dhh */
        for (int t = nT - 1; t >= 0; --t) {
            const float* cp = t ? c + (t - 1) * Bn : c0;
            float* d = dx + t * BG;
            if (w > 0) {
                for (int b = 0; b < B; ++b)
                    thn_lstm_row_bwd<float>(n, j0, j1, cache + t * BG + (size_t)b * G,
                                            cp + (size_t)b * n, c + t * Bn + (size_t)b * n,
                                            ci, cf, co,
                                            dho ? dho + t * hs0 + b * hs1 : NULL,
                                            dco ? dco + t * cs0 + b * cs1 : NULL,
                                            dh0 + (size_t)b * n, dc0 + (size_t)b * n,
                                            d + (size_t)b * G, dci, dcf, dco_w);
            }
            if (t == 0 || t_hi - t + 1 >= S) {
                if (w > 0)
                    for (int k = 0; k < 4; ++k) {
                        thn_acc_steps(t, t_hi, B, n, h, n, h0, true, dx, G, dhh, G,
                                      k * n + j0, k * n + j1);
                        if (dxw)
                            thn_proj_acc(t, t_hi, B, nin, xp, xs0, xs1, dx, G, dxw, dxb,
                                         k * n + j0, k * n + j1);
                    }
                t_hi = t - 1;
            }
            THN_BARRIER
            if (w > 0)
                thn_mul(&WT, B, d, G, dh0, n, j0, j1, false);
        }
    };
    thn_parallel(nth, body);
    free(WT.p);
    free(xcopy);
    return 0;
}

template <int ACT>
static THN_HOT int thn_gru_fwd_fast(int nT, int B, int n,
                                    const float* xp, npy_intp xs0, npy_intp xs1,
                                    const float* hh, const float* hr, const float* hz,
                                    const float* h0, float* h, float* pre, float* hid,
                                    float* rate, float* cache) {
    const size_t Bn = (size_t)B * n;
    thn_pack Wh, Wr, Wz;
    Wh.p = Wr.p = Wz.p = NULL;
    float* tmp = (float*)malloc(sizeof(float) * (2 * Bn + 1));
    if (!tmp || thn_pack_init(&Wh, n, n, n, hh, n, 1) || thn_pack_init(&Wr, n, n, n, hr, n, 1)
        || thn_pack_init(&Wz, n, n, n, hz, n, 1)) {
        free(tmp); free(Wh.p); free(Wr.p); free(Wz.p);
        return -1;
    }
    const int nth = thn_threads(n, 6.0 * B * n * n);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        for (int t = 0; t < nT; ++t) {
            const float* hp = t ? h + (t - 1) * Bn : h0;
            float* ct = cache + 2 * t * Bn;
            const size_t o = t * Bn;
            if (w > 0) {
                thn_mul(&Wr, B, hp, n, tmp, 2 * n, j0, j1, false);
                thn_mul(&Wz, B, hp, n, tmp + n, 2 * n, j0, j1, false);
                for (int b = 0; b < B; ++b) {
                    const size_t ob = (size_t)b * n;
                    thn_gru_row_gates<float>(n, j0, j1, xp + t * xs0 + b * xs1, tmp + 2 * ob,
                                             tmp + 2 * ob + n, hp + ob, ct + 2 * ob,
                                             ct + 2 * ob + n, rate + o + ob, pre + o + ob);
                }
            }
            THN_BARRIER
            if (w > 0) {
                thn_mul(&Wh, B, ct + n, 2 * n, pre + o, n, j0, j1, true);
                for (int b = 0; b < B; ++b) {
                    const size_t ob = (size_t)b * n;
                    thn_gru_row_state<ACT, float>(j0, j1, pre + o + ob, rate + o + ob, hp + ob,
                                                  hid + o + ob, h + o + ob);
                }
            }
            THN_BARRIER
        }
    };
    thn_parallel(nth, body);
    free(tmp); free(Wh.p); free(Wr.p); free(Wz.p);
    return 0;
}

template <int ACT>
static THN_HOT int thn_gru_bwd_fast(int nT, int B, int n,
                                    const float* hh, const float* hr, const float* hz,
                                    const float* h0, const float* h, const float* pre,
                                    const float* hid, const float* rate, const float* cache,
                                    const float* gh, npy_intp gh0, npy_intp gh1,
                                    const float* gp, npy_intp gp0, npy_intp gp1,
                                    const float* ga, npy_intp ga0, npy_intp ga1,
                                    const float* gz, npy_intp gz0, npy_intp gz1,
                                    float* dx, float* dhh, float* dhr, float* dhz,
                                    float* dh0) {
    const int G = 3 * n;
    const size_t Bn = (size_t)B * n, BG = (size_t)B * G, nn = (size_t)n * n;
    thn_pack Th, Tr, Tz;  /* transposed weights */
    Th.p = Tr.p = Tz.p = NULL;
    float* drh = (float*)malloc(sizeof(float) * (Bn + 1));
    if (!drh || thn_pack_init(&Th, n, n, n, hh, 1, n) || thn_pack_init(&Tr, n, n, n, hr, 1, n)
        || thn_pack_init(&Tz, n, n, n, hz, 1, n)) {
        free(drh); free(Th.p); free(Tr.p); free(Tz.p);
        return -1;
    }
    memset(dhh, 0, nn * sizeof(float));
    memset(dhr, 0, nn * sizeof(float));
    memset(dhz, 0, nn * sizeof(float));
    memset(dh0, 0, Bn * sizeof(float));
    const int nth = thn_threads(n, 6.0 * B * n * n);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    const int S = thn_chunk_steps(B);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        int t_hi = nT - 1;  /* last step not yet in the weight gradients */
        for (int t = nT - 1; t >= 0; --t) {
            const float* hp = t ? h + (t - 1) * Bn : h0;
            const float* ct = cache + 2 * t * Bn;
            const size_t o = t * Bn;
            float* d = dx + t * BG;
            if (w > 0) {
                for (int b = 0; b < B; ++b) {
                    const size_t ob = (size_t)b * n;
                    thn_gru_row_bwd1<ACT, float>(
                        j0, j1, dh0 + ob, gh ? gh + t * gh0 + b * gh1 : NULL,
                        gp ? gp + t * gp0 + b * gp1 : NULL, ga ? ga + t * ga0 + b * ga1 : NULL,
                        gz ? gz + t * gz0 + b * gz1 : NULL, rate + o + ob, hid + o + ob,
                        pre + o + ob, hp + ob, d + (size_t)b * G, d + (size_t)b * G + 2 * n);
                }
            }
            THN_BARRIER
            if (w > 0) {
                thn_mul(&Th, B, d, G, drh, n, j0, j1, false);                /* dpre . hh^T */
                for (int b = 0; b < B; ++b) {
                    const size_t ob = (size_t)b * n;
                    thn_gru_row_bwd2<float>(j0, j1, drh + ob, hp + ob, ct + 2 * ob,
                                            d + (size_t)b * G + n, dh0 + ob);
                }
            }
            if (t == 0 || t_hi - t + 1 >= S) {
                if (w > 0) {
                    /* (r h)^T dpre, h^T dz, h^T dr */
                    thn_acc_steps(t, t_hi, B, n, cache + n, 2 * n, NULL, false, dx, G,
                                  dhh, n, j0, j1);
                    thn_acc_steps(t, t_hi, B, n, h, n, h0, true, dx + 2 * n, G, dhz, n, j0, j1);
                    thn_acc_steps(t, t_hi, B, n, h, n, h0, true, dx + n, G, dhr, n, j0, j1);
                }
                t_hi = t - 1;
            }
            THN_BARRIER
            if (w > 0) {
                thn_mul(&Tr, B, d + n, G, dh0, n, j0, j1, true);             /* dr . hr^T */
                thn_mul(&Tz, B, d + 2 * n, G, dh0, n, j0, j1, true);         /* dz . hz^T */
            }
        }
    };
    thn_parallel(nth, body);
    free(drh); free(Th.p); free(Tr.p); free(Tz.p);
    return 0;
}

template <int ACT>
static THN_HOT int thn_rnn_fwd_fast(int nT, int B, int n,
                                    const float* xp, npy_intp xs0, npy_intp xs1,
                                    const float* hh, const float* h0, float* h, float* pre) {
    const size_t Bn = (size_t)B * n;
    thn_pack W;
    if (thn_pack_init(&W, n, n, n, hh, n, 1)) return -1;
    const int nth = thn_threads(n, 2.0 * B * n * n);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        for (int t = 0; t < nT; ++t) {
            const float* hp = t ? h + (t - 1) * Bn : h0;
            float* pt_ = pre + t * Bn;
            if (w > 0) {
                for (int b = 0; b < B; ++b)
                    memcpy(pt_ + (size_t)b * n + j0, xp + t * xs0 + b * xs1 + j0,
                           w * sizeof(float));
                thn_mul(&W, B, hp, n, pt_, n, j0, j1, true);
                for (int b = 0; b < B; ++b)
                    thn_rnn_row_fwd<ACT, float>(j0, j1, pt_ + (size_t)b * n,
                                                h + t * Bn + (size_t)b * n);
            }
            THN_BARRIER
        }
    };
    thn_parallel(nth, body);
    free(W.p);
    return 0;
}

template <int ACT>
static THN_HOT int thn_rnn_bwd_fast(int nT, int B, int n,
                                    const float* hh, const float* h0, const float* h,
                                    const float* pre,
                                    const float* gh, npy_intp gh0, npy_intp gh1,
                                    const float* gp, npy_intp gp0, npy_intp gp1,
                                    float* dx, float* dhh, float* dh0) {
    const size_t Bn = (size_t)B * n;
    thn_pack WT;
    if (thn_pack_init(&WT, n, n, n, hh, 1, n)) return -1;
    memset(dhh, 0, (size_t)n * n * sizeof(float));
    memset(dh0, 0, Bn * sizeof(float));
    const int nth = thn_threads(n, 2.0 * B * n * n);
    thn_barrier thn_bar;
    thn_barrier_init(&thn_bar);
    const int S = thn_chunk_steps(B);
    auto body = [&](int tid, int nt) {
        int j0, j1;
        thn_unit_range(n, tid, nt, &j0, &j1);
        int w = j1 - j0;
        int t_hi = nT - 1;  /* last step not yet in dhh */
        for (int t = nT - 1; t >= 0; --t) {
            float* d = dx + t * Bn;
            if (w > 0) {
                for (int b = 0; b < B; ++b) {
                    const size_t ob = (size_t)b * n;
                    thn_rnn_row_bwd<ACT, float>(j0, j1, dh0 + ob,
                                                gh ? gh + t * gh0 + b * gh1 : NULL,
                                                gp ? gp + t * gp0 + b * gp1 : NULL,
                                                pre + t * Bn + ob, h + t * Bn + ob, d + ob);
                }
            }
            if (t == 0 || t_hi - t + 1 >= S) {
                if (w > 0) thn_acc_steps(t, t_hi, B, n, h, n, h0, true, dx, n, dhh, n, j0, j1);
                t_hi = t - 1;
            }
            THN_BARRIER
            if (w > 0)
                thn_mul(&WT, B, d, n, dh0, n, j0, j1, false);
        }
    };
    thn_parallel(nth, body);
    free(WT.p);
    return 0;
}
#endif  /* fast kernels */

/* =========================================================================
   Entry points: overloads pick the fast kernels for float32 when available.
   ========================================================================= */

#ifdef THN_FAST
#define THN_USE_FAST thn_fast_enabled()
#else
#define THN_USE_FAST 0
#endif

#define THN_LSTM_FWD_ARGS(T) int nT, int B, int n, const T* xp, npy_intp xs0, npy_intp xs1, \
    int nin, const T* xw, const T* xb, const T* hh, const T* ci, const T* cf, const T* co, \
    const T* h0, const T* c0, T* h, T* c, T* cache, bool keep
#define THN_LSTM_FWD_PASS nT, B, n, xp, xs0, xs1, nin, xw, xb, hh, ci, cf, co, h0, c0, h, c, \
    cache, keep
static int thn_lstm_fwd_run(THN_LSTM_FWD_ARGS(double)) {
    return thn_lstm_fwd<double>(THN_LSTM_FWD_PASS);
}
static int thn_lstm_fwd_run(THN_LSTM_FWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_lstm_fwd_fast(THN_LSTM_FWD_PASS);
#endif
    return thn_lstm_fwd<float>(THN_LSTM_FWD_PASS);
}

#define THN_LSTM_BWD_ARGS(T) int nT, int B, int n, const T* xp, npy_intp xs0, npy_intp xs1, \
    int nin, T* dxw, T* dxb, const T* hh, const T* ci, const T* cf, \
    const T* co, const T* h0, const T* c0, const T* h, const T* c, const T* cache, \
    const T* dho, npy_intp hs0, npy_intp hs1, const T* dco, npy_intp cs0, npy_intp cs1, \
    T* dx, T* dhh, T* dci, T* dcf, T* dco_w, T* dh0, T* dc0
#define THN_LSTM_BWD_PASS nT, B, n, xp, xs0, xs1, nin, dxw, dxb, hh, ci, cf, co, h0, c0, h, c, \
    cache, dho, hs0, hs1, dco, cs0, cs1, dx, dhh, dci, dcf, dco_w, dh0, dc0
static int thn_lstm_bwd_run(THN_LSTM_BWD_ARGS(double)) {
    return thn_lstm_bwd<double>(THN_LSTM_BWD_PASS);
}
static int thn_lstm_bwd_run(THN_LSTM_BWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_lstm_bwd_fast(THN_LSTM_BWD_PASS);
#endif
    return thn_lstm_bwd<float>(THN_LSTM_BWD_PASS);
}

#define THN_GRU_FWD_ARGS(T) int nT, int B, int n, const T* xp, npy_intp xs0, npy_intp xs1, \
    const T* hh, const T* hr, const T* hz, const T* h0, T* h, T* pre, T* hid, T* rate, T* cache
#define THN_GRU_FWD_PASS nT, B, n, xp, xs0, xs1, hh, hr, hz, h0, h, pre, hid, rate, cache
template <int ACT> static int thn_gru_fwd_run(THN_GRU_FWD_ARGS(double)) {
    return thn_gru_fwd<ACT, double>(THN_GRU_FWD_PASS);
}
template <int ACT> static int thn_gru_fwd_run(THN_GRU_FWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_gru_fwd_fast<ACT>(THN_GRU_FWD_PASS);
#endif
    return thn_gru_fwd<ACT, float>(THN_GRU_FWD_PASS);
}

#define THN_GRU_BWD_ARGS(T) int nT, int B, int n, const T* hh, const T* hr, const T* hz, \
    const T* h0, const T* h, const T* pre, const T* hid, const T* rate, const T* cache, \
    const T* gh, npy_intp gh0, npy_intp gh1, const T* gp, npy_intp gp0, npy_intp gp1, \
    const T* ga, npy_intp ga0, npy_intp ga1, const T* gz, npy_intp gz0, npy_intp gz1, \
    T* dx, T* dhh, T* dhr, T* dhz, T* dh0
#define THN_GRU_BWD_PASS nT, B, n, hh, hr, hz, h0, h, pre, hid, rate, cache, gh, gh0, gh1, \
    gp, gp0, gp1, ga, ga0, ga1, gz, gz0, gz1, dx, dhh, dhr, dhz, dh0
template <int ACT> static int thn_gru_bwd_run(THN_GRU_BWD_ARGS(double)) {
    return thn_gru_bwd<ACT, double>(THN_GRU_BWD_PASS);
}
template <int ACT> static int thn_gru_bwd_run(THN_GRU_BWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_gru_bwd_fast<ACT>(THN_GRU_BWD_PASS);
#endif
    return thn_gru_bwd<ACT, float>(THN_GRU_BWD_PASS);
}

#define THN_RNN_FWD_ARGS(T) int nT, int B, int n, const T* xp, npy_intp xs0, npy_intp xs1, \
    const T* hh, const T* h0, T* h, T* pre
#define THN_RNN_FWD_PASS nT, B, n, xp, xs0, xs1, hh, h0, h, pre
template <int ACT> static int thn_rnn_fwd_run(THN_RNN_FWD_ARGS(double)) {
    return thn_rnn_fwd<ACT, double>(THN_RNN_FWD_PASS);
}
template <int ACT> static int thn_rnn_fwd_run(THN_RNN_FWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_rnn_fwd_fast<ACT>(THN_RNN_FWD_PASS);
#endif
    return thn_rnn_fwd<ACT, float>(THN_RNN_FWD_PASS);
}

#define THN_RNN_BWD_ARGS(T) int nT, int B, int n, const T* hh, const T* h0, const T* h, \
    const T* pre, const T* gh, npy_intp gh0, npy_intp gh1, const T* gp, npy_intp gp0, \
    npy_intp gp1, T* dx, T* dhh, T* dh0
#define THN_RNN_BWD_PASS nT, B, n, hh, h0, h, pre, gh, gh0, gh1, gp, gp0, gp1, dx, dhh, dh0
template <int ACT> static int thn_rnn_bwd_run(THN_RNN_BWD_ARGS(double)) {
    return thn_rnn_bwd<ACT, double>(THN_RNN_BWD_PASS);
}
template <int ACT> static int thn_rnn_bwd_run(THN_RNN_BWD_ARGS(float)) {
#ifdef THN_FAST
    if (THN_USE_FAST) return thn_rnn_bwd_fast<ACT>(THN_RNN_BWD_PASS);
#endif
    return thn_rnn_bwd<ACT, float>(THN_RNN_BWD_PASS);
}

#endif  /* THN_REC_SUPPORT */
"""


# ---------------------------------------------------------------------------
# Op plumbing
# ---------------------------------------------------------------------------

def _blas_callback_setter():
    """C define naming the linked OpenBLAS's threads-callback setter, if any."""
    libs = ' '.join(ldflags())
    if 'scipy_openblas' in libs:
        name = 'scipy_openblas_set_threads_callback_function'
    elif 'openblas' in libs:
        name = 'openblas_set_threads_callback_function'
    else:
        return ''
    return '\n#define THN_BLAS_CALLBACK_SETTER {}\n'.format(name)


def support_code():
    """C support code of the recurrent Ops: BLAS declarations, kernels, thread pool."""
    return blas_header_text() + _blas_callback_setter() + _SUPPORT_CODE


class _RecurrentCOp(cmath.BlasLinkedCOp):
    """Shared C plumbing: BLAS headers, link flags, cache versioning."""

    __props__ = ()

    def c_support_code(self, **kwargs):
        return support_code()

    def c_code_cache_version(self):
        return (_C_VERSION,) + cmath.VERSION + tuple(blas_header_version())


class _ActivationCOp(_RecurrentCOp):
    """A recurrent Op with an activation, passed to C at run time.

    The activation is a run-time parameter of the C code (not part of its
    text), so the Ops of every activation share one compiled module.
    """

    params_type = ParamsType(act=scalar_int32)

    def get_params(self, node):
        return self.params_type.get_params(act=np.int32(_ACTIVATIONS[self.activation][1]))


def _c_dispatch(body, params):
    """Rewrite the kernel call of `body` into a switch on the run-time activation.

    The call is written ``if (thn_<kernel><THN_ACT, T>(...)) { ... }``; each
    case instantiates the kernel template for one activation code.
    """
    head = re.search(r'if \(thn_(?:gru|rnn)_(?:fwd|bwd)_run<', body).start()
    stop = body.index(') {\n    PyErr_NoMemory();', head)
    end = body.index('}\n', stop) + 2
    call = body[head + 4:stop]
    cases = ''.join('    case {0}: thn_rc = {1}; break;\n'.format(
        k, call.replace('THN_ACT', str(k))) for k in range(4))
    switch = ('int thn_rc = -2;\nswitch ({0}->act) {{\n{1}}}\n'.format(params, cases) +
              'if (thn_rc == -2) { PyErr_SetString(PyExc_ValueError, "bad activation code"); '
              'goto thn_fail; }\n'
              'if (thn_rc) { PyErr_NoMemory(); goto thn_fail; }\n')
    return body[:head] + switch + body[end:]


def _float_dtype(x):
    return x.dtype if x.dtype in ('float32', 'float64') else pytensor.config.floatX


def _as(x, dtype, ndim, what):
    x = pt.as_tensor_variable(x)
    if x.ndim != ndim:
        raise TypeError('{} must have {} dimensions, got {}'.format(what, ndim, x.ndim))
    if x.dtype != dtype:
        x = pt.cast(x, dtype)
    return x


def _tt(dtype, shape):
    return TensorType(dtype, shape=tuple(shape))


def _seq_type(xproj, hh):
    """Type of a (T, B, n) output for projected inputs xproj and weights hh."""
    return _tt(xproj.dtype, (xproj.type.shape[0], xproj.type.shape[1], hh.type.shape[0]))


def _is_disconnected(g):
    return g is None or isinstance(g.type, DisconnectedType)


def _output_grads(grads, dtype):
    """Gradients arriving at an Op's outputs, for its gradient Op.

    A disconnected output (not used by the cost) gets an empty (0, 0, 0)
    constant, which the gradient Ops read as "no gradient": that avoids
    allocating zeros, and one compiled gradient module serves every pattern
    of used outputs.
    """
    empty = pt.constant(np.zeros((0, 0, 0), dtype))
    return [empty if _is_disconnected(g) else g for g in grads]


def _np_grad(g):
    return g if g.size else None


def _c_grad_args(gnames, T_):
    """C arguments (pointer or NULL when empty, two strides) for output gradients."""
    return ',\n    '.join(
        'PyArray_SIZE(v_{0}) ? ({1}*)PyArray_DATA(v_{0}) : NULL, THN_S0(v_{0}), THN_S1(v_{0})'
        .format(g, T_) for g in gnames)


def _c_grad_checks(gnames):
    return ''.join(' || (PyArray_SIZE(v_{0}) && thn_rec_check(v_{0}, 3, dseq, "{0}"))'.format(g)
                   for g in gnames)


def _c_prepare(names, sub, fail):
    """C lines creating owned row views (v_<name>) or contiguous copies."""
    lines = []
    for name, kind in names:
        var = sub[name]
        fn = 'thn_rec_rowview' if kind == 'row' else 'thn_rec_contig'
        lines.append('v_{0} = {1}({2}); if (!v_{0}) {{ goto thn_fail; }}'.format(name, fn, var))
    return '\n'.join(lines)


def _c_frame(declared, body, fail, name):
    """Wrap op C code: declare views, run body, release views, fail cleanly.

    ``body`` jumps to ``thn_fail`` on error; the label is made unique per node
    because C labels have function scope and PyTensor may put several nodes'
    code in one function.
    """
    label = 'thn_fail_' + re.sub(r'\W', '_', str(name))
    decl = ' '.join('PyArrayObject* v_{} = NULL;'.format(n) for n in declared)
    free = ' '.join('Py_XDECREF(v_{});'.format(n) for n in declared)
    return """
{
%(decl)s
int thn_err = 0;
{
%(body)s
}
if (0) {
%(label)s:
    thn_err = 1;
}
%(free)s
if (thn_err) { %(fail)s }
}
""" % dict(decl=decl, body=body.replace('goto thn_fail;', 'goto %s;' % label),
           free=free, fail=fail, label=label)


# ---------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------

class LSTMOp(_RecurrentCOp):
    """Fused LSTM time loop (Graves 2013, diagonal peepholes).

    Inputs ``(xproj, hh, ci, cf, co, h0, c0)``, or with ``project=True``
    ``(x, xw, xb, hh, ci, cf, co, h0, c0)`` where the Op computes the
    projection ``x . xw + xb`` itself, step by step. Outputs ``(h, c, cache)``;
    see :func:`lstm`. ``cache`` (T, B, 4n) holds the gate activations
    [input, forget, tanh(cell input), output] for the gradient Op. With
    ``keep_cache=False`` (put in place by a rewrite when nothing reads the
    cache, e.g. in prediction functions) ``cache`` is a (1, B, 4n) scratch
    area reused by every step, which stays in the CPU caches.
    """

    __props__ = ('project', 'keep_cache')

    def __init__(self, project=False, keep_cache=True):
        self.project = bool(project)
        self.keep_cache = bool(keep_cache)

    def make_node(self, *inputs):
        x = pt.as_tensor_variable(inputs[0])
        dtype = _float_dtype(x)
        x = _as(x, dtype, 3, 'x' if self.project else 'xproj')
        proj = []
        if self.project:
            proj = [_as(inputs[1], dtype, 2, 'xw'), _as(inputs[2], dtype, 1, 'xb')]
            inputs = inputs[2:]
        hh, ci, cf, co, h0, c0 = inputs[1:]
        hh = _as(hh, dtype, 2, 'hh')
        ci, cf, co = (_as(v, dtype, 1, w) for v, w in ((ci, 'ci'), (cf, 'cf'), (co, 'co')))
        h0 = _as(h0, dtype, 2, 'h0')
        c0 = _as(c0, dtype, 2, 'c0')
        seq = _seq_type(x, hh)
        steps = x.type.shape[0] if self.keep_cache else 1
        cache = _tt(dtype, (steps, x.type.shape[1], hh.type.shape[1]))
        return Apply(self, [x] + proj + [hh, ci, cf, co, h0, c0], [seq(), seq(), cache()])

    def infer_shape(self, fgraph, node, shapes):
        xs, hs = shapes[0], shapes[3 if self.project else 1]
        seq = (xs[0], xs[1], hs[0])
        return [seq, seq, (xs[0] if self.keep_cache else 1, xs[1], hs[1])]

    def perform(self, node, inputs, outputs, params=None):
        x = inputs[0]
        if self.project:
            xw, xb = inputs[1:3]
            inputs = inputs[2:]
        hh, ci, cf, co, h0, c0 = inputs[1:]
        nT, B = x.shape[:2]
        n = hh.shape[0]
        if self.project:
            if xw.shape != (x.shape[2], 4 * n) or xb.shape != (4 * n,):
                raise ValueError('lstm: inconsistent input shapes')
            xproj = x.dot(xw) + xb
        else:
            xproj = x
        if xproj.shape[2] != 4 * n or hh.shape != (n, 4 * n) or h0.shape != (B, n) \
                or c0.shape != (B, n):
            raise ValueError('lstm: inconsistent input shapes')
        dtype = x.dtype
        h = np.empty((nT, B, n), dtype)
        c = np.empty((nT, B, n), dtype)
        cache = np.empty((nT, B, 4 * n), dtype)
        hp, cp = h0, c0
        for t in range(nT):
            g = xproj[t] + hp.dot(hh)
            i = _sigmoid(g[:, :n] + cp * ci)
            f = _sigmoid(g[:, n:2 * n] + cp * cf)
            u = np.tanh(g[:, 2 * n:3 * n])
            cc = f * cp + i * u
            o = _sigmoid(g[:, 3 * n:] + cc * co)
            h[t] = o * np.tanh(cc)
            c[t] = cc
            cache[t] = np.concatenate([i, f, u, o], axis=1)
            hp, cp = h[t], c[t]
        outputs[0][0] = h
        outputs[1][0] = c
        outputs[2][0] = cache if self.keep_cache else np.zeros((1, B, 4 * n), dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['x'] + (['xw', 'xb'] if self.project else []) + \
            ['hh', 'ci', 'cf', 'co', 'h0', 'c0']
        s = dict(zip(names, inputs))
        s.update(zip(['h', 'c', 'cache'], outputs))
        prep = _c_prepare([('x', 'row')] + [(k, 'contig') for k in names[1:]], s, sub['fail'])
        s['T'] = 'dtype_%(x)s' % s
        s['keep'] = 'true' if self.keep_cache else 'false'
        if self.project:
            s['nin'] = '(int)PyArray_DIMS(v_x)[2]'
            s['proj_check'] = ('npy_intp dpw[2] = {PyArray_DIMS(v_x)[2], 4 * (npy_intp)n}, '
                               'dpb[1] = {4 * (npy_intp)n};\n'
                               '    if (thn_rec_check(v_xw, 2, dpw, "xw (nin, 4n)") || '
                               'thn_rec_check(v_xb, 1, dpb, "xb (4n,)")) goto thn_fail;')
            s['proj_args'] = '(%(T)s*)PyArray_DATA(v_xw), (%(T)s*)PyArray_DATA(v_xb)' % s
            s['xdims'] = '{nT, B, PyArray_DIMS(v_x)[2]}'
        else:
            s['nin'] = '0'
            s['proj_check'] = ''
            s['proj_args'] = 'NULL, NULL'
            s['xdims'] = '{nT, B, 4 * (npy_intp)n}'
        body = prep + """
const int nT = (int)PyArray_DIMS(v_x)[0], B = (int)PyArray_DIMS(v_x)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_x);
{
    npy_intp dx[3] = %(xdims)s, dw[2] = {n, 4 * (npy_intp)n};
    npy_intp dv[1] = {n}, ds[2] = {B, n};
    npy_intp dg[3] = {%(keep)s ? nT : 1, B, 4 * (npy_intp)n};
    if (thn_rec_check(v_x, 3, dx, "x (T, B, 4n or nin)")
        || thn_rec_check(v_hh, 2, dw, "hh (n, 4n)")
        || thn_rec_check(v_ci, 1, dv, "ci") || thn_rec_check(v_cf, 1, dv, "cf")
        || thn_rec_check(v_co, 1, dv, "co") || thn_rec_check(v_h0, 2, ds, "h0 (B, n)")
        || thn_rec_check(v_c0, 2, ds, "c0 (B, n)")) goto thn_fail;
    %(proj_check)s
    npy_intp dseq[3] = {nT, B, n};
    if (thn_rec_alloc(&%(h)s, 3, dseq, typenum) || thn_rec_alloc(&%(c)s, 3, dseq, typenum)
        || thn_rec_alloc(&%(cache)s, 3, dg, typenum)) goto thn_fail;
}
if (thn_lstm_fwd_run(nT, B, n, (%(T)s*)PyArray_DATA(v_x), THN_S0(v_x), THN_S1(v_x),
    %(nin)s, %(proj_args)s,
    (%(T)s*)PyArray_DATA(v_hh), (%(T)s*)PyArray_DATA(v_ci),
    (%(T)s*)PyArray_DATA(v_cf), (%(T)s*)PyArray_DATA(v_co),
    (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(v_c0),
    (%(T)s*)PyArray_DATA(%(h)s), (%(T)s*)PyArray_DATA(%(c)s),
    (%(T)s*)PyArray_DATA(%(cache)s), %(keep)s)) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        return _c_frame(names, body, sub['fail'], name)

    def pullback(self, inputs, outputs, output_grads):
        h, c, cache = outputs
        gh, gc, gcache = output_grads
        if not self.keep_cache:
            raise NotImplementedError('an LSTMOp without its cache has no gradient')
        if not _is_disconnected(gcache):
            raise NotImplementedError('the LSTM cache output is internal and has no gradient')
        if _is_disconnected(gh) and _is_disconnected(gc):
            return [pt.zeros_like(x) for x in inputs]
        given = _output_grads([gh, gc], cache.dtype)
        x = inputs[0]
        rest = inputs[3:] if self.project else inputs[1:]
        grads = LSTMGradOp(self.project)(*([x, inputs[1]] if self.project else []),
                                         *rest, h, c, cache, *given)
        if not self.project:
            return list(grads)
        dgates, rest_grads, (dxw, dxb) = grads[0], grads[1:7], grads[7:]
        return [_input_grad(dgates, inputs[1])] + [dxw, dxb] + list(rest_grads)


def _input_grad(dgates, xw):
    """Gradient of the raw inputs (T, B, nin) from the gates' (T, B, k) and xw (nin, k)."""
    shape = dgates.shape
    flat = dgates.reshape((shape[0] * shape[1], shape[2])).dot(xw.T)
    return flat.reshape((shape[0], shape[1], xw.shape[0]))


#: Tag of the rewrite below; :mod:`theanets.backend` includes it in its modes.
FORWARD_ONLY_TAG = 'theanets_lstm_forward_only'


@node_rewriter([LSTMOp])
def _lstm_forward_only(fgraph, node):
    """An LSTMOp whose cache nothing reads keeps one step of it (e.g. predictions)."""
    if not node.op.keep_cache or fgraph.clients.get(node.outputs[2]):
        return None
    h, c, _ = LSTMOp(node.op.project, keep_cache=False)(*node.inputs)
    return {node.outputs[0]: h, node.outputs[1]: c}


def _register_rewrites():
    if FORWARD_ONLY_TAG not in optdb.__db__:
        optdb.register(FORWARD_ONLY_TAG, in2out(_lstm_forward_only), position=49.2)


_register_rewrites()


class LSTMGradOp(_RecurrentCOp):
    """Backpropagation through time for :class:`LSTMOp`.

    Inputs ``(hh, ci, cf, co, h0, c0, h, c, cache, gh, gc)`` where ``gh`` and
    ``gc`` are the gradients arriving at the outputs ``h`` and ``c`` (an empty
    array stands for "none"); outputs the gradients
    ``(dxproj, dhh, dci, dcf, dco, dh0, dc0)``. With ``project=True`` the
    inputs start with the raw inputs ``x`` and ``xw``, ``dxproj`` is the
    gradient of the gates' pre-activations and two more outputs follow:
    ``dxw`` (nin, 4n) and ``dxb`` (4n,).
    """

    __props__ = ('project',)

    def __init__(self, project=False):
        self.project = bool(project)

    def make_node(self, *inputs):
        proj = []
        if self.project:
            x, xw = inputs[:2]
            inputs = inputs[2:]
        hh, ci, cf, co, h0, c0, h, c, cache, gh, gc = inputs
        dtype = cache.dtype
        ins = [_as(v, dtype, nd, 'input') for v, nd in zip(
            (hh, ci, cf, co, h0, c0, h, c, cache), (2, 1, 1, 1, 2, 2, 3, 3, 3))]
        ins += [_as(g, dtype, 3, 'output gradient') for g in (gh, gc)]
        hh, ci, cf, co, h0, c0, h, c, cache = ins[:9]
        outs = [cache.type(), hh.type(), ci.type(), cf.type(), co.type(), h0.type(), c0.type()]
        if self.project:
            proj = [_as(x, dtype, 3, 'x'), _as(xw, dtype, 2, 'xw')]
            outs += [proj[1].type(), _tt(dtype, (proj[1].type.shape[1],))()]
        return Apply(self, proj + ins, outs)

    def infer_shape(self, fgraph, node, shapes):
        if self.project:
            xw = shapes[1]
            shapes = shapes[2:]
            extra = [xw, (xw[1],)]
        else:
            extra = []
        return [shapes[8]] + list(shapes[:6]) + extra

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]

    def perform(self, node, inputs, outputs, params=None):
        if self.project:
            x = inputs[0]
            inputs = inputs[2:]
        hh, ci, cf, co, h0, c0, h, c, cache = inputs[:9]
        gh, gc = (_np_grad(g) for g in inputs[9:])
        nT, B, G = cache.shape
        n = G // 4
        dx = np.empty_like(cache)
        dci = np.zeros_like(ci)
        dcf = np.zeros_like(cf)
        dco = np.zeros_like(co)
        dhr = np.zeros((B, n), cache.dtype)
        dcr = np.zeros((B, n), cache.dtype)
        for t in range(nT - 1, -1, -1):
            cp = c[t - 1] if t else c0
            i, f, u, o = (cache[t][:, k * n:(k + 1) * n] for k in range(4))
            dh = dhr + gh[t] if gh is not None else dhr
            dcarry = dcr + gc[t] if gc is not None else dcr
            tc = np.tanh(c[t])
            dgo = dh * tc * o * (1 - o)
            dc = dcarry + dh * o * (1 - tc * tc) + dgo * co
            dgi = dc * u * i * (1 - i)
            dgf = dc * cp * f * (1 - f)
            dgu = dc * i * (1 - u * u)
            dcr = dc * f + dgi * ci + dgf * cf
            dci += (dgi * cp).sum(axis=0)
            dcf += (dgf * cp).sum(axis=0)
            dco += (dgo * c[t]).sum(axis=0)
            dx[t] = np.concatenate([dgi, dgf, dgu, dgo], axis=1)
            dhr = dx[t].dot(hh.T)
        hprev = np.concatenate([h0[None], h[:-1]], axis=0) if nT else h[:0]
        dhh = hprev.reshape(-1, n).T.dot(dx.reshape(-1, G)).astype(cache.dtype)
        results = [dx, dhh, dci, dcf, dco, dhr.astype(cache.dtype), dcr.astype(cache.dtype)]
        if self.project:
            flat = dx.reshape(-1, G)
            results += [x.reshape(-1, x.shape[2]).T.dot(flat).astype(cache.dtype),
                        flat.sum(axis=0).astype(cache.dtype)]
        for k, v in enumerate(results):
            outputs[k][0] = v

    def c_code(self, node, name, inputs, outputs, sub):
        pnames = ['x', 'xw'] if self.project else []
        names = ['hh', 'ci', 'cf', 'co', 'h0', 'c0', 'h', 'c', 'cache']
        gnames = ['gh', 'gc']
        s = dict(zip(pnames + names + gnames, inputs))
        onames = ['dx', 'dhh', 'dci', 'dcf', 'dco', 'dh0', 'dc0']
        s.update(zip(onames + (['dxw', 'dxb'] if self.project else []), outputs))
        prep = _c_prepare([('x', 'row')] * bool(pnames) + [(k, 'contig') for k in pnames[1:]] +
                          [(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        T_ = 'dtype_%(cache)s' % s
        s['T'] = T_
        s.update(gargs=_c_grad_args(gnames, T_), gchecks=_c_grad_checks(gnames))
        if self.project:
            s['proj_alloc'] = """
    npy_intp dpw[2] = {PyArray_DIMS(v_x)[2], 4 * (npy_intp)n}, dpb[1] = {4 * (npy_intp)n};
    npy_intp dxs[3] = {nT, B, PyArray_DIMS(v_x)[2]};
    if (thn_rec_check(v_x, 3, dxs, "x") || thn_rec_check(v_xw, 2, dpw, "xw")
        || thn_rec_alloc(&%(dxw)s, 2, dpw, typenum)
        || thn_rec_alloc(&%(dxb)s, 1, dpb, typenum)) goto thn_fail;""" % s
            s['proj_args'] = ('(%(T)s*)PyArray_DATA(v_x), THN_S0(v_x), THN_S1(v_x), '
                              '(int)PyArray_DIMS(v_x)[2], (%(T)s*)PyArray_DATA(%(dxw)s), '
                              '(%(T)s*)PyArray_DATA(%(dxb)s)') % s
        else:
            s['proj_alloc'] = ''
            s['proj_args'] = 'NULL, 0, 0, 0, NULL, NULL'
        body = prep + """
const int nT = (int)PyArray_DIMS(v_cache)[0], B = (int)PyArray_DIMS(v_cache)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_cache);
{
    npy_intp dx[3] = {nT, B, 4 * (npy_intp)n}, dw[2] = {n, 4 * (npy_intp)n};
    npy_intp dv[1] = {n}, ds[2] = {B, n}, dseq[3] = {nT, B, n};
    if (thn_rec_check(v_cache, 3, dx, "cache") || thn_rec_check(v_hh, 2, dw, "hh")
        || thn_rec_check(v_h, 3, dseq, "h") || thn_rec_check(v_c, 3, dseq, "c")
        || thn_rec_check(v_h0, 2, ds, "h0") || thn_rec_check(v_c0, 2, ds, "c0")
        || thn_rec_check(v_ci, 1, dv, "ci") || thn_rec_check(v_cf, 1, dv, "cf")
        || thn_rec_check(v_co, 1, dv, "co") %(gchecks)s) goto thn_fail;
    if (thn_rec_alloc(&%(dx)s, 3, dx, typenum) || thn_rec_alloc(&%(dhh)s, 2, dw, typenum)
        || thn_rec_alloc(&%(dci)s, 1, dv, typenum) || thn_rec_alloc(&%(dcf)s, 1, dv, typenum)
        || thn_rec_alloc(&%(dco)s, 1, dv, typenum) || thn_rec_alloc(&%(dh0)s, 2, ds, typenum)
        || thn_rec_alloc(&%(dc0)s, 2, ds, typenum)) goto thn_fail;%(proj_alloc)s
}
if (thn_lstm_bwd_run(nT, B, n, %(proj_args)s, (%(T)s*)PyArray_DATA(v_hh),
    (%(T)s*)PyArray_DATA(v_ci), (%(T)s*)PyArray_DATA(v_cf), (%(T)s*)PyArray_DATA(v_co),
    (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(v_c0),
    (%(T)s*)PyArray_DATA(v_h), (%(T)s*)PyArray_DATA(v_c), (%(T)s*)PyArray_DATA(v_cache),
    %(gargs)s,
    (%(T)s*)PyArray_DATA(%(dx)s), (%(T)s*)PyArray_DATA(%(dhh)s),
    (%(T)s*)PyArray_DATA(%(dci)s), (%(T)s*)PyArray_DATA(%(dcf)s), (%(T)s*)PyArray_DATA(%(dco)s),
    (%(T)s*)PyArray_DATA(%(dh0)s), (%(T)s*)PyArray_DATA(%(dc0)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        return _c_frame(pnames + names + gnames, body, sub['fail'], name)


# ---------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------

class GRUOp(_ActivationCOp):
    """Fused GRU time loop.

    Inputs ``(xproj, hh, hr, hz, h0)``, outputs ``(h, pre, hid, rate, cache)``;
    see :func:`gru`. ``cache`` (T, B, 2n) holds ``[r, r * h_{t-1}]``.
    """

    __props__ = ('activation',)

    def __init__(self, activation='tanh'):
        self.activation = _canonical(activation)

    def make_node(self, xproj, hh, hr, hz, h0):
        xproj = pt.as_tensor_variable(xproj)
        dtype = _float_dtype(xproj)
        xproj = _as(xproj, dtype, 3, 'xproj')
        hh, hr, hz, h0 = (_as(v, dtype, 2, w) for v, w in
                          ((hh, 'hh'), (hr, 'hr'), (hz, 'hz'), (h0, 'h0')))
        seq = _seq_type(xproj, hh)
        n = hh.type.shape[0]
        cache = _tt(dtype, (xproj.type.shape[0], xproj.type.shape[1],
                            None if n is None else 2 * n))
        return Apply(self, [xproj, hh, hr, hz, h0], [seq(), seq(), seq(), seq(), cache()])

    def infer_shape(self, fgraph, node, shapes):
        xs, hs = shapes[0], shapes[1]
        seq = (xs[0], xs[1], hs[0])
        return [seq] * 4 + [(xs[0], xs[1], 2 * hs[0])]

    def perform(self, node, inputs, outputs, params=None):
        xproj, hh, hr, hz, h0 = inputs
        nT, B, G = xproj.shape
        n = hh.shape[0]
        if G != 3 * n or hh.shape != (n, n) or hr.shape != (n, n) or hz.shape != (n, n) \
                or h0.shape != (B, n):
            raise ValueError('gru: inconsistent input shapes')
        dtype = xproj.dtype
        h, pre, hid, rate = (np.empty((nT, B, n), dtype) for _ in range(4))
        cache = np.empty((nT, B, 2 * n), dtype)
        hp = h0
        for t in range(nT):
            x = xproj[t]
            r = _sigmoid(x[:, n:2 * n] + hp.dot(hr))
            z = _sigmoid(x[:, 2 * n:] + hp.dot(hz))
            rh = r * hp
            p = x[:, :n] + rh.dot(hh)
            a = _np_act(self.activation, p)
            h[t] = (1 - z) * hp + z * a
            pre[t], hid[t], rate[t] = p, a, z
            cache[t] = np.concatenate([r, rh], axis=1)
            hp = h[t]
        for k, v in enumerate((h, pre, hid, rate, cache)):
            outputs[k][0] = v

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['xproj', 'hh', 'hr', 'hz', 'h0']
        s = dict(zip(names, inputs))
        s.update(zip(['h', 'pre', 'hid', 'rate', 'cache'], outputs))
        s['T'] = 'dtype_%(xproj)s' % s
        prep = _c_prepare([('xproj', 'row')] + [(k, 'contig') for k in names[1:]], s, sub['fail'])
        body = prep + """
const int nT = (int)PyArray_DIMS(v_xproj)[0], B = (int)PyArray_DIMS(v_xproj)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_xproj);
{
    npy_intp dx[3] = {nT, B, 3 * (npy_intp)n}, dw[2] = {n, n}, ds[2] = {B, n};
    if (thn_rec_check(v_xproj, 3, dx, "xproj (T, B, 3n)") || thn_rec_check(v_hh, 2, dw, "hh (n, n)")
        || thn_rec_check(v_hr, 2, dw, "hr (n, n)") || thn_rec_check(v_hz, 2, dw, "hz (n, n)")
        || thn_rec_check(v_h0, 2, ds, "h0 (B, n)")) goto thn_fail;
    npy_intp dseq[3] = {nT, B, n}, dc[3] = {nT, B, 2 * (npy_intp)n};
    if (thn_rec_alloc(&%(h)s, 3, dseq, typenum) || thn_rec_alloc(&%(pre)s, 3, dseq, typenum)
        || thn_rec_alloc(&%(hid)s, 3, dseq, typenum) || thn_rec_alloc(&%(rate)s, 3, dseq, typenum)
        || thn_rec_alloc(&%(cache)s, 3, dc, typenum)) goto thn_fail;
}
if (thn_gru_fwd_run<THN_ACT>(nT, B, n, (%(T)s*)PyArray_DATA(v_xproj),
        THN_S0(v_xproj), THN_S1(v_xproj), (%(T)s*)PyArray_DATA(v_hh),
        (%(T)s*)PyArray_DATA(v_hr), (%(T)s*)PyArray_DATA(v_hz),
        (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(%(h)s), (%(T)s*)PyArray_DATA(%(pre)s),
        (%(T)s*)PyArray_DATA(%(hid)s), (%(T)s*)PyArray_DATA(%(rate)s),
        (%(T)s*)PyArray_DATA(%(cache)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        body = _c_dispatch(body, sub['params'])
        return _c_frame(names, body, sub['fail'], name)

    def pullback(self, inputs, outputs, output_grads):
        xproj, hh, hr, hz, h0 = inputs
        h, pre, hid, rate, cache = outputs
        if not _is_disconnected(output_grads[4]):
            raise NotImplementedError('the GRU cache output is internal and has no gradient')
        grads = output_grads[:4]
        if all(_is_disconnected(g) for g in grads):
            return [pt.zeros_like(x) for x in inputs]
        given = _output_grads(grads, cache.dtype)
        return list(GRUGradOp(self.activation)(hh, hr, hz, h0, h, pre, hid, rate, cache, *given))


class GRUGradOp(_ActivationCOp):
    """Backpropagation through time for :class:`GRUOp`.

    Inputs ``(hh, hr, hz, h0, h, pre, hid, rate, cache, gh, gpre, ghid,
    grate)``, the last four being the gradients arriving at the outputs (an
    empty array stands for "none"); outputs ``(dxproj, dhh, dhr, dhz, dh0)``.
    """

    __props__ = ('activation',)

    def __init__(self, activation='tanh'):
        self.activation = _canonical(activation)

    def make_node(self, hh, hr, hz, h0, h, pre, hid, rate, cache, gh, gpre, ghid, grate):
        dtype = cache.dtype
        grads = (gh, gpre, ghid, grate)
        ins = [_as(v, dtype, nd, 'input') for v, nd in zip(
            (hh, hr, hz, h0, h, pre, hid, rate, cache), (2, 2, 2, 2, 3, 3, 3, 3, 3))]
        ins += [_as(g, dtype, 3, 'output gradient') for g in grads]
        hh, hr, hz, h0 = ins[:4]
        cache = ins[8]
        n = hh.type.shape[0]
        dx = _tt(dtype, (cache.type.shape[0], cache.type.shape[1],
                         None if n is None else 3 * n))
        return Apply(self, ins, [dx(), hh.type(), hr.type(), hz.type(), h0.type()])

    def infer_shape(self, fgraph, node, shapes):
        cs, hs = shapes[8], shapes[0]
        return [(cs[0], cs[1], 3 * hs[0])] + list(shapes[:4])

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]

    def perform(self, node, inputs, outputs, params=None):
        hh, hr, hz, h0, h, pre, hid, rate, cache = inputs[:9]
        gh, gp, ga, gz = (_np_grad(g) for g in inputs[9:])
        nT, B, n = h.shape
        dtype = h.dtype
        dx = np.empty((nT, B, 3 * n), dtype)
        dc = np.zeros((B, n), dtype)
        for t in range(nT - 1, -1, -1):
            hp = h[t - 1] if t else h0
            z, a, p = rate[t], hid[t], pre[t]
            r = cache[t][:, :n]
            dh = dc + gh[t] if gh is not None else dc
            dz = dh * (a - hp)
            if gz is not None:
                dz = dz + gz[t]
            da = dh * z
            if ga is not None:
                da = da + ga[t]
            dgz = dz * z * (1 - z)
            dp = da * _np_act_grad(self.activation, p, a)
            if gp is not None:
                dp = dp + gp[t]
            drh = dp.dot(hh.T)
            dgr = drh * hp * r * (1 - r)
            dc = dh * (1 - z) + drh * r + dgr.dot(hr.T) + dgz.dot(hz.T)
            dx[t] = np.concatenate([dp, dgr, dgz], axis=1)
        hprev = (np.concatenate([h0[None], h[:-1]], axis=0) if nT else h[:0]).reshape(-1, n)
        dflat = dx.reshape(-1, 3 * n)
        dhh = cache[:, :, n:].reshape(-1, n).T.dot(dflat[:, :n])
        dhr = hprev.T.dot(dflat[:, n:2 * n])
        dhz = hprev.T.dot(dflat[:, 2 * n:])
        for k, v in enumerate((dx, dhh, dhr, dhz, dc)):
            outputs[k][0] = np.asarray(v, dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['hh', 'hr', 'hz', 'h0', 'h', 'pre', 'hid', 'rate', 'cache']
        gnames = ['gh', 'gp', 'ga', 'gz']
        s = dict(zip(names + gnames, inputs))
        s.update(zip(['dx', 'dhh', 'dhr', 'dhz', 'dh0'], outputs))
        T_ = 'dtype_%(cache)s' % s
        s['T'] = T_
        prep = _c_prepare([(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        s.update(gargs=_c_grad_args(gnames, T_), gchecks=_c_grad_checks(gnames))
        body = prep + """
const int nT = (int)PyArray_DIMS(v_cache)[0], B = (int)PyArray_DIMS(v_cache)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_cache);
{
    npy_intp dxs[3] = {nT, B, 3 * (npy_intp)n}, dw[2] = {n, n}, ds[2] = {B, n};
    npy_intp dseq[3] = {nT, B, n}, dc[3] = {nT, B, 2 * (npy_intp)n};
    if (thn_rec_check(v_cache, 3, dc, "cache") || thn_rec_check(v_hh, 2, dw, "hh")
        || thn_rec_check(v_hr, 2, dw, "hr") || thn_rec_check(v_hz, 2, dw, "hz")
        || thn_rec_check(v_h0, 2, ds, "h0") || thn_rec_check(v_h, 3, dseq, "h")
        || thn_rec_check(v_pre, 3, dseq, "pre") || thn_rec_check(v_hid, 3, dseq, "hid")
        || thn_rec_check(v_rate, 3, dseq, "rate") %(gchecks)s) goto thn_fail;
    if (thn_rec_alloc(&%(dx)s, 3, dxs, typenum) || thn_rec_alloc(&%(dhh)s, 2, dw, typenum)
        || thn_rec_alloc(&%(dhr)s, 2, dw, typenum) || thn_rec_alloc(&%(dhz)s, 2, dw, typenum)
        || thn_rec_alloc(&%(dh0)s, 2, ds, typenum)) goto thn_fail;
}
if (thn_gru_bwd_run<THN_ACT>(nT, B, n, (%(T)s*)PyArray_DATA(v_hh),
        (%(T)s*)PyArray_DATA(v_hr), (%(T)s*)PyArray_DATA(v_hz),
        (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(v_h), (%(T)s*)PyArray_DATA(v_pre),
        (%(T)s*)PyArray_DATA(v_hid), (%(T)s*)PyArray_DATA(v_rate), (%(T)s*)PyArray_DATA(v_cache),
        %(gargs)s,
        (%(T)s*)PyArray_DATA(%(dx)s), (%(T)s*)PyArray_DATA(%(dhh)s),
        (%(T)s*)PyArray_DATA(%(dhr)s), (%(T)s*)PyArray_DATA(%(dhz)s),
        (%(T)s*)PyArray_DATA(%(dh0)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        body = _c_dispatch(body, sub['params'])
        return _c_frame(names + gnames, body, sub['fail'], name)


# ---------------------------------------------------------------------------
# RNN
# ---------------------------------------------------------------------------

class RNNOp(_ActivationCOp):
    """Fused simple-RNN time loop: inputs ``(xproj, hh, h0)``, outputs ``(h, pre)``."""

    __props__ = ('activation',)

    def __init__(self, activation='tanh'):
        self.activation = _canonical(activation)

    def make_node(self, xproj, hh, h0):
        xproj = pt.as_tensor_variable(xproj)
        dtype = _float_dtype(xproj)
        xproj = _as(xproj, dtype, 3, 'xproj')
        hh = _as(hh, dtype, 2, 'hh')
        h0 = _as(h0, dtype, 2, 'h0')
        seq = _seq_type(xproj, hh)
        return Apply(self, [xproj, hh, h0], [seq(), seq()])

    def infer_shape(self, fgraph, node, shapes):
        xs, hs = shapes[0], shapes[1]
        seq = (xs[0], xs[1], hs[0])
        return [seq, seq]

    def perform(self, node, inputs, outputs, params=None):
        xproj, hh, h0 = inputs
        nT, B, n = xproj.shape
        if hh.shape != (n, n) or h0.shape != (B, n):
            raise ValueError('rnn: inconsistent input shapes')
        h = np.empty((nT, B, n), xproj.dtype)
        pre = np.empty((nT, B, n), xproj.dtype)
        hp = h0
        for t in range(nT):
            pre[t] = xproj[t] + hp.dot(hh)
            h[t] = _np_act(self.activation, pre[t])
            hp = h[t]
        outputs[0][0] = h
        outputs[1][0] = pre

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['xproj', 'hh', 'h0']
        s = dict(zip(names, inputs))
        s.update(zip(['h', 'pre'], outputs))
        s['T'] = 'dtype_%(xproj)s' % s
        prep = _c_prepare([('xproj', 'row'), ('hh', 'contig'), ('h0', 'contig')], s, sub['fail'])
        body = prep + """
const int nT = (int)PyArray_DIMS(v_xproj)[0], B = (int)PyArray_DIMS(v_xproj)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_xproj);
{
    npy_intp dseq[3] = {nT, B, n}, dw[2] = {n, n}, ds[2] = {B, n};
    if (thn_rec_check(v_xproj, 3, dseq, "xproj (T, B, n)")
        || thn_rec_check(v_hh, 2, dw, "hh (n, n)")
        || thn_rec_check(v_h0, 2, ds, "h0 (B, n)")) goto thn_fail;
    if (thn_rec_alloc(&%(h)s, 3, dseq, typenum) || thn_rec_alloc(&%(pre)s, 3, dseq, typenum))
        goto thn_fail;
}
if (thn_rnn_fwd_run<THN_ACT>(nT, B, n, (%(T)s*)PyArray_DATA(v_xproj),
        THN_S0(v_xproj), THN_S1(v_xproj), (%(T)s*)PyArray_DATA(v_hh),
        (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(%(h)s), (%(T)s*)PyArray_DATA(%(pre)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        body = _c_dispatch(body, sub['params'])
        return _c_frame(names, body, sub['fail'], name)

    def pullback(self, inputs, outputs, output_grads):
        xproj, hh, h0 = inputs
        h, pre = outputs
        if all(_is_disconnected(g) for g in output_grads):
            return [pt.zeros_like(x) for x in inputs]
        given = _output_grads(output_grads, h.dtype)
        return list(RNNGradOp(self.activation)(hh, h0, h, pre, *given))


class RNNGradOp(_ActivationCOp):
    """Backpropagation through time for :class:`RNNOp`.

    Inputs ``(hh, h0, h, pre, gh, gpre)``, the last two being the gradients
    arriving at the outputs (an empty array stands for "none"); outputs
    ``(dxproj, dhh, dh0)``.
    """

    __props__ = ('activation',)

    def __init__(self, activation='tanh'):
        self.activation = _canonical(activation)

    def make_node(self, hh, h0, h, pre, gh, gpre):
        dtype = h.dtype
        grads = (gh, gpre)
        ins = [_as(v, dtype, nd, 'input') for v, nd in zip((hh, h0, h, pre), (2, 2, 3, 3))]
        ins += [_as(g, dtype, 3, 'output gradient') for g in grads]
        return Apply(self, ins, [ins[2].type(), ins[0].type(), ins[1].type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[2], shapes[0], shapes[1]]

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]

    def perform(self, node, inputs, outputs, params=None):
        hh, h0, h, pre = inputs[:4]
        gh, gp = (_np_grad(g) for g in inputs[4:])
        nT, B, n = h.shape
        dx = np.empty_like(h)
        dc = np.zeros((B, n), h.dtype)
        for t in range(nT - 1, -1, -1):
            dh = dc + gh[t] if gh is not None else dc
            dp = dh * _np_act_grad(self.activation, pre[t], h[t])
            if gp is not None:
                dp = dp + gp[t]
            dx[t] = dp
            dc = dp.dot(hh.T)
        hprev = (np.concatenate([h0[None], h[:-1]], axis=0) if nT else h[:0]).reshape(-1, n)
        dhh = hprev.T.dot(dx.reshape(-1, n))
        for k, v in enumerate((dx, dhh, dc)):
            outputs[k][0] = np.asarray(v, h.dtype)

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['hh', 'h0', 'h', 'pre']
        gnames = ['gh', 'gp']
        s = dict(zip(names + gnames, inputs))
        s.update(zip(['dx', 'dhh', 'dh0'], outputs))
        T_ = 'dtype_%(h)s' % s
        s['T'] = T_
        prep = _c_prepare([(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        s.update(gargs=_c_grad_args(gnames, T_), gchecks=_c_grad_checks(gnames))
        body = prep + """
const int nT = (int)PyArray_DIMS(v_h)[0], B = (int)PyArray_DIMS(v_h)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_h);
{
    npy_intp dseq[3] = {nT, B, n}, dw[2] = {n, n}, ds[2] = {B, n};
    if (thn_rec_check(v_hh, 2, dw, "hh") || thn_rec_check(v_h0, 2, ds, "h0")
        || thn_rec_check(v_h, 3, dseq, "h") || thn_rec_check(v_pre, 3, dseq, "pre")
        %(gchecks)s) goto thn_fail;
    if (thn_rec_alloc(&%(dx)s, 3, dseq, typenum) || thn_rec_alloc(&%(dhh)s, 2, dw, typenum)
        || thn_rec_alloc(&%(dh0)s, 2, ds, typenum)) goto thn_fail;
}
if (thn_rnn_bwd_run<THN_ACT>(nT, B, n, (%(T)s*)PyArray_DATA(v_hh),
        (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(v_h), (%(T)s*)PyArray_DATA(v_pre),
        %(gargs)s, (%(T)s*)PyArray_DATA(%(dx)s), (%(T)s*)PyArray_DATA(%(dhh)s),
        (%(T)s*)PyArray_DATA(%(dh0)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        body = _c_dispatch(body, sub['params'])
        return _c_frame(names + gnames, body, sub['fail'], name)


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------

def _initial(state, xproj, n, dtype):
    """(B, n) initial state: zeros when None; (n,) / (1, n) broadcast to B."""
    batch = xproj.shape[1]
    if state is None:
        return pt.zeros((batch, n), dtype=dtype)
    state = pt.as_tensor_variable(state)
    if state.dtype != dtype:
        state = pt.cast(state, dtype)
    if state.ndim == 1 or state.type.shape[0] == 1:
        state = pt.alloc(state, batch, n)
    return state


def _dtype_of(xproj):
    return _float_dtype(pt.as_tensor_variable(xproj))


def lstm(xproj, hh, ci, cf, co, h0=None, c0=None, xw=None, xb=None):
    """Run a whole LSTM layer (Graves 2013, diagonal peepholes) in one Op.

    Per time step, with ``x = xproj[t]`` split into the blocks
    ``[x_i, x_f, x_c, x_o]`` and ``hh`` into ``[hh_i, hh_f, hh_c, hh_o]``::

        i = sigmoid(x_i + h_{t-1} . hh_i + c_{t-1} * ci)
        f = sigmoid(x_f + h_{t-1} . hh_f + c_{t-1} * cf)
        c_t = f * c_{t-1} + i * tanh(x_c + h_{t-1} . hh_c)
        o = sigmoid(x_o + h_{t-1} . hh_o + c_t * co)
        h_t = o * tanh(c_t)

    Parameters
    ----------
    xproj : tensor (T, B, 4n), or (T, B, nin) when ``xw`` is given
        Projected inputs ``x . W + b`` for every step, time-major, bias
        included, blocks ordered [input, forget, cell, output]; or, with
        ``xw``, the raw inputs, which the Op projects itself inside its time
        loop (no (T, B, 4n) projection is stored, and the weight gradients
        accumulate in the loop). Any strides with a contiguous last axis are
        read without a copy, e.g. a batch-major input dimshuffled to
        time-major.
    hh : matrix (n, 4n)
        Recurrent weights, same block order.
    ci, cf, co : vector (n,)
        Peephole weights of the input, forget and output gates.
    h0, c0 : matrix (B, n), optional
        Initial hidden and cell states (zeros when None; an (n,) or (1, n)
        state is broadcast over the batch).
    xw : matrix (nin, 4n), optional
        Input weights: the Op computes ``xproj . xw + xb``.
    xb : vector (4n,), optional
        Bias of the projection (zeros when None); only with ``xw``.

    Returns
    -------
    h : tensor (T, B, n)
        Hidden states ``h_1 .. h_T``.
    c : tensor (T, B, n)
        Cell states ``c_1 .. c_T``.
    """
    dtype = _dtype_of(xproj)
    xproj = pt.as_tensor_variable(xproj)
    hh = pt.as_tensor_variable(hh)
    n = hh.shape[0]
    h0 = _initial(h0, xproj, n, dtype)
    c0 = _initial(c0, xproj, n, dtype)
    if xw is None:
        if xb is not None:
            raise ValueError('lstm: xb (the projection bias) needs xw')
        h, c, _ = LSTMOp()(xproj, hh, ci, cf, co, h0, c0)
    else:
        xw = pt.as_tensor_variable(xw)
        xb = pt.zeros((xw.shape[1],), dtype) if xb is None else xb
        h, c, _ = LSTMOp(project=True)(xproj, xw, xb, hh, ci, cf, co, h0, c0)
    return h, c


def gru(xproj, hh, hr, hz, h0=None, activation='tanh'):
    """Run a whole GRU layer in one Op.

    Per time step, with ``x = xproj[t]`` split into ``[x_h, x_r, x_z]``::

        r = sigmoid(x_r + h_{t-1} . hr)            # reset gate
        z = sigmoid(x_z + h_{t-1} . hz)            # rate (update) gate
        pre = x_h + (r * h_{t-1}) . hh
        hid = g(pre)                               # candidate state
        h_t = (1 - z) * h_{t-1} + z * hid

    Parameters
    ----------
    xproj : tensor (T, B, 3n)
        Projected inputs (bias included), blocks [candidate, reset, rate].
    hh, hr, hz : matrix (n, n)
        Recurrent weights of the candidate, reset and rate blocks.
    h0 : matrix (B, n), optional
        Initial state (zeros when None; (n,) or (1, n) is broadcast).
    activation : str
        ``g``; see :func:`supports_activation`.

    Returns
    -------
    out : tensor (T, B, n)
        ``h_t`` (the layer's ``'out'``).
    pre : tensor (T, B, n)
        The argument of ``g`` (``'pre'``).
    hid : tensor (T, B, n)
        The candidate ``g(pre)`` (``'hid'``).
    rate : tensor (T, B, n)
        The rate gate ``z`` (``'rate'``).
    """
    dtype = _dtype_of(xproj)
    hh = pt.as_tensor_variable(hh)
    h0 = _initial(h0, pt.as_tensor_variable(xproj), hh.shape[0], dtype)
    out, pre, hid, rate, _ = GRUOp(activation)(xproj, hh, hr, hz, h0)
    return out, pre, hid, rate


def rnn(xproj, hh, h0=None, activation='tanh'):
    """Run a whole simple recurrent layer in one Op: ``h_t = g(xproj_t + h_{t-1} . hh)``.

    Parameters
    ----------
    xproj : tensor (T, B, n)
        Projected inputs (bias included), time-major.
    hh : matrix (n, n)
        Recurrent weights.
    h0 : matrix (B, n), optional
        Initial state (zeros when None; (n,) or (1, n) is broadcast).
    activation : str
        ``g``; see :func:`supports_activation`.

    Returns
    -------
    out : tensor (T, B, n)
        ``h_t = g(pre_t)``.
    pre : tensor (T, B, n)
        ``pre_t = xproj_t + h_{t-1} . hh``.
    """
    dtype = _dtype_of(xproj)
    hh = pt.as_tensor_variable(hh)
    h0 = _initial(h0, pt.as_tensor_variable(xproj), hh.shape[0], dtype)
    return tuple(RNNOp(activation)(xproj, hh, h0))


# ---------------------------------------------------------------------------
# scan references / fallbacks
# ---------------------------------------------------------------------------

def _pt_act(name):
    name = _canonical(name)
    return {
        'linear': lambda z: z,
        'relu': lambda z: pt.maximum(z, 0),
        'tanh': pt.tanh,
        'logistic': pt.sigmoid,
    }[name]


def _scan(fn, sequences, outputs_info, non_sequences, truncate_gradient=-1):
    return pytensor.scan(fn, sequences=sequences, outputs_info=outputs_info,
                         non_sequences=non_sequences, truncate_gradient=truncate_gradient,
                         strict=True, return_updates=False)


def lstm_scan(xproj, hh, ci, cf, co, h0=None, c0=None, bptt_limit=-1):
    """:func:`lstm` written with :func:`pytensor.scan` (same inputs and outputs).

    ``bptt_limit`` > 0 truncates backpropagation through time to that many steps.
    """
    xproj = pt.as_tensor_variable(xproj)
    dtype = _dtype_of(xproj)
    xproj = _as(xproj, dtype, 3, 'xproj')
    hh = _as(hh, dtype, 2, 'hh')
    ci, cf, co = (_as(v, dtype, 1, 'peephole') for v in (ci, cf, co))
    n = hh.shape[0]
    h0 = _initial(h0, xproj, n, dtype)
    c0 = _initial(c0, xproj, n, dtype)

    def step(x, h_tm1, c_tm1, hh, ci, cf, co):
        g = x + h_tm1.dot(hh)
        i = pt.sigmoid(g[:, :n] + c_tm1 * ci)
        f = pt.sigmoid(g[:, n:2 * n] + c_tm1 * cf)
        c = f * c_tm1 + i * pt.tanh(g[:, 2 * n:3 * n])
        o = pt.sigmoid(g[:, 3 * n:] + c * co)
        return [o * pt.tanh(c), c]

    h, c = _scan(step, [xproj], [h0, c0], [hh, ci, cf, co], bptt_limit)
    return h, c


def gru_scan(xproj, hh, hr, hz, h0=None, activation='tanh', bptt_limit=-1):
    """:func:`gru` written with :func:`pytensor.scan` (same inputs and outputs)."""
    xproj = pt.as_tensor_variable(xproj)
    dtype = _dtype_of(xproj)
    xproj = _as(xproj, dtype, 3, 'xproj')
    hh, hr, hz = (_as(v, dtype, 2, 'weights') for v in (hh, hr, hz))
    n = hh.shape[0]
    h0 = _initial(h0, xproj, n, dtype)
    g = _pt_act(activation)

    def step(x, h_tm1, hh, hr, hz):
        r = pt.sigmoid(x[:, n:2 * n] + h_tm1.dot(hr))
        z = pt.sigmoid(x[:, 2 * n:] + h_tm1.dot(hz))
        pre = x[:, :n] + (r * h_tm1).dot(hh)
        hid = g(pre)
        return [(1 - z) * h_tm1 + z * hid, pre, hid, z]

    out, pre, hid, rate = _scan(step, [xproj], [h0, None, None, None], [hh, hr, hz], bptt_limit)
    return out, pre, hid, rate


def rnn_scan(xproj, hh, h0=None, activation='tanh', bptt_limit=-1):
    """:func:`rnn` written with :func:`pytensor.scan` (same inputs and outputs)."""
    xproj = pt.as_tensor_variable(xproj)
    dtype = _dtype_of(xproj)
    xproj = _as(xproj, dtype, 3, 'xproj')
    hh = _as(hh, dtype, 2, 'hh')
    h0 = _initial(h0, xproj, hh.shape[0], dtype)
    g = _pt_act(activation)

    def step(x, h_tm1, hh):
        pre = x + h_tm1.dot(hh)
        return [g(pre), pre]

    out, pre = _scan(step, [xproj], [h0, None], [hh], bptt_limit)
    return out, pre
