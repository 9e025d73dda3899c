/* detector.c: posterior smoothing, per-class thresholds and a refractory period over int8 logits
 * (twin of edgekws/stream/detector.py; the definition is in ekws/detector.h). */
#include "ekws/detector.h"

#include <string.h>

ekws_status_t ekws_posteriors_q15(const uint16_t *exp_lut, const int8_t *logits, size_t n, uint16_t *post) {
    if (!exp_lut || !logits || !post) {
        return EKWS_ERR_NULL;
    }
    if (n < 1 || n > EKWS_DETECTOR_MAX_CLASSES || exp_lut[0] == 0) {
        return EKWS_ERR_ARG;
    }
    int32_t top = logits[0];
    for (size_t k = 1; k < n; k++) {
        top = logits[k] > top ? logits[k] : top;
    }
    /* S <= 32 * 65535 < 2^21 and e * 2^15 < 2^31: every intermediate fits uint32. */
    uint32_t total = 0;
    for (size_t k = 0; k < n; k++) {
        total += exp_lut[(uint32_t)(top - logits[k])];
    }
    for (size_t k = 0; k < n; k++) {
        const uint32_t e = exp_lut[(uint32_t)(top - logits[k])];
        post[k] = (uint16_t)((e * 32768u + total / 2u) / total);
    }
    return EKWS_OK;
}

void ekws_detector_reset(ekws_detector_t *det) {
    if (!det) {
        return;
    }
    det->pos = 0;
    det->cooldown = 0;
    det->steps = 0;
    memset(det->ring, 0, sizeof det->ring);
    memset(det->sum, 0, sizeof det->sum);
    memset(det->posterior, 0, sizeof det->posterior);
    memset(det->smoothed, 0, sizeof det->smoothed);
}

ekws_status_t ekws_detector_init(ekws_detector_t *det, const ekws_detector_config_t *cfg) {
    if (!det || !cfg || !cfg->exp_lut || !cfg->threshold) {
        return EKWS_ERR_NULL;
    }
    if (cfg->num_classes < 1 || cfg->num_classes > EKWS_DETECTOR_MAX_CLASSES || cfg->smooth < 1 ||
        cfg->smooth > EKWS_DETECTOR_MAX_SMOOTH || cfg->exp_lut[0] == 0) {
        return EKWS_ERR_CONFIG;
    }
    det->cfg = *cfg;
    ekws_detector_reset(det);
    return EKWS_OK;
}

ekws_status_t ekws_detector_step(ekws_detector_t *det, const int8_t *logits, size_t n, ekws_detection_t *out) {
    if (!det || !logits || !out) {
        return EKWS_ERR_NULL;
    }
    if (det->cfg.num_classes == 0 || !det->cfg.exp_lut) {
        return EKWS_ERR_STATE;
    }
    if (n != det->cfg.num_classes) {
        return EKWS_ERR_ARG;
    }
    out->label = -1;
    out->score_q15 = 0;
    const ekws_status_t st = ekws_posteriors_q15(det->cfg.exp_lut, logits, n, det->posterior);
    if (st != EKWS_OK) {
        return st;
    }
    uint16_t *slot = det->ring[det->pos];
    for (size_t k = 0; k < n; k++) {
        det->sum[k] = det->sum[k] - slot[k] + det->posterior[k];
        slot[k] = det->posterior[k];
        det->smoothed[k] = (int32_t)(det->sum[k] / det->cfg.smooth);
    }
    det->pos = det->pos + 1 == det->cfg.smooth ? 0 : det->pos + 1;
    det->steps++;
    if (det->cooldown > 0) {
        det->cooldown--;
        return EKWS_OK;
    }
    for (size_t k = 0; k < n; k++) {
        const int32_t thr = det->cfg.threshold[k];
        if (thr < 0 || thr > EKWS_DETECTOR_ONE_Q15 || det->smoothed[k] < thr) {
            continue;
        }
        if (out->label < 0 || det->smoothed[k] > out->score_q15) {
            out->label = (int32_t)k;
            out->score_q15 = det->smoothed[k];
        }
    }
    if (out->label >= 0) {
        det->cooldown = det->cfg.refractory;
    }
    return EKWS_OK;
}
