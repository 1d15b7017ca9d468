/* Lane vectors shared by the kernels: LANES floats, one per sequence (or row) of a batch, so that
 * every loop over the batch is vector arithmetic (GCC/Clang vector extensions, so the same source
 * builds for x86 and ARM). Everything here is vector arithmetic only, with no libm calls, so nothing
 * falls back to scalar code. */
#ifndef MLC_VEC_H
#define MLC_VEC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

typedef int64_t i64;

/* One lane vector per hardware register: 16 floats with AVX-512, 8 with AVX/AVX2, 4 with SSE2 or NEON.
 * GCC passes and returns wider vectors through memory, which made a 16-lane build 4x slower than an
 * 8-lane one on AVX2 (benchmarks/NOTES.md). */
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vf __attribute__((vector_size(LANES * sizeof(float)), aligned(LANES * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(LANES * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(LANES * sizeof(uint32_t))));

static inline vf splat(float v) { return (vf){0} + v; }

/* lanes of a where mask (a vector comparison) is set, else of b: C has no vector `?:` */
static inline vf select_vf(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

/* max(c, x) and min(c, x) lane by lane, one instruction where the instruction set has one
 * (LANE_OP: that instruction for the register type the lanes fill). A NaN in x comes out as NaN
 * (the instructions return their second operand when either is NaN), so a diverged network's NaN
 * reaches its loss instead of being clamped into a finite number. */
#if defined(__AVX512F__)
#define LANE_OP(name, c, x) (vf) _mm512_##name##_ps((__m512)(c), (__m512)(x))
#elif defined(__AVX__)
#define LANE_OP(name, c, x) (vf) _mm256_##name##_ps((__m256)(c), (__m256)(x))
#elif defined(__SSE__)
#define LANE_OP(name, c, x) (vf) _mm_##name##_ps((__m128)(c), (__m128)(x))
#endif

static inline vf max_vf(vf c, vf x) {
#ifdef LANE_OP
    return LANE_OP(max, c, x);
#else
    return select_vf(x < c, c, x);
#endif
}

static inline vf min_vf(vf c, vf x) {
#ifdef LANE_OP
    return LANE_OP(min, c, x);
#else
    return select_vf(x > c, c, x);
#endif
}
#undef LANE_OP

/* exp of x in [-87, 88] by Cody-Waite range reduction and a degree-6 polynomial (Cephes' expf
 * coefficients, < 2 ulp), in vector arithmetic only. */
static inline vf exp_in_range_vf(vf x) {
    /* k = round(x / ln 2) by the 1.5 * 2^23 trick: the integer also sits in the low mantissa bits
     * of `shifted`, read as bits so that no float -> int conversion (undefined for NaN) happens */
    const vf shifted = x * 1.44269504088896341f + 12582912.0f;
    const vf k = shifted - 12582912.0f;
    vf r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vu biased = (vu)shifted - 0x4B400000u + 127u; /* k + 127, in 1..254 on the range */
    return p * (vf)(biased << 23);                       /* times 2^k, assembled in the exponent */
}

static inline vf exp_vf(vf x) { return exp_in_range_vf(min_vf(splat(88.0f), max_vf(splat(-87.0f), x))); }

static inline vf sigmoid_vf(vf x) { return 1.0f / (1.0f + exp_vf(-x)); }

/* tanh from exp(-2|x|) <= 1, so only the lower clamp is needed; odd by copying x's sign bit onto
 * tanh(|x|) (NaN stays NaN), exact to about 1e-7 absolute. */
static inline vf tanh_vf(vf x) {
    const vu sign = (vu)x & 0x80000000u;
    const vf e = exp_in_range_vf(max_vf(splat(-87.0f), -2.0f * (vf)((vu)x ^ sign)));
    const vf t = (1.0f - e) / (1.0f + e);
    return (vf)((vu)t | sign);
}

/* log(1 + e) for e in [0, 1] (the softplus tail of BCE): 1 + e = 2^k m with m in [0.71, 1.41] and
 * Cephes' logf polynomial in f = m - 1, where f is formed from e directly (e, or (e - 1) / 2) so
 * that small e keeps its relative accuracy. */
static inline vf log1p_unit_vf(vf e) {
    const vi big = e > 0.41421356f;
    const vf k = select_vf(big, splat(1.0f), splat(0.0f));
    const vf f = select_vf(big, (e - 1.0f) * 0.5f, e), z = f * f;
    vf y = splat(7.0376836292e-2f);
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z + k * -2.12194440e-4f - 0.5f * z;
    return f + y + k * 0.693359375f;
}

static inline float hsum(vf v) {
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += v[l];
    return s;
}

/* rows [B][cols], row b at rows + b * row_stride -> block [cols][NB] lane vectors, zero past B (for
 * the head's targets). */
static inline void to_lanes(i64 batch, i64 nb, i64 cols, const float *restrict rows, i64 row_stride,
                            vf *restrict block) {
    float *restrict f = (float *)block;
    const i64 padded = nb * LANES;
    for (i64 c = 0; c < cols; c++) {
        for (i64 b = 0; b < batch; b++) f[c * padded + b] = rows[b * row_stride + c];
        for (i64 b = batch; b < padded; b++) f[c * padded + b] = 0.0f;
    }
}

#endif
