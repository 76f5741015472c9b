/* parallel.c: fork-join threads for the C ops, with BLAS on one thread meanwhile.
 *
 * An op splits its work into chunks (batch rows, rows of a product) and runs
 * them on threads started for the call and joined before it returns: no pool,
 * nothing left spinning. While they run, BLAS runs on one thread in each of
 * them: OpenBLAS's own threads would otherwise meet at every call, and on a
 * busy machine a product then waits for a thread that is not running (measured:
 * a GRU layer's gradient at 57 ms instead of 10 ms, with two other processes
 * busy). OpenBLAS's thread count is read and set through the library that
 * defines sgemm_ (scipy-openblas32's or a system OpenBLAS); with another BLAS
 * the op runs on one thread and leaves BLAS's threads alone.
 */

#include <thread>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

/* body(i0, i1, chunk) for chunks [i0, i1) of [0, count), each a multiple of
 * `grain` long but the last, on up to `threads` threads; the caller runs chunk 0. */
template <class F>
static void thn_parallel(int count, int grain, int threads, F body) {
    const int blocks = (count + grain - 1) / grain;
    const int chunks = threads < 2 || blocks < 2 ? 1 : threads < blocks ? threads : blocks;
    const int size = (blocks + chunks - 1) / chunks * grain;
    std::vector<std::thread> workers;
    for (int c = 1; c * size < count; ++c) {
        const int i0 = c * size, i1 = i0 + size < count ? i0 + size : count;
        try {
            workers.emplace_back(body, i0, i1, c);
        } catch (...) {  /* no thread to be had: run the chunk here */
            body(i0, i1, c);
        }
    }
    body(0, size < count ? size : count, 0);
    for (size_t k = 0; k < workers.size(); ++k) workers[k].join();
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
