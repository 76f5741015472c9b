/* pool.c: max or mean pooling of channels-last images, and the two linear maps of its
 * gradient: x (B, W, H, C) to out (B, Wo, Ho, C) over pw x ph windows moved by (sw, sh)
 * (theanets/ops/conv.py: Pooling). With weight[p, o] = (x[p] == out[o]) for a max (every
 * tied entry counts) and 1 / (pw ph) for a mean, for entries p of the window of output o:
 *
 *   forward   out[o] = max_p x[p]  or  sum_p x[p] / (pw ph)
 *   scatter   dx[p] = sum_o weight[p, o] gz[o]    (the gradient)
 *   gather    h[o]  = sum_p weight[p, o] g[p]     (its transpose: second derivatives)
 */

enum thn_pool_which { THN_POOL_FORWARD = 0, THN_POOL_SCATTER = 1, THN_POOL_GATHER = 2 };
enum thn_pool_mode { THN_POOL_MAX = 0, THN_POOL_MEAN = 1 };

struct thn_pool_args {
    npy_intp B, W, H, C;  /* x */
    npy_intp pw, ph;      /* window */
    npy_intp sw, sh;      /* strides */
    npy_intp Wo, Ho;      /* out */
};

/* The rows b0..b1 of the batch. res: out (forward), dx (scatter) or h (gather), zeroed
 * but for the forward; in: gz or g. */
template <typename T, int WHICH, bool MAX>
static void thn_pool_rows(const thn_pool_args& g, npy_intp b0, npy_intp b1, const T* __restrict x,
                          const T* __restrict out, const T* __restrict in, T* __restrict res) {
    const npy_intp C = g.C;
    const T scale = (T)1 / (T)(g.pw * g.ph);
    for (npy_intp b = b0; b < b1; ++b)
        for (npy_intp i = 0; i < g.Wo; ++i)
            for (npy_intp j = 0; j < g.Ho; ++j) {
                const npy_intp o = ((b * g.Wo + i) * g.Ho + j) * C;
                const npy_intp p0 = ((b * g.W + i * g.sw) * g.H + j * g.sh) * C;
                if (WHICH == THN_POOL_FORWARD)
#pragma omp simd
                    for (npy_intp c = 0; c < C; ++c) res[o + c] = MAX ? x[p0 + c] : 0;
                for (npy_intp u = 0; u < g.pw; ++u)
                    for (npy_intp v = 0; v < g.ph; ++v) {
                        const npy_intp p = p0 + (u * g.H + v) * C;
#pragma omp simd
                        for (npy_intp c = 0; c < C; ++c) {
                            const T e = x[p + c];
                            if (WHICH == THN_POOL_FORWARD) {  /* NaN wins, as in NumPy */
                                const T r = res[o + c];
                                res[o + c] = !MAX ? r + e : e > r || e != e ? e : r;
                            } else {  /* scatter: res[p] += w in[o]; gather: res[o] += w in[p] */
                                const T m = in[WHICH == THN_POOL_SCATTER ? o + c : p + c];
                                res[WHICH == THN_POOL_SCATTER ? p + c : o + c] +=
                                    MAX ? (e == out[o + c] ? m : 0) : scale * m;
                            }
                        }
                    }
                if (WHICH == THN_POOL_FORWARD && !MAX)
#pragma omp simd
                    for (npy_intp c = 0; c < C; ++c) res[o + c] *= scale;
            }
}

/* The batch split among threads, each zeroing its rows of res first (but the forward). */
template <typename T, int WHICH>
static void thn_pool_kernel(const thn_pool_args& g, int mode, int threads, const T* x, const T* out,
                            const T* in, T* res) {
    const npy_intp size = WHICH == THN_POOL_SCATTER ? g.W * g.H * g.C : g.Wo * g.Ho * g.C;
    thn_threads guard(threads);
    thn_parallel((int)g.B, 1, guard.count, [&](int b0, int b1, int) {
        if (WHICH != THN_POOL_FORWARD) memset(res + b0 * size, 0, sizeof(T) * (b1 - b0) * size);
        if (mode == THN_POOL_MAX) thn_pool_rows<T, WHICH, true>(g, b0, b1, x, out, in, res);
        else thn_pool_rows<T, WHICH, false>(g, b0, b1, x, out, in, res);
    });
}

template <typename T>
static void thn_pool_run(const thn_pool_args& g, int which, int mode, int threads,
                         const void* x, const void* out, const void* in, void* res) {
    auto run = which == THN_POOL_FORWARD ? thn_pool_kernel<T, THN_POOL_FORWARD>
               : which == THN_POOL_SCATTER ? thn_pool_kernel<T, THN_POOL_SCATTER>
                                           : thn_pool_kernel<T, THN_POOL_GATHER>;
    run(g, mode, threads, (const T*)x, (const T*)out, (const T*)in, (T*)res);
}

/* The ops' entry point: forward (x -> *res = out), scatter ((x, out, gz) -> *res = dx)
 * or gather ((x, out, g) -> *res = h). Returns 0, or -1 with a Python error set. */
static int thn_pool(int which, int mode, PyArrayObject* x, PyArrayObject* out,
                    PyArrayObject* in, PyArrayObject** res, npy_intp pw, npy_intp ph,
                    npy_intp sw, npy_intp sh, int threads, const char* op) {
    const npy_intp* xd = PyArray_DIMS(x);
    thn_pool_args g = {xd[0], xd[1], xd[2], xd[3], pw, ph, sw, sh,
                       thn_conv_out_len(xd[1], pw, sw, THN_VALID),
                       thn_conv_out_len(xd[2], ph, sh, THN_VALID)};
    const npy_intp out_dims[4] = {g.B, g.Wo, g.Ho, g.C};
    char expected[128];
    thn_format_shape(expected, sizeof expected, 4, out_dims);
    if (which != THN_POOL_FORWARD && !PyArray_CompareLists(PyArray_DIMS(out), out_dims, 4))
        return thn_shape_error(op, "out", out, expected);
    if (which == THN_POOL_SCATTER && !PyArray_CompareLists(PyArray_DIMS(in), out_dims, 4))
        return thn_shape_error(op, "the output gradient", in, expected);
    if (which == THN_POOL_GATHER && !PyArray_CompareLists(PyArray_DIMS(in), xd, 4)) {
        thn_format_shape(expected, sizeof expected, 4, xd);
        return thn_shape_error(op, "g", in, expected);
    }
    PyArrayObject* cx = PyArray_GETCONTIGUOUS(x);
    PyArrayObject* co = which == THN_POOL_FORWARD ? NULL : PyArray_GETCONTIGUOUS(out);
    PyArrayObject* ci = which == THN_POOL_FORWARD ? NULL : PyArray_GETCONTIGUOUS(in);
    int status = -1;
    if (cx && (which == THN_POOL_FORWARD || (co && ci)) &&
        !(which == THN_POOL_SCATTER ? thn_output_like(res, cx, false)
                                    : thn_output(res, 4, out_dims, PyArray_TYPE(cx), false))) {
        const void* op_ = co ? PyArray_DATA(co) : NULL;
        const void* ip = ci ? PyArray_DATA(ci) : NULL;
        (PyArray_TYPE(cx) == NPY_FLOAT32 ? thn_pool_run<float> : thn_pool_run<double>)(
            g, which, mode, threads, PyArray_DATA(cx), op_, ip, PyArray_DATA(*res));
        status = 0;
    }
    Py_XDECREF(cx);
    Py_XDECREF(co);
    Py_XDECREF(ci);
    return status;
}
