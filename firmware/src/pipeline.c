/* pipeline.c: frontend -> ring buffer of frames -> model every hop_every frames -> detector
 * (see ekws/pipeline.h; twin of edgekws/stream/pipeline.py). */
#include "ekws/pipeline.h"

#include <string.h>

size_t ekws_pipeline_state_size(void) { return sizeof(ekws_pipeline_t); }

void ekws_pipeline_reset(ekws_pipeline_t *pipe) {
    if (!pipe) {
        return;
    }
    ekws_frontend_reset(&pipe->fe);
    ekws_detector_reset(&pipe->det);
    pipe->frames = 0;
    pipe->oldest = 0;
    pipe->since_step = 0;
    memset(pipe->ring, -128, sizeof pipe->ring); /* digital silence */
    memset(pipe->logits, 0, sizeof pipe->logits);
}

ekws_status_t ekws_pipeline_init(ekws_pipeline_t *pipe, const ekws_frontend_params_t *fe_params,
                                 const ekws_model_t *model, const ekws_detector_config_t *det_cfg,
                                 uint32_t hop_every) {
    if (!pipe || !fe_params || !model || !det_cfg) {
        return EKWS_ERR_NULL;
    }
    memset(pipe, 0, sizeof *pipe);
    if (!model->blob) {
        return EKWS_ERR_STATE;
    }
    ekws_status_t st = ekws_frontend_init(&pipe->fe, fe_params);
    if (st != EKWS_OK) {
        return st;
    }
    st = ekws_detector_init(&pipe->det, det_cfg);
    if (st != EKWS_OK) {
        return st;
    }
    const uint32_t bands = fe_params->num_bands;
    if (hop_every < 1 || det_cfg->num_classes != model->num_classes || bands > EKWS_PIPELINE_MAX_BANDS ||
        model->input_size % bands != 0 || model->input_size > EKWS_PIPELINE_MAX_INPUT) {
        return EKWS_ERR_CONFIG;
    }
    pipe->model = model;
    pipe->hop_every = hop_every;
    pipe->num_bands = bands;
    pipe->frames_per_window = model->input_size / bands;
    pipe->voice_shift = 0;
    pipe->voice_offset = NULL;
    ekws_pipeline_reset(pipe);
    return EKWS_OK;
}

ekws_status_t ekws_pipeline_set_voice_shift(ekws_pipeline_t *pipe, int32_t shift) {
    if (!pipe) {
        return EKWS_ERR_NULL;
    }
    if (!pipe->model) {
        return EKWS_ERR_STATE;
    }
    if (shift <= -(int32_t)pipe->num_bands || shift >= (int32_t)pipe->num_bands) {
        return EKWS_ERR_ARG;
    }
    pipe->voice_shift = shift;
    return EKWS_OK;
}

ekws_status_t ekws_pipeline_set_voice_offset(ekws_pipeline_t *pipe, const int32_t *offset, size_t offset_len) {
    if (!pipe) {
        return EKWS_ERR_NULL;
    }
    if (!pipe->model) {
        return EKWS_ERR_STATE;
    }
    if (offset && (offset_len == 0 || offset_len != ekws_model_embedding_size(pipe->model))) {
        return EKWS_ERR_ARG;
    }
    pipe->voice_offset = offset;
    return EKWS_OK;
}

size_t ekws_pipeline_max_detections(const ekws_pipeline_t *pipe, size_t n_samples) {
    if (!pipe || pipe->hop_every == 0) {
        return 0;
    }
    const size_t frames = ekws_frontend_frames_for(&pipe->fe, n_samples);
    if (frames == (size_t)-1) { /* the frontend's overflow mark: saturate (+ 1 would wrap to 0) */
        return frames;
    }
    return frames / pipe->hop_every + 1u;
}

/* A completed frame: into the ring; on a step, the model and the detector. */
static ekws_status_t on_frame(ekws_pipeline_t *p, const int8_t *frame, ekws_pipeline_detection_t *out,
                              size_t *n_det) {
    const uint32_t bands = p->num_bands, slots = p->frames_per_window;
    if (p->voice_shift != 0) {
        ekws_shift_bands_s8(frame, p->ring + (size_t)p->oldest * bands, 1u, bands, p->voice_shift);
    } else {
        memcpy(p->ring + (size_t)p->oldest * bands, frame, bands);
    }
    p->oldest = p->oldest + 1 == slots ? 0 : p->oldest + 1;
    p->frames++;
    /* a step every hop_every frames, counted apart from `frames` (whose 2^32 wrap is not a
     * multiple of hop_every in general) */
    if (++p->since_step < p->hop_every) {
        return EKWS_OK;
    }
    p->since_step = 0;
    const size_t head = (size_t)(slots - p->oldest) * bands; /* oldest .. end of ring */
    memcpy(p->input, p->ring + (size_t)p->oldest * bands, head);
    memcpy(p->input + head, p->ring, (size_t)p->oldest * bands);
    const uint32_t k = p->model->num_classes;
    ekws_status_t st = p->voice_offset
                           ? ekws_model_invoke_voice(p->model, p->input, (size_t)slots * bands, p->voice_offset,
                                                     ekws_model_embedding_size(p->model), p->logits, k)
                           : ekws_model_invoke(p->model, p->input, (size_t)slots * bands, p->logits, k);
    if (st != EKWS_OK) {
        return st;
    }
    ekws_detection_t d;
    st = ekws_detector_step(&p->det, p->logits, k, &d);
    if (st == EKWS_OK && d.label >= 0) {
        out[*n_det].label = d.label;
        out[*n_det].score_q15 = d.score_q15;
        out[*n_det].frame = p->frames - 1u;
        (*n_det)++;
    }
    return st;
}

ekws_status_t ekws_pipeline_push(ekws_pipeline_t *pipe, const int16_t *samples, size_t n_samples,
                                 ekws_pipeline_detection_t *out, size_t capacity, size_t *n_detections) {
    if (!pipe || !n_detections || (n_samples > 0 && (!samples || !out))) {
        return EKWS_ERR_NULL;
    }
    *n_detections = 0;
    if (!pipe->model) {
        return EKWS_ERR_STATE;
    }
    if (n_samples == 0) {
        return EKWS_OK;
    }
    if (capacity < ekws_pipeline_max_detections(pipe, n_samples)) {
        return EKWS_ERR_BUFFER_TOO_SMALL;
    }
    /* Feed at most one hop at a time: the frontend then completes at most one frame per call. */
    const size_t hop = pipe->fe.params->hop_len;
    int8_t frame[EKWS_PIPELINE_MAX_BANDS];
    if (pipe->num_bands > sizeof frame) {
        return EKWS_ERR_CONFIG;
    }
    size_t done = 0;
    while (done < n_samples) {
        const size_t chunk = n_samples - done < hop ? n_samples - done : hop;
        size_t got = 0;
        ekws_status_t st = ekws_frontend_push(&pipe->fe, samples + done, chunk, frame, 1, &got);
        if (st != EKWS_OK) {
            return st;
        }
        done += chunk;
        if (got == 1) {
            st = on_frame(pipe, frame, out, n_detections);
            if (st != EKWS_OK) {
                return st;
            }
        }
    }
    return EKWS_OK;
}
