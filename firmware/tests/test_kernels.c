/* test_kernels.c: the int8 kernels and the requantization rule against the numpy integer
 * reference's golden vectors (tests/golden/kernels_golden.h), bit for bit; plus argument checks. */
#include <stdio.h>
#include <string.h>

#include "ekws/kernels.h"
#include "golden/kernels_golden.h"

#include "ekws_check.h"

#define MAX_OUT 4096
static int8_t out[MAX_OUT];
static int32_t scratch[4096];

static ekws_status_t run_case(const ekws_golden_kernel_case_t *c) {
    const ekws_quant_params_t q = {c->multiplier, c->shift};
    switch (c->op) {
    case 1:
        return ekws_conv_s8(&c->params, &q, &c->input_dims, c->input, &c->filter_dims, c->weights, c->bias,
                            &c->output_dims, out, (int16_t *)(void *)scratch);
    case 2:
        return ekws_depthwise_conv_s8(&c->params, &q, &c->input_dims, c->input, &c->filter_dims, c->weights,
                                      c->bias, &c->output_dims, out, scratch);
    case 3:
        return ekws_fully_connected_s8(&c->params, &q, c->input_dims.n, c->input_dims.c, c->input,
                                       c->output_dims.c, c->weights, c->bias, out, (int16_t *)(void *)scratch);
    default:
        return ekws_avgpool_s8(&c->params, &q, c->filter_dims.h, c->filter_dims.w, &c->input_dims, c->input,
                               &c->output_dims, out, scratch);
    }
}

static void test_golden_cases(void) {
    for (int i = 0; i < GOLDEN_KERNEL_NUM_CASES; i++) {
        const ekws_golden_kernel_case_t *c = &golden_kernel_cases[i];
        const size_t n = (size_t)c->output_dims.n * (size_t)c->output_dims.h * (size_t)c->output_dims.w *
                         (size_t)c->output_dims.c;
        memset(out, 0x55, sizeof out);
        const ekws_status_t st = run_case(c);
        CHECK(st == EKWS_OK, "%s: status %s", c->name, ekws_status_str(st));
        for (size_t k = 0; k < n && st == EKWS_OK; k++) {
            if (out[k] != c->expected[k]) {
                CHECK(0, "%s: value %zu: got %d, expected %d", c->name, k, out[k], c->expected[k]);
                break;
            }
        }
        CHECK(out[n] == 0x55, "%s: wrote past the output", c->name);
    }
}

static void test_requantize(void) {
    for (int i = 0; i < GOLDEN_REQUANT_NUM_CASES; i++) {
        const int64_t *r = golden_requant_cases[i];
        const int32_t got = ekws_requantize_s8((int32_t)r[0], (int32_t)r[1], (int32_t)r[2], (int32_t)r[3],
                                               (int32_t)r[4], (int32_t)r[5], (int32_t)r[6]);
        CHECK(got == r[7], "requant(%lld, %lld, %lld, %lld): got %d, expected %lld", (long long)r[0],
              (long long)r[1], (long long)r[2], (long long)r[3], got, (long long)r[7]);
    }
    /* ties go away from zero */
    CHECK(ekws_requantize_s8(-3, 0, 1, 1, 0, -128, 127) == -2, "tie -1.5");
    CHECK(ekws_requantize_s8(3, 0, 1, 1, 0, -128, 127) == 2, "tie 1.5");
}

/* Windows must start inside the padded input: a huge stride or padding made oy * stride - pad
 * overflow int32, and the kernels read (depthwise) or wrote (conv's patch) far outside their buffers. */
static void test_window_geometry(void) {
    int8_t in[1] = {5}, w[2] = {1, 1}, o[3] = {7, 7, 7};
    int32_t mult[1] = {1 << 30}, shift[1] = {31}, s32[4];
    int16_t s16[4];
    const ekws_quant_params_t q = {mult, shift};
    const ekws_dims_t id = {1, 1, 1, 1}, one = {1, 1, 1, 1}, tall = {1, 2, 1, 1};
    ekws_conv_params_t p = {.stride_h = 1 << 30, .stride_w = 1, .pad_top = 0, .pad_left = 0,
                            .input_zp = 0, .output_zp = 0, .act_min = -128, .act_max = 127};
    ekws_dims_t od = {1, 3, 1, 1};
    CHECK(ekws_depthwise_conv_s8(&p, &q, &id, in, &one, w, NULL, &od, o, s32) == EKWS_ERR_ARG, "dw stride 2^30");
    CHECK(ekws_conv_s8(&p, &q, &id, in, &tall, w, NULL, &od, o, s16) == EKWS_ERR_ARG, "conv stride 2^30");
    CHECK(ekws_avgpool_s8(&p, &q, 1, 1, &id, in, &od, o, s32) == EKWS_ERR_ARG, "pool stride 2^30");
    p.stride_h = 2; /* 3 rows at stride 2 start at 0, 2, 4: past a 1-row input padded by 2 */
    p.pad_top = 2;
    CHECK(ekws_avgpool_s8(&p, &q, 1, 1, &id, in, &od, o, s32) == EKWS_ERR_ARG, "window past the padding");
    p.stride_h = 1;
    p.pad_top = INT32_MAX;
    od.h = 1;
    CHECK(ekws_conv_s8(&p, &q, &id, in, &tall, w, NULL, &od, o, s16) == EKWS_ERR_ARG, "pad INT32_MAX");
    CHECK(o[0] == 7 && o[1] == 7 && o[2] == 7, "a refused call wrote its output");
    p.pad_top = 1; /* the last window starts in the padding: allowed, 0 + the one input tap */
    od.h = 2;
    CHECK(ekws_conv_s8(&p, &q, &id, in, &tall, w, NULL, &od, o, s16) == EKWS_OK, "one-row top padding refused");
}

static void test_argument_checks(void) {
    const ekws_golden_kernel_case_t *c = &golden_kernel_cases[0];
    int32_t bad_shift[64];
    for (int i = 0; i < 64; i++) {
        bad_shift[i] = 0;
    }
    const ekws_quant_params_t q = {c->multiplier, bad_shift};
    CHECK(ekws_conv_s8(&c->params, &q, &c->input_dims, c->input, &c->filter_dims, c->weights, c->bias,
                       &c->output_dims, out, (int16_t *)(void *)scratch) == EKWS_ERR_ARG, "shift 0 accepted");
    const ekws_quant_params_t ok = {c->multiplier, c->shift};
    CHECK(ekws_conv_s8(&c->params, &ok, &c->input_dims, NULL, &c->filter_dims, c->weights, c->bias,
                       &c->output_dims, out, (int16_t *)(void *)scratch) == EKWS_ERR_NULL, "NULL input accepted");
    ekws_conv_params_t p = c->params;
    p.act_min = 10;
    p.act_max = 5;
    CHECK(ekws_conv_s8(&p, &ok, &c->input_dims, c->input, &c->filter_dims, c->weights, c->bias,
                       &c->output_dims, out, (int16_t *)(void *)scratch) == EKWS_ERR_ARG, "empty clamp accepted");
    ekws_dims_t f = c->filter_dims;
    f.c += 1;
    CHECK(ekws_conv_s8(&c->params, &ok, &c->input_dims, c->input, &f, c->weights, c->bias, &c->output_dims, out,
                       (int16_t *)(void *)scratch) == EKWS_ERR_ARG, "channel mismatch accepted");
    test_window_geometry();
    CHECK(ekws_conv_s8_scratch_size(&c->filter_dims) ==
              (size_t)(c->filter_dims.h * c->filter_dims.w * c->filter_dims.c) * sizeof(int16_t), "scratch size");
}

int main(void) {
    test_golden_cases();
    test_requantize();
    test_argument_checks();
    if (failures) {
        fprintf(stderr, "test_kernels: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_kernels: %d kernel cases, %d requantization cases ok\n", GOLDEN_KERNEL_NUM_CASES,
           GOLDEN_REQUANT_NUM_CASES);
    return 0;
}
