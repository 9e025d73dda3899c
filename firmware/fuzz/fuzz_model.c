/* fuzz_model.c: libFuzzer target over the model runner with corrupted blobs and arbitrary inputs.
 * Byte 0 picks the mode:
 *   even: the rest of the input IS the blob (mostly rejected by magic/CRC checks);
 *   odd:  the rest is a list of (offset, xor) byte pairs applied to a valid blob whose CRC is then
 *         recomputed, so the structural checks behind the CRC (sizes, offsets, shapes, shifts)
 *         see the damage. A blob that passes ekws_model_check runs on features from the input.
 * Checks: no crash, no sanitizer report, check and init agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ekws/model.h"
#include "golden/detector_golden.h"

#define MAX_BLOB (64 * 1024)
#define MAX_ARENA (256 * 1024)

static uint32_t blob[MAX_BLOB / 4];
static uint32_t arena[MAX_ARENA / 4];
static int8_t input[64 * 1024];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) {
        return 0;
    }
    size_t n;
    uint8_t *b = (uint8_t *)blob;
    if ((data[0] & 1u) == 0) {
        n = size - 1 > MAX_BLOB ? MAX_BLOB : size - 1;
        memcpy(b, data + 1, n);
    } else {
        n = sizeof golden_pipe_model;
        memcpy(b, golden_pipe_model, n);
        for (size_t i = 1; i + 2 <= size; i += 3) {
            const size_t off = ((size_t)data[i] | ((size_t)(i + 2 < size ? data[i + 2] : 0) << 8)) % n;
            b[off] ^= data[i + 1];
        }
        memset(b + 12, 0, 4);
        const uint32_t crc = ekws_crc32(0, b, n);
        memcpy(b + 12, &crc, 4);
    }
    const char *why = ekws_model_check(b, n);
    ekws_model_t m;
    const size_t need = ekws_model_arena_size(b, n);
    const ekws_status_t st = ekws_model_init(&m, b, n, arena, sizeof arena);
    if ((why == NULL) != (need > 0) || (why != NULL && st != EKWS_ERR_CONFIG)) {
        abort(); /* the three entry points disagree */
    }
    if (st == EKWS_OK && m.input_size <= sizeof input) {
        for (size_t i = 0; i < m.input_size; i++) {
            input[i] = (int8_t)data[i % size];
        }
        int8_t logits[1024];
        if (m.num_classes <= sizeof logits &&
            ekws_model_invoke(&m, input, m.input_size, logits, m.num_classes) != EKWS_OK) {
            abort(); /* a blob that passed validation must run */
        }
    }
    return 0;
}
