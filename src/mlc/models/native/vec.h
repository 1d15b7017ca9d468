/* Lane vectors shared by the kernels: LANES floats, one per sequence (or row) of a batch, so that
 * every loop over the batch is vector arithmetic. GCC and Clang map `vf` onto what the host has
 * (one AVX-512 register, two AVX2 ones, four NEON ones); everything here is vector arithmetic only,
 * with no libm calls, so nothing falls back to scalar code. */
#ifndef MLC_VEC_H
#define MLC_VEC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

#define LANES 16
typedef float vf __attribute__((vector_size(LANES * sizeof(float)), aligned(LANES * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(LANES * sizeof(int32_t))));

static inline vf splat(float v) { return (vf){0} + v; }

/* lanes of a where mask (a vector comparison) is set, else of b: C has no vector `?:` */
static inline vf select_vf(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }

/* exp by Cody-Waite range reduction and a degree-6 polynomial (Cephes' expf coefficients, < 2 ulp
 * on the clamped range), in vector arithmetic only. */
static inline vf exp_vf(vf x) {
    x = select_vf(x < -87.0f, splat(-87.0f), x);
    x = select_vf(x > 88.0f, splat(88.0f), x);
    /* k = round(x / ln 2) by the 1.5 * 2^23 trick */
    const vf k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vf r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi bits = (__builtin_convertvector(k, vi) + 127) << 23; /* 2^k in the exponent field */
    return p * (vf)bits;
}

static inline vf sigmoid_vf(vf x) { return 1.0f / (1.0f + exp_vf(-x)); }

/* tanh from exp(-2|x|): odd, exact to about 1e-7 absolute. */
static inline vf tanh_vf(vf x) {
    const vi negative = x < 0.0f;
    const vf e = exp_vf(-2.0f * select_vf(negative, -x, x));
    const vf t = (1.0f - e) / (1.0f + e);
    return select_vf(negative, -t, t);
}

/* log(1 + e) for e in [0, 1] (the softplus tail of BCE): u = 1 + e = 2^k m with m in [0.71, 1.41]
 * and Cephes' logf polynomial in m - 1; absolute error about 1e-7. */
static inline vf log1p_unit_vf(vf e) {
    vf u = 1.0f + e;
    const vi big = u > 1.41421356f;
    const vf k = select_vf(big, splat(1.0f), splat(0.0f));
    u = select_vf(big, u * 0.5f, u);
    const vf f = u - 1.0f, z = f * f;
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

/* rows [B][cols] -> block [cols][NB] lane vectors, zero past B. The loop runs down the block's
 * columns so its stores are whole vectors (the loads gather with stride cols). */
static inline void to_lanes(i64 batch, i64 nb, i64 cols, const float *restrict rows, vf *restrict block) {
    float *restrict f = (float *)block;
    const i64 padded = nb * LANES;
    for (i64 c = 0; c < cols; c++) {
        for (i64 b = 0; b < batch; b++) f[c * padded + b] = rows[b * cols + c];
        for (i64 b = batch; b < padded; b++) f[c * padded + b] = 0.0f;
    }
}

static inline void from_lanes(i64 batch, i64 nb, i64 cols, const vf *restrict block, float *restrict rows) {
    const float *restrict f = (const float *)block;
    const i64 padded = nb * LANES;
    for (i64 b = 0; b < batch; b++)
        for (i64 c = 0; c < cols; c++) rows[b * cols + c] = f[c * padded + b];
}

#endif
