r"""Fused 2-D convolution and pooling Ops for channels-last tensors, in C.

The pure-PyTensor formulations of :mod:`theanets.ops.conv` build a whole patch
matrix with a ``Join`` of strided slices, take its product with the kernel,
and undo the patch matrix in the gradient with a chain of ``IncSubtensor``;
each is a pass over arrays of several megabytes, most of them freshly
allocated. The Ops here do the same arithmetic one *chunk* of output
positions at a time, into a scratch buffer that each node keeps:

:class:`Conv2dOp`
    ``out = conv2d(x, w)`` with ``x`` (B, W, H, C), ``w`` (n, C, fw, fh) and
    ``out`` (B, W', H', n): for each chunk, copy its patches (zero padding is
    written while copying, the padded input is never built), then one matrix
    product with the flipped, flattened kernel writes the chunk's output rows
    in place.
:class:`Conv2dGradInputsOp`
    ``dx`` from ``(x, w, dout)`` (``x`` gives only the shape): per chunk, the
    product ``dpatches = dout_chunk . Wmat^T`` into the buffer, then the
    patches are added into ``dx`` right away.
:class:`Conv2dGradWeightsOp`
    ``dw`` from ``(x, w, dout)`` (``w`` gives only the shape): per chunk, the
    patches again, then ``dWmat += patches^T . dout_chunk``; finally ``dWmat``
    is un-flipped into the layout of ``w``.
:class:`Pool2dOp`, :class:`Pool2dGradOp`
    max or mean over windows (windows that do not fit are dropped); for a max
    the gradient goes to *every* element equal to its window's maximum (as in
    Theano, and in the PyTensor formulation of :mod:`theanets.ops.conv`).

The convolution is a true convolution (kernel flipped), with the border modes
and strides of :func:`theanets.ops.conv.conv2d` (see that module's
docstring). Gradient Ops are separate, so a graph computes only the gradients
it uses (the first layer's ``dx`` usually not at all). They are
differentiable in turn (the gradient of a convolution's gradient is again a
convolution or its gradient), so Hessian-vector products (ESGD) work.

Both ``float32`` and ``float64`` are supported. Each Op has a C
implementation (PyTensor's C modes, e.g. ``'CVM'``) and a NumPy ``perform``
used by the Python linker. The matrix products run in ``thn_dot`` of
:mod:`theanets.ops.dot` for float32 when
:func:`theanets.backend.fast_dot_enabled` (AVX-512 kernels on the thread
pool shared with OpenBLAS; about 1.6x faster per convolution than OpenBLAS's
Haswell kernels here), otherwise in the BLAS that PyTensor links
(``sgemm``/``dgemm``, threaded by OpenBLAS). The choice is made when the C
code is compiled (``THEANETS_FUSED_FAST=0`` selects BLAS). The copies run on
the calling thread; the Ops start no threads of their own.

Implementation notes:

- Patch layouts. One row of ``fw*fh*C`` values per output position (columns
  ordered (u, v, c)): for a fixed filter row the ``fh*C`` values are one
  contiguous run of ``x``. With few channels (``C * fh <= 8``, e.g. images
  with one channel) the runs are tiny, so the forward and weight-gradient
  Ops build the transposed matrix instead (one run along the H axis per
  filter tap). The input gradient always uses the row layout.
- Chunks of about :data:`CHUNK_BYTES` of patches (at least
  :data:`MIN_CHUNK_ROWS` output positions), evened out over the batch. On the
  2-core machine of ``benchmarks/bench_conv.py`` 4 MB chunks (about 1300 rows
  for a 5x5x32 kernel) beat 256 KB - 1 MB ones by 5-10% with OpenBLAS: each
  product wakes OpenBLAS's threads, and larger products amortise that; beyond
  8 MB the patches leave the cache and it gets slower again. With ``thn_dot``
  the chunk size matters little (within 5% from 256 KB to 8 MB).
- Outputs are reused: each node keeps a reference to the array it returned
  last and writes into it again once nobody else holds it (PyTensor frees
  intermediate results after their last use, and fresh multi-megabyte arrays
  cost page faults: a fifth of the step of the network in
  ``benchmarks/bench_conv.py``). This keeps arrays of up to
  :data:`KEEP_BYTES` each alive between calls.
"""

import itertools

import numpy as np

import pytensor
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int32 as scalar_int32
from pytensor.scalar import int64 as scalar_int64
from pytensor.tensor.blas_headers import blas_header_text, blas_header_version
from pytensor.tensor.type import TensorType

from . import cmath

__all__ = ['Conv2dOp', 'Conv2dGradInputsOp', 'Conv2dGradWeightsOp', 'Pool2dOp',
           'Pool2dGradOp', 'conv2d', 'pool2d', 'supports_dtype', 'CHUNK_BYTES',
           'MIN_CHUNK_ROWS', 'KEEP_BYTES']

_C_VERSION = 9

#: target size in bytes of one chunk's patch matrix (read when a function is compiled).
CHUNK_BYTES = 4 << 20

#: fewest output rows in a chunk (keeps the threaded products efficient).
MIN_CHUNK_ROWS = 256

#: outputs up to this size are kept by their node and reused on the next call
#: once nobody else holds them (saves page faults; read when a function is compiled).
KEEP_BYTES = 64 << 20

_BORDER_CODES = {'valid': 0, 'full': 1, 'same': 2}
_LAYOUT_CODES = {'auto': 0, 'rows': 1, 'transposed': 2}
_POOL_CODES = {'max': 0, 'mean': 1}


def supports_dtype(*dtypes):
    """Whether the fused Ops can compute in the upcast of ``dtypes``.

    Parameters
    ----------
    *dtypes : str
        Dtypes of the inputs.

    Returns
    -------
    bool
        True when the common dtype is ``float32`` or ``float64``.
    """
    return pytensor.scalar.upcast(*dtypes) in ('float32', 'float64')


# ---------------------------------------------------------------------------
# geometry (shared by make_node, infer_shape and perform)
# ---------------------------------------------------------------------------

def _out_len(size, f, s, border_mode):
    """Output length and zeros before the data along one axis (ints)."""
    if border_mode == 'valid':
        return (max(0, (size - f) // s + 1) if size >= f else 0), 0
    if border_mode == 'full':
        return max(0, (size + f - 2) // s + 1), f - 1
    return -(-size // s), (f - 1) // 2


def _sym_out_len(size, f, s, border_mode):
    """Symbolic :func:`_out_len` (length only) for a symbolic ``size``."""
    if border_mode == 'valid':
        return pt.maximum((size - f) // s + 1, 0)
    if border_mode == 'full':
        return pt.maximum((size + f - 2) // s + 1, 0)
    return (size + s - 1) // s


def _static_len(size, f, s, border_mode):
    return None if size is None else _out_len(size, f, s, border_mode)[0]


def _pool_len(size, p, s):
    return (size - p) // s + 1 if size >= p else 0


def _shape_text(shape):
    return '(' + ', '.join('?' if d is None else str(d) for d in shape) + ')'


def _as_float(x, dtype, ndim, what):
    x = pt.as_tensor_variable(x)
    if x.ndim != ndim:
        raise ValueError('{} must have {} dimensions, got {} (shape {})'.format(
            what, ndim, x.ndim, _shape_text(x.type.shape)))
    return x if x.dtype == dtype else pt.cast(x, dtype)


def _common_dtype(*variables):
    dtype = pytensor.scalar.upcast(*[v.dtype for v in variables])
    if dtype not in ('float32', 'float64'):
        raise TypeError('the fused convolution Ops compute in float32 or float64, '
                        'not {}'.format(dtype))
    return dtype


# ---------------------------------------------------------------------------
# NumPy implementations (perform)
# ---------------------------------------------------------------------------

def _np_geometry(xshape, wshape, stride, border_mode):
    """((Wo, pw), (Ho, ph)) for x (B, W, H, C) and w (n, C, fw, fh)."""
    return tuple(_out_len(xshape[a], wshape[a + 1], stride[a - 1], border_mode)
                 for a in (1, 2))


def _np_padded_shape(xshape, wshape, stride, geometry):
    """Shape of a zero-padded x in which every window of the output fits."""
    shape = [xshape[0]]
    for a, (out, pad) in zip((1, 2), geometry):
        need = (out - 1) * stride[a - 1] + wshape[a + 1] if out else 0
        shape.append(max(need, pad + xshape[a]))
    return tuple(shape) + (xshape[3],)


def _np_tap(u, v, stride, outs):
    """Index of the strided slice of the padded input seen by tap (u, v)."""
    (sw, sh), (wo, ho) = stride, outs
    return (slice(None), slice(u, u + sw * (wo - 1) + 1, sw),
            slice(v, v + sh * (ho - 1) + 1, sh), slice(None))


def _np_patches(x, wshape, stride, border_mode):
    """Patch matrix (B*Wo*Ho, fw*fh*C) of ``x``, columns ordered (u, v, c)."""
    B, W, H, C = x.shape
    fw, fh = wshape[2:]
    geometry = _np_geometry(x.shape, wshape, stride, border_mode)
    (wo, pw), (ho, ph) = geometry
    xp = np.zeros(_np_padded_shape(x.shape, wshape, stride, geometry), x.dtype)
    xp[:, pw:pw + W, ph:ph + H] = x
    patches = np.zeros((B, wo, ho, fw, fh, C), x.dtype)
    if wo and ho:
        for u in range(fw):
            for v in range(fh):
                patches[:, :, :, u, v] = xp[_np_tap(u, v, stride, (wo, ho))]
    return patches.reshape(B * wo * ho, fw * fh * C), (wo, ho)


def _np_kernel(w):
    """Flipped kernel (fw*fh*C, n), rows ordered (u, v, c) like the patches."""
    n, C, fw, fh = w.shape
    return w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0).reshape(fw * fh * C, n)


def np_conv2d(x, w, stride, border_mode):
    """NumPy convolution: x (B, W, H, C), w (n, C, fw, fh) -> (B, W', H', n)."""
    patches, (wo, ho) = _np_patches(x, w.shape, stride, border_mode)
    out = patches.dot(_np_kernel(w))
    return out.reshape(x.shape[0], wo, ho, w.shape[0]).astype(x.dtype, copy=False)


def np_conv2d_grad_inputs(xshape, w, dout, stride, border_mode):
    """NumPy gradient of :func:`np_conv2d` with respect to x, shape ``xshape``."""
    B, W, H, C = xshape
    n, _, fw, fh = w.shape
    geometry = _np_geometry(xshape, w.shape, stride, border_mode)
    (wo, pw), (ho, ph) = geometry
    dpatches = dout.reshape(-1, n).dot(_np_kernel(w).T).reshape(B, wo, ho, fw, fh, C)
    dxp = np.zeros(_np_padded_shape(xshape, w.shape, stride, geometry), dout.dtype)
    if wo and ho:
        for u in range(fw):
            for v in range(fh):
                dxp[_np_tap(u, v, stride, (wo, ho))] += dpatches[:, :, :, u, v]
    return np.ascontiguousarray(dxp[:, pw:pw + W, ph:ph + H])


def np_conv2d_grad_weights(x, wshape, dout, stride, border_mode):
    """NumPy gradient of :func:`np_conv2d` with respect to w, shape ``wshape``."""
    n, C, fw, fh = wshape
    patches, _ = _np_patches(x, wshape, stride, border_mode)
    dkernel = patches.T.dot(dout.reshape(-1, n)).reshape(fw, fh, C, n)
    return np.ascontiguousarray(dkernel.transpose(3, 2, 0, 1)[:, :, ::-1, ::-1])


def _np_pool_taps(shape, pool, stride):
    """Output shape and the strided slice of x for every window offset."""
    B, W, H, C = shape
    wo, ho = _pool_len(W, pool[0], stride[0]), _pool_len(H, pool[1], stride[1])
    taps = [_np_tap(u, v, stride, (wo, ho)) for u in range(pool[0]) for v in range(pool[1])]
    return (B, wo, ho, C), taps


def np_pool2d(x, pool, stride, mode):
    """NumPy pooling of x (B, W, H, C) -> (B, W', H', C)."""
    shape, taps = _np_pool_taps(x.shape, pool, stride)
    if not all(shape):
        return np.zeros(shape, x.dtype)
    if mode == 'max':
        out = x[taps[0]].copy()
        for tap in taps[1:]:
            np.maximum(out, x[tap], out=out)
        return out
    out = np.zeros(shape, x.dtype)
    for tap in taps:
        out += x[tap]
    return (out / np.asarray(len(taps), x.dtype)).astype(x.dtype, copy=False)


def np_pool2d_grad(x, out, gz, pool, stride, mode):
    """NumPy gradient of :func:`np_pool2d` (ties all get the gradient)."""
    dx = np.zeros_like(x)
    shape, taps = _np_pool_taps(x.shape, pool, stride)
    if not all(shape):
        return dx
    scale = np.asarray(1.0 / len(taps), x.dtype)
    for tap in taps:
        if mode == 'max':
            dx[tap] += (x[tap] == out) * gz
        else:
            dx[tap] += gz * scale
    return dx


# ---------------------------------------------------------------------------
# C support code
# ---------------------------------------------------------------------------

_SUPPORT_CODE = r"""
#include <string.h>
#include <stdlib.h>

#ifndef THN_CONV_SUPPORT
#define THN_CONV_SUPPORT

/* ---- row-major matrix products ---------------------------------------------
   C (M x N, ld ldc) = op(A) op(B), or C += op(A) op(B) when `accumulate`;
   op(A) is M x K, op(B) is K x N, all row-major. BLAS: the column-major
   routine computes C^T = op(B)^T op(A)^T. With THN_CONV_USE_DOT, float32
   products run on thn_dot (theanets.ops.dot: AVX-512 kernels on the shared
   thread pool, BLAS elsewhere). Returns -1 when out of memory. */
static int thn_conv_gemm_f(char ta, char tb, int M, int N, int K, const float* A, int lda,
                           const float* B, int ldb, bool accumulate, float* C, int ldc) {
#ifdef THN_CONV_USE_DOT
    const bool at = ta == 'T', bt = tb == 'T';
    return thn_dot(M, N, K, A, at ? 1 : lda, at ? lda : 1, B, bt ? 1 : ldb, bt ? ldb : 1,
                   C, ldc, accumulate);
#else
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    sgemm_(&tb, &ta, &N, &M, &K, &one, B, &ldb, A, &lda, &beta, C, &ldc);
    return 0;
#endif
}
static int thn_conv_gemm_f(char ta, char tb, int M, int N, int K, const double* A, int lda,
                           const double* B, int ldb, bool accumulate, double* C, int ldc) {
    double one = 1.0, beta = accumulate ? 1.0 : 0.0;
    dgemm_(&tb, &ta, &N, &M, &K, &one, B, &ldb, A, &lda, &beta, C, &ldc);
    return 0;
}
template <typename T>
static int thn_conv_gemm(bool trans_a, bool trans_b, int M, int N, int K,
                         const T* A, int lda, const T* B, int ldb,
                         bool accumulate, T* C, int ldc) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) C[(npy_intp)i * ldc + j] = (T)0;
        return 0;
    }
    return thn_conv_gemm_f(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K,
                           A, lda < 1 ? 1 : lda, B, ldb < 1 ? 1 : ldb, accumulate,
                           C, ldc < 1 ? 1 : ldc);
}

/* ---- scratch memory kept by each Apply node between calls ------------------ */
struct ThnConvBuf { void* p; size_t size; };

static void* thn_conv_reserve(ThnConvBuf* b, size_t bytes) {
    if (bytes < 64) bytes = 64;
    if (b->size < bytes) {
        free(b->p);
        b->p = NULL;
        b->size = 0;
        if (posix_memalign(&b->p, 64, bytes)) {
            b->p = NULL;
            PyErr_NoMemory();
            return NULL;
        }
        b->size = bytes;
    }
    return b->p;
}

/* round a count of values up to whole 64-byte lines */
template <typename T> static npy_intp thn_conv_lines(npy_intp count) {
    const npy_intp per = 64 / sizeof(T);
    return (count + per - 1) / per * per;
}

/* ---- geometry -------------------------------------------------------------- */
struct ThnConvGeom {
    npy_intp B;
    int W, H, C;        /* input */
    int n, fw, fh;      /* filters */
    int sw, sh;         /* strides */
    int pw, ph;         /* zeros before the data */
    int Wo, Ho;         /* output */
    npy_intp rows() const { return B * (npy_intp)Wo * (npy_intp)Ho; }
    int K() const { return fw * fh * C; }
};

static npy_intp thn_conv_floordiv(npy_intp a, npy_intp b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* output length and zeros before the data; mode 0 valid, 1 full, 2 same */
static int thn_conv_outlen(npy_intp size, int f, int s, int mode, int* pad) {
    npy_intp len;
    if (mode == 0) {
        *pad = 0;
        len = size >= f ? (size - f) / s + 1 : 0;
    } else if (mode == 1) {
        *pad = f - 1;
        len = thn_conv_floordiv(size + f - 2, s) + 1;
    } else {
        *pad = (f - 1) / 2;
        len = (size + s - 1) / s;
    }
    return len > 0 ? (int)len : 0;
}

static void thn_conv_shape_text(char* buf, size_t n, PyArrayObject* a) {
    int used = snprintf(buf, n, "(");
    for (int k = 0; k < PyArray_NDIM(a) && used < (int)n; ++k)
        used += snprintf(buf + used, n - used, k ? ", %ld" : "%ld",
                         (long)PyArray_DIMS(a)[k]);
    if (used < (int)n) snprintf(buf + used, n - used, ")");
}

/* geometry of x (B, W, H, C) and w (n, C, fw, fh); sets a ValueError on misfit */
static int thn_conv_geometry(ThnConvGeom* g, PyArrayObject* x, PyArrayObject* w,
                             int sw, int sh, int mode, int fw, int fh, const char* op) {
    char xs[128], ws[128];
    thn_conv_shape_text(xs, sizeof xs, x);
    thn_conv_shape_text(ws, sizeof ws, w);
    if (PyArray_NDIM(x) != 4 || PyArray_NDIM(w) != 4) {
        PyErr_Format(PyExc_ValueError, "%s: x must be 4-D (B, W, H, C) and w 4-D "
                     "(n, C, fw, fh); got x shape %s, w shape %s", op, xs, ws);
        return -1;
    }
    const npy_intp* xd = PyArray_DIMS(x);
    const npy_intp* wd = PyArray_DIMS(w);
    if (xd[3] != wd[1]) {
        PyErr_Format(PyExc_ValueError, "%s: channel mismatch: x (B, W, H, C) has shape %s "
                     "but w (n, C, fw, fh) has shape %s", op, xs, ws);
        return -1;
    }
    if (wd[2] != fw || wd[3] != fh) {
        PyErr_Format(PyExc_ValueError, "%s: w (n, C, fw, fh) has shape %s but the graph "
                     "was built for filter_size (%d, %d)", op, ws, fw, fh);
        return -1;
    }
    if (xd[1] > INT_MAX || xd[2] > INT_MAX || xd[3] > INT_MAX || wd[0] > INT_MAX ||
        (npy_intp)fw * fh * xd[3] > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: x shape %s / w shape %s too large", op, xs, ws);
        return -1;
    }
    g->B = xd[0]; g->W = (int)xd[1]; g->H = (int)xd[2]; g->C = (int)xd[3];
    g->n = (int)wd[0]; g->fw = fw; g->fh = fh; g->sw = sw; g->sh = sh;
    g->Wo = thn_conv_outlen(g->W, fw, sw, mode, &g->pw);
    g->Ho = thn_conv_outlen(g->H, fh, sh, mode, &g->ph);
    return 0;
}

/* rows of output per chunk: `chunk` if positive, else about `budget` bytes
   of patches (at least min_rows), evened out over the chunks of the batch */
template <typename T>
static npy_intp thn_conv_chunk(const ThnConvGeom& g, npy_intp chunk, npy_intp budget,
                               npy_intp min_rows) {
    npy_intp rows = g.rows();
    if (chunk <= 0 && rows > 0) {
        chunk = budget / ((npy_intp)(g.K() > 0 ? g.K() : 1) * (npy_intp)sizeof(T));
        if (chunk < min_rows) chunk = min_rows;
        const npy_intp count = (rows + chunk - 1) / chunk;
        chunk = (rows + count - 1) / count;
    }
    if (chunk > rows) chunk = rows;
    if (chunk < 1) chunk = 1;
    /* at most INT_MAX values in one product operand */
    const npy_intp widest = g.K() > g.n ? g.K() : g.n;
    const npy_intp cap = (npy_intp)INT_MAX / (widest > 0 ? widest : 1);
    return chunk < cap ? chunk : cap;
}

template <typename T> static inline void thn_conv_zero(T* __restrict d, int count) {
    for (int k = 0; k < count; ++k) d[k] = (T)0;
}

/* Position (b, i, j) of output row r, advanced row by row. */
struct ThnConvPos {
    npy_intp b;
    int i, j;
    ThnConvPos(const ThnConvGeom& g, npy_intp r) {
        const npy_intp per = (npy_intp)g.Wo * g.Ho;
        b = r / per;
        const npy_intp rem = r - b * per;
        i = (int)(rem / g.Ho);
        j = (int)(rem % g.Ho);
    }
    void next(const ThnConvGeom& g) {
        if (++j == g.Ho) { j = 0; if (++i == g.Wo) { i = 0; ++b; } }
    }
};

/* Patches of output rows [r0, r1) into P (one row of K = fw*fh*C values per
   output row, columns ordered (u, v, c)). For fixed (row, u) the fh*C values
   are contiguous in x: one copy, with zeros where the window leaves x. */
template <typename T>
static void thn_conv_im2col(const ThnConvGeom& g, const T* __restrict x,
                            npy_intp r0, npy_intp r1, T* __restrict P) {
    const int C = g.C, rowlen = g.fh * C, K = g.fw * rowlen;
    const npy_intp xb_stride = (npy_intp)g.W * g.H * C;
    ThnConvPos pos(g, r0);
    for (npy_intp r = r0; r < r1; ++r, pos.next(g)) {
        T* d = P + (r - r0) * K;
        const T* xb = x + pos.b * xb_stride;
        const int xj0 = pos.j * g.sh - g.ph;
        const int vlo = xj0 < 0 ? (-xj0 < g.fh ? -xj0 : g.fh) : 0;
        int vhi = g.H - xj0 < g.fh ? g.H - xj0 : g.fh;
        if (vhi < vlo) vhi = vlo;
        const int lo = vlo * C, hi = vhi * C;
        for (int u = 0; u < g.fw; ++u, d += rowlen) {
            const int xi = pos.i * g.sw + u - g.pw;
            if (xi < 0 || xi >= g.W || lo == hi) {
                thn_conv_zero(d, rowlen);
                continue;
            }
            const T* __restrict s = xb + ((npy_intp)xi * g.H + xj0 + vlo) * C;
            thn_conv_zero(d, lo);
            T* __restrict dd = d + lo;
            for (int k = 0; k < hi - lo; ++k) dd[k] = s[k];
            thn_conv_zero(d + hi, rowlen - hi);
        }
    }
}

/* The reverse of thn_conv_im2col: add the patches of rows [r0, r1) into dx. */
template <typename T>
static void thn_conv_col2im(const ThnConvGeom& g, const T* __restrict P,
                            npy_intp r0, npy_intp r1, T* __restrict dx) {
    const int C = g.C, rowlen = g.fh * C, K = g.fw * rowlen;
    const npy_intp xb_stride = (npy_intp)g.W * g.H * C;
    ThnConvPos pos(g, r0);
    for (npy_intp r = r0; r < r1; ++r, pos.next(g)) {
        const T* d = P + (r - r0) * K;
        T* xb = dx + pos.b * xb_stride;
        const int xj0 = pos.j * g.sh - g.ph;
        const int vlo = xj0 < 0 ? (-xj0 < g.fh ? -xj0 : g.fh) : 0;
        int vhi = g.H - xj0 < g.fh ? g.H - xj0 : g.fh;
        if (vhi < vlo) vhi = vlo;
        const int lo = vlo * C, hi = vhi * C;
        for (int u = 0; u < g.fw; ++u, d += rowlen) {
            const int xi = pos.i * g.sw + u - g.pw;
            if (xi < 0 || xi >= g.W || lo == hi) continue;
            T* __restrict s = xb + ((npy_intp)xi * g.H + xj0 + vlo) * C;
            const T* __restrict dd = d + lo;
            for (int k = 0; k < hi - lo; ++k) s[k] += dd[k];
        }
    }
}

/* Flipped kernel matrix Wm (K x n): Wm[(u*fh + v)*C + c][k] = w[k][c][fw-1-u][fh-1-v] */
template <typename T>
static void thn_conv_wmat(const ThnConvGeom& g, const T* __restrict w, T* __restrict Wm) {
    const int n = g.n, C = g.C, fw = g.fw, fh = g.fh;
    for (int k = 0; k < n; ++k)
        for (int c = 0; c < C; ++c)
            for (int a = 0; a < fw; ++a)
                for (int e = 0; e < fh; ++e) {
                    const int u = fw - 1 - a, v = fh - 1 - e;
                    Wm[((npy_intp)(u * fh + v) * C + c) * n + k] =
                        w[(((npy_intp)k * C + c) * fw + a) * fh + e];
                }
}

/* Its transpose WmT (n x K): row k is filter k, flipped, in patch column order. */
template <typename T>
static void thn_conv_wmat_t(const ThnConvGeom& g, const T* __restrict w, T* __restrict WmT) {
    const int C = g.C, fw = g.fw, fh = g.fh, K = g.K();
    for (int k = 0; k < g.n; ++k)
        for (int c = 0; c < C; ++c)
            for (int a = 0; a < fw; ++a)
                for (int e = 0; e < fh; ++e)
                    WmT[(npy_intp)k * K + (npy_intp)((fw - 1 - a) * fh + fh - 1 - e) * C + c] =
                        w[(((npy_intp)k * C + c) * fw + a) * fh + e];
}

/* The reverse of thn_conv_wmat: dw (n, C, fw, fh) from dWm (K x n). */
template <typename T>
static void thn_conv_unwmat(const ThnConvGeom& g, const T* __restrict dWm, T* __restrict dw) {
    const int n = g.n, C = g.C, fw = g.fw, fh = g.fh;
    for (int k = 0; k < n; ++k)
        for (int c = 0; c < C; ++c)
            for (int a = 0; a < fw; ++a)
                for (int e = 0; e < fh; ++e) {
                    const int u = fw - 1 - a, v = fh - 1 - e;
                    dw[(((npy_intp)k * C + c) * fw + a) * fh + e] =
                        dWm[((npy_intp)(u * fh + v) * C + c) * n + k];
                }
}

/* Range of q in [0, n) with 0 <= (j0 + q)*s + off < size, as [*lo, *hi). */
static void thn_conv_span(int j0, int n, int s, int off, int size, int* lo, int* hi) {
    /* smallest q with (j0 + q)*s >= -off, largest with (j0 + q)*s + off <= size - 1 */
    npy_intp a = -off <= 0 ? 0 : (-off + s - 1) / s;
    npy_intp b = size - 1 - off < 0 ? -1 : (size - 1 - off) / s;
    a -= j0;
    b -= j0;
    *lo = (int)(a < 0 ? 0 : (a > n ? n : a));
    *hi = (int)(b + 1 < *lo ? *lo : (b + 1 > n ? n : b + 1));
}

/* Transposed patches of rows [r0, r1): PT (K x M, M = r1 - r0), PT[t][r - r0]
   with t = (u*fh + v)*C + c. For fixed (b, i) the rows j run along one line
   of x: for one channel (C = 1) and stride 1 every tap is a contiguous copy.
   Used for few channels, where the row layout would copy tiny runs. */
template <typename T>
static void thn_conv_im2col_t(const ThnConvGeom& g, const T* __restrict x,
                              npy_intp r0, npy_intp r1, T* __restrict PT) {
    const npy_intp M = r1 - r0;
    const int C = g.C;
    const npy_intp sj = (npy_intp)g.sh * C;
    ThnConvPos pos(g, r0);
    for (npy_intp r = r0; r < r1;) {
        const int jn = (int)(g.Ho - pos.j < r1 - r ? g.Ho - pos.j : r1 - r);
        const T* xb = x + pos.b * ((npy_intp)g.W * g.H * C);
        T* dcol = PT + (r - r0);
        for (int u = 0; u < g.fw; ++u) {
            const int xi = pos.i * g.sw + u - g.pw;
            const bool inside = xi >= 0 && xi < g.W;
            for (int v = 0; v < g.fh; ++v) {
                int lo = 0, hi = 0;
                if (inside) thn_conv_span(pos.j, jn, g.sh, v - g.ph, g.H, &lo, &hi);
                for (int c = 0; c < C; ++c) {
                    T* __restrict d = dcol + ((npy_intp)(u * g.fh + v) * C + c) * M;
                    for (int q = 0; q < lo; ++q) d[q] = (T)0;
                    if (hi > lo) {
                        /* x[b, xi, (j + lo)*sh + v - ph, c] onwards, every sj values */
                        const T* __restrict src = xb + ((npy_intp)xi * g.H
                            + (npy_intp)(pos.j + lo) * g.sh + v - g.ph) * C + c;
                        T* __restrict dd = d + lo;
                        const int len = hi - lo;
                        if (sj == 1)
                            for (int q = 0; q < len; ++q) dd[q] = src[q];
                        else
                            for (int q = 0; q < len; ++q) dd[q] = src[q * sj];
                    }
                    for (int q = hi; q < jn; ++q) d[q] = (T)0;
                }
            }
        }
        r += jn;
        pos.j += jn;
        if (pos.j == g.Ho) { pos.j = 0; if (++pos.i == g.Wo) { pos.i = 0; ++pos.b; } }
    }
}

/* Patch layout: 1 rows (M x K), 2 transposed (K x M); 0 picks transposed for
   few values per filter row (C * fh <= 8, e.g. one input channel). */
static bool thn_conv_use_t(const ThnConvGeom& g, int layout) {
    if (layout == 1) return false;
    if (layout == 2) return true;
    return g.C * g.fh <= 8;
}

/* scratch: a kernel matrix (K x n values) then one chunk of patches */
template <typename T>
static T* thn_conv_scratch(const ThnConvGeom& g, npy_intp chunk, ThnConvBuf* buf, T** P) {
    const npy_intp wlen = thn_conv_lines<T>((npy_intp)g.K() * g.n);
    T* Wm = (T*)thn_conv_reserve(buf, sizeof(T) * (wlen + chunk * (npy_intp)g.K()));
    if (Wm) *P = Wm + wlen;
    return Wm;
}

static int thn_conv_nomem(void) {
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return -1;
}

/* out (rows x n) = patches . Wm, chunk by chunk */
template <typename T>
static int thn_conv_forward(const ThnConvGeom& g, const T* x, const T* w, T* out,
                            npy_intp chunk, int layout, ThnConvBuf* buf) {
    const npy_intp rows = g.rows();
    const int K = g.K(), n = g.n;
    if (rows == 0 || n == 0) return 0;
    T* P = NULL;
    T* Wm = thn_conv_scratch<T>(g, chunk, buf, &P);
    if (!Wm) return -1;
    thn_conv_wmat(g, w, Wm);
    const bool tr = thn_conv_use_t(g, layout);
    for (npy_intp r0 = 0; r0 < rows; r0 += chunk) {
        const npy_intp r1 = r0 + chunk < rows ? r0 + chunk : rows;
        const int M = (int)(r1 - r0);
        int rc;
        if (tr) {
            thn_conv_im2col_t(g, x, r0, r1, P);
            rc = thn_conv_gemm<T>(true, false, M, n, K, P, M, Wm, n, false, out + r0 * n, n);
        } else {
            thn_conv_im2col(g, x, r0, r1, P);
            rc = thn_conv_gemm<T>(false, false, M, n, K, P, K, Wm, n, false, out + r0 * n, n);
        }
        if (rc) return thn_conv_nomem();
    }
    return 0;
}

/* dx = col2im(dout . Wm^T), chunk by chunk (always the row layout: the
   products' second operand, the kernel, is then stored row by row) */
template <typename T>
static int thn_conv_backward_inputs(const ThnConvGeom& g, const T* w, const T* dout, T* dx,
                                    npy_intp chunk, ThnConvBuf* buf) {
    const npy_intp rows = g.rows();
    const int K = g.K(), n = g.n;
    memset(dx, 0, sizeof(T) * (size_t)(g.B * (npy_intp)g.W * g.H * g.C));
    if (rows == 0 || K == 0) return 0;
    T* P = NULL;
    T* WmT = thn_conv_scratch<T>(g, chunk, buf, &P);
    if (!WmT) return -1;
    thn_conv_wmat_t(g, w, WmT);
    for (npy_intp r0 = 0; r0 < rows; r0 += chunk) {
        const npy_intp r1 = r0 + chunk < rows ? r0 + chunk : rows;
        if (thn_conv_gemm<T>(false, false, (int)(r1 - r0), K, n, dout + r0 * n, n, WmT, K,
                             false, P, K))
            return thn_conv_nomem();
        thn_conv_col2im(g, P, r0, r1, dx);
    }
    return 0;
}

/* dw = unflip(sum over chunks of patches^T . dout) */
template <typename T>
static int thn_conv_backward_weights(const ThnConvGeom& g, const T* x, const T* dout, T* dw,
                                     npy_intp chunk, int layout, ThnConvBuf* buf) {
    const npy_intp rows = g.rows();
    const int K = g.K(), n = g.n;
    if (K == 0 || n == 0) return 0;
    T* P = NULL;
    T* dWm = thn_conv_scratch<T>(g, chunk, buf, &P);
    if (!dWm) return -1;
    if (rows == 0) memset(dWm, 0, sizeof(T) * (size_t)K * n);
    const bool tr = thn_conv_use_t(g, layout);
    for (npy_intp r0 = 0; r0 < rows; r0 += chunk) {
        const npy_intp r1 = r0 + chunk < rows ? r0 + chunk : rows;
        const int M = (int)(r1 - r0);
        int rc;
        if (tr) {
            thn_conv_im2col_t(g, x, r0, r1, P);
            rc = thn_conv_gemm<T>(false, false, K, n, M, P, M, dout + r0 * n, n, r0 > 0,
                                  dWm, n);
        } else {
            thn_conv_im2col(g, x, r0, r1, P);
            rc = thn_conv_gemm<T>(true, false, K, n, M, P, K, dout + r0 * n, n, r0 > 0,
                                  dWm, n);
        }
        if (rc) return thn_conv_nomem();
    }
    thn_conv_unwmat(g, dWm, dw);
    return 0;
}

/* *out: a C-contiguous array of the given shape and type, reused when it fits */
static int thn_conv_alloc(PyArrayObject** out, int nd, const npy_intp* dims, int typenum) {
    PyArrayObject* o = *out;
    if (o && PyArray_NDIM(o) == nd && PyArray_TYPE(o) == typenum &&
        PyArray_IS_C_CONTIGUOUS(o) && PyArray_ISWRITEABLE(o) &&
        PyArray_CompareLists(PyArray_DIMS(o), dims, nd))
        return 0;
    Py_XDECREF(o);
    *out = (PyArrayObject*)PyArray_EMPTY(nd, (npy_intp*)dims, typenum, 0);
    return *out ? 0 : -1;
}

/* *out for a new result: the array this node returned last time when nobody
   else holds it any more (PyTensor's allow_gc drops its reference after the
   last use; reusing the memory avoids page faults on multi-megabyte
   arrays), else as thn_conv_alloc. `keep` is the node's own reference. */
static int thn_conv_output(PyArrayObject** out, PyArrayObject** keep, int nd,
                           const npy_intp* dims, int typenum, npy_intp keep_max) {
    if (*out == NULL && *keep && Py_REFCNT(*keep) == 1) {
        *out = *keep;
        Py_INCREF(*out);
    }
    if (thn_conv_alloc(out, nd, dims, typenum)) return -1;
    if (*out != *keep) {
        Py_XDECREF(*keep);
        *keep = NULL;
        if (PyArray_NBYTES(*out) <= keep_max) {
            *keep = *out;
            Py_INCREF(*keep);
        }
    }
    return 0;
}

/* dout must have the output's shape (B, Wo, Ho, n) */
static int thn_conv_check_dout(const ThnConvGeom& g, PyArrayObject* dout, const char* op) {
    const npy_intp want[4] = {g.B, g.Wo, g.Ho, g.n};
    if (PyArray_NDIM(dout) == 4 && PyArray_CompareLists(PyArray_DIMS(dout), want, 4))
        return 0;
    char ds[128];
    thn_conv_shape_text(ds, sizeof ds, dout);
    PyErr_Format(PyExc_ValueError, "%s: output gradient has shape %s, expected (%ld, %d, %d, %d)",
                 op, ds, (long)g.B, g.Wo, g.Ho, g.n);
    return -1;
}

/* ---- pooling --------------------------------------------------------------- */
struct ThnPoolGeom {
    npy_intp B;
    int W, H, C, pw, ph, sw, sh, Wo, Ho;
};

static int thn_pool_geometry(ThnPoolGeom* g, PyArrayObject* x, int pw, int ph, int sw, int sh) {
    if (PyArray_NDIM(x) != 4) {
        PyErr_Format(PyExc_ValueError, "pool2d: x must be 4-D (B, W, H, C), got %d-D",
                     PyArray_NDIM(x));
        return -1;
    }
    const npy_intp* d = PyArray_DIMS(x);
    g->B = d[0]; g->W = (int)d[1]; g->H = (int)d[2]; g->C = (int)d[3];
    g->pw = pw; g->ph = ph; g->sw = sw; g->sh = sh;
    g->Wo = g->W >= pw ? (g->W - pw) / sw + 1 : 0;
    g->Ho = g->H >= ph ? (g->H - ph) / sh + 1 : 0;
    return 0;
}

/* out (B, Wo, Ho, C): max (mode 0) or mean (mode 1) over each window */
template <typename T>
static void thn_pool_forward(const ThnPoolGeom& g, int mode, const T* __restrict x,
                             T* __restrict out) {
    const int C = g.C;
    const npy_intp rowx = (npy_intp)g.H * C;
    const T scale = (T)1 / (T)(g.pw * g.ph);
    for (npy_intp b = 0; b < g.B; ++b)
        for (int i = 0; i < g.Wo; ++i)
            for (int j = 0; j < g.Ho; ++j) {
                T* __restrict o = out + ((b * g.Wo + i) * (npy_intp)g.Ho + j) * C;
                const T* base = x + ((b * g.W + (npy_intp)i * g.sw) * g.H
                                     + (npy_intp)j * g.sh) * C;
                for (int c = 0; c < C; ++c) o[c] = mode == 0 ? base[c] : (T)0;
                for (int u = 0; u < g.pw; ++u)
                    for (int v = 0; v < g.ph; ++v) {
                        const T* __restrict s = base + u * rowx + (npy_intp)v * C;
                        if (mode == 0) {
                            for (int c = 0; c < C; ++c)
                                o[c] = (s[c] > o[c] || s[c] != s[c]) ? s[c] : o[c];
                        } else {
                            for (int c = 0; c < C; ++c) o[c] += s[c];
                        }
                    }
                if (mode == 1)
                    for (int c = 0; c < C; ++c) o[c] *= scale;
            }
}

/* thn_pool_backward for windows that tile x (stride == pool size): each
   element of x is in at most one window, so dx is written once, in order. */
template <typename T>
static void thn_pool_backward_tiled(const ThnPoolGeom& g, int mode, const T* __restrict x,
                                    const T* __restrict out, const T* __restrict gz,
                                    T* __restrict dx) {
    const int C = g.C;
    const T scale = (T)1 / (T)(g.pw * g.ph);
    const npy_intp rowx = (npy_intp)g.H * C, used = (npy_intp)g.Ho * g.ph * C;
    for (npy_intp b = 0; b < g.B; ++b)
        for (int xi = 0; xi < g.W; ++xi) {
            const npy_intp off = (b * g.W + xi) * rowx;
            T* __restrict d = dx + off;
            const int i = xi / g.pw;
            if (i >= g.Wo) {
                memset(d, 0, sizeof(T) * (size_t)rowx);
                continue;
            }
            const T* __restrict s = x + off;
            const npy_intp orow = (b * g.Wo + i) * (npy_intp)g.Ho * C;
            for (int j = 0; j < g.Ho; ++j) {
                const T* __restrict o = out + orow + (npy_intp)j * C;
                const T* __restrict gr = gz + orow + (npy_intp)j * C;
                for (int v = 0; v < g.ph; ++v) {
                    const npy_intp e = ((npy_intp)j * g.ph + v) * C;
                    if (mode == 0) {
                        for (int c = 0; c < C; ++c) d[e + c] = s[e + c] == o[c] ? gr[c] : (T)0;
                    } else {
                        for (int c = 0; c < C; ++c) d[e + c] = gr[c] * scale;
                    }
                }
            }
            if (used < rowx) memset(d + used, 0, sizeof(T) * (size_t)(rowx - used));
        }
}

/* dx: gz to every element equal to its window's max (mode 0), or gz / size
   to every element of the window (mode 1); summed over overlapping windows */
template <typename T>
static void thn_pool_backward(const ThnPoolGeom& g, int mode, const T* __restrict x,
                              const T* __restrict out, const T* __restrict gz,
                              T* __restrict dx) {
    if (g.pw == g.sw && g.ph == g.sh) {
        thn_pool_backward_tiled(g, mode, x, out, gz, dx);
        return;
    }
    const int C = g.C;
    const npy_intp rowx = (npy_intp)g.H * C;
    const T scale = (T)1 / (T)(g.pw * g.ph);
    memset(dx, 0, sizeof(T) * (size_t)(g.B * (npy_intp)g.W * g.H * C));
    for (npy_intp b = 0; b < g.B; ++b)
        for (int i = 0; i < g.Wo; ++i)
            for (int j = 0; j < g.Ho; ++j) {
                const npy_intp orow = ((b * g.Wo + i) * (npy_intp)g.Ho + j) * C;
                const T* __restrict o = out + orow;
                const T* __restrict gr = gz + orow;
                const npy_intp xoff = ((b * g.W + (npy_intp)i * g.sw) * g.H
                                       + (npy_intp)j * g.sh) * C;
                for (int u = 0; u < g.pw; ++u)
                    for (int v = 0; v < g.ph; ++v) {
                        const npy_intp off = xoff + u * rowx + (npy_intp)v * C;
                        const T* __restrict s = x + off;
                        T* __restrict d = dx + off;
                        if (mode == 0) {
                            for (int c = 0; c < C; ++c) d[c] += s[c] == o[c] ? gr[c] : (T)0;
                        } else {
                            for (int c = 0; c < C; ++c) d[c] += gr[c] * scale;
                        }
                    }
            }
}

#endif  /* THN_CONV_SUPPORT */
"""


# ---------------------------------------------------------------------------
# Op plumbing
# ---------------------------------------------------------------------------

class _FusedCOp(cmath.BlasLinkedCOp):
    """Shared C plumbing: BLAS headers, link flags, scratch buffer, cache version."""

    __props__ = ()

    #: whether the Op multiplies matrices (then float32 may use thn_dot)
    _products = True

    def _dot(self):
        return self._products and _fast_dot()

    def c_support_code(self, **kwargs):
        if self._dot():
            from . import dot
            return dot.support_code() + '\n#define THN_CONV_USE_DOT 1\n' + _SUPPORT_CODE
        return blas_header_text() + _SUPPORT_CODE

    def c_headers(self, **kwargs):
        return ['<limits.h>', '<stdio.h>']

    def c_code_cache_version(self):
        if self._dot():
            from . import dot
            return (_C_VERSION, 'dot') + tuple(dot.DotOp().c_code_cache_version())
        return (_C_VERSION, 'blas') + tuple(blas_header_version())

    def c_support_code_struct(self, node, name):
        return 'ThnConvBuf thn_buf_{0};\nPyArrayObject* thn_keep_{0};\n'.format(name)

    def c_init_code_struct(self, node, name, sub):
        return 'thn_buf_{0}.p = NULL; thn_buf_{0}.size = 0; thn_keep_{0} = NULL;\n'.format(name)

    def c_cleanup_code_struct(self, node, name):
        return ('free(thn_buf_{0}.p); thn_buf_{0}.p = NULL; thn_buf_{0}.size = 0;\n'
                'Py_XDECREF(thn_keep_{0}); thn_keep_{0} = NULL;\n'.format(name))

    @staticmethod
    def _c_output(out, name, dims, typenum, params):
        """C condition allocating output ``out`` (true on failure), see thn_conv_output."""
        return 'thn_conv_output(&{0}, &thn_keep_{1}, 4, {2}, {3}, {4}->keep)'.format(
            out, name, dims, typenum, params)


def _fast_dot():
    """The hand-written float32 product is gone: products run on BLAS."""
    return False


class _ConvBase(_FusedCOp):
    """Properties and parameters shared by the three convolution Ops.

    Parameters
    ----------
    border_mode : {'valid', 'full', 'same'}
    stride : (int, int)
        Steps along W and H.
    filter_size : (int, int)
        ``(fw, fh)``; ``w`` must have this spatial shape.
    chunk_rows : int, optional
        Output rows per chunk; 0 (default) sizes chunks from
        :data:`CHUNK_BYTES`.
    layout : {'auto', 'rows', 'transposed'}, optional
        Patch matrix layout of the forward and weight-gradient Ops: one row of
        ``fw*fh*C`` values per output position (copies runs of ``fh*C``
        values), or its transpose (copies runs along the H axis; faster for
        few channels). ``'auto'`` (default) takes the transpose when
        ``C * fh <= 8``.
    """

    __props__ = ('border_mode', 'stride', 'filter_size', 'chunk_rows', 'layout')
    params_type = ParamsType(sw=scalar_int32, sh=scalar_int32, mode=scalar_int32,
                             fw=scalar_int32, fh=scalar_int32, chunk=scalar_int64,
                             budget=scalar_int64, min_rows=scalar_int64, layout=scalar_int32,
                             keep=scalar_int64)

    def _sibling(self, cls):
        """An Op of class ``cls`` with this one's geometry and tuning."""
        return cls(self.border_mode, self.stride, self.filter_size, self.chunk_rows, self.layout)

    def __init__(self, border_mode='valid', stride=(1, 1), filter_size=(1, 1), chunk_rows=0,
                 layout='auto'):
        if border_mode not in _BORDER_CODES:
            raise ValueError('border_mode must be one of {}, not {!r}'.format(
                tuple(_BORDER_CODES), border_mode))
        self.border_mode = border_mode
        self.stride = tuple(int(s) for s in stride)
        self.filter_size = tuple(int(f) for f in filter_size)
        if len(self.stride) != 2 or min(self.stride) < 1:
            raise ValueError('stride must be two positive ints, got {!r}'.format(stride))
        if len(self.filter_size) != 2 or min(self.filter_size) < 1:
            raise ValueError('filter_size must be two positive ints, got {!r}'.format(
                filter_size))
        self.chunk_rows = int(chunk_rows or 0)
        if layout not in _LAYOUT_CODES:
            raise ValueError('layout must be one of {}, not {!r}'.format(
                tuple(_LAYOUT_CODES), layout))
        self.layout = layout

    def get_params(self, node):
        return self.params_type.get_params(
            sw=np.int32(self.stride[0]), sh=np.int32(self.stride[1]),
            mode=np.int32(_BORDER_CODES[self.border_mode]),
            fw=np.int32(self.filter_size[0]), fh=np.int32(self.filter_size[1]),
            chunk=np.int64(self.chunk_rows), budget=np.int64(CHUNK_BYTES),
            min_rows=np.int64(MIN_CHUNK_ROWS), layout=np.int32(_LAYOUT_CODES[self.layout]),
            keep=np.int64(KEEP_BYTES))

    def _check(self, x, w):
        """Static shape checks of x (B, W, H, C) and w (n, C, fw, fh)."""
        xs, ws = x.type.shape, w.type.shape
        if xs[3] is not None and ws[1] is not None and xs[3] != ws[1]:
            raise ValueError('conv2d: channel mismatch: x (B, W, H, C) has shape {} but '
                             'w (n, C, fw, fh) has shape {}'.format(_shape_text(xs),
                                                                    _shape_text(ws)))
        for axis, f in zip((2, 3), self.filter_size):
            if ws[axis] is not None and ws[axis] != f:
                raise ValueError('conv2d: w (n, C, fw, fh) has shape {} but filter_size is '
                                 '{}'.format(_shape_text(ws), self.filter_size))

    def _out_shape(self, xshape, nfilt):
        """Static output shape (None where unknown)."""
        return (xshape[0],) + tuple(
            _static_len(xshape[a], f, s, self.border_mode)
            for a, f, s in zip((1, 2), self.filter_size, self.stride)) + (nfilt,)

    def _geometry_c(self, node, name, x, w, sub):
        """C lines: contiguous views cx, cw and the geometry g (sets thn_err)."""
        return """
    PyArrayObject* cx = PyArray_GETCONTIGUOUS(%(x)s);
    PyArrayObject* cw = cx ? PyArray_GETCONTIGUOUS(%(w)s) : NULL;
    ThnConvGeom g;
    int thn_err = cw ? 0 : 1;
    if (!thn_err)
        thn_err = thn_conv_geometry(&g, cx, cw, %(p)s->sw, %(p)s->sh, %(p)s->mode,
                                    %(p)s->fw, %(p)s->fh, "%(opname)s") ? 1 : 0;
    npy_intp chunk = 1;
    if (!thn_err)
        chunk = thn_conv_chunk<%(T)s>(g, %(p)s->chunk, %(p)s->budget, %(p)s->min_rows);
""" % dict(x=x, w=w, p=sub['params'], T='dtype_' + x, opname=type(self).__name__)


class Conv2dOp(_ConvBase):
    """Fused true 2-D convolution of channels-last images.

    Inputs ``x`` (B, W, H, C) and ``w`` (n, C, fw, fh), both of one float
    dtype; output (B, W', H', n) as :func:`theanets.ops.conv.conv2d`. See
    :class:`_ConvBase` for the parameters.
    """

    def make_node(self, x, w):
        x, w = pt.as_tensor_variable(x), pt.as_tensor_variable(w)
        dtype = _common_dtype(x, w)
        x = _as_float(x, dtype, 4, 'conv2d: x (B, W, H, C)')
        w = _as_float(w, dtype, 4, 'conv2d: w (n, C, fw, fh)')
        self._check(x, w)
        out = TensorType(dtype, shape=self._out_shape(x.type.shape, w.type.shape[0]))
        return Apply(self, [x, w], [out()])

    def infer_shape(self, fgraph, node, shapes):
        (b, wi, hi, _), (n, _, _, _) = shapes
        return [(b,) + tuple(_sym_out_len(size, f, s, self.border_mode) for size, f, s in
                             zip((wi, hi), self.filter_size, self.stride)) + (n,)]

    def perform(self, node, inputs, outputs, params=None):
        x, w = inputs
        _np_check(x, w, self.filter_size, type(self).__name__)
        outputs[0][0] = np_conv2d(x, w, self.stride, self.border_mode)

    def c_code(self, node, name, inputs, outputs, sub):
        x, w = inputs
        out, = outputs
        return """
{
%(geometry)s
    if (!thn_err) {
        npy_intp dims[4] = {g.B, g.Wo, g.Ho, g.n};
        if (%(alloc)s) thn_err = 1;
    }
    if (!thn_err && thn_conv_forward<%(T)s>(g, (const %(T)s*)PyArray_DATA(cx),
            (const %(T)s*)PyArray_DATA(cw), (%(T)s*)PyArray_DATA(%(out)s), chunk,
            %(p)s->layout, &thn_buf_%(name)s))
        thn_err = 1;
    Py_XDECREF(cx);
    Py_XDECREF(cw);
    if (thn_err) { %(fail)s }
}
""" % dict(geometry=self._geometry_c(node, name, x, w, sub), out=out, T='dtype_' + x,
           name=name, fail=sub['fail'], p=sub['params'],
           alloc=self._c_output(out, name, 'dims', 'PyArray_TYPE(cx)', sub['params']))

    def pullback(self, inputs, outputs, cotangents):
        x, w = inputs
        gz, = cotangents
        if gz is None or isinstance(gz.type, DisconnectedType):
            return [pt.zeros_like(x), pt.zeros_like(w)]
        gz = pt.cast(gz, x.dtype) if gz.dtype != x.dtype else gz
        return [self._sibling(Conv2dGradInputsOp)(x, w, gz),
                self._sibling(Conv2dGradWeightsOp)(x, w, gz)]


class _ConvGradBase(_ConvBase):
    """make_node and checks shared by the two gradient Ops (inputs x, w, dout)."""

    def make_node(self, x, w, dout):
        x, w, dout = (pt.as_tensor_variable(v) for v in (x, w, dout))
        dtype = _common_dtype(x, w, dout)
        x = _as_float(x, dtype, 4, 'conv2d gradient: x (B, W, H, C)')
        w = _as_float(w, dtype, 4, 'conv2d gradient: w (n, C, fw, fh)')
        dout = _as_float(dout, dtype, 4, "conv2d gradient: dout (B, W', H', n)")
        self._check(x, w)
        return Apply(self, [x, w, dout], [self._grad_type(x, w)()])

    def _c_body(self, node, name, inputs, outputs, sub, call, like):
        x, w, dout = inputs
        res, = outputs
        return """
{
%(geometry)s
    PyArrayObject* cd = thn_err ? NULL : PyArray_GETCONTIGUOUS(%(dout)s);
    if (!thn_err && !cd) thn_err = 1;
    if (!thn_err && thn_conv_check_dout(g, cd, "%(opname)s")) thn_err = 1;
    if (!thn_err && %(alloc)s)
        thn_err = 1;
    if (!thn_err && %(call)s)
        thn_err = 1;
    Py_XDECREF(cx);
    Py_XDECREF(cw);
    Py_XDECREF(cd);
    if (thn_err) { %(fail)s }
}
""" % dict(geometry=self._geometry_c(node, name, x, w, sub), dout=dout, res=res,
           like=like, call=call % dict(T='dtype_' + x, res=res, name=name, p=sub['params']),
           fail=sub['fail'], opname=type(self).__name__,
           alloc=self._c_output(res, name, 'PyArray_DIMS(%s)' % like, 'PyArray_TYPE(cx)',
                                sub['params']))


class Conv2dGradInputsOp(_ConvGradBase):
    """Gradient of :class:`Conv2dOp` with respect to ``x``.

    Inputs ``x`` (only its shape is read), ``w`` and ``dout`` (B, W', H', n);
    output ``dx`` (B, W, H, C).
    """

    def _grad_type(self, x, w):
        return x.type

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs, params=None):
        x, w, dout = inputs
        _np_check(x, w, self.filter_size, type(self).__name__)
        _np_check_dout(self, x, w, dout)
        outputs[0][0] = np_conv2d_grad_inputs(x.shape, w, dout, self.stride,
                                              self.border_mode).astype(x.dtype, copy=False)

    def pullback(self, inputs, outputs, cotangents):
        # <dx, g> = <conv(g; w), dout>: linear in w and in dout (x gives only its shape)
        x, w, dout = inputs
        g, = cotangents
        return [pt.zeros_like(x), self._sibling(Conv2dGradWeightsOp)(g, w, dout),
                self._sibling(Conv2dOp)(g, w)]

    def c_code(self, node, name, inputs, outputs, sub):
        call = ('thn_conv_backward_inputs<%(T)s>(g, (const %(T)s*)PyArray_DATA(cw), '
                '(const %(T)s*)PyArray_DATA(cd), (%(T)s*)PyArray_DATA(%(res)s), chunk, '
                '&thn_buf_%(name)s)')
        return self._c_body(node, name, inputs, outputs, sub, call, 'cx')


class Conv2dGradWeightsOp(_ConvGradBase):
    """Gradient of :class:`Conv2dOp` with respect to ``w``.

    Inputs ``x``, ``w`` (only its shape is read) and ``dout`` (B, W', H', n);
    output ``dw`` (n, C, fw, fh).
    """

    def _grad_type(self, x, w):
        return w.type

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1]]

    def perform(self, node, inputs, outputs, params=None):
        x, w, dout = inputs
        _np_check(x, w, self.filter_size, type(self).__name__)
        _np_check_dout(self, x, w, dout)
        outputs[0][0] = np_conv2d_grad_weights(x, w.shape, dout, self.stride,
                                               self.border_mode).astype(x.dtype, copy=False)

    def pullback(self, inputs, outputs, cotangents):
        # <dw, g> = <conv(x; g), dout>: linear in x and in dout (w gives only its shape)
        x, w, dout = inputs
        g, = cotangents
        return [self._sibling(Conv2dGradInputsOp)(x, g, dout), pt.zeros_like(w),
                self._sibling(Conv2dOp)(x, g)]

    def c_code(self, node, name, inputs, outputs, sub):
        call = ('thn_conv_backward_weights<%(T)s>(g, (const %(T)s*)PyArray_DATA(cx), '
                '(const %(T)s*)PyArray_DATA(cd), (%(T)s*)PyArray_DATA(%(res)s), chunk, '
                '%(p)s->layout, &thn_buf_%(name)s)')
        return self._c_body(node, name, inputs, outputs, sub, call, 'cw')


def _np_check(x, w, filter_size, opname):
    """Run-time shape checks of the NumPy path (same messages as the C code)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError('{}: x must be 4-D (B, W, H, C) and w 4-D (n, C, fw, fh); got x '
                         'shape {}, w shape {}'.format(opname, x.shape, w.shape))
    if x.shape[3] != w.shape[1]:
        raise ValueError('{}: channel mismatch: x (B, W, H, C) has shape {} but w '
                         '(n, C, fw, fh) has shape {}'.format(opname, x.shape, w.shape))
    if tuple(w.shape[2:]) != tuple(filter_size):
        raise ValueError('{}: w (n, C, fw, fh) has shape {} but the graph was built for '
                         'filter_size {}'.format(opname, w.shape, tuple(filter_size)))


def _np_check_dout(op, x, w, dout):
    want = op._out_shape(x.shape, w.shape[0])
    if dout.shape != want:
        raise ValueError('{}: output gradient has shape {}, expected {}'.format(
            type(op).__name__, dout.shape, want))


# ---------------------------------------------------------------------------
# pooling Ops
# ---------------------------------------------------------------------------

class _PoolBase(_FusedCOp):
    """Properties shared by the pooling Ops.

    Parameters
    ----------
    pool_size : (int, int)
        Window size along W and H.
    stride : (int, int)
        Steps between windows.
    mode : {'max', 'mean'}
    """

    __props__ = ('pool_size', 'stride', 'mode')
    _products = False
    params_type = ParamsType(pw=scalar_int32, ph=scalar_int32, sw=scalar_int32,
                             sh=scalar_int32, mode=scalar_int32, keep=scalar_int64)

    def __init__(self, pool_size=(2, 2), stride=None, mode='max'):
        mode = 'mean' if mode == 'average' else mode
        if mode not in _POOL_CODES:
            raise ValueError("pooling mode must be 'max', 'mean' or 'average', not {!r}"
                             .format(mode))
        self.pool_size = tuple(int(p) for p in pool_size)
        self.stride = self.pool_size if stride is None else tuple(int(s) for s in stride)
        if len(self.pool_size) != 2 or len(self.stride) != 2 or \
                min(self.pool_size + self.stride) < 1:
            raise ValueError('pool_size and stride must be two positive ints each, got {!r} '
                             'and {!r}'.format(pool_size, stride))
        self.mode = mode

    def get_params(self, node):
        return self.params_type.get_params(
            pw=np.int32(self.pool_size[0]), ph=np.int32(self.pool_size[1]),
            sw=np.int32(self.stride[0]), sh=np.int32(self.stride[1]),
            mode=np.int32(_POOL_CODES[self.mode]), keep=np.int64(KEEP_BYTES))

    def _out_shape(self, shape):
        return (shape[0],) + tuple(
            None if s is None else _pool_len(s, p, st)
            for s, p, st in zip(shape[1:3], self.pool_size, self.stride)) + (shape[3],)


class Pool2dOp(_PoolBase):
    """Max or mean pooling of x (B, W, H, C) to (B, W', H', C).

    ``W' = (W - pw) // sw + 1`` (0 when the window does not fit), likewise H'.
    """

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        dtype = _common_dtype(x)
        x = _as_float(x, dtype, 4, 'pool2d: x (B, W, H, C)')
        return Apply(self, [x], [TensorType(dtype, shape=self._out_shape(x.type.shape))()])

    def infer_shape(self, fgraph, node, shapes):
        b, wi, hi, c = shapes[0]
        return [(b,) + tuple(pt.maximum((size - p) // s + 1, 0) for size, p, s in
                             zip((wi, hi), self.pool_size, self.stride)) + (c,)]

    def perform(self, node, inputs, outputs, params=None):
        outputs[0][0] = np_pool2d(inputs[0], self.pool_size, self.stride, self.mode)

    def c_code(self, node, name, inputs, outputs, sub):
        x, = inputs
        out, = outputs
        return """
{
    PyArrayObject* cx = PyArray_GETCONTIGUOUS(%(x)s);
    ThnPoolGeom g;
    int thn_err = cx ? 0 : 1;
    if (!thn_err && thn_pool_geometry(&g, cx, %(p)s->pw, %(p)s->ph, %(p)s->sw, %(p)s->sh))
        thn_err = 1;
    if (!thn_err) {
        npy_intp dims[4] = {g.B, g.Wo, g.Ho, g.C};
        if (%(alloc)s) thn_err = 1;
    }
    if (!thn_err)
        thn_pool_forward<%(T)s>(g, %(p)s->mode, (const %(T)s*)PyArray_DATA(cx),
                                (%(T)s*)PyArray_DATA(%(out)s));
    Py_XDECREF(cx);
    if (thn_err) { %(fail)s }
}
""" % dict(x=x, out=out, p=sub['params'], T='dtype_' + x, fail=sub['fail'],
           alloc=self._c_output(out, name, 'dims', 'PyArray_TYPE(cx)', sub['params']))

    def pullback(self, inputs, outputs, cotangents):
        x, = inputs
        out, = outputs
        gz, = cotangents
        if gz is None or isinstance(gz.type, DisconnectedType):
            return [pt.zeros_like(x)]
        gz = pt.cast(gz, x.dtype) if gz.dtype != x.dtype else gz
        return [Pool2dGradOp(self.pool_size, self.stride, self.mode)(x, out, gz)]


class Pool2dGradOp(_PoolBase):
    """Gradient of :class:`Pool2dOp`: inputs ``(x, out, gz)``, output ``dx``.

    For a max, every element equal to its window's maximum receives the
    window's gradient (ties all do); for a mean every element receives
    ``gz / (pw * ph)``. Contributions of overlapping windows add up.
    """

    def make_node(self, x, out, gz):
        x, out, gz = (pt.as_tensor_variable(v) for v in (x, out, gz))
        dtype = _common_dtype(x)
        x = _as_float(x, dtype, 4, 'pool2d gradient: x')
        out = _as_float(out, dtype, 4, 'pool2d gradient: out')
        gz = _as_float(gz, dtype, 4, 'pool2d gradient: gz')
        return Apply(self, [x, out, gz], [x.type()])

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def perform(self, node, inputs, outputs, params=None):
        x, out, gz = inputs
        want = self._out_shape(x.shape)
        if out.shape != want or gz.shape != want:
            raise ValueError('Pool2dGradOp: out {} and gz {} must have shape {}'.format(
                out.shape, gz.shape, want))
        outputs[0][0] = np_pool2d_grad(x, out, gz, self.pool_size, self.stride, self.mode)

    def pullback(self, inputs, outputs, cotangents):
        # dx is linear in gz: its adjoint gathers g over each window, weighted
        # like the forward pass (1 / area for a mean, the max's mask for a
        # max); the mask is piecewise constant in x, so x and out get zeros.
        from .conv import _window
        x, out, gz = inputs
        g, = cotangents
        total = None
        for offset in itertools.product(*(range(p) for p in self.pool_size)):
            part = _window(g, offset, self.stride, (out.shape[1], out.shape[2]))
            if self.mode == 'max':
                part = part * pt.eq(_window(x, offset, self.stride,
                                            (out.shape[1], out.shape[2])), out)
            total = part if total is None else total + part
        if self.mode != 'max':
            total = total / np.prod(self.pool_size)
        return [pt.zeros_like(x), pt.zeros_like(out), total]

    def c_code(self, node, name, inputs, outputs, sub):
        x, out, gz = inputs
        dx, = outputs
        return """
{
    PyArrayObject* cx = PyArray_GETCONTIGUOUS(%(x)s);
    PyArrayObject* co = cx ? PyArray_GETCONTIGUOUS(%(out)s) : NULL;
    PyArrayObject* cg = co ? PyArray_GETCONTIGUOUS(%(gz)s) : NULL;
    ThnPoolGeom g;
    int thn_err = cg ? 0 : 1;
    if (!thn_err && thn_pool_geometry(&g, cx, %(p)s->pw, %(p)s->ph, %(p)s->sw, %(p)s->sh))
        thn_err = 1;
    if (!thn_err) {
        const npy_intp want[4] = {g.B, g.Wo, g.Ho, g.C};
        if (PyArray_NDIM(co) != 4 || PyArray_NDIM(cg) != 4 ||
            !PyArray_CompareLists(PyArray_DIMS(co), want, 4) ||
            !PyArray_CompareLists(PyArray_DIMS(cg), want, 4)) {
            PyErr_Format(PyExc_ValueError, "Pool2dGradOp: out and gz must have shape "
                         "(%%ld, %%d, %%d, %%d)", (long)g.B, g.Wo, g.Ho, g.C);
            thn_err = 1;
        }
    }
    if (!thn_err && %(alloc)s)
        thn_err = 1;
    if (!thn_err)
        thn_pool_backward<%(T)s>(g, %(p)s->mode, (const %(T)s*)PyArray_DATA(cx),
                                 (const %(T)s*)PyArray_DATA(co), (const %(T)s*)PyArray_DATA(cg),
                                 (%(T)s*)PyArray_DATA(%(dx)s));
    Py_XDECREF(cx);
    Py_XDECREF(co);
    Py_XDECREF(cg);
    if (thn_err) { %(fail)s }
}
""" % dict(x=x, out=out, gz=gz, dx=dx, p=sub['params'], T='dtype_' + x, fail=sub['fail'],
           alloc=self._c_output(dx, name, 'PyArray_DIMS(cx)', 'PyArray_TYPE(cx)',
                                sub['params']))


# ---------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------

def conv2d(x, w, stride=(1, 1), border_mode='valid', filter_size=None, chunk_rows=0,
           layout='auto'):
    """Fused convolution of x (B, W, H, C) with w (n, C, fw, fh) -> (B, W', H', n).

    Parameters
    ----------
    x, w : symbolic tensors
        Float inputs (cast to their common float dtype).
    stride : (int, int), optional
    border_mode : {'valid', 'full', 'same'}, optional
    filter_size : (int, int), optional
        ``(fw, fh)``; read from ``w``'s static shape when not given.
    chunk_rows : int, optional
        Output rows per chunk (0: automatic).
    layout : {'auto', 'rows', 'transposed'}, optional
        Patch matrix layout (see :class:`Conv2dOp`).

    Returns
    -------
    symbolic tensor (B, W', H', n)
    """
    w = pt.as_tensor_variable(w)
    if filter_size is None:
        filter_size = w.type.shape[2:]
        if any(f is None for f in filter_size):
            raise ValueError('conv2d: the filter size of w (shape {}) is not known when '
                             'building the graph: pass filter_size='.format(
                                 _shape_text(w.type.shape)))
    return Conv2dOp(border_mode, stride, filter_size, chunk_rows, layout)(x, w)


def pool2d(x, pool_size, stride=None, mode='max'):
    """Fused max or mean pooling of x (B, W, H, C) -> (B, W', H', C).

    Parameters
    ----------
    x : symbolic tensor (B, W, H, C)
    pool_size : (int, int)
    stride : (int, int), optional
        Defaults to ``pool_size``.
    mode : {'max', 'mean', 'average'}, optional

    Returns
    -------
    symbolic tensor (B, W', H', C)
    """
    return Pool2dOp(pool_size, stride, mode)(x)
