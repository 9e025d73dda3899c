/* fuzz_frontend.c: libFuzzer target over the streaming frontend and the whole pipeline with
 * arbitrary audio. The first byte picks the chunk size; the rest is int16 PCM. Checks: no crash,
 * no sanitizer report, every output frame count within the promised capacity, and chunking
 * never changes the features (whole-buffer push == chunked push). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ekws/frontend.h"
#include "ekws_frontend_tables.h"

#define MAX_SAMPLES 16000
#define MAX_FRAMES (MAX_SAMPLES / 160 + 2)

static ekws_frontend_t fe_a, fe_b;
static int8_t out_a[MAX_FRAMES * EKWS_FRONTEND_NUM_BANDS], out_b[MAX_FRAMES * EKWS_FRONTEND_NUM_BANDS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) {
        return 0;
    }
    const size_t chunk = (size_t)data[0] * 7u + 1u;
    size_t n = (size - 1) / 2;
    n = n > MAX_SAMPLES ? MAX_SAMPLES : n;
    int16_t pcm[MAX_SAMPLES];
    memcpy(pcm, data + 1, n * sizeof(int16_t));
    if (ekws_frontend_init(&fe_a, &ekws_frontend_default_params) != EKWS_OK ||
        ekws_frontend_init(&fe_b, &ekws_frontend_default_params) != EKWS_OK) {
        abort();
    }
    size_t got_a = 0, got_b = 0, total_b = 0;
    const size_t cap = ekws_frontend_frames_for(&fe_a, n);
    if (ekws_frontend_push(&fe_a, pcm, n, out_a, cap, &got_a) != EKWS_OK || got_a != cap) {
        abort();
    }
    for (size_t i = 0; i < n; i += chunk) {
        const size_t m = n - i < chunk ? n - i : chunk;
        size_t got = 0;
        const size_t c = ekws_frontend_frames_for(&fe_b, m);
        if (ekws_frontend_push(&fe_b, pcm + i, m, out_b + total_b * EKWS_FRONTEND_NUM_BANDS, c, &got) != EKWS_OK) {
            abort();
        }
        total_b += got;
    }
    if (total_b != got_a || memcmp(out_a, out_b, got_a * EKWS_FRONTEND_NUM_BANDS) != 0) {
        abort(); /* chunking changed the features */
    }
    return 0;
}
