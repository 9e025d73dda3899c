/* ekws/model.h: the int8 model runner. A model is one read-only blob written by
 * `edgekws export MODEL --c DIR` (edgekws/export/c.py); the runner validates it (magic, format
 * version, sizes, CRC32, every layer's shapes and offsets) before use and runs it over a
 * caller-provided arena. No allocation, no writes to the blob.
 *
 * Blob layout, little-endian, 4-byte aligned (all fields uint32/int32):
 *   header  16 words: magic "EKWM", version, total_size, crc32, header_size (64), num_layers,
 *           layer_size (96), arena_size, input_h, input_w, input_c, input_zp, num_classes,
 *           output_zp, output_scale (float32 bits), input_scale (float32 bits)
 *   layers  num_layers records of 24 words: op, in_h, in_w, in_c, out_h, out_w, out_c, kh, kw,
 *           stride_h, stride_w, pad_top, pad_left, input_zp, output_zp, act_min, act_max,
 *           weight_off, bias_off, mult_off, shift_off, tap, 2 reserved (0)
 *   data    arrays at 4-byte aligned offsets from the blob start (0 = absent)
 * crc32 is zlib's CRC-32 of the whole blob with the crc32 field read as 0.
 *
 * Layer limits (ekws_model_check refuses a blob outside them): dims, kernel and stride in
 * 1..65535, padding <= 65535; in_h*in_w*in_c and out_h*out_w*out_c <= 2^24; kh*kw*in_c of every
 * conv, depthwise and pool layer, and in_h*in_w*in_c of a dense layer, <= 32768 (the values a conv
 * output sums; the int32 accumulator is exact up to 65,793, kernels.h; a depthwise or pool output
 * sums only kh*kw of them, but the check is the same for every op); every window of a conv, depthwise or pool layer
 * starts inside the padded input: (out_h - 1) * stride_h < in_h + pad_top, the same for w (true
 * of every 'same' or 'valid' layer); every array inside the data section.
 *
 * Ops: conv, depthwise, dense, avgpool, and tappool for a multi-layer embedding (a global pool
 * with taps). A tappool is a side op placed right after the main layer whose output it reads: it
 * global-average-pools that (in_h, in_w, in_c) map into in_c int8 values (out 1x1xin_c,
 * kh = in_h, kw = in_w, one multiplier/shift, no weights) kept in the arena's tap region, and
 * leaves the main chain alone (the next main layer reads the same tensor). The one tapped avgpool
 * (global, after every tappool) outputs its own in_c pooled channels followed by the whole tap
 * region: out_c = in_c + tap bytes. The record's `tap` word:
 *   tappool  byte offset of its vector in the tap region (the vectors lie back to back from 0,
 *            in layer order)
 *   avgpool  tap bytes it appends (0: a plain pool, out_c = in_c)
 *   others   0
 * Blobs without tappools are unchanged by this, hence still format version 1.
 *
 * Arena (caller-provided, 4-byte aligned), as ekws_model_arena_size reports and the header's
 * arena_size states: [activations A][tap region T][scratch S].
 *   A  max over MAIN layers (tappools excluded) of input + output bytes, each rounded up to 4;
 *      the first main layer reads the caller's input and the last writes the caller's logits
 *      (0 bytes each); main outputs alternate between the end and the start of A
 *   T  the tapped pool's tap bytes rounded up to 4 (0 without taps)
 *   S  the largest layer scratch: kh*kw*in_c int16 (conv), in_elems int16 (dense), in_c int32
 *      (depthwise, avgpool, tappool)
 */
#ifndef EKWS_MODEL_H
#define EKWS_MODEL_H

#include "ekws/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EKWS_MODEL_MAGIC 0x4D574B45u /* "EKWM" */
#define EKWS_MODEL_VERSION 1u
#define EKWS_MODEL_HEADER_SIZE 64u
#define EKWS_MODEL_LAYER_SIZE 96u

typedef enum {
    EKWS_OP_CONV = 1,
    EKWS_OP_DEPTHWISE = 2,
    EKWS_OP_DENSE = 3,
    EKWS_OP_AVGPOOL = 4,
    EKWS_OP_TAPPOOL = 5 /* a tap of a global pool's multi-layer embedding (see above) */
} ekws_op_t;

/* A validated model bound to its arena. Fill with ekws_model_init; treat as read-only. */
typedef struct {
    const uint8_t *blob;
    uint32_t num_layers;
    uint32_t input_size;  /* int8 values per inference (input_h * input_w * input_c) */
    uint32_t num_classes; /* int8 logits per inference */
    int32_t output_zp;
    float output_scale;   /* real logit = output_scale * (q - output_zp) */
    uint8_t *arena;
    uint32_t act_bytes;   /* activation region of the arena; the tap region follows it */
    uint32_t tap_bytes;   /* tap region (0 without taps); scratch follows it */
    uint32_t arena_size;  /* bytes required (<= the caller's arena) */
} ekws_model_t;

/* zlib's CRC-32 (reflected, polynomial 0xEDB88320) of n bytes, continuing from crc (start with 0). */
uint32_t ekws_crc32(uint32_t crc, const void *data, size_t n);

/* NULL when blob[0..blob_size) is a valid model, else a static reason ("bad magic", ...). */
const char *ekws_model_check(const void *blob, size_t blob_size);

/* Arena bytes a valid blob needs (0 if the blob is invalid). */
size_t ekws_model_arena_size(const void *blob, size_t blob_size);

/* Validate the blob (4-byte aligned) and bind it to arena[0..arena_size) (4-byte aligned).
 * EKWS_ERR_CONFIG: invalid blob; EKWS_ERR_BUFFER_TOO_SMALL: arena too small. */
ekws_status_t ekws_model_init(ekws_model_t *model, const void *blob, size_t blob_size, void *arena,
                              size_t arena_size);

/* One inference: input int8 (input_size values, NHWC) -> logits int8 (num_classes values). */
ekws_status_t ekws_model_invoke(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                int8_t *logits, size_t logits_len);

/* Rate search's speaking rates, Q8 (256 = as spoken), in search order: 1, 0.9, 1/0.9, 0.8, 1.25. */
#define EKWS_SEARCH_RATES_Q8 {256, 230, 284, 205, 320}
#define EKWS_MAX_RATE_SEARCH 2u

/* Voice search (edgekws.evaluate.VoiceSearch): run the model on `input` read along time at rate r
 * (input_h rows: row t reads position c + (t - c) * r / 256, c = (input_h - 1) / 2, clamped to the
 * edge rows, linear between rows with 9-bit weights rounded half up: edgekws.evaluate.warp_time) for
 * the first 2 * rate_search + 1 rates of EKWS_SEARCH_RATES_Q8, and at each rate moved along its band
 * axis (input_w, with input_c 1: band b reads band b + s, the edge band repeated) for s = 0, -1, 1, ...,
 * -max_shift, max_shift; keep in `logits` those where the model is surest of its answer: the largest
 * softmax probability of any class (the smallest sum over classes of exp(output_scale * (logit -
 * best logit)), float32, ekws_expf), the first in that order on ties. scratch: input_size +
 * num_classes bytes (2 * input_size + num_classes with rate_search), overlapping neither input nor
 * logits. *shift and *rate_q8 (each may be NULL) receive the chosen s and r. (2 * rate_search + 1) * (2 * max_shift + 1) inferences.
 * EKWS_ERR_ARG: input_len, input_c != 1, max_shift >= input_w or rate_search > EKWS_MAX_RATE_SEARCH. */
ekws_status_t ekws_model_invoke_search(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                       uint32_t max_shift, uint32_t rate_search, int8_t *scratch,
                                       size_t scratch_len, int8_t *logits, size_t logits_len, int32_t *shift,
                                       int32_t *rate_q8);

/* `in` (rows x bands int8) moved along its bands by s into `out` (not overlapping): band b reads
 * band b + s, the edge band repeated past the ends (s > 0 hears a voice lower; edgekws.evaluate.shift_bands). */
void ekws_shift_bands_s8(const int8_t *in, int8_t *out, uint32_t rows, uint32_t bands, int32_t s);

/* Voice calibration (edgekws.evaluate.calibrate_shift, `edgekws calibrate`): the band shift at which
 * the model is surest of its answers to n_windows recordings of one voice (windows: n_windows x
 * input_size int8, any words), to apply to everything that voice says afterwards
 * (ekws_pipeline_set_voice_shift): for s = 0, -1, 1, ..., -max_shift, max_shift, the float32 sum over
 * the windows, in order, of the largest class probability 1 / spread (spread as
 * ekws_model_invoke_search computes it); the largest sum wins, the first in that order on ties.
 * *shift receives it, *score (may be NULL) its mean probability. scratch: input_size + num_classes
 * bytes. (2 * max_shift + 1) * n_windows inferences. EKWS_ERR_ARG: n_windows 0, input_c != 1 or
 * max_shift >= input_w. */
ekws_status_t ekws_model_calibrate_shift(const ekws_model_t *model, const int8_t *windows, size_t n_windows,
                                         uint32_t max_shift, int8_t *scratch, size_t scratch_len, int32_t *shift,
                                         float *score);

/* exp(x) for float32 x <= 0 (larger x is taken as 0; below -87, 0), the same bits as
 * edgekws.retrain.headmath.expf (compile with -ffp-contract=off; FLT_EVAL_METHOD 0): the head
 * trainer's softmax (ekws_head_expf) and voice search use it. */
float ekws_expf(float x);

/* Voice normalization (edgekws/voicenorm.py): each voice's average embedding moved onto the training
 * voices' average before the classifier, the last (dense) layer. The embedding is that layer's
 * input: ekws_model_embedding_size values (0 for a model whose last layer reads the caller's input).
 *
 * ekws_model_embed: run every layer but the last and copy the embedding (int8) to `embedding`.
 * ekws_voice_offset: a voice's offset from n of its embeddings (n x size int8, n in 1..2^24) and the
 *   reference (size float32, the training clips' average embedding in int8 units, |r| < 1e6):
 *   offset[j] = floor(sum_i e[i][j] / n - reference[j] + 1/2), in double (the same bits as
 *   edgekws.voicenorm.offset_of with a float32 reference).
 * ekws_model_invoke_voice: ekws_model_invoke with the embedding moved by `offset` first
 *   (embedding_size values): e[k] = clamp(e[k] - offset[k], -128, 127) (edgekws.voicenorm.normalize);
 *   for the dense classifier the same as a bias of b - W * offset, up to the clamp.
 * EKWS_ERR_ARG: a model without an embedding of its own, offset_len != embedding size, n or size 0,
 * a reference value not finite or too large. */
uint32_t ekws_model_embedding_size(const ekws_model_t *model);
ekws_status_t ekws_model_embed(const ekws_model_t *model, const int8_t *input, size_t input_len, int8_t *embedding,
                               size_t embedding_len);
ekws_status_t ekws_voice_offset(const int8_t *embeddings, size_t n, size_t size, const float *reference,
                                int32_t *offset);
ekws_status_t ekws_model_invoke_voice(const ekws_model_t *model, const int8_t *input, size_t input_len,
                                      const int32_t *offset, size_t offset_len, int8_t *logits, size_t logits_len);

/* Index of the largest logit (first on ties). */
uint32_t ekws_argmax_s8(const int8_t *values, size_t n);

/* sizeof(ekws_model_t), for bindings that allocate it (ctypes). */
size_t ekws_model_struct_size(void);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_MODEL_H */
