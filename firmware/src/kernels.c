/* kernels.c: int8 kernels and the requantization rule (twin of edgekws/quant/fixedpoint.py and
 * qmodel.py). Integer arithmetic only; see ekws/kernels.h for layouts and the rounding rule.
 *
 * How the kernels are organised. Every path is bit-exact with the numpy reference: an int32 sum
 * of (x - zp) * w is exact in any order and however it is split (|sum| < 2^31 for windows of up
 * to 65,793 values), and every output goes through the one rule of ekws_requantize_s8.
 *   - Pointwise (1x1, stride 1, no padding) convolution and dense layers are one matrix product
 *     (matmul_s8): sum_i (x_i - zp) w_i = sum_i x_i w_i - zp sum_i w_i, the second term once per
 *     output channel. Blocks of 2 output channels x 2 pixels read the int8 operands in place.
 *   - Other convolutions copy the windows of two output pixels side by side into the scratch
 *     (the input zero point where a window hangs over the edge, so padding needs no test per MAC),
 *     then take the same 2 x 2 blocks over them.
 *   - Depthwise convolution and average pooling: per output pixel, blocks of 4 channels. A window
 *     inside the input starts from -zp * sum w, kept per channel in the scratch; a window at the
 *     edge is clipped to the input (a padding cell contributes (zp - zp) * w = 0).
 *   - With the Arm DSP extension (Cortex-M4/M7/M33, 32-bit A-profile; unless -DEKWS_NO_DSP) the
 *     inner loops read 4 int8 values as one word and widen them in pairs with SXTB16 (bytes 0, 2)
 *     and SXTB16 ROR 8 (bytes 1, 3); both operands are widened alike, so each SMLAD adds 2
 *     matching products. Depthwise uses SMLABB / SMLATT (one channel per halfword). Elsewhere
 *     plain C.
 *   - requant() takes the usual case (shift > 32: layer scales below 1/2) in 32-bit arithmetic
 *     after one SMLAL; smaller shifts go through the exact int64 form out of line. In a layer
 *     whose biases cannot make a sum overflow and whose clamp is all of int8 ("lean"), the sums
 *     start from the bias and requantization is five instructions.
 */
#include "ekws/kernels.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32) &&            \
    __ARM_FEATURE_SIMD32 && !defined(EKWS_NO_DSP)
#define EKWS_DSP 1
#include <arm_acle.h>
#else
#define EKWS_DSP 0
#endif

/* 32-bit Arm with Thumb-2 or Arm instructions (SMLAL, SSAT with shift): Cortex-M3 and up. */
#if defined(__GNUC__) && defined(__arm__) && defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#define EKWS_ARM_SAT 1
#else
#define EKWS_ARM_SAT 0
#endif

/* The plain C inner products work in blocks of 16 that compilers vectorize on cores with SIMD
 * (x86, aarch64); on microcontrollers without (Cortex-M0/M3) the blocks would only add work. */
#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'
#define EKWS_VECTOR_BLOCKS 0
#else
#define EKWS_VECTOR_BLOCKS 1
#endif

/* An empty asm that orders memory accesses around it (GCC/Clang). */
#if defined(__GNUC__)
#define EKWS_BARRIER() __asm__ volatile("" ::: "memory")
#else
#define EKWS_BARRIER() ((void)0)
#endif

/* Kernel bodies with constant flag arguments are inlined into each caller, one copy per value. */
#if defined(__GNUC__)
#define EKWS_SPECIALIZE static inline __attribute__((always_inline))
#define EKWS_COLD static __attribute__((noinline, cold))
#define EKWS_LIKELY(c) __builtin_expect(!!(c), 1)
#else
#define EKWS_SPECIALIZE static inline
#define EKWS_COLD static
#define EKWS_LIKELY(c) (c)
#endif

/* ---- the requantization rule ---- */

/* A layer's output zero point and clamp. */
typedef struct {
    int32_t zp, lo, hi;
    int32_t zp2p1; /* 2 zp + 1, for the last halving of round_shift_hi */
    int32_t full;  /* the clamp is all of int8 */
} out_t;

static inline out_t out_init(const ekws_conv_params_t *p) {
    const out_t o = {p->output_zp, p->act_min, p->act_max, 2 * p->output_zp + 1,
                     p->act_min == -128 && p->act_max == 127};
    return o;
}

/* clamp32(a + b) */
static inline int32_t add_sat32(int32_t a, int32_t b) {
#if EKWS_DSP
    return __qadd(a, b);
#else
    const int64_t s = (int64_t)a + (int64_t)b;
    return s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
#endif
}

/* round(x * multiplier / 2^shift), half away from zero, exactly (int64). */
static int64_t round_shift_exact(int32_t x, int32_t multiplier, int32_t shift) {
    /* |x| <= 2^31 and multiplier < 2^31, so |p| < 2^62 and p + 2^(shift-1) cannot overflow. */
    const int64_t p = (int64_t)x * (int64_t)multiplier;
    const int64_t half = (int64_t)1 << (shift - 1);
    return p >= 0 ? (p + half) >> shift : -((-p + half) >> shift);
}

/* The high word of x * multiplier - [x < 0] (one SMLAL onto the sign word; GCC does not always
 * find it). */
static inline int32_t mul_hi_floor(int32_t x, int32_t multiplier) {
#if EKWS_ARM_SAT
    int32_t lo = x >> 31, hi = x >> 31;
    __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(x), "r"(multiplier));
    return hi;
#else
    return (int32_t)(((int64_t)x * multiplier + (x >> 31)) >> 32);
#endif
}

/* The rule's rounding for shift > 32 (the usual case: layer scales below 1/2) in 32-bit steps:
 * returns h with round(x * multiplier / 2^shift) == (h + 1) >> 1 (half away from zero), so that
 * the output zero point joins the last halving as (h + 1 + 2 zp) >> 1: one SSAT with its shift.
 * Half away from zero is floor((p - [p < 0] + 2^(shift-1)) / 2^shift) for p = x * M; the rounding
 * term is a multiple of 2^32, so only the high word H of p - [p < 0] matters (|H| <= 2^30), and
 * floor((H + 2^n) / 2^(n+1)) = ((H >> n) + 1) >> 1 for n = shift - 33: h = H >> n. p < 0 iff
 * x < 0 when M > 0; when M == 0 both forms give 0. */
static inline int32_t round_shift_hi(int32_t x, int32_t multiplier, int32_t shift) {
    return mul_hi_floor(x, multiplier) >> (shift - 33);
}

/* clamp(t >> 1, -128, 127): one SSAT with its shift on Arm (ACLE's __ssat trips -Wsign-conversion
 * in GCC 12 and has no shift). */
static inline int32_t sat8_half(int32_t t) {
#if EKWS_ARM_SAT
    int32_t r;
    __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(t));
    return r;
#else
    t >>= 1;
    return t < -128 ? -128 : t > 127 ? 127 : t;
#endif
}

/* requant() for shift <= 32, out of line. */
EKWS_COLD int32_t requant_slow(int32_t x, int32_t multiplier, int32_t shift, const out_t *o) {
    const int64_t y = round_shift_exact(x, multiplier, shift) + o->zp;
    return (int32_t)(y < o->lo ? o->lo : y > o->hi ? o->hi : y);
}

/* The output (an int8 value) of accumulator acc for a channel's bias, multiplier and shift. */
static inline int32_t requant(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                              const out_t *o) {
    const int32_t x = add_sat32(acc, bias);
    if (EKWS_LIKELY(shift > 32)) {
        const int32_t t = round_shift_hi(x, multiplier, shift) + o->zp2p1;
        if (o->full) {
            return sat8_half(t);
        }
        const int32_t y = t >> 1;
        return y < o->lo ? o->lo : y > o->hi ? o->hi : y;
    }
    return requant_slow(x, multiplier, shift, o);
}

/* requant() in a "lean" layer (see lean_layer): acc already holds the bias (and cannot have
 * overflowed), every shift is > 32 and the clamp is all of int8, so one SMLAL, two shifts, an add
 * and one SSAT remain. Kernels pass `lean` as a constant: one copy of their loops for each. */
static inline int32_t requant_out(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                                  const out_t *o, const int lean) {
    if (lean) {
        return sat8_half(round_shift_hi(acc, multiplier, shift) + o->zp2p1);
    }
    return requant(acc, bias, multiplier, shift, o);
}

/* Can a layer use requant_out(lean = 1)? The clamp is all of int8, each of its nq shifts is > 32,
 * and for each of its nb biases, |bias| + max_sum (a bound on any |sum of (x - zp) * w|, and on
 * the partial sums on the way) fits in int32, so the sums may start from the bias. */
static int lean_layer(const ekws_conv_params_t *p, const ekws_quant_params_t *q, int32_t nq,
                      const int32_t *bias, int32_t nb, int64_t max_sum) {
    if (p->act_min != -128 || p->act_max != 127 || max_sum > INT32_MAX) {
        return 0;
    }
    for (int32_t i = 0; i < nq; i++) {
        if (q->shift[i] <= 32) {
            return 0;
        }
    }
    for (int32_t i = 0; bias && i < nb; i++) {
        const int64_t b = bias[i] < 0 ? -(int64_t)bias[i] : bias[i];
        if (b + max_sum > INT32_MAX) {
            return 0;
        }
    }
    return 1;
}

/* A bound on |x - zp| * |w| for int8 x, zp and weights in [-128, 127]. */
#define EKWS_MAX_PRODUCT ((int64_t)255 * 128)

int32_t ekws_requantize_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                           int32_t output_zp, int32_t act_min, int32_t act_max) {
    const int32_t x = add_sat32(acc, bias);
    /* the kernels' 32-bit form where they use it, so the golden cases check it on any input */
    const int64_t r = shift > 32 ? (round_shift_hi(x, multiplier, shift) + 1) >> 1
                                 : round_shift_exact(x, multiplier, shift);
    int64_t y = r + output_zp;
    if (y < act_min) {
        y = act_min;
    } else if (y > act_max) {
        y = act_max;
    }
    return (int32_t)y;
}

/* ---- argument checks ---- */

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

/* Window geometry: positive sizes and strides, non-negative padding, and every window starting
 * inside the padded input ((out - 1) * stride < in + pad, as for any 'same' or 'valid' layer; the
 * model check asks the same). Then oy * stride - pad and the window ends stay within int32, and
 * reads stay inside the input: taps outside it are skipped (a window in the padding gives 0). */
static ekws_status_t check_window(const ekws_conv_params_t *p, const ekws_dims_t *in, int32_t kh,
                                  int32_t kw, const ekws_dims_t *out) {
    if (in->n < 1 || in->h < 1 || in->w < 1 || in->c < 1 || out->h < 1 || out->w < 1 || kh < 1 ||
        kw < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 || p->pad_left < 0) {
        return EKWS_ERR_ARG;
    }
    if ((int64_t)(out->h - 1) * p->stride_h >= (int64_t)in->h + p->pad_top ||
        (int64_t)(out->w - 1) * p->stride_w >= (int64_t)in->w + p->pad_left ||
        (int64_t)in->h + p->pad_top + kh > INT32_MAX || (int64_t)in->w + p->pad_left + kw > INT32_MAX) {
        return EKWS_ERR_ARG;
    }
    return EKWS_OK;
}

/* The taps [lo, hi) of a k-tap window starting at input position start (may be negative) that
 * fall inside an input of n positions; lo == hi when none do. */
static inline void clip(int32_t start, int32_t k, int32_t n, int32_t *lo, int32_t *hi) {
    const int32_t a = start < 0 ? -start : 0;
    const int32_t b = n - start < k ? n - start : k;
    *lo = a;
    *hi = b > a ? b : a;
}

/* ---- inner products ---- */

/* How the inner products read their x operand (a constant argument):
 *   X_RAW  int8 x; the zero point is the caller's (a per-channel starting value);
 *   X_SUB  int8 x, (x - zp) formed in the loop (with DSP: SXTAB16 adding -zp to both halves);
 *   X_U8   the bytes hold x - zp as uint8 (x ^ 0x80 for zp -128): UXTB16 with DSP, one register
 *          fewer than X_SUB, so the 2 x 2 loop stays in registers; LDRB without. */
enum { X_RAW, X_SUB, X_U8 };

#if EKWS_DSP
/* Four int8 values as one word: unaligned loads are fine on v7E-M, and the builtin stays one
 * inline LDR under -ffreestanding. */
static inline int32_t load4(const int8_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

/* SXTB16 / SXTAB16 / UXTB16 of the word rotated by 8 (bytes 1 and 3). GCC 12 keeps a separate
 * ROR for __sxtb16(rotated), so the rotate operand is spelled out. */
static inline int32_t sxtb16_ror8(int32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t sxtab16_ror8(int32_t a, int32_t v) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

static inline int32_t uxtb16_ror8(int32_t v) {
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* UXTB16 (bytes 0 and 2, zero-extended); ACLE's __uxtb16 has different argument types in GCC and
 * Clang. */
static inline int32_t uxtb16(int32_t v) {
    int32_t r;
    __asm__("uxtb16 %0, %1" : "=r"(r) : "r"(v));
    return r;
}

/* -zp in both halfwords, for SXTAB16. */
static inline int32_t neg_zp_pair(int32_t zp) {
    return (int32_t)(((uint32_t)-zp & 0xFFFFu) * 0x10001u);
}

/* Bytes 0, 2 (lo) and 1, 3 (hi) of x as halfword pairs, read as `mode` says (X_SUB: nzp). */
#define WIDEN_X(mode, v, lo, hi)                                                                   \
    do {                                                                                           \
        if ((mode) == X_SUB) {                                                                     \
            lo = __sxtab16(nzp, v);                                                                \
            hi = sxtab16_ror8(nzp, v);                                                             \
        } else if ((mode) == X_U8) {                                                               \
            lo = uxtb16(v);                                                                        \
            hi = uxtb16_ror8(v);                                                                   \
        } else {                                                                                   \
            lo = __sxtb16(v);                                                                      \
            hi = sxtb16_ror8(v);                                                                   \
        }                                                                                          \
    } while (0)
#endif

/* One x value as `mode` reads it. */
static inline int32_t x_value(int8_t x, int32_t zp, const int mode) {
    return mode == X_SUB ? x - zp : mode == X_U8 ? (int32_t)(uint8_t)x : x;
}

/* acc = {c0 + x0.w0, c1 + x0.w1, c0 + x1.w0, c1 + x1.w1}, dot products of n values (x read as
 * `mode` says) with x1 = x0 + off and w1 = w0 + off. */
EKWS_SPECIALIZE void dot_2x2(const int8_t *x, const int8_t *w, ptrdiff_t off, int32_t n, int32_t zp,
                             const int mode, int32_t c0, int32_t c1, int32_t acc[4]) {
    int32_t a00 = c0, a01 = c1, a10 = c0, a11 = c1;
    int32_t i = 0;
#if EKWS_DSP
    const int32_t nzp = neg_zp_pair(mode == X_SUB ? zp : 0);
#define DOT_2X2_4(i)                                                                               \
    do {                                                                                           \
        int32_t x0a, x0b, x1a, x1b;                                                                \
        const int32_t w0 = load4(w + (i)), x0 = load4(x + (i));                                    \
        const int32_t w0a = __sxtb16(w0), w0b = sxtb16_ror8(w0);                                   \
        WIDEN_X(mode, x0, x0a, x0b);                                                               \
        a00 = __smlad(x0a, w0a, a00);                                                              \
        a00 = __smlad(x0b, w0b, a00);                                                              \
        const int32_t x1 = load4(x + off + (i));                                                   \
        WIDEN_X(mode, x1, x1a, x1b);                                                               \
        a10 = __smlad(x1a, w0a, a10);                                                              \
        a10 = __smlad(x1b, w0b, a10);                                                              \
        const int32_t w1 = load4(w + off + (i));                                                   \
        const int32_t w1a = __sxtb16(w1), w1b = sxtb16_ror8(w1);                                   \
        a01 = __smlad(x0a, w1a, a01);                                                              \
        a01 = __smlad(x0b, w1b, a01);                                                              \
        a11 = __smlad(x1a, w1a, a11);                                                              \
        a11 = __smlad(x1b, w1b, a11);                                                              \
        EKWS_BARRIER(); /* no loads hoisted from the next step: they would spill */                \
    } while (0)
    for (; i + 8 <= n; i += 8) { /* two steps per loop test */
        DOT_2X2_4(i);
        DOT_2X2_4(i + 4);
    }
    if (i + 4 <= n) {
        DOT_2X2_4(i);
        i += 4;
    }
#undef DOT_2X2_4
#elif EKWS_VECTOR_BLOCKS
    /* blocks of a fixed 16: compilers vectorize them even under -O2's cheapest cost model */
    for (; i + 16 <= n; i += 16) {
        const int8_t *xb = x + i, *wb = w + i;
        int32_t t00 = 0, t01 = 0, t10 = 0, t11 = 0;
        for (int32_t j = 0; j < 16; j++) {
            const int32_t v0 = x_value(xb[j], zp, mode), v1 = x_value(xb[off + j], zp, mode);
            const int32_t u0 = wb[j], u1 = wb[off + j];
            t00 += v0 * u0;
            t01 += v0 * u1;
            t10 += v1 * u0;
            t11 += v1 * u1;
        }
        a00 += t00;
        a01 += t01;
        a10 += t10;
        a11 += t11;
    }
#endif
    for (; i < n; i++) {
        const int32_t v0 = x_value(x[i], zp, mode), v1 = x_value(x[off + i], zp, mode);
        const int32_t u0 = w[i], u1 = w[off + i];
        a00 += v0 * u0;
        a01 += v0 * u1;
        a10 += v1 * u0;
        a11 += v1 * u1;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* acc = {c0 + x.w0, c1 + x.w1}, dot products of n values (x read as `mode` says) with
 * w1 = w0 + dw (dw 0: the same channel twice). */
EKWS_SPECIALIZE void dot_1x2(const int8_t *x, const int8_t *w, ptrdiff_t dw, int32_t n, int32_t zp,
                             const int mode, int32_t c0, int32_t c1, int32_t acc[2]) {
    int32_t a0 = c0, a1 = c1;
    int32_t i = 0;
#if EKWS_DSP
    const int32_t nzp = neg_zp_pair(mode == X_SUB ? zp : 0);
    for (; i + 4 <= n; i += 4) {
        int32_t xa, xb;
        const int32_t xv = load4(x + i), w0 = load4(w + i), w1 = load4(w + dw + i);
        WIDEN_X(mode, xv, xa, xb);
        a0 = __smlad(xa, __sxtb16(w0), a0);
        a0 = __smlad(xb, sxtb16_ror8(w0), a0);
        a1 = __smlad(xa, __sxtb16(w1), a1);
        a1 = __smlad(xb, sxtb16_ror8(w1), a1);
    }
#elif EKWS_VECTOR_BLOCKS
    for (; i + 16 <= n; i += 16) { /* as in dot_2x2 */
        const int8_t *xb = x + i, *wb = w + i;
        int32_t t0 = 0, t1 = 0;
        for (int32_t j = 0; j < 16; j++) {
            const int32_t v = x_value(xb[j], zp, mode);
            t0 += v * wb[j];
            t1 += v * wb[dw + j];
        }
        a0 += t0;
        a1 += t1;
    }
#endif
    for (; i < n; i++) {
        const int32_t v = x_value(x[i], zp, mode);
        a0 += v * w[i];
        a1 += v * w[dw + i];
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* sum_i w[i] for i < n. */
static int32_t sum_s8(const int8_t *w, int32_t n) {
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++) {
        s += w[i];
    }
    return s;
}

/* ---- pointwise convolution and dense layers ---- */

/* out[p * cout + o] for p < npix, o < cout: the product of the int8 rows x (npix, k) with the
 * weight rows w (cout, k), with the input zero point and requantization of params / quant
 * (already checked). Channel pairs outside, pixel pairs inside, so a channel's parameters and
 * starting value are set up once: the zero point's share -zp * sum w (exact: |sum w| <= 127 k;
 * a single row subtracts zp in the loop instead), plus the bias in a lean layer. */
EKWS_SPECIALIZE void matmul_body(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                 const int8_t *x, int32_t npix, int32_t k, const int8_t *w,
                                 int32_t cout, const int32_t *bias, int8_t *out, const int lean) {
    const out_t oq = out_init(params);
    const int32_t zp = params->input_zp;
    for (int32_t o = 0; o < cout; o += 2) {
        const int32_t two = o + 1 < cout, o1 = o + two; /* a lone last channel pairs with itself */
        const int8_t *w0 = w + (ptrdiff_t)o * k;
        const int32_t b0 = bias ? bias[o] : 0, b1 = bias ? bias[o1] : 0;
        const int32_t c0 = (npix > 1 ? -zp * sum_s8(w0, k) : 0) + (lean ? b0 : 0);
        const int32_t c1 =
            (npix > 1 ? -zp * sum_s8(w + (ptrdiff_t)o1 * k, k) : 0) + (lean ? b1 : 0);
        const int32_t m0 = quant->multiplier[o], m1 = quant->multiplier[o1];
        const int32_t s0 = quant->shift[o], s1 = quant->shift[o1];
        int8_t *dst = out + o;
        const int8_t *xp = x;
        int32_t p = 0;
        if (two) {
            for (; p + 2 <= npix; p += 2) {
                int32_t acc[4];
                dot_2x2(xp, w0, k, k, 0, X_RAW, c0, c1, acc);
                dst[0] = (int8_t)requant_out(acc[0], b0, m0, s0, &oq, lean);
                dst[1] = (int8_t)requant_out(acc[1], b1, m1, s1, &oq, lean);
                dst[cout] = (int8_t)requant_out(acc[2], b0, m0, s0, &oq, lean);
                dst[cout + 1] = (int8_t)requant_out(acc[3], b1, m1, s1, &oq, lean);
                dst += 2 * (ptrdiff_t)cout;
                xp += 2 * (ptrdiff_t)k;
            }
        }
        for (; p < npix; p++) {
            int32_t acc[2];
            if (npix > 1) {
                dot_1x2(xp, w0, (ptrdiff_t)(o1 - o) * k, k, 0, X_RAW, c0, c1, acc);
            } else {
                dot_1x2(xp, w0, (ptrdiff_t)(o1 - o) * k, k, zp, X_SUB, c0, c1, acc);
            }
            dst[0] = (int8_t)requant_out(acc[0], b0, m0, s0, &oq, lean);
            if (two) {
                dst[1] = (int8_t)requant_out(acc[1], b1, m1, s1, &oq, lean);
            }
            dst += cout;
            xp += k;
        }
    }
}

static void matmul_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                      const int8_t *x, int32_t npix, int32_t k, const int8_t *w, int32_t cout,
                      const int32_t *bias, int8_t *out) {
    if (lean_layer(params, quant, cout, bias, cout, (int64_t)k * EKWS_MAX_PRODUCT)) {
        matmul_body(params, quant, x, npix, k, w, cout, bias, out, 1);
    } else {
        matmul_body(params, quant, x, npix, k, w, cout, bias, out, 0);
    }
}

/* ---- convolution ---- */

size_t ekws_conv_s8_scratch_size(const ekws_dims_t *filter_dims) {
    if (!filter_dims || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->c < 1) {
        return 0;
    }
    return (size_t)filter_dims->h * (size_t)filter_dims->w * (size_t)filter_dims->c *
           sizeof(int16_t);
}

/* A convolution's input and window, for patch_s8. */
typedef struct {
    const int8_t *in; /* the batch item */
    int32_t in_h, in_w, cin, kh, kw;
    int32_t flip; /* X_U8: 0x80, which turns x into x - zp for zp -128; else 0 */
    int8_t pad;   /* cells outside the input: the zero point (X_U8: 0) */
} conv_geom_t;

/* dst[i] = src[i] ^ flip for i < n. */
static inline void copy_flip(int8_t *dst, const int8_t *src, int32_t n, int32_t flip) {
    int32_t i = 0;
#if EKWS_DSP
    const uint32_t flip4 = (uint32_t)flip * 0x01010101u;
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = (uint32_t)load4(src + i) ^ flip4;
        __builtin_memcpy(dst + i, &v, sizeof v);
    }
#endif
    for (; i < n; i++) {
        dst[i] = (int8_t)(src[i] ^ flip);
    }
}

/* dst[i] = v for i < n. */
static inline void fill_s8(int8_t *dst, int32_t n, int8_t v) {
    for (int32_t i = 0; i < n; i++) {
        dst[i] = v;
    }
}

/* The window at input row y0, column x0 (may hang over the edges) in filter order, kh * kw * cin
 * bytes x ^ flip, and `pad` outside the input (so (x - zp) * w is 0 there, as for padding). */
static void patch_s8(const conv_geom_t *g, int32_t y0, int32_t x0, int8_t *patch) {
    /* locals: the compiler cannot tell that stores to patch leave *g alone */
    const int32_t kh = g->kh, cin = g->cin, in_w = g->in_w, flip = g->flip;
    const int8_t pad = g->pad;
    int32_t i0, i1, j0, j1;
    clip(y0, kh, g->in_h, &i0, &i1);
    clip(x0, g->kw, in_w, &j0, &j1);
    const int32_t row = g->kw * cin, lead = j0 * cin, len = (j1 - j0) * cin;
    if (i1 <= i0 || len <= 0) {
        fill_s8(patch, kh * row, pad); /* entirely in the padding */
        return;
    }
    const int8_t *src = g->in + ((ptrdiff_t)(y0 + i0) * in_w + x0 + j0) * cin;
    const ptrdiff_t step = (ptrdiff_t)in_w * cin;
    fill_s8(patch, i0 * row, pad);
    patch += (ptrdiff_t)i0 * row;
    if (len == row && row == 4) { /* e.g. the 10x4 one-channel first layer of a KWS model */
        for (int32_t i = i1 - i0; i > 0; i--, patch += 4, src += step) {
            copy_flip(patch, src, 4, flip);
        }
    } else if (len == row) {
        for (int32_t i = i1 - i0; i > 0; i--, patch += row, src += step) {
            copy_flip(patch, src, row, flip);
        }
    } else {
        for (int32_t i = i1 - i0; i > 0; i--, patch += row, src += step) {
            fill_s8(patch, lead, pad);
            copy_flip(patch + lead, src, len, flip);
            fill_s8(patch + lead + len, row - lead - len, pad);
        }
    }
    fill_s8(patch, (kh - i1) * row, pad);
}

/* The outputs of two pixels, out0[o] and out1[o] for every output channel o, from their windows
 * side by side in patch (k bytes each). The last pixel of an odd count comes as a pair of
 * itself with out1 == out0. */
EKWS_SPECIALIZE void conv_pixels(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                 const int8_t *patch, int32_t k, const int8_t *filter, int32_t cout,
                                 const int32_t *bias, int8_t *out0, int8_t *out1, const int mode,
                                 const int lean) {
    const out_t oq = out_init(params);
    const int32_t zp = params->input_zp;
    const int32_t *mult = quant->multiplier, *shift = quant->shift;
    int32_t o = 0;
    for (; o + 1 < cout; o += 2) {
        int32_t acc[4];
        const int32_t c0 = lean && bias ? bias[o] : 0, c1 = lean && bias ? bias[o + 1] : 0;
        dot_2x2(patch, filter + (ptrdiff_t)o * k, k, k, zp, mode, c0, c1, acc);
        EKWS_BARRIER(); /* load the channels' parameters now, not across the loop (spills) */
        const int32_t b0 = bias && !lean ? bias[o] : 0, b1 = bias && !lean ? bias[o + 1] : 0;
        out0[o] = (int8_t)requant_out(acc[0], b0, mult[o], shift[o], &oq, lean);
        out0[o + 1] = (int8_t)requant_out(acc[1], b1, mult[o + 1], shift[o + 1], &oq, lean);
        out1[o] = (int8_t)requant_out(acc[2], b0, mult[o], shift[o], &oq, lean);
        out1[o + 1] = (int8_t)requant_out(acc[3], b1, mult[o + 1], shift[o + 1], &oq, lean);
    }
    if (o < cout) { /* the last of an odd number of channels */
        int32_t acc[2];
        const int32_t b0 = bias ? bias[o] : 0, c0 = lean ? b0 : 0;
        dot_1x2(patch, filter + (ptrdiff_t)o * k, 0, k, zp, mode, c0, c0, acc);
        out0[o] = (int8_t)requant_out(acc[0], b0, mult[o], shift[o], &oq, lean);
        dot_1x2(patch + k, filter + (ptrdiff_t)o * k, 0, k, zp, mode, c0, c0, acc);
        out1[o] = (int8_t)requant_out(acc[0], b0, mult[o], shift[o], &oq, lean);
    }
}

ekws_status_t ekws_conv_s8(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                           const ekws_dims_t *input_dims, const int8_t *input,
                           const ekws_dims_t *filter_dims, const int8_t *filter,
                           const int32_t *bias, const ekws_dims_t *output_dims, int8_t *output,
                           int16_t *scratch) {
    if (!input_dims || !input || !filter_dims || !filter || !output_dims || !output || !scratch) {
        return EKWS_ERR_NULL;
    }
    const int32_t cout = filter_dims->n, kh = filter_dims->h, kw = filter_dims->w,
                  cin = input_dims->c;
    if (cout < 1 || filter_dims->c != cin || output_dims->c != cout ||
        output_dims->n != input_dims->n) {
        return EKWS_ERR_ARG;
    }
    ekws_status_t st = check_quant(params, quant, cout);
    if (st == EKWS_OK) {
        st = check_window(params, input_dims, kh, kw, output_dims);
    }
    if (st != EKWS_OK) {
        return st;
    }
    const int32_t in_h = input_dims->h, in_w = input_dims->w, out_h = output_dims->h,
                  out_w = output_dims->w;
    if (kh == 1 && kw == 1 && params->stride_h == 1 && params->stride_w == 1 &&
        params->pad_top == 0 && params->pad_left == 0 && out_h == in_h && out_w == in_w) {
        /* pointwise: every pixel's window is its own channel vector, read in place */
        matmul_s8(params, quant, input, input_dims->n * in_h * in_w, cin, filter, cout, bias,
                  output);
        return EKWS_OK;
    }
    /* The windows of two pixels side by side: 2 * k bytes, the scratch's size. */
    int8_t *patch = (int8_t *)(void *)scratch;
    const int32_t k = kh * kw * cin, sh = params->stride_h, sw = params->stride_w;
    /* One fast copy of the loops for the usual layer (input zero point -128, lean), one general. */
    const int fast = params->input_zp == -128 &&
                     lean_layer(params, quant, cout, bias, cout, (int64_t)k * EKWS_MAX_PRODUCT);
    const int32_t flip = fast ? 0x80 : 0;
    conv_geom_t g = {input, in_h, in_w, cin, kh, kw, flip, (int8_t)(fast ? 0 : params->input_zp)};
    for (int32_t b = 0; b < input_dims->n; b++) {
        g.in = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)cin;
        int32_t oy = 0, ox = 0; /* the next output pixel */
        for (int32_t left = out_h * out_w; left > 0; left -= 2) {
            const int32_t pair = left > 1;
            for (int32_t p = 0; p < 2; p++) { /* a lone last pixel fills both halves */
                patch_s8(&g, oy * sh - params->pad_top, ox * sw - params->pad_left, patch + p * k);
                if ((p == 1 || pair) && ++ox == out_w) {
                    ox = 0;
                    oy++;
                }
            }
            int8_t *out1 = pair ? output + cout : output;
            if (fast) {
                conv_pixels(params, quant, patch, k, filter, cout, bias, output, out1, X_U8, 1);
            } else {
                conv_pixels(params, quant, patch, k, filter, cout, bias, output, out1, X_SUB, 0);
            }
            output += (1 + pair) * cout;
        }
    }
    return EKWS_OK;
}

/* ---- depthwise convolution and average pooling ---- */

size_t ekws_depthwise_conv_s8_scratch_size(const ekws_dims_t *input_dims) {
    if (!input_dims || input_dims->c < 1) {
        return 0;
    }
    return (size_t)input_dims->c * sizeof(int32_t);
}

/* A window clipped to the input: rows x cols taps, taps c apart within a row (in the input and
 * the filter alike), rows x_row / w_row apart. Pooling: w points at 4 ones and never moves. */
typedef struct {
    int32_t rows, cols;
    ptrdiff_t c, x_row, w_row;
} taps_t;

#if EKWS_DSP
/* One tap of 4 channels into a0..a3: channels 0, 2 from the halves of the plain widening,
 * 1, 3 from the rotated one. */
#define TAP4(mode, xv, wv)                                                                         \
    do {                                                                                           \
        int32_t xa_, xb_;                                                                          \
        const int32_t xv_ = (xv), wv_ = (wv);                                                      \
        WIDEN_X(mode, xv_, xa_, xb_);                                                              \
        const int32_t wa_ = __sxtb16(wv_), wb_ = sxtb16_ror8(wv_);                                 \
        a0 = __smlabb(xa_, wa_, a0);                                                               \
        a2 = __smlatt(xa_, wa_, a2);                                                               \
        a1 = __smlabb(xb_, wb_, a1);                                                               \
        a3 = __smlatt(xb_, wb_, a3);                                                               \
        EKWS_BARRIER(); /* keeps GCC from hoisting every load of a window (and spilling) */        \
    } while (0)
#else
#define TAP4(mode, xp, wp)                                                                         \
    do {                                                                                           \
        a0 += x_value((xp)[0], zp, mode) * (wp)[0];                                                \
        a1 += x_value((xp)[1], zp, mode) * (wp)[1];                                                \
        a2 += x_value((xp)[2], zp, mode) * (wp)[2];                                                \
        a3 += x_value((xp)[3], zp, mode) * (wp)[3];                                                \
    } while (0)
#endif

#if EKWS_DSP
#define LOAD_TAP(p) load4(p)
#else
#define LOAD_TAP(p) (p)
#endif

/* Four channels' accumulators. */
typedef struct {
    int32_t a0, a1, a2, a3;
} acc4_t;

/* acc + sum over the taps of x[i] * w[i] for the 4 channels at x, w (x read as `mode` says;
 * pool: w stays on 4 ones). */
EKWS_SPECIALIZE acc4_t dw_4ch(const int8_t *x, const int8_t *w, const taps_t *t, int32_t zp,
                              const int mode, const int pool, acc4_t acc) {
    int32_t a0 = acc.a0, a1 = acc.a1, a2 = acc.a2, a3 = acc.a3;
    const ptrdiff_t c = t->c, wc = pool ? 0 : c;
#if EKWS_DSP
    const int32_t nzp = neg_zp_pair(mode == X_SUB ? zp : 0);
#endif
    for (int32_t r = t->rows; r > 0; r--) {
        const int8_t *xp = x, *wp = w;
        for (int32_t j = t->cols; j > 0; j--) {
            TAP4(mode, LOAD_TAP(xp), LOAD_TAP(wp));
            xp += c;
            wp += wc;
        }
        x += t->x_row;
        w += t->w_row;
    }
    const acc4_t out = {a0, a1, a2, a3};
    return out;
}

/* dw_4ch for a whole 3 x 3 window inside the input, unrolled; x is read raw (the caller's acc
 * holds the zero point's share). */
EKWS_SPECIALIZE acc4_t dw_4ch_3x3(const int8_t *x, const int8_t *w, ptrdiff_t c, ptrdiff_t x_row,
                                  acc4_t acc) {
    int32_t a0 = acc.a0, a1 = acc.a1, a2 = acc.a2, a3 = acc.a3;
#if EKWS_DSP
    const int32_t nzp = 0; /* unused by X_RAW */
    (void)nzp;
#else
    const int32_t zp = 0; /* unused by X_RAW */
#endif
    for (int32_t r = 3; r > 0;
         r--) { /* a loop, not unrolled: GCC would precompute (and spill) 9 offsets */
        TAP4(X_RAW, LOAD_TAP(x), LOAD_TAP(w));
        TAP4(X_RAW, LOAD_TAP(x + c), LOAD_TAP(w + c));
        TAP4(X_RAW, LOAD_TAP(x + 2 * c), LOAD_TAP(w + 2 * c));
        x += x_row;
        w += 3 * c;
    }
    const acc4_t out = {a0, a1, a2, a3};
    return out;
}

/* sum over the taps of (x - zp) * w for the one channel at x, w. */
static inline int32_t dw_1ch(const int8_t *x, const int8_t *w, const taps_t *t, int32_t zp,
                             const int pool) {
    int32_t a = 0;
    const ptrdiff_t c = t->c, wc = pool ? 0 : c;
    for (int32_t r = t->rows; r > 0; r--) {
        const int8_t *xp = x, *wp = w;
        for (int32_t j = t->cols; j > 0; j--) {
            a += (*xp - zp) * *wp;
            xp += c;
            wp += wc;
        }
        x += t->x_row;
        w += t->w_row;
    }
    return a;
}

/* Depthwise convolution (pool 0) or average pooling (pool 1: filter, bias and zterm NULL, one
 * multiplier and shift); arguments checked. zterm[c]: the zero point's share of a whole window of
 * channel c, -zp * sum of its weights, plus its bias in a lean layer. Per output pixel, blocks of
 * 4 channels: a window inside the input starts from zterm and reads x raw; one at an edge is
 * clipped and subtracts the zero point as it goes. */
EKWS_SPECIALIZE void window_body(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                                 int32_t kh, int32_t kw, const ekws_dims_t *input_dims,
                                 const int8_t *input, const int8_t *filter, const int32_t *bias,
                                 const int32_t *zterm, const ekws_dims_t *output_dims,
                                 int8_t *output, const int pool, const int lean) {
    static const int8_t ones[4] = {1, 1, 1, 1};
    static const int32_t zero4[4] = {0, 0, 0, 0};
    const out_t oq = out_init(params);
    const int32_t ch = input_dims->c, in_h = input_dims->h, in_w = input_dims->w,
                  zp = params->input_zp;
    const int32_t *mult = quant->multiplier, *shift = quant->shift;
    const int32_t *start_bias = lean && bias ? bias : NULL; /* clipped windows start from it */
    const int32_t *late_bias = lean ? NULL : bias;          /* requant adds it */
    const ptrdiff_t x_row = (ptrdiff_t)in_w * ch;
    taps_t t = {0, 0, ch, x_row, pool ? 0 : (ptrdiff_t)kw * ch};
    for (int32_t b = 0; b < input_dims->n; b++) {
        const int8_t *in = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)ch;
        for (int32_t oy = 0; oy < output_dims->h; oy++) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            int32_t i0, i1;
            clip(y0, kh, in_h, &i0, &i1);
            for (int32_t ox = 0; ox < output_dims->w; ox++) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                int32_t j0, j1;
                clip(x0, kw, in_w, &j0, &j1);
                t.rows = i1 - i0;
                t.cols = j1 - j0;
                const int8_t *xp = in, *wp = pool ? ones : filter;
                if (t.rows > 0 && t.cols > 0) {
                    xp = in + ((ptrdiff_t)(y0 + i0) * in_w + (x0 + j0)) * ch;
                    wp += pool ? 0 : ((ptrdiff_t)i0 * kw + j0) * ch;
                } else {
                    t.rows = 0; /* entirely in the padding: every sum is 0 */
                }
                const int inside = !pool && t.rows == kh && t.cols == kw;
                int32_t c = 0;
                for (; c + 4 <= ch; c += 4) {
                    acc4_t acc;
                    if (inside) {
                        const acc4_t z = {zterm[c], zterm[c + 1], zterm[c + 2], zterm[c + 3]};
                        if (kh == 3 && kw == 3) {
                            acc = dw_4ch_3x3(xp + c, wp + c, ch, x_row, z);
                        } else {
                            acc = dw_4ch(xp + c, wp + c, &t, zp, X_RAW, 0, z);
                        }
                    } else {
                        const int32_t *sb = start_bias ? start_bias + c : zero4;
                        const acc4_t z = {sb[0], sb[1], sb[2], sb[3]};
                        acc = dw_4ch(xp + c, pool ? wp : wp + c, &t, zp, X_SUB, pool, z);
                    }
                    EKWS_BARRIER(); /* load the channels' parameters after the taps */
                    const int32_t q = pool ? 0 : c, dq = pool ? 0 : 1;
                    const int32_t *lb = late_bias ? late_bias + c : zero4;
                    output[c] = (int8_t)requant_out(acc.a0, lb[0], mult[q], shift[q], &oq, lean);
                    output[c + 1] =
                        (int8_t)requant_out(acc.a1, lb[1], mult[q + dq], shift[q + dq], &oq, lean);
                    output[c + 2] = (int8_t)requant_out(acc.a2, lb[2], mult[q + 2 * dq],
                                                        shift[q + 2 * dq], &oq, lean);
                    output[c + 3] = (int8_t)requant_out(acc.a3, lb[3], mult[q + 3 * dq],
                                                        shift[q + 3 * dq], &oq, lean);
                }
                for (; c < ch; c++) {
                    const int32_t q = pool ? 0 : c;
                    const int32_t acc = (start_bias ? start_bias[c] : 0) +
                                        dw_1ch(xp + c, pool ? wp : wp + c, &t, zp, pool);
                    output[c] = (int8_t)requant_out(acc, late_bias ? late_bias[c] : 0, mult[q],
                                                    shift[q], &oq, lean);
                }
                output += ch;
            }
        }
    }
}

static ekws_status_t window_op(const ekws_conv_params_t *params, const ekws_quant_params_t *quant,
                               int32_t kh, int32_t kw, const ekws_dims_t *input_dims,
                               const int8_t *input, const int8_t *filter, const int32_t *bias,
                               const ekws_dims_t *output_dims, int8_t *output, int32_t *scratch) {
    const int32_t pool = filter == NULL, ch = input_dims->c;
    ekws_status_t st = check_quant(params, quant, pool ? 1 : ch);
    if (st == EKWS_OK) {
        st = check_window(params, input_dims, kh, kw, output_dims);
    }
    if (st != EKWS_OK) {
        return st;
    }
    if (output_dims->c != ch || output_dims->n != input_dims->n) {
        return EKWS_ERR_ARG;
    }
    const int64_t max_sum = (int64_t)kh * kw * EKWS_MAX_PRODUCT;
    const int lean = lean_layer(params, quant, pool ? 1 : ch, bias, ch, max_sum);
    if (pool) { /* a small share of any model's work: one copy of the general loops */
        window_body(params, quant, kh, kw, input_dims, input, NULL, NULL, NULL, output_dims, output,
                    1, 0);
        return EKWS_OK;
    }
    /* the zero point's share of a whole window, per channel (exact: |sum w| <= 127 kh kw) */
    for (int32_t c = 0; c < ch; c++) {
        int32_t s = 0;
        for (int32_t t = 0; t < kh * kw; t++) {
            s += filter[(ptrdiff_t)t * ch + c];
        }
        scratch[c] = -params->input_zp * s + (lean && bias ? bias[c] : 0);
    }
    if (lean) {
        window_body(params, quant, kh, kw, input_dims, input, filter, bias, scratch, output_dims,
                    output, 0, 1);
    } else {
        window_body(params, quant, kh, kw, input_dims, input, filter, bias, scratch, output_dims,
                    output, 0, 0);
    }
    return EKWS_OK;
}

ekws_status_t ekws_depthwise_conv_s8(const ekws_conv_params_t *params,
                                     const ekws_quant_params_t *quant,
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
    return window_op(params, quant, pool_h, pool_w, input_dims, input, NULL, NULL, output_dims,
                     output, scratch);
}

/* ---- dense ---- */

size_t ekws_fully_connected_s8_scratch_size(int32_t in_features) {
    return in_features < 1 ? 0 : (size_t)in_features * sizeof(int16_t);
}

ekws_status_t ekws_fully_connected_s8(const ekws_conv_params_t *params,
                                      const ekws_quant_params_t *quant, int32_t batch,
                                      int32_t in_features, const int8_t *input,
                                      int32_t out_features, const int8_t *weights,
                                      const int32_t *bias, int8_t *output, int16_t *scratch) {
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
    /* batch rows are the pixels of a 1x1 convolution */
    matmul_s8(params, quant, input, batch, in_features, weights, out_features, bias, output);
    return EKWS_OK;
}
