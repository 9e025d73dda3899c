/* semihost.c: console output and exit status over ARM semihosting. */
#include "semihost.h"

void ekws_sh_puts(const char *s) { (void)ekws_sh_call(EKWS_SH_SYS_WRITE0, (uintptr_t)s); }

void ekws_sh_put_u32(uint32_t v) {
    char buf[11];
    char *p = buf + sizeof buf;
    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    ekws_sh_puts(p);
}

void ekws_sh_put_i32(int32_t v) {
    if (v < 0) {
        ekws_sh_puts("-");
        ekws_sh_put_u32(0u - (uint32_t)v);
    } else {
        ekws_sh_put_u32((uint32_t)v);
    }
}

void ekws_sh_put_hex32(uint32_t v) {
    char buf[11];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 8; i++) {
        buf[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xfu];
    }
    buf[10] = '\0';
    ekws_sh_puts(buf);
}

void ekws_sh_exit(int code) {
    /* {reason, subcode}: QEMU exits with subcode. Plain SYS_EXIT can only say ok / not ok. */
    volatile uint32_t block[2] = {EKWS_SH_APPLICATION_EXIT, (uint32_t)code};
    (void)ekws_sh_call(EKWS_SH_SYS_EXIT_EXTENDED, (uintptr_t)block);
    (void)ekws_sh_call(EKWS_SH_SYS_EXIT, code == 0 ? EKWS_SH_APPLICATION_EXIT : 0x20023u);
    for (;;) {
    }
}
