/* semihost.h: the few ARM semihosting calls the Cortex-M port needs ("bkpt 0xab"; QEMU with
 * -semihosting-config enable=on,target=native). No libc. */
#ifndef EKWS_PORT_SEMIHOST_H
#define EKWS_PORT_SEMIHOST_H

#include <stdint.h>

#define EKWS_SH_SYS_WRITE0 0x04u
#define EKWS_SH_SYS_EXIT 0x18u
#define EKWS_SH_SYS_EXIT_EXTENDED 0x20u
#define EKWS_SH_APPLICATION_EXIT 0x20026u

static inline uintptr_t ekws_sh_call(uintptr_t op, uintptr_t arg) {
    register uintptr_t r0 __asm__("r0") = op;
    register uintptr_t r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void ekws_sh_puts(const char *s); /* no newline added */
void ekws_sh_put_u32(uint32_t v);
void ekws_sh_put_i32(int32_t v);
void ekws_sh_put_hex32(uint32_t v);
/* Ends the program; QEMU exits with status `code` (SYS_EXIT_EXTENDED). */
__attribute__((noreturn)) void ekws_sh_exit(int code);

#endif /* EKWS_PORT_SEMIHOST_H */
