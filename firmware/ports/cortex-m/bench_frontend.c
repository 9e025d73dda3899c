/* bench_frontend.c: the frontend on the target. First checks every golden case of the default
 * config bit for bit (so the counted code is the code that matches Python), then pushes
 * EKWS_BENCH_HOPS hops of speech, one 20 ms hop per ekws_frontend_push call, each call bracketed
 * by ekws_bench_begin()/ekws_bench_end() so the QEMU plugin counts instructions per hop.
 * Exit status: 0 ok, 1 golden mismatch, 2 API error. */
#include "ekws/frontend.h"
#include "golden/frontend_golden.h"
#include "semihost.h"

#ifndef EKWS_BENCH_HOPS
#define EKWS_BENCH_HOPS 50
#endif

/* Markers: the plugin counts from entering begin to entering end. noinline keeps them real. */
__attribute__((noinline)) void ekws_bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void ekws_bench_end(void) { __asm__ volatile("" ::: "memory"); }

static ekws_frontend_t fe;
static int8_t frames[64 * EKWS_FRONTEND_NUM_BANDS];

/* 0 when the case's features match, else 1. */
static int check_golden(const ekws_golden_frontend_case_t *c) {
    size_t got = 0;
    if (ekws_frontend_init(&fe, c->params) != EKWS_OK ||
        ekws_frontend_push(&fe, c->audio, c->num_samples, frames, sizeof frames / EKWS_FRONTEND_NUM_BANDS,
                           &got) != EKWS_OK ||
        got != c->num_frames) {
        return 1;
    }
    for (uint32_t i = 0; i < c->num_frames * c->params->num_bands; i++) {
        if (frames[i] != c->features[i]) {
            return 1;
        }
    }
    return 0;
}

int main(void) {
    int bad = 0;
    for (int i = 0; i < GOLDEN_FRONTEND_NUM_CASES; i++) {
        if (golden_frontend_cases[i].params->num_bands <= EKWS_FRONTEND_NUM_BANDS) {
            bad += check_golden(&golden_frontend_cases[i]);
        }
    }
    ekws_sh_puts(bad ? "golden: MISMATCH\n" : "golden: all cases bit-exact\n");
    if (bad) {
        return 1;
    }

    const ekws_golden_frontend_case_t *speech = &golden_frontend_cases[0];
    const uint32_t hop = EKWS_FRONTEND_HOP_LEN;
    uint32_t pos = 0;
    size_t got = 0;
    uint32_t checksum = 0;
    if (ekws_frontend_init(&fe, &ekws_frontend_default_params) != EKWS_OK ||
        ekws_frontend_push(&fe, speech->audio, EKWS_FRONTEND_WINDOW_LEN - hop, frames, 1, &got) != EKWS_OK) {
        return 2;
    }
    pos = EKWS_FRONTEND_WINDOW_LEN - hop; /* from here on, every hop completes exactly one frame */
    for (int h = 0; h < EKWS_BENCH_HOPS; h++) {
        if (pos + hop > speech->num_samples) {
            pos = 0; /* loop the clip */
        }
        ekws_bench_begin();
        const ekws_status_t st = ekws_frontend_push(&fe, speech->audio + pos, hop, frames, 1, &got);
        ekws_bench_end();
        if (st != EKWS_OK || got != 1) {
            return 2;
        }
        for (uint32_t b = 0; b < EKWS_FRONTEND_NUM_BANDS; b++) {
            checksum = checksum * 31u + (uint32_t)(uint8_t)frames[b];
        }
        pos += hop;
    }
    ekws_sh_puts("hops: ");
    ekws_sh_put_u32(EKWS_BENCH_HOPS);
    ekws_sh_puts(" checksum: ");
    ekws_sh_put_hex32(checksum);
    ekws_sh_puts("\n");
    return 0;
}
