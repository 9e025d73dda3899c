#!/usr/bin/env python3
"""A judging set of English voices from engines that never train edgekws: Flite and Festival.

    python tools/judge_voices.py --out JUDGE [--variants 6] [--unknown 6] [--seed 0]
    python tools/judge_voices.py --judge JUDGE MODEL [MODEL ...] [--json FILE]
    edgekws eval MODEL JUDGE --split all          # the same clean accuracy, with the confusions

Training data comes only from eSpeak NG, Open JTalk and people's own recordings; other speech
engines are kept aside for judging. This writes a dataset folder in the usual layout
(JUDGE/<word>/<speaker>_nohash_<n>.wav, 16 kHz mono int16, 1.0 s, speech at a random offset and
level; JUDGE/_background_noise_/ white and pink noise and a babble of these voices) spoken by every English voice of
the Debian packages `flite` (kal, kal16, awb, rms, slt) and `festival` with `festvox-kallpc16k`,
`festvox-kdlpc16k`, `festvox-us-slt-hts` (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts): five
people's voices through three kinds of synthesis (diphone, cluster-unit/HTS-like, HMM).
Each voice speaks as --variants pseudo-speakers (speaking rate x0.8-1.3; Flite also its mean
pitch x0.85-1.2) the ten commands and --unknown of the unknown words each. Every random choice
comes from --seed. --judge prints each model's accuracy (int8 when the bundle is quantized), 12
classes balanced as `edgekws eval` balances them, clean, with babble of the judging voices and with
pink noise at 10 dB below the speech (noise on the word clips), and clean per voice. Install: `apt-get install --no-install-recommends flite festival
festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.audio import SAMPLE_RATE, read_wav, resample, write_wav  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.fileio import atomic_write_text, cannot_make_folder, check_output_file  # noqa: E402
from edgekws.synth import noise  # noqa: E402
from edgekws.synth.generator import MAX_SPEECH, NOISE_DIR, place_in_second, trim_silence  # noqa: E402
from edgekws.synth.words import COMMANDS, unknown_words  # noqa: E402

# (engine, voice, mean F0 in Hz for Flite's pitch setting; None: the voice's own)
VOICES = (("flite", "kal", 105.0), ("flite", "kal16", 105.0), ("flite", "awb", 110.0),
          ("flite", "rms", 105.0), ("flite", "slt", 170.0),
          ("festival", "kal_diphone", None), ("festival", "ked_diphone", None),
          ("festival", "cmu_us_slt_arctic_hts", None))


def speak(engine: str, voice: str, text: str, stretch: float, f0: float | None, tmp: Path) -> np.ndarray:
    """One word by Flite or Festival -> (n,) float64 at 16 kHz, trimmed, peak 1."""
    wav = tmp / "say.wav"
    if engine == "flite":
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(wav), "--setf", f"duration_stretch={stretch:.3f}"]
        if f0 is not None:
            cmd += ["--setf", f"int_f0_target_mean={f0:.1f}"]
        subprocess.run(cmd, check=True, capture_output=True)
    else:
        subprocess.run(["text2wave", "-o", str(wav), "-eval", f"(voice_{voice})",
                        "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"],
                       input=text.encode(), check=True, capture_output=True)
    x = read_wav(wav, sr=SAMPLE_RATE, dtype="float32").astype(np.float64)
    y = trim_silence(x, SAMPLE_RATE)
    if len(y) > MAX_SPEECH:
        y = resample(y, len(y), MAX_SPEECH)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 0:
        raise EdgekwsError(f"{engine} voice {voice} produced silence for {text!r}")
    return y / peak


def judge(data, models, json_out=None) -> list[dict]:
    """Accuracy of each model bundle on the judging set: clean, babble and pink at 10 dB, per voice."""
    from edgekws.bundle import Bundle
    from edgekws.data import load_dataset
    from edgekws.evaluate import load_model
    from edgekws.voices import held_out_sets

    ds = load_dataset(data, list(COMMANDS))
    # the examples in held_out_sets' order (split_arrays: the word clips of select(), then silence)
    clips = ds.select("all", seed=0)
    clips = [c for c in clips if c.path is not None] + [c for c in clips if c.path is None]
    voice = np.array([c.speaker.rsplit("-", 1)[0] if c.path is not None else "" for c in clips])
    truth_names = np.array(ds.labels)
    sets_by_config = {}                       # the test sets, built once per feature configuration
    results = []
    for path in models:
        bundle = Bundle.load(path)
        km = load_model(bundle, "int8" if bundle.has("int8.npz") else "float")
        key = json.dumps(bundle.manifest["feature_config"], sort_keys=True)
        if key not in sets_by_config:
            sets_by_config[key] = held_out_sets(data, km.feature_config, seed=0)
        sets = sets_by_config[key]
        row = {"model": str(path), "engine": km.engine_name}
        model_names = np.array(km.labels)
        for name in ("clean", "babble 10dB", "pink 10dB"):
            x, y = sets[name]
            pred = model_names[km.engine.logits_features(x).argmax(1)]     # compared by label name
            y = truth_names[y]
            row[name] = float(np.mean(pred == y))
            if name == "clean":
                row["voices"] = {v: float(np.mean(pred[voice == v] == y[voice == v]))
                                 for v in sorted(set(voice) - {""})}
        results.append(row)
    voices = list(results[0]["voices"]) if results else []
    print("| model | clean | babble 10 dB | pink 10 dB | " + " | ".join(voices) + " |")
    print("|---" * (4 + len(voices)) + "|")
    for r in results:
        print(f"| {r['model']} ({r['engine']}) | " + " | ".join(f"{100 * r[k]:.1f}" for k in
              ("clean", "babble 10dB", "pink 10dB")) + " | " + " | ".join(f"{100 * r['voices'][v]:.0f}"
                                                                          for v in voices) + " |")
    if json_out:
        atomic_write_text(json_out, json.dumps(results, indent=1))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="new dataset folder")
    ap.add_argument("--judge", metavar="JUDGE", help="score the MODEL bundles on this judging set")
    ap.add_argument("models", nargs="*", metavar="MODEL")
    ap.add_argument("--json", help="with --judge: write the results here")
    ap.add_argument("--variants", type=int, default=6, help="pseudo-speakers per voice (default 6)")
    ap.add_argument("--unknown", type=int, default=6, help="unknown words per pseudo-speaker (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n_unknown = len(unknown_words("en"))
    if args.variants < 1:
        ap.error(f"--variants must be at least 1, got {args.variants}")
    if not 1 <= args.unknown <= n_unknown:   # the unknown words also make the babble noise
        ap.error(f"--unknown must be in [1, {n_unknown}] (the English unknown words), got {args.unknown}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        if args.judge:
            if not args.models:
                ap.error("--judge needs at least one MODEL")
            if args.json:
                check_output_file(args.json, "--json", ((args.judge, "JUDGE"),))
            judge(args.judge, args.models, args.json)
            return 0
        if not args.out:
            ap.error("--out (make a judging set) or --judge (score models) is required")
        return make_set(args)
    except EdgekwsError as exc:
        print(f"judge_voices: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        cmd = " ".join(map(str, exc.cmd)) if isinstance(exc.cmd, (list, tuple)) else str(exc.cmd)
        print(f"judge_voices: error: `{cmd}` failed (exit {exc.returncode}); is that voice's package installed? "
              "(apt-get install --no-install-recommends flite festival festvox-kallpc16k festvox-kdlpc16k "
              "festvox-us-slt-hts)", file=sys.stderr)
        return 2


def make_set(args) -> int:
    """Synthesize the judging set into a hidden folder beside --out, renamed to --out when complete:
    a failing voice leaves nothing behind, and the same command runs again."""
    missing = [t for t in ("flite", "text2wave") if shutil.which(t) is None]
    if missing:
        print(f"judge_voices: {', '.join(missing)} not found; apt-get install --no-install-recommends flite "
              "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts", file=sys.stderr)
        return 2
    final = Path(args.out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        what = "is a file" if not final.is_dir() else "exists and is not empty"
        print(f"judge_voices: --out {final} {what}; choose a new folder", file=sys.stderr)
        return 2
    if problem := cannot_make_folder(final.parent):
        print(f"judge_voices: --out {final}: cannot be made ({problem})", file=sys.stderr)
        return 2
    out = final.parent / f".{final.name}.partial"
    if out.exists():
        shutil.rmtree(out)
    unknown = [w.label for w in unknown_words("en")]
    rows, babble_words = [], []
    try:
        with tempfile.TemporaryDirectory() as td:
            for vi, (engine, voice, f0) in enumerate(VOICES):
                for k in range(args.variants):
                    rng = np.random.default_rng([args.seed, vi, k])
                    stretch = float(rng.uniform(0.8, 1.3))
                    pitch = None if f0 is None else float(f0 * rng.uniform(0.85, 1.2))
                    spk = f"{engine}-{voice.replace('_', '-')}-{k}"
                    words = list(COMMANDS) + [unknown[i] for i in rng.choice(len(unknown), args.unknown, replace=False)]
                    for word in words:
                        speech = speak(engine, voice, word, stretch, pitch, Path(td))
                        if word not in COMMANDS:
                            babble_words.append(speech)
                        clip, offset, peak = place_in_second(speech.astype(np.float32), rng)
                        rel = f"{word}/{spk}_nohash_0.wav"
                        write_wav(out / rel, clip)
                        rows.append({"path": rel, "word": word, "engine": engine, "voice": voice, "speaker": spk,
                                     "duration_stretch": round(stretch, 3),
                                     "f0_mean": None if pitch is None else round(pitch, 1),
                                     "offset_s": round(offset / SAMPLE_RATE, 4), "peak": round(peak, 4)})
                print(f"{engine} {voice}: {args.variants} pseudo-speakers", file=sys.stderr)
        rng = np.random.default_rng([args.seed, 0x0015E])
        write_wav(out / NOISE_DIR / "white.wav", noise.white(30 * SAMPLE_RATE, rng))
        write_wav(out / NOISE_DIR / "pink.wav", noise.pink(30 * SAMPLE_RATE, rng))
        write_wav(out / NOISE_DIR / "babble.wav", noise.babble(babble_words, 30 * SAMPLE_RATE, rng))
        atomic_write_text(out / "judge_manifest.json", json.dumps(
            {"format": "edgekws-judge-voices", "seed": args.seed, "variants": args.variants,
             "voices": [list(v) for v in VOICES], "clips": rows}, indent=1))
        if final.is_dir():
            final.rmdir()          # empty (checked above)
        os.replace(out, final)
    finally:
        if out.exists():
            shutil.rmtree(out)
    print(f"{final}: {len(rows)} clips of {len(VOICES) * args.variants} pseudo-speakers "
          f"({len(VOICES)} voices x {args.variants})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    raise SystemExit(main())
