/* ekws/types.h: status codes and common definitions of the edgekws C99 runtime. */
#ifndef EKWS_TYPES_H
#define EKWS_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every fallible ekws_ function returns one of these. EKWS_OK is 0. */
typedef enum {
    EKWS_OK = 0,
    EKWS_ERR_NULL = 1,             /* a required pointer argument is NULL */
    EKWS_ERR_CONFIG = 2,           /* parameters/tables are inconsistent or exceed compile-time maxima */
    EKWS_ERR_BUFFER_TOO_SMALL = 3, /* the caller's output buffer cannot hold the result */
    EKWS_ERR_ARG = 4,              /* an argument is out of range */
    EKWS_ERR_STATE = 5,            /* object used before a successful init */
    EKWS_STATUS_COUNT
} ekws_status_t;

/* A short, static, human-readable name of a status ("ok", "null pointer", ...). */
const char *ekws_status_str(ekws_status_t status);

/* The runtime relies on '>>' of negative signed integers being an arithmetic (sign-extending)
 * shift, i.e. floor division by 2^k, as GCC, Clang and Arm compilers document. Checked at compile
 * time so a compiler that differs fails to build instead of silently differing from Python. */
typedef char ekws_check_arithmetic_shift32[((int32_t)-7 >> 1) == -4 ? 1 : -1];
typedef char ekws_check_arithmetic_shift64[((int64_t)-7 >> 1) == -4 ? 1 : -1];

#ifdef __cplusplus
}
#endif

#endif /* EKWS_TYPES_H */
