#!/usr/bin/env python3
"""Build the Cortex-M keyword-spotting example, run it under QEMU and check it against the host.

    python tools/qemu_run.py                         # golden random model, speech-like audio
    python tools/qemu_run.py --model MODEL --audio LONG.wav [--boards an386,an385] [--json F]

For each board (an386: Cortex-M4F hard float on mps2-an386; an385: Cortex-M3 soft float on
mps2-an385) it writes the firmware project (edgekws.export.targets), builds it with
arm-none-eabi-gcc, runs it under qemu-system-arm with the instruction-counting TCG plugin
(firmware/ports/cortex-m/qemu_insn_count.c) and checks that the detections printed by the MCU
equal those of the Python reference (numpy engine) and of the host C library (ctypes). It reports
flash/RAM (arm-none-eabi-size), instructions per inference and per second of audio, and
instructions per multiply-accumulate of the model. QEMU counts instructions, not cycles.
Exit status: 0 all match, 1 a mismatch or failed run, 2 a missing tool.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.errors import EdgekwsError  # noqa: E402

BOARDS = {"an386": ("mps2-an386", "Cortex-M4F"), "an385": ("mps2-an385", "Cortex-M3")}
QEMU = ["-display", "none", "-monitor", "none", "-serial", "none", "-chardev", "stdio,id=sh0",
        "-semihosting-config", "enable=on,target=native,chardev=sh0"]


def missing_tools() -> list[str]:
    need = ["arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "make"]
    out = [t for t in need if shutil.which(t) is None]
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        out.append("a host C compiler")
    return out


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}")
    return proc


def model_macs(qm) -> int:
    """Multiply-accumulates of one inference (conv, depthwise, dense, pooling adds)."""
    total = 0
    for q in qm.layers:
        out = int(np.prod(q.out_shape))
        if q.op == "conv":
            total += out * q.kernel[0] * q.kernel[1] * int(q.in_shape[-1])
        elif q.op in ("depthwise", "avgpool"):
            total += out * q.kernel[0] * q.kernel[1]
        else:
            total += out * int(np.prod(q.in_shape))
    return total


def parse_detections(text: str) -> list[tuple[int, str, int]]:
    return [(int(f), lab, int(s)) for f, lab, s in re.findall(r"^detect (\d+) (\S+) (-?\d+)$", text, re.M)]


def setup_and_audio(model: str | None, audio_path: str | None, seconds: float):
    from edgekws.audio import read_wav
    from edgekws.stream.golden import pipeline_case

    if model is None:
        setup, audio, _ = pipeline_case(seconds=seconds)
        if audio_path:
            audio = read_wav(audio_path, dtype="int16")
        return setup, audio
    from edgekws.bundle import Bundle
    from edgekws.stream.pipeline import StreamSetup

    setup = StreamSetup.from_bundle(Bundle.load(model))
    if not audio_path:
        raise EdgekwsError("--model needs --audio WAV (the test audio to embed)")
    return setup, read_wav(audio_path, dtype="int16")


def run_board(project: Path, board: str, plugin: Path, timeout: int = 300) -> dict:
    machine, core = BOARDS[board]
    _run(["make", "-C", project, f"BOARD={board}", "all", "bin", "hex"])
    elf = project / "build" / board / "kws.elf"
    size = _run(["arm-none-eabi-size", elf]).stdout.splitlines()[-1].split()
    text, data, bss = (int(x) for x in size[:3])
    syms = {p[2]: p[0] for p in (line.split() for line in _run(["arm-none-eabi-nm", elf]).stdout.splitlines())
            if len(p) == 3}
    cmd = ["timeout", "--foreground", "-k", "5", str(timeout), "qemu-system-arm", "-M", machine, *QEMU,
           "-plugin", f"{plugin},start=0x{syms['ekws_bench_begin']},stop=0x{syms['ekws_bench_end']}",
           "-kernel", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    regions = [int(n) for n in re.findall(r"^region \d+: (\d+) instructions$", proc.stderr, re.M)]
    return {"board": board, "machine": machine, "core": core, "status": proc.returncode,
            "detections": parse_detections(proc.stdout), "stdout": proc.stdout,
            "flash_bytes": text + data, "ram_bytes": data + bss + 16 * 1024, "text": text, "data": data,
            "bss": bss, "insn_per_inference": regions[1] if len(regions) > 1 else None,
            "insn_stream": regions[2] if len(regions) > 2 else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="quantized model bundle (default: the golden random dscnn-s model)")
    ap.add_argument("--audio", help="test audio WAV (default: speech-like audio)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of the default audio")
    ap.add_argument("--boards", default="an386,an385", help="comma-separated: an386 (M4F), an385 (M3)")
    ap.add_argument("--build", type=Path, default=ROOT / "firmware" / "build" / "qemu-example")
    ap.add_argument("--extra-cflags", default="", help="EXTRA_CFLAGS for the target build")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    miss = missing_tools()
    if miss:
        print(f"qemu_run: missing {', '.join(miss)} (apt-get install -y --no-install-recommends "
              "gcc-arm-none-eabi qemu-system-arm)", file=sys.stderr)
        return 2
    from edgekws.export.targets import write_cortex_m_project
    from edgekws.stream.pipeline import detect_audio

    setup, audio = setup_and_audio(args.model, args.audio, args.seconds)
    py = [(d.frame, d.label, d.score_q15) for d in detect_audio(setup, audio, "numpy")]
    host = [(d.frame, d.label, d.score_q15) for d in detect_audio(setup, audio, "c")]
    project = args.build / "project"
    if project.exists():
        shutil.rmtree(project)
    write_cortex_m_project(setup, project, audio)
    if args.extra_cflags:
        mk = project / "Makefile"
        mk.write_text(mk.read_text().replace("$(EXTRA_CFLAGS)", args.extra_cflags + " $(EXTRA_CFLAGS)"))
    cc = next(c for c in ("cc", "gcc", "clang") if shutil.which(c))
    plugin = args.build / "libekwsinsn.so"
    _run([cc, "-shared", "-fPIC", "-O2", "-o", plugin, project / "firmware/ports/cortex-m/qemu_insn_count.c"])
    macs = model_macs(setup.qm)
    seconds = len(audio) / setup.feature_config.sample_rate
    results = {"audio_seconds": seconds, "model_macs": macs, "python": py, "host_c": host, "boards": []}
    ok = py == host
    print(f"# {len(py)} detections in {seconds:.1f} s of audio; Python == host C: {py == host}")
    print(f"| board | core | flash B | RAM B | instructions / inference | instructions / MAC | "
          f"M instructions / s of audio | detections == Python |")
    print("|---|---|---|---|---|---|---|---|")
    for board in args.boards.split(","):
        r = run_board(project, board.strip(), plugin)
        match = r["status"] == 0 and r["detections"] == py
        ok &= match
        r["match"] = match
        ipi = r["insn_per_inference"]
        per_mac = ipi / macs if ipi else float("nan")
        mips = r["insn_stream"] / seconds / 1e6 if r["insn_stream"] else float("nan")
        print(f"| {r['machine']} | {r['core']} | {r['flash_bytes']:,} | {r['ram_bytes']:,} | {ipi:,} | "
              f"{per_mac:.2f} | {mips:.1f} | {'yes' if match else 'NO'} |")
        if not match:
            print(r["stdout"], file=sys.stderr)
        results["boards"].append({k: v for k, v in r.items() if k != "stdout"})
    print(f"# model: {macs:,} MACs per inference; RAM includes the 16 KiB stack; flash = text + data")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
