/* ekws/frontend.h: integer FFT framing frontend, int16 PCM -> int8 mel log-energy frames.
 *
 * Bit-identical to edgekws.features (Python), which documents the definition step by step in
 * edgekws/features/integer.py. Tables come from the generated ekws_frontend_tables.h (default
 * config) or from Python through ctypes; they are never typed by hand.
 *
 * Usage (no allocation; the caller owns the state):
 *     ekws_frontend_t fe;
 *     ekws_frontend_init(&fe, &ekws_frontend_default_params);
 *     ekws_frontend_push(&fe, pcm, n, frames, capacity, &n_frames);  -- frames: n_frames x num_bands int8
 */
#ifndef EKWS_FRONTEND_H
#define EKWS_FRONTEND_H

#include "ekws/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest FFT the state struct has room for; override with -DEKWS_FRONTEND_MAX_FFT=1024. */
#ifndef EKWS_FRONTEND_MAX_FFT
#define EKWS_FRONTEND_MAX_FFT 512
#endif

/* Derived integer parameters and tables (see FrontendTables in edgekws/features/config.py). */
typedef struct {
    uint32_t window_len;          /* samples per frame (<= fft_size) */
    uint32_t hop_len;             /* samples between frame starts (1..window_len) */
    uint32_t fft_size;            /* power of two, <= EKWS_FRONTEND_MAX_FFT */
    uint32_t log2_fft;            /* log2(fft_size) */
    uint32_t num_bands;           /* output values per frame */
    int32_t preemph_q15;          /* pre-emphasis coefficient, 0 = off */
    int32_t out_mult;             /* int8 mapping: q = ((L*mult - offset + 2^(shift-1)) >> shift) - 128 */
    int32_t out_offset;
    int32_t out_shift;
    const int16_t *window;        /* [window_len] Q15 Hann */
    const int32_t *twiddle_cos;   /* [fft_size/2] cos(2 pi k / N) * 2^15 (k >= N/2: negated) */
    const int32_t *twiddle_sin;   /* [fft_size/2] sin(2 pi k / N) * 2^15 */
    const uint16_t *bitrev;       /* [fft_size] FFT input order: packed complex slot i/2 (re if i
                                   * even, im if odd) takes windowed sample bitrev[i] (zero if
                                   * >= window_len); mixed-radix digit reversal, see config.py */
    const uint16_t *band_start;   /* [num_bands] first FFT bin of each band */
    const uint16_t *band_len;     /* [num_bands] bins per band */
    const uint16_t *band_offset;  /* [num_bands] index of the band's first weight */
    const uint16_t *band_weights; /* [sum band_len] Q15 mel weights */
    const uint16_t *log2_frac;    /* [256] Q10 log2(1 + (i + 0.5) / 256) */
} ekws_frontend_params_t;

/* Streaming state. Treat as opaque; sized at compile time, owned by the caller. */
typedef struct {
    const ekws_frontend_params_t *params;
    uint32_t fill;                        /* pending samples in buf (< window_len) */
    int16_t prev;                         /* last raw input sample (pre-emphasis history) */
    int16_t buf[EKWS_FRONTEND_MAX_FFT];   /* pending pre-emphasized samples */
    int16_t win[EKWS_FRONTEND_MAX_FFT];   /* windowed frame scratch */
    int32_t re[EKWS_FRONTEND_MAX_FFT / 2 + 1]; /* packed complex FFT scratch, then power per bin */
    int32_t im[EKWS_FRONTEND_MAX_FFT / 2];
} ekws_frontend_t;

/* Validate params and reset the state. The params (and tables) must outlive fe. */
ekws_status_t ekws_frontend_init(ekws_frontend_t *fe, const ekws_frontend_params_t *params);

/* Start a new stream: drop pending samples and pre-emphasis history. */
void ekws_frontend_reset(ekws_frontend_t *fe);

/* Frames that pushing n_samples more samples would complete (0 if fe is NULL). */
size_t ekws_frontend_frames_for(const ekws_frontend_t *fe, size_t n_samples);

/* Append n_samples int16 samples; write every completed frame to out (row-major
 * [n_frames][num_bands] int8) and its count to *n_frames. out_capacity is in frames; if it is
 * smaller than ekws_frontend_frames_for(fe, n_samples), nothing is consumed and
 * EKWS_ERR_BUFFER_TOO_SMALL is returned. samples/out may be NULL only when n_samples == 0. */
ekws_status_t ekws_frontend_push(ekws_frontend_t *fe, const int16_t *samples, size_t n_samples,
                                 int8_t *out, size_t out_capacity, size_t *n_frames);

/* One frame: window_len pre-emphasized samples -> num_bands int8 values (uses fe's scratch,
 * leaves the streaming buffer untouched). */
ekws_status_t ekws_frontend_compute_frame(ekws_frontend_t *fe, const int16_t *frame, int8_t *out);

/* Bytes of ekws_frontend_t in this build (lets ctypes callers allocate the state). */
size_t ekws_frontend_state_size(void);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_FRONTEND_H */
