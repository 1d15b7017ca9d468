/* The GRU recurrence of a population of small models, forward and backward, for the CPU.
 *
 * Why C: with 12-wide hidden states a PyTorch op does less arithmetic than its dispatch costs, and
 * batched GEMMs with K = 12 run far below the core's peak. Here each model's recurrent weights,
 * hidden state and gates stay in L1 for all time steps, and the batch is the vector lanes (vec.h):
 * every product is a broadcast weight times a vector with the accumulator in a register, and no
 * horizontal work happens until a weight gradient is complete.
 *
 * Same equations and gate order (r, z, n) as torch.nn.GRU with a zero initial state:
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)     z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *   n = tanh(W_in x + b_in + r (W_hn h + b_hn))    h' = (1 - z) n + z h
 *
 * Layouts (float32, C-contiguous, one block per model m in [m_begin, m_end)): the lane layout, in
 * which a model's batch is NB = ceil(B / LANES) lane vectors, x / dx [M, L, I, NB * LANES] and
 * h_out / grad_out [M, L, H, NB * LANES], so consecutive layers and the fused head (head.c) pass
 * lane vectors on without transposing (transposing to and from rows took a fifth of the time);
 * w_ih [M, 3H, I], w_hh [M, 3H, H], b_ih / b_hh [M, 3H]. Lanes past B hold finite values that
 * never mix with real lanes; their gradients must come in as zero, and then stay zero.
 * The backward pass recomputes each step's gates from x and h_out instead of the forward pass
 * keeping them: keeping them would write (and page-fault in) 20 floats per model, sequence, step
 * and layer, which on a CPU costs more than the arithmetic it saves. It turns them into gate
 * gradients while they are still in registers.
 * Models are independent, so callers split [0, M) across threads, and a model's result does not
 * depend on the split or on which other models share the call.
 */
#include "vec.h"

/* Register blocking. Each output of a step is a chain of dependent FMAs (4 cycles apart), and one
 * chain at a time left the FMA units mostly idle: a pass handles UNITS hidden units (or inputs of
 * the transposed product) at once, and the weight gradients ROWS gate rows by four inputs, so that
 * every load feeds several independent accumulators and the sigmoids and tanhs of several units
 * interleave. Sized for the register file (32 vector registers with AVX-512, 16 otherwise) by
 * measurement (benchmarks/NOTES.md); results do not depend on them, since every sum still runs in
 * the same order. */
#if LANES == 16
#define UNITS 6
#else
#define UNITS 4
#endif
#define ROWS 4

enum { R = 0, Z = 1, N = 2, GHN = 3 }; /* the gate-gradient blocks of a step */

/* Hidden units j0 .. j0 + count - 1 of one time step, lane vector c, from x_t (xt [I][NB]) and
 * h_{t-1} (h [H][NB]). Forward (dh == NULL): write h_t to h_new. Backward: the same gates, then,
 * with g = dh + go (dL/dh_t from step t + 1 and from the layer above), the step's gate gradients dt
 * [4][H][NB] (d r and d z before their sigmoids, d n before its tanh on the input side and on the
 * hidden side W_hn h + b_hn) and the part g z of dL/dh_{t-1} that needs no weights, in h_new.
 * `count` and whether dh is NULL are constants after inlining, so the unit loops unroll and the
 * accumulators stay in registers. */
static inline __attribute__((always_inline)) void gru_units(int count, i64 j0, i64 c, i64 nb, i64 I, i64 H,
                                                            const float *wi, const float *wh, const float *bi,
                                                            const float *bh, const vf *xt, const vf *h,
                                                            vf *h_new, const vf *dh, const vf *go, vf *dt) {
    vf ar[UNITS], az[UNITS], an[UNITS], ahn[UNITS];
    for (int q = 0; q < count; q++) {
        const i64 j = j0 + q;
        ar[q] = splat(bi[j] + bh[j]);
        az[q] = splat(bi[H + j] + bh[H + j]);
        an[q] = splat(bi[2 * H + j]);
        ahn[q] = splat(bh[2 * H + j]);
    }
    for (i64 i = 0; i < I; i++) {
        const vf v = xt[i * nb + c];
        for (int q = 0; q < count; q++) {
            const i64 j = j0 + q;
            ar[q] += wi[j * I + i] * v;
            az[q] += wi[(H + j) * I + i] * v;
            an[q] += wi[(2 * H + j) * I + i] * v;
        }
    }
    for (i64 k = 0; k < H; k++) {
        const vf v = h[k * nb + c];
        for (int q = 0; q < count; q++) {
            const i64 j = j0 + q;
            ar[q] += wh[j * H + k] * v;
            az[q] += wh[(H + j) * H + k] * v;
            ahn[q] += wh[(2 * H + j) * H + k] * v;
        }
    }
    for (int q = 0; q < count; q++) {
        const vf r = sigmoid_vf(ar[q]), z = sigmoid_vf(az[q]);
        const vf n = tanh_vf(an[q] + r * ahn[q]);
        const i64 o = (j0 + q) * nb + c;
        if (!dh) {
            h_new[o] = n + z * (h[o] - n);
            continue;
        }
        const vf g = dh[o] + go[o];
        const vf dpre_n = g * (1.0f - z) * (1.0f - n * n);
        dt[R * H * nb + o] = dpre_n * ahn[q] * r * (1.0f - r);
        dt[Z * H * nb + o] = g * (h[o] - n) * z * (1.0f - z);
        dt[N * H * nb + o] = dpre_n;
        dt[GHN * H * nb + o] = dpre_n * r;
        h_new[o] = g * z;
    }
}

/* One time step on lane vectors, all units (see gru_units): the forward pass, or (dh not NULL) the
 * backward pass's recomputation of the same gates, bit for bit, and their gradients. */
static void gru_step(i64 nb, i64 I, i64 H, const float *wi, const float *wh, const float *bi, const float *bh,
                     const vf *xt, const vf *h, vf *h_new, const vf *dh, const vf *go, vf *dt) {
    const i64 whole = H - H % UNITS;
    for (i64 c = 0; c < nb; c++) {
        if (dh) { /* a copy per pass, each specialised (one copy inlined in both: 3-5% slower) */
            for (i64 j = 0; j < whole; j += UNITS)
                gru_units(UNITS, j, c, nb, I, H, wi, wh, bi, bh, xt, h, h_new, dh, go, dt);
            for (i64 j = whole; j < H; j++)
                gru_units(1, j, c, nb, I, H, wi, wh, bi, bh, xt, h, h_new, dh, go, dt);
        } else {
            for (i64 j = 0; j < whole; j += UNITS)
                gru_units(UNITS, j, c, nb, I, H, wi, wh, bi, bh, xt, h, h_new, NULL, NULL, NULL);
            for (i64 j = whole; j < H; j++)
                gru_units(1, j, c, nb, I, H, wi, wh, bi, bh, xt, h, h_new, NULL, NULL, NULL);
        }
    }
}

int mlc_lanes(void) { return LANES; }

int mlc_gru_forward(i64 L, i64 B, i64 I, i64 H, const float *x, const float *w_ih, const float *w_hh,
                    const float *b_ih, const float *b_hh, float *h_out, i64 m_begin, i64 m_end) {
    const i64 nb = (B + LANES - 1) / LANES;
    vf *zero = aligned_alloc(sizeof(vf), sizeof(vf) * (size_t)(H * nb + 1)); /* h_{-1} */
    if (!zero) return 1;
    memset(zero, 0, sizeof(vf) * (size_t)(H * nb));
    const vf *xs = (const vf *)x;
    vf *hs = (vf *)h_out;
    for (i64 m = m_begin; m < m_end; m++) {
        const float *wi = w_ih + m * 3 * H * I, *wh = w_hh + m * 3 * H * H;
        for (i64 t = 0; t < L; t++) {
            const vf *h_prev = t ? hs + (m * L + t - 1) * H * nb : zero;
            gru_step(nb, I, H, wi, wh, b_ih + m * 3 * H, b_hh + m * 3 * H, xs + (m * L + t) * I * nb, h_prev,
                     hs + (m * L + t) * H * nb, NULL, NULL, NULL);
        }
    }
    free(zero);
    return 0;
}

/* Gate-gradient rows of step t, [4][H][NB]: d r, d z (pre-activation, shared by both sides),
 * d n on the input side, d n on the hidden side (W_hn h + b_hn). Row g of the 3H-row gradient
 * of either weight matrix is one of them: */
static inline const vf *ih_row(const vf *d, i64 t, i64 g, i64 H, i64 nb) {
    return d + ((t * 4 + g / H) * H + g % H) * nb;
}

static inline const vf *hh_row(const vf *d, i64 t, i64 g, i64 H, i64 nb) {
    return d + ((t * 4 + (g < 2 * H ? g / H : 3)) * H + g % H) * nb;
}

/* Outputs k0 .. k0 + count - 1 of transposed_product, lane vector c, one accumulator chain per gate
 * and output (as gru_units). */
static inline __attribute__((always_inline)) void transposed_outputs(int count, i64 k0, i64 c, i64 nb, i64 H,
                                                                     i64 C, const float *w, const vf *d,
                                                                     const vf *d_n, vf *out, int accumulate) {
    vf ar[UNITS], az[UNITS], an[UNITS];
    for (int q = 0; q < count; q++) ar[q] = az[q] = an[q] = splat(0.0f);
    for (i64 j = 0; j < H; j++) {
        const vf dr = d[j * nb + c], dz = d[(H + j) * nb + c], dn = d_n[j * nb + c];
        for (int q = 0; q < count; q++) {
            ar[q] += w[j * C + k0 + q] * dr;
            az[q] += w[(H + j) * C + k0 + q] * dz;
            an[q] += w[(2 * H + j) * C + k0 + q] * dn;
        }
    }
    for (int q = 0; q < count; q++) {
        vf *o = out + (k0 + q) * nb + c;
        *o = accumulate ? *o + (ar[q] + az[q] + an[q]) : ar[q] + az[q] + an[q];
    }
}

/* out[k] (+)= sum_j W_r[j][k] d_r[j] + W_z[j][k] d_z[j] + W_n[j][k] d_n[j] for k < C, where W [3H][C]
 * holds the r, z, n blocks and d_r, d_z are the first two [H][NB] blocks of d, d_n the one given:
 * the backpropagation of a step's gate gradients into h_{t-1} (W_hh) or x_t (W_ih). */
static void transposed_product(i64 nb, i64 H, i64 C, const float *w, const vf *d, const vf *d_n, vf *out,
                               int accumulate) {
    const i64 whole = C - C % UNITS;
    for (i64 c = 0; c < nb; c++) {
        for (i64 k = 0; k < whole; k += UNITS)
            transposed_outputs(UNITS, k, c, nb, H, C, w, d, d_n, out, accumulate);
        for (i64 k = whole; k < C; k++) transposed_outputs(1, k, c, nb, H, C, w, d, d_n, out, accumulate);
    }
}

/* Gate rows g0 .. g0 + count - 1 and inputs k0 .. k0 + kb - 1 (kb <= 4) of weight_grads. */
static inline __attribute__((always_inline)) void weight_block(int count, i64 g0, i64 k0, i64 kb, i64 L,
                                                               i64 nb, i64 H, const vf *d, int hidden_side,
                                                               const vf *in, i64 in_step, i64 C, float *dw,
                                                               float *db) {
    vf acc[ROWS][4], bias[ROWS];
    for (int q = 0; q < count; q++) {
        bias[q] = splat(0.0f);
        for (int p = 0; p < 4; p++) acc[q][p] = splat(0.0f);
    }
    for (i64 t = 0; t < L; t++) {
        const vf *rows[ROWS];
        for (int q = 0; q < count; q++)
            rows[q] = hidden_side ? hh_row(d, t, g0 + q, H, nb) : ih_row(d, t, g0 + q, H, nb);
        const vf *s = in + t * in_step + k0 * nb;
        for (i64 c = 0; c < nb; c++) {
            vf sv[4];
            for (int p = 0; p < 4; p++) sv[p] = p < kb ? s[p * nb + c] : splat(0.0f);
            for (int q = 0; q < count; q++) {
                const vf v = rows[q][c];
                for (int p = 0; p < 4; p++) acc[q][p] += v * sv[p];
                if (k0 == 0) bias[q] += v;
            }
        }
    }
    for (int q = 0; q < count; q++) {
        for (i64 p = 0; p < kb; p++) dw[(g0 + q) * C + k0 + p] = hsum(acc[q][p]);
        if (k0 == 0) db[g0 + q] = hsum(bias[q]);
    }
}

/* dw[g][k] = sum_t dg_t . in_t[k] and db[g] = sum_t dg_t (over lanes), where dg_t is gate-gradient
 * row g of step t and in_t[k] is at in + t * in_step + k * nb, in blocks of ROWS rows by four k. */
static void weight_grads(i64 L, i64 nb, i64 H, i64 C, const vf *d, int hidden_side, const vf *in,
                         i64 in_step, float *dw, float *db) {
    const i64 whole = 3 * H - 3 * H % ROWS;
    for (i64 k0 = 0; k0 < C; k0 += 4) {
        const i64 kb = C - k0 < 4 ? C - k0 : 4;
        for (i64 g = 0; g < whole; g += ROWS)
            weight_block(ROWS, g, k0, kb, L, nb, H, d, hidden_side, in, in_step, C, dw, db);
        for (i64 g = whole; g < 3 * H; g++)
            weight_block(1, g, k0, kb, L, nb, H, d, hidden_side, in, in_step, C, dw, db);
    }
}

int mlc_gru_backward(i64 L, i64 B, i64 I, i64 H, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, const float *h_out, const float *grad_out, float *dx,
                     float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, i64 m_begin, i64 m_end) {
    const i64 nb = (B + LANES - 1) / LANES;
    /* per model: gate gradients of every step [L][4][H][NB] and the hidden states h_{-1} = 0 ..
     * h_{L-1} [L+1][H][NB] (one block for the weight gradients); dL/dh of this and the previous step */
    const size_t n_scratch = (size_t)((L * 4 * H + (L + 1) * H + 2 * H) * nb);
    vf *scratch = aligned_alloc(sizeof(vf), sizeof(vf) * (n_scratch + 1));
    if (!scratch) return 1;
    vf *d = scratch, *hs = d + L * 4 * H * nb, *dh = hs + (L + 1) * H * nb, *dh_prev = dh + H * nb;
    const vf *xs = (const vf *)x, *gos = (const vf *)grad_out;
    vf *dxs = (vf *)dx;
    for (i64 m = m_begin; m < m_end; m++) {
        const float *wi = w_ih + m * 3 * H * I, *wh = w_hh + m * 3 * H * H;
        const float *bi = b_ih + m * 3 * H, *bh = b_hh + m * 3 * H;
        const vf *xm = xs + m * L * I * nb;
        memset(dh, 0, sizeof(vf) * (size_t)(H * nb));
        memset(hs, 0, sizeof(vf) * (size_t)(H * nb));
        memcpy(hs + H * nb, (const vf *)h_out + m * L * H * nb, sizeof(vf) * (size_t)(L * H * nb));
        for (i64 t = L - 1; t >= 0; t--) {
            vf *dt = d + t * 4 * H * nb;
            gru_step(nb, I, H, wi, wh, bi, bh, xm + t * I * nb, hs + t * H * nb, dh_prev, dh,
                     gos + (m * L + t) * H * nb, dt);
            transposed_product(nb, H, H, wh, dt, dt + GHN * H * nb, dh_prev, 1); /* hidden side of n */
            vf *swap = dh;
            dh = dh_prev;
            dh_prev = swap;
            if (dxs) /* input side of n */
                transposed_product(nb, H, I, wi, dt, dt + N * H * nb, dxs + (m * L + t) * I * nb, 0);
        }
        weight_grads(L, nb, H, I, d, 0, xm, I * nb, dw_ih + m * 3 * H * I, db_ih + m * 3 * H);
        weight_grads(L, nb, H, H, d, 1, hs, H * nb, dw_hh + m * 3 * H * H, db_hh + m * 3 * H);
    }
    free(scratch);
    return 0;
}
