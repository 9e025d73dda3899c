/* kernels.c: int8 kernels and the requantization rule (twin of edgekws/quant/fixedpoint.py and
 * qmodel.py). Integer arithmetic only; see ekws/kernels.h for layouts and the rounding rule. */
#include "ekws/kernels.h"

/* The rule (see ekws/kernels.h); static so the kernels inline it. */
static inline int32_t requant(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                              int32_t output_zp, int32_t act_min, int32_t act_max) {
    /* |x| <= 2^31 and multiplier < 2^31, so |p| < 2^62 and p + 2^(shift-1) cannot overflow. */
    int64_t x = (int64_t)acc + (int64_t)bias;
    if (x > INT32_MAX) {
        x = INT32_MAX;
    } else if (x < INT32_MIN) {
        x = INT32_MIN;
    }
    const int64_t p = x * (int64_t)multiplier;
    const int64_t half = (int64_t)1 << (shift - 1);
    const int64_t r = p >= 0 ? (p + half) >> shift : -((-p + half) >> shift);
    int64_t y = r + output_zp;
    if (y < act_min) {
        y = act_min;
    } else if (y > act_max) {
        y = act_max;
    }
    return (int32_t)y;
}

int32_t ekws_requantize_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                           int32_t output_zp, int32_t act_min, int32_t act_max) {
    return requant(acc, bias, multiplier, shift, output_zp, act_min, act_max);
}

/* Checks shared by the kernels: quantization arrays of `count` channels with valid shifts, and
 * an int8 output range. */
static ekws_status_t check_quant(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                 int32_t count) {
    if (!params || !quant || !quant->multiplier || !quant->shift) {
        return EKWS_ERR_NULL;
    }
    if (params->act_min < -128 || params->act_max > 127 || params->act_min > params->act_max ||
        params->input_zp < -128 || params->input_zp > 127 || params->output_zp < -128 ||
        params->output_zp > 127) {
        return EKWS_ERR_ARG;
    }
    for (int32_t i = 0; i < count; i++) {
        if (quant->shift[i] < EKWS_SHIFT_MIN || quant->shift[i] > EKWS_SHIFT_MAX ||
            quant->multiplier[i] < 0) {
            return EKWS_ERR_ARG;
        }
    }
    return EKWS_OK;
}

/* Window geometry: positive sizes and strides, non-negative padding. Reads stay inside the input
 * for any output size: taps outside it are skipped (a window entirely in the padding gives 0). */
static ekws_status_t check_window(const ekws_conv_params_t *p, const ekws_dims_t *in, int32_t kh,
                                  int32_t kw, const ekws_dims_t *out) {
    if (in->n < 1 || in->h < 1 || in->w < 1 || in->c < 1 || out->h < 1 || out->w < 1 || kh < 1 ||
        kw < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 || p->pad_left < 0) {
        return EKWS_ERR_ARG;
    }
    return EKWS_OK;
}

/* sum_k a[k] * b[k]: the inner loop of conv and dense (int16 x int8 -> int32, no overflow for
 * k < 2^16 since |a| <= 255, |b| <= 128). */
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && !defined(EKWS_NO_DSP)
/* Cortex-M4/M7/M33 (unless -DEKWS_NO_DSP): two 16x16 MACs per SMLAD. SXTB16 widens bytes 0
 * and 2 (and, after a rotate, 1 and 3) of four weights; a halfword pack puts them in the order
 * of the int16 patch. Integer sums are exact, so the result equals the scalar loop's bit for bit. */
#include <arm_acle.h>
static inline int32_t dot_s16_s8(const int16_t *a, const int8_t *b, int32_t k) {
    int32_t s = 0;
    int32_t i = 0;
    for (; i + 4 <= k; i += 4) {
        uint32_t w, a01, a23;
        /* unaligned word loads are fine on v7E-M; the builtin stays inline under -ffreestanding */
        __builtin_memcpy(&w, b + i, sizeof w);
        __builtin_memcpy(&a01, a + i, sizeof a01);
        __builtin_memcpy(&a23, a + i + 2, sizeof a23);
        const uint32_t w02 = (uint32_t)__sxtb16((int8x4_t)w);                     /* b0 | b2 << 16 */
        const uint32_t w13 = (uint32_t)__sxtb16((int8x4_t)((w >> 8) | (w << 24))); /* b1 | b3 << 16 */
        const uint32_t w01 = (w02 & 0xFFFFu) | (w13 << 16);
        const uint32_t w23 = (w13 & 0xFFFF0000u) | (w02 >> 16);
        s = __smlad((int16x2_t)a01, (int16x2_t)w01, s);
        s = __smlad((int16x2_t)a23, (int16x2_t)w23, s);
    }
    for (; i < k; i++) {
        s += (int32_t)a[i] * b[i];
    }
    return s;
}
#else
/* Blocks of a fixed 16 let compilers vectorize it even under -O2's cheapest cost model. */
#define DOT_BLOCK 16
static inline int32_t dot_s16_s8(const int16_t *a, const int8_t *b, int32_t k) {
    int32_t s = 0;
    int32_t i = 0;
    for (; i + DOT_BLOCK <= k; i += DOT_BLOCK) {
        int32_t t = 0;
        for (int32_t j = 0; j < DOT_BLOCK; j++) {
            t += (int32_t)a[i + j] * b[i + j];
        }
        s += t;
    }
    for (; i + 8 <= k; i += 8) {
        int32_t t = 0;
        for (int32_t j = 0; j < 8; j++) {
            t += (int32_t)a[i + j] * b[i + j];
        }
        s += t;
    }
    for (; i < k; i++) {
        s += (int32_t)a[i] * b[i];
    }
    return s;
}
#endif

#ifndef DOT_BLOCK
#define DOT_BLOCK 16
#endif

/* acc[c] += (x[c] - zp) * w[c] (w NULL: weight 1) for c < n, in fixed blocks as above. */
static inline void mac_channels(int32_t *acc, const int8_t *x, const int8_t *w, int32_t zp, int32_t n) {
    int32_t c = 0;
    if (w) {
        for (; c + DOT_BLOCK <= n; c += DOT_BLOCK) {
            for (int32_t j = 0; j < DOT_BLOCK; j++) {
                acc[c + j] += (x[c + j] - zp) * w[c + j];
            }
        }
        for (; c < n; c++) {
            acc[c] += (x[c] - zp) * w[c];
        }
    } else {
        for (; c + DOT_BLOCK <= n; c += DOT_BLOCK) {
            for (int32_t j = 0; j < DOT_BLOCK; j++) {
                acc[c + j] += x[c + j] - zp;
            }
        }
        for (; c < n; c++) {
            acc[c] += x[c] - zp;
        }
    }
}

size_t ekws_conv_s8_scratch_size(const ekws_dims_t *filter_dims) {
    if (!filter_dims || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->c < 1) {
        return 0;
    }
    return (size_t)filter_dims->h * (size_t)filter_dims->w * (size_t)filter_dims->c * sizeof(int16_t);
}

ekws_status_t ekws_conv_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                           const ekws_dims_t *input_dims, const int8_t *input,
                           const ekws_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                           const ekws_dims_t *output_dims, int8_t *output, int16_t *scratch) {
    if (!input_dims || !input || !filter_dims || !filter || !output_dims || !output || !scratch) {
        return EKWS_ERR_NULL;
    }
    const int32_t cout = filter_dims->n, kh = filter_dims->h, kw = filter_dims->w, cin = input_dims->c;
    if (cout < 1 || filter_dims->c != cin || output_dims->c != cout || output_dims->n != input_dims->n) {
        return EKWS_ERR_ARG;
    }
    ekws_status_t st = check_quant(params, quant, cout);
    if (st == EKWS_OK) {
        st = check_window(params, input_dims, kh, kw, output_dims);
    }
    if (st != EKWS_OK) {
        return st;
    }
    const int32_t k = kh * kw * cin;
    const int16_t zp = (int16_t)params->input_zp;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in = input + (size_t)b * (size_t)input_dims->h * (size_t)input_dims->w * (size_t)cin;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                /* the window as (x - zp), zeros where it hangs over the edge */
                int16_t *patch = scratch;
                for (int32_t i = 0; i < kh; i++) {
                    const int32_t y = y0 + i;
                    for (int32_t j = 0; j < kw; j++) {
                        const int32_t x = x0 + j;
                        if (y < 0 || y >= input_dims->h || x < 0 || x >= input_dims->w) {
                            for (int32_t c = 0; c < cin; c++) {
                                patch[c] = 0;
                            }
                        } else {
                            const int8_t *src = in + ((size_t)y * (size_t)input_dims->w + (size_t)x) * (size_t)cin;
                            for (int32_t c = 0; c < cin; c++) {
                                patch[c] = (int16_t)(src[c] - zp);
                            }
                        }
                        patch += cin;
                    }
                }
                for (int32_t o = 0; o < cout; o++) {
                    const int32_t acc = dot_s16_s8(scratch, filter + (size_t)o * (size_t)k, k);
                    *output++ = (int8_t)requant(acc, bias ? bias[o] : 0, quant->multiplier[o],
                                                           quant->shift[o], params->output_zp,
                                                           params->act_min, params->act_max);
                }
            }
        }
    }
    return EKWS_OK;
}

size_t ekws_depthwise_conv_s8_scratch_size(const ekws_dims_t *input_dims) {
    if (!input_dims || input_dims->c < 1) {
        return 0;
    }
    return (size_t)input_dims->c * sizeof(int32_t);
}

/* Shared by depthwise convolution (filter != NULL) and average pooling (filter == NULL: every
 * tap weighs 1; quant has one entry). */
static ekws_status_t window_op(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                               int32_t kh, int32_t kw, const ekws_dims_t *input_dims,
                               const int8_t *input, const int8_t *filter, const int32_t *bias,
                               const ekws_dims_t *output_dims, int8_t *output, int32_t *acc) {
    const int32_t ch = input_dims->c;
    const int32_t per_channel = filter != NULL;
    ekws_status_t st = check_quant(params, quant, per_channel ? ch : 1);
    if (st == EKWS_OK) {
        st = check_window(params, input_dims, kh, kw, output_dims);
    }
    if (st != EKWS_OK) {
        return st;
    }
    if (output_dims->c != ch || output_dims->n != input_dims->n) {
        return EKWS_ERR_ARG;
    }
    const int32_t zp = params->input_zp;
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in = input + (size_t)b * (size_t)input_dims->h * (size_t)input_dims->w * (size_t)ch;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                for (int32_t c = 0; c < ch; c++) {
                    acc[c] = 0;
                }
                for (int32_t i = 0; i < kh; i++) {
                    const int32_t y = y0 + i;
                    if (y < 0 || y >= input_dims->h) {
                        continue; /* padding: (zp - zp) * w = 0 */
                    }
                    for (int32_t j = 0; j < kw; j++) {
                        const int32_t x = x0 + j;
                        if (x < 0 || x >= input_dims->w) {
                            continue;
                        }
                        const int8_t *src = in + ((size_t)y * (size_t)input_dims->w + (size_t)x) * (size_t)ch;
                        const int8_t *w = filter ? filter + ((size_t)i * (size_t)kw + (size_t)j) * (size_t)ch : NULL;
                        mac_channels(acc, src, w, zp, ch);
                    }
                }
                for (int32_t c = 0; c < ch; c++) {
                    const int32_t q = per_channel ? c : 0;
                    *output++ = (int8_t)requant(acc[c], bias ? bias[c] : 0, quant->multiplier[q],
                                                           quant->shift[q], params->output_zp,
                                                           params->act_min, params->act_max);
                }
            }
        }
    }
    return EKWS_OK;
}

ekws_status_t ekws_depthwise_conv_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                     const ekws_dims_t *input_dims, const int8_t *input,
                                     const ekws_dims_t *filter_dims, const int8_t *filter,
                                     const int32_t *bias, const ekws_dims_t *output_dims,
                                     int8_t *output, int32_t *scratch) {
    if (!input_dims || !input || !filter_dims || !filter || !output_dims || !output || !scratch) {
        return EKWS_ERR_NULL;
    }
    if (filter_dims->c != input_dims->c || filter_dims->n != input_dims->c) {
        return EKWS_ERR_ARG;
    }
    return window_op(params, quant, filter_dims->h, filter_dims->w, input_dims, input, filter, bias,
                     output_dims, output, scratch);
}

ekws_status_t ekws_avgpool_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                              int32_t pool_h, int32_t pool_w, const ekws_dims_t *input_dims,
                              const int8_t *input, const ekws_dims_t *output_dims, int8_t *output,
                              int32_t *scratch) {
    if (!input_dims || !input || !output_dims || !output || !scratch) {
        return EKWS_ERR_NULL;
    }
    return window_op(params, quant, pool_h, pool_w, input_dims, input, NULL, NULL, output_dims, output,
                     scratch);
}

size_t ekws_fully_connected_s8_scratch_size(int32_t in_features) {
    return in_features < 1 ? 0 : (size_t)in_features * sizeof(int16_t);
}

ekws_status_t ekws_fully_connected_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                      int32_t batch, int32_t in_features, const int8_t *input,
                                      int32_t out_features, const int8_t *weights, const int32_t *bias,
                                      int8_t *output, int16_t *scratch) {
    if (!input || !weights || !output || !scratch) {
        return EKWS_ERR_NULL;
    }
    if (batch < 1 || in_features < 1 || out_features < 1) {
        return EKWS_ERR_ARG;
    }
    ekws_status_t st = check_quant(params, quant, out_features);
    if (st != EKWS_OK) {
        return st;
    }
    for (int32_t b = 0; b < batch; b++) {
        const int8_t *in = input + (size_t)b * (size_t)in_features;
        for (int32_t i = 0; i < in_features; i++) {
            scratch[i] = (int16_t)(in[i] - params->input_zp);
        }
        for (int32_t o = 0; o < out_features; o++) {
            const int32_t acc = dot_s16_s8(scratch, weights + (size_t)o * (size_t)in_features, in_features);
            *output++ = (int8_t)requant(acc, bias ? bias[o] : 0, quant->multiplier[o],
                                                   quant->shift[o], params->output_zp, params->act_min,
                                                   params->act_max);
        }
    }
    return EKWS_OK;
}
