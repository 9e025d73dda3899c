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
    if (p->fft_size < 4 || p->fft_size > EKWS_FRONTEND_MAX_FFT || p->log2_fft >= 31 ||
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

/* In-place radix-2 decimation-in-time FFT, input already in bit-reversed order.
 * re, im: [N] int32, |values| <= 32767 on entry. Each stage halves (rounding), so on exit
 * (re, im) = DFT / N; moduli stay < 32790, so every product sum fits int32. */
static void fft_q15(const ekws_frontend_params_t *p, int32_t *re, int32_t *im) {
    const uint32_t n = p->fft_size;
    for (uint32_t half = 1; half < n; half <<= 1) {
        const uint32_t step = n / (2 * half); /* twiddle index stride */
        for (uint32_t start = 0; start < n; start += 2 * half) {
            for (uint32_t j = 0; j < half; j++) {
                const int32_t c = p->twiddle_cos[j * step];
                const int32_t s = p->twiddle_sin[j * step];
                const uint32_t ia = start + j;
                const uint32_t ib = ia + half;
                /* t = b * exp(-2 pi i j / (2 half)), rounded to nearest */
                const int32_t tr = (re[ib] * c + im[ib] * s + (1 << 14)) >> 15;
                const int32_t ti = (im[ib] * c - re[ib] * s + (1 << 14)) >> 15;
                const int32_t ar = re[ia];
                const int32_t ai = im[ia];
                re[ia] = (ar + tr + 1) >> 1;
                im[ia] = (ai + ti + 1) >> 1;
                re[ib] = (ar - tr + 1) >> 1;
                im[ib] = (ai - ti + 1) >> 1;
            }
        }
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

    /* Window (Q15, rounded) into im[] as scratch, tracking the peak for block normalization. */
    int32_t peak = 0;
    for (uint32_t i = 0; i < p->window_len; i++) {
        const int32_t w = ((int32_t)frame[i] * p->window[i] + (1 << 14)) >> 15;
        im[i] = w;
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
    for (uint32_t i = 0; i < p->window_len; i++) {
        re[p->bitrev[i]] = im[i] * scale; /* bitrev is an involution */
    }
    for (uint32_t i = p->window_len; i < p->fft_size; i++) {
        re[p->bitrev[i]] = 0;
    }
    memset(im, 0, p->fft_size * sizeof im[0]);
    fft_q15(p, re, im);

    /* Power per bin, < 2^31 (moduli < 32790), stored back into re[]. */
    const uint32_t num_bins = p->fft_size / 2 + 1;
    for (uint32_t k = 0; k < num_bins; k++) {
        re[k] = (int32_t)((int64_t)re[k] * re[k] + (int64_t)im[k] * im[k]);
    }

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
