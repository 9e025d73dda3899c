#!/usr/bin/env python3
"""Write the small English dataset that CI's Cortex-M retraining example learns from
(data/fixtures/en-shots): a few clips of each English command and of other words from an `edgekws synth --lang en`
dataset's training speakers (the examples the device records), test clips of its test speakers
(commands and unknown words), and a short cut of one background noise for `_silence_`.

    python tools/make_retrain_fixture.py --data D_EN --out data/fixtures/en-shots [--shots 3]
        [--test-per-class 2] [--noise pink_noise.wav --noise-seconds 2] [--seed 0]

The folder has the Speech Commands layout with a testing_list.txt (the test clips; every other clip
is a training example), so `edgekws retrain BASE data/fixtures/en-shots --out M` works on it too.
Each clip is copied byte for byte; the choice is drawn with --seed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.data import BACKGROUND_DIR, DEFAULT_WORDS, UNKNOWN, load_dataset  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402


def pick(clips, n: int, rng: np.random.Generator) -> list:
    """n clips, at most one per speaker where possible, in a seeded order."""
    order = rng.permutation(len(clips))
    chosen, speakers = [], set()
    for i in order:
        if clips[i].speaker not in speakers:
            chosen.append(clips[i])
            speakers.add(clips[i].speaker)
        if len(chosen) == n:
            break
    return sorted(chosen, key=lambda c: str(c.path))


def main(argv=None) -> int:
    try:
        return make(argv)
    except EdgekwsError as exc:
        print(f"make_retrain_fixture: {exc}", file=sys.stderr)
        return 2


def make(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="an `edgekws synth --lang en` dataset")
    ap.add_argument("--out", required=True, type=Path, help="folder to write (must not exist)")
    ap.add_argument("--words", default=",".join(DEFAULT_WORDS))
    ap.add_argument("--shots", type=int, default=3, help="training clips per command (default 3)")
    ap.add_argument("--test-per-class", type=int, default=2, help="test clips per command and of unknown words")
    ap.add_argument("--noise", default="pink_noise.wav", help="background noise file of DATA to cut")
    ap.add_argument("--noise-seconds", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.shots < 1 or args.test_per_class < 1 or not args.noise_seconds > 0:
        ap.error("--shots and --test-per-class must be at least 1, --noise-seconds above 0")
    from edgekws.fileio import check_outside

    check_outside(args.out, args.data, "--data")
    if args.out.exists():
        print(f"make_retrain_fixture: {args.out} exists; remove it first", file=sys.stderr)
        return 2
    words = [w for w in args.words.split(",") if w]
    ds = load_dataset(args.data, words)
    if not (args.data / BACKGROUND_DIR / args.noise).is_file():
        raise EdgekwsError(f"{args.data / BACKGROUND_DIR / args.noise}: no such noise file (--noise)")
    rng = np.random.default_rng(args.seed)
    train, test = [], []
    for w in words:
        train += pick([c for c in ds.clips if c.word == w and c.split == "train"], args.shots, rng)
        test += pick([c for c in ds.clips if c.word == w and c.split == "test"], args.test_per_class, rng)
    # unknown words: one clip per word of `shots` words (training) and of test_per_class words (test)
    for split, n, dest in (("train", args.shots, train), ("test", args.test_per_class, test)):
        unknown = [c for c in ds.clips if c.label == UNKNOWN and c.split == split]
        per_word = {}
        for c in pick(unknown, len(unknown), rng):
            per_word.setdefault(c.word, c)
        words_u = sorted(per_word)
        if len(words_u) < n:
            flag = "--shots" if split == "train" else "--test-per-class"
            raise EdgekwsError(f"{args.data}: {len(words_u)} other word(s) in the {split} split, {n} needed "
                               f"({flag} {n}: one clip of a different unknown word each)")
        dest += [per_word[words_u[i]] for i in sorted(rng.choice(len(words_u), n, replace=False))]

    from edgekws.audio import read_wav, write_wav

    noise = read_wav(args.data / BACKGROUND_DIR / args.noise)
    n = int(args.noise_seconds * 16000)
    if n > len(noise):   # before anything is written
        raise EdgekwsError(f"--noise-seconds {args.noise_seconds:g}: {args.noise} is only {len(noise) / 16000:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))   # ours alone, renamed at the end
    for c in train + test:
        (tmp / c.word).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c.path, tmp / c.word / c.path.name)
    (tmp / "testing_list.txt").write_text("".join(f"{c.word}/{c.path.name}\n" for c in test))
    start = int(rng.integers(0, len(noise) - n + 1))
    (tmp / BACKGROUND_DIR).mkdir()
    write_wav(tmp / BACKGROUND_DIR / args.noise, noise[start:start + n])
    tmp.rename(args.out)
    print(f"{args.out}: {len(train)} training clips ({args.shots} per command and of other words), "
          f"{len(test)} test clips, "
          f"{args.noise_seconds:g} s of {args.noise}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
