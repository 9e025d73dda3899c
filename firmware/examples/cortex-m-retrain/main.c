/* main.c: on-device last-layer retraining on a Cortex-M, run under QEMU.
 *
 * The frozen int8 backbone (ekws_model_data: the base model's layers up to the pooled embedding)
 * turns each embedded training clip into an int8 embedding: 1 s of 16 kHz audio through the
 * integer frontend (or, with EKWS_RETRAIN_TRAIN_FEATURES, its precomputed int8 features) and the
 * backbone. The head trainer (ekws/head.h) keeps the examples in a static store, then imprints and
 * runs EKWS_RETRAIN_EPOCHS epochs of float32 SGD in its training memory, which overlays the model's
 * arena (idle between collecting the examples and quantizing) whenever the arena is large enough,
 * re-quantizes the head to a blob (what would be written to flash),
 * loads it as at boot (a damaged copy is rejected and the head kept), then classifies the test
 * clips. Printed over semihosting:
 *     blob_crc <hex>            must equal the numpy engine's (same bits on the MCU and the host)
 *     predict <i> <label>       per test clip; must equal the numpy int8 predictions
 *     accuracy <correct>/<n>
 * Exit status: 0 all match, 1 a mismatch, 2 an API call failed.
 * ekws_bench_begin/end bracket, for the QEMU instruction counter: region 1 collecting the
 * embeddings, 2 imprinting + training, 3 quantize + load, 4 classifying the test clips. */
#include <string.h>

#include "ekws/frontend.h"
#include "ekws/head.h"
#include "ekws/model.h"
#include "ekws_frontend_tables.h"
#include "ekws_model_data.h"
#include "ekws_retrain_data.h"
#include "semihost.h"

__attribute__((noinline)) void ekws_bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void ekws_bench_end(void) { __asm__ volatile("" ::: "memory"); }

#define E EKWS_RETRAIN_EMBED
#define C EKWS_RETRAIN_CLASSES
#define FEATS (EKWS_RETRAIN_FRAMES * EKWS_FRONTEND_NUM_BANDS)

#define ARENA_WORDS ((EKWS_MODEL_ARENA_SIZE + 3u) / 4u)
#define TRAIN_WORDS (EKWS_RETRAIN_TRAIN_BYTES / 4u)

static uint32_t arena[ARENA_WORDS];
#if TRAIN_WORDS <= ARENA_WORDS
#define TRAIN_MEMORY arena /* the training memory overlays the idle arena */
#else
static uint32_t train_memory[TRAIN_WORDS];
#define TRAIN_MEMORY train_memory
#endif
static uint32_t store[EKWS_RETRAIN_STORE_BYTES / 4u];
static uint32_t flash_blob[EKWS_RETRAIN_BLOB_BYTES / 4u];   /* stands for a flash sector */
static uint32_t damaged_blob[EKWS_RETRAIN_BLOB_BYTES / 4u];
static ekws_model_t backbone;
static ekws_frontend_t frontend;
static ekws_head_trainer_t trainer;
static ekws_head_t head;
static int8_t features[FEATS];

static int fail(const char *what, ekws_status_t st) {
    ekws_sh_puts("error: ");
    ekws_sh_puts(what);
    ekws_sh_puts(": ");
    ekws_sh_puts(ekws_status_str(st));
    ekws_sh_puts("\n");
    return 2;
}

/* 1 s of audio -> int8 features [frames][bands] -> int8 embedding [E]. */
static ekws_status_t embed_audio(const int16_t *audio, int8_t *embedding) {
    size_t frames = 0;
    ekws_frontend_reset(&frontend);
    ekws_status_t st = ekws_frontend_push(&frontend, audio, EKWS_RETRAIN_CLIP_SAMPLES, features,
                                          EKWS_RETRAIN_FRAMES, &frames);
    if (st != EKWS_OK) {
        return st;
    }
    if (frames != EKWS_RETRAIN_FRAMES) {
        return EKWS_ERR_CONFIG;
    }
    return ekws_model_invoke(&backbone, features, FEATS, embedding, E);
}

int main(void) {
    ekws_status_t st = ekws_model_init(&backbone, ekws_model_data, EKWS_MODEL_DATA_BYTES, arena, sizeof arena);
    if (st != EKWS_OK) {
        return fail("ekws_model_init", st);
    }
    st = ekws_frontend_init(&frontend, &ekws_frontend_default_params);
    if (st != EKWS_OK) {
        return fail("ekws_frontend_init", st);
    }
    const ekws_head_config_t cfg = {.num_classes = C, .embed_size = E, .max_examples = EKWS_RETRAIN_TRAIN_N,
                                    .batch = EKWS_RETRAIN_BATCH, .seed = EKWS_RETRAIN_SEED, .lr = EKWS_RETRAIN_LR,
                                    .momentum = EKWS_RETRAIN_MOMENTUM, .weight_decay = EKWS_RETRAIN_WEIGHT_DECAY,
                                    .imprint_scale = EKWS_RETRAIN_IMPRINT_SCALE};
    st = ekws_head_trainer_init_split(&trainer, &cfg, store, sizeof store, TRAIN_MEMORY, sizeof TRAIN_MEMORY,
                                      EKWS_RETRAIN_EMB_SCALE, EKWS_RETRAIN_EMB_ZP);
    if (st != EKWS_OK) {
        return fail("ekws_head_trainer_init_split", st);
    }

    /* 1: collect embeddings */
    int8_t emb[E];
    ekws_bench_begin();
    for (uint32_t i = 0; i < EKWS_RETRAIN_TRAIN_N; i++) {
#if EKWS_RETRAIN_TRAIN_FEATURES
        st = ekws_model_invoke(&backbone, ekws_retrain_train_features + (size_t)i * FEATS, FEATS, emb, E);
#else
        st = embed_audio(ekws_retrain_train_audio + (size_t)i * EKWS_RETRAIN_CLIP_SAMPLES, emb);
#endif
        if (st == EKWS_OK) {
            st = ekws_head_add_example(&trainer, emb, E, ekws_retrain_train_labels[i]);
        }
        if (st != EKWS_OK) {
            ekws_bench_end();
            return fail("collecting embeddings", st);
        }
    }
    ekws_bench_end();

    /* 2: the previous head's rows (classes without examples keep them), imprint, SGD epochs; from
     * here until the blob is written the arena holds the training memory, so no model runs */
    float loss = 0.0f;
    ekws_bench_begin();
    st = ekws_head_set_weights(&trainer, ekws_retrain_init_w, ekws_retrain_init_b);
    if (st == EKWS_OK) {
        st = ekws_head_imprint(&trainer);
    }
    for (uint32_t k = 0; k < EKWS_RETRAIN_EPOCHS && st == EKWS_OK; k++) {
        st = ekws_head_train_epoch(&trainer, &loss);
    }
    ekws_bench_end();
    if (st != EKWS_OK) {
        return fail("training", st);
    }

    /* 3: re-quantize into "flash", then load it as at boot; a damaged copy must be refused */
    size_t size = 0;
    ekws_bench_begin();
    st = ekws_head_quantize(&trainer, flash_blob, sizeof flash_blob, EKWS_RETRAIN_FLOAT_HEAD, &size);
    if (st == EKWS_OK) {
        st = ekws_head_load(&head, flash_blob, size);
    }
    ekws_bench_end();
    if (st != EKWS_OK) {
        return fail("quantize/load", st);
    }
    memcpy(damaged_blob, flash_blob, size);
    ((uint8_t *)damaged_blob)[size / 2u] ^= 0x20u;
    const int refused = ekws_head_load(&head, damaged_blob, size) == EKWS_ERR_CONFIG &&
                        head.blob == (const uint8_t *)flash_blob;
    const uint32_t crc = ((const uint32_t *)flash_blob)[3];
    ekws_sh_puts("blob_crc ");
    ekws_sh_put_hex32(crc);
    ekws_sh_puts("\n");
    ekws_sh_puts("damaged_blob_refused ");
    ekws_sh_puts(refused ? "yes\n" : "NO\n");

    /* 4: classify the test clips */
    int mismatch = crc != EKWS_RETRAIN_EXPECTED_CRC || !refused;
    uint32_t correct = 0;
    int16_t scratch[E];
    ekws_bench_begin();
    for (uint32_t i = 0; i < EKWS_RETRAIN_TEST_N && st == EKWS_OK; i++) {
        int8_t logits[C];
        st = embed_audio(ekws_retrain_test_audio + (size_t)i * EKWS_RETRAIN_CLIP_SAMPLES, emb);
        if (st == EKWS_OK) {
            st = ekws_head_invoke_s8(&head, emb, E, logits, C, scratch);
        }
        const uint32_t p = ekws_argmax_s8(logits, C);
        ekws_sh_puts("predict ");
        ekws_sh_put_u32(i);
        ekws_sh_puts(" ");
        ekws_sh_puts(ekws_retrain_labels[p]);
        ekws_sh_puts("\n");
        mismatch |= p != ekws_retrain_test_expected[i];
        correct += p == ekws_retrain_test_labels[i];
    }
    ekws_bench_end();
    if (st != EKWS_OK) {
        return fail("classifying", st);
    }
    ekws_sh_puts("accuracy ");
    ekws_sh_put_u32(correct);
    ekws_sh_puts("/");
    ekws_sh_put_u32(EKWS_RETRAIN_TEST_N);
    ekws_sh_puts(mismatch ? "\nMISMATCH with the numpy engine\n" : "\nmatches the numpy engine\n");
    return mismatch ? 1 : 0;
}
