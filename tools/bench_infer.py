#!/usr/bin/env python3
"""Time per inference on this host, single thread, side by side: numpy float, numpy int8,
onnxruntime float, onnxruntime int8 and the C int8 runtime; plus flash (model blob + runtime code
from `size`) and arena bytes.

    python tools/bench_infer.py [MODEL_DIR] [--arch dscnn] [--repeats 200] [--json FILE]

Without MODEL_DIR a seeded random model of --arch (BatchNorm statistics set, calibrated on random
features) is measured: timings depend on the shapes only, not on the trained values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.cliargs import positive_int  # noqa: E402

import numpy as np  # noqa: E402


def _random_model(arch: str):
    """The random model as `edgekws train` would write it (the default's pool taps block 3)."""
    from edgekws.models import architecture_dict, as_written, random_model

    return as_written(random_model(arch, 12, seed=0), architecture_dict(arch, 12))


def median_time(fn, repeats: int) -> float:
    for _ in range(max(3, repeats // 20)):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def code_bytes() -> int | None:
    """text+data of kernels.o + model.o (the C runtime's code) from `size`."""
    fw = ROOT / "firmware"
    try:
        subprocess.run(["make", "-s", "-C", str(fw), "lib"], check=True, capture_output=True)
        objs = [fw / "build/host/obj/src/kernels.o", fw / "build/host/obj/src/model.o"]
        out = subprocess.run(["size", *map(str, objs)], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(int(line.split()[0]) + int(line.split()[1]) for line in out.splitlines()[1:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model bundle (quantized); default: random --arch model")
    ap.add_argument("--arch", default=None, help="architecture of the random model (default: the train default)")
    ap.add_argument("--repeats", type=positive_int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.json:
        from edgekws.fileio import check_output_file

        check_output_file(args.json, "--json")   # before the benchmark, and never over a recording

    from edgekws.export.c import arena_layout, model_blob, tap_bytes
    from edgekws.export.cruntime import CModel
    from edgekws.export.onnx import float_onnx, int8_onnx, run, session
    from edgekws.features import FeatureConfig
    from edgekws.nn import set_num_threads
    from edgekws.quant import dequantize_input, fold_model, int8_forward, quantize_model

    set_num_threads(1)
    fc = FeatureConfig()
    feats = np.random.default_rng(2).integers(-128, 128, (64, 49, 40)).astype(np.int8)
    if args.model:
        from edgekws.bundle import Bundle
        from edgekws.quant import load_float_model, load_quantized

        b = Bundle.load(args.model)
        model, qm, labels, name = load_float_model(b), load_quantized(b), b.labels, str(b.path)
    else:
        from edgekws.models import DEFAULT_ARCH

        args.arch = args.arch or DEFAULT_ARCH
        model = _random_model(args.arch)
        qm = quantize_model(model, feats, fc.input_scale, fc.input_zero_point)
        labels, name = [str(i) for i in range(12)], f"random {args.arch}"
    x1 = feats[:1]
    xf = dequantize_input(x1, fc.input_scale, fc.input_zero_point).reshape(1, *model.input_shape)
    s_float = session(float_onnx(fold_model(model), fc.input_scale, fc.input_zero_point, labels, fc.to_dict()))
    s_int8 = session(int8_onnx(qm, labels, fc.to_dict()))
    blob = model_blob(qm)
    cm = CModel(blob)
    assert np.array_equal(cm.logits_int8(feats), int8_forward(qm, feats)), "C != numpy"
    assert np.array_equal(run(s_int8, feats), int8_forward(qm, feats)), "onnxruntime != numpy"
    engines = {
        "numpy float": lambda: model.forward(xf),
        "numpy int8": lambda: int8_forward(qm, x1),
        "onnxruntime float": lambda: run(s_float, x1),
        "onnxruntime int8": lambda: run(s_int8, x1),
        "C int8": lambda: cm.logits_int8(x1),
    }
    times = {k: median_time(fn, args.repeats) for k, fn in engines.items()}
    act, arena = arena_layout(qm)
    taps = tap_bytes(qm)
    code = code_bytes()
    ref = times["onnxruntime int8"]
    print(f"{name}: time per inference (median of {args.repeats}, 1 thread, batch 1)")
    for k, t in times.items():
        print(f"  {k:<18} {t * 1e3:9.3f} ms   x{ref / t:6.2f} vs onnxruntime int8")
    print(f"flash: model blob {len(blob):,} B + runtime code {code if code is not None else '?'} B; "
          f"arena {arena:,} B ({act:,} activations + {taps:,} taps + {arena - act - taps:,} scratch)")
    if args.json:
        from edgekws.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({"model": name, "seconds": times, "blob_bytes": len(blob),
                                                 "code_bytes": code, "arena_bytes": arena}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from edgekws.cliargs import run_tool

    raise SystemExit(run_tool(main, "bench_infer.py"))
