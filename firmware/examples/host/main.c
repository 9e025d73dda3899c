/* main.c: the edgekws keyword spotter on the host command line: WAV in -> frontend -> model -> label.
 *
 *     kws MODEL.bin CLIP.wav
 *
 * MODEL.bin is the blob `edgekws export MODEL --c DIR` writes (DIR/model.bin); CLIP.wav a 16 kHz
 * mono 16-bit PCM WAV. The first second of audio (zero padded when shorter) goes through the
 * integer frontend of ekws/frontend.h with the generated default parameters, and the int8 features
 * through the model in a static arena. Output:
 *     label <index> [<name>]
 *     logits <q0> <q1> ...
 * Label names come from the generated ekws_model_data.h when built with DATA=DIR (and the blob has
 * as many classes); otherwise only the index is printed.
 * Exit status: 0 ok, 1 bad arguments or unreadable/invalid input (with a message on stderr). */
#include <stdio.h>
#include <string.h>

#include "ekws/frontend.h"
#include "ekws/model.h"
#include "ekws_frontend_tables.h"
#ifdef EKWS_HOST_LABELS
#include "ekws_model_data.h"
#endif

#ifndef EKWS_HOST_ARENA_BYTES
#define EKWS_HOST_ARENA_BYTES (256u * 1024u)
#endif
#define EKWS_HOST_MAX_BLOB (4u * 1024u * 1024u)
#define EKWS_HOST_RATE 16000u
#define EKWS_HOST_MAX_FRAMES 256u
#define EKWS_HOST_MAX_CLASSES 256u

static uint32_t arena[EKWS_HOST_ARENA_BYTES / 4u];
static uint32_t blob[EKWS_HOST_MAX_BLOB / 4u];
static int16_t audio[EKWS_HOST_RATE];
static int8_t features[EKWS_HOST_MAX_FRAMES * 64u];
static ekws_frontend_t frontend;
static ekws_model_t model;

static int fail(const char *path, const char *why) {
    fprintf(stderr, "kws: %s: %s\n", path, why);
    return 1;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Read the whole file into buf[0..cap); returns its size, or -1 if unreadable or larger than cap. */
static long read_file(const char *path, void *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    int more = fgetc(f) != EOF;
    int bad = ferror(f);
    fclose(f);
    return (more || bad) ? -1 : (long)n;
}

/* Parse a RIFF/WAVE file: 16 kHz, mono, 16-bit PCM. Copies up to 1 s of samples into audio[]
 * (the rest stays zero). NULL on success, else the reason. */
static const char *load_wav(const char *path) {
    static uint8_t buf[4u * 1024u * 1024u];
    long size = read_file(path, buf, sizeof buf);
    if (size < 0) {
        return "cannot read the file (missing, unreadable or larger than 4 MiB)";
    }
    const size_t n = (size_t)size;
    if (n < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WAVE", 4) != 0) {
        return "not a WAV file (no RIFF/WAVE header)";
    }
    int have_fmt = 0;
    size_t pos = 12;
    while (pos + 8 <= n) {
        const uint32_t len = le32(buf + pos + 4);
        const uint8_t *body = buf + pos + 8;
        if (len > n - pos - 8) {
            return "truncated WAV file (a chunk runs past the end)";
        }
        if (memcmp(buf + pos, "fmt ", 4) == 0) {
            if (len < 16) {
                return "bad WAV fmt chunk";
            }
            const uint16_t format = le16(body), channels = le16(body + 2), bits = le16(body + 14);
            const uint32_t rate = le32(body + 4);
            if (format != 1 || bits != 16) {
                return "not 16-bit PCM (need a 16 kHz mono 16-bit PCM WAV)";
            }
            if (channels != 1) {
                return "not mono (need a 16 kHz mono 16-bit PCM WAV)";
            }
            if (rate != EKWS_HOST_RATE) {
                return "sample rate is not 16000 Hz (need a 16 kHz mono 16-bit PCM WAV)";
            }
            have_fmt = 1;
        } else if (memcmp(buf + pos, "data", 4) == 0) {
            if (!have_fmt) {
                return "WAV data chunk before its fmt chunk";
            }
            size_t count = len / 2u;
            if (count > EKWS_HOST_RATE) {
                count = EKWS_HOST_RATE;
            }
            for (size_t i = 0; i < count; i++) {
                audio[i] = (int16_t)le16(body + 2u * i);
            }
            return NULL;
        }
        pos += 8u + len + (len & 1u); /* chunks are padded to even sizes */
    }
    return have_fmt ? "WAV file without a data chunk" : "WAV file without a fmt chunk";
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.bin CLIP.wav  (model.bin from `edgekws export MODEL --c DIR`)\n",
                argc > 0 ? argv[0] : "kws");
        return 1;
    }
    const char *blob_path = argv[1], *wav_path = argv[2];
    long blob_size = read_file(blob_path, blob, sizeof blob);
    if (blob_size < 0) {
        return fail(blob_path, "cannot read the model blob (missing, unreadable or larger than 4 MiB)");
    }
    const char *why = ekws_model_check(blob, (size_t)blob_size);
    if (why != NULL) {
        fprintf(stderr, "kws: %s: not a valid edgekws model blob: %s\n", blob_path, why);
        return 1;
    }
    const size_t need = ekws_model_arena_size(blob, (size_t)blob_size);
    if (need > sizeof arena) {
        fprintf(stderr, "kws: %s: the model needs a %zu-byte arena, this build has %zu (rebuild with "
                        "EXTRA_CFLAGS=-DEKWS_HOST_ARENA_BYTES=%zu)\n",
                blob_path, need, sizeof arena, (need + 3u) & ~(size_t)3u);
        return 1;
    }
    ekws_status_t st = ekws_model_init(&model, blob, (size_t)blob_size, arena, sizeof arena);
    if (st != EKWS_OK) {
        return fail(blob_path, ekws_status_str(st));
    }
    why = load_wav(wav_path);
    if (why != NULL) {
        return fail(wav_path, why);
    }

    const ekws_frontend_params_t *fp = &ekws_frontend_default_params;
    st = ekws_frontend_init(&frontend, fp);
    if (st != EKWS_OK) {
        return fail("frontend", ekws_status_str(st));
    }
    const size_t frames = ekws_frontend_frames_for(&frontend, EKWS_HOST_RATE);
    if (frames * fp->num_bands != model.input_size || frames > EKWS_HOST_MAX_FRAMES || fp->num_bands > 64u) {
        fprintf(stderr, "kws: %s: the model takes %u int8 inputs, the frontend makes %zu frames x %u bands\n",
                blob_path, (unsigned)model.input_size, frames, (unsigned)fp->num_bands);
        return 1;
    }
    size_t got = 0;
    st = ekws_frontend_push(&frontend, audio, EKWS_HOST_RATE, features, EKWS_HOST_MAX_FRAMES, &got);
    if (st != EKWS_OK || got != frames) {
        return fail("frontend", st != EKWS_OK ? ekws_status_str(st) : "unexpected frame count");
    }
    int8_t logits[EKWS_HOST_MAX_CLASSES];
    if (model.num_classes > EKWS_HOST_MAX_CLASSES) {
        return fail(blob_path, "too many classes");
    }
    st = ekws_model_invoke(&model, features, model.input_size, logits, model.num_classes);
    if (st != EKWS_OK) {
        return fail("ekws_model_invoke", ekws_status_str(st));
    }
    const uint32_t best = ekws_argmax_s8(logits, model.num_classes);
    printf("label %u", (unsigned)best);
#ifdef EKWS_HOST_LABELS
    if (model.num_classes == EKWS_MODEL_NUM_CLASSES) {
        printf(" %s", ekws_model_labels[best]);
    }
#endif
    printf("\nlogits");
    for (uint32_t k = 0; k < model.num_classes; k++) {
        printf(" %d", (int)logits[k]);
    }
    printf("\n");
    return 0;
}
