/* head.c: on-device last-layer retraining (see ekws/head.h). Every float32 operation runs in the
 * order written here; edgekws/retrain/headmath.py does the same operations in the same order, so
 * both produce the same bits. No libm: exp, log and sqrt are the fixed approximations below. */
#include "ekws/head.h"
#include "ekws/le.h"
#include "ekws/model.h" /* ekws_crc32 */

#include <float.h>
#include <string.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "head.c needs FLT_EVAL_METHOD == 0 (float32 arithmetic without excess precision)"
#endif

/* Header word indices of the head blob. */
enum {
    HB_MAGIC, HB_VERSION, HB_TOTAL, HB_CRC, HB_CLASSES, HB_EMBED, HB_FLAGS, HB_IN_ZP, HB_IN_SCALE,
    HB_OUT_ZP, HB_OUT_SCALE, HB_RESERVED, HB_WORDS
};

#define BIAS_LIMIT 2147483520.0f /* largest float32 below 2^31 */

static size_t align4(size_t n) { return (n + 3u) & ~(size_t)3u; }

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Neither infinite nor NaN (from the bits: no libm, and no reliance on NaN compares). */
static int is_finite(float f) { return (f2u(f) & 0x7F800000u) != 0x7F800000u; }

static uint32_t s2u(int32_t s) {
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return u;
}

static int32_t u2s(uint32_t u) {
    int32_t s;
    memcpy(&s, &u, sizeof s);
    return s;
}

/* ---- float32 helpers (mirrored in headmath.py) ------------------------------------------------ */

float ekws_head_expf(float x) {
    return ekws_expf(x);
}

/* ---- self-training's choice -------------------------------------------------------------------- */

static uint32_t row_argmax(const int8_t *row, uint32_t num_classes) {
    uint32_t best = 0;
    for (uint32_t j = 1; j < num_classes; ++j) {
        if (row[j] > row[best]) best = j;
    }
    return best;
}

ekws_status_t ekws_head_self_train_pick(const int8_t *logits, uint32_t n, uint32_t num_classes, float scale,
                                        uint32_t fraction_ppm, float *work, uint32_t *idx, uint32_t *count) {
    if (count == NULL || (n > 0u && (logits == NULL || work == NULL || idx == NULL))) return EKWS_ERR_ARG;
    if (num_classes < 2u || num_classes > EKWS_HEAD_MAX_CLASSES || n > EKWS_HEAD_MAX_EXAMPLES) return EKWS_ERR_ARG;
    if (!is_finite(scale) || !(scale > 0.0f) || fraction_ppm < 1u || fraction_ppm > 1000000u) return EKWS_ERR_ARG;
    *count = 0u;
    for (uint32_t i = 0; i < n; ++i) {   /* idx[i]: the label of clip i; work[i]: its s (>= 1: its own term is 1) */
        const int8_t *row = logits + (size_t)i * num_classes;
        idx[i] = row_argmax(row, num_classes);
        const int32_t top = row[idx[i]];
        float s = 0.0f;
        for (uint32_t j = 0; j < num_classes; ++j) s += ekws_expf(scale * (float)((int32_t)row[j] - top));
        work[i] = s;
    }
    for (uint32_t c = 0; c < num_classes; ++c) {
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; ++i) m += idx[i] == c;
        const uint32_t k = (uint32_t)(((uint64_t)fraction_ppm * m + 999999u) / 1000000u);   /* <= m */
        for (uint32_t r = 0; r < k; ++r) {             /* the surest unchosen clip of label c; chosen: -1 */
            uint32_t best = n;
            for (uint32_t i = 0; i < n; ++i) {
                if (idx[i] == c && work[i] >= 0.0f && (best == n || work[i] < work[best])) best = i;
            }
            if (best == n) break;                     /* not reached: k <= m */
            work[best] = -1.0f;
        }
    }
    for (uint32_t i = 0; i < n; ++i) {                 /* the chosen, ascending, over the labels (count <= i) */
        if (work[i] < 0.0f) idx[(*count)++] = i;
    }
    return EKWS_OK;
}

/* log(x) for a normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)); log m = 2 atanh((m-1)/(m+1)). */
static float head_logf(float x) {
    const uint32_t u = f2u(x);
    int32_t e = (int32_t)((u >> 23) & 0xFFu) - 127;
    float m = u2f((u & 0x7FFFFFu) | 0x3F800000u);
    if (m > 1.41421356f) {
        m = m * 0.5f;
        e += 1;
    }
    const float s = (m - 1.0f) / (m + 1.0f);
    const float s2 = s * s;
    float p = 0.222222222f;
    p = p * s2 + 0.285714286f;
    p = p * s2 + 0.4f;
    p = p * s2 + 0.666666667f;
    p = p * s2 + 2.0f;
    return (float)e * 0.693147181f + p * s;
}

/* sqrt(x) for x >= 0: a bit-level first guess and three Newton steps (not libm's rounding). */
static float head_sqrtf(float x) {
    if (!(x > 0.0f)) {
        return 0.0f;
    }
    float y = u2f(0x1FBD1DF5u + (f2u(x) >> 1));
    for (int i = 0; i < 3; i++) {
        y = 0.5f * (y + x / y);
    }
    return y;
}

/* A head row's int8 weight scale: its largest magnitude / 127 (1 for an all-zero row). */
static float row_scale(const float *w, uint32_t e) {
    float amax = 0.0f;
    for (uint32_t k = 0; k < e; k++) {
        const float a = w[k] < 0.0f ? -w[k] : w[k];
        amax = a > amax ? a : amax;
    }
    return amax > 0.0f ? amax / 127.0f : 1.0f;
}

/* Round half away from zero. A NaN, an infinity or |v| >= 2^31 (already an integer) is returned
 * as it is, so no value is converted to int32 out of its range. */
static float round_half_away(float v) {
    if (!(v > -2147483648.0f && v < 2147483648.0f)) {
        return v;
    }
    float r = (float)(int32_t)v;
    if (v - r >= 0.5f) {
        r += 1.0f;
    } else if (r - v >= 0.5f) {
        r -= 1.0f;
    }
    return r;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static uint32_t xorshift32(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

ekws_status_t ekws_head_quantize_multiplier(float m, int32_t *multiplier, int32_t *shift) {
    /* m = f 2^e with f in [0.5, 1): M = f 2^31 is exact (24-bit mantissa), n = 31 - e. */
    if (multiplier == NULL || shift == NULL) {
        return EKWS_ERR_NULL;
    }
    const uint32_t u = f2u(m);
    const uint32_t biased = (u >> 23) & 0xFFu;
    if ((u >> 31) != 0u && m != 0.0f) {
        return EKWS_ERR_ARG;
    }
    if (biased == 0xFFu) {
        return EKWS_ERR_ARG; /* inf or nan */
    }
    if (m == 0.0f || biased == 0u) {
        /* zero, or subnormal: below 2^-126, every bit shifts out at n = 62 (as in Python) */
        *multiplier = 0;
        *shift = m == 0.0f ? EKWS_SHIFT_MIN : EKWS_SHIFT_MAX;
        return EKWS_OK;
    }
    const int32_t e = (int32_t)biased - 126;
    int64_t mult = (int64_t)((u & 0x7FFFFFu) | 0x800000u) << 7;
    int32_t n = 31 - e;
    if (n < EKWS_SHIFT_MIN) {
        return EKWS_ERR_ARG;
    }
    if (n > EKWS_SHIFT_MAX) {
        const int32_t extra = n - EKWS_SHIFT_MAX;
        mult = extra < 63 ? (mult + ((int64_t)1 << (extra - 1))) >> extra : 0;
        n = EKWS_SHIFT_MAX;
    }
    *multiplier = (int32_t)mult;
    *shift = n;
    return EKWS_OK;
}

/* ---- trainer ------------------------------------------------------------------------------------ */

static int sizes_ok(uint32_t num_classes, uint32_t embed_size, uint32_t max_examples) {
    return num_classes >= 2u && num_classes <= EKWS_HEAD_MAX_CLASSES && embed_size >= 1u &&
           embed_size <= EKWS_HEAD_MAX_EMBED && max_examples <= EKWS_HEAD_MAX_EXAMPLES;
}

size_t ekws_head_train_size(uint32_t num_classes, uint32_t embed_size) {
    if (!sizes_ok(num_classes, embed_size, 0u)) {
        return 0;
    }
    const size_t c = num_classes, e = embed_size;
    return 4u * (3u * c * e + 4u * c + 3u * e);
}

size_t ekws_head_store_size(uint32_t num_classes, uint32_t embed_size, uint32_t max_examples) {
    if (!sizes_ok(num_classes, embed_size, max_examples)) {
        return 0;
    }
    const size_t c = num_classes, e = embed_size, n = max_examples;
    return 4u * c + align4(n * e) + align4(n) + align4(2u * n);
}

size_t ekws_head_workspace_size(uint32_t num_classes, uint32_t embed_size, uint32_t max_examples) {
    const size_t store = ekws_head_store_size(num_classes, embed_size, max_examples);
    return store == 0u ? 0u : ekws_head_train_size(num_classes, embed_size) + store;
}

size_t ekws_head_trainer_struct_size(void) { return sizeof(ekws_head_trainer_t); }

size_t ekws_head_struct_size(void) { return sizeof(ekws_head_t); }

static int config_ok(const ekws_head_config_t *cfg, float emb_scale, int32_t emb_zp) {
    /* NaN fails every comparison; is_finite also refuses +inf */
    return sizes_ok(cfg->num_classes, cfg->embed_size, cfg->max_examples) && cfg->batch >= 1u && cfg->lr > 0.0f &&
           is_finite(cfg->lr) && cfg->momentum >= 0.0f && cfg->momentum < 1.0f && cfg->weight_decay >= 0.0f &&
           is_finite(cfg->weight_decay) && cfg->imprint_scale > 0.0f && is_finite(cfg->imprint_scale) &&
           emb_scale > 0.0f && emb_scale < FLT_MAX && emb_zp >= -128 && emb_zp <= 127;
}

/* Point the trainer into store (examples) and train (float32 memory); the arguments are checked. */
static void bind(ekws_head_trainer_t *tr, const ekws_head_config_t *cfg, void *store, void *train, float emb_scale,
                 int32_t emb_zp) {
    const size_t c = cfg->num_classes, e = cfg->embed_size, n = cfg->max_examples;
    memset(store, 0, ekws_head_store_size(cfg->num_classes, cfg->embed_size, cfg->max_examples));
    float *f = (float *)train;
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    tr->emb_scale = emb_scale;
    tr->emb_zp = emb_zp;
    tr->rng = cfg->seed != 0u ? cfg->seed : 1u;
    tr->weight = f;
    tr->vel_w = f + c * e;
    tr->grad_w = f + 2u * c * e;
    tr->bias = f + 3u * c * e;
    tr->vel_b = tr->bias + c;
    tr->grad_b = tr->vel_b + c;
    tr->logits = tr->grad_b + c;
    tr->x = tr->logits + c;
    tr->mean = tr->x + e;
    tr->isd = tr->mean + e;
    tr->count = (uint32_t *)store;
    uint8_t *bytes = (uint8_t *)store + 4u * c;
    tr->emb = (int8_t *)bytes;
    tr->labels = bytes + align4(n * e);
    tr->order = (uint16_t *)(void *)(bytes + align4(n * e) + align4(n));
}

ekws_status_t ekws_head_trainer_init_split(ekws_head_trainer_t *tr, const ekws_head_config_t *cfg, void *store,
                                           size_t store_size, void *train, size_t train_size, float emb_scale,
                                           int32_t emb_zp) {
    if (tr == NULL || cfg == NULL || store == NULL || train == NULL) {
        return EKWS_ERR_NULL;
    }
    if (!config_ok(cfg, emb_scale, emb_zp) || ((uintptr_t)store & 3u) != 0u || ((uintptr_t)train & 3u) != 0u) {
        return EKWS_ERR_ARG;
    }
    const size_t need_store = ekws_head_store_size(cfg->num_classes, cfg->embed_size, cfg->max_examples);
    const size_t need_train = ekws_head_train_size(cfg->num_classes, cfg->embed_size);
    const uintptr_t s0 = (uintptr_t)store, t0 = (uintptr_t)train; /* addresses: unrelated objects */
    if (s0 < t0 + need_train && t0 < s0 + need_store) {
        return EKWS_ERR_ARG; /* the two regions overlap */
    }
    if (store_size < need_store || train_size < need_train) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    bind(tr, cfg, store, train, emb_scale, emb_zp); /* the training memory: zeroed on first use (train_begin) */
    return EKWS_OK;
}

ekws_status_t ekws_head_trainer_init(ekws_head_trainer_t *tr, const ekws_head_config_t *cfg, void *workspace,
                                     size_t size, float emb_scale, int32_t emb_zp) {
    if (tr == NULL || cfg == NULL || workspace == NULL) {
        return EKWS_ERR_NULL;
    }
    if (!config_ok(cfg, emb_scale, emb_zp) || ((uintptr_t)workspace & 3u) != 0u) {
        return EKWS_ERR_ARG;
    }
    /* one block: the training memory first, then the store */
    const size_t train = ekws_head_train_size(cfg->num_classes, cfg->embed_size);
    if (size < ekws_head_workspace_size(cfg->num_classes, cfg->embed_size, cfg->max_examples)) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    bind(tr, cfg, (uint8_t *)workspace + train, workspace, emb_scale, emb_zp);
    memset(workspace, 0, train);
    tr->train_ready = 1u;
    return EKWS_OK;
}

/* The training memory, zeroed on its first use: until then it may be another buffer (the model's
 * arena while the examples are collected). */
static void train_begin(ekws_head_trainer_t *tr) {
    if (!tr->train_ready) {
        memset(tr->weight, 0, ekws_head_train_size(tr->cfg.num_classes, tr->cfg.embed_size));
        tr->train_ready = 1u;
    }
}

ekws_status_t ekws_head_add_example(ekws_head_trainer_t *tr, const int8_t *embedding, size_t len, uint32_t label) {
    if (tr == NULL || embedding == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL) {
        return EKWS_ERR_STATE;
    }
    if (len != tr->cfg.embed_size || label >= tr->cfg.num_classes) {
        return EKWS_ERR_ARG;
    }
    if (tr->num_examples >= tr->cfg.max_examples) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    memcpy(tr->emb + (size_t)tr->num_examples * len, embedding, len);
    tr->labels[tr->num_examples] = (uint8_t)label;
    tr->count[label]++;
    tr->num_examples++;
    return EKWS_OK;
}

ekws_status_t ekws_head_set_weights(ekws_head_trainer_t *tr, const float *weight, const float *bias) {
    if (tr == NULL || weight == NULL || bias == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || tr->standardized) { /* after standardize the rows live in another space */
        return EKWS_ERR_STATE;
    }
    train_begin(tr);
    const size_t c = tr->cfg.num_classes, e = tr->cfg.embed_size;
    memcpy(tr->weight, weight, c * e * sizeof(float));
    memcpy(tr->bias, bias, c * sizeof(float));
    memset(tr->vel_w, 0, c * e * sizeof(float));
    memset(tr->vel_b, 0, c * sizeof(float));
    return EKWS_OK;
}

/* x[0..E) = emb_scale * (q - emb_zp) of stored example i (the embedding's own space). */
static void dequant_raw(const ekws_head_trainer_t *tr, uint32_t i, float *x) {
    const uint32_t e = tr->cfg.embed_size;
    const int8_t *q = tr->emb + (size_t)i * e;
    for (uint32_t k = 0; k < e; k++) {
        x[k] = (float)((int32_t)q[k] - tr->emb_zp) * tr->emb_scale;
    }
}

/* The training-space example: raw, or (raw - mean) * isd once imprint has standardized. */
static void dequant(const ekws_head_trainer_t *tr, uint32_t i, float *x) {
    dequant_raw(tr, i, x);
    if (tr->standardized) {
        for (uint32_t k = 0; k < tr->cfg.embed_size; k++) {
            x[k] = (x[k] - tr->mean[k]) * tr->isd[k];
        }
    }
}

/* logits[c] = (sum_k w[c][k] x[k], k ascending) + b[c]. */
static void head_logits(const float *w, const float *b, uint32_t c_n, uint32_t e, const float *x, float *logits) {
    for (uint32_t c = 0; c < c_n; c++) {
        const float *wc = w + (size_t)c * e;
        float acc = 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            acc = acc + wc[k] * x[k];
        }
        logits[c] = acc + b[c];
    }
}

/* Per-dimension mean and 1/std of the examples; the rows given so far move to that space. */
static void standardize(ekws_head_trainer_t *tr) {
    const uint32_t c_n = tr->cfg.num_classes, e = tr->cfg.embed_size, n = tr->num_examples;
    float *mean = tr->mean, *isd = tr->isd, *x = tr->x;
    const float nf = (float)n;
    /* per-dimension mean and variance (variance accumulated in isd) */
    memset(mean, 0, e * sizeof(float));
    memset(isd, 0, e * sizeof(float));
    for (uint32_t i = 0; i < n; i++) {
        dequant_raw(tr, i, x);
        for (uint32_t k = 0; k < e; k++) {
            mean[k] = mean[k] + x[k];
        }
    }
    for (uint32_t k = 0; k < e; k++) {
        mean[k] = mean[k] / nf;
    }
    for (uint32_t i = 0; i < n; i++) {
        dequant_raw(tr, i, x);
        for (uint32_t k = 0; k < e; k++) {
            const float d = x[k] - mean[k];
            isd[k] = isd[k] + d * d;
        }
    }
    /* the floor, half a quantization step squared, keeps constant dimensions finite */
    const float half = 0.5f * tr->emb_scale, floor_var = half * half;
    for (uint32_t k = 0; k < e; k++) {
        isd[k] = 1.0f / head_sqrtf(isd[k] / nf + floor_var);
    }
    /* rows given so far (classes without examples keep them) move to the standardized space */
    for (uint32_t c = 0; c < c_n; c++) {
        float *w = tr->weight + (size_t)c * e;
        float acc = 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            acc = acc + w[k] * mean[k];
            w[k] = w[k] / isd[k];
        }
        tr->bias[c] = tr->bias[c] + acc;
    }
    tr->standardized = 1u;
    memset(tr->vel_w, 0, (size_t)c_n * e * sizeof(float));
    memset(tr->vel_b, 0, c_n * sizeof(float));
}

/* Standardize once, after the examples are in: EKWS_OK, or why not. */
static ekws_status_t standardize_once(ekws_head_trainer_t *tr) {
    if (tr == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || tr->num_examples == 0u || tr->standardized) {
        return EKWS_ERR_STATE;
    }
    train_begin(tr);
    standardize(tr);
    return EKWS_OK;
}

ekws_status_t ekws_head_standardize(ekws_head_trainer_t *tr) {
    return standardize_once(tr);
}

ekws_status_t ekws_head_imprint(ekws_head_trainer_t *tr) {
    const ekws_status_t st = standardize_once(tr);
    if (st != EKWS_OK) {
        return st;
    }
    const uint32_t c_n = tr->cfg.num_classes, e = tr->cfg.embed_size, n = tr->num_examples;
    float *x = tr->x, *sums = tr->grad_w;
    const float nf = (float)n;
    /* class sums of the standardized examples (in grad_w) and their mean length r */
    memset(sums, 0, (size_t)c_n * e * sizeof(float));
    float rsum = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        dequant(tr, i, x);
        float *m = sums + (size_t)tr->labels[i] * e;
        float s = 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            m[k] = m[k] + x[k];
            s = s + x[k] * x[k];
        }
        rsum = rsum + head_sqrtf(s);
    }
    float r = rsum / nf;
    if (!(r > 0.0f)) {
        r = 1.0f; /* all examples identical */
    }
    const float alpha = tr->cfg.imprint_scale / r;
    for (uint32_t c = 0; c < c_n; c++) {
        if (tr->count[c] == 0u) {
            continue;
        }
        const float *m = sums + (size_t)c * e;
        float *w = tr->weight + (size_t)c * e;
        float s = 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            s = s + m[k] * m[k];
        }
        const float norm = head_sqrtf(s);
        const float g = norm > 0.0f ? alpha / norm : 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            w[k] = m[k] * g;
        }
        tr->bias[c] = 0.0f;
    }
    memset(sums, 0, (size_t)c_n * e * sizeof(float)); /* velocities: zeroed by standardize() */
    return EKWS_OK;
}

ekws_status_t ekws_head_folded(const ekws_head_trainer_t *tr, float *weight, float *bias) {
    if (tr == NULL || weight == NULL || bias == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || !tr->train_ready) { /* nothing trained in the training memory yet */
        return EKWS_ERR_STATE;
    }
    const uint32_t c_n = tr->cfg.num_classes, e = tr->cfg.embed_size;
    for (uint32_t c = 0; c < c_n; c++) {
        const float *src = tr->weight + (size_t)c * e;
        float *w = weight + (size_t)c * e;
        float acc = 0.0f;
        for (uint32_t k = 0; k < e; k++) {
            w[k] = tr->standardized ? src[k] * tr->isd[k] : src[k];
            acc = acc + w[k] * tr->mean[k];
        }
        bias[c] = tr->standardized ? tr->bias[c] - acc : tr->bias[c];
    }
    return EKWS_OK;
}

ekws_status_t ekws_head_gradient(ekws_head_trainer_t *tr, const uint16_t *order, uint32_t n, float *loss) {
    if (tr == NULL || order == NULL || loss == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL) {
        return EKWS_ERR_STATE;
    }
    const uint32_t c_n = tr->cfg.num_classes, e = tr->cfg.embed_size;
    for (uint32_t j = 0; j < n; j++) {
        if (order[j] >= tr->num_examples) {
            return EKWS_ERR_ARG;
        }
    }
    train_begin(tr);
    memset(tr->grad_w, 0, (size_t)c_n * e * sizeof(float));
    memset(tr->grad_b, 0, c_n * sizeof(float));
    float total = 0.0f;
    for (uint32_t j = 0; j < n; j++) {
        const uint32_t i = order[j];
        const uint32_t y = tr->labels[i];
        float *p = tr->logits;
        dequant(tr, i, tr->x);
        head_logits(tr->weight, tr->bias, c_n, e, tr->x, p);
        float mx = p[0];
        for (uint32_t c = 1; c < c_n; c++) {
            mx = p[c] > mx ? p[c] : mx;
        }
        const float zy = p[y] - mx;
        float s = 0.0f;
        for (uint32_t c = 0; c < c_n; c++) {
            p[c] = ekws_head_expf(p[c] - mx);
            s = s + p[c];
        }
        total = total + (head_logf(s) - zy);
        for (uint32_t c = 0; c < c_n; c++) {
            const float g = p[c] / s - (c == y ? 1.0f : 0.0f);
            float *gw = tr->grad_w + (size_t)c * e;
            for (uint32_t k = 0; k < e; k++) {
                gw[k] = gw[k] + g * tr->x[k];
            }
            tr->grad_b[c] = tr->grad_b[c] + g;
        }
    }
    *loss = total;
    return EKWS_OK;
}

ekws_status_t ekws_head_step(ekws_head_trainer_t *tr, const uint16_t *order, uint32_t n, float *loss) {
    if (n == 0u) {
        return EKWS_ERR_ARG;
    }
    const ekws_status_t st = ekws_head_gradient(tr, order, n, loss);
    if (st != EKWS_OK) {
        return st;
    }
    const size_t ce = (size_t)tr->cfg.num_classes * tr->cfg.embed_size;
    const float nf = (float)n, mom = tr->cfg.momentum, lr = tr->cfg.lr, wd = tr->cfg.weight_decay;
    for (size_t i = 0; i < ce; i++) {
        const float d = tr->grad_w[i] / nf + wd * tr->weight[i];
        tr->vel_w[i] = mom * tr->vel_w[i] + d;
        tr->weight[i] = tr->weight[i] - lr * tr->vel_w[i];
    }
    for (uint32_t c = 0; c < tr->cfg.num_classes; c++) {
        const float d = tr->grad_b[c] / nf;
        tr->vel_b[c] = mom * tr->vel_b[c] + d;
        tr->bias[c] = tr->bias[c] - lr * tr->vel_b[c];
    }
    return EKWS_OK;
}

ekws_status_t ekws_head_train_epoch(ekws_head_trainer_t *tr, float *mean_loss) {
    if (tr == NULL || mean_loss == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || tr->num_examples == 0u) {
        return EKWS_ERR_STATE;
    }
    const uint32_t n = tr->num_examples;
    for (uint32_t i = 0; i < n; i++) {
        tr->order[i] = (uint16_t)i;
    }
    for (uint32_t i = n - 1u; i > 0u; i--) {
        const uint32_t j = xorshift32(&tr->rng) % (i + 1u);
        const uint16_t t = tr->order[i];
        tr->order[i] = tr->order[j];
        tr->order[j] = t;
    }
    float total = 0.0f;
    for (uint32_t start = 0; start < n; start += tr->cfg.batch) {
        const uint32_t b = n - start < tr->cfg.batch ? n - start : tr->cfg.batch;
        float loss = 0.0f;
        const ekws_status_t st = ekws_head_step(tr, tr->order + start, b, &loss);
        if (st != EKWS_OK) {
            return st;
        }
        total = total + loss;
    }
    *mean_loss = total / (float)n;
    tr->epochs++;
    return EKWS_OK;
}

ekws_status_t ekws_head_logits_f32(ekws_head_trainer_t *tr, uint32_t example, float *logits) {
    if (tr == NULL || logits == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || !tr->train_ready) { /* nothing trained in the training memory yet */
        return EKWS_ERR_STATE;
    }
    if (example >= tr->num_examples) {
        return EKWS_ERR_ARG;
    }
    dequant(tr, example, tr->x);
    head_logits(tr->weight, tr->bias, tr->cfg.num_classes, tr->cfg.embed_size, tr->x, logits);
    return EKWS_OK;
}

/* ---- blob --------------------------------------------------------------------------------------- */

size_t ekws_head_blob_size(uint32_t num_classes, uint32_t embed_size, int with_float) {
    const size_t c = num_classes, e = embed_size;
    return EKWS_HEAD_HEADER_SIZE + align4(c * e) + 12u * c + (with_float ? 4u * c * e + 4u * c : 0u);
}

ekws_status_t ekws_head_quantize(ekws_head_trainer_t *tr, void *out, size_t cap, int with_float, size_t *size) {
    if (tr == NULL || out == NULL || size == NULL) {
        return EKWS_ERR_NULL;
    }
    if (tr->weight == NULL || !tr->train_ready) { /* nothing trained in the training memory yet */
        return EKWS_ERR_STATE;
    }
    const uint32_t c_n = tr->cfg.num_classes, e = tr->cfg.embed_size;
    const size_t total = ekws_head_blob_size(c_n, e, with_float);
    if (cap < total) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    /* the head in the embedding's space, into the gradient buffers (scratch between steps) */
    float *fw = tr->grad_w, *fb = tr->grad_b;
    (void)ekws_head_folded(tr, fw, fb);
    /* a diverged training (inf / NaN weights) has no int8 head: refuse it, out untouched */
    for (size_t i = 0; i < (size_t)c_n * e; i++) {
        if (!is_finite(fw[i])) {
            return EKWS_ERR_ARG;
        }
    }
    for (uint32_t c = 0; c < c_n; c++) {
        if (!is_finite(fb[c])) {
            return EKWS_ERR_ARG;
        }
    }
    /* output range: float logits of the stored examples, 0 included (finite, or no head) */
    float lo = 0.0f, hi = 0.0f;
    for (uint32_t i = 0; i < tr->num_examples; i++) {
        dequant_raw(tr, i, tr->x);
        head_logits(fw, fb, c_n, e, tr->x, tr->logits);
        for (uint32_t c = 0; c < c_n; c++) {
            if (!is_finite(tr->logits[c])) {
                return EKWS_ERR_ARG;
            }
            lo = tr->logits[c] < lo ? tr->logits[c] : lo;
            hi = tr->logits[c] > hi ? tr->logits[c] : hi;
        }
    }
    if (hi - lo < 1e-6f) {
        hi = lo + 1e-6f;
    }
    const float out_scale = (hi - lo) / 255.0f;
    if (!is_finite(out_scale)) {
        return EKWS_ERR_ARG; /* hi - lo overflows float32 */
    }
    const int32_t out_zp = (int32_t)clampf(round_half_away(-128.0f - lo / out_scale), -128.0f, 127.0f);

    /* every class's requantization multiplier first: a refusal leaves out untouched */
    for (uint32_t c = 0; c < c_n; c++) {
        int32_t mult = 0, shift = 0;
        if (ekws_head_quantize_multiplier(tr->emb_scale * row_scale(fw + (size_t)c * e, e) / out_scale, &mult,
                                          &shift) != EKWS_OK) {
            return EKWS_ERR_ARG;
        }
    }
    uint8_t *b = (uint8_t *)out;
    memset(b, 0, total);
    const size_t w_off = EKWS_HEAD_HEADER_SIZE, bias_off = w_off + align4((size_t)c_n * e);
    const size_t mult_off = bias_off + 4u * c_n, shift_off = mult_off + 4u * c_n, fw_off = shift_off + 4u * c_n;
    const size_t fb_off = fw_off + 4u * (size_t)c_n * e;
    for (uint32_t c = 0; c < c_n; c++) {
        const float *w = fw + (size_t)c * e;
        const float sw = row_scale(w, e);
        for (uint32_t k = 0; k < e; k++) {
            const float r = w[k] / sw; /* NaN only as 0 / 0, when amax / 127 underflows to 0 */
            const float q = clampf(round_half_away(clampf(r == r ? r : 0.0f, -200.0f, 200.0f)), -127.0f, 127.0f);
            b[w_off + (size_t)c * e + k] = (uint8_t)(int8_t)q;
        }
        const float s_in_w = tr->emb_scale * sw;
        const float rb = fb[c] / s_in_w; /* NaN only as 0 / 0 (s_in_w underflowed to 0) */
        const float bq = round_half_away(clampf(rb == rb ? rb : 0.0f, -BIAS_LIMIT, BIAS_LIMIT));
        int32_t mult = 0, shift = 0;
        if (ekws_head_quantize_multiplier(s_in_w / out_scale, &mult, &shift) != EKWS_OK) {
            return EKWS_ERR_ARG;
        }
        ekws_wr32le(b + bias_off + 4u * c, s2u((int32_t)bq));
        ekws_wr32le(b + mult_off + 4u * c, s2u(mult));
        ekws_wr32le(b + shift_off + 4u * c, s2u(shift));
        if (with_float) {
            for (uint32_t k = 0; k < e; k++) {
                ekws_wr32le(b + fw_off + 4u * ((size_t)c * e + k), f2u(w[k]));
            }
            ekws_wr32le(b + fb_off + 4u * c, f2u(fb[c]));
        }
    }
    const uint32_t hdr[HB_WORDS] = {
        EKWS_HEAD_MAGIC, EKWS_HEAD_VERSION, (uint32_t)total, 0u, c_n, e, with_float ? EKWS_HEAD_FLAG_FLOAT : 0u,
        s2u(tr->emb_zp), f2u(tr->emb_scale), s2u(out_zp), f2u(out_scale), 0u};
    for (uint32_t i = 0; i < HB_WORDS; i++) {
        ekws_wr32le(b + 4u * i, hdr[i]);
    }
    ekws_wr32le(b + 4u * HB_CRC, ekws_crc32(0u, b, total));
    *size = total;
    return EKWS_OK;
}

const char *ekws_head_check(const void *blob, size_t size) {
    const uint8_t *b = (const uint8_t *)blob;
    if (b == NULL) {
        return "null blob";
    }
    if (((uintptr_t)b & 3u) != 0u) {
        return "blob not 4-byte aligned";
    }
    if (size < EKWS_HEAD_HEADER_SIZE) {
        return "truncated header";
    }
    if (ekws_rd32le(b + 4u * HB_MAGIC) != EKWS_HEAD_MAGIC) {
        return "bad magic";
    }
    if (ekws_rd32le(b + 4u * HB_VERSION) != EKWS_HEAD_VERSION) {
        return "unsupported version";
    }
    const uint32_t c_n = ekws_rd32le(b + 4u * HB_CLASSES), e = ekws_rd32le(b + 4u * HB_EMBED), flags = ekws_rd32le(b + 4u * HB_FLAGS);
    if (c_n < 2u || c_n > EKWS_HEAD_MAX_CLASSES || e < 1u || e > EKWS_HEAD_MAX_EMBED || (flags & ~1u) != 0u) {
        return "bad dimensions or flags";
    }
    const uint32_t total = ekws_rd32le(b + 4u * HB_TOTAL);
    if (total != ekws_head_blob_size(c_n, e, (int)(flags & 1u))) {
        return "size field disagrees with the dimensions";
    }
    if (size < total) {
        return "truncated blob";
    }
    const uint32_t stored = ekws_rd32le(b + 4u * HB_CRC);
    uint32_t crc = ekws_crc32(0u, b, 4u * HB_CRC);
    const uint8_t zero[4] = {0, 0, 0, 0};
    crc = ekws_crc32(crc, zero, 4u);
    crc = ekws_crc32(crc, b + 4u * (HB_CRC + 1), total - 4u * (HB_CRC + 1));
    if (crc != stored) {
        return "bad crc";
    }
    const int32_t in_zp = u2s(ekws_rd32le(b + 4u * HB_IN_ZP)), out_zp = u2s(ekws_rd32le(b + 4u * HB_OUT_ZP));
    const float in_scale = u2f(ekws_rd32le(b + 4u * HB_IN_SCALE)), out_scale = u2f(ekws_rd32le(b + 4u * HB_OUT_SCALE));
    if (in_zp < -128 || in_zp > 127 || out_zp < -128 || out_zp > 127 || !(in_scale > 0.0f) ||
        !(in_scale < FLT_MAX) || !(out_scale > 0.0f) || !(out_scale < FLT_MAX)) {
        return "bad quantization parameters";
    }
    const size_t mult_off = EKWS_HEAD_HEADER_SIZE + align4((size_t)c_n * e) + 4u * c_n;
    for (uint32_t c = 0; c < c_n; c++) {
        const int32_t m = u2s(ekws_rd32le(b + mult_off + 4u * c)), s = u2s(ekws_rd32le(b + mult_off + 4u * (c_n + c)));
        if (m < 0 || s < EKWS_SHIFT_MIN || s > EKWS_SHIFT_MAX) {
            return "bad multiplier or shift";
        }
    }
    return NULL;
}

ekws_status_t ekws_head_load(ekws_head_t *head, const void *blob, size_t size) {
    if (head == NULL || blob == NULL) {
        return EKWS_ERR_NULL;
    }
    if (ekws_head_check(blob, size) != NULL) {
        return EKWS_ERR_CONFIG; /* *head untouched: the previous head stays */
    }
    const uint8_t *b = (const uint8_t *)blob;
    ekws_head_t h;
    h.blob = b;
    h.num_classes = ekws_rd32le(b + 4u * HB_CLASSES);
    h.embed_size = ekws_rd32le(b + 4u * HB_EMBED);
    h.flags = ekws_rd32le(b + 4u * HB_FLAGS);
    h.input_zp = u2s(ekws_rd32le(b + 4u * HB_IN_ZP));
    h.output_zp = u2s(ekws_rd32le(b + 4u * HB_OUT_ZP));
    h.input_scale = u2f(ekws_rd32le(b + 4u * HB_IN_SCALE));
    h.output_scale = u2f(ekws_rd32le(b + 4u * HB_OUT_SCALE));
    const size_t c = h.num_classes, e = h.embed_size;
    const size_t bias_off = EKWS_HEAD_HEADER_SIZE + align4(c * e);
    h.weight = (const int8_t *)(b + EKWS_HEAD_HEADER_SIZE);
    h.bias = (const int32_t *)(const void *)(b + bias_off);
    h.multiplier = h.bias + c;
    h.shift = h.multiplier + c;
    h.fweight = (h.flags & EKWS_HEAD_FLAG_FLOAT) ? (const float *)(const void *)(h.shift + c) : NULL;
    h.fbias = h.fweight != NULL ? h.fweight + c * e : NULL;
    *head = h;
    return EKWS_OK;
}

ekws_status_t ekws_head_invoke_s8(const ekws_head_t *head, const int8_t *embedding, size_t len, int8_t *logits,
                                  size_t logits_len, int16_t *scratch) {
    if (head == NULL || embedding == NULL || logits == NULL || scratch == NULL) {
        return EKWS_ERR_NULL;
    }
    if (head->blob == NULL) {
        return EKWS_ERR_STATE;
    }
    if (len != head->embed_size) {
        return EKWS_ERR_ARG;
    }
    if (logits_len < head->num_classes) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    const ekws_conv_params_t params = {.stride_h = 1, .stride_w = 1, .input_zp = head->input_zp,
                                       .output_zp = head->output_zp, .act_min = -128, .act_max = 127};
    const ekws_quant_params_t quant = {.multiplier = head->multiplier, .shift = head->shift};
    return ekws_fully_connected_s8(&params, &quant, 1, (int32_t)head->embed_size, embedding,
                                   (int32_t)head->num_classes, head->weight, head->bias, logits, scratch);
}

ekws_status_t ekws_head_invoke_f32(const ekws_head_t *head, const int8_t *embedding, size_t len, float *logits,
                                   size_t logits_len) {
    if (head == NULL || embedding == NULL || logits == NULL) {
        return EKWS_ERR_NULL;
    }
    if (head->blob == NULL || head->fweight == NULL) {
        return EKWS_ERR_STATE;
    }
    if (len != head->embed_size) {
        return EKWS_ERR_ARG;
    }
    if (logits_len < head->num_classes) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    for (uint32_t c = 0; c < head->num_classes; c++) {
        const float *w = head->fweight + (size_t)c * head->embed_size;
        float acc = 0.0f;
        for (uint32_t k = 0; k < head->embed_size; k++) {
            acc = acc + w[k] * ((float)((int32_t)embedding[k] - head->input_zp) * head->input_scale);
        }
        logits[c] = acc + head->fbias[c];
    }
    return EKWS_OK;
}
