/* recurrent.c: the time loops of the recurrent ops (RNN, GRU, MUT1, RRNN, LSTM, MRNN),
 * forward and backward.
 *
 * theanets/ops/recurrent.py documents the equations and owns the array
 * layouts, such as "~xproj:T,B,4n hh:n,4n h0:b,n" (see "entry point" below).
 * Every kernel takes one thn_rec_args struct. The forward kernels read the input
 * projections x . W + b of every step through strides, or compute them step by
 * step (thn_xin).
 *
 * Per step, a loop multiplies a few batch rows by the recurrent weights and
 * runs vectorized passes over those rows for the gates. The sequences of a
 * batch are independent, so the batch is split among threads that each run the
 * whole time loop on their rows, with no synchronization between steps
 * (thn_batch_parallel). The per-step products use weights packed once per call
 * (thn_panels): at these sizes BLAS packs the weights again at every call, and
 * its threads must meet at every step. After the loop, the weight gradients are
 * BLAS products over all steps, split among the threads. Backpropagation runs
 * over the last `window` steps only (bptt_limit): earlier steps get zero
 * gradients, and so do the initial states unless the window covers every step.
 */

/* ---- recurrent ---------------------------------------------------------------- */

enum thn_act { THN_LINEAR = 0, THN_RELU = 1, THN_TANH = 2, THN_LOGISTIC = 3 };

#define THN_REC_MAX 16

/* Everything a kernel reads and writes. Input k starts at in[k]; row b of
 * step t of a sequence is at in[k] + t * ts[k] + b * bs[k] (elements), row b of
 * a (batch, n) state at in[k] + b * bs[k], where bs[k] = 0 for one row shared
 * by the whole batch. An absent output gradient reads as zeros (all strides 0);
 * a "-name" slot of the layout is NULL. Outputs are C-contiguous. */
struct thn_rec_args {
    int steps, batch, n;  /* T, B, n */
    int factors;          /* F (mrnn) */
    int act;              /* activation of the candidate (not lstm), enum thn_act */
    int window;           /* steps the backward loop covers, at most T */
    int keep;             /* forward: the cache holds every step, else one step */
    int threads;          /* threads to split the batch among */
    int proj, m, g;       /* forward: inputs proj and proj + 1 are w (m, g) and b (g,), else 0 */
    const void* in[THN_REC_MAX];
    npy_intp ts[THN_REC_MAX], bs[THN_REC_MAX];
    void* out[THN_REC_MAX];
};

template <typename T>
struct thn_rows {  /* rows of a (T, B, k) or (B, k) input */
    const T* p;
    npy_intp ts, bs;
    const T* operator()(npy_intp t, npy_intp b) const { return p + t * ts + b * bs; }
};

template <typename T>
static thn_rows<T> thn_in(const thn_rec_args& a, int k) {
    return thn_rows<T>{(const T*)a.in[k], a.ts[k], a.bs[k]};
}

template <typename T>
static T* thn_out(const thn_rec_args& a, int k) { return (T*)a.out[k]; }

/* scratch memory of a kernel (zeroed), freed on return */
struct thn_scratch {
    void* p;
    explicit thn_scratch(size_t bytes) : p(calloc(bytes ? bytes : 1, 1)) {}
    ~thn_scratch() { free(p); }
};

/* body(b0, b1, chunk) on chunks of the batch rows, one row block (8) or more each:
 * the sequences are independent, so each thread runs the whole time loop on its
 * rows, with no synchronization between steps (thn_parallel, parallel.c). */
template <class F>
static void thn_batch_parallel(const thn_rec_args& a, F body) {
    thn_parallel(a.batch, 8, a.threads, body);
}

/* ---- per-step products --------------------------------------------------------------
 * thn_panels holds a (K, N) matrix in panels of PW columns, panel q at
 * p + q K PW as K rows of PW values (zeros past column N). thn_panels_mul
 * multiplies blocks of rows by one panel at a time, the block's accumulators
 * (R rows x PW) in vector registers: a loop the compiler vectorizes for the CPU
 * it compiles for. One core, float32, 16 x 256 rows by 256 x 1024 weights, alone
 * in a loop: 32 us with AVX-512 (OpenBLAS, its SkylakeX kernels: 108 us), 77 us
 * with AVX2 only (OpenBLAS, Haswell kernels: 103 us). */
#ifdef __AVX512F__  /* accumulators: 8 x 2 of the 32 vector registers */
enum { THN_PANEL_BYTES = 128, THN_BLOCK_ROWS = 8 };
#else  /* 6 x 2 of the 16 of AVX2 (8 x 4 would spill to the stack: 85 us) */
enum { THN_PANEL_BYTES = 64, THN_BLOCK_ROWS = 6 };
#endif

template <typename T>
struct thn_panels {
    enum { PW = THN_PANEL_BYTES / sizeof(T) };
    int K, N;
    T* p;  /* thn_panels_size<T>(K, N) values, zeroed before packing */
};

template <typename T>
static size_t thn_panels_size(int K, int N) {
    const int PW = thn_panels<T>::PW;
    return (size_t)K * ((N + PW - 1) / PW) * PW;
}

/* w[row0 + k, col0 + j] = src[k, j] (or src[j, k] when trans) for k < rows, j < cols,
 * reading src row by row: a run of columns within a panel (or, with trans, a column) at once */
template <typename T>
static void thn_pack(thn_panels<T>& w, int row0, int col0, const T* src, npy_intp ld, int rows,
                     int cols, bool trans) {
    const int PW = thn_panels<T>::PW, step = trans ? PW : 1;  /* w's stride along a src row */
    for (int i = 0; i < (trans ? cols : rows); ++i)
        for (int e = 0, run; e < (trans ? rows : cols); e += run) {  /* element (k, c) of w */
            const int k = row0 + (trans ? e : i), c = col0 + (trans ? i : e);
            T* __restrict p = w.p + ((npy_intp)(c / PW) * w.K + k) * PW + c % PW;
            const T* __restrict s = src + i * ld + e;
            run = trans ? rows : PW - c % PW < cols - e ? PW - c % PW : cols - e;
#pragma omp simd
            for (int m = 0; m < run; ++m) p[m * step] = s[m];
        }
}

/* c[i, q PW + j] (+)= sum_k a[i, k] w[k, q PW + j] for i < R */
template <typename T, int R>
static void thn_panel_block(const thn_panels<T>& w, int q, const T* a, npy_intp lda, T* c,
                            npy_intp ldc, bool add) {
    enum { PW = thn_panels<T>::PW };
    T acc[R][PW];
    for (int i = 0; i < R; ++i)
#pragma omp simd
        for (int j = 0; j < PW; ++j) acc[i][j] = 0;
    const T* __restrict wq = w.p + (npy_intp)q * w.K * PW;
    for (int k = 0; k < w.K; ++k) {
        const T* __restrict wk = wq + (npy_intp)k * PW;
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const T ai = a[i * lda + k];
#pragma omp simd
            for (int j = 0; j < PW; ++j) acc[i][j] += ai * wk[j];
        }
    }
    const int cols = w.N - q * PW < PW ? w.N - q * PW : PW;
    for (int i = 0; i < R; ++i) {
        T* __restrict ci = c + i * ldc + (npy_intp)q * PW;
        if (cols == PW) {
#pragma omp simd
            for (int j = 0; j < PW; ++j) ci[j] = add ? ci[j] + acc[i][j] : acc[i][j];
        } else {
            for (int j = 0; j < cols; ++j) ci[j] = add ? ci[j] + acc[i][j] : acc[i][j];
        }
    }
}

/* c (rows, N; ld ldc) (+)= a (rows, K; ld lda) . w */
template <typename T>
static void thn_panels_mul(const thn_panels<T>& w, int rows, const T* a, npy_intp lda, T* c,
                           npy_intp ldc, bool add) {
    for (int q = 0; q * thn_panels<T>::PW < w.N; ++q) {
        int r = 0;
        for (; r + THN_BLOCK_ROWS <= rows; r += THN_BLOCK_ROWS)
            thn_panel_block<T, THN_BLOCK_ROWS>(w, q, a + r * lda, lda, c + r * ldc, ldc, add);
        for (; r + 4 <= rows; r += 4) thn_panel_block<T, 4>(w, q, a + r * lda, lda, c + r * ldc, ldc, add);
        for (; r + 2 <= rows; r += 2) thn_panel_block<T, 2>(w, q, a + r * lda, lda, c + r * ldc, ldc, add);
        for (; r < rows; ++r) thn_panel_block<T, 1>(w, q, a + r * lda, lda, c + r * ldc, ldc, add);
    }
}

/* x_t of the rows b0..b1 of a step: the op's input, or x_t . w + b computed into a
 * (B, g) buffer when the op projects (rows in cache, no (T, B, g) array in memory). */
template <typename T>
struct thn_xin {
    thn_rows<T> x;
    thn_panels<T> w;  /* w.p NULL: no projection */
    const T* bias;
    thn_scratch s;
    bool ready;  /* false: no memory for the projection */
    thn_xin(const thn_rec_args& a, int k)
        : x(thn_in<T>(a, k)), w{a.m, a.g, NULL}, bias((const T*)a.in[a.proj + 1]),
          s(a.proj ? sizeof(T) * (thn_panels_size<T>(a.m, a.g) + (size_t)a.batch * a.g) : 0),
          ready(!a.proj || s.p) {
        w.p = a.proj ? (T*)s.p : NULL;
        if (w.p) thn_pack(w, 0, 0, (const T*)a.in[a.proj], a.g, a.m, a.g, false);
    }
    thn_rows<T> step(npy_intp t, int b0, int b1) const {
        if (!w.p) return x;
        T* out = w.p + thn_panels_size<T>(w.K, w.N);
        for (int b = b0; b < b1; ++b) memcpy(out + (npy_intp)b * w.N, bias, w.N * sizeof(T));
        thn_panels_mul(w, b1 - b0, x(t, b0), x.bs, out + (npy_intp)b0 * w.N, w.N, true);
        return thn_rows<T>{out, 0, w.N};
    }
};

/* ---- activations -------------------------------------------------------------- */

template <int ACT, typename T>
THN_INLINE T thn_act(T x) {
    if (ACT == THN_RELU) return x > 0 ? x : (T)0;
    if (ACT == THN_TANH) return thn_tanh(x);
    if (ACT == THN_LOGISTIC) return thn_sigmoid(x);
    return x;
}

/* derivative, from the argument and the value */
template <int ACT, typename T>
THN_INLINE T thn_dact(T pre, T out) {
    if (ACT == THN_RELU) return pre > 0 ? (T)1 : (T)0;
    if (ACT == THN_TANH) return (T)1 - out * out;
    if (ACT == THN_LOGISTIC) return out * ((T)1 - out);
    return (T)1;
}

/* pre[b, j] += x[t, b, j]; out[b, j] = act(pre[b, j]) for rows b0 <= b < b1 (ld n) */
template <int ACT, typename T>
static void thn_act_rows(int b0, int b1, int n, thn_rows<T> x, npy_intp t, T* pre, T* out) {
    for (int b = b0; b < b1; ++b) {
        const T* __restrict xr = x(t, b);
        T* __restrict p = pre + (npy_intp)b * n;
        T* __restrict o = out + (npy_intp)b * n;
#pragma omp simd
        for (int j = 0; j < n; ++j) {
            const T v = p[j] + xr[j];
            p[j] = v;
            o[j] = thn_act<ACT>(v);
        }
    }
}

/* d[b, j] = e[b, j] act'(pre, out) + g[t, b, j] for rows b0 <= b < b1 (d: ld ldd), where
 * e = carry + gh[t] (the gradient arriving at the state) or, without carry, d itself */
template <int ACT, typename T>
static void thn_dact_rows(int b0, int b1, int n, const T* carry, thn_rows<T> gh, const T* pre,
                          const T* out, thn_rows<T> g, npy_intp t, T* d, int ldd) {
    for (int b = b0; b < b1; ++b) {
        const T* __restrict p = pre + (npy_intp)b * n;
        const T* __restrict o = out + (npy_intp)b * n;
        const T *__restrict gr = g(t, b), *__restrict ghr = gh(t, b);
        const T* __restrict c = carry ? carry + (npy_intp)b * n : NULL;
        T* __restrict dr = d + (npy_intp)b * ldd;
        if (c) {
#pragma omp simd
            for (int j = 0; j < n; ++j) dr[j] = (c[j] + ghr[j]) * thn_dact<ACT>(p[j], o[j]) + gr[j];
        } else {
#pragma omp simd
            for (int j = 0; j < n; ++j) dr[j] = dr[j] * thn_dact<ACT>(p[j], o[j]) + gr[j];
        }
    }
}

/* fn<ACT> args for the run-time activation code `act` */
#define THN_ACT_SWITCH(act, fn, args)                    \
    switch (act) {                                       \
        case THN_RELU: fn<THN_RELU> args; break;         \
        case THN_TANH: fn<THN_TANH> args; break;         \
        case THN_LOGISTIC: fn<THN_LOGISTIC> args; break; \
        default: fn<THN_LINEAR> args; break;             \
    }

/* ---- states and weight gradients -------------------------------------------------- */

/* A (B, n) state as a contiguous matrix: the input's rows, or a copy of its one
 * row for every batch row. `scratch` has room for B * n values. */
template <typename T>
static const T* thn_state(const thn_rec_args& a, int k, T* scratch) {
    if (a.bs[k] == a.n) return (const T*)a.in[k];
    for (int b = 0; b < a.batch; ++b) memcpy(scratch + (npy_intp)b * a.n, a.in[k], a.n * sizeof(T));
    return scratch;
}

/* The gradient of an initial state (B, n) or (1, n) from the running gradient
 * `carry` (B, n): zero unless the backward loop covered every step. */
template <typename T>
static void thn_state_grad(const thn_rec_args& a, int k, const T* carry, T* out) {
    const int n = a.n;
    const bool full = a.window >= a.steps;
    if (a.bs[k] == n) {
        if (full) memcpy(out, carry, sizeof(T) * a.batch * n);
        else memset(out, 0, sizeof(T) * a.batch * n);
        return;
    }
    memset(out, 0, sizeof(T) * n);
    for (int b = 0; full && b < a.batch; ++b)
#pragma omp simd
        for (int j = 0; j < n; ++j) out[j] += carry[(npy_intp)b * n + j];
}

/* dw (rows, cols; ld ldw) = sum over the window of l_t^T g_t, where l_t and g_t
 * hold B rows (ld ldl, ldg) at l + t B ldl and g + t B ldg: BLAS products,
 * split among the threads by rows of dw. */
template <typename T>
static void thn_window_grad(const thn_rec_args& a, const T* l, int ldl, const T* g, int ldg,
                            int rows, int cols, T* dw, int ldw) {
    const npy_intp first = a.steps - a.window, B = a.batch;
    thn_parallel(rows, 8, a.threads, [&](int r0, int r1, int) {
        if (a.window > 0 && B > 0)
            thn_gemm(true, false, r1 - r0, cols, (int)(a.window * B), (T)1, l + first * B * ldl + r0,
                     ldl, g + first * B * ldg, ldg, (T)0, dw + (npy_intp)r0 * ldw, ldw);
        else
            for (int i = r0; i < r1; ++i) memset(dw + (npy_intp)i * ldw, 0, cols * sizeof(T));
    });
}

/* The same with l_t = h_{t-1}, h_{-1} = h0 (B, n). */
template <typename T>
static void thn_hprev_grad(const thn_rec_args& a, const T* h0, const T* h, const T* g, int ldg,
                           int cols, T* dw, int ldw) {
    const int n = a.n;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_rec_args rest = a;  /* the steps after the first, with h_{t-1} = h[t - 1] */
    rest.window = a.window < a.steps ? a.window : a.steps - 1;
    thn_window_grad<T>(rest, h - Bn, n, g, ldg, n, cols, dw, ldw);
    if (a.window >= a.steps && a.steps > 0)
        thn_gemm(true, false, n, cols, a.batch, (T)1, h0, n, g, ldg, (T)1, dw, ldw);
}

/* ---- RNN: pre_t = x_t + h_{t-1} . hh, h_t = act(pre_t) ------------------------------ */
enum { RNN_X, RNN_HH, RNN_H0 };
enum { RNN_H, RNN_PRE };
enum { RNNB_HH, RNNB_H0, RNNB_H, RNNB_PRE, RNNB_GH, RNNB_GPRE };
enum { RNNB_DX, RNNB_DHH, RNNB_DH0 };

template <typename T>
static int thn_rnn_forward(const thn_rec_args& a) {
    const int n = a.n;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_scratch s(sizeof(T) * (Bn + thn_panels_size<T>(n, n)));
    const thn_xin<T> xin(a, RNN_X);
    if (!s.p || !xin.ready) return -1;
    const T* h0 = thn_state<T>(a, RNN_H0, (T*)s.p);
    thn_panels<T> hh = {n, n, (T*)s.p + Bn};
    thn_pack(hh, 0, 0, (const T*)a.in[RNN_HH], n, n, n, false);
    T *h = thn_out<T>(a, RNN_H), *pre = thn_out<T>(a, RNN_PRE);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = 0; t < a.steps; ++t) {
            const thn_rows<T> x = xin.step(t, b0, b1);
            const T* hp = t ? h + (t - 1) * Bn : h0;
            thn_panels_mul(hh, b1 - b0, hp + b0 * n, n, pre + t * Bn + b0 * n, n, false);
            THN_ACT_SWITCH(a.act, thn_act_rows, (b0, b1, n, x, t, pre + t * Bn, h + t * Bn))
        }
    });
    return 0;
}

template <typename T>
static int thn_rnn_backward(const thn_rec_args& a) {
    const int n = a.n;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_scratch s(sizeof(T) * (2 * Bn + thn_panels_size<T>(n, n)));
    if (!s.p) return -1;
    T* carry = (T*)s.p;  /* gradient arriving at h_t from step t + 1 */
    const T* h0 = thn_state<T>(a, RNNB_H0, carry + Bn);
    thn_panels<T> hhT = {n, n, carry + 2 * Bn};
    thn_pack(hhT, 0, 0, (const T*)a.in[RNNB_HH], n, n, n, true);
    const T *h = (const T*)a.in[RNNB_H], *pre = (const T*)a.in[RNNB_PRE];
    const thn_rows<T> gh = thn_in<T>(a, RNNB_GH), gpre = thn_in<T>(a, RNNB_GPRE);
    T* dx = thn_out<T>(a, RNNB_DX);
    const int first = a.steps - a.window;
    memset(dx, 0, sizeof(T) * Bn * first);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = a.steps - 1; t >= first; --t) {
            T* d = dx + t * Bn;
            THN_ACT_SWITCH(a.act, thn_dact_rows,
                           (b0, b1, n, carry, gh, pre + t * Bn, h + t * Bn, gpre, t, d, n))
            thn_panels_mul(hhT, b1 - b0, d + b0 * n, n, carry + b0 * n, n, false);
        }
    });
    thn_hprev_grad<T>(a, h0, h, dx, n, n, thn_out<T>(a, RNNB_DHH), n);
    thn_state_grad<T>(a, RNNB_H0, carry, thn_out<T>(a, RNNB_DH0));
    return 0;
}

/* ---- gated cells: GRU, MUT1 and RRNN (equations: ops/recurrent.py) ------------------
 * RESET: a reset gate r, else r = 1; GIVEN: the rate z is the input `rate`, else a gate.
 * x_t has the blocks [candidate, reset (RESET), rate (not GIVEN)]; with RESET
 * the cache holds [r, r * h_{t-1}] of each step. */
enum { GATE_X, GATE_RATE, GATE_HH, GATE_HR, GATE_HZ, GATE_H0 };
enum { GATE_H, GATE_PRE, GATE_HID, GATE_Z, GATE_CACHE };
enum { GATEB_RATE, GATEB_HH, GATEB_HR, GATEB_HZ, GATEB_H0, GATEB_H, GATEB_PRE, GATEB_HID,
       GATEB_Z, GATEB_CACHE, GATEB_GH, GATEB_GPRE, GATEB_GHID, GATEB_GZ };
enum { GATEB_DX, GATEB_DRATE, GATEB_DHH, GATEB_DHR, GATEB_DHZ, GATEB_DH0 };

/* hh, and the recurrent gate weights present side by side ([hr | hz], [hr] or none),
 * packed for h . w (or, with trans, for d . w^T); returns the gate blocks k */
template <typename T>
static int thn_gate_panels(const thn_rec_args& a, int hh, int hr, int hz, bool trans, T* buffer,
                           thn_panels<T>* whh, thn_panels<T>* wg) {
    const int n = a.n, k = (a.in[hr] != NULL) + (a.in[hz] != NULL), mats[2] = {hr, hz};
    *whh = thn_panels<T>{n, n, buffer};
    thn_pack(*whh, 0, 0, (const T*)a.in[hh], n, n, n, trans);
    *wg = trans ? thn_panels<T>{k * n, n, buffer + thn_panels_size<T>(n, n)}
                : thn_panels<T>{n, k * n, buffer + thn_panels_size<T>(n, n)};
    for (int m = 0, at = 0; m < 2; ++m)
        if (a.in[mats[m]]) {
            thn_pack(*wg, trans ? at : 0, trans ? 0 : at, (const T*)a.in[mats[m]], n, n, n, trans);
            at += n;
        }
    return k;
}

template <typename T>
static size_t thn_gate_panels_size(int n) {
    return thn_panels_size<T>(n, n) + 2 * thn_panels_size<T>(2 * n, n);
}

template <typename T, bool RESET, bool GIVEN>
static int thn_gated_forward(const thn_rec_args& a) {
    const int n = a.n;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_scratch s(sizeof(T) * (3 * Bn + thn_gate_panels_size<T>(n)));
    const thn_xin<T> xin(a, GATE_X);
    if (!s.p || !xin.ready) return -1;
    T* rz = (T*)s.p;  /* h_{t-1} . [hr | hz] (B, k n) */
    const T* h0 = thn_state<T>(a, GATE_H0, rz + 2 * Bn);
    thn_panels<T> hh, wg;
    const int k = thn_gate_panels<T>(a, GATE_HH, GATE_HR, GATE_HZ, false, rz + 3 * Bn, &hh, &wg);
    const thn_rows<T> given = thn_in<T>(a, GATE_RATE);
    T *h = thn_out<T>(a, GATE_H), *pre = thn_out<T>(a, GATE_PRE), *hid = thn_out<T>(a, GATE_HID);
    T *rate = thn_out<T>(a, GATE_Z), *cache = thn_out<T>(a, GATE_CACHE);
    const int zx = RESET ? 2 * n : n, zw = RESET ? n : 0;  /* offsets of the rate block */
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = 0; t < a.steps; ++t) {
            const thn_rows<T> x = xin.step(t, b0, b1);
            const npy_intp o = t * Bn;
            const T* hp = t ? h + o - Bn : h0;
            T* c = RESET ? cache + (a.keep ? 2 * o : 0) : NULL;
            if (k) thn_panels_mul(wg, b1 - b0, hp + b0 * n, n, rz + b0 * k * n, k * n, false);
            for (int b = b0; b < b1; ++b) {
                const T *__restrict xr = x(t, b), *__restrict g = rz + (npy_intp)b * k * n;
                const T* __restrict hb = hp + (npy_intp)b * n;
                T* __restrict cb = RESET ? c + 2 * (npy_intp)b * n : NULL;
                T* __restrict zb = GIVEN ? NULL : rate + o + (npy_intp)b * n;
#pragma omp simd
                for (int j = 0; j < n; ++j) {
                    if (RESET) {
                        const T r = thn_sigmoid(xr[n + j] + g[j]);
                        cb[j] = r;
                        cb[n + j] = r * hb[j];
                    }
                    if (!GIVEN) zb[j] = thn_sigmoid(xr[zx + j] + g[zw + j]);
                }
            }
            const T* rh = RESET ? c + n + 2 * (npy_intp)b0 * n : hp + (npy_intp)b0 * n;
            thn_panels_mul(hh, b1 - b0, rh, RESET ? 2 * n : n, pre + o + b0 * n, n, false);
            THN_ACT_SWITCH(a.act, thn_act_rows, (b0, b1, n, x, t, pre + o, hid + o))
            for (int b = b0; b < b1; ++b) {
                const npy_intp r = o + (npy_intp)b * n;
                const T* __restrict zb = GIVEN ? given(t, b) : rate + r;
                const T *__restrict ab = hid + r, *__restrict hb = hp + (npy_intp)b * n;
                T* __restrict out = h + r;
#pragma omp simd
                for (int j = 0; j < n; ++j) out[j] = hb[j] + zb[j] * (ab[j] - hb[j]);
            }
        }
    });
    return 0;
}

template <typename T, bool RESET, bool GIVEN>
static int thn_gated_backward(const thn_rec_args& a) {
    const npy_intp Bn = (npy_intp)a.batch * a.n;
    thn_scratch s(sizeof(T) * (3 * Bn + thn_gate_panels_size<T>(a.n)));
    if (!s.p) return -1;
    const int n = a.n;
    T* carry = (T*)s.p;   /* gradient arriving at h_t from step t + 1 */
    T* drh = carry + Bn;  /* gradient of r * h_{t-1} */
    const T* h0 = thn_state<T>(a, GATEB_H0, drh + Bn);
    thn_panels<T> hhT, wgT;
    const int k = thn_gate_panels<T>(a, GATEB_HH, GATEB_HR, GATEB_HZ, true, drh + 2 * Bn, &hhT, &wgT);
    const int G = (1 + k) * n, zd = RESET ? 2 * n : n;  /* dx: [d pre, d reset, d rate] */
    const T *h = (const T*)a.in[GATEB_H], *pre = (const T*)a.in[GATEB_PRE];
    const T *hid = (const T*)a.in[GATEB_HID], *cache = (const T*)a.in[GATEB_CACHE];
    const thn_rows<T> z = thn_in<T>(a, GIVEN ? GATEB_RATE : GATEB_Z);
    const thn_rows<T> gh = thn_in<T>(a, GATEB_GH), gpre = thn_in<T>(a, GATEB_GPRE);
    const thn_rows<T> ghid = thn_in<T>(a, GATEB_GHID), gz = thn_in<T>(a, GATEB_GZ);
    T *dx = thn_out<T>(a, GATEB_DX), *drate = thn_out<T>(a, GATEB_DRATE);
    const int first = a.steps - a.window;
    memset(dx, 0, sizeof(T) * G * a.batch * first);
    if (GIVEN) memset(drate, 0, sizeof(T) * Bn * first);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = a.steps - 1; t >= first; --t) {
            const npy_intp o = t * Bn;
            const T* hp = t ? h + o - Bn : h0;
            T* d = dx + t * a.batch * G;
            for (int b = b0; b < b1; ++b) {
                const npy_intp r = o + (npy_intp)b * n;
                const T *__restrict zb = z(t, b), *__restrict hb = hp + (npy_intp)b * n;
                const T *__restrict ab = hid + r, *__restrict g = gh(t, b);
                const T *__restrict ga = ghid(t, b), *__restrict gzb = GIVEN ? NULL : gz(t, b);
                T* __restrict c = carry + (npy_intp)b * n;
                T* __restrict db = d + (npy_intp)b * G;
                T* __restrict dzb = GIVEN ? drate + r : db + zd;
#pragma omp simd
                for (int j = 0; j < n; ++j) {
                    const T dh = c[j] + g[j];
                    const T dz = dh * (ab[j] - hb[j]) + (GIVEN ? (T)0 : gzb[j]);
                    db[j] = dh * zb[j] + ga[j];
                    dzb[j] = GIVEN ? dz : dz * zb[j] * ((T)1 - zb[j]);
                    c[j] = dh * ((T)1 - zb[j]);
                }
            }
            THN_ACT_SWITCH(a.act, thn_dact_rows,
                           (b0, b1, n, (const T*)NULL, gpre, pre + o, hid + o, gpre, t, d, G))
            thn_panels_mul(hhT, b1 - b0, d + b0 * G, G, drh + b0 * n, n, false);
            for (int b = b0; b < b1; ++b) {
                const T* __restrict rb = RESET ? cache + 2 * (o + (npy_intp)b * n) : NULL;
                const T *__restrict hb = hp + (npy_intp)b * n, *__restrict e = drh + (npy_intp)b * n;
                T* __restrict c = carry + (npy_intp)b * n;
                T* __restrict db = d + (npy_intp)b * G;
#pragma omp simd
                for (int j = 0; j < n; ++j) {
                    if (RESET) db[n + j] = e[j] * hb[j] * rb[j] * ((T)1 - rb[j]);
                    c[j] += RESET ? e[j] * rb[j] : e[j];
                }
            }
            if (k) thn_panels_mul(wgT, b1 - b0, d + b0 * G + n, G, carry + b0 * n, n, true);
        }
    });
    /* d hh = sum_t (r * h_{t-1})^T d pre_t over the window; d hr, d hz likewise */
    if (RESET) {
        thn_window_grad<T>(a, cache + n, 2 * n, dx, G, n, n, thn_out<T>(a, GATEB_DHH), n);
        thn_hprev_grad<T>(a, h0, h, dx + n, G, n, thn_out<T>(a, GATEB_DHR), n);
    } else {
        thn_hprev_grad<T>(a, h0, h, dx, G, n, thn_out<T>(a, GATEB_DHH), n);
    }
    if (!GIVEN) thn_hprev_grad<T>(a, h0, h, dx + zd, G, n, thn_out<T>(a, GATEB_DHZ), n);
    thn_state_grad<T>(a, GATEB_H0, carry, thn_out<T>(a, GATEB_DH0));
    return 0;
}

/* ---- LSTM (peepholes ci, cf, co) -----------------------------------------------------
 * x_t, hh and the cache have the blocks [input, forget, cell, output]; the cache
 * holds the gate values [i, f, u = tanh(cell input), o] of each step. */
enum { LSTM_X, LSTM_HH, LSTM_CI, LSTM_CF, LSTM_CO, LSTM_H0, LSTM_C0 };
enum { LSTM_H, LSTM_C, LSTM_CACHE };
enum { LSTMB_HH, LSTMB_CI, LSTMB_CF, LSTMB_CO, LSTMB_H0, LSTMB_C0, LSTMB_H, LSTMB_C, LSTMB_CACHE,
       LSTMB_GH, LSTMB_GC };
enum { LSTMB_DX, LSTMB_DHH, LSTMB_DCI, LSTMB_DCF, LSTMB_DCO, LSTMB_DH0, LSTMB_DC0 };

template <typename T>
static int thn_lstm_forward(const thn_rec_args& a) {
    const int n = a.n, G = 4 * n;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_scratch s(sizeof(T) * (2 * Bn + thn_panels_size<T>(n, G)));
    const thn_xin<T> xin(a, LSTM_X);
    if (!s.p || !xin.ready) return -1;
    const T* h0 = thn_state<T>(a, LSTM_H0, (T*)s.p);
    const T* c0 = thn_state<T>(a, LSTM_C0, (T*)s.p + Bn);
    thn_panels<T> hh = {n, G, (T*)s.p + 2 * Bn};
    thn_pack(hh, 0, 0, (const T*)a.in[LSTM_HH], G, n, G, false);
    const T *ci = (const T*)a.in[LSTM_CI], *cf = (const T*)a.in[LSTM_CF];
    const T* co = (const T*)a.in[LSTM_CO];
    T *h = thn_out<T>(a, LSTM_H), *c = thn_out<T>(a, LSTM_C), *cache = thn_out<T>(a, LSTM_CACHE);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = 0; t < a.steps; ++t) {
            const thn_rows<T> x = xin.step(t, b0, b1);
            const npy_intp o = t * Bn;
            const T *hp = t ? h + o - Bn : h0, *cp = t ? c + o - Bn : c0;
            T* g = cache + (a.keep ? 4 * o : 0);
            thn_panels_mul(hh, b1 - b0, hp + b0 * n, n, g + b0 * G, G, false);
            for (int b = b0; b < b1; ++b) {
                const T *__restrict xr = x(t, b), *__restrict cpb = cp + (npy_intp)b * n;
                T* __restrict gb = g + (npy_intp)b * G;
                T *__restrict cb = c + o + (npy_intp)b * n, *__restrict hb = h + o + (npy_intp)b * n;
#pragma omp simd
                for (int j = 0; j < n; ++j) {  /* two passes: shorter chains, fewer registers */
                    const T i = thn_sigmoid(gb[j] + xr[j] + cpb[j] * ci[j]);
                    const T f = thn_sigmoid(gb[n + j] + xr[n + j] + cpb[j] * cf[j]);
                    const T u = thn_tanh(gb[2 * n + j] + xr[2 * n + j]);
                    gb[j] = i;
                    gb[n + j] = f;
                    gb[2 * n + j] = u;
                    cb[j] = f * cpb[j] + i * u;
                }
#pragma omp simd
                for (int j = 0; j < n; ++j) {
                    const T og = thn_sigmoid(gb[3 * n + j] + xr[3 * n + j] + cb[j] * co[j]);
                    gb[3 * n + j] = og;
                    hb[j] = og * thn_tanh(cb[j]);
                }
            }
        }
    });
    return 0;
}

template <typename T>
static int thn_lstm_backward(const thn_rec_args& a) {
    const int n = a.n, G = 4 * n, chunks = a.threads > 1 ? a.threads : 1;
    const npy_intp Bn = (npy_intp)a.batch * n;
    thn_scratch s(sizeof(T) * (4 * Bn + 3 * n * chunks + thn_panels_size<T>(G, n)));
    if (!s.p) return -1;
    T* dh_carry = (T*)s.p;  /* gradients arriving at h_t and c_t from step t + 1 */
    T* dc_carry = dh_carry + Bn;
    const T* h0 = thn_state<T>(a, LSTMB_H0, dc_carry + Bn);
    const T* c0 = thn_state<T>(a, LSTMB_C0, dc_carry + 2 * Bn);
    T* peep = dc_carry + 3 * Bn;  /* each chunk's sums for d ci, d cf, d co */
    thn_panels<T> hhT = {G, n, peep + 3 * n * chunks};
    thn_pack(hhT, 0, 0, (const T*)a.in[LSTMB_HH], G, G, n, true);
    const T *ci = (const T*)a.in[LSTMB_CI], *cf = (const T*)a.in[LSTMB_CF];
    const T *co = (const T*)a.in[LSTMB_CO], *h = (const T*)a.in[LSTMB_H];
    const T *c = (const T*)a.in[LSTMB_C], *cache = (const T*)a.in[LSTMB_CACHE];
    const thn_rows<T> gh = thn_in<T>(a, LSTMB_GH), gc = thn_in<T>(a, LSTMB_GC);
    T* dx = thn_out<T>(a, LSTMB_DX);
    const int first = a.steps - a.window;
    memset(dx, 0, sizeof(T) * 4 * Bn * first);
    thn_batch_parallel(a, [&](int b0, int b1, int chunk) {
        T *dci = peep + 3 * n * chunk, *dcf = dci + n, *dco = dcf + n;
        for (npy_intp t = a.steps - 1; t >= first; --t) {
            const npy_intp o = t * Bn;
            const T* cp = t ? c + o - Bn : c0;
            for (int b = b0; b < b1; ++b) {
                const npy_intp r = (npy_intp)b * n;
                const T *__restrict gb = cache + 4 * (o + r), *__restrict cpb = cp + r;
                const T *__restrict cb = c + o + r, *__restrict ghb = gh(t, b), *__restrict gcb = gc(t, b);
                T *__restrict dhc = dh_carry + r, *__restrict dcc = dc_carry + r;
                T* __restrict db = dx + 4 * (o + r);
#pragma omp simd
                for (int j = 0; j < n; ++j) {
                    const T i = gb[j], f = gb[n + j], u = gb[2 * n + j], og = gb[3 * n + j];
                    const T dh = dhc[j] + ghb[j], tc = thn_tanh(cb[j]);
                    const T dgo = dh * tc * og * ((T)1 - og);
                    const T dc = dcc[j] + gcb[j] + dh * og * ((T)1 - tc * tc) + dgo * co[j];
                    const T dgi = dc * u * i * ((T)1 - i);
                    const T dgf = dc * cpb[j] * f * ((T)1 - f);
                    dcc[j] = dc * f + dgi * ci[j] + dgf * cf[j];
                    dci[j] += dgi * cpb[j];
                    dcf[j] += dgf * cpb[j];
                    dco[j] += dgo * cb[j];
                    db[j] = dgi;
                    db[n + j] = dgf;
                    db[2 * n + j] = dc * i * ((T)1 - u * u);
                    db[3 * n + j] = dgo;
                }
            }
            thn_panels_mul(hhT, b1 - b0, dx + 4 * o + b0 * G, G, dh_carry + b0 * n, n, false);
        }
    });
    for (int p = 0; p < 3; ++p) {  /* d ci, d cf, d co: the chunks' sums */
        T* out = thn_out<T>(a, LSTMB_DCI + p);
        memset(out, 0, sizeof(T) * n);
        for (int k = 0; k < chunks; ++k)
            for (int j = 0; j < n; ++j) out[j] += peep[3 * n * k + p * n + j];
    }
    thn_hprev_grad<T>(a, h0, h, dx, G, G, thn_out<T>(a, LSTMB_DHH), G);
    thn_state_grad<T>(a, LSTMB_H0, dh_carry, thn_out<T>(a, LSTMB_DH0));
    thn_state_grad<T>(a, LSTMB_C0, dc_carry, thn_out<T>(a, LSTMB_DC0));
    return 0;
}

/* ---- MRNN: f_t = xf_t * (h_{t-1} . hf), pre_t = x_t + f_t . fh, h_t = act(pre_t) ----------
 * F factors; the cache holds q_t = h_{t-1} . hf. */
enum { MRNN_X, MRNN_XF, MRNN_HF, MRNN_FH, MRNN_H0 };
enum { MRNN_H, MRNN_PRE, MRNN_FAC, MRNN_CACHE };
enum { MRNNB_XF, MRNNB_HF, MRNNB_FH, MRNNB_H0, MRNNB_H, MRNNB_PRE, MRNNB_FAC, MRNNB_CACHE,
       MRNNB_GH, MRNNB_GPRE, MRNNB_GFAC };
enum { MRNNB_DX, MRNNB_DXF, MRNNB_DHF, MRNNB_DFH, MRNNB_DH0 };

/* hf and fh packed for h . hf and f . fh (or, with trans, for d . fh^T and e . hf^T) */
template <typename T>
static void thn_mrnn_panels(const thn_rec_args& a, int hf, int fh, bool trans, T* buffer,
                            thn_panels<T>* whf, thn_panels<T>* wfh) {
    const int n = a.n, F = a.factors;
    *whf = trans ? thn_panels<T>{F, n, buffer} : thn_panels<T>{n, F, buffer};
    *wfh = trans ? thn_panels<T>{n, F, buffer + thn_panels_size<T>(F, n)}
                 : thn_panels<T>{F, n, buffer + thn_panels_size<T>(n, F)};
    thn_pack(*whf, 0, 0, (const T*)a.in[hf], F, trans ? F : n, trans ? n : F, trans);
    thn_pack(*wfh, 0, 0, (const T*)a.in[fh], n, trans ? n : F, trans ? F : n, trans);
}

template <typename T>
static size_t thn_mrnn_panels_size(int n, int F) {
    return thn_panels_size<T>(F, n) + thn_panels_size<T>(n, F);
}

template <typename T>
static int thn_mrnn_forward(const thn_rec_args& a) {
    const int n = a.n, F = a.factors;
    const npy_intp Bn = (npy_intp)a.batch * n, BF = (npy_intp)a.batch * F;
    thn_scratch s(sizeof(T) * (Bn + thn_mrnn_panels_size<T>(n, F)));
    const thn_xin<T> xin(a, MRNN_X);
    if (!s.p || !xin.ready) return -1;
    const T* h0 = thn_state<T>(a, MRNN_H0, (T*)s.p);
    thn_panels<T> hf, fh;
    thn_mrnn_panels<T>(a, MRNN_HF, MRNN_FH, false, (T*)s.p + Bn, &hf, &fh);
    const thn_rows<T> xf = thn_in<T>(a, MRNN_XF);
    T *h = thn_out<T>(a, MRNN_H), *pre = thn_out<T>(a, MRNN_PRE), *fac = thn_out<T>(a, MRNN_FAC);
    T* cache = thn_out<T>(a, MRNN_CACHE);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = 0; t < a.steps; ++t) {
            const thn_rows<T> x = xin.step(t, b0, b1);
            T *q = cache + (a.keep ? t * BF : 0), *f = fac + t * BF;
            const T* hp = t ? h + (t - 1) * Bn : h0;
            thn_panels_mul(hf, b1 - b0, hp + b0 * n, n, q + b0 * F, F, false);
            for (int b = b0; b < b1; ++b) {
                const T *__restrict xr = xf(t, b), *__restrict qb = q + (npy_intp)b * F;
                T* __restrict fb = f + (npy_intp)b * F;
#pragma omp simd
                for (int j = 0; j < F; ++j) fb[j] = xr[j] * qb[j];
            }
            thn_panels_mul(fh, b1 - b0, f + b0 * F, F, pre + t * Bn + b0 * n, n, false);
            THN_ACT_SWITCH(a.act, thn_act_rows, (b0, b1, n, x, t, pre + t * Bn, h + t * Bn))
        }
    });
    return 0;
}

template <typename T>
static int thn_mrnn_backward(const thn_rec_args& a) {
    const int n = a.n, F = a.factors;
    const npy_intp Bn = (npy_intp)a.batch * n, BF = (npy_intp)a.batch * F;
    thn_scratch s(sizeof(T) * (2 * Bn + BF * a.steps + thn_mrnn_panels_size<T>(n, F)));
    if (!s.p) return -1;
    T* carry = (T*)s.p;
    const T* h0 = thn_state<T>(a, MRNNB_H0, carry + Bn);
    T* dq = carry + 2 * Bn;  /* gradients of q_t, every step */
    thn_panels<T> hfT, fhT;
    thn_mrnn_panels<T>(a, MRNNB_HF, MRNNB_FH, true, dq + BF * a.steps, &hfT, &fhT);
    const T *h = (const T*)a.in[MRNNB_H], *pre = (const T*)a.in[MRNNB_PRE];
    const T *fac = (const T*)a.in[MRNNB_FAC], *cache = (const T*)a.in[MRNNB_CACHE];
    const thn_rows<T> xf = thn_in<T>(a, MRNNB_XF), gh = thn_in<T>(a, MRNNB_GH);
    const thn_rows<T> gpre = thn_in<T>(a, MRNNB_GPRE), gfac = thn_in<T>(a, MRNNB_GFAC);
    T *dx = thn_out<T>(a, MRNNB_DX), *dxf = thn_out<T>(a, MRNNB_DXF);
    const int first = a.steps - a.window;
    memset(dx, 0, sizeof(T) * Bn * first);
    memset(dxf, 0, sizeof(T) * BF * first);
    thn_batch_parallel(a, [&](int b0, int b1, int) {
        for (npy_intp t = a.steps - 1; t >= first; --t) {
            T *d = dx + t * Bn, *e = dq + t * BF;
            THN_ACT_SWITCH(a.act, thn_dact_rows,
                           (b0, b1, n, carry, gh, pre + t * Bn, h + t * Bn, gpre, t, d, n))
            thn_panels_mul(fhT, b1 - b0, d + b0 * n, n, e + b0 * F, F, false);
            for (int b = b0; b < b1; ++b) {
                const T *__restrict g = gfac(t, b), *__restrict xr = xf(t, b);
                const T* __restrict qb = cache + t * BF + (npy_intp)b * F;
                T *__restrict eb = e + (npy_intp)b * F, *__restrict db = dxf + t * BF + (npy_intp)b * F;
#pragma omp simd
                for (int j = 0; j < F; ++j) {
                    const T df = eb[j] + g[j];
                    db[j] = df * qb[j];
                    eb[j] = df * xr[j];
                }
            }
            thn_panels_mul(hfT, b1 - b0, e + b0 * F, F, carry + b0 * n, n, false);
        }
    });
    thn_window_grad<T>(a, fac, F, dx, n, F, n, thn_out<T>(a, MRNNB_DFH), n);
    thn_hprev_grad<T>(a, h0, h, dq, F, F, thn_out<T>(a, MRNNB_DHF), F);
    thn_state_grad<T>(a, MRNNB_H0, carry, thn_out<T>(a, MRNNB_DH0));
    return 0;
}

/* ---- entry point ------------------------------------------------------------------------
 * ops/recurrent.py describes each array of an op with a thn_layout, made from the
 * op's layout string (e.g. "~xproj:T,B,4n hh:n,4n h0:b,n"), and says which input
 * axes give the sizes T, B, F, n and M. thn_recurrent checks the inputs, makes the
 * outputs and runs the kernel. */

enum { THN_T = -1, THN_B = -2, THN_B1 = -3, THN_F = -4, THN_K = -5, THN_M = -6 };  /* k > 0: k n */

struct thn_layout {
    const char* name;
    int nd;         /* axes; 0: a slot without array (NULL in the kernel's arguments) */
    bool strided;   /* read through strides (else a C-contiguous copy if need be) */
    bool optional;  /* an empty array stands for "no gradient": zeros */
    int like;       /* output: shaped like input `like`; else -1 */
    int dims[3];    /* THN_T...; THN_B1: B or 1 (one row for the whole batch); K: T or 1 */
};

struct thn_sizes {
    npy_intp T, B, F, n, M, K;
    npy_intp operator()(int d) const {
        return d == THN_T ? T : d == THN_B || d == THN_B1 ? B : d == THN_F ? F
               : d == THN_K ? K : d == THN_M ? M : d * n;
    }
};

/* 0 if x has the shape layout e asks for, else -1 with "expected (4, 5) or (1, 5)" */
static int thn_check(const char* op, const thn_layout& e, const thn_sizes& s, PyArrayObject* x) {
    npy_intp want[3], one[3];
    bool fits = PyArray_NDIM(x) == e.nd, shared = false;
    for (int k = 0; k < e.nd; ++k) {
        want[k] = one[k] = s(e.dims[k]);
        if (e.dims[k] == THN_B1) one[k] = 1, shared = true;
        fits = fits && (PyArray_DIMS(x)[k] == want[k] || PyArray_DIMS(x)[k] == one[k]);
    }
    if (fits) return 0;
    char text[128];
    thn_format_shape(text, sizeof text, e.nd, want);
    if (shared) {
        size_t used = strlen(text);
        used += snprintf(text + used, sizeof text - used, " or ");
        thn_format_shape(text + used, sizeof text - used, e.nd, one);
    }
    return thn_shape_error(op, e.name, x, text);
}

/* A reference to `x` or to a copy of it that the kernels can read: aligned, native
 * byte order, rows of unit stride, and C-contiguous unless `strided`. */
static PyArrayObject* thn_readable(PyArrayObject* x, bool strided) {
    const int nd = PyArray_NDIM(x);
    strided = strided && (nd == 0 || PyArray_DIMS(x)[nd - 1] < 2 ||
                          PyArray_STRIDES(x)[nd - 1] == PyArray_ITEMSIZE(x));
    return (PyArrayObject*)PyArray_FromArray(
        x, NULL, NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED | (strided ? 0 : NPY_ARRAY_C_CONTIGUOUS));
}

typedef int (*thn_kernel)(const thn_rec_args&);

/* What ops/recurrent.py passes: the layouts of the n_in inputs and n_out outputs,
 * where T, B, F, n and M are read (input, axis; -1: absent), the op's parameters. */
struct thn_rec_call {
    const char* op;
    thn_kernel kernel;
    const thn_layout *ins, *outs;
    int n_in, n_out;
    int bind[5][2];
    int act, bptt, keep, threads;
    int proj;  /* the inputs w and b of the projection x_t . w + b are proj and proj + 1, or 0 */
};

/* Check the arrays `in` against the layouts, make the outputs `out` and run the
 * kernel. 0, or -1 with a Python error set. */
static int thn_recurrent(const thn_rec_call& c, PyArrayObject** in, PyArrayObject*** out) {
    thn_sizes s = {0, 0, 0, 0, 0, 0};
    npy_intp* sizes[5] = {&s.T, &s.B, &s.F, &s.n, &s.M};
    for (int k = 0; k < 5; ++k)
        if (c.bind[k][0] >= 0) *sizes[k] = PyArray_DIMS(in[c.bind[k][0]])[c.bind[k][1]];
    s.K = c.keep ? s.T : 1;
    PyArrayObject* held[THN_REC_MAX] = {NULL};
    thn_rec_args a = {};
    const int typenum = PyArray_TYPE(in[c.bind[0][0]]);
    /* absent gradients read as zeros: a zero row and strides 0 */
    thn_scratch zero(((s.n > s.F ? s.n : s.F) + 1) * PyArray_ITEMSIZE(in[c.bind[0][0]]));
    int status = -1;
    if (!zero.p) {
        PyErr_NoMemory();
        return -1;
    }
    for (int k = 0; k < c.n_in; ++k) {
        const thn_layout& e = c.ins[k];
        PyArrayObject* x = in[k];
        if (!e.nd) continue;
        if (e.optional && PyArray_SIZE(x) == 0) {
            a.in[k] = zero.p;
            continue;
        }
        if (thn_check(c.op, e, s, x) || !(held[k] = thn_readable(x, e.strided))) goto done;
        const npy_intp item = PyArray_ITEMSIZE(held[k]), *st = PyArray_STRIDES(held[k]);
        a.in[k] = PyArray_DATA(held[k]);
        a.ts[k] = e.nd == 3 ? st[0] / item : 0;
        /* batch stride; 0 for one row shared by the batch */
        a.bs[k] = e.nd < 2 || PyArray_DIMS(held[k])[e.nd - 2] == 1 ? 0 : st[e.nd - 2] / item;
    }
    for (int k = 0; k < c.n_out; ++k) {
        const thn_layout& e = c.outs[k];
        npy_intp dims[3];
        for (int d = 0; d < e.nd; ++d)
            dims[d] = e.like < 0 ? s(e.dims[d]) : PyArray_DIMS(in[e.like])[d];
        if (e.nd && thn_output(out[k], e.nd, dims, typenum, false)) goto done;
        if (e.nd) a.out[k] = PyArray_DATA(*out[k]);
    }
    a.steps = (int)s.T;
    a.batch = (int)s.B;
    a.n = (int)s.n;
    a.factors = (int)s.F;
    a.act = c.act;
    a.keep = c.keep;
    a.window = c.bptt < 0 || c.bptt > a.steps ? a.steps : c.bptt;
    a.proj = c.proj;
    a.m = (int)s.M;
    a.g = c.proj ? (int)s(c.ins[c.proj + 1].dims[0]) : 0;
    {
        thn_threads guard(c.threads);
        a.threads = guard.count;
        if (c.kernel(a)) {
            PyErr_NoMemory();
            goto done;
        }
    }
    status = 0;
done:
    for (int k = 0; k < THN_REC_MAX; ++k) Py_XDECREF(held[k]);
    return status;
}
