/* ekws/head.h: on-device last-layer retraining. The int8 backbone (layers 1-4 of the model, its
 * output the pooled EMBEDDING) stays frozen; a new dense head for a new label set is learned from
 * a few stored examples, re-quantized to int8 and persisted as a blob that is loaded at boot.
 * Bit-exact twin: edgekws/retrain/headmath.py (numpy); tests/golden/head_golden.h checks it.
 *
 * Flow:
 *   ekws_head_trainer_init(&tr, &cfg, workspace, ekws_head_workspace_size(C, E, N), emb_scale, emb_zp)
 *     (or ekws_head_trainer_init_split(&tr, &cfg, store, .., arena, .., ..): see Memory below)
 *   ekws_head_add_example(&tr, embedding, label)      x N   (embedding: the backbone's int8 output)
 *   ekws_head_imprint(&tr)                              standardize; normalized class means as weights
 *     (or ekws_head_standardize(&tr): keep the rows given by ekws_head_set_weights, for the same labels)
 *   ekws_head_train_epoch(&tr, &loss)                   x epochs: float32 SGD, softmax cross-entropy
 *   ekws_head_quantize(&tr, blob, cap, 1, &size)        int8 (+ float32) head as a blob -> flash
 *   ekws_head_load(&head, blob, size)                   at boot; a damaged blob leaves `head` as it was
 *                                                       (a view of its blob's bytes: see Flash below)
 *   ekws_head_invoke_s8 / ekws_head_invoke_f32          embedding -> logits
 * Self-training (edgekws retrain --self-train F): the first head's int8 logits of unlabeled clips of the
 * examples' speakers -> ekws_head_self_train_pick -> the chosen clips join the examples with those
 * labels (ekws_head_add_example) -> a second trainer imprints and trains on all of them.
 *
 * Memory (caller-provided, 4-byte aligned, no allocation): for C classes, embedding size E and room
 * for N examples, ekws_head_workspace_size(C, E, N) = train + store:
 *   train = ekws_head_train_size(C, E) = 4 * (3*C*E + 4*C + 3*E)
 *                                 float32: weights, momentum, gradient; bias x3, logits/probabilities;
 *                                 one example, per-dimension mean and 1/std
 *   store = ekws_head_store_size(C, E, N) = 4 * C + align4(N*E) + align4(N) + align4(2*N)
 *                                 example count per class, int8 embeddings, labels, order (uint16)
 * e.g. 12 classes x 64 and 100 examples: 9,216 + 192 + 768 + 6,400 + 100 + 200 + 48 = 16,924 bytes.
 * The training memory is used only from the first ekws_head_set_weights / _imprint / _standardize /
 * _gradient on, until ekws_head_quantize has written the blob. ekws_head_trainer_init_split takes it
 * apart from the store, so it can overlay the model's arena, which is idle then: collect the
 * examples (the backbone runs in the arena), then set weights, imprint, train, quantize, and only
 * then run the model again. Retraining then needs only `store` beside the arena when the arena is
 * at least `train` bytes.
 * The head blob (ekws_head_blob_size) is 48 + align4(C*E) + 12*C [+ 4*C*E + 4*C with float32].
 *
 * Flash: a loaded ekws_head_t does not copy the blob, it points into it; the head stays usable only
 * while those bytes are unchanged. So never erase or write the slot of the head in use: keep two
 * blob slots (A/B), write the new blob to the idle one, ekws_head_load it (which checks its CRC),
 * and switch only when that succeeds; a write cut short by a reset then leaves the other slot's
 * head intact. At boot load the slot the application marked current, else the other one.
 *
 * Floating point: every float32 operation is done in a fixed order without fused multiply-add
 * (compile with -std=c99 or -ffp-contract=off; FLT_EVAL_METHOD must be 0), exp is ekws_head_expf
 * (a fixed polynomial, not libm), so the numpy twin reproduces the weights bit for bit.
 *
 * Blob layout, little-endian 32-bit words: magic "EKWH", version, total_size, crc32 (zlib CRC-32 of
 * the whole blob with this word read as 0), num_classes, embed_size, flags (bit 0: float32 weights
 * present), input_zp, input_scale (float32 bits), output_zp, output_scale (float32 bits), reserved;
 * then int8 weights [C][E] (padded to 4 bytes), int32 bias [C], int32 multiplier [C], int32 shift [C],
 * and with flag bit 0: float32 weights [C][E], float32 bias [C].
 */
#ifndef EKWS_HEAD_H
#define EKWS_HEAD_H

#include "ekws/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EKWS_HEAD_MAGIC 0x48574B45u /* "EKWH" */
#define EKWS_HEAD_VERSION 1u
#define EKWS_HEAD_HEADER_SIZE 48u
#define EKWS_HEAD_FLAG_FLOAT 1u
#define EKWS_HEAD_MAX_CLASSES 255u
#define EKWS_HEAD_MAX_EMBED 4096u
#define EKWS_HEAD_MAX_EXAMPLES 65535u

/* Hyper-parameters of the SGD (momentum, decoupled from nothing: d = grad/B + weight_decay*W). */
typedef struct {
    uint32_t num_classes;  /* C, 2..EKWS_HEAD_MAX_CLASSES */
    uint32_t embed_size;   /* E, 1..EKWS_HEAD_MAX_EMBED */
    uint32_t max_examples; /* N, room in the workspace */
    uint32_t batch;        /* examples per SGD step, >= 1 */
    uint32_t seed;         /* xorshift32 seed of the epoch shuffles (0 is replaced by 1) */
    float lr;              /* learning rate, > 0 and finite */
    float momentum;        /* in [0, 1) */
    float weight_decay;    /* L2 on the weights (not the bias), >= 0 and finite */
    float imprint_scale;   /* imprinted logit of a typical example of its class, > 0 and finite */
} ekws_head_config_t;

/* Trainer state: pointers into the caller's memory. Fill with ekws_head_trainer_init(_split). */
typedef struct {
    ekws_head_config_t cfg;
    float emb_scale;   /* real embedding = emb_scale * (q - emb_zp) */
    int32_t emb_zp;
    uint32_t num_examples;
    uint32_t rng;      /* xorshift32 state */
    uint32_t epochs;   /* epochs run so far */
    uint32_t standardized; /* set by imprint: weights live in the standardized space below */
    uint32_t train_ready;  /* the training memory (weight .. isd) is zeroed and in use */
    float *weight;     /* [C][E] */
    float *bias;       /* [C] */
    float *vel_w, *vel_b;   /* momentum */
    float *grad_w, *grad_b; /* gradient accumulators of the current batch */
    float *logits;     /* [C] scratch: logits, then probabilities */
    float *x;          /* [E] scratch: one dequantized embedding */
    float *mean;       /* [E] per-dimension mean of the examples (set by imprint) */
    float *isd;        /* [E] 1 / sqrt(variance + (emb_scale/2)^2) per dimension (set by imprint) */
    int8_t *emb;       /* [N][E] stored examples */
    uint8_t *labels;   /* [N] */
    uint16_t *order;   /* [N] example order of the current epoch */
    uint32_t *count;   /* [C] examples per class */
} ekws_head_trainer_t;

/* A loaded head: a read-only view of a validated blob (flash or RAM), not a copy: it is valid only
 * while the blob's bytes are (see Flash above). */
typedef struct {
    const uint8_t *blob;
    uint32_t num_classes, embed_size, flags;
    int32_t input_zp, output_zp;
    float input_scale, output_scale;
    const int8_t *weight;   /* [C][E] */
    const int32_t *bias, *multiplier, *shift;
    const float *fweight;   /* [C][E] or NULL */
    const float *fbias;     /* [C] or NULL */
} ekws_head_t;

/* Bytes of a trainer's memory (see the formulas above); 0 if the sizes exceed the limits. */
size_t ekws_head_workspace_size(uint32_t num_classes, uint32_t embed_size, uint32_t max_examples);
size_t ekws_head_train_size(uint32_t num_classes, uint32_t embed_size);
size_t ekws_head_store_size(uint32_t num_classes, uint32_t embed_size, uint32_t max_examples);

/* Bind a trainer to workspace[0..size) (4-byte aligned), zero weights, no examples.
 * EKWS_ERR_ARG: bad config or embedding quantization; EKWS_ERR_BUFFER_TOO_SMALL: workspace too small. */
ekws_status_t ekws_head_trainer_init(ekws_head_trainer_t *tr, const ekws_head_config_t *cfg, void *workspace,
                                     size_t size, float emb_scale, int32_t emb_zp);

/* The same with the training memory apart: store[0..ekws_head_store_size(C, E, N)) is zeroed and
 * keeps the examples (bytes past that, up to store_size, are left alone);
 * train[0..train_size) is left as it is until its first use (Memory, above), so it may be the
 * model's arena while examples are collected. EKWS_ERR_ARG also when the two regions overlap;
 * EKWS_ERR_STATE from ekws_head_folded / _logits_f32 / _quantize before the training memory is used. */
ekws_status_t ekws_head_trainer_init_split(ekws_head_trainer_t *tr, const ekws_head_config_t *cfg, void *store,
                                           size_t store_size, void *train, size_t train_size, float emb_scale,
                                           int32_t emb_zp);

/* Store one example: embedding int8 [E] (the backbone output), label < C.
 * EKWS_ERR_BUFFER_TOO_SMALL when max_examples are stored already. */
ekws_status_t ekws_head_add_example(ekws_head_trainer_t *tr, const int8_t *embedding, size_t len, uint32_t label);

/* Set the weights [C][E] and bias [C] in the embedding's own space (e.g. rows of the previous head
 * for classes without examples), before ekws_head_imprint / _standardize: those convert the rows to
 * the standardized space. EKWS_ERR_STATE once the trainer is standardized. */
ekws_status_t ekws_head_set_weights(ekws_head_trainer_t *tr, const float *weight, const float *bias);

/* Standardization + weight imprinting (once, after the examples are in). mu = mean of the examples,
 * isd = 1 / sqrt(variance + (emb_scale/2)^2) per dimension; training then sees x' = (x - mu) * isd
 * and the weights live in that space (rows set by ekws_head_set_weights are converted exactly as
 * b' = b + w . mu, w' = w / isd). For each class c with examples: m_c = sum of its x';
 * r = mean |x'|; w'_c = m_c * (imprint_scale / r / |m_c|), b'_c = 0. Other rows are kept.
 * ekws_head_folded gives the head in the embedding's own space. EKWS_ERR_STATE without examples
 * or when called twice. */
ekws_status_t ekws_head_imprint(ekws_head_trainer_t *tr);

/* Standardization only (instead of ekws_head_imprint, once): every row keeps what
 * ekws_head_set_weights gave it, converted to the standardized space. For new recordings of the
 * labels the head already knows (a user enrolling their own voice): training then starts from the
 * previous head instead of class means. EKWS_ERR_STATE without examples or when standardized. */
ekws_status_t ekws_head_standardize(ekws_head_trainer_t *tr);

/* Mean softmax cross-entropy of examples order[0..n) and its gradient, accumulated into
 * grad_w/grad_b (which this zeroes first); *loss = sum of the examples' losses (float32, in order). */
ekws_status_t ekws_head_gradient(ekws_head_trainer_t *tr, const uint16_t *order, uint32_t n, float *loss);

/* One SGD step on examples order[0..n): gradient, then with d = grad/n (+ weight_decay * W):
 * vel = momentum * vel + d; W -= lr * vel (bias alike, without weight decay). */
ekws_status_t ekws_head_step(ekws_head_trainer_t *tr, const uint16_t *order, uint32_t n, float *loss);

/* One epoch: shuffle the examples (Fisher-Yates, xorshift32), steps of cfg.batch examples in
 * that order; *mean_loss = mean example loss before each step. */
ekws_status_t ekws_head_train_epoch(ekws_head_trainer_t *tr, float *mean_loss);

/* The head in the embedding's space: w = w' * isd, b = b' - w . mu (a copy before imprinting). */
ekws_status_t ekws_head_folded(const ekws_head_trainer_t *tr, float *weight, float *bias);

/* Float32 logits [C] of one stored example with the training-space weights (tests). */
ekws_status_t ekws_head_logits_f32(ekws_head_trainer_t *tr, uint32_t example, float *logits);

/* Blob bytes of a head with C classes, embedding size E, with or without float32 weights. */
size_t ekws_head_blob_size(uint32_t num_classes, uint32_t embed_size, int with_float);

/* Re-quantize the folded weights (left in grad_w/grad_b) to an int8 head blob (out[0..cap)), *size = bytes:
 * s_w[c] = max|w_c| / 127; q = clamp(round_half_away(w / s_w), -127, 127); output range = the float
 * logits of the stored examples (0 included) over 255 steps; bias = round(b / (emb_scale * s_w));
 * multiplier = (emb_scale * s_w) / out_scale as M / 2^n (kernels.h). with_float keeps the float32
 * weights too (targets with an FPU). EKWS_ERR_ARG: a multiplier >= 2^30 (inconsistent scales), or
 * a folded weight or bias, a logit of a stored example or the output range that is not finite
 * (training diverged: lower lr); out is then left as it was. */
ekws_status_t ekws_head_quantize(ekws_head_trainer_t *tr, void *out, size_t cap, int with_float, size_t *size);

/* NULL if blob[0..size) is a valid head blob, else a static reason ("bad magic", "bad crc", ...). */
const char *ekws_head_check(const void *blob, size_t size);

/* Validate and bind a head blob (4-byte aligned). On any error *head is left unchanged, so the
 * previous head stays in use, provided its own blob's bytes are intact: *head points into them
 * (write a new blob to a second slot, never over the loaded one; Flash above). EKWS_ERR_CONFIG:
 * invalid blob. */
ekws_status_t ekws_head_load(ekws_head_t *head, const void *blob, size_t size);

/* int8 logits [C] of an int8 embedding [E]; scratch: ekws_fully_connected_s8_scratch_size(E) bytes. */
ekws_status_t ekws_head_invoke_s8(const ekws_head_t *head, const int8_t *embedding, size_t len, int8_t *logits,
                                  size_t logits_len, int16_t *scratch);

/* float32 logits [C] of an int8 embedding with the float32 weights (EKWS_ERR_STATE if the blob has none). */
ekws_status_t ekws_head_invoke_f32(const ekws_head_t *head, const int8_t *embedding, size_t len, float *logits,
                                   size_t logits_len);

/* Self-training's choice (edgekws retrain --self-train F; edgekws/retrain/core.py self_train_pick):
 * n unlabeled clips' int8 head logits (n x C, row-major; real = scale * (q - zero point)), each labelled
 * by its largest logit (the first on ties); of each label with m clips, the ceil(fraction_ppm x m / 10^6)
 * clips the head is surest of: the smallest s = sum over j ascending of ekws_head_expf(scale * (q_j -
 * q_max)) in float32 (the label's softmax probability is 1 / s), the earlier clip on ties. Writes their
 * indices, ascending, to idx[0 .. *count) (capacity n); work: n floats. Integer counts (the fraction in
 * parts per million, 1..10^6), so numpy's are the same. O(n^2) comparisons at most (n in the hundreds
 * on a device). idx and work may be NULL when n == 0. EKWS_ERR_ARG: NULL pointers, C outside
 * 2..EKWS_HEAD_MAX_CLASSES, n > EKWS_HEAD_MAX_EXAMPLES, scale not finite and > 0, fraction_ppm outside
 * 1..1000000. The chosen clips then join the examples (ekws_head_add_example) with their labels for a
 * second head. */
ekws_status_t ekws_head_self_train_pick(const int8_t *logits, uint32_t n, uint32_t num_classes, float scale,
                                        uint32_t fraction_ppm, float *work, uint32_t *idx, uint32_t *count);

/* exp(x) for x <= 0 (softmax of max-subtracted logits): Cody-Waite reduction and a degree-6
 * polynomial in float32, 0 below -87 (and for -inf), 1 for x > 0, NaN for NaN. Relative error < 4e-7. */
float ekws_head_expf(float x);

/* The real multiplier m (>= 0, float32) as M / 2^n, identical to edgekws.quant.quantize_multiplier
 * of the same value. EKWS_ERR_ARG if m >= 2^30 or is not finite. */
ekws_status_t ekws_head_quantize_multiplier(float m, int32_t *multiplier, int32_t *shift);

/* sizeof(ekws_head_trainer_t) and sizeof(ekws_head_t), for bindings that allocate them (ctypes). */
size_t ekws_head_trainer_struct_size(void);
size_t ekws_head_struct_size(void);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_HEAD_H */
