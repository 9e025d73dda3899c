/* ekws_blob.h: crafted one-layer model blobs (valid header and CRC) for the tests of the blob
 * checks and of the pipeline: the layout of ekws/model.h, written word by word. Static helpers,
 * caller-provided memory (4-byte aligned uint32_t buffers). */
#ifndef EKWS_TESTS_BLOB_H
#define EKWS_TESTS_BLOB_H

#include <string.h>

#include "ekws/le.h"
#include "ekws/model.h"

/* Layer record word indices (ekws/model.h). */
enum {
    TL_OP, TL_IN_H, TL_IN_W, TL_IN_C, TL_OUT_H, TL_OUT_W, TL_OUT_C, TL_KH, TL_KW, TL_SH, TL_SW, TL_PAD_T,
    TL_PAD_L, TL_IN_ZP, TL_OUT_ZP, TL_ACT_MIN, TL_ACT_MAX, TL_W_OFF, TL_B_OFF, TL_M_OFF, TL_S_OFF, TL_TAP,
    TL_WORDS = 24
};

/* Byte offset of the data section of a one-layer blob (header + one record). */
#define TB_DATA (EKWS_MODEL_HEADER_SIZE + EKWS_MODEL_LAYER_SIZE)

typedef struct {
    uint32_t w[TL_WORDS];
} tb_layer_t;

/* A layer record with the given op and shapes, stride 1, no padding, zero points 0, clamp
 * [-128, 127], no offsets: the caller sets the rest. */
static tb_layer_t tb_layer(uint32_t op, uint32_t in_h, uint32_t in_w, uint32_t in_c, uint32_t out_h, uint32_t out_w,
                           uint32_t out_c, uint32_t kh, uint32_t kw) {
    tb_layer_t r;
    memset(&r, 0, sizeof r);
    const uint32_t v[] = {op, in_h, in_w, in_c, out_h, out_w, out_c, kh, kw, 1, 1};
    memcpy(r.w, v, sizeof v);
    r.w[TL_ACT_MIN] = 0xFFFFFF80u; /* -128 */
    r.w[TL_ACT_MAX] = 127;
    return r;
}

/* (Re)compute the CRC of the blob of total bytes at out, after the caller changed it. */
static void tb_seal(uint32_t *out, uint32_t total) {
    uint8_t *b = (uint8_t *)out;
    ekws_wr32le(b + 12, 0);
    ekws_wr32le(b + 12, ekws_crc32(0, b, total));
}

/* A one-layer blob in out[0..cap): header (model input = the layer's input, output = its output,
 * zero points from the record), the record, data_len bytes of data at TB_DATA (zeros if data is
 * NULL; padded to 4), arena_size in the header, valid CRC. Returns the blob's bytes, 0 if cap is
 * too small. */
static uint32_t tb_blob(uint32_t *out, size_t cap, const tb_layer_t *r, const uint8_t *data, uint32_t data_len,
                        uint32_t arena_size) {
    const uint32_t total = TB_DATA + ((data_len + 3u) & ~3u);
    if (cap < total) {
        return 0;
    }
    uint8_t *b = (uint8_t *)out;
    memset(b, 0, total);
    const uint32_t num_classes = r->w[TL_OUT_H] * r->w[TL_OUT_W] * r->w[TL_OUT_C];
    const uint32_t h[16] = {EKWS_MODEL_MAGIC, EKWS_MODEL_VERSION, total, 0, EKWS_MODEL_HEADER_SIZE, 1,
                            EKWS_MODEL_LAYER_SIZE, arena_size, r->w[TL_IN_H], r->w[TL_IN_W], r->w[TL_IN_C],
                            r->w[TL_IN_ZP], num_classes, r->w[TL_OUT_ZP], 0x3C000000u, 0x3C000000u};
    for (uint32_t i = 0; i < 16; i++) {
        ekws_wr32le(b + 4u * i, h[i]);
    }
    for (uint32_t i = 0; i < TL_WORDS; i++) {
        ekws_wr32le(b + EKWS_MODEL_HEADER_SIZE + 4u * i, r->w[i]);
    }
    if (data != NULL && data_len > 0) {
        memcpy(b + TB_DATA, data, data_len);
    }
    tb_seal(out, total);
    return total;
}

#endif /* EKWS_TESTS_BLOB_H */
