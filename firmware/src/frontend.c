/* frontend.c: integer FFT framing frontend (see ekws/frontend.h and edgekws/features/integer.py). */
#include "ekws/frontend.h"

#include <string.h>

#define EKWS_LOG_INDEX_BITS 8
#define EKWS_LOG_Q 10

/* floor(log2(v)) for v > 0. */
static int32_t floor_log2_u64(uint64_t v) {
    int32_t e = 0;
    while (v >= ((uint64_t)1 << 32)) { v >>= 32; e += 32; }
    if (v >= ((uint64_t)1 << 16)) { v >>= 16; e += 16; }
    if (v >= ((uint64_t)1 << 8)) { v >>= 8; e += 8; }
    if (v >= ((uint64_t)1 << 4)) { v >>= 4; e += 4; }
    if (v >= ((uint64_t)1 << 2)) { v >>= 2; e += 2; }
    if (v >= ((uint64_t)1 << 1)) { e += 1; }
    return e;
}

ekws_status_t ekws_frontend_init(ekws_frontend_t *fe, const ekws_frontend_params_t *p) {
    if (fe == NULL || p == NULL) {
        return EKWS_ERR_NULL;
    }
    fe->params = NULL;
    if (p->window == NULL || p->twiddle_cos == NULL || p->twiddle_sin == NULL || p->bitrev == NULL ||
        p->band_start == NULL || p->band_len == NULL || p->band_offset == NULL ||
        p->band_weights == NULL || p->log2_frac == NULL) {
        return EKWS_ERR_NULL;
    }
    if (p->fft_size < 16 || p->fft_size > EKWS_FRONTEND_MAX_FFT || p->log2_fft >= 31 ||
        ((uint32_t)1 << p->log2_fft) != p->fft_size || p->window_len < 1 ||
        p->window_len > p->fft_size || p->hop_len < 1 || p->hop_len > p->window_len ||
        p->num_bands < 1 || p->out_shift < 1 || p->out_shift > 40 || p->preemph_q15 < 0 ||
        p->preemph_q15 > 32767) {
        return EKWS_ERR_CONFIG;
    }
    for (uint32_t b = 0; b < p->num_bands; b++) {
        if ((uint32_t)p->band_start[b] + p->band_len[b] > p->fft_size / 2 + 1) {
            return EKWS_ERR_CONFIG;
        }
    }
    fe->params = p;
    ekws_frontend_reset(fe);
    return EKWS_OK;
}

void ekws_frontend_reset(ekws_frontend_t *fe) {
    if (fe == NULL) {
        return;
    }
    fe->fill = 0;
    fe->prev = 0;
}

size_t ekws_frontend_state_size(void) { return sizeof(ekws_frontend_t); }

size_t ekws_frontend_frames_for(const ekws_frontend_t *fe, size_t n_samples) {
    if (fe == NULL || fe->params == NULL) {
        return 0;
    }
    const ekws_frontend_params_t *p = fe->params;
    size_t total = fe->fill + n_samples;
    if (total < fe->fill || total < p->window_len) { /* overflow or not enough yet */
        return total < fe->fill ? (size_t)-1 : 0;
    }
    return (total - p->window_len) / p->hop_len + 1;
}

/* Twiddle W_N^k = (cos, sin)(2 pi k / N) * 2^15 for 0 <= k < N: table for k < N/2, negated above. */
static inline void twiddle(const ekws_frontend_params_t *p, uint32_t k, int32_t *c, int32_t *s) {
    const uint32_t half = p->fft_size / 2;
    if (k < half) {
        *c = p->twiddle_cos[k];
        *s = p->twiddle_sin[k];
    } else {
        *c = -p->twiddle_cos[k - half];
        *s = -p->twiddle_sin[k - half];
    }
}

/* a * conj-twiddle, rounded: ((a_re c + a_im s + 2^14) >> 15, (a_im c - a_re s + 2^14) >> 15).
 * |a| < 2^15.5 + 8 (modulus) and |W| <= 2^15 + 1, so each sum is < 2^30.6 in magnitude.
 * W^0 = (2^15, 0) gives a back exactly. */
static inline void rotate(int32_t *re, int32_t *im, int32_t c, int32_t s) {
    const int32_t r = *re;
    const int32_t i = *im;
    *re = (r * c + i * s + (1 << 14)) >> 15;
    *im = (i * c - r * s + (1 << 14)) >> 15;
}

/* One radix-4 butterfly on r[0], r[q], r[2q], r[3q] (and im alike), inputs 1..3 already rotated
 * into t1..t3: y_k = sum_m t_m (-i)^(m k), stored as (y_k + bias) >> sh. */
static inline void butterfly4(int32_t *r, int32_t *i, uint32_t q, int32_t t1r, int32_t t1i, int32_t t2r,
                              int32_t t2i, int32_t t3r, int32_t t3i, int32_t bias, int32_t sh) {
    const int32_t s02r = r[0] + bias + t2r, s02i = i[0] + bias + t2i;
    const int32_t d02r = r[0] + bias - t2r, d02i = i[0] + bias - t2i;
    const int32_t s13r = t1r + t3r, s13i = t1i + t3i;
    const int32_t d13r = t1r - t3r, d13i = t1i - t3i;
    r[0] = (s02r + s13r) >> sh;
    i[0] = (s02i + s13i) >> sh;
    r[q] = (d02r + d13i) >> sh; /* y1 = d02 - i d13 */
    i[q] = (d02i - d13r) >> sh;
    r[2 * q] = (s02r - s13r) >> sh;
    i[2 * q] = (s02i - s13i) >> sh;
    r[3 * q] = (d02r - d13i) >> sh; /* y3 = d02 + i d13 */
    i[3 * q] = (d02i + d13r) >> sh;
}

/* In-place mixed-radix decimation-in-time FFT of nc = N/2 complex values in digit-reversed order
 * (see edgekws/features/integer.py, step 4): an optional radix-2 first stage, then radix-4 stages
 * that scale by 1/4 each (rounded), except the last, which leaves Y = DFT / (nc / 4). */
static void fft_packed(const ekws_frontend_params_t *p, int32_t *re, int32_t *im) {
    const uint32_t n = p->fft_size;
    const uint32_t nc = n / 2;
    uint32_t q = 1;
    if ((p->log2_fft - 1u) % 2u == 1u) { /* log2(nc) odd: one radix-2 stage first (twiddle 1) */
        for (uint32_t i = 0; i < nc; i += 2) {
            const int32_t ar = re[i] + 1;
            const int32_t ai = im[i] + 1;
            re[i] = (ar + re[i + 1]) >> 1;
            im[i] = (ai + im[i + 1]) >> 1;
            re[i + 1] = (ar - re[i + 1]) >> 1;
            im[i + 1] = (ai - im[i + 1]) >> 1;
        }
        q = 2;
    } else { /* radix-4 first stage: every twiddle is W^0, nothing to rotate */
        for (uint32_t g = 0; g < nc; g += 4) {
            butterfly4(re + g, im + g, 1, re[g + 1], im[g + 1], re[g + 2], im[g + 2], re[g + 3], im[g + 3], 2, 2);
        }
        q = 4;
    }
    for (; q < nc; q *= 4) {
        const int last = 4 * q == nc;
        const int32_t bias = last ? 0 : 2; /* rounding of the >> 2 */
        const int32_t sh = last ? 0 : 2;
        const uint32_t kstep = n / (4 * q); /* W_{4q}^j = W_N^(j kstep) */
        for (uint32_t j = 0; j < q; j++) {
            int32_t c1, s1, c2, s2, c3, s3;
            twiddle(p, j * kstep, &c1, &s1);
            twiddle(p, 2 * j * kstep, &c2, &s2);
            twiddle(p, 3 * j * kstep, &c3, &s3);
            for (uint32_t g = j; g < nc; g += 4 * q) {
                int32_t t1r = re[g + q], t1i = im[g + q];
                int32_t t2r = re[g + 2 * q], t2i = im[g + 2 * q];
                int32_t t3r = re[g + 3 * q], t3i = im[g + 3 * q];
                rotate(&t1r, &t1i, c1, s1);
                rotate(&t2r, &t2i, c2, s2);
                rotate(&t3r, &t3i, c3, s3);
                butterfly4(re + g, im + g, q, t1r, t1i, t2r, t2i, t3r, t3i, bias, sh);
            }
        }
    }
}

/* Steps 5-6: the real spectrum X = DFT_N(w) / N from Y (even/odd split), and its power per bin
 * P[k] < 2^31 for k = 0..nc, written to re[k] (re has nc + 1 entries). All int32: |A| < 2^18.6,
 * |B'| < 2^15.6 + 1, so |c B'_im - s B'_re| <= |W| |B'| < 2^30.6 (Cauchy-Schwarz). */
static void power_spectrum(const ekws_frontend_params_t *p, int32_t *re, int32_t *im) {
    const uint32_t nc = p->fft_size / 2;
    for (uint32_t k = 0; k <= nc / 2; k++) {
        const uint32_t km = (nc - k) & (nc - 1);
        const int32_t ar = re[k] + re[km] + 8, ai = im[k] - im[km] + 8; /* + 8: rounding of >> 4 */
        const int32_t br = (re[k] - re[km] + 4) >> 3, bi = (im[k] + im[km] + 4) >> 3;
        const int32_t c = p->twiddle_cos[k], s = p->twiddle_sin[k];
        const int32_t ur = (c * bi - s * br + (1 << 11)) >> 12; /* U = -i W B' / 2^12 */
        const int32_t ui = (-(c * br + s * bi) + (1 << 11)) >> 12;
        const int32_t xr = (ar + ur) >> 4, xi = (ai + ui) >> 4;
        const int32_t yr = (ar - ur) >> 4, yi = (ui - ai + 16) >> 4; /* X[nc - k], conjugated */
        re[k] = xr * xr + xi * xi;
        re[nc - k] = yr * yr + yi * yi;
    }
}

ekws_status_t ekws_frontend_compute_frame(ekws_frontend_t *fe, const int16_t *frame, int8_t *out) {
    if (fe == NULL || frame == NULL || out == NULL) {
        return EKWS_ERR_NULL;
    }
    const ekws_frontend_params_t *p = fe->params;
    if (p == NULL) {
        return EKWS_ERR_STATE;
    }
    int32_t *re = fe->re;
    int32_t *im = fe->im;
    int16_t *win = fe->win;

    /* Window (Q15, rounded; fits int16), tracking the peak for block normalization. */
    int32_t peak = 0;
    for (uint32_t i = 0; i < p->window_len; i++) {
        const int32_t w = ((int32_t)frame[i] * p->window[i] + (1 << 14)) >> 15;
        win[i] = (int16_t)w;
        const int32_t mag = w < 0 ? -w : w;
        if (mag > peak) {
            peak = mag;
        }
    }
    /* Shift the frame up to use the FFT's full 16-bit range; undone in the log domain. */
    int32_t shift = 0;
    if (peak > 0) {
        const int32_t e = floor_log2_u64((uint64_t)peak);
        shift = e < 14 ? 14 - e : 0;
    }
    const int32_t scale = (int32_t)1 << shift; /* multiply: left-shifting negatives is UB */
    /* Gather into packed complex digit-reversed order, zero-padding past the window. */
    const uint32_t nc = p->fft_size / 2;
    for (uint32_t i = 0; i < nc; i++) {
        const uint32_t sr = p->bitrev[2 * i];
        const uint32_t si = p->bitrev[2 * i + 1];
        re[i] = sr < p->window_len ? win[sr] * scale : 0;
        im[i] = si < p->window_len ? win[si] * scale : 0;
    }
    fft_packed(p, re, im);
    power_spectrum(p, re, im);

    for (uint32_t b = 0; b < p->num_bands; b++) {
        const uint32_t k0 = p->band_start[b];
        const uint16_t *w = p->band_weights + p->band_offset[b];
        uint64_t energy = 0;
        for (uint32_t k = 0; k < p->band_len[b]; k++) {
            energy += (uint64_t)(uint32_t)re[k0 + k] * w[k];
        }
        if (energy == 0) {
            out[b] = -128;
            continue;
        }
        /* Fixed-point log2 in Q10: integer part from the leading one, fraction from a table
         * indexed by the next 8 bits; minus the 2*shift octaves of the normalization. */
        const int32_t e = floor_log2_u64(energy);
        const int32_t sh = e - EKWS_LOG_INDEX_BITS;
        const uint64_t mant = sh >= 0 ? energy >> sh : energy << -sh;
        const int32_t frac = p->log2_frac[mant & ((1u << EKWS_LOG_INDEX_BITS) - 1u)];
        const int32_t log2q = (e - 2 * shift) * (1 << EKWS_LOG_Q) + frac;
        const int64_t acc = (int64_t)log2q * p->out_mult - p->out_offset +
                            ((int64_t)1 << (p->out_shift - 1));
        int64_t q = (acc >> p->out_shift) - 128;
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        out[b] = (int8_t)q;
    }
    return EKWS_OK;
}

ekws_status_t ekws_frontend_push(ekws_frontend_t *fe, const int16_t *samples, size_t n_samples,
                                 int8_t *out, size_t out_capacity, size_t *n_frames) {
    if (fe == NULL || n_frames == NULL) {
        return EKWS_ERR_NULL;
    }
    *n_frames = 0;
    const ekws_frontend_params_t *p = fe->params;
    if (p == NULL) {
        return EKWS_ERR_STATE;
    }
    if (n_samples == 0) {
        return EKWS_OK;
    }
    if (samples == NULL) {
        return EKWS_ERR_NULL;
    }
    const size_t needed = ekws_frontend_frames_for(fe, n_samples);
    if (needed > out_capacity) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    if (needed > 0 && out == NULL) {
        return EKWS_ERR_NULL;
    }
    size_t produced = 0;
    for (size_t i = 0; i < n_samples; i++) {
        int16_t y = samples[i];
        if (p->preemph_q15 != 0) {
            /* (32768 x[n] - a x[n-1]) >> 16 stays within int16 for any inputs */
            y = (int16_t)(((int32_t)samples[i] * 32768 - (int32_t)fe->prev * p->preemph_q15) >> 16);
        }
        fe->prev = samples[i];
        fe->buf[fe->fill++] = y;
        if (fe->fill == p->window_len) {
            ekws_frontend_compute_frame(fe, fe->buf, out + produced * p->num_bands);
            produced++;
            const uint32_t keep = p->window_len - p->hop_len;
            memmove(fe->buf, fe->buf + p->hop_len, keep * sizeof fe->buf[0]);
            fe->fill = keep;
        }
    }
    *n_frames = produced;
    return EKWS_OK;
}
