/* ekws/pipeline.h: the streaming chain in one object: int16 PCM -> frontend -> ring buffer of
 * feature frames -> model every hop_every frames -> detector. Twin of edgekws/stream/pipeline.py.
 *
 * The ring holds the model's input window (frames_per_window x num_bands int8, 49 x 40 by default)
 * and starts full of -128, the frontend's value for digital silence, so the first model step comes
 * after hop_every frames. Each new frame overwrites the oldest; a model step copies the ring into
 * time order (old frames are never recomputed). No allocation: the caller owns the struct, the
 * model (bound to its arena) and the detector tables.
 *
 *     ekws_pipeline_t pipe;
 *     ekws_pipeline_init(&pipe, &ekws_frontend_default_params, &model, &detector_config, 4);
 *     ekws_pipeline_push(&pipe, pcm, n, detections, capacity, &n_detections);
 */
#ifndef EKWS_PIPELINE_H
#define EKWS_PIPELINE_H

#include "ekws/detector.h"
#include "ekws/frontend.h"
#include "ekws/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest model input (frames x bands int8) the struct has room for. */
#ifndef EKWS_PIPELINE_MAX_INPUT
#define EKWS_PIPELINE_MAX_INPUT 2048
#endif

/* Most values per frame (frontend num_bands) the pipeline takes: ekws_pipeline_push keeps one
 * frame on its stack. ekws_pipeline_init refuses more with EKWS_ERR_CONFIG. */
#ifndef EKWS_PIPELINE_MAX_BANDS
#define EKWS_PIPELINE_MAX_BANDS 128
#endif

typedef struct {
    int32_t label;     /* class index */
    int32_t score_q15; /* smoothed posterior */
    uint32_t frame;    /* index of the newest frame the model saw; the detection time is
                        * (frame * hop_len + window_len) / sample_rate seconds */
} ekws_pipeline_detection_t;

/* Pipeline state. Treat as opaque; owned by the caller. */
typedef struct {
    ekws_frontend_t fe;
    ekws_detector_t det;
    const ekws_model_t *model;
    uint32_t hop_every;          /* frames between model steps */
    uint32_t frames_per_window;  /* model input frames (49) */
    uint32_t num_bands;          /* values per frame (40) */
    uint32_t frames;             /* frames produced since init/reset (wraps at 2^32; only reported) */
    uint32_t oldest;             /* ring slot of the oldest frame */
    uint32_t since_step;         /* frames since the last model step, 0..hop_every-1 (steps do not
                                  * depend on `frames`, so its wrap cannot bring two steps closer) */
    int32_t voice_shift;         /* bands each frame moves by (ekws_pipeline_set_voice_shift; 0) */
    const int32_t *voice_offset; /* the embedding moves by it (ekws_pipeline_set_voice_offset; NULL) */
    int8_t ring[EKWS_PIPELINE_MAX_INPUT];
    int8_t input[EKWS_PIPELINE_MAX_INPUT];     /* the window in time order, for the model */
    int8_t logits[EKWS_DETECTOR_MAX_CLASSES];  /* of the last model step */
} ekws_pipeline_t;

/* Bind frontend params, a model initialized with ekws_model_init and a detector config
 * (num_classes must equal the model's). All must outlive pipe. The model input must be
 * frames x num_bands with frames * num_bands <= EKWS_PIPELINE_MAX_INPUT and
 * num_bands <= EKWS_PIPELINE_MAX_BANDS (else EKWS_ERR_CONFIG). A model step runs every
 * hop_every-th frame since init/reset. */
ekws_status_t ekws_pipeline_init(ekws_pipeline_t *pipe, const ekws_frontend_params_t *fe_params,
                                 const ekws_model_t *model, const ekws_detector_config_t *det_cfg,
                                 uint32_t hop_every);

/* Hear every frame from now on moved along its bands by `shift` (band b reads band b + shift, the
 * edge band repeated: ekws_shift_bands_s8): the voice calibration of ekws_model_calibrate_shift.
 * 0 (the default after init) hears frames as they are; reset keeps the setting. EKWS_ERR_ARG
 * unless |shift| < num_bands. */
ekws_status_t ekws_pipeline_set_voice_shift(ekws_pipeline_t *pipe, int32_t shift);

/* Move the model's embedding by `offset` (embedding_size int32 values, caller-owned, read at every
 * model step until changed) before its classifier: ekws_model_invoke_voice, the voice normalization
 * of edgekws calibrate --method norm (an offset from ekws_voice_offset). NULL (the default after init)
 * runs ekws_model_invoke; reset keeps the setting. EKWS_ERR_ARG unless offset_len equals
 * ekws_model_embedding_size (a model without an embedding of its own has none). */
ekws_status_t ekws_pipeline_set_voice_offset(ekws_pipeline_t *pipe, const int32_t *offset, size_t offset_len);

/* Start a new stream (frontend, ring, detector). */
void ekws_pipeline_reset(ekws_pipeline_t *pipe);

/* Detections that pushing n_samples more samples can produce at most (0 if pipe is NULL). */
size_t ekws_pipeline_max_detections(const ekws_pipeline_t *pipe, size_t n_samples);

/* Append n_samples samples; run the model on every completed step and write the detections to
 * out[0..*n_detections). If capacity < ekws_pipeline_max_detections(pipe, n_samples), nothing is
 * consumed and EKWS_ERR_BUFFER_TOO_SMALL is returned. out may be NULL when capacity is 0 and
 * n_samples is 0. */
ekws_status_t ekws_pipeline_push(ekws_pipeline_t *pipe, const int16_t *samples, size_t n_samples,
                                 ekws_pipeline_detection_t *out, size_t capacity, size_t *n_detections);

/* Bytes of ekws_pipeline_t in this build (for ctypes callers). */
size_t ekws_pipeline_state_size(void);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_PIPELINE_H */
