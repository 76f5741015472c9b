"""C source shared by the custom Ops: vectorizable elementwise math.

``ELEMENTWISE`` defines, for ``float`` and ``double``, ``thn_rec_exp``,
``thn_rec_sigmoid`` and ``thn_rec_tanh`` as always-inlined functions. The float
versions are branch-free so that GCC vectorizes loops calling them (the C
library's ``expf`` is a call per element); the double versions call the C
library. Relative error of the float ``exp``: below 2e-7 over its whole range.
"""

from pytensor.link.c.op import COp
from pytensor.tensor.blas import ldflags

ELEMENTWISE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef THN_CMATH
#define THN_CMATH
#ifndef THN_INLINE
#define THN_INLINE static inline __attribute__((always_inline))
#endif

/* ---- elementwise math ---------------------------------------------------
   float32: branch-free exp (range reduction + degree-7 polynomial) that GCC
   vectorizes; float64: the C library. */
THN_INLINE float thn_rec_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + 12582912.0f;  /* 1.5 * 2^23 */
    float k = t - 12582912.0f;                            /* round(x / ln 2) */
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;                          /* |r| <= ln(2) / 2 */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;               /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
THN_INLINE double thn_rec_exp(double x) { return exp(x); }

THN_INLINE float thn_rec_sigmoid(float x) { return 1.0f / (1.0f + thn_rec_exp(-x)); }
THN_INLINE double thn_rec_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

THN_INLINE float thn_rec_tanh(float x) {
    float a = x < 0 ? -x : x;
    float e = thn_rec_exp(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float a2 = a * a;                     /* Taylor series near zero */
    float small = -1382.0f / 155925.0f;
    small = small * a2 + 62.0f / 2835.0f;
    small = small * a2 - 17.0f / 315.0f;
    small = small * a2 + 2.0f / 15.0f;
    small = small * a2 - 1.0f / 3.0f;
    small = (small * a2 + 1.0f) * a;
    float y = a < 0.25f ? small : big;
    return x < 0 ? -y : y;
}
THN_INLINE double thn_rec_tanh(double x) { return tanh(x); }

#endif  /* THN_CMATH */
"""
VERSION = (1,)  # bump with any change of ELEMENTWISE


class BlasLinkedCOp(COp):
    """Link flags of Ops whose C code calls BLAS and runs threads (pthreads)."""

    __props__ = ()

    def c_libraries(self, **kwargs):
        return ldflags()

    def c_compile_args(self, **kwargs):
        return ldflags(libs=False, flags=True) + ['-pthread']

    def c_lib_dirs(self, **kwargs):
        return ldflags(libs=False, libs_dir=True)

    def c_header_dirs(self, **kwargs):
        return ldflags(libs=False, include_dir=True)
