#!/usr/bin/env python3
"""Instructions per 20 ms hop of the C frontend built for a Cortex-M4, counted under QEMU.

    python tools/qemu_count.py [--hops 50] [--build firmware/build/cortex-m4]

Builds firmware/src/frontend.c (+ status.c, the generated default tables and the golden vectors)
with firmware/ports/cortex-m/ (startup, linker script, semihosting, no libc) for -mcpu=cortex-m4
with hard float, runs it on QEMU's mps2-an386 board with an instruction-counting TCG plugin
(firmware/ports/cortex-m/qemu_insn_count.c, built with the host compiler) and prints instructions
per hop. The target program first checks every default-config golden case bit for bit.
QEMU counts executed instructions, not cycles (no pipeline, wait-state or cache model).
Needs arm-none-eabi-gcc, qemu-system-arm (Debian 12: apt-get install -y --no-install-recommends
gcc-arm-none-eabi qemu-system-arm) and a host C compiler; exits with status 2 naming what is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
sys.path.insert(0, str(ROOT))

from edgekws.cliargs import positive_int  # noqa: E402

PORT = FIRMWARE / "ports" / "cortex-m"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# Firmware sources keep the project's warning set; the port's startup code uses GCC extensions.
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-Wconversion", "-Wshadow"]
LENIENT = ["-std=gnu99", "-Wall", "-Wextra", "-Werror"]
COMMON = ["-O2", "-g", "-ffreestanding", "-fno-tree-loop-distribute-patterns", "-ffunction-sections",
          "-fdata-sections"]
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none", "-serial", "none",
        "-chardev", "stdio,id=sh0", "-semihosting-config", "enable=on,target=native,chardev=sh0"]


class ToolMissing(Exception):
    pass


def require_tools() -> str:
    """The host compiler to build the plugin with; raises ToolMissing naming what is absent."""
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm") if shutil.which(t) is None]
    host_cc = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if host_cc is None:
        missing.append("a host C compiler (cc)")
    if missing:
        raise ToolMissing(", ".join(missing))
    return host_cc


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}")
    return proc


def build(build_dir: Path, hops: int, host_cc: str, firmware: Path = FIRMWARE) -> tuple[Path, Path]:
    """Cross-compile the benchmark ELF and the host plugin; returns (elf, plugin).

    firmware : the firmware tree whose frontend is measured (another checkout, to compare)
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    objs = []
    includes = [f"-I{PORT / 'include'}", f"-I{PORT}", f"-I{firmware / 'include'}", f"-I{firmware / 'generated'}",
                f"-I{firmware / 'tests'}"]
    strict = [firmware / "src" / "frontend.c", firmware / "src" / "status.c", firmware / "generated" / "ekws_frontend_tables.c"]
    lenient = [PORT / "startup.c", PORT / "semihost.c", PORT / "libc_min.c", PORT / "bench_frontend.c"]
    for src in strict + lenient:
        obj = build_dir / (src.stem + ".o")
        flags = STRICT if src in strict else LENIENT
        run(["arm-none-eabi-gcc", *CPU, *flags, *COMMON, *includes, f"-DEKWS_BENCH_HOPS={hops}", "-c", str(src),
             "-o", str(obj)])
        objs.append(str(obj))
    elf = build_dir / "bench_frontend.elf"
    run(["arm-none-eabi-gcc", *CPU, "-nostdlib", "-T", str(PORT / "cortexm.ld"), "-Wl,--gc-sections",
         f"-Wl,-Map={build_dir / 'bench_frontend.map'}", *objs, "-lgcc", "-o", str(elf)])
    plugin = build_dir / "libekwsinsn.so"
    run([host_cc, "-shared", "-fPIC", "-O2", "-o", str(plugin), str(PORT / "qemu_insn_count.c")])
    return elf, plugin


def symbol(elf: Path, name: str) -> str:
    for line in run(["arm-none-eabi-nm", str(elf)]).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return "0x" + parts[0]
    raise RuntimeError(f"{name} not found in {elf}")


def count(elf: Path, plugin: Path, timeout: float = 120.0) -> tuple[str, list[int]]:
    """Run under QEMU; returns (target stdout, instructions per bracketed region)."""
    start, stop = symbol(elf, "ekws_bench_begin"), symbol(elf, "ekws_bench_end")
    cmd = ["timeout", "--foreground", "-k", "5", str(int(timeout)), *QEMU,
           "-plugin", f"{plugin},start={start},stop={stop}", "-kernel", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"target run failed with status {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    regions = [int(n) for n in re.findall(r"^region \d+: (\d+) instructions$", proc.stderr, re.M)]
    return proc.stdout, regions


def sizes(elf: Path) -> str:
    out = run(["arm-none-eabi-size", str(elf)]).stdout.splitlines()
    return out[-1] if out else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hops", type=positive_int, default=50, help="hops to count (default %(default)s)")
    ap.add_argument("--build", type=Path, default=FIRMWARE / "build" / "cortex-m4", help="build folder")
    ap.add_argument("--firmware", type=Path, default=FIRMWARE, help="firmware tree to measure (default: this one)")
    args = ap.parse_args(argv)
    if not (args.firmware / "src" / "frontend.c").is_file():
        ap.error(f"--firmware {args.firmware}: not a firmware tree (no src/frontend.c)")
    try:
        host_cc = require_tools()
    except ToolMissing as exc:
        print(f"qemu_count: missing {exc}", file=sys.stderr)
        return 2
    elf, plugin = build(args.build, args.hops, host_cc, args.firmware)
    stdout, regions = count(elf, plugin)
    if "bit-exact" not in stdout or len(regions) != args.hops:
        print(f"qemu_count: unexpected target output ({len(regions)} regions):\n{stdout}", file=sys.stderr)
        return 1
    hop_ms = 20.0
    med = statistics.median(regions)
    print(f"# C frontend on Cortex-M4 (QEMU mps2-an386, arm-none-eabi-gcc -O2), {args.hops} hops of speech")
    print(f"# {stdout.strip().splitlines()[0]}; text/data/bss/dec: {' '.join(sizes(elf).split()[:4])}")
    print(f"| {'instructions per 20 ms hop':<28} | {'value':>10} |")
    print(f"|{'-' * 30}|{'-' * 12}|")
    print(f"| {'median':<28} | {med:10.0f} |")
    print(f"| {'min':<28} | {min(regions):10d} |")
    print(f"| {'max':<28} | {max(regions):10d} |")
    print(f"| {'MIPS for real time (median)':<28} | {med * 1000.0 / hop_ms / 1e6:10.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
