/* test_head.c: on-device head training against the numpy twin (tests/golden/head_golden.h):
 * gradient, imprinting, a K-epoch loss curve and final weights within 1e-5, the int8 head blob
 * byte for byte, its int8 logits; a damaged blob is rejected and the previous head kept. Non-finite
 * values: hyper-parameters refused, a diverged training refused by ekws_head_quantize, no NaN
 * converted to an integer (the sanitizer build checks float-cast-overflow); set_weights refused
 * once the trainer is standardized. */
#include <stdio.h>
#include <string.h>

#include "ekws/head.h"
#include "golden/head_golden.h"

#include "ekws_check.h"

#define WS_BYTES 8192u /* >= ekws_head_workspace_size(GH_C, GH_E, GH_N), checked below */
static uint32_t workspace[WS_BYTES / 4];
static uint32_t blob[(GH_BLOB_BYTES + 3) / 4];
static uint32_t damaged[(GH_BLOB_BYTES + 3) / 4];

/* max |a - b| / max(1, |b|) over n values (no libm needed) */
static double max_err(const float *a, const float *b, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double diff = (double)a[i] - (double)b[i], mag = b[i] < 0.0f ? -(double)b[i] : (double)b[i];
        const double d = (diff < 0.0 ? -diff : diff) / (mag > 1.0 ? mag : 1.0);
        worst = d > worst ? d : worst;
    }
    return worst;
}

static ekws_head_config_t golden_config(void) {
    const ekws_head_config_t cfg = {.num_classes = GH_C, .embed_size = GH_E, .max_examples = GH_N,
                                    .batch = GH_BATCH, .seed = GH_SEED, .lr = GH_LR, .momentum = GH_MOMENTUM,
                                    .weight_decay = GH_WEIGHT_DECAY, .imprint_scale = GH_IMPRINT_SCALE};
    return cfg;
}

static int setup(ekws_head_trainer_t *tr) {
    const ekws_head_config_t cfg = golden_config();
    ekws_status_t st = ekws_head_trainer_init(tr, &cfg, workspace, sizeof workspace, GH_EMB_SCALE, GH_EMB_ZP);
    CHECK(st == EKWS_OK, "init: %s", ekws_status_str(st));
    for (uint32_t i = 0; i < GH_N && st == EKWS_OK; i++) {
        st = ekws_head_add_example(tr, gh_emb + i * GH_E, GH_E, gh_labels[i]);
        CHECK(st == EKWS_OK, "add %u: %s", (unsigned)i, ekws_status_str(st));
    }
    return st == EKWS_OK;
}

/* The golden steps' start: the initial head, then the gradient of the first GH_BATCH examples. */
static float start_and_gradient(ekws_head_trainer_t *tr) {
    CHECK(ekws_head_set_weights(tr, gh_w0, gh_b0) == EKWS_OK, "set_weights");
    uint16_t order[GH_BATCH];
    for (uint16_t i = 0; i < GH_BATCH; i++) {
        order[i] = i;
    }
    float loss = 0.0f;
    CHECK(ekws_head_gradient(tr, order, GH_BATCH, &loss) == EKWS_OK, "gradient");
    return loss;
}

static void test_training(void) {
    ekws_head_trainer_t tr;
    if (!setup(&tr)) {
        return;
    }
    float loss = start_and_gradient(&tr);
    CHECK(max_err(&loss, (const float[]){GH_GRAD_LOSS}, 1) < 1e-5, "gradient loss %.9g", (double)loss);
    CHECK(max_err(tr.grad_w, gh_grad_w, GH_C * GH_E) < 1e-5, "weight gradient differs");
    CHECK(max_err(tr.grad_b, gh_grad_b, GH_C) < 1e-5, "bias gradient differs");

    CHECK(ekws_head_imprint(&tr) == EKWS_OK, "imprint");
    CHECK(max_err(tr.weight, gh_imprint_w, GH_C * GH_E) < 1e-5, "imprinted weights differ");
    CHECK(max_err(tr.bias, gh_imprint_b, GH_C) < 1e-5, "imprinted bias differs");
    for (int k = 0; k < GH_EPOCHS; k++) {
        CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK, "epoch %d", k);
        CHECK(max_err(&loss, gh_losses + k, 1) < 1e-5, "epoch %d loss %.9g, golden %.9g", k, (double)loss,
              (double)gh_losses[k]);
    }
    CHECK(gh_losses[GH_EPOCHS - 1] < gh_losses[0], "golden loss curve does not decrease");
    CHECK(max_err(tr.weight, gh_final_w, GH_C * GH_E) < 1e-5, "final weights differ");
    CHECK(max_err(tr.bias, gh_final_b, GH_C) < 1e-5, "final bias differs");
    float fw[GH_C * GH_E], fb[GH_C];
    CHECK(ekws_head_folded(&tr, fw, fb) == EKWS_OK, "folded");
    CHECK(max_err(fw, gh_folded_w, GH_C * GH_E) < 1e-5, "folded weights differ");
    CHECK(max_err(fb, gh_folded_b, GH_C) < 1e-5, "folded bias differs");
    CHECK(ekws_head_imprint(&tr) == EKWS_ERR_STATE, "second imprint accepted");

    size_t size = 0;
    CHECK(ekws_head_quantize(&tr, blob, GH_BLOB_BYTES - 1, 1, &size) == EKWS_ERR_BUFFER_TOO_SMALL, "short blob");
    CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 1, &size) == EKWS_OK, "quantize");
    CHECK(size == GH_BLOB_BYTES && ekws_head_blob_size(GH_C, GH_E, 1) == GH_BLOB_BYTES, "blob size %u",
          (unsigned)size);
    CHECK(memcmp(blob, gh_blob_words, GH_BLOB_BYTES) == 0, "blob differs from the numpy head blob");
}

static void test_load_and_invoke(void) {
    ekws_head_t head;
    memset(&head, 0, sizeof head);
    const char *why = ekws_head_check(gh_blob_words, GH_BLOB_BYTES);
    CHECK(why == NULL, "golden blob rejected: %s", why ? why : "");
    CHECK(ekws_head_load(&head, gh_blob_words, GH_BLOB_BYTES) == EKWS_OK, "load");
    int16_t scratch[GH_E];
    for (uint32_t i = 0; i < GH_N; i++) {
        int8_t logits[GH_C];
        CHECK(ekws_head_invoke_s8(&head, gh_emb + i * GH_E, GH_E, logits, GH_C, scratch) == EKWS_OK, "invoke");
        CHECK(memcmp(logits, gh_logits + i * GH_C, GH_C) == 0, "int8 logits of example %u differ", (unsigned)i);
        float fl[GH_C];
        CHECK(ekws_head_invoke_f32(&head, gh_emb + i * GH_E, GH_E, fl, GH_C) == EKWS_OK, "invoke f32");
    }
    /* damaged copies: rejected, and `head` still points at the good blob */
    const size_t offsets[] = {0, 5, 12, 20, 60, GH_BLOB_BYTES - 1};
    for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
        memcpy(damaged, gh_blob_words, GH_BLOB_BYTES);
        ((uint8_t *)damaged)[offsets[k]] ^= 0x40u;
        const ekws_head_t before = head;
        CHECK(ekws_head_load(&head, damaged, GH_BLOB_BYTES) == EKWS_ERR_CONFIG, "damaged byte %u accepted",
              (unsigned)offsets[k]);
        CHECK(memcmp(&before, &head, sizeof head) == 0, "a rejected blob changed the head");
    }
    memcpy(damaged, gh_blob_words, GH_BLOB_BYTES);
    CHECK(ekws_head_load(&head, damaged, GH_BLOB_BYTES - 4) == EKWS_ERR_CONFIG, "truncated blob accepted");
    CHECK(ekws_head_load(&head, (const uint8_t *)damaged + 1, GH_BLOB_BYTES - 1) == EKWS_ERR_CONFIG,
          "misaligned blob accepted");
    CHECK(head.blob == (const uint8_t *)gh_blob_words, "previous head not kept");
}

/* standardize only: the given head moves to the standardized space and folds back to itself */
static void test_standardize(void) {
    ekws_head_trainer_t tr;
    if (!setup(&tr)) {
        return;
    }
    CHECK(ekws_head_set_weights(&tr, gh_w0, gh_b0) == EKWS_OK, "set_weights");
    CHECK(ekws_head_standardize(&tr) == EKWS_OK, "standardize");
    CHECK(tr.standardized == 1u, "not standardized");
    float fw[GH_C * GH_E], fb[GH_C];
    CHECK(ekws_head_folded(&tr, fw, fb) == EKWS_OK, "folded");
    CHECK(max_err(fw, gh_w0, GH_C * GH_E) < 1e-5, "standardized head does not fold back to the given weights");
    CHECK(max_err(fb, gh_b0, GH_C) < 1e-5, "standardized head does not fold back to the given bias");
    CHECK(ekws_head_standardize(&tr) == EKWS_ERR_STATE, "second standardize accepted");
    CHECK(ekws_head_imprint(&tr) == EKWS_ERR_STATE, "imprint after standardize accepted");
    float loss = 0.0f;
    CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK && loss > 0.0f, "epoch after standardize");
    CHECK(ekws_head_standardize(NULL) == EKWS_ERR_NULL, "NULL accepted");
}

static void test_helpers(void) {
    for (int i = 0; i < GH_NUM_EXP; i++) {
        const float y = ekws_head_expf(gh_exp_x[i]);
        CHECK(memcmp(&y, gh_exp_y + i, sizeof y) == 0, "expf(%.9g) = %.9g, numpy %.9g", (double)gh_exp_x[i],
              (double)y, (double)gh_exp_y[i]);
    }
    for (int i = 0; i < GH_NUM_MULT; i++) {
        int32_t m = -1, n = -1;
        CHECK(ekws_head_quantize_multiplier(gh_mult_m[i], &m, &n) == EKWS_OK, "multiplier %d", i);
        CHECK(m == gh_mult_M[i] && n == gh_mult_n[i], "multiplier of %.9g: (%ld, %ld), Python (%ld, %ld)",
              (double)gh_mult_m[i], (long)m, (long)n, (long)gh_mult_M[i], (long)gh_mult_n[i]);
    }
    int32_t m, n;
    CHECK(ekws_head_quantize_multiplier(2e9f, &m, &n) == EKWS_ERR_ARG, "multiplier >= 2^30 accepted");
    CHECK(ekws_head_quantize_multiplier(-1.0f, &m, &n) == EKWS_ERR_ARG, "negative multiplier accepted");
}

/* the training memory apart from the store (ekws_head_trainer_init_split), garbage until its first use
 * as when it overlays the model's arena: the same steps give the same blob, byte for byte */
static void test_split(void) {
    static uint32_t store[WS_BYTES / 4], train[WS_BYTES / 4];
    const ekws_head_config_t cfg = golden_config();
    const size_t need_store = ekws_head_store_size(GH_C, GH_E, GH_N), need_train = ekws_head_train_size(GH_C, GH_E);
    CHECK(need_store + need_train == ekws_head_workspace_size(GH_C, GH_E, GH_N), "store + train != workspace");
    ekws_head_trainer_t tr;
    CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, need_store - 1, train, need_train, GH_EMB_SCALE,
                                       GH_EMB_ZP) == EKWS_ERR_BUFFER_TOO_SMALL, "small store accepted");
    CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, need_store, train, need_train - 1, GH_EMB_SCALE,
                                       GH_EMB_ZP) == EKWS_ERR_BUFFER_TOO_SMALL, "small training memory accepted");
    CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, need_store, (uint8_t *)store + 4, need_train, GH_EMB_SCALE,
                                       GH_EMB_ZP) == EKWS_ERR_ARG, "overlapping regions accepted");
    memset(train, 0x47, sizeof train); /* 0x47474747: 51015.3f */
    CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, need_store, train, need_train, GH_EMB_SCALE, GH_EMB_ZP) ==
              EKWS_OK, "init_split");
    CHECK(((const uint8_t *)train)[0] == 0x47u, "init_split wrote to the training memory");
    for (uint32_t i = 0; i < GH_N; i++) {
        CHECK(ekws_head_add_example(&tr, gh_emb + i * GH_E, GH_E, gh_labels[i]) == EKWS_OK, "add %u", (unsigned)i);
    }
    CHECK(((const uint8_t *)train)[need_train - 1] == 0x47u, "add_example wrote to the training memory");
    size_t size = 0;
    float fw[GH_C * GH_E], fb[GH_C];
    CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 1, &size) == EKWS_ERR_STATE, "quantize before training");
    CHECK(ekws_head_folded(&tr, fw, fb) == EKWS_ERR_STATE, "folded before training");
    float loss = start_and_gradient(&tr);
    CHECK(ekws_head_imprint(&tr) == EKWS_OK, "imprint");
    for (int k = 0; k < GH_EPOCHS; k++) {
        CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK, "epoch %d", k);
    }
    CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 1, &size) == EKWS_OK && size == GH_BLOB_BYTES, "quantize");
    CHECK(memcmp(blob, gh_blob_words, GH_BLOB_BYTES) == 0, "split memory: blob differs from the numpy head blob");
    /* imprint from the garbage-filled memory without set_weights, no example of the last class: its row
     * starts at zero as with one workspace */
    memset(train, 0x47, sizeof train); /* 0x47474747: 51015.3f */
    ekws_head_trainer_t one;
    CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, need_store, train, need_train, GH_EMB_SCALE, GH_EMB_ZP) ==
              EKWS_OK, "init_split");
    CHECK(ekws_head_trainer_init(&one, &cfg, workspace, sizeof workspace, GH_EMB_SCALE, GH_EMB_ZP) == EKWS_OK, "init");
    for (uint32_t i = 0; i < GH_N; i++) {
        if (gh_labels[i] != GH_C - 1) {
            CHECK(ekws_head_add_example(&tr, gh_emb + i * GH_E, GH_E, gh_labels[i]) == EKWS_OK &&
                      ekws_head_add_example(&one, gh_emb + i * GH_E, GH_E, gh_labels[i]) == EKWS_OK, "add %u",
                  (unsigned)i);
        }
    }
    CHECK(ekws_head_imprint(&tr) == EKWS_OK && ekws_head_imprint(&one) == EKWS_OK, "imprint");
    CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK && ekws_head_train_epoch(&one, &loss) == EKWS_OK, "epoch");
    CHECK(memcmp(tr.weight, one.weight, sizeof(float) * GH_C * GH_E) == 0 &&
              memcmp(tr.bias, one.bias, sizeof(float) * GH_C) == 0, "split memory: weights differ from one workspace");
}

static void test_refusals(void) {
    ekws_head_trainer_t tr;
    ekws_head_config_t cfg = golden_config();
    const size_t need = ekws_head_workspace_size(GH_C, GH_E, GH_N);
    CHECK(need > 0 && need <= sizeof workspace, "workspace size %u", (unsigned)need);
    CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, need - 1, GH_EMB_SCALE, GH_EMB_ZP) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "small workspace accepted");
    CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, need, -1.0f, 0) == EKWS_ERR_ARG, "bad scale accepted");
    cfg.num_classes = 1;
    CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, need, GH_EMB_SCALE, 0) == EKWS_ERR_ARG, "1 class accepted");
    cfg = golden_config();
    cfg.max_examples = 2;
    CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, sizeof workspace, GH_EMB_SCALE, GH_EMB_ZP) == EKWS_OK, "init");
    float loss;
    CHECK(ekws_head_imprint(&tr) == EKWS_ERR_STATE, "imprint without examples");
    CHECK(ekws_head_standardize(&tr) == EKWS_ERR_STATE, "standardize without examples");
    CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_ERR_STATE, "epoch without examples");
    CHECK(ekws_head_add_example(&tr, gh_emb, GH_E, GH_C) == EKWS_ERR_ARG, "label out of range accepted");
    CHECK(ekws_head_add_example(&tr, gh_emb, GH_E - 1, 0) == EKWS_ERR_ARG, "wrong length accepted");
    CHECK(ekws_head_add_example(&tr, gh_emb, GH_E, 0) == EKWS_OK, "add");
    CHECK(ekws_head_add_example(&tr, gh_emb, GH_E, 1) == EKWS_OK, "add");
    CHECK(ekws_head_add_example(&tr, gh_emb, GH_E, 1) == EKWS_ERR_BUFFER_TOO_SMALL, "overflow accepted");
    const uint16_t bad[1] = {7};
    CHECK(ekws_head_step(&tr, bad, 1, &loss) == EKWS_ERR_ARG, "example index out of range accepted");
    CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK, "epoch on 2 examples");
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int finite_f(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x7F800000u) != 0x7F800000u;
}

#define F_INF from_bits(0x7F800000u)
#define F_NAN from_bits(0x7FC00000u)

/* +inf passed the > 0 / >= 0 checks of lr, weight_decay and imprint_scale (NaN did not). */
static void test_nonfinite_config(void) {
    static uint32_t store[WS_BYTES / 4], train[WS_BYTES / 4];
    ekws_head_trainer_t tr;
    for (int k = 0; k < 6; k++) {
        ekws_head_config_t cfg = golden_config();
        float *field = k % 3 == 0 ? &cfg.lr : k % 3 == 1 ? &cfg.weight_decay : &cfg.imprint_scale;
        *field = k < 3 ? F_INF : F_NAN;
        CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, sizeof workspace, GH_EMB_SCALE, GH_EMB_ZP) ==
                  EKWS_ERR_ARG, "config %d (inf/nan hyper-parameter) accepted", k);
        CHECK(ekws_head_trainer_init_split(&tr, &cfg, store, sizeof store, train, sizeof train, GH_EMB_SCALE,
                                           GH_EMB_ZP) == EKWS_ERR_ARG, "split: config %d accepted", k);
    }
    const float y_nan = ekws_head_expf(F_NAN);
    CHECK(y_nan != y_nan, "expf(nan) = %g", (double)y_nan);
    CHECK(ekws_head_expf(F_INF) == 1.0f && ekws_head_expf(-F_INF) == 0.0f, "expf(+-inf)");
}

/* Training that diverges (finite but wild hyper-parameters) fills the weights with inf / NaN: the
 * softmax then sees NaN logits (ekws_head_expf converted NaN to int32) and ekws_head_quantize
 * returned EKWS_OK with a head of garbage. */
static void test_diverged_training(void) {
    const ekws_head_config_t cfg = {3, 8, 12, 4, 7, 100.0f, 0.9f, 1.0f, 4.0f};
    ekws_head_trainer_t tr;
    CHECK(ekws_head_trainer_init(&tr, &cfg, workspace, sizeof workspace, 0.05f, -10) == EKWS_OK, "init");
    for (int i = 0; i < 12; i++) {
        int8_t emb[8];
        for (int k = 0; k < 8; k++) {
            emb[k] = (int8_t)((i * 37 + k * 11) % 200 - 100);
        }
        CHECK(ekws_head_add_example(&tr, emb, 8, (uint32_t)(i % 3)) == EKWS_OK, "add %d", i);
    }
    CHECK(ekws_head_imprint(&tr) == EKWS_OK, "imprint");
    float loss = 0.0f;
    for (int ep = 0; ep < 40; ep++) {
        CHECK(ekws_head_train_epoch(&tr, &loss) == EKWS_OK, "epoch %d", ep);
    }
    int finite = 1;
    for (int i = 0; i < 3 * 8; i++) {
        finite = finite && finite_f(tr.weight[i]);
    }
    CHECK(!finite, "the training did not diverge (test setup)");
    memset(blob, 0xA5, sizeof blob);
    size_t size = 0;
    CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 1, &size) == EKWS_ERR_ARG, "diverged head quantized");
    CHECK(((const uint8_t *)blob)[0] == 0xA5u && size == 0, "a refused quantize wrote the blob");
}

/* Non-finite heads given directly, and finite ones whose logits overflow float32: refused. */
/* A requantization multiplier out of range (the embedding's scale 1, zero examples, weights 1000:
 * s_in_w / s_out >= 2^30): refused before the blob is touched, as the header promises. */
static void test_quantize_multiplier_refused_before_writing(void) {
    static uint32_t ws[4096];
    const ekws_head_config_t cfg = {2, 4, 4, 1, 1, 0.05f, 0.9f, 0.0f, 8.0f};
    ekws_head_trainer_t tr;
    CHECK(ekws_head_trainer_init(&tr, &cfg, ws, sizeof ws, 1.0f, 0) == EKWS_OK, "init");
    const int8_t z[4] = {0, 0, 0, 0};
    CHECK(ekws_head_add_example(&tr, z, 4, 0) == EKWS_OK && ekws_head_add_example(&tr, z, 4, 1) == EKWS_OK,
          "examples");
    const float w[8] = {1000, 0, 0, 0, 0, 1000, 0, 0}, b[2] = {0, 0};
    CHECK(ekws_head_set_weights(&tr, w, b) == EKWS_OK, "set_weights");
    memset(blob, 0xA5, sizeof blob);
    size_t size = 0;
    CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 0, &size) == EKWS_ERR_ARG, "multiplier >= 2^30 accepted");
    CHECK(((const uint8_t *)blob)[0] == 0xA5u && ((const uint8_t *)blob)[40] == 0xA5u,
          "a refused quantize wrote the blob");
}

static void test_quantize_nonfinite(void) {
    ekws_head_trainer_t tr;
    static float w[GH_C * GH_E], b[GH_C];
    size_t size = 0;
    for (int k = 0; k < 4; k++) {
        if (!setup(&tr)) {
            return;
        }
        memcpy(w, gh_w0, sizeof w);
        memcpy(b, gh_b0, sizeof b);
        if (k == 0) {
            w[3] = F_INF;
        } else if (k == 1) {
            w[GH_E + 1] = F_NAN;
        } else if (k == 2) {
            b[1] = -F_INF;
        } else {
            for (int i = 0; i < GH_C * GH_E; i++) {
                w[i] = 3e38f; /* finite; w . x is not */
            }
        }
        CHECK(ekws_head_set_weights(&tr, w, b) == EKWS_OK, "set_weights %d", k);
        memset(blob, 0xA5, sizeof blob);
        CHECK(ekws_head_quantize(&tr, blob, sizeof blob, 1, &size) == EKWS_ERR_ARG, "non-finite head %d quantized",
              k);
        CHECK(((const uint8_t *)blob)[0] == 0xA5u, "case %d: a refused quantize wrote the blob", k);
    }
    /* weights so small that max|w| / 127 underflows to 0: w / s_w is 0 / 0 for the zero weights,
     * which must not reach an int8 conversion as NaN */
    if (!setup(&tr)) {
        return;
    }
    memset(w, 0, sizeof w);
    memset(b, 0, sizeof b);
    for (int c = 0; c < GH_C; c++) {
        w[c * GH_E] = 1e-44f;
    }
    CHECK(ekws_head_set_weights(&tr, w, b) == EKWS_OK, "set_weights (tiny)");
    const ekws_status_t st = ekws_head_quantize(&tr, blob, sizeof blob, 1, &size);
    CHECK(st == EKWS_OK, "tiny head: %s", ekws_status_str(st));
    const char *why = ekws_head_check(blob, size);
    CHECK(why == NULL, "tiny head blob: %s", why ? why : "");
    const int8_t *q = (const int8_t *)blob + EKWS_HEAD_HEADER_SIZE;
    CHECK(q[1] == 0 && q[GH_E + 2] == 0, "zero weights of the tiny head quantized to %d, %d", (int)q[1],
          (int)q[GH_E + 2]);
}

/* Rows given after standardize / imprint were taken as standardized-space rows (the header says
 * rows in the embedding's space, converted by standardization): now refused, the rows kept. */
static void test_set_weights_after_standardize(void) {
    for (int k = 0; k < 2; k++) {
        ekws_head_trainer_t tr;
        if (!setup(&tr)) {
            return;
        }
        CHECK(ekws_head_set_weights(&tr, gh_w0, gh_b0) == EKWS_OK, "set_weights before");
        CHECK((k == 0 ? ekws_head_standardize(&tr) : ekws_head_imprint(&tr)) == EKWS_OK, "standardize/imprint");
        static float w_before[GH_C * GH_E], b_before[GH_C];
        memcpy(w_before, tr.weight, sizeof w_before);
        memcpy(b_before, tr.bias, sizeof b_before);
        CHECK(ekws_head_set_weights(&tr, gh_w0, gh_b0) == EKWS_ERR_STATE, "set_weights after %s accepted",
              k == 0 ? "standardize" : "imprint");
        CHECK(memcmp(w_before, tr.weight, sizeof w_before) == 0 && memcmp(b_before, tr.bias, sizeof b_before) == 0,
              "a refused set_weights changed the rows");
    }
}

/* Self-training's choice: the surest fraction of each predicted class, ties to the earlier clip, the counts
 * rounded up (tests/test_retrain.py checks the same case and random ones against numpy). */
static void test_self_train_pick(void) {
    static const int8_t logits[6 * 3] = {10, 0, 0, 3, 0, 0, 6, 0, 0,   /* class 0: surest 0, then 2, then 1 */
                                         0, 9, 0, 0, 9, 0,             /* class 1: a tie, the earlier first */
                                         0, 0, 1};                     /* class 2: one clip, always kept */
    float work[6];
    uint32_t idx[6], count = 99;
    CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, 500000u, work, idx, &count) == EKWS_OK, "pick 0.5");
    CHECK(count == 4 && idx[0] == 0 && idx[1] == 2 && idx[2] == 3 && idx[3] == 5, "pick 0.5: %u clips", (unsigned)count);
    CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, 330000u, work, idx, &count) == EKWS_OK && count == 3 &&
          idx[0] == 0 && idx[1] == 3 && idx[2] == 5, "pick 0.33");
    CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, 1000000u, work, idx, &count) == EKWS_OK && count == 6, "pick all");
    CHECK(ekws_head_self_train_pick(NULL, 0, 3, 1.0f, 500000u, NULL, NULL, &count) == EKWS_OK && count == 0, "no clips");
    const uint32_t bad_fraction[] = {0u, 1000001u, 0xFFFFFFFFu};
    for (unsigned i = 0; i < sizeof bad_fraction / sizeof *bad_fraction; ++i) {
        CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, bad_fraction[i], work, idx, &count) == EKWS_ERR_ARG,
              "fraction %u ppm accepted", (unsigned)bad_fraction[i]);
    }
    const float bad_scale[] = {0.0f, -1.0f, 1.0f / 0.0f};
    for (unsigned i = 0; i < sizeof bad_scale / sizeof *bad_scale; ++i) {
        CHECK(ekws_head_self_train_pick(logits, 6, 3, bad_scale[i], 500000u, work, idx, &count) == EKWS_ERR_ARG,
              "scale %g accepted", (double)bad_scale[i]);
    }
    CHECK(ekws_head_self_train_pick(logits, 6, 1, 1.0f, 500000u, work, idx, &count) == EKWS_ERR_ARG, "one class");
    CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, 500000u, NULL, idx, &count) == EKWS_ERR_ARG, "no work");
    CHECK(ekws_head_self_train_pick(logits, 6, 3, 1.0f, 500000u, work, idx, NULL) == EKWS_ERR_ARG, "no count");
}

int main(void) {
    test_self_train_pick();
    test_nonfinite_config();
    test_diverged_training();
    test_quantize_nonfinite();
    test_quantize_multiplier_refused_before_writing();
    test_set_weights_after_standardize();
    test_training();
    test_standardize();
    test_load_and_invoke();
    test_helpers();
    test_refusals();
    test_split();
    if (failures) {
        fprintf(stderr, "test_head: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_head: ok (%u-byte workspace for %u classes x %u, %u examples; %u-byte blob)\n",
           (unsigned)ekws_head_workspace_size(GH_C, GH_E, GH_N), GH_C, GH_E, GH_N, (unsigned)GH_BLOB_BYTES);
    return 0;
}
