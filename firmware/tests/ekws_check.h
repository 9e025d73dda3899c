/* ekws_check.h: the one assertion macro of the C tests. Each test program includes it once,
 * counts failures with CHECK(cond, printf-style message...) and returns failures != 0. */
#ifndef EKWS_TESTS_CHECK_H
#define EKWS_TESTS_CHECK_H

#include <stdio.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#endif /* EKWS_TESTS_CHECK_H */
