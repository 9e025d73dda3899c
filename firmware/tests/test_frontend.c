/* test_frontend.c: the C frontend against the Python golden vectors, bit for bit, in one push
 * and in random chunk sizes; plus reset, argument and capacity checks. */
#include <stdio.h>
#include <string.h>

#include "ekws/frontend.h"
#include "golden/frontend_golden.h"

#define MAX_FRAMES 64

#include "ekws_check.h"

static uint32_t lcg_state = 12345u;
static uint32_t lcg_next(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

/* Push c->audio in chunks of 1..max_chunk samples (max_chunk 0 = all at once) and compare. */
static void run_case(ekws_frontend_t *fe, const ekws_golden_frontend_case_t *c, uint32_t max_chunk) {
    static int8_t out[MAX_FRAMES * 128];
    size_t total = 0;
    size_t pos = 0;
    CHECK(ekws_frontend_init(fe, c->params) == EKWS_OK, "%s: init", c->name);
    while (pos < c->num_samples) {
        size_t n = c->num_samples - pos;
        if (max_chunk > 0) {
            size_t want = 1 + lcg_next() % max_chunk;
            n = want < n ? want : n;
        }
        size_t got = 0;
        const size_t cap = MAX_FRAMES - total;
        ekws_status_t st = ekws_frontend_push(fe, c->audio + pos, n,
                                              out + total * c->params->num_bands, cap, &got);
        CHECK(st == EKWS_OK, "%s: push status %s", c->name, ekws_status_str(st));
        if (st != EKWS_OK) {
            return;
        }
        total += got;
        pos += n;
    }
    CHECK(total == c->num_frames, "%s (chunk %u): %zu frames, expected %u", c->name,
          (unsigned)max_chunk, total, (unsigned)c->num_frames);
    size_t nvals = c->num_frames * c->params->num_bands;
    for (size_t i = 0; i < nvals && total == c->num_frames; i++) {
        if (out[i] != c->features[i]) {
            CHECK(0, "%s (chunk %u): frame %zu band %zu: got %d, expected %d", c->name,
                  (unsigned)max_chunk, i / c->params->num_bands, i % c->params->num_bands, out[i],
                  c->features[i]);
            break;
        }
    }
}

static void test_api(void) {
    ekws_frontend_t fe;
    int8_t out[EKWS_FRONTEND_NUM_BANDS * 2];
    int16_t pcm[EKWS_FRONTEND_WINDOW_LEN + EKWS_FRONTEND_HOP_LEN];
    size_t n = 99;
    memset(pcm, 0, sizeof pcm);
    CHECK(ekws_frontend_init(NULL, &ekws_frontend_default_params) == EKWS_ERR_NULL, "init NULL");
    CHECK(ekws_frontend_init(&fe, NULL) == EKWS_ERR_NULL, "init NULL params");
    ekws_frontend_params_t bad = ekws_frontend_default_params;
    bad.fft_size = 384;
    CHECK(ekws_frontend_init(&fe, &bad) == EKWS_ERR_CONFIG, "non power of two FFT");
    CHECK(ekws_frontend_push(&fe, pcm, 10, out, 2, &n) == EKWS_ERR_STATE, "push before init");
    bad = ekws_frontend_default_params;
    bad.hop_len = bad.window_len + 1;
    CHECK(ekws_frontend_init(&fe, &bad) == EKWS_ERR_CONFIG, "hop > window");
    CHECK(ekws_frontend_init(&fe, &ekws_frontend_default_params) == EKWS_OK, "init");
    CHECK(ekws_frontend_frames_for(&fe, EKWS_FRONTEND_WINDOW_LEN - 1) == 0, "frames_for short");
    CHECK(ekws_frontend_frames_for(&fe, sizeof pcm / sizeof pcm[0]) == 2, "frames_for 2");
    CHECK(ekws_frontend_push(&fe, pcm, sizeof pcm / sizeof pcm[0], out, 1, &n) ==
              EKWS_ERR_BUFFER_TOO_SMALL && n == 0, "capacity check");
    CHECK(ekws_frontend_push(&fe, pcm, sizeof pcm / sizeof pcm[0], out, 2, &n) == EKWS_OK && n == 2,
          "push after a refused push consumed nothing");
    CHECK(ekws_frontend_push(&fe, NULL, 0, NULL, 0, &n) == EKWS_OK && n == 0, "empty push");
    CHECK(ekws_frontend_push(&fe, NULL, 5, out, 2, &n) == EKWS_ERR_NULL, "NULL samples");
    CHECK(out[0] == -128 && out[EKWS_FRONTEND_NUM_BANDS] == -128, "silence maps to -128");
    CHECK(strcmp(ekws_status_str(EKWS_ERR_BUFFER_TOO_SMALL), "buffer too small") == 0, "status str");
    CHECK(strcmp(ekws_status_str((ekws_status_t)999), "unknown status") == 0, "unknown status");
}

int main(void) {
    static ekws_frontend_t fe;
    test_api();
    for (int i = 0; i < GOLDEN_FRONTEND_NUM_CASES; i++) {
        const ekws_golden_frontend_case_t *c = &golden_frontend_cases[i];
        run_case(&fe, c, 0);
        run_case(&fe, c, 1);
        run_case(&fe, c, 7);
        run_case(&fe, c, 333);
        run_case(&fe, c, 1000);
        /* reset mid-stream, then the whole clip again: same frames as a fresh init */
        size_t got = 0;
        static int8_t scratch[MAX_FRAMES * 128];
        ekws_frontend_push(&fe, c->audio, c->num_samples < 100 ? c->num_samples : 100, scratch,
                           MAX_FRAMES, &got);
        ekws_frontend_reset(&fe);
        run_case(&fe, c, 50);
    }
    printf("test_frontend: %d golden cases, %s\n", GOLDEN_FRONTEND_NUM_CASES,
           failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
