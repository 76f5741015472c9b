/* theanets.h: the helpers every theanets C op shares, first in its support code
 * (theanets/ops/base.py). Everything here is `static inline`, so an op that does not
 * call a helper does not pay for it. Sections: BLAS, elementwise math, output arrays,
 * errors, convolution geometry, outputs kept between calls.
 */
#ifndef THEANETS_H
#define THEANETS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define THN_INLINE static inline __attribute__((always_inline))

/* ---- BLAS -------------------------------------------------------------------
 * Fortran-interface prototypes of the routines the ops call. theanets/backend.py
 * links scipy-openblas32 and maps these names onto its prefixed symbols with
 * -D flags (sgemm_ -> scipy_sgemm_), so the prototypes follow the renaming. */
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc);
}

template <typename T> struct thn_blas;  /* thn_blas<T>::gemm: sgemm_ or dgemm_ */
template <> struct thn_blas<float> { static constexpr auto gemm = sgemm_; };
template <> struct thn_blas<double> { static constexpr auto gemm = dgemm_; };

/* Row-major product C (m x n) = alpha op(A) op(B) + beta C, where op(A) is
 * (m x k) and op(B) is (k x n); lda, ldb, ldc are row strides in elements.
 * A row-major product is the column-major product of the transposes, so the
 * operands swap places in the BLAS call. */
template <typename T>
THN_INLINE void thn_gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a,
                         int lda, const T* b, int ldb, T beta, T* c, int ldc) {
    if (m <= 0 || n <= 0) return;
    const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
    lda = lda > 0 ? lda : 1;
    ldb = ldb > 0 ? ldb : 1;
    thn_blas<T>::gemm(&ta, &tb, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

/* ---- elementwise math ---------------------------------------------------------
 * float32: branch-free exp and expm1 that the compiler vectorizes, where the C
 * library's would be a call per element: e^x = 2^k (1 + q), k = round(x / ln 2),
 * q = e^r - 1 for |r| <= ln(2) / 2 (a degree-6 polynomial fitted for relative
 * error, below 5e-8); tanh from expm1 keeps its relative precision near 0.
 * float64: the C library. */
THN_INLINE float thn_exp_parts(float x, float* scale) {  /* q; *scale = 2^k */
    x = x < -87.0f ? -87.0f : x;  /* k + 127 in 0..254 */
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + 12583039.0f;  /* 1.5 * 2^23 + 127 */
    float k = t - 12583039.0f;                            /* its low bits: k + 127 */
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 0.00137514074f;
    p = p * r + 0.00836891588f;
    p = p * r + 0.0416695327f;
    p = p * r + 0.166665182f;
    p = p * r + 0.499999881f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits <<= 23;
    memcpy(scale, &bits, sizeof bits);
    return r + r * r * p;
}
THN_INLINE float thn_exp(float x) {
    float scale, q = thn_exp_parts(x, &scale);
    return scale * q + scale;
}
THN_INLINE double thn_exp(double x) { return exp(x); }

THN_INLINE float thn_sigmoid(float x) { return 1.0f / (1.0f + thn_exp(-x)); }
THN_INLINE double thn_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

THN_INLINE float thn_tanh(float x) {  /* tanh |x| = -e / (2 + e), e = expm1(-2 |x|) */
    float scale, q = thn_exp_parts(-2.0f * fabsf(x), &scale);
    float e = scale * q + (scale - 1.0f);
    return copysignf(-e / (2.0f + e), x);
}
THN_INLINE double thn_tanh(double x) { return tanh(x); }

/* ---- output arrays ---------------------------------------------------------------
 * Make *out a C-contiguous, writeable array of `nd` dims and type `typenum`,
 * reusing the array already there when it fits (PyTensor keeps outputs between
 * calls). Zero-filled when `zero` is set. Returns 0, or -1 with a Python error. */
static inline int thn_output(PyArrayObject** out, int nd, const npy_intp* dims, int typenum,
                             bool zero) {
    PyArrayObject* o = *out;
    if (!(o && PyArray_NDIM(o) == nd && PyArray_TYPE(o) == typenum &&
          PyArray_IS_C_CONTIGUOUS(o) && PyArray_ISWRITEABLE(o) &&
          PyArray_CompareLists(PyArray_DIMS(o), dims, nd))) {
        Py_XDECREF(o);
        *out = (PyArrayObject*)PyArray_EMPTY(nd, (npy_intp*)dims, typenum, 0);
        if (!*out) return -1;
    }
    if (zero) memset(PyArray_DATA(*out), 0, PyArray_NBYTES(*out));
    return 0;
}

/* An output shaped like `like`. */
static inline int thn_output_like(PyArrayObject** out, PyArrayObject* like, bool zero) {
    return thn_output(out, PyArray_NDIM(like), PyArray_DIMS(like), PyArray_TYPE(like), zero);
}

/* ---- errors ----------------------------------------------------------------------
 * Shapes print as Python tuples, e.g. "(32, 50, 256)". */
static inline void thn_format_shape(char* buffer, size_t size, int nd, const npy_intp* dims) {
    size_t used = (size_t)snprintf(buffer, size, "(");
    for (int i = 0; i < nd && used < size; ++i)
        used += (size_t)snprintf(buffer + used, size - used, i ? ", %ld" : "%ld", (long)dims[i]);
    if (used < size) snprintf(buffer + used, size - used, nd == 1 ? ",)" : ")");
}

/* Set a ValueError "<op>: <what> has shape (..), expected <expected>"; returns -1. */
static inline int thn_shape_error(const char* op, const char* what, PyArrayObject* array,
                                  const char* expected) {
    char shape[128];
    thn_format_shape(shape, sizeof shape, PyArray_NDIM(array), PyArray_DIMS(array));
    PyErr_Format(PyExc_ValueError, "%s: %s has shape %s, expected %s", op, what, shape,
                 expected);
    return -1;
}

/* ---- convolution geometry -----------------------------------------------------------
 * Padding and output length along one axis, by border mode: the rules of padding and
 * output_length in theanets/ops/conv.py. */
enum thn_border { THN_VALID = 0, THN_FULL = 1, THN_SAME = 2 };

THN_INLINE npy_intp thn_pad_before(npy_intp filter, int border) {
    return border == THN_FULL ? filter - 1 : border == THN_SAME ? (filter - 1) / 2 : 0;
}

THN_INLINE npy_intp thn_pad_after(npy_intp filter, int border) {
    return border == THN_FULL ? filter - 1 : border == THN_SAME ? filter / 2 : 0;
}

THN_INLINE npy_intp thn_conv_out_len(npy_intp size, npy_intp filter, npy_intp stride,
                                     int border) {
    const npy_intp padded = size + thn_pad_before(filter, border) + thn_pad_after(filter, border);
    return padded < filter ? 0 : (padded - filter) / stride + 1;
}

/* ---- outputs kept between calls ------------------------------------------------------
 * PyTensor frees an op's outputs after their last use in a call, and glibc may give
 * multi-megabyte blocks back to the system, so that the next call writes fresh memory
 * (page faults: a fifth of a small convolutional network's training step, half of a
 * recurrent layer's prediction). Every op's node keeps a reference to its last outputs
 * (`keep`, see CSourceOp.c_code in ops/base.py) and writes into them again once nobody
 * else holds them: thn_reuse_output before computing *out, thn_keep_output after. */
static inline void thn_reuse_output(PyArrayObject** out, PyArrayObject* keep) {
    if (!*out && keep && Py_REFCNT(keep) == 1) {
        Py_INCREF(keep);
        *out = keep;
    }
}

static inline void thn_keep_output(PyArrayObject** keep, PyArrayObject* out) {
    if (out != *keep) {
        Py_XINCREF(out);
        Py_XDECREF(*keep);
        *keep = out;
    }
}

#endif /* THEANETS_H */
