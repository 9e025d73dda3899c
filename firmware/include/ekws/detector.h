/* ekws/detector.h: the streaming keyword detector, integer only, bit-identical to
 * edgekws/stream/detector.py.
 *
 * Once per model step (every hop_every feature frames) the runner hands the model's int8 logits
 * to ekws_detector_step, which
 *   1. turns them into Q15 posteriors with an exp lookup table (no floating point):
 *        e_k = exp_lut[max_j q_j - q_k]      exp_lut[d] = round(65535 * exp(-output_scale * d))
 *        p_k = (e_k * 32768 + S / 2) / S     S = sum_k e_k  (unsigned integer division)
 *   2. averages each class's posterior over the last `smooth` steps (steps before the first count
 *      as 0): s_k = (p_k(t) + ... + p_k(t - smooth + 1)) / smooth  (integer division)
 *   3. fires for the class with the largest s_k among those with s_k >= threshold[k] (lowest index
 *      on ties), unless a detection happened within the last `refractory` steps.
 * A threshold outside [0, 32768] disables a class (used for _silence_ and _unknown_).
 * The exp table is written by Python (edgekws.stream.detector.exp_lut) from the model's output
 * scale, so C and Python share it instead of each calling exp().
 */
#ifndef EKWS_DETECTOR_H
#define EKWS_DETECTOR_H

#include "ekws/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EKWS_DETECTOR_MAX_CLASSES
#define EKWS_DETECTOR_MAX_CLASSES 32
#endif
#ifndef EKWS_DETECTOR_MAX_SMOOTH
#define EKWS_DETECTOR_MAX_SMOOTH 16
#endif
#define EKWS_DETECTOR_ONE_Q15 32768 /* posterior 1.0 */
#define EKWS_DETECTOR_LUT_SIZE 256

typedef struct {
    uint32_t num_classes;      /* logits per step, 1..EKWS_DETECTOR_MAX_CLASSES */
    uint32_t smooth;           /* posteriors averaged, 1..EKWS_DETECTOR_MAX_SMOOTH */
    uint32_t refractory;       /* steps after a detection during which nothing fires */
    const uint16_t *exp_lut;   /* [256], exp_lut[0] must be > 0 */
    const int32_t *threshold;  /* [num_classes] Q15; outside [0, 32768]: class never fires */
} ekws_detector_config_t;

/* The result of one step. label is -1 when nothing fired. */
typedef struct {
    int32_t label;
    int32_t score_q15; /* the smoothed posterior of label (0 when label is -1) */
} ekws_detection_t;

/* Detector state. Treat as opaque; owned by the caller. */
typedef struct {
    ekws_detector_config_t cfg;
    uint32_t pos;      /* next ring slot */
    uint32_t cooldown; /* steps left in the refractory period */
    uint32_t steps;    /* steps since init/reset */
    uint16_t ring[EKWS_DETECTOR_MAX_SMOOTH][EKWS_DETECTOR_MAX_CLASSES];
    uint32_t sum[EKWS_DETECTOR_MAX_CLASSES];
    uint16_t posterior[EKWS_DETECTOR_MAX_CLASSES]; /* of the last step (Q15) */
    int32_t smoothed[EKWS_DETECTOR_MAX_CLASSES];   /* of the last step (Q15) */
} ekws_detector_t;

/* Validate cfg (copied; its tables must outlive det) and reset the state. */
ekws_status_t ekws_detector_init(ekws_detector_t *det, const ekws_detector_config_t *cfg);

/* Forget history and refractory state (a new stream starts). */
void ekws_detector_reset(ekws_detector_t *det);

/* One model step: logits (num_classes int8) -> *out (label -1 if nothing fired). */
ekws_status_t ekws_detector_step(ekws_detector_t *det, const int8_t *logits, size_t n, ekws_detection_t *out);

/* Step 1 alone: int8 logits -> Q15 posteriors (n values each). */
ekws_status_t ekws_posteriors_q15(const uint16_t *exp_lut, const int8_t *logits, size_t n, uint16_t *post);

#ifdef __cplusplus
}
#endif

#endif /* EKWS_DETECTOR_H */
