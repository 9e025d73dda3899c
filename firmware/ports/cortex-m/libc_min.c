/* libc_min.c: the four memory functions GCC may call even in freestanding code, for builds
 * without any libc. Word copies when both pointers are 4-byte aligned (memmove is on the
 * frontend's per-hop path). Compile with -fno-tree-loop-distribute-patterns, or GCC turns these
 * loops back into calls to themselves. */
#include <stddef.h>
#include <stdint.h>

#include "string.h"

void *memcpy(void *restrict dst, const void *restrict src, size_t n) { return memmove(dst, src, n); }

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    const int aligned = (((uintptr_t)d | (uintptr_t)s) & 3u) == 0u;
    if (d < s) {
        if (aligned) {
            for (; n >= 4; n -= 4, d += 4, s += 4) {
                *(uint32_t *)(void *)d = *(const uint32_t *)(const void *)s;
            }
        }
        while (n--) {
            *d++ = *s++;
        }
    } else if (d > s) {
        d += n;
        s += n;
        if (aligned && ((uintptr_t)d & 3u) == 0u && ((uintptr_t)s & 3u) == 0u) {
            for (; n >= 4; n -= 4) {
                d -= 4;
                s -= 4;
                *(uint32_t *)(void *)d = *(const uint32_t *)(const void *)s;
            }
        }
        while (n--) {
            *--d = *--s;
        }
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) {
        *d++ = (unsigned char)c;
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a;
    const unsigned char *y = b;
    for (; n--; x++, y++) {
        if (*x != *y) {
            return *x - *y;
        }
    }
    return 0;
}

int strcmp(const char *a, const char *b) {
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}
