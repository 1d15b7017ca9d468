/* The MLP head and the BCE-with-logits loss of a population of small models, fused, for the CPU.
 *
 * Why: in PyTorch every layer of the head writes its [M, L*B, width] activations to memory and the
 * backward reads them again (with M = 128 the widest is 40 MB), so the head is memory-bound though
 * it is a fifth of the arithmetic. Here one lane vector of sequences at a time goes through all
 * layers, the loss and back, with activations in registers and the weight-gradient accumulators in
 * L1/L2.
 *
 *   a_0 = x,  a_l = relu(W_l a_{l-1} + b_l) for l < n,  logits = W_n a_{n-1} + b_n
 *   loss = mean over rows and outputs of  max(z, 0) - z y + log(1 + exp(-|z|))
 *
 * One call gives each model's loss and, when dw is not NULL, the gradients of that loss (upstream
 * gradient 1) for the head's weights and its input: the loss is the end of the graph, so autograd's
 * backward only has to scale them. When correct is not NULL it also counts, per model, the outputs
 * whose sign agrees with the target ((z > 0) == (y > 0.5)), so evaluation needs no logits tensor.
 *
 * Layouts (float32, C-contiguous, models m in [m_begin, m_end)): x and dx in the lane layout of
 * gru.c, [M, L, widths[0], NB * LANES] with NB = ceil(B / LANES); targets as rows, y [M, L, B,
 * widths[n]]; w[l] [M, widths[l+1], widths[l]]; b[l] [M, widths[l+1]]; dw, db like w, b; loss and
 * correct [M].
 * Lanes past B are left out of the loss and get zero gradient.
 */
#include "vec.h"

#define MAX_LAYERS 8

int mlc_head_max_layers(void) { return MAX_LAYERS; }

int mlc_head_loss(i64 L, i64 B, i64 n, const i64 *widths, const float *x, const float *const *w,
                  const float *const *b, const float *y, float *loss, float *correct, float *dx,
                  float *const *dw, float *const *db, i64 m_begin, i64 m_end) {
    if (n < 1 || n > MAX_LAYERS) return 2;
    i64 act_off[MAX_LAYERS + 2], gw_off[MAX_LAYERS], gb_off[MAX_LAYERS];
    i64 widest = 0, n_act = 0, n_grad = 0;
    for (i64 l = 0; l <= n; l++) {
        act_off[l] = n_act;
        n_act += widths[l];
        widest = widths[l] > widest ? widths[l] : widest;
    }
    for (i64 l = 0; l < n; l++) {
        gw_off[l] = n_grad;
        n_grad += widths[l + 1] * widths[l];
        gb_off[l] = n_grad;
        n_grad += widths[l + 1];
    }
    const i64 n_out = widths[n];
    /* activations of every layer, the targets, two gradient rows, the gradient accumulators */
    vf *scratch = aligned_alloc(sizeof(vf), sizeof(vf) * (size_t)(n_act + n_out + 2 * widest + n_grad + 1));
    if (!scratch) return 1;
    vf *act = scratch, *yt = act + n_act, *g = yt + n_out, *g_prev = g + widest, *acc = g_prev + widest;
    const i64 nb = (B + LANES - 1) / LANES, w0 = widths[0];
    const float scale = 1.0f / (float)(L * B * n_out);
    const vf *xs = (const vf *)x;
    vf *dxs = (vf *)dx;
    for (i64 m = m_begin; m < m_end; m++) {
        const float *wm[MAX_LAYERS], *bm[MAX_LAYERS];
        for (i64 l = 0; l < n; l++) {
            wm[l] = w[l] + m * widths[l + 1] * widths[l];
            bm[l] = b[l] + m * widths[l + 1];
        }
        memset(acc, 0, sizeof(vf) * (size_t)n_grad);
        vf loss_acc = {0}, correct_acc = {0}; /* per lane: exact below 2^24 outputs */
        for (i64 step = 0; step < L * nb; step++) {
            const i64 t = step / nb, c = step % nb;
            const i64 count = B - c * LANES < LANES ? B - c * LANES : LANES;
            vi valid; /* lanes holding rows: selected, not multiplied, so a padding lane's inf stays out */
            for (int lane = 0; lane < LANES; lane++) valid[lane] = lane < count ? -1 : 0;
            const vf *xt = xs + (m * L + t) * w0 * nb + c;
            for (i64 i = 0; i < w0; i++) act[i] = xt[i * nb];
            to_lanes(count, 1, n_out, y + ((m * L + t) * B + c * LANES) * n_out, yt);
            for (i64 l = 0; l < n; l++) {
                const vf *in = act + act_off[l];
                vf *out = act + act_off[l + 1];
                const i64 n_in = widths[l];
                for (i64 o = 0; o < widths[l + 1]; o++) {
                    const float *wo = wm[l] + o * n_in;
                    vf a = splat(bm[l][o]);
                    for (i64 i = 0; i < n_in; i++) a += wo[i] * in[i];
                    /* relu that keeps NaN, as torch.relu does */
                    out[o] = l < n - 1 ? select_vf(a <= 0.0f, splat(0.0f), a) : a;
                }
            }
            const vf *z = act + act_off[n];
            for (i64 o = 0; o < n_out; o++) {
                const vf zo = z[o], neg_abs = select_vf(zo > 0.0f, -zo, zo);
                const vf e = exp_vf(neg_abs);
                const vf bce = select_vf(zo > 0.0f, zo, splat(0.0f)) - zo * yt[o] + log1p_unit_vf(e);
                loss_acc += select_vf(valid, bce, splat(0.0f));
                if (correct) {
                    const vi agrees = valid & ((zo > 0.0f) == (yt[o] > 0.5f));
                    correct_acc += select_vf(agrees, splat(1.0f), splat(0.0f));
                }
                /* sigmoid(z) from e = exp(-|z|) without a second exp */
                const vf sig = select_vf(zo > 0.0f, 1.0f / (1.0f + e), e / (1.0f + e));
                g[o] = select_vf(valid, sig - yt[o], splat(0.0f));
            }
            if (!dw) continue;
            for (i64 l = n - 1; l >= 0; l--) {
                const vf *in = act + act_off[l];
                const i64 n_in = widths[l], n_o = widths[l + 1];
                vf *gw = acc + gw_off[l], *gb = acc + gb_off[l];
                for (i64 o = 0; o < n_o; o++) {
                    const vf go = g[o];
                    gb[o] += go;
                    for (i64 i = 0; i < n_in; i++) gw[o * n_in + i] += go * in[i];
                }
                if (l == 0 && !dx) break;
                for (i64 i = 0; i < n_in; i++) {
                    vf s = {0};
                    for (i64 o = 0; o < n_o; o++) s += wm[l][o * n_in + i] * g[o];
                    /* a_l = relu(.) > 0 exactly where relu passes the gradient */
                    g_prev[i] = l > 0 ? select_vf(in[i] > 0.0f, s, splat(0.0f)) : s * scale;
                }
                vf *swap = g;
                g = g_prev;
                g_prev = swap;
            }
            if (dxs)
                for (i64 i = 0; i < w0; i++) dxs[((m * L + t) * w0 + i) * nb + c] = g[i];
        }
        loss[m] = hsum(loss_acc) * scale;
        if (correct) correct[m] = hsum(correct_acc);
        if (!dw) continue;
        for (i64 l = 0; l < n; l++) {
            const i64 n_w = widths[l + 1] * widths[l];
            for (i64 k = 0; k < n_w; k++) dw[l][m * n_w + k] = hsum(acc[gw_off[l] + k]) * scale;
            for (i64 o = 0; o < widths[l + 1]; o++)
                db[l][m * widths[l + 1] + o] = hsum(acc[gb_off[l] + o]) * scale;
        }
    }
    free(scratch);
    return 0;
}
