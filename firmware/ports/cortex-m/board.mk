# Shared build rules of the Cortex-M examples (arm-none-eabi-gcc, no libc, QEMU mps2 boards).
# An example's Makefile sets FW (firmware tree), DATA (generated data folder), PROG (program
# name), FW_SRCS (firmware + data sources) and optionally DATA_HDRS, EXTRA_FLAGS and TIMEOUT,
# then includes this file. Targets: all, run (under QEMU), size, bin, hex, clean.
#
#   BOARD=an386   Cortex-M4F (hard float, DSP instructions) on QEMU mps2-an386 (default)
#   BOARD=an385   Cortex-M3 (no FPU, soft float) on QEMU mps2-an385

BOARD ?= an386
BUILD ?= build/$(BOARD)
CROSS ?= arm-none-eabi-
CC      := $(CROSS)gcc
OBJCOPY := $(CROSS)objcopy
SIZE    := $(CROSS)size
QEMU    ?= qemu-system-arm
TIMEOUT ?= 120
PORT    := $(FW)/ports/cortex-m

ifeq ($(BOARD),an386)
  MACHINE := mps2-an386
  CPU := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
else ifeq ($(BOARD),an385)
  MACHINE := mps2-an385
  CPU := -mcpu=cortex-m3 -mthumb -mfloat-abi=soft
else
  $(error unknown BOARD=$(BOARD) (an386: Cortex-M4F, an385: Cortex-M3))
endif

# The firmware keeps the project's warnings; the port's startup code uses GCC extensions.
# -ffp-contract=off: no fused multiply-add, so the float32 of voice search and the head trainer has numpy's bits
STRICT  := -std=c99 -ffp-contract=off -Wall -Wextra -Wpedantic -Werror -Wconversion -Wshadow
LENIENT := -std=gnu99 -Wall -Wextra -Werror
COMMON  := $(CPU) -O2 -g -ffreestanding -fno-tree-loop-distribute-patterns -ffunction-sections -fdata-sections \
           $(EXTRA_FLAGS) -I$(PORT)/include -I$(PORT) -I$(FW)/include -I$(FW)/generated -I$(DATA) $(EXTRA_CFLAGS)
LDFLAGS := $(CPU) -nostdlib -T $(PORT)/cortexm.ld -Wl,--gc-sections -Wl,-Map=$(BUILD)/$(PROG).map \
           -Wl,--defsym=STACK_SIZE=16K

PORT_SRCS := $(PORT)/startup.c $(PORT)/semihost.c $(PORT)/libc_min.c main.c
OBJS := $(addprefix $(BUILD)/fw/,$(notdir $(FW_SRCS:.c=.o))) $(addprefix $(BUILD)/port/,$(notdir $(PORT_SRCS:.c=.o)))

QEMU_RUN := timeout --foreground -k 5 $(TIMEOUT) $(QEMU) -M $(MACHINE) -display none -monitor none -serial none \
            -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0

.PHONY: all run size bin hex clean
all: $(BUILD)/$(PROG).elf

vpath %.c $(FW)/src $(FW)/generated $(DATA) $(PORT) .

# Every object is rebuilt when a header changes (the firmware's, the port's, DATA's: main.c compiles
# in the arena size, the hop, the expected detections) or when DATA names another folder (its objects
# have the same names as the last one's): the stamp file holds the DATA folder of the last build.
DATA_STAMP := $(BUILD)/data-folder
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(DATA_STAMP) 2>/dev/null)" = "$(abspath $(DATA))" ] || \
        echo "$(abspath $(DATA))" > $(DATA_STAMP); })
DEPS := $(DATA_HDRS) $(DATA_STAMP) $(wildcard $(FW)/include/ekws/*.h $(FW)/generated/*.h $(PORT)/*.h $(PORT)/include/*.h)

$(BUILD)/fw/%.o: %.c $(DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(STRICT) $(COMMON) -c $< -o $@

$(BUILD)/port/%.o: %.c $(DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(LENIENT) $(COMMON) -c $< -o $@

$(BUILD)/$(PROG).elf: $(OBJS)
	$(CC) $(LDFLAGS) $(OBJS) -lgcc -o $@

bin: $(BUILD)/$(PROG).elf
	$(OBJCOPY) -O binary $< $(BUILD)/$(PROG).bin

hex: $(BUILD)/$(PROG).elf
	$(OBJCOPY) -O ihex $< $(BUILD)/$(PROG).hex

run: $(BUILD)/$(PROG).elf
	$(QEMU_RUN) -kernel $< </dev/null

size: $(BUILD)/$(PROG).elf
	$(SIZE) $<

clean:
	rm -rf build
