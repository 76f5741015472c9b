/* softmax.c: softmax over the last axis, one pass per row, and its gradient.
 *
 *   y[r, j] = exp(x[r, j] - m_r) / sum_k exp(x[r, k] - m_r),   m_r = max_k x[r, k]
 *   dx[r, j] = y[r, j] (dy[r, j] - sum_k dy[r, k] y[r, k])
 */

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

static npy_intp thn_last_axis(PyArrayObject* a) {
    return PyArray_NDIM(a) ? PyArray_DIMS(a)[PyArray_NDIM(a) - 1] : 1;
}

/* *y = softmax(x); 0, or -1 with a Python error set */
static int thn_softmax(PyArrayObject* x, PyArrayObject** y) {
    PyArrayObject* xc = PyArray_GETCONTIGUOUS(x);
    if (!xc || thn_output_like(y, xc, false)) {
        Py_XDECREF(xc);
        return -1;
    }
    thn_softmax_args a = {0, thn_last_axis(xc), PyArray_DATA(xc), NULL, PyArray_DATA(*y)};
    if (a.columns > 0) {
        a.rows = PyArray_SIZE(xc) / a.columns;
        if (PyArray_TYPE(xc) == NPY_FLOAT32) thn_softmax_kernel<float>(a);
        else thn_softmax_kernel<double>(a);
    }
    Py_DECREF(xc);
    return 0;
}

/* *dx = gradient of softmax at output y for output gradient dy */
static int thn_softmax_grad(PyArrayObject* dy, PyArrayObject* y, PyArrayObject** dx) {
    if (PyArray_NDIM(dy) != PyArray_NDIM(y) ||
        !PyArray_CompareLists(PyArray_DIMS(dy), PyArray_DIMS(y), PyArray_NDIM(y))) {
        char shape[128];
        thn_format_shape(shape, sizeof shape, PyArray_NDIM(y), PyArray_DIMS(y));
        return thn_shape_error("softmax gradient", "dy", dy, shape);
    }
    PyArrayObject* dyc = PyArray_GETCONTIGUOUS(dy);
    PyArrayObject* yc = PyArray_GETCONTIGUOUS(y);
    int status = -1;
    if (dyc && yc && !thn_output_like(dx, yc, false)) {
        thn_softmax_args a = {0, thn_last_axis(yc), PyArray_DATA(dyc), PyArray_DATA(yc),
                              PyArray_DATA(*dx)};
        if (a.columns > 0) {
            a.rows = PyArray_SIZE(yc) / a.columns;
            if (PyArray_TYPE(yc) == NPY_FLOAT32) thn_softmax_grad_kernel<float>(a);
            else thn_softmax_grad_kernel<double>(a);
        }
        status = 0;
    }
    Py_XDECREF(dyc);
    Py_XDECREF(yc);
    return status;
}
