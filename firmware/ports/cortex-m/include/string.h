/* string.h for the no-libc Cortex-M port: the part of <string.h> the firmware uses
 * (implemented in ../libc_min.c). A build with newlib or picolibc uses theirs instead. */
#ifndef EKWS_PORT_STRING_H
#define EKWS_PORT_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
int strcmp(const char *a, const char *b);

#endif /* EKWS_PORT_STRING_H */
