#!/usr/bin/env python3
"""Resources of on-device last-layer retraining: RAM, flash and time to retrain the head on
10 words x 10 examples (host ms for the numpy and C engines; with --qemu, instruction counts of
the Cortex-M example under QEMU, whose head and predictions must equal the numpy engine's).

    python tools/bench_retrain.py                                  # host figures
    python tools/bench_retrain.py --qemu                           # + Cortex-M4F under QEMU (features)
    python tools/bench_retrain.py --qemu --example                 # the CI example: training from audio
    python tools/bench_retrain.py --model M --data D --qemu --example --json F

Without --model the backbone is the default DS-CNN with random weights (resources do not depend
on the weights); without --data a quick English dataset is synthesized (edgekws synth --quick).
With --example the MCU collects the embeddings from 1 s audio clips (frontend + backbone) and
--shots defaults to 3 (flash holds the audio); otherwise it starts from int8 features.
Exit status: 0 ok, 1 a QEMU run did not match the numpy engine, 2 a missing tool.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.cliargs import positive_int  # noqa: E402
from edgekws.retrain import (Backbone, HeadConfig, blob_size, fit_head, pick_shots, store_size, train_size,  # noqa: E402
                             workspace_size)

EXAMPLE = ROOT / "firmware" / "examples" / "cortex-m-retrain"
PORT = ROOT / "firmware" / "ports" / "cortex-m"
QEMU_FLAGS = ["-display", "none", "-monitor", "none", "-serial", "none", "-chardev", "stdio,id=sh0",
              "-semihosting-config", "enable=on,target=native,chardev=sh0"]
REGIONS = ("collect embeddings", "imprint + SGD epochs", "quantize + load blob", "classify test clips")


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}")
    return proc


def get_backbone(model: str | None, seed: int = 0):
    """(Backbone, base labels, base head weight, base head bias)."""
    from edgekws.bundle import Bundle
    from edgekws.features import FeatureConfig
    from edgekws.models import DEFAULT_ARCH, architecture_dict, as_written, layers_from_architecture
    from edgekws.nn import Sequential
    from edgekws.quant import quantize_model

    if model:
        b = Bundle.load(model)
        bb = Backbone.from_bundle(b)
        w = b.read_npz("weights.npz")
        name = b.manifest["architecture"]["layers"][-1]["name"]
        return bb, b.labels, w[f"{name}.weight"], w[f"{name}.bias"]
    # the default as `edgekws train` writes it: block 4's average + block 3's (retrain tap), 192 values
    plain = architecture_dict(DEFAULT_ARCH, 12)
    net = as_written(Sequential(layers_from_architecture(plain), plain["input_shape"],
                                rng=np.random.default_rng(seed)), plain)
    fc = FeatureConfig()
    calib = np.random.default_rng(seed + 1).integers(-128, 60, (64, 49, 40)).astype(np.int8)
    return Backbone.from_quantized(quantize_model(net, calib, fc.input_scale, fc.input_zero_point)), [], None, None


def get_data(data: str | None, build: Path) -> Path:
    if data:
        return Path(data)
    out = build / "synth-en-quick"
    if not (out / "synth_manifest.json").is_file():
        from edgekws.synth.generator import synthesize_dataset

        synthesize_dataset(out, "en", quick=True, seed=3, overwrite=True)
    return out


def split(data: Path, words, seed: int = 0):
    """(train SplitArrays, test SplitArrays, label names); test falls back to train clips not used."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.features import FeatureConfig

    ds = load_dataset(data, words)
    cache = FeatureCache(default_cache_dir(data), FeatureConfig())
    return split_arrays(ds, "train", cache, seed=seed), split_arrays(ds, "test", cache, seed=seed), list(ds.labels)


def host_figures(bb, feats, labels, n_classes, epochs, init, repeats=3) -> dict:
    from edgekws.export.c import arena_layout

    out = {}
    t0 = time.perf_counter()
    emb = bb.embed(feats, "numpy")
    out["embed_ms_per_clip_numpy"] = 1e3 * (time.perf_counter() - t0) / len(feats)
    bb.embed(feats[:1], "c")
    t0 = time.perf_counter()
    emb_c = bb.embed(feats, "c")
    out["embed_ms_per_clip_c"] = 1e3 * (time.perf_counter() - t0) / len(feats)
    assert np.array_equal(emb, emb_c), "C and numpy embeddings differ"
    for engine in ("numpy", "c"):
        times = []
        for _ in range(repeats):
            head = fit_head(emb, labels, n_classes, bb.scale, bb.zero_point, epochs=epochs, engine=engine, init=init)
            times.append(head.seconds)
        out[f"train_ms_{engine}"] = 1e3 * float(np.median(times))
        out[f"blob_{engine}"] = head.qhead.blob().hex()
    out["same_blob"] = out.pop("blob_numpy") == out.pop("blob_c")
    e = emb.shape[1]
    arena, store, train = arena_layout(bb.quant_model())[1], store_size(n_classes, e, len(labels)), \
        train_size(n_classes, e)
    # the example's RAM for retraining: the training memory overlays the arena when it fits (main.c)
    out.update(n_examples=len(labels), n_classes=n_classes, embed_size=e, epochs=epochs,
               workspace_bytes=workspace_size(n_classes, e, len(labels)), store_bytes=store, train_bytes=train,
               retrain_ram_bytes=arena + store + (0 if train <= arena else train),
               head_blob_bytes=blob_size(n_classes, e, False), head_blob_float_bytes=blob_size(n_classes, e, True),
               backbone_arena_bytes=arena)
    return out


def head_code_bytes() -> int | None:
    """.text + .data of head.c compiled for Cortex-M4F (-O2), if arm-none-eabi-gcc is there."""
    if not shutil.which("arm-none-eabi-gcc"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "head.o"
        _run(["arm-none-eabi-gcc", "-std=c99", "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
              "-mfpu=fpv4-sp-d16", "-ffreestanding", "-ffp-contract=off",
              f"-I{ROOT / 'firmware/include'}", f"-I{PORT / 'include'}",
              "-c", ROOT / "firmware/src/head.c", "-o", obj])
        text, data, _ = (int(x) for x in _run(["arm-none-eabi-size", obj]).stdout.splitlines()[-1].split()[:3])
        return text + data


def qemu_run(case, board: str, build: Path) -> dict:
    from edgekws.fileio import atomic_write_text
    from edgekws.retrain.device import device_sources

    data_dir = build / "data"
    for name, text in device_sources(case).items():
        atomic_write_text(data_dir / name, text)
    out = build / board
    _run(["make", "-C", EXAMPLE, f"BOARD={board}", f"DATA={data_dir}", f"BUILD={out}", "all"])
    elf = out / "retrain.elf"
    text, data, bss = (int(x) for x in _run(["arm-none-eabi-size", elf]).stdout.splitlines()[-1].split()[:3])
    syms = {p[2]: p[0] for p in (line.split() for line in _run(["arm-none-eabi-nm", elf]).stdout.splitlines())
            if len(p) == 3}
    plugin = build / "libekwsinsn.so"
    if not plugin.is_file():
        cc = next(c for c in ("cc", "gcc", "clang") if shutil.which(c))
        _run([cc, "-shared", "-fPIC", "-O2", "-o", plugin, PORT / "qemu_insn_count.c"])
    machine = {"an386": "mps2-an386", "an385": "mps2-an385"}[board]
    cmd = ["timeout", "--foreground", "-k", "5", "600", "qemu-system-arm", "-M", machine, *QEMU_FLAGS,
           "-plugin", f"{plugin},start=0x{syms['ekws_bench_begin']},stop=0x{syms['ekws_bench_end']}",
           "-kernel", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    regions = [int(n) for n in re.findall(r"^region \d+: (\d+) instructions$", proc.stderr, re.M)]
    preds = re.findall(r"^predict (\d+) (\S+)$", proc.stdout, re.M)
    acc = re.search(r"^accuracy (\d+)/(\d+)$", proc.stdout, re.M)
    return {"board": board, "status": proc.returncode, "match": proc.returncode == 0,
            "stdout": proc.stdout, "text": text, "data": data, "bss": bss,
            "flash_bytes": text + data, "ram_bytes": data + bss + 16 * 1024,
            "regions": dict(zip(REGIONS, regions)), "predictions": len(preds),
            "accuracy": (int(acc.group(1)), int(acc.group(2))) if acc else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="base model bundle (quantized); default: the default architecture, random weights")
    ap.add_argument("--data", help="dataset folder of the new words; default: synthesized quick English")
    ap.add_argument("--words", default="yes,no,up,down,left,right,on,off,stop,go")
    ap.add_argument("--shots", type=positive_int, help="examples per word (default 10; 3 with --example)")
    ap.add_argument("--epochs", type=positive_int, default=30)
    ap.add_argument("--qemu", action="store_true", help="also build and run the Cortex-M example under QEMU")
    ap.add_argument("--example", action="store_true", help="the MCU computes embeddings from embedded audio")
    ap.add_argument("--boards", default="an386", help="comma-separated: an386 (M4F), an385 (M3)")
    ap.add_argument("--test-per-class", type=positive_int, default=1, help="test clips per class embedded (default 1)")
    ap.add_argument("--negatives", action="store_true",
                    help="also `shots` examples of _silence_ and _unknown_ (as edgekws retrain takes them); "
                         "default: the command words only, the other rows start from the base head")
    ap.add_argument("--build", type=Path, default=ROOT / "firmware" / "build" / "qemu-retrain")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.json:
        from edgekws.fileio import check_output_file

        check_output_file(args.json, "--json")   # before the benchmark, and never over a recording
    shots = args.shots or (3 if args.example else 10)
    words = [w for w in args.words.split(",") if w]
    args.build.mkdir(parents=True, exist_ok=True)

    from edgekws.retrain.core import base_rows

    bb, base_labels, bw, bbias = get_backbone(args.model)
    data = get_data(args.data, args.build)
    tr, te, names = split(data, words)
    # the examples: `shots` clips of each command word (silence/unknown keep the base rows), or of
    # every class with --negatives
    pool = np.flatnonzero([args.negatives or names[y] not in ("_silence_", "_unknown_") for y in tr.labels])
    idx = pool[pick_shots(tr.labels[pool], shots, seed=0)]
    init = base_rows(bw, bbias, base_labels, names, bb.embed_size)
    results = {"host": host_figures(bb, tr.features[idx], tr.labels[idx], len(names), args.epochs, init),
               "shots": shots, "words": words, "negatives": args.negatives,
               "model": args.model or "random-weight default model", "data": str(data)}
    h = results["host"]
    code = head_code_bytes()
    results["head_code_bytes_m4"] = code
    what = "classes" if args.negatives else "words"
    print(f"# retraining a {h['n_classes']}-class head ({len(np.unique(tr.labels[idx]))} {what} x {shots} examples = "
          f"{h['n_examples']}), "
          f"embedding {h['embed_size']}, {h['epochs']} epochs; base: {results['model']}")
    print("| what | value |\n|---|---|")
    arena, store, train = h["backbone_arena_bytes"], h["store_bytes"], h["train_bytes"]
    overlay = train <= arena
    print(f"| head trainer: example store (RAM) | {store:,} B |")
    print(f"| head trainer: float32 training memory | {train:,} B "
          f"({'overlays the idle arena' if overlay else 'larger than the arena: beside it'}) |")
    print(f"| backbone arena (RAM, shared with inference) | {arena:,} B |")
    print(f"| retraining RAM: arena + store{'' if overlay else ' + training memory'} "
          f"(one-block workspace instead: {arena + h['workspace_bytes']:,} B) | {h['retrain_ram_bytes']:,} B |")
    print(f"| head blob (flash): int8 / int8 + float32 | {h['head_blob_bytes']:,} B / "
          f"{h['head_blob_float_bytes']:,} B |")
    if code is not None:
        print(f"| head.c code (Cortex-M4F, -O2) | {code:,} B |")
    print(f"| host: embedding per clip, numpy / C | {h['embed_ms_per_clip_numpy']:.2f} ms / "
          f"{h['embed_ms_per_clip_c']:.2f} ms |")
    print(f"| host: imprint + {h['epochs']} epochs + quantize, numpy / C | {h['train_ms_numpy']:.1f} ms / "
          f"{h['train_ms_c']:.2f} ms |")
    print(f"| C head == numpy head (blob bytes) | {'yes' if h['same_blob'] else 'NO'} |")
    ok = h["same_blob"]
    if args.qemu:
        missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "make")
                   if shutil.which(t) is None]
        if missing:
            print(f"bench_retrain: --qemu needs {', '.join(missing)} (apt-get install -y --no-install-recommends "
                  "gcc-arm-none-eabi qemu-system-arm)", file=sys.stderr)
            return 2
        from edgekws.retrain.device import DeviceCase

        test_idx = np.flatnonzero(np.ones(len(te.labels), bool))
        test_src = te if len(te.labels) else tr
        if not len(te.labels):  # no test speakers: clips of the train split not used for training
            test_idx = np.setdiff1d(np.arange(len(tr.labels)), idx)
        test_idx = test_idx[pick_shots(test_src.labels[test_idx], args.test_per_class, seed=1)]
        cfg = HeadConfig(len(names), bb.embed_size, max_examples=len(idx), seed=1)
        train = tr.audio[idx] if args.example else tr.features[idx]
        case = DeviceCase(bb, train, tr.labels[idx], test_src.audio[test_idx], test_src.labels[test_idx], names,
                          cfg, args.epochs, *init).compute()
        results["qemu"] = []
        for board in args.boards.split(","):
            r = qemu_run(case, board.strip(), args.build)
            ok &= r["match"]
            results["qemu"].append({k: v for k, v in r.items() if k != "stdout"})
            if not r["match"]:
                print(r["stdout"], file=sys.stderr)
            reg = r["regions"]
            src = "audio (frontend + backbone)" if args.example else "int8 features (backbone)"
            print(f"| QEMU {board}: collect {len(idx)} embeddings from {src} | "
                  f"{reg.get(REGIONS[0], 0):,} instructions |")
            print(f"| QEMU {board}: imprint + {args.epochs} epochs | {reg.get(REGIONS[1], 0):,} instructions "
                  f"(~{reg.get(REGIONS[1], 0) / 80e6:.2f} s at 80 MHz, 1 instruction/cycle) |")
            print(f"| QEMU {board}: quantize + load head blob | {reg.get(REGIONS[2], 0):,} instructions |")
            print(f"| QEMU {board}: firmware flash / RAM (incl. 16 KiB stack and embedded clips) | "
                  f"{r['flash_bytes']:,} B / {r['ram_bytes']:,} B |")
            a = r["accuracy"]
            if a:
                print(f"| QEMU {board}: head blob CRC and test predictions == numpy | "
                      f"{'yes' if r['match'] else 'NO'} ({a[0]}/{a[1]} test clips correct) |")
            else:
                print(f"| QEMU {board}: run failed | status {r['status']} |")
    if args.json:
        from edgekws.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    from edgekws.cliargs import run_tool

    raise SystemExit(run_tool(main, "bench_retrain.py"))
