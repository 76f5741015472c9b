"""Fused recurrent-layer operations: a whole time loop in one PyTensor Op.

A recurrent layer built on :func:`pytensor.scan` spends most of its time in
the per-step loop machinery. The Ops here run the entire time loop of an RNN,
GRU or LSTM layer in a single Op -- in C, calling BLAS once or twice per time
step -- and their gradient is another single Op that runs backpropagation
through time over the whole sequence.

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
"""

import re

import numpy as np
import scipy.special

import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32 as scalar_int32
from pytensor.tensor.blas import ldflags
from pytensor.tensor.blas_headers import blas_header_text, blas_header_version
from pytensor.tensor.type import TensorType

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

_C_VERSION = 8


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

/* dst (C x R, leading dim ldd) = transpose of src (R x C, leading dim lds) */
template <typename T>
static void thn_rec_transpose(int R, int C, const T* src, int lds, T* dst, int ldd) {
    const int K = 32;
    for (int r0 = 0; r0 < R; r0 += K)
        for (int c0 = 0; c0 < C; c0 += K) {
            const int r1 = r0 + K < R ? r0 + K : R, c1 = c0 + K < C ? c0 + K : C;
            for (int r = r0; r < r1; ++r)
                for (int c = c0; c < c1; ++c)
                    dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
        }
}

/* ---- elementwise math ---------------------------------------------------
   float32: branch-free exp (range reduction + degree-7 polynomial) that GCC
   vectorizes; float64: the C library. */
THN_INLINE float thn_rec_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + 12582912.0f;  /* 1.5 * 2^23 */
    float k = t - 12582912.0f;                            /* round(x / ln 2) */
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;                          /* |r| <= ln(2) / 2 */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;               /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
THN_INLINE double thn_rec_exp(double x) { return exp(x); }

THN_INLINE float thn_rec_sigmoid(float x) { return 1.0f / (1.0f + thn_rec_exp(-x)); }
THN_INLINE double thn_rec_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

THN_INLINE float thn_rec_tanh(float x) {
    float a = x < 0 ? -x : x;
    float e = thn_rec_exp(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float a2 = a * a;                     /* Taylor series near zero */
    float small = -1382.0f / 155925.0f;
    small = small * a2 + 62.0f / 2835.0f;
    small = small * a2 - 17.0f / 315.0f;
    small = small * a2 + 2.0f / 15.0f;
    small = small * a2 - 1.0f / 3.0f;
    small = (small * a2 + 1.0f) * a;
    float y = a < 0.25f ? small : big;
    return x < 0 ? -y : y;
}
THN_INLINE double thn_rec_tanh(double x) { return tanh(x); }

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
        PyErr_Format(PyExc_ValueError, "fused recurrent op: %s has the wrong shape", what);
        return -1;
    }
    return 0;
}

/* strides of a 3-d row view, in elements */
#define THN_S0(a) (PyArray_STRIDES(a)[0] / (npy_intp)PyArray_ITEMSIZE(a))
#define THN_S1(a) (PyArray_STRIDES(a)[1] / (npy_intp)PyArray_ITEMSIZE(a))

/* =========================================================================
   LSTM
   ========================================================================= */

/* cache[t] holds the gate activations [i, f, u = tanh(cell input), o]. */
template <typename T>
static THN_HOT int thn_lstm_fwd(int nT, int B, int n,
                         const T* xp, npy_intp xs0, npy_intp xs1,
                         const T* hh, const T* ci, const T* cf, const T* co,
                         const T* h0, const T* c0, T* h, T* c, T* cache) {
    const int G = 4 * n;
    const size_t Bn = (size_t)B * n, BG = (size_t)B * G;
    for (int t = 0; t < nT; ++t) {
        T* g = cache + t * BG;
        const T* hp = t ? h + (t - 1) * Bn : h0;
        const T* cp = t ? c + (t - 1) * Bn : c0;
        for (int b = 0; b < B; ++b)
            memcpy(g + (size_t)b * G, xp + t * xs0 + b * xs1, G * sizeof(T));
        thn_rec_gemm<T>(false, false, B, G, n, 1, hp, n, hh, G, 1, g, G);
        for (int b = 0; b < B; ++b) {
            T* gi = g + (size_t)b * G;
            T* gf = gi + n;
            T* gu = gi + 2 * n;
            T* go = gi + 3 * n;
            const T* cpb = cp + (size_t)b * n;
            T* cb = c + t * Bn + (size_t)b * n;
            T* hb = h + t * Bn + (size_t)b * n;
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
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
    }
    return 0;
}

/* dho / dco: gradients arriving at the h and c outputs (NULL when absent).
   dh0 and dc0 double as the running recurrent gradients. */
template <typename T>
static THN_HOT int thn_lstm_bwd(int nT, int B, int n,
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
        const T* g = cache + t * BG;
        T* d = dx + t * BG;
        for (int b = 0; b < B; ++b) {
            const T* gi = g + (size_t)b * G;
            const T* gf = gi + n;
            const T* gu = gi + 2 * n;
            const T* go = gi + 3 * n;
            T* di = d + (size_t)b * G;
            T* df = di + n;
            T* du = di + 2 * n;
            T* dout = di + 3 * n;
            const T* cpb = cp + (size_t)b * n;
            const T* cb = c + t * Bn + (size_t)b * n;
            T* dhr = dh0 + (size_t)b * n;
            T* dcr = dc0 + (size_t)b * n;
            const T* dhob = dho ? dho + t * hs0 + b * hs1 : NULL;
            const T* dcob = dco ? dco + t * cs0 + b * cs1 : NULL;
            if (dhob)
                for (int j = 0; j < n; ++j) dhr[j] += dhob[j];
            if (dcob)
                for (int j = 0; j < n; ++j) dcr[j] += dcob[j];
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
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
        thn_rec_gemm<T>(false, false, B, n, G, 1, d, G, hhT, n, 0, dh0, n);
    }
    /* dhh = sum_t h_{t-1}^T dgates_t */
    thn_rec_gemm<T>(true, false, n, G, B, 1, h0, n, dx, G, 0, dhh, G);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, G, (nT - 1) * B, 1, h, n, dx + BG, G, 1, dhh, G);
    free(hhT);
    return 0;
}

/* =========================================================================
   GRU  (xproj blocks [candidate, reset, rate]; cache[t] = [r, r * h_{t-1}])
   ========================================================================= */

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
        T* pt_ = pre + t * Bn;
        thn_rec_gemm<T>(false, false, B, 2 * n, n, 1, hp, n, w2, 2 * n, 0, tmp, 2 * n);
        for (int b = 0; b < B; ++b) {
            const T* xb = xp + t * xs0 + b * xs1;
            const T* xr = xb + n;
            const T* xz = xb + 2 * n;
            const T* tr = tmp + (size_t)b * 2 * n;
            const T* tz = tr + n;
            const T* hpb = hp + (size_t)b * n;
            T* rb = ct + (size_t)b * 2 * n;
            T* rhb = rb + n;
            T* zb = rate + t * Bn + (size_t)b * n;
            T* pb = pt_ + (size_t)b * n;
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
                T r = thn_rec_sigmoid(xr[j] + tr[j]);
                rb[j] = r;
                rhb[j] = r * hpb[j];
                zb[j] = thn_rec_sigmoid(xz[j] + tz[j]);
                pb[j] = xb[j];
            }
        }
        thn_rec_gemm<T>(false, false, B, n, n, 1, ct + n, 2 * n, hh, n, 1, pt_, n);
        for (int b = 0; b < B; ++b) {
            const size_t o = t * Bn + (size_t)b * n;
            const T* hpb = hp + (size_t)b * n;
            const T* pb = pre + o;
            const T* zb = rate + o;
            T* ab = hid + o;
            T* hb = h + o;
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
                T a = thn_rec_act<ACT>(pb[j]);
                ab[j] = a;
                hb[j] = ((T)1 - zb[j]) * hpb[j] + zb[j] * a;
            }
        }
    }
    free(w2);
    return 0;
}

/* gradients arriving at outputs h, pre, hid, rate: g_* (NULL when absent);
   dh0 doubles as the running recurrent gradient. */
template <int ACT, typename T>
static THN_HOT int thn_gru_bwd(int nT, int B, int n,
                        const T* hh, const T* hr, const T* hz, const T* h0,
                        const T* h, const T* pre, const T* hid, const T* rate, const T* cache,
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
        T* d = dx + t * BG;
        for (int b = 0; b < B; ++b) {
            const size_t o = t * Bn + (size_t)b * n;
            const T* hpb = hp + (size_t)b * n;
            const T* zb = rate + o;
            const T* ab = hid + o;
            const T* pb = pre + o;
            T* dc = dh0 + (size_t)b * n;
            T* dp = d + (size_t)b * G;
            T* dz = dp + 2 * n;
            if (gh) { const T* s = gh + t * gh0 + b * gh1; for (int j = 0; j < n; ++j) dc[j] += s[j]; }
            const T* gpb = gp ? gp + t * gp0 + b * gp1 : NULL;
            const T* gab = ga ? ga + t * ga0 + b * ga1 : NULL;
            const T* gzb = gz ? gz + t * gz0 + b * gz1 : NULL;
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
                T dh = dc[j], z = zb[j], a = ab[j];
                T dzz = dh * (a - hpb[j]);
                T da = dh * z;
                dz[j] = dzz;
                dp[j] = da;
                dc[j] = dh * ((T)1 - z);
            }
            if (gzb) for (int j = 0; j < n; ++j) dz[j] += gzb[j];
            if (gab) for (int j = 0; j < n; ++j) dp[j] += gab[j];
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
                T z = zb[j];
                dz[j] = dz[j] * z * ((T)1 - z);
                dp[j] = dp[j] * thn_rec_dact<ACT>(pb[j], ab[j]);
            }
            if (gpb) for (int j = 0; j < n; ++j) dp[j] += gpb[j];
        }
        /* d(r * h_{t-1}) = dpre . hh^T */
        thn_rec_gemm<T>(false, false, B, n, n, 1, d, G, hhT, n, 0, drh, n);
        for (int b = 0; b < B; ++b) {
            const T* hpb = hp + (size_t)b * n;
            const T* rb = ct + (size_t)b * 2 * n;
            const T* drb = drh + (size_t)b * n;
            T* dc = dh0 + (size_t)b * n;
            T* dr = d + (size_t)b * G + n;
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) {
                T r = rb[j];
                dr[j] = drb[j] * hpb[j] * r * ((T)1 - r);
                dc[j] += drb[j] * r;
            }
        }
        /* dh_{t-1} += [dr | dz] . [hr | hz]^T */
        thn_rec_gemm<T>(false, false, B, n, 2 * n, 1, d + n, G, w2T, n, 1, dh0, n);
    }
    /* dhh = sum_t (r_t * h_{t-1})^T dpre_t */
    thn_rec_gemm<T>(true, false, n, n, nT * B, 1, cache + n, 2 * n, dx, G, 0, dhh, n);
    /* [dhr | dhz] = sum_t h_{t-1}^T [dr_t | dz_t] */
    thn_rec_gemm<T>(true, false, n, 2 * n, B, 1, h0, n, dx + n, G, 0, dw2, 2 * n);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, 2 * n, (nT - 1) * B, 1, h, n, dx + BG + n, G, 1, dw2, 2 * n);
    for (int i = 0; i < n; ++i) {
        memcpy(dhr + (size_t)i * n, dw2 + (size_t)i * 2 * n, n * sizeof(T));
        memcpy(dhz + (size_t)i * n, dw2 + (size_t)i * 2 * n + n, n * sizeof(T));
    }
    free(hhT);
    return 0;
}

/* =========================================================================
   RNN
   ========================================================================= */

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
        T* ht = h + t * Bn;
#pragma GCC ivdep
        for (size_t k = 0; k < Bn; ++k) ht[k] = thn_rec_act<ACT>(pt_[k]);
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
            const size_t o = t * Bn + (size_t)b * n;
            T* dc = dh0 + (size_t)b * n;
            T* db = d + (size_t)b * n;
            const T* pb = pre + o;
            const T* hb = h + o;
            if (gh) { const T* s = gh + t * gh0 + b * gh1; for (int j = 0; j < n; ++j) dc[j] += s[j]; }
#pragma GCC ivdep
            for (int j = 0; j < n; ++j) db[j] = dc[j] * thn_rec_dact<ACT>(pb[j], hb[j]);
            if (gp) { const T* s = gp + t * gp0 + b * gp1; for (int j = 0; j < n; ++j) db[j] += s[j]; }
        }
        thn_rec_gemm<T>(false, false, B, n, n, 1, d, n, hhT, n, 0, dh0, n);
    }
    thn_rec_gemm<T>(true, false, n, n, B, 1, h0, n, dx, n, 0, dhh, n);
    if (nT > 1)
        thn_rec_gemm<T>(true, false, n, n, (nT - 1) * B, 1, h, n, dx + Bn, n, 1, dhh, n);
    free(hhT);
    return 0;
}

#endif  /* THN_REC_SUPPORT */
"""


# ---------------------------------------------------------------------------
# Op plumbing
# ---------------------------------------------------------------------------

class _RecurrentCOp(COp):
    """Shared C plumbing: BLAS headers, link flags, cache versioning."""

    __props__ = ()

    def c_support_code(self, **kwargs):
        return blas_header_text() + _SUPPORT_CODE

    def c_libraries(self, **kwargs):
        return ldflags()

    def c_compile_args(self, **kwargs):
        return ldflags(libs=False, flags=True)

    def c_lib_dirs(self, **kwargs):
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self, **kwargs):
        return ldflags(libs=False, include_dir=True)

    def c_code_cache_version(self):
        return (_C_VERSION,) + tuple(blas_header_version())



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
    head = re.search(r'if \(thn_(?:gru|rnn)_(?:fwd|bwd)<', body).start()
    stop = body.index(') {\n    PyErr_NoMemory();', head)
    end = body.index('}\n', stop) + 2
    call = body[head + 4:stop]
    cases = ''.join('    case {0}: thn_rc = {1}; break;\n'.format(k, call.replace('THN_ACT', str(k)))
                    for k in range(4))
    switch = ('int thn_rc = -2;\nswitch ({0}->act) {{\n{1}}}\n'.format(params, cases) +
              'if (thn_rc == -2) { PyErr_SetString(PyExc_ValueError, "bad activation code"); '
              'goto thn_fail; }\n'
              'if (thn_rc) { PyErr_NoMemory(); goto thn_fail; }\n')
    return body[:head] + switch + body[end:]


def _float_dtype(x):
    dtype = x.dtype
    if dtype not in ('float32', 'float64'):
        dtype = 'float64' if dtype in ('int32', 'int64', 'uint32', 'uint64') \
            else pytensor.config.floatX
    return dtype


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

    Inputs ``(xproj, hh, ci, cf, co, h0, c0)``, outputs ``(h, c, cache)``;
    see :func:`lstm`. ``cache`` (T, B, 4n) holds the gate activations
    [input, forget, tanh(cell input), output] for the gradient Op.
    """

    def make_node(self, xproj, hh, ci, cf, co, h0, c0):
        xproj = pt.as_tensor_variable(xproj)
        dtype = _float_dtype(xproj)
        xproj = _as(xproj, dtype, 3, 'xproj')
        hh = _as(hh, dtype, 2, 'hh')
        ci, cf, co = (_as(v, dtype, 1, w) for v, w in ((ci, 'ci'), (cf, 'cf'), (co, 'co')))
        h0 = _as(h0, dtype, 2, 'h0')
        c0 = _as(c0, dtype, 2, 'c0')
        seq = _seq_type(xproj, hh)
        cache = _tt(dtype, xproj.type.shape)
        return Apply(self, [xproj, hh, ci, cf, co, h0, c0], [seq(), seq(), cache()])

    def infer_shape(self, fgraph, node, shapes):
        xs, hs = shapes[0], shapes[1]
        seq = (xs[0], xs[1], hs[0])
        return [seq, seq, xs]

    def perform(self, node, inputs, outputs, params=None):
        xproj, hh, ci, cf, co, h0, c0 = inputs
        nT, B, G = xproj.shape
        n = hh.shape[0]
        if G != 4 * n or hh.shape != (n, 4 * n) or h0.shape != (B, n) or c0.shape != (B, n):
            raise ValueError('lstm: inconsistent input shapes')
        dtype = xproj.dtype
        h = np.empty((nT, B, n), dtype)
        c = np.empty((nT, B, n), dtype)
        cache = np.empty((nT, B, G), dtype)
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
        outputs[2][0] = cache

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['xproj', 'hh', 'ci', 'cf', 'co', 'h0', 'c0']
        s = dict(zip(names, inputs))
        s.update(zip(['h', 'c', 'cache'], outputs))
        prep = _c_prepare([('xproj', 'row')] + [(k, 'contig') for k in names[1:]], s, sub['fail'])
        body = prep + """
const int nT = (int)PyArray_DIMS(v_xproj)[0], B = (int)PyArray_DIMS(v_xproj)[1];
const int n = (int)PyArray_DIMS(v_hh)[0];
const int typenum = PyArray_TYPE(v_xproj);
{
    npy_intp dx[3] = {nT, B, 4 * (npy_intp)n}, dw[2] = {n, 4 * (npy_intp)n};
    npy_intp dv[1] = {n}, ds[2] = {B, n};
    if (thn_rec_check(v_xproj, 3, dx, "xproj (T, B, 4n)") || thn_rec_check(v_hh, 2, dw, "hh (n, 4n)")
        || thn_rec_check(v_ci, 1, dv, "ci") || thn_rec_check(v_cf, 1, dv, "cf")
        || thn_rec_check(v_co, 1, dv, "co") || thn_rec_check(v_h0, 2, ds, "h0 (B, n)")
        || thn_rec_check(v_c0, 2, ds, "c0 (B, n)")) goto thn_fail;
    npy_intp dseq[3] = {nT, B, n};
    if (thn_rec_alloc(&%(h)s, 3, dseq, typenum) || thn_rec_alloc(&%(c)s, 3, dseq, typenum)
        || thn_rec_alloc(&%(cache)s, 3, dx, typenum)) goto thn_fail;
}
if (thn_lstm_fwd<dtype_%(xproj)s>(nT, B, n, (dtype_%(xproj)s*)PyArray_DATA(v_xproj),
    THN_S0(v_xproj), THN_S1(v_xproj),
    (dtype_%(xproj)s*)PyArray_DATA(v_hh), (dtype_%(xproj)s*)PyArray_DATA(v_ci),
    (dtype_%(xproj)s*)PyArray_DATA(v_cf), (dtype_%(xproj)s*)PyArray_DATA(v_co),
    (dtype_%(xproj)s*)PyArray_DATA(v_h0), (dtype_%(xproj)s*)PyArray_DATA(v_c0),
    (dtype_%(xproj)s*)PyArray_DATA(%(h)s), (dtype_%(xproj)s*)PyArray_DATA(%(c)s),
    (dtype_%(xproj)s*)PyArray_DATA(%(cache)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        return _c_frame(names, body, sub['fail'], name)

    def pullback(self, inputs, outputs, output_grads):
        xproj, hh, ci, cf, co, h0, c0 = inputs
        h, c, cache = outputs
        gh, gc, gcache = output_grads
        if not _is_disconnected(gcache):
            raise NotImplementedError('the LSTM cache output is internal and has no gradient')
        connected = (not _is_disconnected(gh), not _is_disconnected(gc))
        given = [g for g, k in zip((gh, gc), connected) if k]
        grads = LSTMGradOp(connected)(hh, ci, cf, co, h0, c0, h, c, cache, *given)
        return list(grads)


class LSTMGradOp(_RecurrentCOp):
    """Backpropagation through time for :class:`LSTMOp`.

    Inputs ``(hh, ci, cf, co, h0, c0, h, c, cache, [gh], [gc])`` where the
    output gradients ``gh``/``gc`` are present as flagged by ``connected``;
    outputs the gradients ``(dxproj, dhh, dci, dcf, dco, dh0, dc0)``.
    """

    __props__ = ('connected',)

    def __init__(self, connected=(True, True)):
        self.connected = tuple(bool(k) for k in connected)

    def make_node(self, hh, ci, cf, co, h0, c0, h, c, cache, *grads):
        dtype = cache.dtype
        if len(grads) != sum(self.connected):
            raise TypeError('LSTMGradOp: expected {} output gradients'.format(sum(self.connected)))
        ins = [_as(v, dtype, nd, 'input') for v, nd in zip(
            (hh, ci, cf, co, h0, c0, h, c, cache), (2, 1, 1, 1, 2, 2, 3, 3, 3))]
        ins += [_as(g, dtype, 3, 'output gradient') for g in grads]
        hh, ci, cf, co, h0, c0, h, c, cache = ins[:9]
        outs = [cache.type(), hh.type(), ci.type(), cf.type(), co.type(), h0.type(), c0.type()]
        return Apply(self, ins, outs)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[8]] + list(shapes[:6])

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]

    def perform(self, node, inputs, outputs, params=None):
        hh, ci, cf, co, h0, c0, h, c, cache = inputs[:9]
        rest = list(inputs[9:])
        gh = rest.pop(0) if self.connected[0] else None
        gc = rest.pop(0) if self.connected[1] else None
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
        for k, v in enumerate((dx, dhh, dci, dcf, dco, dhr.astype(cache.dtype),
                               dcr.astype(cache.dtype))):
            outputs[k][0] = v

    def c_code(self, node, name, inputs, outputs, sub):
        names = ['hh', 'ci', 'cf', 'co', 'h0', 'c0', 'h', 'c', 'cache']
        gnames = [g for g, k in zip(('gh', 'gc'), self.connected) if k]
        s = dict(zip(names + gnames, inputs))
        s.update(zip(['dx', 'dhh', 'dci', 'dcf', 'dco', 'dh0', 'dc0'], outputs))
        prep = _c_prepare([(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        T_ = 'dtype_%(cache)s' % s
        s['T'] = T_
        gh = ('(%s*)PyArray_DATA(v_gh), THN_S0(v_gh), THN_S1(v_gh)' % T_) \
            if self.connected[0] else 'NULL, 0, 0'
        gc = ('(%s*)PyArray_DATA(v_gc), THN_S0(v_gc), THN_S1(v_gc)' % T_) \
            if self.connected[1] else 'NULL, 0, 0'
        checks = ''.join(' || thn_rec_check(v_{0}, 3, dseq, "{0}")'.format(g) for g in gnames)
        s.update(gh_args=gh, gc_args=gc, gchecks=checks)
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
        || thn_rec_alloc(&%(dc0)s, 2, ds, typenum)) goto thn_fail;
}
if (thn_lstm_bwd<%(T)s>(nT, B, n, (%(T)s*)PyArray_DATA(v_hh),
    (%(T)s*)PyArray_DATA(v_ci), (%(T)s*)PyArray_DATA(v_cf), (%(T)s*)PyArray_DATA(v_co),
    (%(T)s*)PyArray_DATA(v_h0), (%(T)s*)PyArray_DATA(v_c0),
    (%(T)s*)PyArray_DATA(v_h), (%(T)s*)PyArray_DATA(v_c), (%(T)s*)PyArray_DATA(v_cache),
    %(gh_args)s, %(gc_args)s,
    (%(T)s*)PyArray_DATA(%(dx)s), (%(T)s*)PyArray_DATA(%(dhh)s),
    (%(T)s*)PyArray_DATA(%(dci)s), (%(T)s*)PyArray_DATA(%(dcf)s), (%(T)s*)PyArray_DATA(%(dco)s),
    (%(T)s*)PyArray_DATA(%(dh0)s), (%(T)s*)PyArray_DATA(%(dc0)s))) {
    PyErr_NoMemory();
    goto thn_fail;
}
""" % s
        return _c_frame(names + gnames, body, sub['fail'], name)


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
if (thn_gru_fwd<THN_ACT, %(T)s>(nT, B, n, (%(T)s*)PyArray_DATA(v_xproj),
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
        connected = tuple(not _is_disconnected(g) for g in grads)
        given = [g for g, k in zip(grads, connected) if k]
        return list(GRUGradOp(self.activation, connected)(
            hh, hr, hz, h0, h, pre, hid, rate, cache, *given)) + []


class GRUGradOp(_ActivationCOp):
    """Backpropagation through time for :class:`GRUOp`.

    Inputs ``(hh, hr, hz, h0, h, pre, hid, rate, cache, [gh], [gpre], [ghid],
    [grate])`` (output gradients present as flagged by ``connected``); outputs
    ``(dxproj, dhh, dhr, dhz, dh0)``.
    """

    __props__ = ('activation', 'connected')

    def __init__(self, activation='tanh', connected=(True, False, False, False)):
        self.activation = _canonical(activation)
        self.connected = tuple(bool(k) for k in connected)

    def make_node(self, hh, hr, hz, h0, h, pre, hid, rate, cache, *grads):
        dtype = cache.dtype
        if len(grads) != sum(self.connected):
            raise TypeError('GRUGradOp: expected {} output gradients'.format(sum(self.connected)))
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
        rest = list(inputs[9:])
        gh, gp, ga, gz = (rest.pop(0) if k else None for k in self.connected)
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
        gnames = [g for g, k in zip(('gh', 'gp', 'ga', 'gz'), self.connected) if k]
        s = dict(zip(names + gnames, inputs))
        s.update(zip(['dx', 'dhh', 'dhr', 'dhz', 'dh0'], outputs))
        T_ = 'dtype_%(cache)s' % s
        s['T'] = T_
        prep = _c_prepare([(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        gargs = []
        for g, k in zip(('gh', 'gp', 'ga', 'gz'), self.connected):
            gargs.append('(%s*)PyArray_DATA(v_%s), THN_S0(v_%s), THN_S1(v_%s)' % (T_, g, g, g)
                         if k else 'NULL, 0, 0')
        s['gargs'] = ',\n    '.join(gargs)
        s['gchecks'] = ''.join(' || thn_rec_check(v_{0}, 3, dseq, "{0}")'.format(g)
                               for g in gnames)
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
if (thn_gru_bwd<THN_ACT, %(T)s>(nT, B, n, (%(T)s*)PyArray_DATA(v_hh),
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
    if (thn_rec_check(v_xproj, 3, dseq, "xproj (T, B, n)") || thn_rec_check(v_hh, 2, dw, "hh (n, n)")
        || thn_rec_check(v_h0, 2, ds, "h0 (B, n)")) goto thn_fail;
    if (thn_rec_alloc(&%(h)s, 3, dseq, typenum) || thn_rec_alloc(&%(pre)s, 3, dseq, typenum))
        goto thn_fail;
}
if (thn_rnn_fwd<THN_ACT, %(T)s>(nT, B, n, (%(T)s*)PyArray_DATA(v_xproj),
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
        connected = tuple(not _is_disconnected(g) for g in output_grads)
        given = [g for g, k in zip(output_grads, connected) if k]
        return list(RNNGradOp(self.activation, connected)(hh, h0, h, pre, *given))


class RNNGradOp(_ActivationCOp):
    """Backpropagation through time for :class:`RNNOp`.

    Inputs ``(hh, h0, h, pre, [gh], [gpre])``; outputs ``(dxproj, dhh, dh0)``.
    """

    __props__ = ('activation', 'connected')

    def __init__(self, activation='tanh', connected=(True, False)):
        self.activation = _canonical(activation)
        self.connected = tuple(bool(k) for k in connected)

    def make_node(self, hh, h0, h, pre, *grads):
        dtype = h.dtype
        if len(grads) != sum(self.connected):
            raise TypeError('RNNGradOp: expected {} output gradients'.format(sum(self.connected)))
        ins = [_as(v, dtype, nd, 'input') for v, nd in zip((hh, h0, h, pre), (2, 2, 3, 3))]
        ins += [_as(g, dtype, 3, 'output gradient') for g in grads]
        return Apply(self, ins, [ins[2].type(), ins[0].type(), ins[1].type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[2], shapes[0], shapes[1]]

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]

    def perform(self, node, inputs, outputs, params=None):
        hh, h0, h, pre = inputs[:4]
        rest = list(inputs[4:])
        gh, gp = (rest.pop(0) if k else None for k in self.connected)
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
        gnames = [g for g, k in zip(('gh', 'gp'), self.connected) if k]
        s = dict(zip(names + gnames, inputs))
        s.update(zip(['dx', 'dhh', 'dh0'], outputs))
        T_ = 'dtype_%(h)s' % s
        s['T'] = T_
        prep = _c_prepare([(k, 'contig') for k in names] + [(g, 'row') for g in gnames],
                          s, sub['fail'])
        gargs = []
        for g, k in zip(('gh', 'gp'), self.connected):
            gargs.append('(%s*)PyArray_DATA(v_%s), THN_S0(v_%s), THN_S1(v_%s)' % (T_, g, g, g)
                         if k else 'NULL, 0, 0')
        s['gargs'] = ', '.join(gargs)
        s['gchecks'] = ''.join(' || thn_rec_check(v_{0}, 3, dseq, "{0}")'.format(g)
                               for g in gnames)
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
if (thn_rnn_bwd<THN_ACT, %(T)s>(nT, B, n, (%(T)s*)PyArray_DATA(v_hh),
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


def lstm(xproj, hh, ci, cf, co, h0=None, c0=None):
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
    xproj : tensor (T, B, 4n)
        Projected inputs ``x . W + b`` for every step, time-major, bias
        included, blocks ordered [input, forget, cell, output].
    hh : matrix (n, 4n)
        Recurrent weights, same block order.
    ci, cf, co : vector (n,)
        Peephole weights of the input, forget and output gates.
    h0, c0 : matrix (B, n), optional
        Initial hidden and cell states (zeros when None; an (n,) or (1, n)
        state is broadcast over the batch).

    Returns
    -------
    h : tensor (T, B, n)
        Hidden states ``h_1 .. h_T``.
    c : tensor (T, B, n)
        Cell states ``c_1 .. c_T``.
    """
    dtype = _dtype_of(xproj)
    hh = pt.as_tensor_variable(hh)
    n = hh.shape[0]
    h0 = _initial(h0, pt.as_tensor_variable(xproj), n, dtype)
    c0 = _initial(c0, pt.as_tensor_variable(xproj), n, dtype)
    h, c, _ = LSTMOp()(xproj, hh, ci, cf, co, h0, c0)
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
