/* model.c: validate an int8 model blob and run it over a caller-provided arena (see ekws/model.h
 * for the blob layout; edgekws/export/c.py writes it and computes the same arena size). */
#include "ekws/model.h"
#include "ekws/le.h"

#include <float.h>
#include <string.h>

/* Header word indices. */
enum {
    H_MAGIC, H_VERSION, H_TOTAL, H_CRC, H_HEADER_SIZE, H_NUM_LAYERS, H_LAYER_SIZE, H_ARENA,
    H_IN_H, H_IN_W, H_IN_C, H_IN_ZP, H_NUM_CLASSES, H_OUT_ZP, H_OUT_SCALE, H_IN_SCALE
};
/* Layer record word indices. */
enum {
    L_OP, L_IN_H, L_IN_W, L_IN_C, L_OUT_H, L_OUT_W, L_OUT_C, L_KH, L_KW, L_SH, L_SW, L_PAD_T, L_PAD_L,
    L_IN_ZP, L_OUT_ZP, L_ACT_MIN, L_ACT_MAX, L_W_OFF, L_B_OFF, L_M_OFF, L_S_OFF,
    L_TAP, /* tappool: its vector's byte offset in the tap region; avgpool: tap bytes it appends */
    L_WORDS = 24
};

#define MAX_DIM 65535u
#define MAX_ELEMS (1u << 24)
/* Most values one output sums (a conv window kh*kw*in_c, a dense layer's inputs): the int32
 * accumulator is exact up to 65,793 (kernels.h). */
#define MAX_WINDOW 32768u

static int32_t rds32(const uint8_t *p) {
    const uint32_t u = ekws_rd32le(p);
    int32_t s;
    memcpy(&s, &u, sizeof s);
    return s;
}

static uint32_t align4(uint32_t n) { return (n + 3u) & ~3u; }

uint32_t ekws_crc32(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* One layer record, decoded. */
typedef struct {
    uint32_t w[L_WORDS];
} layer_t;

static void read_layer(const uint8_t *blob, uint32_t i, layer_t *l) {
    const uint8_t *p = blob + EKWS_MODEL_HEADER_SIZE + (size_t)i * EKWS_MODEL_LAYER_SIZE;
    for (uint32_t k = 0; k < L_WORDS; k++) {
        l->w[k] = ekws_rd32le(p + 4u * k);
    }
}

static int32_t as_s32(uint32_t u) {
    int32_t s;
    memcpy(&s, &u, sizeof s);
    return s;
}

static uint32_t in_elems(const layer_t *l) { return l->w[L_IN_H] * l->w[L_IN_W] * l->w[L_IN_C]; }
static uint32_t out_elems(const layer_t *l) { return l->w[L_OUT_H] * l->w[L_OUT_W] * l->w[L_OUT_C]; }

static uint32_t scratch_bytes(const layer_t *l) {
    switch (l->w[L_OP]) {
    case EKWS_OP_CONV: return align4(l->w[L_KH] * l->w[L_KW] * l->w[L_IN_C] * 2u);
    case EKWS_OP_DENSE: return align4(in_elems(l) * 2u);
    default: return l->w[L_IN_C] * 4u;
    }
}

/* Is [off, off + size) inside the data section of a blob of `total` bytes and 4-byte aligned?
 * size is 64-bit: the products that give it (out_c * in_elems, ...) can exceed 2^32. */
static int in_data(uint32_t off, uint64_t size, uint32_t data_start, uint32_t total) {
    return off >= data_start && (off & 3u) == 0 && off <= total && size <= (uint64_t)(total - off);
}

static int is_pool(uint32_t op) { return op == EKWS_OP_AVGPOOL || op == EKWS_OP_TAPPOOL; }

/* Validate layer record l on its own (links between layers are check_blob's); NULL or a reason. */
static const char *check_layer(const uint8_t *blob, const layer_t *l, uint32_t data_start, uint32_t total) {
    const uint32_t *w = l->w;
    const uint32_t op = w[L_OP];
    if (op < EKWS_OP_CONV || op > EKWS_OP_TAPPOOL) {
        return "unknown layer op";
    }
    for (uint32_t k = L_IN_H; k <= L_SW; k++) {
        if (w[k] < 1 || w[k] > MAX_DIM) {
            return "layer dims out of range";
        }
    }
    if (w[L_PAD_T] > MAX_DIM || w[L_PAD_L] > MAX_DIM) {
        return "layer padding out of range";
    }
    if ((uint64_t)w[L_IN_H] * w[L_IN_W] * w[L_IN_C] > MAX_ELEMS ||
        (uint64_t)w[L_OUT_H] * w[L_OUT_W] * w[L_OUT_C] > MAX_ELEMS ||
        (uint64_t)w[L_KH] * w[L_KW] * w[L_IN_C] > MAX_WINDOW ||
        (op == EKWS_OP_DENSE && (uint64_t)w[L_IN_H] * w[L_IN_W] * w[L_IN_C] > MAX_WINDOW)) {
        return "layer too large";
    }
    /* Every window starts inside the padded input: (out - 1) * stride < in + pad, as for any
     * 'same' or 'valid' layer; it also keeps the kernels' oy * stride - pad within int32. */
    if (op != EKWS_OP_DENSE && ((uint64_t)(w[L_OUT_H] - 1u) * w[L_SH] >= (uint64_t)w[L_IN_H] + w[L_PAD_T] ||
                                (uint64_t)(w[L_OUT_W] - 1u) * w[L_SW] >= (uint64_t)w[L_IN_W] + w[L_PAD_L])) {
        return "layer output windows start past the padded input";
    }
    const int32_t in_zp = as_s32(w[L_IN_ZP]), out_zp = as_s32(w[L_OUT_ZP]);
    const int32_t lo = as_s32(w[L_ACT_MIN]), hi = as_s32(w[L_ACT_MAX]);
    if (in_zp < -128 || in_zp > 127 || out_zp < -128 || out_zp > 127 || lo < -128 || hi > 127 || lo > hi) {
        return "layer zero point or clamp outside int8";
    }
    /* 64-bit byte counts: no product below can wrap */
    uint64_t nweights = 0, nquant = w[L_OUT_C];
    switch (op) {
    case EKWS_OP_CONV: nweights = (uint64_t)w[L_OUT_C] * w[L_KH] * w[L_KW] * w[L_IN_C]; break;
    case EKWS_OP_DEPTHWISE: nweights = (uint64_t)w[L_KH] * w[L_KW] * w[L_IN_C]; break;
    case EKWS_OP_DENSE: nweights = (uint64_t)w[L_OUT_C] * w[L_IN_H] * w[L_IN_W] * w[L_IN_C]; break;
    default: nquant = 1; break;
    }
    if (op == EKWS_OP_DEPTHWISE || op == EKWS_OP_TAPPOOL || (op == EKWS_OP_AVGPOOL && w[L_TAP] == 0)) {
        if (w[L_OUT_C] != w[L_IN_C]) {
            return "depthwise/pool layer changes the channel count";
        }
    }
    if (op == EKWS_OP_AVGPOOL && w[L_TAP] != 0) {
        if (w[L_TAP] > w[L_OUT_C] || w[L_OUT_C] - w[L_TAP] != w[L_IN_C]) {
            return "tapped pool output is not its channels plus its taps";
        }
        if (w[L_OUT_H] != 1 || w[L_OUT_W] != 1 || w[L_KH] != w[L_IN_H] || w[L_KW] != w[L_IN_W]) {
            return "tapped pool is not a global pool";
        }
    }
    if (op == EKWS_OP_TAPPOOL && (w[L_OUT_H] != 1 || w[L_OUT_W] != 1 || w[L_KH] != w[L_IN_H] ||
                                  w[L_KW] != w[L_IN_W] || w[L_PAD_T] != 0 || w[L_PAD_L] != 0)) {
        return "tappool layer is not a global pool";
    }
    if (!is_pool(op) && w[L_TAP] != 0) {
        return "tap field set on a layer that is not a pool";
    }
    if (op == EKWS_OP_DENSE && (w[L_OUT_H] != 1 || w[L_OUT_W] != 1 || w[L_KH] != 1 || w[L_KW] != 1)) {
        return "dense layer with spatial output";
    }
    if (is_pool(op) ? (w[L_W_OFF] != 0 || w[L_B_OFF] != 0)
                    : !in_data(w[L_W_OFF], nweights, data_start, total)) {
        return "layer weights outside the blob";
    }
    if (w[L_B_OFF] != 0 && !in_data(w[L_B_OFF], 4u * (uint64_t)w[L_OUT_C], data_start, total)) {
        return "layer bias outside the blob";
    }
    if (!in_data(w[L_M_OFF], 4u * nquant, data_start, total) || !in_data(w[L_S_OFF], 4u * nquant, data_start, total)) {
        return "layer multipliers/shifts outside the blob";
    }
    for (uint32_t c = 0; c < (uint32_t)nquant; c++) {
        const int32_t m = rds32(blob + w[L_M_OFF] + 4u * c), s = rds32(blob + w[L_S_OFF] + 4u * c);
        if (m < 0 || s < EKWS_SHIFT_MIN || s > EKWS_SHIFT_MAX) {
            return "layer multiplier/shift out of range";
        }
    }
    return NULL;
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Validate; on success store the arena layout: *act activation bytes, then *tap bytes of tap
 * region, *arena bytes in all (scratch last). */
static const char *check_blob(const uint8_t *b, size_t size, uint32_t *act, uint32_t *tap, uint32_t *arena) {
    if (!b) {
        return "null blob";
    }
    if (size < EKWS_MODEL_HEADER_SIZE) {
        return "blob shorter than its header";
    }
    if (ekws_rd32le(b + 4 * H_MAGIC) != EKWS_MODEL_MAGIC) {
        return "bad magic (not an edgekws model blob)";
    }
    if (ekws_rd32le(b + 4 * H_VERSION) != EKWS_MODEL_VERSION) {
        return "unsupported model format version";
    }
    const uint32_t total = ekws_rd32le(b + 4 * H_TOTAL), n = ekws_rd32le(b + 4 * H_NUM_LAYERS);
    if (total > size || total < EKWS_MODEL_HEADER_SIZE || (total & 3u) != 0) {
        return "blob truncated (total size larger than the buffer)";
    }
    if (ekws_rd32le(b + 4 * H_HEADER_SIZE) != EKWS_MODEL_HEADER_SIZE || ekws_rd32le(b + 4 * H_LAYER_SIZE) != EKWS_MODEL_LAYER_SIZE) {
        return "unexpected header or layer record size";
    }
    static const uint8_t zero4[4] = {0, 0, 0, 0};
    uint32_t crc = ekws_crc32(0, b, 4 * H_CRC);
    crc = ekws_crc32(crc, zero4, 4);
    crc = ekws_crc32(crc, b + 4 * (H_CRC + 1), total - 4 * (H_CRC + 1));
    if (crc != ekws_rd32le(b + 4 * H_CRC)) {
        return "CRC mismatch (corrupt model blob)";
    }
    const float out_scale = bits_to_float(ekws_rd32le(b + 4 * H_OUT_SCALE));
    if (!(out_scale > 0.0f && out_scale <= FLT_MAX)) { /* NaN fails too; voice search weighs logits by it */
        return "output scale not a finite positive number";
    }
    if (n < 1 || n > 1024 || (uint64_t)EKWS_MODEL_HEADER_SIZE + (uint64_t)n * EKWS_MODEL_LAYER_SIZE > total) {
        return "bad layer count";
    }
    const uint32_t data_start = EKWS_MODEL_HEADER_SIZE + n * EKWS_MODEL_LAYER_SIZE;
    const uint32_t in_h = ekws_rd32le(b + 4 * H_IN_H), in_w = ekws_rd32le(b + 4 * H_IN_W), in_c = ekws_rd32le(b + 4 * H_IN_C);
    /* First pass: the main chain's length (tappools are side ops) and the tap bytes T that the
     * (one) tapped pool appends; the tap region is align4(T) bytes. */
    uint32_t n_main = 0, taps = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *rec = b + EKWS_MODEL_HEADER_SIZE + i * EKWS_MODEL_LAYER_SIZE;
        const uint32_t op = ekws_rd32le(rec + 4 * L_OP), word = ekws_rd32le(rec + 4 * L_TAP);
        n_main += op != EKWS_OP_TAPPOOL ? 1u : 0u;
        if (op == EKWS_OP_AVGPOOL && word != 0 && taps == 0) {
            taps = word;
        }
    }
    uint32_t a = 0, s = 0, j = 0, tap_end = 0;
    int pooled = 0; /* the tapped pool has run */
    layer_t prev = {{0}}, l = {{0}};
    for (uint32_t i = 0; i < n; i++) {
        read_layer(b, i, &l);
        const char *why = check_layer(b, &l, data_start, total);
        if (why) {
            return why;
        }
        const int tappool = l.w[L_OP] == EKWS_OP_TAPPOOL;
        if (tappool && i == 0) {
            return "tappool layer cannot be the first layer";
        }
        if (tappool && pooled) {
            return "tappool layer after the tapped pool";
        }
        if (i == 0 && (l.w[L_IN_H] != in_h || l.w[L_IN_W] != in_w || l.w[L_IN_C] != in_c ||
                       as_s32(l.w[L_IN_ZP]) != rds32(b + 4 * H_IN_ZP))) {
            return "first layer does not match the model input";
        }
        /* prev is the previous MAIN layer: a tappool reads the tensor the next main layer reads */
        if (i > 0 && (in_elems(&l) != out_elems(&prev) || l.w[L_IN_ZP] != prev.w[L_OUT_ZP])) {
            return "layer input does not match the previous layer's output";
        }
        s = scratch_bytes(&l) > s ? scratch_bytes(&l) : s;
        if (tappool) {
            if (l.w[L_TAP] > taps || l.w[L_OUT_C] > taps - l.w[L_TAP]) {
                return "tappool vector outside the tap region";
            }
            if (l.w[L_TAP] != tap_end) {
                return "tappool vectors are not back to back in the tap region";
            }
            tap_end += l.w[L_OUT_C];
            continue;
        }
        if (l.w[L_OP] == EKWS_OP_AVGPOOL && l.w[L_TAP] != 0) {
            if (pooled) {
                return "more than one tapped pool";
            }
            if (l.w[L_TAP] != tap_end) {
                return "tapped pool's tap bytes differ from its tappool layers' total";
            }
            pooled = 1;
        }
        const uint32_t ib = j > 0 ? align4(in_elems(&l)) : 0, ob = j + 1 < n_main ? align4(out_elems(&l)) : 0;
        a = ib + ob > a ? ib + ob : a;
        prev = l;
        j++;
    }
    if (out_elems(&prev) != ekws_rd32le(b + 4 * H_NUM_CLASSES) || prev.w[L_OUT_ZP] != ekws_rd32le(b + 4 * H_OUT_ZP)) {
        return "last layer does not match the model output";
    }
    const uint32_t t = align4(taps);
    if (a + t + s != ekws_rd32le(b + 4 * H_ARENA)) {
        return "arena size in the header differs from the computed one";
    }
    *act = a;
    *tap = t;
    *arena = a + t + s;
    return NULL;
}

const char *ekws_model_check(const void *blob, size_t blob_size) {
    uint32_t act, tap, arena;
    return check_blob((const uint8_t *)blob, blob_size, &act, &tap, &arena);
}

size_t ekws_model_arena_size(const void *blob, size_t blob_size) {
    uint32_t act, tap, arena;
    return check_blob((const uint8_t *)blob, blob_size, &act, &tap, &arena) ? 0 : arena;
}

size_t ekws_model_struct_size(void) { return sizeof(ekws_model_t); }

ekws_status_t ekws_model_init(ekws_model_t *model, const void *blob, size_t blob_size, void *arena,
                              size_t arena_size) {
    if (!model || !blob || !arena) {
        return EKWS_ERR_NULL;
    }
    memset(model, 0, sizeof *model);
    if (((uintptr_t)blob & 3u) != 0 || ((uintptr_t)arena & 3u) != 0) {
        return EKWS_ERR_ARG;
    }
    const uint8_t *b = (const uint8_t *)blob;
    uint32_t act, tap, need;
    if (check_blob(b, blob_size, &act, &tap, &need)) {
        return EKWS_ERR_CONFIG;
    }
    if (arena_size < need) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    model->blob = b;
    model->num_layers = ekws_rd32le(b + 4 * H_NUM_LAYERS);
    model->input_size = ekws_rd32le(b + 4 * H_IN_H) * ekws_rd32le(b + 4 * H_IN_W) * ekws_rd32le(b + 4 * H_IN_C);
    model->num_classes = ekws_rd32le(b + 4 * H_NUM_CLASSES);
    model->output_zp = rds32(b + 4 * H_OUT_ZP);
    model->output_scale = bits_to_float(ekws_rd32le(b + 4 * H_OUT_SCALE));
    model->arena = (uint8_t *)arena;
    model->act_bytes = act;
    model->tap_bytes = tap;
    model->arena_size = need;
    return EKWS_OK;
}

static ekws_status_t run_layer(const ekws_model_t *m, const layer_t *l, const int8_t *in, int8_t *out) {
    const uint32_t *w = l->w;
    const uint8_t *b = m->blob;
    const ekws_conv_params_t p = {
        .stride_h = (int32_t)w[L_SH], .stride_w = (int32_t)w[L_SW],
        .pad_top = (int32_t)w[L_PAD_T], .pad_left = (int32_t)w[L_PAD_L],
        .input_zp = as_s32(w[L_IN_ZP]), .output_zp = as_s32(w[L_OUT_ZP]),
        .act_min = as_s32(w[L_ACT_MIN]), .act_max = as_s32(w[L_ACT_MAX]),
    };
    /* The blob is 4-byte aligned and so are these offsets (checked at init). */
    const ekws_quant_params_t q = {(const int32_t *)(const void *)(b + w[L_M_OFF]),
                                   (const int32_t *)(const void *)(b + w[L_S_OFF])};
    const int8_t *weights = (const int8_t *)(b + w[L_W_OFF]);
    const int32_t *bias = w[L_B_OFF] ? (const int32_t *)(const void *)(b + w[L_B_OFF]) : NULL;
    const ekws_dims_t in_dims = {1, (int32_t)w[L_IN_H], (int32_t)w[L_IN_W], (int32_t)w[L_IN_C]};
    /* a tapped pool computes its own in_c channels here; ekws_model_invoke appends the taps */
    const uint32_t out_c = w[L_OP] == EKWS_OP_AVGPOOL ? w[L_OUT_C] - w[L_TAP] : w[L_OUT_C];
    const ekws_dims_t out_dims = {1, (int32_t)w[L_OUT_H], (int32_t)w[L_OUT_W], (int32_t)out_c};
    void *scratch = m->arena + m->act_bytes + m->tap_bytes;
    switch (w[L_OP]) {
    case EKWS_OP_CONV: {
        const ekws_dims_t f = {(int32_t)w[L_OUT_C], (int32_t)w[L_KH], (int32_t)w[L_KW], (int32_t)w[L_IN_C]};
        return ekws_conv_s8(&p, &q, &in_dims, in, &f, weights, bias, &out_dims, out, (int16_t *)scratch);
    }
    case EKWS_OP_DEPTHWISE: {
        const ekws_dims_t f = {(int32_t)w[L_IN_C], (int32_t)w[L_KH], (int32_t)w[L_KW], (int32_t)w[L_IN_C]};
        return ekws_depthwise_conv_s8(&p, &q, &in_dims, in, &f, weights, bias, &out_dims, out, (int32_t *)scratch);
    }
    case EKWS_OP_DENSE:
        return ekws_fully_connected_s8(&p, &q, 1, (int32_t)in_elems(l), in, (int32_t)w[L_OUT_C], weights, bias,
                                       out, (int16_t *)scratch);
    default:
        return ekws_avgpool_s8(&p, &q, (int32_t)w[L_KH], (int32_t)w[L_KW], &in_dims, in, &out_dims, out,
                               (int32_t *)scratch);
    }
}

/* The layers of a model on one input. With `embedding`, stop before the last layer and copy its
 * input (the embedding) there; with `offset`, move the last layer's input by it first (saturated
 * to int8, in place in the arena). Either needs a main layer before the last (else EKWS_ERR_ARG). */
static ekws_status_t run_model(const ekws_model_t *model, const int8_t *input, int8_t *logits, int8_t *embedding,
                               const int32_t *offset) {
    /* Main-layer outputs alternate between the end and the start of the activation region, so a
     * layer's input (the previous main output) and its output never overlap; the last main layer
     * writes to logits. A tappool pools the current input x into its slot of the tap region and
     * leaves x alone; the tapped pool appends the whole tap region after its own channels. The
     * last layer is a main one (check_blob refuses a tappool after the tapped pool or without one). */
    uint8_t *const tap_region = model->arena + model->act_bytes;
    const int8_t *x = input;
    for (uint32_t i = 0, j = 0; i < model->num_layers; i++) {
        layer_t l;
        read_layer(model->blob, i, &l);
        if (l.w[L_OP] == EKWS_OP_TAPPOOL) {
            const ekws_status_t st = run_layer(model, &l, x, (int8_t *)(tap_region + l.w[L_TAP]));
            if (st != EKWS_OK) {
                return st;
            }
            continue;
        }
        int8_t *out = logits;
        if (i + 1 < model->num_layers) {
            out = (int8_t *)model->arena + ((j & 1u) ? 0u : model->act_bytes - align4(out_elems(&l)));
        } else if (embedding || offset) {
            if (j == 0) {   /* the last layer reads the caller's input: no embedding of the model's own */
                return EKWS_ERR_ARG;
            }
            int8_t *e = (int8_t *)model->arena + (x - (const int8_t *)model->arena);   /* x lies in the arena */
            const uint32_t n = in_elems(&l);
            if (embedding) {
                memcpy(embedding, e, n);
                return EKWS_OK;
            }
            for (uint32_t k = 0; k < n; k++) {
                const int64_t v = (int64_t)e[k] - offset[k];
                e[k] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
            }
        }
        const ekws_status_t st = run_layer(model, &l, x, out);
        if (st != EKWS_OK) {
            return st;
        }
        if (l.w[L_OP] == EKWS_OP_AVGPOOL && l.w[L_TAP] != 0) {
            memcpy(out + (l.w[L_OUT_C] - l.w[L_TAP]), tap_region, l.w[L_TAP]);
        }
        x = out;
        j++;
    }
    return EKWS_OK;
}

static ekws_status_t check_invoke(const ekws_model_t *model, const int8_t *input, size_t input_len, const void *out) {
    if (!model || !input || !out) {
        return EKWS_ERR_NULL;
    }
    if (!model->blob) {
        return EKWS_ERR_STATE;
    }
    return input_len == model->input_size ? EKWS_OK : EKWS_ERR_ARG;
}

ekws_status_t ekws_model_invoke(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                int8_t *logits, size_t logits_len) {
    const ekws_status_t st = check_invoke(model, input, input_len, logits);
    if (st != EKWS_OK) {
        return st;
    }
    if (logits_len < model->num_classes) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    return run_model(model, input, logits, NULL, NULL);
}

/* ---- voice normalization (edgekws/voicenorm.py) ------------------------------------------------ */

uint32_t ekws_model_embedding_size(const ekws_model_t *model) {
    if (!model || !model->blob || model->num_layers < 2) {
        return 0;
    }
    layer_t l;
    read_layer(model->blob, model->num_layers - 1, &l);
    return in_elems(&l);
}

ekws_status_t ekws_model_embed(const ekws_model_t *model, const int8_t *input, size_t input_len, int8_t *embedding,
                               size_t embedding_len) {
    const ekws_status_t st = check_invoke(model, input, input_len, embedding);
    if (st != EKWS_OK) {
        return st;
    }
    const uint32_t n = ekws_model_embedding_size(model);
    if (n == 0) {
        return EKWS_ERR_ARG;
    }
    if (embedding_len < n) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    return run_model(model, input, NULL, embedding, NULL);
}

ekws_status_t ekws_model_invoke_voice(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                      const int32_t *offset, size_t offset_len, int8_t *logits, size_t logits_len) {
    ekws_status_t st = check_invoke(model, input, input_len, logits);
    if (st == EKWS_OK && !offset) {
        st = EKWS_ERR_NULL;
    }
    if (st != EKWS_OK) {
        return st;
    }
    const uint32_t n = ekws_model_embedding_size(model);
    if (n == 0 || offset_len != n) {
        return EKWS_ERR_ARG;
    }
    if (logits_len < model->num_classes) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    return run_model(model, input, logits, NULL, offset);
}

ekws_status_t ekws_voice_offset(const int8_t *embeddings, size_t n, size_t size, const float *reference,
                                int32_t *offset) {
    if (!embeddings || !reference || !offset) {
        return EKWS_ERR_NULL;
    }
    if (n == 0 || n > (1u << 24) || size == 0) {
        return EKWS_ERR_ARG;
    }
    for (size_t j = 0; j < size; j++) {
        if (!(reference[j] > -1e6f && reference[j] < 1e6f)) {   /* NaN fails both */
            return EKWS_ERR_ARG;
        }
    }
    for (size_t j = 0; j < size; j++) {
        int32_t sum = 0;   /* |sum| <= 128 * 2^24: exact */
        for (size_t i = 0; i < n; i++) {
            sum += embeddings[i * size + j];
        }
        const double d = (double)sum / (double)n - (double)reference[j] + 0.5;
        const int32_t t = (int32_t)d;   /* |d| < 1e6 + 129: no overflow */
        offset[j] = (double)t > d ? t - 1 : t;   /* floor */
    }
    return EKWS_OK;
}

float ekws_expf(float x) {
    /* x = k ln2 + r, |r| <= ln2/2; exp(r) by Horner; times 2^k built from bits (k >= -126). */
    if (x != x) {
        return x; /* NaN in, NaN out (never converted to an integer) */
    }
    if (x < -87.0f) {
        return 0.0f;
    }
    if (x > 0.0f) {
        x = 0.0f;
    }
    const int32_t k = (int32_t)(x * 1.44269504f - 0.5f); /* truncation toward zero */
    const float kf = (float)k;
    const float r = (x - kf * 0.693359375f) - kf * -2.12194440e-4f;
    float p = 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * bits_to_float((uint32_t)(k + 127) << 23);
}

/* How unsure the model is of its answer: the softmax denominator relative to the best logit,
 * sum_i exp(scale * (z_i - max z)) in class order = 1 / (the largest class probability); 1 when one
 * class takes everything. float32 with ekws_expf, as edgekws.evaluate.search_spread computes it. */
static float search_spread(const int8_t *z, uint32_t k, float scale) {
    int32_t top = z[0];
    for (uint32_t i = 1; i < k; i++) {
        top = z[i] > top ? z[i] : top;
    }
    float sum = 0.0f;
    for (uint32_t i = 0; i < k; i++) {
        sum += ekws_expf(scale * (float)(z[i] - top));
    }
    return sum;
}

/* `in` (rows x bands) read along its rows at rate r (Q8) around the middle row, into `out`: row t
 * reads position p = c + (t - c) * r / 256 (in 1/512 rows: (rows - 1) * 256 + (2t - rows + 1) * r,
 * clamped to [0, (rows - 1) * 512]), linear between rows i0 = p / 512 and i0 + 1, weights in 1/512,
 * rounded half up; values offset by 128 so every division is of a non-negative number. */
static void warp_rows(const int8_t *in, int8_t *out, uint32_t rows, uint32_t bands, int32_t r) {
    const int32_t last = (int32_t)rows - 1;
    for (int32_t t = 0; t <= last; t++) {
        int32_t p = last * 256 + (2 * t - last) * r;
        p = p < 0 ? 0 : (p > last * 512 ? last * 512 : p);
        const int32_t i0 = p >> 9, f = p & 511, i1 = i0 < last ? i0 + 1 : last;
        for (uint32_t b = 0; b < bands; b++) {
            const int32_t lo = (int32_t)in[(uint32_t)i0 * bands + b] + 128;
            const int32_t hi = (int32_t)in[(uint32_t)i1 * bands + b] + 128;
            out[(uint32_t)t * bands + b] = (int8_t)(((lo * (512 - f) + hi * f + 256) >> 9) - 128);
        }
    }
}

/* The band shift of search step `step`: 0, -1, 1, -2, 2, ... (edgekws.evaluate.search_order). */
static int32_t search_shift(uint32_t step) {
    return (step & 1u) ? -(int32_t)((step + 1) / 2) : (int32_t)(step / 2);
}

void ekws_shift_bands_s8(const int8_t *in, int8_t *out, uint32_t rows, uint32_t bands, int32_t s) {
    for (uint32_t r = 0; r < rows; r++) {
        for (uint32_t b = 0; b < bands; b++) {
            int32_t src = (int32_t)b + s;
            src = src < 0 ? 0 : (src >= (int32_t)bands ? (int32_t)bands - 1 : src);
            out[r * bands + b] = in[r * bands + (uint32_t)src];
        }
    }
}

ekws_status_t ekws_model_invoke_search(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                       uint32_t max_shift, uint32_t rate_search, int8_t *scratch,
                                       size_t scratch_len, int8_t *logits, size_t logits_len, int32_t *shift,
                                       int32_t *rate_q8) {
    static const int32_t rates[] = EKWS_SEARCH_RATES_Q8;
    if (!model || !input || !scratch || !logits) {
        return EKWS_ERR_NULL;
    }
    if (!model->blob) {
        return EKWS_ERR_STATE;
    }
    const uint32_t rows = ekws_rd32le(model->blob + 4 * H_IN_H), bands = ekws_rd32le(model->blob + 4 * H_IN_W);
    const uint32_t k = model->num_classes;
    if (input_len != model->input_size || ekws_rd32le(model->blob + 4 * H_IN_C) != 1u || max_shift >= bands
        || rate_search > EKWS_MAX_RATE_SEARCH) {
        return EKWS_ERR_ARG;
    }
    if (scratch_len < (rate_search ? 2u : 1u) * (size_t)model->input_size + k || logits_len < k) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    int8_t *const moved = scratch, *const z = scratch + model->input_size;
    int8_t *const warped = z + k;   /* used only with rate_search */
    ekws_status_t st = ekws_model_invoke(model, input, input_len, logits, logits_len);
    if (st != EKWS_OK) {
        return st;
    }
    float best = search_spread(logits, k, model->output_scale);
    int32_t chosen = 0, chosen_rate = rates[0];
    for (uint32_t ri = 0; ri <= 2 * rate_search; ri++) {
        const int8_t *heard = input;
        if (ri > 0) {
            warp_rows(input, warped, rows, bands, rates[ri]);
            heard = warped;
        }
        for (uint32_t step = ri > 0 ? 0u : 1u; step <= 2 * max_shift; step++) {
            const int32_t s = search_shift(step);
            if (s != 0) {
                ekws_shift_bands_s8(heard, moved, rows, bands, s);
            }
            st = ekws_model_invoke(model, s != 0 ? moved : heard, input_len, z, k);
            if (st != EKWS_OK) {
                return st;
            }
            const float spread = search_spread(z, k, model->output_scale);
            if (spread < best) {
                best = spread;
                chosen = s;
                chosen_rate = rates[ri];
                memcpy(logits, z, k);
            }
        }
    }
    if (shift) {
        *shift = chosen;
    }
    if (rate_q8) {
        *rate_q8 = chosen_rate;
    }
    return EKWS_OK;
}

uint32_t ekws_argmax_s8(const int8_t *values, size_t n) {
    uint32_t best = 0;
    for (size_t i = 1; values && i < n; i++) {
        if (values[i] > values[best]) {
            best = (uint32_t)i;
        }
    }
    return best;
}

ekws_status_t ekws_model_calibrate_shift(const ekws_model_t *model, const int8_t *windows, size_t n_windows,
                                         uint32_t max_shift, int8_t *scratch, size_t scratch_len, int32_t *shift,
                                         float *score) {
    if (!model || !windows || !scratch || !shift) {
        return EKWS_ERR_NULL;
    }
    if (!model->blob) {
        return EKWS_ERR_STATE;
    }
    const uint32_t rows = ekws_rd32le(model->blob + 4 * H_IN_H), bands = ekws_rd32le(model->blob + 4 * H_IN_W);
    const uint32_t k = model->num_classes, size = model->input_size;
    if (n_windows == 0 || ekws_rd32le(model->blob + 4 * H_IN_C) != 1u || max_shift >= bands) {
        return EKWS_ERR_ARG;
    }
    if (scratch_len < (size_t)size + k) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    int8_t *const moved = scratch, *const z = scratch + size;
    float best = -1.0f;
    int32_t chosen = 0;
    for (uint32_t step = 0; step <= 2 * max_shift; step++) {
        const int32_t s = search_shift(step);
        float sum = 0.0f;
        for (size_t i = 0; i < n_windows; i++) {
            const int8_t *w = windows + i * size;
            if (s != 0) {
                ekws_shift_bands_s8(w, moved, rows, bands, s);
            }
            const ekws_status_t st = ekws_model_invoke(model, s != 0 ? moved : w, size, z, k);
            if (st != EKWS_OK) {
                return st;
            }
            sum += 1.0f / search_spread(z, k, model->output_scale);
        }
        if (sum > best) {
            best = sum;
            chosen = s;
        }
    }
    *shift = chosen;
    if (score) {
        *score = best / (float)n_windows;
    }
    return EKWS_OK;
}
