/* ekws/kernels.h: int8 inference kernels (convolution, depthwise convolution, dense, average
 * pooling) and the one requantization rule, bit-exact with edgekws/quant (numpy) and model.int8.onnx.
 *
 * Conventions (CMSIS-NN style): pure functions, explicit dims and quantization parameters, status
 * return, never write to weights/biases/multipliers; the caller passes scratch memory sized by the
 * matching *_scratch_size() function. Activations are NHWC int8, real = scale * (q - zero_point).
 * Weights: conv [out_c][kh][kw][in_c], depthwise [kh][kw][c], dense [out][in]; int8 symmetric per
 * output channel; bias int32 per output channel (may be NULL = 0).
 *
 * Requantization (see ekws_requantize_s8): y = clamp(zp_out + round(clamp32(acc + bias) * M / 2^n),
 * act_min, act_max), rounding half away from zero, computed exactly; M >= 0, 1 <= n <= 62.
 * ReLU / ReLU6 are the [act_min, act_max] clamp. Padding cells count as the input zero point (real 0).
 * acc, the int32 sum of (x - zp) * w over a window, is exact for windows of up to 65,793 values.
 *
 * Code paths (all bit-exact with each other and with the numpy reference; see kernels.c): built
 * for a 32-bit Arm core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33, A-profile in
 * 32-bit mode) the inner loops use SXTB16 / SMLAD (two 8-bit MACs per instruction); -DEKWS_NO_DSP
 * selects the plain C path that every other target (Cortex-M0/M3, x86, aarch64) compiles.
 */
#ifndef EKWS_KERNELS_H
#define EKWS_KERNELS_H

#include "ekws/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EKWS_SHIFT_MIN 1
#define EKWS_SHIFT_MAX 62

/* Tensor dims. Activations: n (batch), h, w, c. Filters: n = output channels, h = kh, w = kw,
 * c = input channels (depthwise: n = c = channels). */
typedef struct {
    int32_t n, h, w, c;
} ekws_dims_t;

/* Window geometry and activation quantization of one layer. */
typedef struct {
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left; /* bottom/right padding follows from the output dims */
    int32_t input_zp;          /* zero point of the input, in [-128, 127] */
    int32_t output_zp;         /* zero point of the output, in [-128, 127] */
    int32_t act_min, act_max;  /* output clamp, -128 <= act_min <= act_max <= 127 */
} ekws_conv_params_t;

/* Fixed-point multipliers and shifts, one per output channel (per tensor: arrays of length 1). */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} ekws_quant_params_t;

/* The requantization rule on one value: acc int32 accumulator, bias int32 -> int8 (returned as
 * int32 in [act_min, act_max]). Preconditions: multiplier >= 0, 1 <= shift <= 62. */
int32_t ekws_requantize_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                           int32_t output_zp, int32_t act_min, int32_t act_max);

/* Scratch bytes of ekws_conv_s8 for a filter: kh*kw*in_c int16 (the kernel keeps the windows of
 * two output pixels there, as bytes; a pointwise convolution does not use it). */
size_t ekws_conv_s8_scratch_size(const ekws_dims_t *filter_dims);

/* 2-D convolution. input (in.n, in.h, in.w, in.c) -> output (in.n, out.h, out.w, filter.n);
 * filter (filter.n, filter.h, filter.w, in.c); bias (filter.n) or NULL; quant per output channel;
 * scratch of ekws_conv_s8_scratch_size() bytes, int16-aligned. */
ekws_status_t ekws_conv_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                           const ekws_dims_t *input_dims, const int8_t *input,
                           const ekws_dims_t *filter_dims, const int8_t *filter, const int32_t *bias,
                           const ekws_dims_t *output_dims, int8_t *output, int16_t *scratch);

/* Scratch bytes of ekws_depthwise_conv_s8 / ekws_avgpool_s8: one int32 per channel (the depthwise
 * kernel's per-channel zero-point term; pooling does not use it). */
size_t ekws_depthwise_conv_s8_scratch_size(const ekws_dims_t *input_dims);

/* Depthwise convolution, depth multiplier 1. input (n, h, w, c) -> output (n, out.h, out.w, c);
 * filter (filter.h, filter.w, c) with filter.n == filter.c == c; bias (c) or NULL. */
ekws_status_t ekws_depthwise_conv_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                     const ekws_dims_t *input_dims, const int8_t *input,
                                     const ekws_dims_t *filter_dims, const int8_t *filter,
                                     const int32_t *bias, const ekws_dims_t *output_dims,
                                     int8_t *output, int32_t *scratch);

/* Average pooling over pool_h x pool_w windows (padded cells count as zeros, the divisor is always
 * pool_h * pool_w, folded into quant->multiplier[0] / shift[0]). Output zero point and clamp from
 * params; input (n, h, w, c) -> output (n, out.h, out.w, c). */
ekws_status_t ekws_avgpool_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                              int32_t pool_h, int32_t pool_w, const ekws_dims_t *input_dims,
                              const int8_t *input, const ekws_dims_t *output_dims, int8_t *output,
                              int32_t *scratch);

/* Scratch bytes of ekws_fully_connected_s8: one int16 per input feature (unused by the current
 * kernel; kept so that arena sizes stay valid). */
size_t ekws_fully_connected_s8_scratch_size(int32_t in_features);

/* Dense layer: input (batch, in_features) -> output (batch, out_features); weights
 * (out_features, in_features); bias (out_features) or NULL; quant per output feature.
 * Only input_zp, output_zp, act_min, act_max of params are used. */
ekws_status_t ekws_fully_connected_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                      int32_t batch, int32_t in_features, const int8_t *input,
                                      int32_t out_features, const int8_t *weights, const int32_t *bias,
                                      int8_t *output, int16_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_KERNELS_H */
