/* test_model.c: the model runner on the golden whole-model blob (tests/golden/model_golden.h):
 * logits bit for bit, exact arena size, and refusal of corrupt, truncated or misaligned blobs;
 * crafted one-layer blobs with a valid CRC (tests/ekws_blob.h) that the layer checks must refuse
 * (sizes that wrap 32 bits, a dense layer too large for the int32 accumulator, windows past the
 * padded input) next to the largest ones they accept; voice search (ekws_model_invoke_search) against
 * inferences on inputs shifted here; voice normalization (ekws_model_embed, ekws_voice_offset,
 * ekws_model_invoke_voice) on the golden model. */
#include <stdio.h>
#include <string.h>

#include "ekws/model.h"
#include "golden/model_golden.h"

#include "ekws_blob.h"
#include "ekws_check.h"

static uint32_t arena[(GOLDEN_MODEL_ARENA + 3) / 4];
static uint32_t copy[(GOLDEN_MODEL_BYTES + 3) / 4];

static void test_logits(void) {
    ekws_model_t m;
    CHECK(ekws_model_check(golden_model_blob, GOLDEN_MODEL_BYTES) == NULL, "golden blob rejected");
    CHECK(ekws_model_arena_size(golden_model_blob, GOLDEN_MODEL_BYTES) == GOLDEN_MODEL_ARENA, "arena size");
    ekws_status_t st = ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA);
    CHECK(st == EKWS_OK, "init: %s", ekws_status_str(st));
    if (st != EKWS_OK) {
        return;
    }
    for (int i = 0; i < GOLDEN_MODEL_NUM_INPUTS; i++) {
        int8_t logits[GOLDEN_MODEL_NUM_CLASSES + 1];
        logits[GOLDEN_MODEL_NUM_CLASSES] = 0x55;
        st = ekws_model_invoke(&m, golden_model_inputs + i * GOLDEN_MODEL_INPUT_SIZE, GOLDEN_MODEL_INPUT_SIZE,
                               logits, GOLDEN_MODEL_NUM_CLASSES);
        CHECK(st == EKWS_OK, "invoke %d: %s", i, ekws_status_str(st));
        CHECK(memcmp(logits, golden_model_logits + i * GOLDEN_MODEL_NUM_CLASSES, GOLDEN_MODEL_NUM_CLASSES) == 0,
              "input %d: logits differ from the numpy reference", i);
        CHECK(logits[GOLDEN_MODEL_NUM_CLASSES] == 0x55, "wrote past the logits");
    }
    int8_t small[2];
    CHECK(ekws_model_invoke(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE, small, 2) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "short logits buffer accepted");
    CHECK(ekws_model_invoke(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE - 1, small, 2) == EKWS_ERR_ARG,
          "wrong input length accepted");
}

/* band b reads band b + s of every frame, the edge band repeated (edgekws.evaluate.shift_bands) */
static void shift_input(const int8_t *in, int8_t *out, int s) {
    const int bands = 40, rows = GOLDEN_MODEL_INPUT_SIZE / 40;
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < bands; b++) {
            int src = b + s < 0 ? 0 : (b + s >= bands ? bands - 1 : b + s);
            out[r * bands + b] = in[r * bands + src];
        }
    }
}

/* row t reads position c + (t - c) * r / 256 of the rows (c the middle row, clamped to the edge rows),
 * linear between the rows around it with weights in 1/512, rounded half up
 * (edgekws.evaluate.warp_time), here in doubles: every value involved is exact in a double */
static int floor_of(double v) { const int i = (int)v; return v < (double)i ? i - 1 : i; }

static void warp_input(const int8_t *in, int8_t *out, int r) {
    const int bands = 40, rows = GOLDEN_MODEL_INPUT_SIZE / 40;
    for (int t = 0; t < rows; t++) {
        double pos = (rows - 1) / 2.0 + (t - (rows - 1) / 2.0) * r / 256.0;
        pos = pos < 0 ? 0 : (pos > rows - 1 ? rows - 1 : pos);
        const int i0 = floor_of(pos), i1 = i0 + 1 < rows ? i0 + 1 : rows - 1;
        const double f = (pos - i0) * 512.0;
        for (int b = 0; b < bands; b++) {
            const double v = (in[i0 * bands + b] * (512.0 - f) + in[i1 * bands + b] * f) / 512.0;
            out[t * bands + b] = (int8_t)floor_of(v + 0.5);
        }
    }
}

static float spread_of(const int8_t *z, float scale) {   /* sum of exp(scale * (z_i - max z)), class order */
    int top = z[0];
    float sum = 0.0f;
    for (int i = 1; i < GOLDEN_MODEL_NUM_CLASSES; i++) {
        top = z[i] > top ? z[i] : top;
    }
    for (int i = 0; i < GOLDEN_MODEL_NUM_CLASSES; i++) {
        sum += ekws_expf(scale * (float)(z[i] - top));
    }
    return sum;
}

static void test_search(void) {
    ekws_model_t m;
    static int8_t scratch[2 * GOLDEN_MODEL_INPUT_SIZE + GOLDEN_MODEL_NUM_CLASSES], moved[GOLDEN_MODEL_INPUT_SIZE];
    static int8_t warped[GOLDEN_MODEL_INPUT_SIZE];
    static const int rates[] = EKWS_SEARCH_RATES_Q8;
    static const int want_rates[] = {256, 230, 284, 205, 320};   /* 1, 0.9, 1/0.9, 0.8, 1.25: the documented order */
    CHECK(sizeof rates == sizeof want_rates && memcmp(rates, want_rates, sizeof rates) == 0,
          "EKWS_SEARCH_RATES_Q8 is not {256, 230, 284, 205, 320}");
    int8_t z[GOLDEN_MODEL_NUM_CLASSES], want[GOLDEN_MODEL_NUM_CLASSES];
    static const int widths[] = {1, 2, 3, 8};
    /* the golden inputs (random, all -128, all 127: the two flat ones look the same at every shift),
     * the random one with its upper 20 bands silent, and stripes of 5 bands: these choose other shifts */
    enum { N_IN = GOLDEN_MODEL_NUM_INPUTS + 2, BANDS = 40 };
    static int8_t inputs[N_IN * GOLDEN_MODEL_INPUT_SIZE];
    memcpy(inputs, golden_model_inputs, sizeof golden_model_inputs);
    for (int j = 0; j < GOLDEN_MODEL_INPUT_SIZE; j++) {
        const int band = j % BANDS;
        inputs[GOLDEN_MODEL_NUM_INPUTS * GOLDEN_MODEL_INPUT_SIZE + j] = band < 20 ? golden_model_inputs[j] : -128;
        inputs[(GOLDEN_MODEL_NUM_INPUTS + 1) * GOLDEN_MODEL_INPUT_SIZE + j] = (int8_t)((band / 5) % 2 ? -100 : 100);
    }
    int moved_any = 0, rated_any = 0;
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) == EKWS_OK, "init");
    for (int i = 0; i < N_IN; i++) {
        const int8_t *in = inputs + i * GOLDEN_MODEL_INPUT_SIZE;
        int32_t shift = 99, rate = 99;
        CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 0, 0, scratch, sizeof scratch, z,
                                       sizeof z, &shift, &rate) == EKWS_OK && shift == 0 && rate == 256 &&
                  (i >= GOLDEN_MODEL_NUM_INPUTS ||
                   memcmp(z, golden_model_logits + i * GOLDEN_MODEL_NUM_CLASSES, sizeof z) == 0),
              "input %d: a search of 0 bands is not the plain inference", i);
        for (int levels = 0; levels <= (int)EKWS_MAX_RATE_SEARCH; levels++) {
            for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
                const int max_shift = widths[k];
                CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, (uint32_t)max_shift,
                                               (uint32_t)levels, scratch, sizeof scratch, z, sizeof z, &shift,
                                               &rate) == EKWS_OK, "search %d", i);
                /* the answer is the inference at the first (rate, shift) of the order (rates 256, 230, 284,
                 * ...; at each, shifts 0, -1, 1, -2, ...) with the smallest spread */
                float best = 0.0f;
                int best_s = 0, best_r = 256;
                for (int ri = 0; ri <= 2 * levels; ri++) {
                    warp_input(in, warped, rates[ri]);
                    for (int step = 0; step <= 2 * max_shift; step++) {
                        const int s = step == 0 ? 0 : ((step & 1) ? -(step + 1) / 2 : step / 2);
                        shift_input(warped, moved, s);
                        CHECK(ekws_model_invoke(&m, moved, GOLDEN_MODEL_INPUT_SIZE, want, sizeof want) == EKWS_OK,
                              "invoke");
                        if ((ri == 0 && step == 0) || spread_of(want, m.output_scale) < best) {
                            best = spread_of(want, m.output_scale);
                            best_s = s;
                            best_r = rates[ri];
                        }
                    }
                }
                warp_input(in, warped, best_r);
                shift_input(warped, moved, best_s);
                ekws_model_invoke(&m, moved, GOLDEN_MODEL_INPUT_SIZE, want, sizeof want);
                CHECK(shift == best_s && rate == best_r && memcmp(z, want, sizeof z) == 0,
                      "input %d, ±%d, rates %d: searched shift %d rate %d, expected %d and %d", i, max_shift, levels,
                      (int)shift, (int)rate, best_s, best_r);
                moved_any += shift != 0;
                rated_any += rate != 256;
            }
        }
    }
    CHECK(moved_any >= 6, "only %d searches chose a shift: the test would not see a wrong one", moved_any);
    CHECK(rated_any >= 3, "only %d searches chose a rate: the test would not see a wrong one", rated_any);
    const int8_t *in = golden_model_inputs;
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 40, 0, scratch, sizeof scratch, z, sizeof z,
                                   NULL, NULL) == EKWS_ERR_ARG, "a shift of every band accepted");
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 1, EKWS_MAX_RATE_SEARCH + 1, scratch,
                                   sizeof scratch, z, sizeof z, NULL, NULL) == EKWS_ERR_ARG, "a rate search of 3 accepted");
    enum { SHORT = GOLDEN_MODEL_INPUT_SIZE + GOLDEN_MODEL_NUM_CLASSES };   /* enough without rate search */
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 1, 0, scratch, SHORT - 1, z, sizeof z,
                                   NULL, NULL) == EKWS_ERR_BUFFER_TOO_SMALL, "short scratch accepted");
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 1, 0, scratch, SHORT, z, sizeof z,
                                   NULL, NULL) == EKWS_OK, "input_size + num_classes of scratch refused without rate search");
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE, 1, 1, scratch, sizeof scratch - 1, z, sizeof z,
                                   NULL, NULL) == EKWS_ERR_BUFFER_TOO_SMALL, "short scratch accepted for rate search");
    CHECK(ekws_model_invoke_search(&m, in, GOLDEN_MODEL_INPUT_SIZE - 1, 1, 0, scratch, sizeof scratch, z, sizeof z,
                                   NULL, NULL) == EKWS_ERR_ARG, "wrong input length accepted");
    CHECK(ekws_model_invoke_search(&m, NULL, GOLDEN_MODEL_INPUT_SIZE, 1, 0, scratch, sizeof scratch, z, sizeof z,
                                   NULL, NULL) == EKWS_ERR_NULL, "NULL input accepted");
}

static const char *why_or(const char *why) { return why ? why : "accepted"; }

static void test_refusals(void) {
    ekws_model_t m;
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA - 1) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "arena one byte short accepted");
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES - 4, arena, GOLDEN_MODEL_ARENA) ==
              EKWS_ERR_CONFIG, "truncated blob accepted");
    memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
    ((uint8_t *)copy)[GOLDEN_MODEL_BYTES / 2] ^= 0x10;
    const char *why = ekws_model_check(copy, GOLDEN_MODEL_BYTES);
    CHECK(why && strstr(why, "CRC"), "flipped bit: %s", why ? why : "accepted");
    CHECK(ekws_model_init(&m, copy, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) == EKWS_ERR_CONFIG,
          "corrupt blob accepted");
    memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
    ((uint8_t *)copy)[0] = 'X';
    why = ekws_model_check(copy, GOLDEN_MODEL_BYTES);
    CHECK(why && strstr(why, "magic"), "bad magic: %s", why ? why : "accepted");
    CHECK(ekws_model_init(&m, (const uint8_t *)golden_model_blob + 1, GOLDEN_MODEL_BYTES - 1, arena,
                          GOLDEN_MODEL_ARENA) == EKWS_ERR_ARG, "misaligned blob accepted");
    CHECK(ekws_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    static const uint32_t bad_scales[] = {0u, 0x80000000u, 0xBC000000u, 0x7F800000u, 0x7FC00000u}; /* 0, -0, <0, inf, NaN */
    for (size_t i = 0; i < sizeof bad_scales / sizeof bad_scales[0]; i++) {
        memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
        ekws_wr32le((uint8_t *)copy + 4u * 14u, bad_scales[i]);   /* the header's output scale */
        tb_seal(copy, GOLDEN_MODEL_BYTES);
        why = ekws_model_check(copy, GOLDEN_MODEL_BYTES);
        CHECK(why && strstr(why, "output scale"), "output scale 0x%08x: %s", (unsigned)bad_scales[i], why_or(why));
        CHECK(ekws_model_init(&m, copy, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) == EKWS_ERR_CONFIG,
              "output scale 0x%08x accepted", (unsigned)bad_scales[i]);
    }
    memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
    tb_seal(copy, GOLDEN_MODEL_BYTES);
    CHECK(ekws_model_check(copy, GOLDEN_MODEL_BYTES) == NULL, "resealed golden blob refused");
}

/* Room for the largest crafted blob below: header, record and 8 * 32768 bytes of data. */
static uint32_t crafted[(TB_DATA + 8u * 32768u) / 4u];
static uint32_t big_arena[65536u / 4u];
static int8_t big_input[32768];

/* A dense layer 131072 -> 32768: out_c * in_elems = 2^32 wrapped to 0 in a 32-bit weight size, so
 * the blob passed the check with no weight bytes at all (and invoke read 4 GiB past the blob). The
 * dense input limit (32768) now refuses it first, and keeps every weight size below 2^31; the
 * 64-bit sizes of the check stay as a second line. */
static void test_dense_size_wrap(void) {
    const uint32_t in = 131072u, out = 32768u;
    tb_layer_t r = tb_layer(EKWS_OP_DENSE, 256, 512, 1, 1, 1, out, 1, 1);
    r.w[TL_IN_ZP] = 0xFFFFFF80u;
    r.w[TL_W_OFF] = TB_DATA;
    r.w[TL_M_OFF] = TB_DATA;
    r.w[TL_S_OFF] = TB_DATA + 4u * out;
    const uint32_t total = tb_blob(crafted, sizeof crafted, &r, NULL, 8u * out, 2u * in);
    CHECK(total != 0, "crafted buffer too small");
    uint8_t *b = (uint8_t *)crafted;
    for (uint32_t c = 0; c < out; c++) {
        ekws_wr32le(b + TB_DATA + 4u * c, 1u << 30);
        ekws_wr32le(b + TB_DATA + 4u * (out + c), 40u);
    }
    tb_seal(crafted, total);
    const char *why = ekws_model_check(crafted, total);
    CHECK(why != NULL && strcmp(why, "layer too large") == 0, "dense layer whose weight size wraps 32 bits: %s",
          why_or(why));
    CHECK(ekws_model_arena_size(crafted, total) == 0, "arena size of an invalid blob");
}

/* Dense layers sum in_h*in_w*in_c values into an int32 that is exact up to 65,793 of them: 131072
 * is refused ("layer too large"); 32768, the limit, is accepted and exact at the extreme values. */
static void test_dense_input_limit(void) {
    for (int k = 0; k < 2; k++) {
        const uint32_t in = k == 0 ? 131072u : 32768u;
        tb_layer_t r = tb_layer(EKWS_OP_DENSE, k == 0 ? 256u : 1u, in / (k == 0 ? 256u : 1u), 1, 1, 1, 1, 1, 1);
        r.w[TL_IN_ZP] = 0xFFFFFF80u; /* -128: x - zp = 255 for x = 127 */
        r.w[TL_W_OFF] = TB_DATA;
        r.w[TL_M_OFF] = TB_DATA + in;
        r.w[TL_S_OFF] = TB_DATA + in + 4u;
        const uint32_t total = tb_blob(crafted, sizeof crafted, &r, NULL, in + 8u, 2u * in);
        uint8_t *b = (uint8_t *)crafted;
        memset(b + TB_DATA, 127, in);
        ekws_wr32le(b + TB_DATA + in, 1u << 30);
        ekws_wr32le(b + TB_DATA + in + 4u, 55u);
        tb_seal(crafted, total);
        const char *why = ekws_model_check(crafted, total);
        if (k == 0) {
            CHECK(why && strstr(why, "too large"), "dense layer of %u inputs: %s", (unsigned)in, why_or(why));
            continue;
        }
        CHECK(why == NULL, "dense layer of 32768 inputs refused: %s", why);
        ekws_model_t m;
        ekws_status_t st = ekws_model_init(&m, crafted, total, big_arena, sizeof big_arena);
        CHECK(st == EKWS_OK, "init: %s", ekws_status_str(st));
        if (st != EKWS_OK) {
            return;
        }
        memset(big_input, 127, sizeof big_input);
        int8_t logit = 0;
        st = ekws_model_invoke(&m, big_input, in, &logit, 1);
        /* exact: 32768 * 255 * 127 = 1,061,191,680; * 2^30 / 2^55 = 31.63 -> 32 */
        CHECK(st == EKWS_OK && logit == 32, "invoke: %s, logit %d, want 32", ekws_status_str(st), (int)logit);
    }
}

/* A one-channel depthwise layer, 1x1 kernel: in_h x 1 -> out_h x 1 at stride_h with pad_top. */
static const char *check_strided(uint32_t in_h, uint32_t out_h, uint32_t stride_h, uint32_t pad_top) {
    tb_layer_t r = tb_layer(EKWS_OP_DEPTHWISE, in_h, 1, 1, out_h, 1, 1, 1, 1);
    r.w[TL_SH] = stride_h;
    r.w[TL_PAD_T] = pad_top;
    r.w[TL_W_OFF] = TB_DATA;
    r.w[TL_M_OFF] = TB_DATA + 4u;
    r.w[TL_S_OFF] = TB_DATA + 8u;
    uint8_t data[12] = {1, 0, 0, 0};
    ekws_wr32le(data + 4, 1u << 30);
    ekws_wr32le(data + 8, 31u);
    const uint32_t total = tb_blob(crafted, sizeof crafted, &r, data, sizeof data, 4u);
    return ekws_model_check(crafted, total);
}

/* Every window must start inside the padded input: out_h = stride_h = 65535 over one row was
 * accepted, and the kernels' oy * stride_h overflowed int32. */
static void test_windows_inside(void) {
    const char *why = check_strided(1, 65535, 65535, 0);
    CHECK(why && strstr(why, "padded input"), "out_h 65535 at stride 65535 over 1 row: %s", why_or(why));
    why = check_strided(1, 2, 1, 0);
    CHECK(why && strstr(why, "padded input"), "2 rows out of 1 at stride 1: %s", why_or(why));
    why = check_strided(4, 2, 2, 0); /* 'valid' / 'same', stride 2: windows at 0, 2 */
    CHECK(why == NULL, "4 rows -> 2 at stride 2 refused: %s", why);
    why = check_strided(4, 3, 2, 0); /* a window at 4, past the input */
    CHECK(why && strstr(why, "padded input"), "4 rows -> 3 at stride 2: %s", why_or(why));
    why = check_strided(4, 3, 2, 1); /* padded: windows at -1, 1, 3 */
    CHECK(why == NULL, "4 rows -> 3 at stride 2, pad 1 refused: %s", why);
}

/* Voice calibration: the shift whose summed largest probability over the windows is largest (first
 * in the order 0, -1, 1, ... on ties), recomputed here with a shift loop of its own + ekws_model_invoke;
 * ekws_shift_bands_s8 against that loop; and the refusals. */
static void test_calibrate(void) {
    ekws_model_t m;
    enum { N = GOLDEN_MODEL_NUM_INPUTS + 2, BANDS = 40 };
    static int8_t windows[N * GOLDEN_MODEL_INPUT_SIZE], moved[GOLDEN_MODEL_INPUT_SIZE];
    static int8_t scratch[GOLDEN_MODEL_INPUT_SIZE + GOLDEN_MODEL_NUM_CLASSES];
    int8_t z[GOLDEN_MODEL_NUM_CLASSES];
    memcpy(windows, golden_model_inputs, sizeof golden_model_inputs);
    for (int j = 0; j < GOLDEN_MODEL_INPUT_SIZE; j++) {
        const int band = j % BANDS;
        windows[GOLDEN_MODEL_NUM_INPUTS * GOLDEN_MODEL_INPUT_SIZE + j] = band < 20 ? golden_model_inputs[j] : -128;
        windows[(GOLDEN_MODEL_NUM_INPUTS + 1) * GOLDEN_MODEL_INPUT_SIZE + j] = (int8_t)((band / 5) % 2 ? -100 : 100);
    }
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) == EKWS_OK, "init");
    int nonzero = 0;
    for (int first = 0; first < N; first++) {
        for (int max_shift = 0; max_shift <= 4; max_shift++) {
            const size_t n = (size_t)(N - first);
            const int8_t *w = windows + first * GOLDEN_MODEL_INPUT_SIZE;
            int32_t shift = 99;
            float score = -1.0f;
            CHECK(ekws_model_calibrate_shift(&m, w, n, (uint32_t)max_shift, scratch, sizeof scratch, &shift,
                                             &score) == EKWS_OK, "calibrate from window %d, ±%d", first, max_shift);
            float best = -1.0f;
            int32_t want = 0;
            for (int step = 0; step <= 2 * max_shift; step++) {
                const int32_t s = (step & 1) ? -(step + 1) / 2 : step / 2;
                float sum = 0.0f;
                for (size_t i = 0; i < n; i++) {
                    for (int j = 0; j < GOLDEN_MODEL_INPUT_SIZE; j++) {   /* band b reads b + s, edges repeated */
                        const int b = j % BANDS, src = b + s < 0 ? 0 : (b + s >= BANDS ? BANDS - 1 : b + s);
                        moved[j] = w[i * GOLDEN_MODEL_INPUT_SIZE + (size_t)(j - b + src)];
                    }
                    CHECK(ekws_model_invoke(&m, moved, sizeof moved, z, sizeof z) == EKWS_OK, "invoke");
                    sum += 1.0f / spread_of(z, m.output_scale);
                }
                if (sum > best) {
                    best = sum;
                    want = s;
                }
            }
            CHECK(shift == want && score == best / (float)n, "window %d on, ±%d: calibrated %d (score %g), expected %d (%g)",
                  first, max_shift, (int)shift, (double)score, (int)want, (double)(best / (float)n));
            nonzero += shift != 0;
        }
    }
    static int8_t by_lib[GOLDEN_MODEL_INPUT_SIZE];
    for (int s = -3; s <= 3; s++) {   /* the library's shift against the loop above */
        ekws_shift_bands_s8(windows, by_lib, GOLDEN_MODEL_INPUT_SIZE / BANDS, BANDS, s);
        int same = 1;
        for (int j = 0; j < GOLDEN_MODEL_INPUT_SIZE; j++) {
            const int b = j % BANDS, src = b + s < 0 ? 0 : (b + s >= BANDS ? BANDS - 1 : b + s);
            same &= by_lib[j] == windows[j - b + src];
        }
        CHECK(same, "ekws_shift_bands_s8 by %d", s);
    }
    CHECK(nonzero >= 3, "only %d calibrations chose a shift: the test would not see a wrong one", nonzero);
    int32_t shift = 0;
    CHECK(ekws_model_calibrate_shift(&m, windows, 0, 1, scratch, sizeof scratch, &shift, NULL) == EKWS_ERR_ARG,
          "no windows accepted");
    CHECK(ekws_model_calibrate_shift(&m, windows, 1, BANDS, scratch, sizeof scratch, &shift, NULL) == EKWS_ERR_ARG,
          "a shift as wide as the bands accepted");
    CHECK(ekws_model_calibrate_shift(&m, windows, 1, 1, scratch, sizeof scratch - 1, &shift, NULL) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "short scratch accepted");
    CHECK(ekws_model_calibrate_shift(&m, windows, 1, 1, scratch, sizeof scratch, NULL, NULL) == EKWS_ERR_NULL,
          "NULL shift accepted");
}

/* voice normalization: a zero offset changes nothing (and leaves the model as it was), offsets
 * round half up, and bad arguments are refused (tests/test_voicenorm.py checks the embedding and
 * moved logits against numpy) */
static void test_voice(void) {
    ekws_model_t m;
    if (ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) != EKWS_OK) {
        CHECK(0, "init");
        return;
    }
    const uint32_t n = ekws_model_embedding_size(&m);
    CHECK(n > 0 && n <= 512, "embedding size %u", (unsigned)n);
    if (n == 0 || n > 512) {
        return;
    }
    static int8_t emb[512];
    static int32_t zero[512];
    int8_t plain[GOLDEN_MODEL_NUM_CLASSES], moved[GOLDEN_MODEL_NUM_CLASSES];
    for (int i = 0; i < GOLDEN_MODEL_NUM_INPUTS; i++) {
        const int8_t *in = golden_model_inputs + i * GOLDEN_MODEL_INPUT_SIZE;
        CHECK(ekws_model_embed(&m, in, GOLDEN_MODEL_INPUT_SIZE, emb, n) == EKWS_OK, "embed %d", i);
        CHECK(ekws_model_invoke_voice(&m, in, GOLDEN_MODEL_INPUT_SIZE, zero, n, moved, GOLDEN_MODEL_NUM_CLASSES) ==
                  EKWS_OK, "invoke_voice %d", i);
        CHECK(memcmp(moved, golden_model_logits + i * GOLDEN_MODEL_NUM_CLASSES, GOLDEN_MODEL_NUM_CLASSES) == 0,
              "input %d: a zero offset changed the logits", i);
        CHECK(ekws_model_invoke(&m, in, GOLDEN_MODEL_INPUT_SIZE, plain, GOLDEN_MODEL_NUM_CLASSES) == EKWS_OK, "invoke");
        CHECK(memcmp(plain, moved, GOLDEN_MODEL_NUM_CLASSES) == 0, "input %d: invoke after invoke_voice differs", i);
    }
    CHECK(ekws_model_embed(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE, emb, n - 1) == EKWS_ERR_BUFFER_TOO_SMALL,
          "short embedding buffer accepted");
    CHECK(ekws_model_invoke_voice(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE, zero, n - 1, moved,
                                  GOLDEN_MODEL_NUM_CLASSES) == EKWS_ERR_ARG, "offset of another size accepted");
    CHECK(ekws_model_invoke_voice(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE, NULL, n, moved,
                                  GOLDEN_MODEL_NUM_CLASSES) == EKWS_ERR_NULL, "NULL offset accepted");
    /* means 1.5, -1.5, 2.5, 3, 0 less the reference, plus 1/2, floored */
    const int8_t e[10] = {1, -1, 2, 3, 0, 2, -2, 3, 3, 0};
    const float ref[5] = {0.0f, 0.0f, 0.0f, 0.25f, -0.5f};
    int32_t off[5];
    CHECK(ekws_voice_offset(e, 2, 5, ref, off) == EKWS_OK, "voice offset");
    CHECK(off[0] == 2 && off[1] == -1 && off[2] == 3 && off[3] == 3 && off[4] == 1, "offsets %d %d %d %d %d",
          (int)off[0], (int)off[1], (int)off[2], (int)off[3], (int)off[4]);
    CHECK(ekws_voice_offset(e, 0, 5, ref, off) == EKWS_ERR_ARG, "no embeddings accepted");
    const float big[5] = {0.0f, 0.0f, 0.0f, 0.0f, 2e6f};
    CHECK(ekws_voice_offset(e, 2, 5, big, off) == EKWS_ERR_ARG, "a reference value of 2e6 accepted");
}

int main(void) {
    test_logits();
    test_voice();
    test_search();
    test_calibrate();
    test_refusals();
    test_dense_size_wrap();
    test_dense_input_limit();
    test_windows_inside();
    if (failures) {
        fprintf(stderr, "test_model: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_model: %d inputs bit-exact, arena %u bytes, blob %u bytes\n", GOLDEN_MODEL_NUM_INPUTS,
           (unsigned)GOLDEN_MODEL_ARENA, (unsigned)GOLDEN_MODEL_BYTES);
    return 0;
}
