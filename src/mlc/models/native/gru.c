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
 * and layer, which on a CPU costs more than the arithmetic it saves.
 * Models are independent, so callers split [0, M) across threads, and a model's result does not
 * depend on the split or on which other models share the call.
 */
#include "vec.h"

enum { R = 0, Z = 1, N = 2, GHN = 3 }; /* the gate blocks of a step */

/* One time step on lane vectors: from x_t (xt [I][NB]) and h_{t-1} (h [H][NB]) write h_t to h_new
 * and, where gates is not NULL, r, z, n and W_hn h + b_hn to gates [4][H][NB]. The backward pass
 * calls it again to recompute the gates bit for bit instead of keeping them from the forward pass. */
static void gru_step(i64 nb, i64 I, i64 H, const float *wi, const float *wh, const float *bi, const float *bh,
                     const vf *xt, const vf *h, vf *h_new, vf *gates) {
    for (i64 j = 0; j < H; j++) {
        const float *wir = wi + j * I, *wiz = wi + (H + j) * I, *win = wi + (2 * H + j) * I;
        const float *whr = wh + j * H, *whz = wh + (H + j) * H, *whn = wh + (2 * H + j) * H;
        for (i64 c = 0; c < nb; c++) {
            vf ar = splat(bi[j] + bh[j]), az = splat(bi[H + j] + bh[H + j]);
            vf an = splat(bi[2 * H + j]), ahn = splat(bh[2 * H + j]);
            for (i64 i = 0; i < I; i++) {
                const vf v = xt[i * nb + c];
                ar += wir[i] * v;
                az += wiz[i] * v;
                an += win[i] * v;
            }
            for (i64 k = 0; k < H; k++) {
                const vf v = h[k * nb + c];
                ar += whr[k] * v;
                az += whz[k] * v;
                ahn += whn[k] * v;
            }
            const vf r = sigmoid_vf(ar), z = sigmoid_vf(az);
            const vf n = tanh_vf(an + r * ahn);
            const i64 o = j * nb + c;
            h_new[o] = n + z * (h[o] - n);
            if (gates) {
                gates[R * H * nb + o] = r;
                gates[Z * H * nb + o] = z;
                gates[N * H * nb + o] = n;
                gates[GHN * H * nb + o] = ahn;
            }
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
                     hs + (m * L + t) * H * nb, NULL);
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

/* dw[g][k] = sum_t dg_t . in_t[k] and db[g] = sum_t dg_t (over lanes), in blocks of four k so four
 * independent accumulators hide the FMA latency. in_t[k] is at in + t * in_step + k * nb. */
/* out[k] (+)= sum_j W_r[j][k] d_r[j] + W_z[j][k] d_z[j] + W_n[j][k] d_n[j] for k < C, where W [3H][C]
 * holds the r, z, n blocks and d_r, d_z are the first two [H][NB] blocks of d, d_n the one given:
 * the backpropagation of a step's gate gradients into h_{t-1} (W_hh) or x_t (W_ih). One
 * accumulator chain per gate, for latency. */
static void transposed_product(i64 nb, i64 H, i64 C, const float *w, const vf *d, const vf *d_n, vf *out,
                               int accumulate) {
    for (i64 k = 0; k < C; k++)
        for (i64 c = 0; c < nb; c++) {
            vf ar = {0}, az = {0}, an = {0};
            for (i64 j = 0; j < H; j++) {
                ar += w[j * C + k] * d[j * nb + c];
                az += w[(H + j) * C + k] * d[(H + j) * nb + c];
                an += w[(2 * H + j) * C + k] * d_n[j * nb + c];
            }
            out[k * nb + c] = accumulate ? out[k * nb + c] + (ar + az + an) : ar + az + an;
        }
}

static void weight_grads(i64 L, i64 nb, i64 H, i64 C, const vf *d, int hidden_side, const vf *in,
                         i64 in_step, float *dw, float *db) {
    for (i64 g = 0; g < 3 * H; g += 2) {
        const int two = g + 1 < 3 * H; /* rows g and g + 1 share every load of `in` */
        vf bias0 = {0}, bias1 = {0};
        for (i64 k0 = 0; k0 < C; k0 += 4) {
            const i64 kb = C - k0 < 4 ? C - k0 : 4;
            vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
            for (i64 t = 0; t < L; t++) {
                const vf *d0 = hidden_side ? hh_row(d, t, g, H, nb) : ih_row(d, t, g, H, nb);
                const vf *d1 = two ? (hidden_side ? hh_row(d, t, g + 1, H, nb) : ih_row(d, t, g + 1, H, nb)) : d0;
                const vf *s = in + t * in_step + k0 * nb;
                for (i64 c = 0; c < nb; c++) {
                    const vf v = d0[c], w = d1[c], s0 = s[c];
                    a0 += v * s0;
                    b0 += w * s0;
                    if (kb > 1) {
                        const vf s1 = s[nb + c];
                        a1 += v * s1;
                        b1 += w * s1;
                    }
                    if (kb > 2) {
                        const vf s2 = s[2 * nb + c];
                        a2 += v * s2;
                        b2 += w * s2;
                    }
                    if (kb > 3) {
                        const vf s3 = s[3 * nb + c];
                        a3 += v * s3;
                        b3 += w * s3;
                    }
                    if (k0 == 0) {
                        bias0 += v;
                        bias1 += w;
                    }
                }
            }
            const vf acc0[4] = {a0, a1, a2, a3}, acc1[4] = {b0, b1, b2, b3};
            for (i64 q = 0; q < kb; q++) {
                dw[g * C + k0 + q] = hsum(acc0[q]);
                if (two) dw[(g + 1) * C + k0 + q] = hsum(acc1[q]);
            }
        }
        db[g] = hsum(bias0);
        if (two) db[g + 1] = hsum(bias1);
    }
}

int mlc_gru_backward(i64 L, i64 B, i64 I, i64 H, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, const float *h_out, const float *grad_out, float *dx,
                     float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, i64 m_begin, i64 m_end) {
    const i64 nb = (B + LANES - 1) / LANES;
    /* per model: gate gradients of every step [L][4][H][NB], the hidden states h_{-1} = 0 .. h_{L-1}
     * [L+1][H][NB] (one block for the weight gradients); per step: gates [4][H][NB], dh of this and
     * the previous step, and the recomputed h_t (unused) */
    const size_t n_scratch = (size_t)((L * 4 * H + (L + 1) * H + 4 * H + 3 * H) * nb);
    vf *scratch = aligned_alloc(sizeof(vf), sizeof(vf) * (n_scratch + 1));
    if (!scratch) return 1;
    vf *d = scratch, *hs = d + L * 4 * H * nb, *gates = hs + (L + 1) * H * nb;
    vf *dh = gates + 4 * H * nb, *dh_prev = dh + H * nb, *h_unused = dh_prev + H * nb;
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
            const vf *hp = hs + t * H * nb, *go = gos + (m * L + t) * H * nb;
            gru_step(nb, I, H, wi, wh, bi, bh, xm + t * I * nb, hp, h_unused, gates);
            vf *dt = d + t * 4 * H * nb;
            for (i64 o = 0; o < H * nb; o++) {
                const vf r = gates[R * H * nb + o], z = gates[Z * H * nb + o], n = gates[N * H * nb + o];
                const vf g = dh[o] + go[o];
                const vf dpre_n = g * (1.0f - z) * (1.0f - n * n);
                dt[o] = dpre_n * gates[GHN * H * nb + o] * r * (1.0f - r);
                dt[H * nb + o] = g * (hp[o] - n) * z * (1.0f - z);
                dt[2 * H * nb + o] = dpre_n;
                dt[3 * H * nb + o] = dpre_n * r;
                dh_prev[o] = g * z;
            }
            transposed_product(nb, H, H, wh, dt, dt + 3 * H * nb, dh_prev, 1); /* hidden side of n */
            vf *swap = dh;
            dh = dh_prev;
            dh_prev = swap;
            if (dxs) /* input side of n */
                transposed_product(nb, H, I, wi, dt, dt + 2 * H * nb, dxs + (m * L + t) * I * nb, 0);
        }
        weight_grads(L, nb, H, I, d, 0, xm, I * nb, dw_ih + m * 3 * H * I, db_ih + m * 3 * H);
        weight_grads(L, nb, H, H, d, 1, hs, H * nb, dw_hh + m * 3 * H * H, db_hh + m * 3 * H);
    }
    free(scratch);
    return 0;
}
