/* softmax.c: softmax over the last axis, one pass per row, and its gradient (formulas:
 * theanets/ops/softmax.py). */

struct thn_softmax_args {
    npy_intp rows, columns;
    const void* x;   /* softmax: x;  gradient: dy */
    const void* y;   /* gradient only: the softmax output */
    void* out;       /* softmax: y;  gradient: dx */
};

template <typename T>
static void thn_softmax_kernel(const thn_softmax_args& a) {
    const npy_intp C = a.columns;
    for (npy_intp r = 0; r < a.rows; ++r) {
        const T* x = (const T*)a.x + r * C;
        T* y = (T*)a.out + r * C;
        T m = x[0];
        for (npy_intp j = 1; j < C; ++j) m = x[j] > m ? x[j] : m;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (npy_intp j = 0; j < C; ++j) {
            const T e = thn_exp(x[j] - m);
            y[j] = e;
            s += e;
        }
        const T inv = (T)1 / s;
#pragma omp simd
        for (npy_intp j = 0; j < C; ++j) y[j] *= inv;
    }
}

template <typename T>
static void thn_softmax_grad_kernel(const thn_softmax_args& a) {
    const npy_intp C = a.columns;
    for (npy_intp r = 0; r < a.rows; ++r) {
        const T* dy = (const T*)a.x + r * C;
        const T* y = (const T*)a.y + r * C;
        T* dx = (T*)a.out + r * C;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (npy_intp j = 0; j < C; ++j) s += dy[j] * y[j];
#pragma omp simd
        for (npy_intp j = 0; j < C; ++j) dx[j] = y[j] * (dy[j] - s);
    }
}

/* *out = softmax(x) when y is NULL, else the gradient of softmax at output y for
 * the output gradient x; 0, or -1 with a Python error set */
static int thn_softmax(PyArrayObject* x, PyArrayObject* y, PyArrayObject** out) {
    if (y && (PyArray_NDIM(x) != PyArray_NDIM(y) ||
              !PyArray_CompareLists(PyArray_DIMS(x), PyArray_DIMS(y), PyArray_NDIM(y)))) {
        char shape[128];
        thn_format_shape(shape, sizeof shape, PyArray_NDIM(y), PyArray_DIMS(y));
        return thn_shape_error("softmax gradient", "dy", x, shape);
    }
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(x);
    PyArrayObject* yc = y ? PyArray_GETCONTIGUOUS(y) : NULL;
    int status = -1;
    if (xc && (yc || !y) && !thn_output_like(out, xc, false)) {
        const int nd = PyArray_NDIM(xc);
        thn_softmax_args a = {0, nd ? PyArray_DIMS(xc)[nd - 1] : 1, PyArray_DATA(xc),
                              y ? PyArray_DATA(yc) : NULL, PyArray_DATA(*out)};
        a.rows = a.columns > 0 ? PyArray_SIZE(xc) / a.columns : 0;
        if (PyArray_TYPE(xc) == NPY_FLOAT32)
            y ? thn_softmax_grad_kernel<float>(a) : thn_softmax_kernel<float>(a);
        else
            y ? thn_softmax_grad_kernel<double>(a) : thn_softmax_kernel<double>(a);
        status = 0;
    }
    Py_XDECREF(xc);
    Py_XDECREF(yc);
    return status;
}
