/* The MLP head and the BCE-with-logits loss of a population of small models, fused, for the CPU.
 *
 * Why: in PyTorch every layer of the head writes its [M, L*B, width] activations to memory and the
 * backward reads them again (with M = 128 the widest is 40 MB), so the head is memory-bound though
 * it is a fifth of the arithmetic. Here a few lane vectors of sequences at a time go through all
 * layers, the loss and back, with activations in L1 and the weight-gradient accumulators in L1/L2.
 *
 *   a_0 = x,  a_l = relu(W_l a_{l-1} + b_l) for l < n,  logits = W_n a_{n-1} + b_n
 *   loss = mean over rows and outputs of  max(z, 0) - z y + log(1 + exp(-|z|))
 *
 * One call gives each model's loss and, when dw is not NULL, the gradients of that loss (upstream
 * gradient 1) for the head's weights and its input: the loss is the end of the graph, so autograd's
 * backward only has to scale them. When correct is not NULL it also counts, per model, the outputs
 * whose sign agrees with the target ((z > 0) == (y > 0.5)), so evaluation needs no logits tensor.
 *
 * Layouts (float32, models m in [m_begin, m_end)): x and dx in the lane layout of gru.c, [M, L,
 * widths[0], NB * LANES] with NB = ceil(B / LANES), C-contiguous; targets as rows, y [M, L, B,
 * widths[n]] with element (m, t, b, o) at y + m * y_strides[0] + t * y_strides[1] + b * y_strides[2]
 * + o (the trainer gathers whole sequences and hands on their time-major view, so copying it into
 * C order would be a pass over the targets outside the threads); w[l] [M, widths[l+1], widths[l]];
 * b[l] [M, widths[l+1]]; dw, db like w, b, all C-contiguous; loss and correct [M].
 * Lanes past B are left out of the loss and get zero gradient.
 */
#include "vec.h"

#define MAX_LAYERS 8

/* Lane vectors per pass. One vector at a time left each output a single chain of dependent FMAs and
 * made every weight-gradient accumulator (56 KB for mlds-gru's head, more than L1) a load and a
 * store per FMA; a pass over GROUP vectors shares each weight load and each accumulator update
 * among them. 4 measured as fast as 8 with AVX-512 and AVX2, and faster than 2 (benchmarks/NOTES.md). */
#define GROUP 4

/* What every pass over one model needs. */
struct head_model {
    i64 B, n, nb, n_act, y_step, y_seq; /* y_*: strides of the targets */
    const i64 *widths, *act_off, *gw_off, *gb_off;
    const float *wm[MAX_LAYERS], *bm[MAX_LAYERS];
    const vf *x;    /* this model's input, lane layout */
    const float *y; /* this model's targets, rows */
    vf *dx;         /* this model's input gradient, or NULL */
    int grads;      /* whether to form the gradients */
    float scale;    /* 1 / (rows * outputs) */
};

/* Scratch of a pass: activations of every layer [GROUP][n_act], targets [GROUP][n_out], two
 * gradient rows [GROUP][widest] each, and the weight-gradient accumulators. */
struct head_scratch {
    vf *act, *yt, *g, *g_prev, *acc;
    i64 widest;
};

/* Lane vectors `first` .. first + count - 1 of the model (vector s is step s / nb, lane vector
 * s % nb) through all layers, the loss and, when asked, back; count is a constant after inlining, so
 * the loops over the group unroll and its accumulators stay in registers. Each sum over the group's
 * vectors runs in a fixed order, so results do not depend on how models are split across threads. */
static inline __attribute__((always_inline)) void head_pass(int count, i64 first, const struct head_model *mo,
                                                            struct head_scratch *sc, vf *loss_acc,
                                                            vf *correct_acc) {
    const i64 nb = mo->nb, n = mo->n, n_act = mo->n_act, w0 = mo->widths[0], n_out = mo->widths[n];
    vi valid[GROUP]; /* lanes holding rows: selected, not multiplied, so a padding lane's inf stays out */
    for (int r = 0; r < count; r++) {
        const i64 t = (first + r) / nb, c = (first + r) % nb;
        const i64 rows = mo->B - c * LANES < LANES ? mo->B - c * LANES : LANES;
        valid[r] = (vi){0};
        for (int lane = 0; lane < rows; lane++) valid[r][lane] = -1;
        const vf *xt = mo->x + t * w0 * nb + c;
        for (i64 i = 0; i < w0; i++) sc->act[r * n_act + i] = xt[i * nb];
        to_lanes(rows, 1, n_out, mo->y + t * mo->y_step + c * LANES * mo->y_seq, mo->y_seq,
                 sc->yt + r * n_out);
    }
    for (i64 l = 0; l < n; l++) {
        const i64 n_in = mo->widths[l];
        const vf *in = sc->act + mo->act_off[l];
        vf *out = sc->act + mo->act_off[l + 1];
        for (i64 o = 0; o < mo->widths[l + 1]; o++) {
            const float *wo = mo->wm[l] + o * n_in;
            vf a[GROUP];
            for (int r = 0; r < count; r++) a[r] = splat(mo->bm[l][o]);
            for (i64 i = 0; i < n_in; i++)
                for (int r = 0; r < count; r++) a[r] += wo[i] * in[r * n_act + i];
            /* relu that keeps NaN, as torch.relu does */
            for (int r = 0; r < count; r++)
                out[r * n_act + o] = l < n - 1 ? select_vf(a[r] <= 0.0f, splat(0.0f), a[r]) : a[r];
        }
    }
    const vf *z = sc->act + mo->act_off[n];
    for (int r = 0; r < count; r++)
        for (i64 o = 0; o < n_out; o++) {
            const vf zo = z[r * n_act + o], yo = sc->yt[r * n_out + o];
            const vf neg_abs = select_vf(zo > 0.0f, -zo, zo);
            const vf e = exp_vf(neg_abs);
            const vf bce = select_vf(zo > 0.0f, zo, splat(0.0f)) - zo * yo + log1p_unit_vf(e);
            *loss_acc += select_vf(valid[r], bce, splat(0.0f));
            if (correct_acc) {
                const vi agrees = valid[r] & ((zo > 0.0f) == (yo > 0.5f));
                *correct_acc += select_vf(agrees, splat(1.0f), splat(0.0f));
            }
            /* sigmoid(z) from e = exp(-|z|) without a second exp */
            const vf sig = select_vf(zo > 0.0f, 1.0f / (1.0f + e), e / (1.0f + e));
            sc->g[r * sc->widest + o] = select_vf(valid[r], sig - yo, splat(0.0f));
        }
    if (!mo->grads) return;
    vf *g = sc->g, *g_prev = sc->g_prev;
    const i64 gs = sc->widest;
    for (i64 l = n - 1; l >= 0; l--) {
        const vf *in = sc->act + mo->act_off[l];
        const i64 n_in = mo->widths[l], n_o = mo->widths[l + 1];
        vf *gw = sc->acc + mo->gw_off[l], *gb = sc->acc + mo->gb_off[l];
        for (i64 o = 0; o < n_o; o++) {
            vf sum = gb[o];
            for (int r = 0; r < count; r++) sum += g[r * gs + o];
            gb[o] = sum;
            for (i64 i = 0; i < n_in; i++) {
                vf s = gw[o * n_in + i];
                for (int r = 0; r < count; r++) s += g[r * gs + o] * in[r * n_act + i];
                gw[o * n_in + i] = s;
            }
        }
        if (l == 0 && !mo->dx) break;
        for (i64 i = 0; i < n_in; i++) {
            vf s[GROUP];
            for (int r = 0; r < count; r++) s[r] = splat(0.0f);
            for (i64 o = 0; o < n_o; o++) {
                const float w = mo->wm[l][o * n_in + i];
                for (int r = 0; r < count; r++) s[r] += w * g[r * gs + o];
            }
            /* a_l = relu(.) > 0 exactly where relu passes the gradient */
            for (int r = 0; r < count; r++)
                g_prev[r * gs + i] =
                    l > 0 ? select_vf(in[r * n_act + i] > 0.0f, s[r], splat(0.0f)) : s[r] * mo->scale;
        }
        vf *swap = g;
        g = g_prev;
        g_prev = swap;
    }
    if (mo->dx)
        for (int r = 0; r < count; r++) {
            const i64 t = (first + r) / nb, c = (first + r) % nb;
            for (i64 i = 0; i < w0; i++) mo->dx[(t * w0 + i) * nb + c] = g[r * gs + i];
        }
}

int mlc_head_max_layers(void) { return MAX_LAYERS; }

int mlc_head_loss(i64 L, i64 B, i64 n, const i64 *widths, const float *x, const float *const *w,
                  const float *const *b, const float *y, const i64 *y_strides, float *loss, float *correct,
                  float *dx, float *const *dw, float *const *db, i64 m_begin, i64 m_end) {
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
    const size_t n_scratch = (size_t)(GROUP * (n_act + n_out + 2 * widest) + n_grad);
    vf *scratch = aligned_alloc(sizeof(vf), sizeof(vf) * (n_scratch + 1));
    if (!scratch) return 1;
    struct head_scratch sc = {.act = scratch, .widest = widest};
    sc.yt = sc.act + GROUP * n_act;
    sc.g = sc.yt + GROUP * n_out;
    sc.g_prev = sc.g + GROUP * widest;
    sc.acc = sc.g_prev + GROUP * widest;
    const i64 nb = (B + LANES - 1) / LANES, w0 = widths[0], vectors = L * nb;
    struct head_model mo = {
        .B = B, .n = n, .nb = nb, .n_act = n_act, .y_step = y_strides[1], .y_seq = y_strides[2],
        .widths = widths, .act_off = act_off,
        .gw_off = gw_off, .gb_off = gb_off, .grads = dw != NULL, .scale = 1.0f / (float)(L * B * n_out),
    };
    for (i64 m = m_begin; m < m_end; m++) {
        for (i64 l = 0; l < n; l++) {
            mo.wm[l] = w[l] + m * widths[l + 1] * widths[l];
            mo.bm[l] = b[l] + m * widths[l + 1];
        }
        mo.x = (const vf *)x + m * L * w0 * nb;
        mo.y = y + m * y_strides[0];
        mo.dx = dx ? (vf *)dx + m * L * w0 * nb : NULL;
        memset(sc.acc, 0, sizeof(vf) * (size_t)n_grad);
        vf loss_acc = {0}, correct_acc = {0}; /* per lane: exact below 2^24 outputs */
        vf *counted = correct ? &correct_acc : NULL;
        const i64 whole = vectors - vectors % GROUP;
        for (i64 s = 0; s < whole; s += GROUP) head_pass(GROUP, s, &mo, &sc, &loss_acc, counted);
        for (i64 s = whole; s < vectors; s++) head_pass(1, s, &mo, &sc, &loss_acc, counted);
        loss[m] = hsum(loss_acc) * mo.scale;
        if (correct) correct[m] = hsum(correct_acc);
        if (!dw) continue;
        for (i64 l = 0; l < n; l++) {
            const i64 n_w = widths[l + 1] * widths[l];
            for (i64 k = 0; k < n_w; k++) dw[l][m * n_w + k] = hsum(sc.acc[gw_off[l] + k]) * mo.scale;
            for (i64 o = 0; o < widths[l + 1]; o++)
                db[l][m * widths[l + 1] + o] = hsum(sc.acc[gb_off[l] + o]) * mo.scale;
        }
    }
    free(scratch);
    return 0;
}
