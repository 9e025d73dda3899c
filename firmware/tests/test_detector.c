/* test_detector.c: the detector (posteriors, smoothing, thresholds, refractory) and the whole
 * streaming pipeline (audio -> detections) against the Python reference's golden vectors
 * (tests/golden/detector_golden.h), chunking independence, and argument checks; with a crafted
 * one-frame model (tests/ekws_blob.h): model steps stay hop_every frames apart across the wrap of
 * the 32-bit frame counter, and the band limit EKWS_PIPELINE_MAX_BANDS. */
#include <stdio.h>
#include <string.h>

#include "ekws/pipeline.h"
#include "ekws_frontend_tables.h"
#include "golden/detector_golden.h"

#include "ekws_blob.h"
#include "ekws_check.h"

static void test_detector_steps(void) {
    const ekws_detector_config_t cfg = {GOLDEN_DET_CLASSES, GOLDEN_DET_SMOOTH, GOLDEN_DET_REFRACTORY,
                                        golden_det_lut, golden_det_threshold};
    ekws_detector_t det;
    CHECK(ekws_detector_init(&det, &cfg) == EKWS_OK, "init");
    int found = 0;
    for (int t = 0; t < GOLDEN_DET_STEPS; t++) {
        ekws_detection_t d;
        const int8_t *x = golden_det_logits + t * GOLDEN_DET_CLASSES;
        CHECK(ekws_detector_step(&det, x, GOLDEN_DET_CLASSES, &d) == EKWS_OK, "step %d", t);
        CHECK(memcmp(det.posterior, golden_det_posteriors + t * GOLDEN_DET_CLASSES,
                     GOLDEN_DET_CLASSES * sizeof(uint16_t)) == 0, "step %d: posteriors differ", t);
        if (d.label >= 0) {
            CHECK(found < GOLDEN_DET_NUM, "step %d: extra detection", t);
            if (found < GOLDEN_DET_NUM) {
                const int32_t *g = golden_det_detections + 3 * found;
                CHECK(g[0] == t && g[1] == d.label && g[2] == d.score_q15,
                      "detection %d: got (%d, %d, %d), want (%d, %d, %d)", found, t, (int)d.label,
                      (int)d.score_q15, (int)g[0], (int)g[1], (int)g[2]);
            }
            found++;
        }
    }
    CHECK(found == GOLDEN_DET_NUM, "%d detections, want %d", found, GOLDEN_DET_NUM);
}

static void test_detector_refusals(void) {
    ekws_detector_t det;
    ekws_detector_config_t cfg = {GOLDEN_DET_CLASSES, GOLDEN_DET_SMOOTH, 0, golden_det_lut, golden_det_threshold};
    ekws_detection_t d;
    int8_t logits[GOLDEN_DET_CLASSES] = {0};
    CHECK(ekws_detector_init(NULL, &cfg) == EKWS_ERR_NULL, "NULL state");
    cfg.smooth = EKWS_DETECTOR_MAX_SMOOTH + 1;
    CHECK(ekws_detector_init(&det, &cfg) == EKWS_ERR_CONFIG, "smooth too large");
    cfg.smooth = 1;
    cfg.num_classes = EKWS_DETECTOR_MAX_CLASSES + 1;
    CHECK(ekws_detector_init(&det, &cfg) == EKWS_ERR_CONFIG, "too many classes");
    cfg.num_classes = GOLDEN_DET_CLASSES;
    CHECK(ekws_detector_init(&det, &cfg) == EKWS_OK, "valid config");
    CHECK(ekws_detector_step(&det, logits, GOLDEN_DET_CLASSES - 1, &d) == EKWS_ERR_ARG, "wrong class count");
    CHECK(ekws_detector_step(&det, NULL, GOLDEN_DET_CLASSES, &d) == EKWS_ERR_NULL, "NULL logits");
}

static uint32_t arena[(GOLDEN_PIPE_MODEL_ARENA + 3) / 4];
static ekws_pipeline_t pipe;

/* Push the golden audio in chunks of `chunk` samples; compare the detections. */
static void run_pipeline(size_t chunk) {
    ekws_model_t model;
    ekws_status_t st = ekws_model_init(&model, golden_pipe_model, sizeof golden_pipe_model, arena, sizeof arena);
    CHECK(st == EKWS_OK, "model init: %s", ekws_status_str(st));
    const ekws_detector_config_t cfg = {GOLDEN_PIPE_CLASSES, GOLDEN_PIPE_SMOOTH, GOLDEN_PIPE_REFRACTORY,
                                        golden_pipe_lut, golden_pipe_threshold};
    st = ekws_pipeline_init(&pipe, &ekws_frontend_default_params, &model, &cfg, GOLDEN_PIPE_HOP_EVERY);
    CHECK(st == EKWS_OK, "pipeline init: %s", ekws_status_str(st));
    if (st != EKWS_OK) {
        return;
    }
    ekws_pipeline_detection_t dets[64];
    size_t found = 0;
    for (size_t i = 0; i < GOLDEN_PIPE_SAMPLES; i += chunk) {
        const size_t n = GOLDEN_PIPE_SAMPLES - i < chunk ? GOLDEN_PIPE_SAMPLES - i : chunk;
        size_t got = 0;
        st = ekws_pipeline_push(&pipe, golden_pipe_audio + i, n, dets, 64, &got);
        CHECK(st == EKWS_OK, "push: %s", ekws_status_str(st));
        for (size_t j = 0; j < got; j++, found++) {
            if (found < GOLDEN_PIPE_NUM) {
                const int32_t *g = golden_pipe_detections + 3 * found;
                CHECK((int32_t)dets[j].frame == g[0] && dets[j].label == g[1] && dets[j].score_q15 == g[2],
                      "chunk %zu, detection %zu: got (%u, %d, %d), want (%d, %d, %d)", chunk, found,
                      (unsigned)dets[j].frame, (int)dets[j].label, (int)dets[j].score_q15, (int)g[0],
                      (int)g[1], (int)g[2]);
            }
        }
    }
    CHECK(found == GOLDEN_PIPE_NUM, "chunk %zu: %zu detections, want %d", chunk, found, GOLDEN_PIPE_NUM);
    size_t got = 0;
    CHECK(ekws_pipeline_push(&pipe, golden_pipe_audio, 16000, dets, 1, &got) == EKWS_ERR_BUFFER_TOO_SMALL,
          "too few detection slots accepted");
}

/* A dense model over one frame of `bands` values, 2 classes: zero weights, class 0 wins by its
 * bias at every step. */
#define TINY_MAX_IN 260u
static uint32_t tiny_blob[(TB_DATA + 2u * TINY_MAX_IN + 24u + 3u) / 4u];
static uint32_t tiny_arena[(2u * TINY_MAX_IN + 3u) / 4u];

static ekws_status_t tiny_model(ekws_model_t *m, uint32_t bands) {
    tb_layer_t r = tb_layer(EKWS_OP_DENSE, 1, bands, 1, 1, 1, 2, 1, 1);
    r.w[TL_IN_ZP] = 0xFFFFFF80u;
    const uint32_t wbytes = (2u * bands + 3u) & ~3u;
    r.w[TL_W_OFF] = TB_DATA;
    r.w[TL_B_OFF] = TB_DATA + wbytes;
    r.w[TL_M_OFF] = TB_DATA + wbytes + 8u;
    r.w[TL_S_OFF] = TB_DATA + wbytes + 16u;
    const uint32_t total = tb_blob(tiny_blob, sizeof tiny_blob, &r, NULL, wbytes + 24u, wbytes);
    uint8_t *d = (uint8_t *)tiny_blob + TB_DATA + wbytes;
    const uint32_t words[6] = {1000000u, (uint32_t)-1000000, 1u << 30, 1u << 30, 31u, 31u};
    for (uint32_t i = 0; i < 6; i++) {
        ekws_wr32le(d + 4u * i, words[i]);
    }
    tb_seal(tiny_blob, total);
    return ekws_model_init(m, tiny_blob, total, tiny_arena, sizeof tiny_arena);
}

static uint16_t tiny_lut[256];
static const int32_t tiny_thr[2] = {0, 0};
static const int16_t silence[800];

/* The step rule was frames % hop_every == 0 on the uint32_t frame counter: at its wrap (2^32 is
 * not a multiple of 3) two steps came one frame apart, and with refractory 0 a push wrote more
 * detections than ekws_pipeline_max_detections promised, past `capacity`. */
static void test_pipeline_counter_wrap(void) {
    for (int i = 0; i < 256; i++) {
        tiny_lut[i] = (uint16_t)(65535 >> (i < 16 ? i : 16));
    }
    ekws_model_t model;
    ekws_status_t st = tiny_model(&model, 40);
    CHECK(st == EKWS_OK, "tiny model init: %s", ekws_status_str(st));
    const ekws_detector_config_t cfg = {2, 1, 0, tiny_lut, tiny_thr}; /* fires at every step */
    st = ekws_pipeline_init(&pipe, &ekws_frontend_default_params, &model, &cfg, 3);
    CHECK(st == EKWS_OK, "pipeline init: %s", ekws_status_str(st));
    if (st != EKWS_OK) {
        return;
    }
    pipe.frames = 0xFFFFFFF0u; /* ~2.7 years of frames at 50 per second */
    ekws_pipeline_detection_t dets[9];
    uint32_t prev = 0, seen = 0;
    for (int k = 0; k < 20; k++) {
        const size_t cap = ekws_pipeline_max_detections(&pipe, 800);
        CHECK(cap < 9, "capacity %zu", cap);
        if (cap >= 9) {
            return;
        }
        dets[cap].frame = 0xDEADBEEFu; /* the slot just past capacity */
        size_t got = 0;
        st = ekws_pipeline_push(&pipe, silence, 800, dets, cap, &got);
        CHECK(st == EKWS_OK, "push %d: %s", k, ekws_status_str(st));
        CHECK(got <= cap && dets[cap].frame == 0xDEADBEEFu, "push %d: %zu detections for capacity %zu", k, got, cap);
        for (size_t j = 0; j < got && j < cap; j++, seen++) {
            CHECK(seen == 0 || dets[j].frame - prev == 3u, "detection at frame %u, %u after the previous one",
                  (unsigned)dets[j].frame, (unsigned)(dets[j].frame - prev));
            prev = dets[j].frame;
        }
    }
    CHECK(pipe.frames < 0xFFFFFFF0u && seen > 10, "the frame counter did not wrap (%u, %u steps)",
          (unsigned)pipe.frames, (unsigned)seen);
    /* more samples than size_t counts (buffered + n overflows): saturates; with hop_every 1 the
     * frontend's (size_t)-1 + 1 wrapped to 0, and a push with capacity 0 passed the check */
    pipe.hop_every = 1;
    pipe.fe.fill = 100; /* samples buffered towards the next frame */
    CHECK(ekws_pipeline_max_detections(&pipe, (size_t)-1) == (size_t)-1, "max detections %zu",
          ekws_pipeline_max_detections(&pipe, (size_t)-1));
}

/* More bands than push's frame buffer were accepted by init, then every push failed. */
static void test_pipeline_band_limit(void) {
    static uint16_t bs[TINY_MAX_IN], bl[TINY_MAX_IN], bo[TINY_MAX_IN];
    static const uint16_t bw[1] = {32768};
    for (uint32_t i = 0; i < TINY_MAX_IN; i++) {
        bs[i] = (uint16_t)(i % 200u);
        bl[i] = 1;
        bo[i] = 0;
    }
    ekws_frontend_params_t p = ekws_frontend_default_params;
    p.band_start = bs;
    p.band_len = bl;
    p.band_offset = bo;
    p.band_weights = bw;
    const ekws_detector_config_t cfg = {2, 1, 0, tiny_lut, tiny_thr};
    ekws_pipeline_detection_t dets[8];
    const uint32_t bands[2] = {EKWS_PIPELINE_MAX_BANDS, EKWS_PIPELINE_MAX_BANDS + 2u};
    for (int k = 0; k < 2; k++) {
        ekws_model_t model;
        ekws_status_t st = tiny_model(&model, bands[k]);
        CHECK(st == EKWS_OK, "tiny model of %u inputs: %s", (unsigned)bands[k], ekws_status_str(st));
        p.num_bands = bands[k];
        st = ekws_pipeline_init(&pipe, &p, &model, &cfg, 1);
        if (k == 1) {
            CHECK(st == EKWS_ERR_CONFIG, "%u bands accepted: %s", (unsigned)bands[k], ekws_status_str(st));
            continue;
        }
        CHECK(st == EKWS_OK, "%u bands refused: %s", (unsigned)bands[k], ekws_status_str(st));
        size_t got = 0;
        st = ekws_pipeline_push(&pipe, silence, 800, dets, 8, &got);
        CHECK(st == EKWS_OK && got > 0, "push with %u bands: %s, %zu detections", (unsigned)bands[k],
              ekws_status_str(st), got);
    }
}

/* ekws_pipeline_set_voice_shift takes |shift| < num_bands and keeps it across a reset (its effect on
 * detections is checked against the Python pipeline: tests/test_calibrate.py). */
static const ekws_detector_config_t golden_cfg = {GOLDEN_PIPE_CLASSES, GOLDEN_PIPE_SMOOTH, GOLDEN_PIPE_REFRACTORY,
                                                  golden_pipe_lut, golden_pipe_threshold};

/* `pipe` on the golden model (bound to `model`) with the golden detector settings. */
static void golden_pipeline(ekws_model_t *model) {
    CHECK(ekws_model_init(model, golden_pipe_model, sizeof golden_pipe_model, arena, sizeof arena) == EKWS_OK,
          "model init");
    CHECK(ekws_pipeline_init(&pipe, &ekws_frontend_default_params, model, &golden_cfg, GOLDEN_PIPE_HOP_EVERY) ==
              EKWS_OK, "pipeline init");
}

static void test_voice_shift_setting(void) {
    static ekws_pipeline_t blank;
    CHECK(ekws_pipeline_set_voice_shift(&blank, 1) == EKWS_ERR_STATE, "shift set on an uninitialized pipeline");
    CHECK(ekws_pipeline_set_voice_shift(NULL, 1) == EKWS_ERR_NULL, "NULL pipeline accepted");
    ekws_model_t model;
    golden_pipeline(&model);
    const int32_t bands = (int32_t)ekws_frontend_default_params.num_bands;
    CHECK(pipe.voice_shift == 0, "init leaves a voice shift of %d", (int)pipe.voice_shift);
    CHECK(ekws_pipeline_set_voice_shift(&pipe, bands) == EKWS_ERR_ARG, "a shift of num_bands accepted");
    CHECK(ekws_pipeline_set_voice_shift(&pipe, -bands) == EKWS_ERR_ARG, "a shift of -num_bands accepted");
    CHECK(ekws_pipeline_set_voice_shift(&pipe, bands - 1) == EKWS_OK, "a shift of num_bands - 1 refused");
    CHECK(ekws_pipeline_set_voice_shift(&pipe, -3) == EKWS_OK && pipe.voice_shift == -3, "a shift of -3 refused");
    ekws_pipeline_reset(&pipe);
    CHECK(pipe.voice_shift == -3, "reset dropped the voice shift");
}

/* ekws_pipeline_set_voice_offset takes NULL or exactly the model's embedding size, keeps the pointer
 * across a reset, and a step with it equals ekws_model_invoke_voice on the same window (its
 * detections are checked against the Python pipeline: tests/test_voicenorm.py). */
static void test_voice_offset_setting(void) {
    static ekws_pipeline_t blank;
    static int32_t offset[EKWS_PIPELINE_MAX_BANDS * 4];
    CHECK(ekws_pipeline_set_voice_offset(&blank, offset, 1) == EKWS_ERR_STATE, "offset set on an uninitialized pipeline");
    CHECK(ekws_pipeline_set_voice_offset(NULL, offset, 1) == EKWS_ERR_NULL, "NULL pipeline accepted");
    ekws_model_t model;
    golden_pipeline(&model);
    const size_t size = ekws_model_embedding_size(&model);
    CHECK(size > 0 && size <= sizeof offset / sizeof offset[0], "embedding size %zu", size);
    CHECK(pipe.voice_offset == NULL, "init leaves a voice offset");
    CHECK(ekws_pipeline_set_voice_offset(&pipe, offset, size + 1) == EKWS_ERR_ARG, "a longer offset accepted");
    CHECK(ekws_pipeline_set_voice_offset(&pipe, offset, size - 1) == EKWS_ERR_ARG, "a shorter offset accepted");
    for (size_t k = 0; k < size; k++) {
        offset[k] = (int32_t)(k % 7) * 9 - 27;
    }
    CHECK(ekws_pipeline_set_voice_offset(&pipe, offset, size) == EKWS_OK && pipe.voice_offset == offset,
          "an offset of the embedding's size refused");
    ekws_pipeline_reset(&pipe);
    CHECK(pipe.voice_offset == offset, "reset dropped the voice offset");
    /* one model step of silence: the pipeline's logits are ekws_model_invoke_voice's */
    static int16_t quiet[16000];
    ekws_pipeline_detection_t dets[64];
    size_t got = 0;
    const size_t n = (size_t)ekws_frontend_default_params.hop_len * (GOLDEN_PIPE_HOP_EVERY + 2u);
    CHECK(ekws_pipeline_push(&pipe, quiet, n, dets, 64, &got) == EKWS_OK, "push with an offset");
    int8_t want[EKWS_DETECTOR_MAX_CLASSES], plain[EKWS_DETECTOR_MAX_CLASSES];
    CHECK(ekws_model_invoke_voice(&model, pipe.input, model.input_size, offset, size, want, model.num_classes) ==
              EKWS_OK, "invoke_voice");
    CHECK(ekws_model_invoke(&model, pipe.input, model.input_size, plain, model.num_classes) == EKWS_OK, "invoke");
    CHECK(memcmp(pipe.logits, want, model.num_classes) == 0, "the pipeline's step differs from invoke_voice");
    CHECK(memcmp(plain, want, model.num_classes) != 0, "the offset changed no logit");
    CHECK(ekws_pipeline_set_voice_offset(&pipe, NULL, 0) == EKWS_OK && pipe.voice_offset == NULL, "NULL refused");
}

int main(void) {
    test_detector_steps();
    test_detector_refusals();
    run_pipeline(GOLDEN_PIPE_SAMPLES);
    run_pipeline(1);
    run_pipeline(333);
    test_pipeline_counter_wrap();
    test_pipeline_band_limit();
    test_voice_shift_setting();
    test_voice_offset_setting();
    if (failures) {
        fprintf(stderr, "test_detector: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_detector: ok (%d detector steps, %d pipeline detections)\n", GOLDEN_DET_STEPS, GOLDEN_PIPE_NUM);
    return 0;
}
