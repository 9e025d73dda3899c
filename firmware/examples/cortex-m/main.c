/* main.c: the edgekws keyword spotter on a Cortex-M, run on embedded test audio.
 *
 * The audio (ekws_example_audio, 16 kHz int16) goes through the whole streaming chain of
 * ekws/pipeline.h (integer frontend -> ring of feature frames -> int8 model every
 * EKWS_EXAMPLE_HOP_EVERY frames -> detector) one 20 ms hop at a time, as a microphone driver
 * would deliver it. Every detection is printed over semihosting as
 *     detect <frame> <label> <score_q15>
 * and compared with the detections of the Python reference (ekws_example_expected).
 * Exit status: 0 all detections match, 1 they differ, 2 an API call failed.
 * ekws_bench_begin/end bracket two single inferences and the whole stream, for the QEMU
 * instruction-counting plugin (regions 1-2: one model invoke each; region 3: all the audio). */
#include "ekws/pipeline.h"
#include "ekws_example_data.h"
#include "ekws_frontend_tables.h"
#include "ekws_model_data.h"
#include "semihost.h"

__attribute__((noinline)) void ekws_bench_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void ekws_bench_end(void) { __asm__ volatile("" ::: "memory"); }

static uint32_t arena[(EKWS_MODEL_ARENA_SIZE + 3u) / 4u];
static ekws_model_t model;
static ekws_pipeline_t pipe;
static ekws_pipeline_detection_t found[64];
static volatile size_t ekws_example_expected_count = EKWS_EXAMPLE_EXPECTED;

static int fail(const char *what, ekws_status_t st) {
    ekws_sh_puts("error: ");
    ekws_sh_puts(what);
    ekws_sh_puts(": ");
    ekws_sh_puts(ekws_status_str(st));
    ekws_sh_puts("\n");
    return 2;
}

int main(void) {
    ekws_status_t st = ekws_model_init(&model, ekws_model_data, EKWS_MODEL_DATA_BYTES, arena, sizeof arena);
    if (st != EKWS_OK) {
        return fail("ekws_model_init", st);
    }
    const ekws_detector_config_t det = {EKWS_MODEL_NUM_CLASSES, EKWS_EXAMPLE_SMOOTH, EKWS_EXAMPLE_REFRACTORY,
                                        ekws_example_lut, ekws_example_threshold};
    st = ekws_pipeline_init(&pipe, &ekws_frontend_default_params, &model, &det, EKWS_EXAMPLE_HOP_EVERY);
    if (st != EKWS_OK) {
        return fail("ekws_pipeline_init", st);
    }
    st = ekws_pipeline_set_voice_shift(&pipe, EKWS_EXAMPLE_VOICE_SHIFT);   /* the bundle's calibrated voice */
    if (st != EKWS_OK) {
        return fail("ekws_pipeline_set_voice_shift", st);
    }
    st = ekws_pipeline_set_voice_offset(&pipe, EKWS_EXAMPLE_VOICE_OFFSET_LEN ? ekws_example_voice_offset : NULL,
                                        EKWS_EXAMPLE_VOICE_OFFSET_LEN);   /* or its voice normalization */
    if (st != EKWS_OK) {
        return fail("ekws_pipeline_set_voice_offset", st);
    }
    /* Two single inferences on the silent initial window, for instructions per inference. */
    int8_t logits[EKWS_MODEL_NUM_CLASSES];
    for (int i = 0; i < 2; i++) {
        ekws_bench_begin();
        st = ekws_model_invoke(&model, pipe.ring, model.input_size, logits, EKWS_MODEL_NUM_CLASSES);
        ekws_bench_end();
        if (st != EKWS_OK) {
            return fail("ekws_model_invoke", st);
        }
    }
    const size_t hop = ekws_frontend_default_params.hop_len;
    size_t n = 0;
    ekws_bench_begin();
    for (size_t i = 0; i < EKWS_EXAMPLE_AUDIO_SAMPLES; i += hop) {
        const size_t len = EKWS_EXAMPLE_AUDIO_SAMPLES - i < hop ? EKWS_EXAMPLE_AUDIO_SAMPLES - i : hop;
        size_t got = 0;
        st = ekws_pipeline_push(&pipe, ekws_example_audio + i, len, found + n, 64 - n, &got);
        if (st != EKWS_OK) {
            return fail("ekws_pipeline_push", st);
        }
        n += got;
        if (n > 60) {
            break;
        }
    }
    ekws_bench_end();
    const size_t expected = ekws_example_expected_count; /* a variable: 0 is a valid count */
    int mismatch = n != expected;
    for (size_t j = 0; j < n; j++) {
        ekws_sh_puts("detect ");
        ekws_sh_put_u32(found[j].frame);
        ekws_sh_puts(" ");
        ekws_sh_puts(ekws_model_labels[found[j].label]);
        ekws_sh_puts(" ");
        ekws_sh_put_i32(found[j].score_q15);
        ekws_sh_puts("\n");
        if (j < expected) {
            const int32_t *e = ekws_example_expected + 3 * j;
            mismatch |= (int32_t)found[j].frame != e[0] || found[j].label != e[1] || found[j].score_q15 != e[2];
        }
    }
    ekws_sh_puts(mismatch ? "FAIL: detections differ from the Python reference\n"
                          : "OK: detections match the Python reference\n");
    return mismatch ? 1 : 0;
}
