#!/usr/bin/env python3
"""The leave-one-engine-out table of issue 11, and the table of levers measured on it.

    python tools/eval_voices.py --prepare --work runs/voices                 # the benchmark table
    python tools/eval_voices.py --work runs/voices --levers all --langs ja   # lever table (Japanese)

--prepare synthesizes what is missing under WORK/data: ja160 and en160 (160 speakers, both engines,
seed 11; English through Open JTalk is katakana English), and for the levers ja400 (more speakers)
and ja160w (the same speakers with wider voice ranges, see `wide_speakers`). Each run trains with
edgekws.train.train (default DS-CNN) on one engine and tests on the other (edgekws.voices): clean,
and at 10 dB SNR with pink noise and with babble of the held-out engine (both kept out of training,
which sees white, brown, hum and its own engine's babble). `--enroll 3` adds the enrollment columns.
Results: printed Markdown tables; every number in --json (default WORK/voices.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws import cliargs  # noqa: E402
from edgekws.fileio import atomic_write_text, check_output_file  # noqa: E402
from edgekws.train import NO_AUGMENT  # noqa: E402
from edgekws.voices import benchmark, format_table, summarize  # noqa: E402

SYNTH_SEED = 11
STRONG = {"formant_prob": 0.8, "formant_range": [0.8, 1.25], "speed_prob": 0.8, "speed_range": [0.8, 1.25]}
NOISY = {**STRONG, "noise_prob": 0.95, "snr_db_range": [0.0, 20.0]}

# name -> (dataset key, train options, AugmentConfig fields or None, test dataset key or None)
LEVERS = {
    "A default": ("160", {}, None, None),
    "B no augmentation, no SpecAugment": ("160", NO_AUGMENT, None, None),
    "C strong formant + speed warping": ("160", {}, STRONG, None),
    "D C + noise 0-20 dB in 95% of clips": ("160", {}, NOISY, None),
    "E 400 speakers instead of 160": ("400", {}, None, "160"),
    "F wider rate/pitch/range voices": ("160w", {}, None, "160"),
    "G no SpecAugment": ("160", {"specaugment": False}, None, None),
    "H no label smoothing, no weight decay": ("160", {"label_smoothing": 0.0, "weight_decay": 0.0}, None, None),
    "I 50 epochs (patience 50) instead of 25": ("160", {"epochs": 50, "patience": 50}, None, None),
    "J 400 speakers + 2 WORLD-vocoder voices per eSpeak speaker": ("400world", {}, None, "160"),
    "K time warp of 80% of examples (parts x0.5-2)": ("160", {"time_warp": 0.8}, None, None),
    "L no band shift (the default shifts 50% of examples by up to 4 bands)": ("160", {"freq_shift": 0.0}, None, None),
    "M no spectral tilt (the default tilts 50% of examples by up to ±6 dB at the band edges)": ("160", {"tilt": 0.0}, None, None),
}


def wide_speakers(lang, n, engines, seed, variants=()):
    """edgekws.synth's speakers with wider voice ranges: eSpeak NG rate 80-260, pitch and pitch
    range 0-99; Open JTalk half-tone -14..+8, all-pass alpha 0.40-0.70, speed 0.65-1.35."""
    from edgekws.synth.voices import Speaker, make_speakers

    out = []
    for s in make_speakers(lang, n, engines, seed, variants):
        rng = np.random.default_rng([seed, 77, int(s.id[-4:]), len(s.id)])
        p = dict(s.params)
        if s.engine == "espeak":
            p.update(rate=int(rng.integers(80, 260, endpoint=True)), pitch=int(rng.integers(0, 99, endpoint=True)),
                     prange=int(rng.integers(0, 99, endpoint=True)))
        else:
            p.update(half_tone=round(float(rng.uniform(-14, 8)), 2), alpha=round(float(rng.uniform(0.40, 0.70)), 2),
                     speed=round(float(rng.uniform(0.65, 1.35)), 3))
        out.append(Speaker(s.id, s.engine, p))
    return out


def prepare(work: Path, lang: str, key: str) -> Path:
    """WORK/data/<lang><key>: synthesized (both engines) if missing."""
    import edgekws.synth.generator as gen
    from edgekws.synth import synthesize_dataset

    out = work / "data" / f"{lang}{key}"
    if (out / "synth_manifest.json").is_file():
        return out
    if key.endswith("world"):  # WORLD resynthesis of the eSpeak clips (tools/world_variants.py)
        import subprocess

        base = prepare(work, lang, key[:-len("world")])
        subprocess.run([sys.executable, str(ROOT / "tools" / "world_variants.py"), str(base), str(out),
                        "--variants", "2", "--engine", "espeak", "--seed", str(SYNTH_SEED)], check=True)
        return out
    speakers = int(key.rstrip("w"))
    saved = gen.make_speakers
    if key.endswith("w"):
        gen.make_speakers = wide_speakers      # synth has no option for voice ranges yet
    try:
        synthesize_dataset(out, lang, speakers=speakers, engines=("espeak", "openjtalk"), seed=SYNTH_SEED,
                           overwrite=True)
    finally:
        gen.make_speakers = saved
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for data, views, models, caches")
    ap.add_argument("--langs", default="ja,en")
    ap.add_argument("--levers", help="comma-separated lever letters (A,B,...) or 'all'; default: the benchmark (A)")
    ap.add_argument("--seeds", type=cliargs.seed_list, default=(0,), help="comma-separated seeds (default 0)")
    ap.add_argument("--epochs", type=cliargs.positive_int, default=25)
    ap.add_argument("--enroll", type=cliargs.positive_int, help="enroll K clips per class of the held-out engine")
    ap.add_argument("--prepare", action="store_true", help="synthesize missing datasets")
    ap.add_argument("--json", help="results file (default WORK/voices.json)")
    args = ap.parse_args()
    work = Path(args.work)
    langs = [s for s in args.langs.split(",") if s]
    seeds = args.seeds
    asked = (args.levers or "A").split(",")
    letters = {n[0] for n in LEVERS}
    if args.levers != "all" and (unknown := [x for x in asked if x not in letters]):
        ap.error(f"--levers: unknown lever(s) {', '.join(unknown)} (choose from {', '.join(sorted(letters))} or all)")
    wanted = list(LEVERS) if args.levers == "all" else [n for n in LEVERS if n[0] in asked]
    out = Path(args.json) if args.json else work / "voices.json"
    check_output_file(out, "--json")   # before hours of training, and never over a recording
    if out.is_file() and out.stat().st_size:   # replaced only when it is an earlier result of this tool
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            old = None
        if not (isinstance(old, dict) and all(isinstance(v, dict) and "runs" in v for v in old.values())):
            ap.error(f"--json {out}: exists and is not an earlier result of this tool; choose another file or remove it")
    results = {}
    for name in wanted:
        key, opts, aug, test_key = LEVERS[name]
        data, test = {}, {}
        for lang in langs:
            path = work / "data" / f"{lang}{key}"
            data[lang] = prepare(work, lang, key) if args.prepare else path
            if test_key:
                test[lang] = prepare(work, lang, test_key) if args.prepare else work / "data" / f"{lang}{test_key}"
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        res = benchmark(data, work / "runs" / name.split()[0], seeds=seeds, enroll=args.enroll,
                        augment_config=aug, test_datasets=test or None, log=lambda *a: print(*a, flush=True),
                        **{"epochs": args.epochs, **opts})
        res["wall_s"] = round(time.perf_counter() - t0)
        results[name] = res
        print(format_table(res), flush=True)
    print("\nlever table (mean over seeds; accuracy %, 12 classes)")
    print(lever_table(results))
    atomic_write_text(out, json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


def lever_table(results: dict) -> str:
    """One row per lever: each (lang, direction) × (clean, worst 10 dB)."""
    cols, rows = [], []
    for name, res in results.items():
        cells = {}
        for r in summarize(res):
            d = f"{r['lang']} {r['train'][:4]}→{r['test'][:4]}"
            noisy = min(v["mean"] for k, v in r["sets"].items() if k != "clean")
            cells[d] = f"{100 * r['sets']['clean']['mean']:.1f} / {100 * noisy:.1f}"
            if d not in cols:
                cols.append(d)
        rows.append((name, cells))
    lines = ["| lever | " + " | ".join(f"{c} clean / 10 dB" for c in cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {n} | " + " | ".join(c.get(k, "") for k in cols) + " |" for n, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    from edgekws.cliargs import run_tool

    raise SystemExit(run_tool(main, "eval_voices.py"))
