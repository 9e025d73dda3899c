/* startup.c: Cortex-M vector table and reset handler for the bare-metal port (no libc).
 * A fault or unexpected interrupt prints the faulting pc over semihosting and exits with status
 * 100 + exception number, so a crash under QEMU ends the run instead of hanging it. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __stack_top[];
extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
int main(void);
void Reset_Handler(void);
void Fault_Handler(void);

/* Built with -fno-tree-loop-distribute-patterns: these loops must not become memcpy/memset calls. */
__attribute__((noreturn)) void Reset_Handler(void) {
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20); /* CPACR: enable CP10/CP11 (the FPU) */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    const uint32_t *src = __data_load;
    for (uint32_t *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0;
    }
    ekws_sh_exit(main());
}

/* frame: the stacked exception frame (r0-r3, r12, lr, pc, xpsr). */
__attribute__((used, noreturn)) static void fault_report(const uint32_t *frame) {
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1ffu;
    ekws_sh_puts("\n*** FAULT: exception ");
    ekws_sh_put_u32(ipsr);
    ekws_sh_puts(" pc=");
    ekws_sh_put_hex32(frame[6]);
    ekws_sh_puts(" lr=");
    ekws_sh_put_hex32(frame[5]);
    ekws_sh_puts(" cfsr=");
    ekws_sh_put_hex32(*(volatile uint32_t *)0xE000ED28u);
    ekws_sh_puts("\n");
    ekws_sh_exit(ipsr < 155u ? 100 + (int)ipsr : 255);
}

/* Pick the active stack (MSP or PSP, bit 2 of EXC_RETURN) and report. Thumb-1 only. */
__attribute__((naked)) void Fault_Handler(void) {
    __asm__ volatile(
        "movs r0, #4\n"
        "mov r1, lr\n"
        "tst r0, r1\n"
        "beq 1f\n"
        "mrs r0, psp\n"
        "b 2f\n"
        "1: mrs r0, msp\n"
        "2: ldr r1, =fault_report\n"
        "bx r1\n"
        ".ltorg\n");
}

#define EKWS_NUM_VECTORS (16 + 32) /* core exceptions + the first 32 interrupts */

__attribute__((section(".vectors"), used)) void (*const ekws_vector_table[EKWS_NUM_VECTORS])(void) = {
    (void (*)(void))(uintptr_t)__stack_top, /* initial MSP */
    Reset_Handler,
    [2 ... EKWS_NUM_VECTORS - 1] = Fault_Handler,
};
