/* product.c: products over the last axis of 3-D arrays, one BLAS call each (the ops
 * of theanets/ops/product.py).
 *
 * A 3-D array is read as one matrix of A * C rows when its rows are evenly
 * spaced in the order (a, c) or (c, a) (e.g. a time-major buffer viewed
 * batch-major); otherwise, or to match the other operand's order, it is
 * copied. Outputs are C-contiguous. The products are split by rows of their
 * output among `threads` threads (parallel.c).
 */

/* 1 when `x` is C-contiguous with its first two axes swapped, else 0 */
static int thn_swapped(PyArrayObject* x) {
    const npy_intp* s = PyArray_STRIDES(x);
    const npy_intp* d = PyArray_DIMS(x);
    const npy_intp item = PyArray_ITEMSIZE(x);
    return d[0] > 1 && d[1] > 1 && s[2] == item && s[0] == d[2] * item &&
           s[1] == d[0] * d[2] * item;
}

/* A new reference to `x` with its first two axes swapped when `swap` is set */
static PyArrayObject* thn_swap_axes(PyArrayObject* x, int swap) {
    npy_intp axes[3] = {swap, !swap, 2};
    PyArray_Dims order = {axes, 3};
    return (PyArrayObject*)PyArray_Transpose(x, &order);
}

/* A new reference to a C-contiguous array of `x`, first two axes swapped when
 * `swap` is set (a view when x is laid out so, else a copy). */
static PyArrayObject* thn_rows_of(PyArrayObject* x, int swap) {
    PyArrayObject* t = thn_swap_axes(x, swap);
    if (!t) return NULL;
    PyArrayObject* c = PyArray_GETCONTIGUOUS(t);
    Py_DECREF(t);
    return c;
}

/* c (m, n) = op(a) . b for a (m, k), or a^T for a (k, m); rows of c split among threads */
template <typename T>
static void thn_product(bool trans_a, int m, int n, int k, const void* a, const void* b, void* c,
                        int threads) {
    thn_threads guard(threads);
    thn_parallel(m, 8, guard.count, [&](int r0, int r1, int) {
        const T* ar = (const T*)a + (trans_a ? r0 : (npy_intp)r0 * k);
        thn_gemm(trans_a, false, r1 - r0, n, k, (T)1, ar, trans_a ? m : k, (const T*)b, n, (T)0,
                 (T*)c + (npy_intp)r0 * n, n);
    });
}

static void thn_product_any(PyArrayObject* like, bool trans_a, int m, int n, int k, const void* a,
                            const void* b, void* c, int threads) {
    if (PyArray_TYPE(like) == NPY_FLOAT32) thn_product<float>(trans_a, m, n, k, a, b, c, threads);
    else thn_product<double>(trans_a, m, n, k, a, b, c, threads);
}

/* *y = x . w; 0, or -1 with a Python error set */
static int thn_dot_last(PyArrayObject* x, PyArrayObject* w, PyArrayObject** y, int threads) {
    if (PyArray_DIMS(w)[0] != PyArray_DIMS(x)[2]) {
        char want[64];
        snprintf(want, sizeof want, "(%ld, k)", (long)PyArray_DIMS(x)[2]);
        return thn_shape_error("dot_last", "w", w, want);
    }
    const int swap = thn_swapped(x);
    PyArrayObject* xs = thn_rows_of(x, swap);
    PyArrayObject* wc = PyArray_GETCONTIGUOUS(w);
    PyArrayObject* tmp = NULL;
    int status = -1;
    const npy_intp dims[3] = {PyArray_DIMS(x)[0], PyArray_DIMS(x)[1], PyArray_DIMS(w)[1]};
    const npy_intp sdims[3] = {dims[swap], dims[!swap], dims[2]};
    const int inner = (int)PyArray_DIMS(x)[2];
    if (xs && wc && !thn_output(y, 3, dims, PyArray_TYPE(x), inner == 0) &&
        !thn_output(swap ? &tmp : y, 3, sdims, PyArray_TYPE(x), inner == 0)) {
        thn_product_any(x, false, (int)(dims[0] * dims[1]), (int)dims[2], inner, PyArray_DATA(xs),
                        PyArray_DATA(wc), PyArray_DATA(swap ? tmp : *y), threads);
        status = 0;
        if (swap) {  /* computed in x's (c, a) order: copy back to (a, c) */
            PyArrayObject* back = thn_swap_axes(tmp, 1);
            status = back && PyArray_CopyInto(*y, back) == 0 ? 0 : -1;
            Py_XDECREF(back);
        }
    }
    Py_XDECREF(tmp);
    Py_XDECREF(xs);
    Py_XDECREF(wc);
    return status;
}

/* *dw = sum over the first two axes of x^T g */
static int thn_dot_leading(PyArrayObject* x, PyArrayObject* g, PyArrayObject** dw, int threads) {
    if (PyArray_DIMS(g)[0] != PyArray_DIMS(x)[0] || PyArray_DIMS(g)[1] != PyArray_DIMS(x)[1]) {
        char want[64];
        snprintf(want, sizeof want, "(%ld, %ld, k)", (long)PyArray_DIMS(x)[0],
                 (long)PyArray_DIMS(x)[1]);
        return thn_shape_error("dot_leading", "g", g, want);
    }
    /* read both in one order, the larger array's, so that at most the smaller is copied */
    const int sx = thn_swapped(x), sg = thn_swapped(g);
    const int swap = sx == sg || PyArray_SIZE(x) > PyArray_SIZE(g) ? sx : sg;
    PyArrayObject* xs = thn_rows_of(x, swap);
    PyArrayObject* gs = thn_rows_of(g, swap);
    const npy_intp dims[2] = {PyArray_DIMS(x)[2], PyArray_DIMS(g)[2]};
    int status = -1;
    if (xs && gs && !thn_output(dw, 2, dims, PyArray_TYPE(x), true)) {
        const npy_intp rows = PyArray_DIMS(x)[0] * PyArray_DIMS(x)[1];
        if (rows > 0)
            thn_product_any(x, true, (int)dims[0], (int)dims[1], (int)rows, PyArray_DATA(xs),
                            PyArray_DATA(gs), PyArray_DATA(*dw), threads);
        status = 0;
    }
    Py_XDECREF(xs);
    Py_XDECREF(gs);
    return status;
}
