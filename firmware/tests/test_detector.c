/* test_detector.c: the detector (posteriors, smoothing, thresholds, refractory) and the whole
 * streaming pipeline (audio -> detections) against the Python reference's golden vectors
 * (tests/golden/detector_golden.h), chunking independence, and argument checks. */
#include <stdio.h>
#include <string.h>

#include "ekws/pipeline.h"
#include "ekws_frontend_tables.h"
#include "golden/detector_golden.h"

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

int main(void) {
    test_detector_steps();
    test_detector_refusals();
    run_pipeline(GOLDEN_PIPE_SAMPLES);
    run_pipeline(1);
    run_pipeline(333);
    if (failures) {
        fprintf(stderr, "test_detector: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_detector: ok (%d detector steps, %d pipeline detections)\n", GOLDEN_DET_STEPS, GOLDEN_PIPE_NUM);
    return 0;
}
