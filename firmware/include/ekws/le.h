/* ekws/le.h: little-endian 32-bit reads and writes of byte buffers (model and head blobs are
 * little-endian whatever the CPU; byte access also needs no alignment). */
#ifndef EKWS_LE_H
#define EKWS_LE_H

#include <stdint.h>

static inline uint32_t ekws_rd32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void ekws_wr32le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

#endif /* EKWS_LE_H */
