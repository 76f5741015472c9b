/* parallel.c: fork-join threads for the C ops, with BLAS on one thread meanwhile.
 * An op splits its work into chunks (batch rows, rows of a product) that need no
 * synchronization. With OpenMP (GCC 9+ on Linux: ops/base.py) they run on libgomp's
 * threads, which outlive a call but not a fork(); otherwise on threads started per call.
 * Meanwhile BLAS runs on one thread per chunk, as its own threads would meet at every
 * call; with a BLAS other than OpenBLAS (whose thread count is set through the library
 * that defines sgemm_), the op runs on one thread (docs/performance.rst, Threads). */

#include <thread>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif
#if defined(_OPENMP) && __GNUC__ >= 9 && !defined(__clang__)
#include <omp.h>
#include <pthread.h>
static const int thn_fork_hook =  /* a child would wait for them forever: end them */
    pthread_atfork([] { omp_pause_resource_all(omp_pause_hard); }, NULL, NULL);
#define THN_OPENMP 1
#endif

/* body(i0, i1, chunk) for chunks [i0, i1) of [0, count), each a multiple of
 * `grain` long but the last, on up to `threads` threads; the caller runs one of them. */
template <class F>
static void thn_parallel(int count, int grain, int threads, F body) {
    const int blocks = (count + grain - 1) / grain;
    const int chunks = threads < 2 || blocks < 2 ? 1 : threads < blocks ? threads : blocks;
    const int size = (blocks + chunks - 1) / chunks * grain;
    const int used = count > size ? (count + size - 1) / size : 1;
#ifdef THN_OPENMP
#pragma omp parallel for num_threads(used) schedule(static, 1) if (used > 1)
    for (int c = 0; c < used; ++c) body(c * size, c + 1 < used ? (c + 1) * size : count, c);
#else
    std::vector<std::thread> workers;
    for (int c = 1; c < used; ++c) {
        const int i1 = c + 1 < used ? (c + 1) * size : count;
        try {
            workers.emplace_back(body, c * size, i1, c);
        } catch (...) {  /* no thread to be had: run the chunk here */
            body(c * size, i1, c);
        }
    }
    body(0, used > 1 ? size : count, 0);
    for (size_t k = 0; k < workers.size(); ++k) workers[k].join();
#endif
}

struct thn_blas_threads {
    void (*set)(int);
    int (*get)(void);
};

static thn_blas_threads thn_find_blas_threads() {
    thn_blas_threads f = {NULL, NULL};
#if defined(__unix__) || defined(__APPLE__)
    static const char* names[2][2] = {
        {"scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"},
        {"openblas_set_num_threads", "openblas_get_num_threads"}};
    Dl_info info;
    void* lib = dladdr((const void*)&sgemm_, &info) && info.dli_fname
                    ? dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    for (int k = 0; lib && k < 2 && !(f.set && f.get); ++k) {
        f.set = (void (*)(int))dlsym(lib, names[k][0]);
        f.get = (int (*)(void))dlsym(lib, names[k][1]);
    }
    if (lib) dlclose(lib);  /* drops the reference RTLD_NOLOAD took; the library stays */
#endif
    if (!(f.set && f.get)) f.set = NULL, f.get = NULL;
    return f;
}

/* While alive: BLAS on one thread, and `count` threads for the op: `wanted`,
 * at most BLAS's own thread count (1 when BLAS's threads cannot be set). */
struct thn_threads {
    int count, saved;
    explicit thn_threads(int wanted) : count(1), saved(0) {
        if (wanted < 2 || !blas().get) return;
        saved = blas().get();
        count = wanted < saved ? wanted : saved;
        if (count > 1) blas().set(1);
    }
    ~thn_threads() {
        if (count > 1) blas().set(saved);
    }
    static const thn_blas_threads& blas() {
        static const thn_blas_threads f = thn_find_blas_threads();  /* once per module */
        return f;
    }
};
