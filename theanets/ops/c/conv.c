/* conv.c: true 2-D convolution of channels-last images, and its two gradients.
 *
 *   out[b, i, j, k] = sum_{u, v, c} xp[b, i sw + u, j sh + v, c] w[k, c, fw-1-u, fh-1-v]
 *
 * x (B, W, H, C), w (n, C, fw, fh), out (B, Wo, Ho, n); xp is x with pw (ph) zeros in
 * front along W (H) and enough behind (theanets.h: convolution geometry). The output
 * rows r = (b, i, j) are split among threads, each taking its rows a chunk at a time:
 * their patches, one row of K = fw fh C values per output row in the order (u, v, c),
 * are copied into a scratch matrix P (M x K; for few channels its transpose), and one
 * single-threaded BLAS product with the flipped kernel matrix Km (K x n) does the
 * arithmetic while P is in the cache of the core that wrote it:
 *
 *   forward           out[rows] = P Km
 *   input gradient    P = dout[rows] Km^T, then added into dx where it came from
 *                     (Km^T stored as such: OpenBLAS is faster without transposing)
 *   weight gradient   dKm += P^T dout[rows]; dw is dKm in the layout of w
 */

enum thn_conv_which { THN_CONV_FORWARD = 0, THN_CONV_INPUTS = 1, THN_CONV_WEIGHTS = 2 };

/* Rows of a thread's chunk: about THN_CONV_CHUNK_BYTES of patches, at least MIN_ROWS (the
 * grain), at most MAX_ROWS: past that OpenBLAS slowed for a short K (K = 25: 230 -> 170
 * GFLOP/s forward, 215 -> 125 weight gradient). Each thread calls BLAS on one thread: 2-thread
 * products of patches one thread wrote ran 1.8-2.5x slower with the VM's CPUs far apart. */
#define THN_CONV_CHUNK_BYTES (1 << 20)
#define THN_CONV_MIN_ROWS 64
#define THN_CONV_MAX_ROWS 1024

struct thn_conv_args {
    npy_intp B, W, H, C;  /* x */
    npy_intp n, fw, fh;   /* w */
    npy_intp sw, sh;      /* strides */
    npy_intp pw, ph;      /* zeros in front of the data */
    npy_intp Wo, Ho;      /* output */
    int threads;          /* at most */
};

/* Between x and the patches P of output rows [r0, r1): with to_patches, P = patches
 * (zeros where a window leaves x); else x += P, entry by entry. For one filter row u
 * the fh C values of a patch are one run of x. */
template <typename T, bool to_patches>
static void thn_conv_copy(const thn_conv_args& g, T* x, T* P, npy_intp r0, npy_intp r1) {
    const npy_intp C = g.C, run = g.fh * C;
    for (npy_intp r = r0; r < r1; ++r) {
        const npy_intp b = r / (g.Wo * g.Ho), i = r / g.Ho % g.Wo, j = r % g.Ho;
        const npy_intp y0 = j * g.sh - g.ph;              /* H index of tap v = 0 */
        const npy_intp lo = (y0 < 0 ? (-y0 < g.fh ? -y0 : g.fh) : 0) * C;
        npy_intp hi = (g.H - y0 < g.fh ? g.H - y0 : g.fh) * C;
        hi = hi > lo ? hi : lo;                           /* run entries inside x: [lo, hi) */
        T* __restrict p = P + (r - r0) * g.fw * run;
        for (npy_intp u = 0; u < g.fw; ++u, p += run) {
            const npy_intp xi = i * g.sw + u - g.pw;
            const bool inside = xi >= 0 && xi < g.W;
            const npy_intp at = ((b * g.W + xi) * g.H + y0) * C;  /* x[at + k]: entry k */
            if (to_patches) {
                const npy_intp a = inside ? lo : run, e = inside ? hi : run;
                for (npy_intp k = 0; k < a; ++k) p[k] = 0;
                for (npy_intp k = a; k < e; ++k) p[k] = x[at + k];
                for (npy_intp k = e; k < run; ++k) p[k] = 0;
            } else if (inside) {
                for (npy_intp k = lo; k < hi; ++k) x[at + k] += p[k];
            }
        }
    }
}

/* The patches of output rows [r0, r1) as columns: PT (K x M, M = r1 - r0, rows ld
 * apart), PT[t][r - r0] for t = (u fh + v) C + c. Along one output line (b, i) a tap
 * reads x every sh C entries: with one channel and stride 1, one run of x. For few
 * channels (C fh small) the runs of thn_conv_copy would be a few values long. */
template <typename T>
static void thn_conv_columns(const thn_conv_args& g, const T* x, T* PT, npy_intp ld,
                             npy_intp r0, npy_intp r1) {
    const npy_intp step = g.sh * g.C, sh = g.sh;
    for (npy_intp r = r0; r < r1;) {
        const npy_intp b = r / (g.Wo * g.Ho), i = r / g.Ho % g.Wo, j0 = r % g.Ho;
        const int len = (int)(g.Ho - j0 < r1 - r ? g.Ho - j0 : r1 - r);  /* this line's rows */
        for (npy_intp v = 0; v < g.fh; ++v) {
            /* q in [lo, hi): y = y0 + q sh inside [0, H), the same for every u */
            const npy_intp y0 = j0 * sh + v - g.ph;
            const npy_intp first = y0 >= 0 ? 0 : sh == 1 ? -y0 : (-y0 + sh - 1) / sh;
            const npy_intp past = y0 >= g.H ? 0 : sh == 1 ? g.H - y0 : (g.H - 1 - y0) / sh + 1;
            const int hi_v = (int)(past < len ? past : len);
            const int lo_v = (int)(first < hi_v ? first : hi_v);
            for (npy_intp u = 0; u < g.fw; ++u) {
                const npy_intp xi = i * g.sw + u - g.pw;
                const bool inside = xi >= 0 && xi < g.W;
                const int lo = inside ? lo_v : 0, hi = inside ? hi_v : 0;
                const T* s = hi > lo ? x + ((b * g.W + xi) * g.H + y0 + lo * sh) * g.C : x;
                for (npy_intp c = 0; c < g.C; ++c) {
                    T* __restrict d = PT + ((u * g.fh + v) * g.C + c) * ld + (r - r0);
                    for (int q = 0; q < lo; ++q) d[q] = 0;
                    if (step == 1)
                        for (int q = lo; q < hi; ++q) d[q] = s[c + q - lo];
                    else
                        for (int q = lo; q < hi; ++q) d[q] = s[c + (q - lo) * step];
                    for (int q = hi; q < len; ++q) d[q] = 0;
                }
            }
        }
        r += len;
    }
}

/* Km[t][k] = w[k, c, fw-1-u, fh-1-v] for t = (u fh + v) C + c (or its transpose Km[k][t]):
 * with to_matrix, Km from w; else w from Km. k runs innermost for Km, outermost for Km^T. */
template <typename T, bool to_matrix>
static void thn_conv_kernel_matrix(const thn_conv_args& g, T* w, T* Km, bool transposed) {
    const npy_intp K = g.fw * g.fh * g.C, outer = transposed ? g.n : 1;
    for (npy_intp k0 = 0; k0 < outer; ++k0)
        for (npy_intp c = 0; c < g.C; ++c)
            for (npy_intp u = 0; u < g.fw; ++u)
                for (npy_intp v = 0; v < g.fh; ++v)
                    for (npy_intp k = k0; k < (transposed ? k0 + 1 : g.n); ++k) {
                        const npy_intp t = (u * g.fh + v) * g.C + c;
                        T& m = transposed ? Km[k * K + t] : Km[t * g.n + k];
                        T& e = w[((k * g.C + c) * g.fw + g.fw - 1 - u) * g.fh + g.fh - 1 - v];
                        if (to_matrix) m = e;
                        else e = m;
                    }
}

/* One of the three computations. x is the input (dx for THN_CONV_INPUTS, zeroed), w the
 * filters (dw for THN_CONV_WEIGHTS), y the output (dout for the gradients). The output
 * rows are split among the threads (for dx by whole images, so that each adds into its
 * own), each with its scratch P and for dw its dKm (thread 0's is Km), summed at the end. */
template <typename T>
static int thn_conv_kernel(const thn_conv_args& g, int which, T* x, T* w, T* y) {
    const npy_intp K = g.fw * g.fh * g.C, n = g.n, rows = g.B * g.Wo * g.Ho, Kn = K * n;
    const bool columns = which != THN_CONV_INPUTS && g.C * g.fh <= 8;
    npy_intp chunk = THN_CONV_CHUNK_BYTES / (npy_intp)sizeof(T) / (K > 0 ? K : 1);
    chunk = chunk < THN_CONV_MIN_ROWS ? THN_CONV_MIN_ROWS
            : chunk > THN_CONV_MAX_ROWS ? THN_CONV_MAX_ROWS : chunk;
    const npy_intp ld = columns ? chunk : K, room = K * chunk;  /* a thread's P */
    thn_threads guard(g.threads);
    const int sums = which == THN_CONV_WEIGHTS ? guard.count : 1;
    T* Km = (T*)malloc(sizeof(T) * (size_t)(Kn * sums + guard.count * room + 1));
    if (!Km) return PyErr_NoMemory(), -1;
    if (which == THN_CONV_WEIGHTS) memset(Km, 0, sizeof(T) * (size_t)(Kn * sums));
    else thn_conv_kernel_matrix<T, true>(g, w, Km, which == THN_CONV_INPUTS);
    const int grain = (int)(which == THN_CONV_INPUTS ? g.Wo * g.Ho : THN_CONV_MIN_ROWS);
    thn_parallel((int)rows, grain > 0 ? grain : 1, guard.count, [=](int r0, int r1, int t) {
        T* P = Km + Kn * sums + t * room;
        T* dKm = Km + (sums > 1 ? t * Kn : 0);
        const npy_intp parts = (r1 - r0 + chunk - 1) / chunk;
        const npy_intp size = parts > 1 ? (r1 - r0 + parts - 1) / parts : chunk;
        for (npy_intp c0 = r0; c0 < r1; c0 += size) {
            const int M = (int)(r1 - c0 < size ? r1 - c0 : size);
            T* yr = y + c0 * n;
            if (columns) thn_conv_columns<T>(g, x, P, ld, c0, c0 + M);
            else if (which != THN_CONV_INPUTS) thn_conv_copy<T, true>(g, x, P, c0, c0 + M);
            if (which == THN_CONV_FORWARD) {
                thn_gemm(columns, false, M, n, K, (T)1, P, (int)ld, Km, n, (T)0, yr, n);
            } else if (which == THN_CONV_INPUTS) {
                thn_gemm(false, false, M, K, n, (T)1, yr, n, Km, K, (T)0, P, K);  /* Km^T */
                thn_conv_copy<T, false>(g, x, P, c0, c0 + M);
            } else {
                thn_gemm(!columns, false, K, n, M, (T)1, P, (int)ld, yr, n, (T)1, dKm, n);
            }
        }
    });
    for (npy_intp e = 0; sums > 1 && e < Kn; ++e)  /* dw: the threads' dKm summed */
        for (int t = 1; t < sums; ++t) Km[e] += Km[t * Kn + e];
    if (which == THN_CONV_WEIGHTS) thn_conv_kernel_matrix<T, false>(g, w, Km, false);
    free(Km);
    return 0;
}

/* The ops' entry point. Inputs as the op has them: x and w, and for the gradients the
 * output gradient dout; *res receives out, dx or dw. border is a thn_border. Returns 0,
 * or -1 with a Python error set. */
static int thn_conv(int which, PyArrayObject* x, PyArrayObject* w, PyArrayObject* dout,
                    PyArrayObject** res, int border, npy_intp sw, npy_intp sh, int threads,
                    const char* op) {
    const npy_intp* xd = PyArray_DIMS(x);
    const npy_intp* wd = PyArray_DIMS(w);
    char expected[160];
    if (xd[3] != wd[1]) {
        thn_format_shape(expected, sizeof expected, 4, xd);
        PyErr_Format(PyExc_ValueError, "%s: x (B, W, H, C) has shape %s but w (n, C, fw, fh) "
                     "has %ld channels", op, expected, (long)wd[1]);
        return -1;
    }
    thn_conv_args g = {xd[0], xd[1], xd[2], xd[3], wd[0], wd[2], wd[3], sw, sh,
                       thn_pad_before(wd[2], border), thn_pad_before(wd[3], border),
                       thn_conv_out_len(xd[1], wd[2], sw, border),
                       thn_conv_out_len(xd[2], wd[3], sh, border), threads};
    const npy_intp out_dims[4] = {g.B, g.Wo, g.Ho, g.n};
    if (which != THN_CONV_FORWARD && !PyArray_CompareLists(PyArray_DIMS(dout), out_dims, 4)) {
        thn_format_shape(expected, sizeof expected, 4, out_dims);
        return thn_shape_error(op, "the output gradient", dout, expected);
    }
    PyArrayObject* cx = PyArray_GETCONTIGUOUS(x);
    PyArrayObject* cw = PyArray_GETCONTIGUOUS(w);
    PyArrayObject* cy = which == THN_CONV_FORWARD ? NULL : PyArray_GETCONTIGUOUS(dout);
    PyArrayObject* like = which == THN_CONV_INPUTS ? cx : cw;
    int status = -1;
    if (cx && cw && (cy || which == THN_CONV_FORWARD) &&
        !(which == THN_CONV_FORWARD ? thn_output(res, 4, out_dims, PyArray_TYPE(cx), false)
                                    : thn_output_like(res, like, which == THN_CONV_INPUTS))) {
        void* xp = which == THN_CONV_INPUTS ? PyArray_DATA(*res) : PyArray_DATA(cx);
        void* wp = which == THN_CONV_WEIGHTS ? PyArray_DATA(*res) : PyArray_DATA(cw);
        void* yp = which == THN_CONV_FORWARD ? PyArray_DATA(*res) : PyArray_DATA(cy);
        status = PyArray_TYPE(cx) == NPY_FLOAT32
                     ? thn_conv_kernel<float>(g, which, (float*)xp, (float*)wp, (float*)yp)
                     : thn_conv_kernel<double>(g, which, (double*)xp, (double*)wp, (double*)yp);
    }
    Py_XDECREF(cx);
    Py_XDECREF(cw);
    Py_XDECREF(cy);
    return status;
}
