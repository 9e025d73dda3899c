/* test_model.c: the model runner on the golden whole-model blob (tests/golden/model_golden.h):
 * logits bit for bit, exact arena size, and refusal of corrupt, truncated or misaligned blobs. */
#include <stdio.h>
#include <string.h>

#include "ekws/model.h"
#include "golden/model_golden.h"

#include "ekws_check.h"

static uint32_t arena[(GOLDEN_MODEL_ARENA + 3) / 4];
static uint32_t copy[(GOLDEN_MODEL_BYTES + 3) / 4];

static void test_logits(void) {
    ekws_model_t m;
    CHECK(ekws_model_check(golden_model_blob, GOLDEN_MODEL_BYTES) == NULL, "golden blob rejected");
    CHECK(ekws_model_arena_size(golden_model_blob, GOLDEN_MODEL_BYTES) == GOLDEN_MODEL_ARENA, "arena size");
    ekws_status_t st = ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA);
    CHECK(st == EKWS_OK, "init: %s", ekws_status_str(st));
    if (st != EKWS_OK) {
        return;
    }
    for (int i = 0; i < GOLDEN_MODEL_NUM_INPUTS; i++) {
        int8_t logits[GOLDEN_MODEL_NUM_CLASSES + 1];
        logits[GOLDEN_MODEL_NUM_CLASSES] = 0x55;
        st = ekws_model_invoke(&m, golden_model_inputs + i * GOLDEN_MODEL_INPUT_SIZE, GOLDEN_MODEL_INPUT_SIZE,
                               logits, GOLDEN_MODEL_NUM_CLASSES);
        CHECK(st == EKWS_OK, "invoke %d: %s", i, ekws_status_str(st));
        CHECK(memcmp(logits, golden_model_logits + i * GOLDEN_MODEL_NUM_CLASSES, GOLDEN_MODEL_NUM_CLASSES) == 0,
              "input %d: logits differ from the numpy reference", i);
        CHECK(logits[GOLDEN_MODEL_NUM_CLASSES] == 0x55, "wrote past the logits");
    }
    int8_t small[2];
    CHECK(ekws_model_invoke(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE, small, 2) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "short logits buffer accepted");
    CHECK(ekws_model_invoke(&m, golden_model_inputs, GOLDEN_MODEL_INPUT_SIZE - 1, small, 2) == EKWS_ERR_ARG,
          "wrong input length accepted");
}

static void test_refusals(void) {
    ekws_model_t m;
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA - 1) ==
              EKWS_ERR_BUFFER_TOO_SMALL, "arena one byte short accepted");
    CHECK(ekws_model_init(&m, golden_model_blob, GOLDEN_MODEL_BYTES - 4, arena, GOLDEN_MODEL_ARENA) ==
              EKWS_ERR_CONFIG, "truncated blob accepted");
    memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
    ((uint8_t *)copy)[GOLDEN_MODEL_BYTES / 2] ^= 0x10;
    const char *why = ekws_model_check(copy, GOLDEN_MODEL_BYTES);
    CHECK(why && strstr(why, "CRC"), "flipped bit: %s", why ? why : "accepted");
    CHECK(ekws_model_init(&m, copy, GOLDEN_MODEL_BYTES, arena, GOLDEN_MODEL_ARENA) == EKWS_ERR_CONFIG,
          "corrupt blob accepted");
    memcpy(copy, golden_model_blob, GOLDEN_MODEL_BYTES);
    ((uint8_t *)copy)[0] = 'X';
    why = ekws_model_check(copy, GOLDEN_MODEL_BYTES);
    CHECK(why && strstr(why, "magic"), "bad magic: %s", why ? why : "accepted");
    CHECK(ekws_model_init(&m, (const uint8_t *)golden_model_blob + 1, GOLDEN_MODEL_BYTES - 1, arena,
                          GOLDEN_MODEL_ARENA) == EKWS_ERR_ARG, "misaligned blob accepted");
    CHECK(ekws_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
}

int main(void) {
    test_logits();
    test_refusals();
    if (failures) {
        fprintf(stderr, "test_model: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_model: %d inputs bit-exact, arena %u bytes, blob %u bytes\n", GOLDEN_MODEL_NUM_INPUTS,
           (unsigned)GOLDEN_MODEL_ARENA, (unsigned)GOLDEN_MODEL_BYTES);
    return 0;
}
