/* flat.c: the loop of a FlatElemwise (theanets/ops/elemwise.py); elemwise.py fills in
 * the named fields per node. Full operands are C-contiguous arrays of n elements,
 * the others broadcast scalars passed by value, so GCC vectorizes the loop. It stays
 * a function of its own: inlined into PyTensor's run(), it was not vectorized. */
static __attribute__((noinline)) int thn_flat_%(name)s(npy_intp n, %(params)s) {
#pragma GCC ivdep
    for (npy_intp i = 0; i < n; ++i) {
        %(load)s
        %(task)s
        %(store)s
    }
    return 0;
}
