#!/usr/bin/env python3
"""Where a training batch's making goes: each audio augmentation alone, the whole chain, and the
integer features of the augmented clips, per batch of the default recipe.

A batch of the default recipe augments about 80% of 64 clips (`augment_prob`); each operation runs
on the share of those rows its probability in AugmentConfig gives (formant 0.3, speed 0.6, reverb
0.4, noise 0.8, EQ 0.6, ...), as Augmenter's chain draws them. Runs alternate operation by
operation, round after round, and medians are printed with each one's ratio to the whole chain
(the parts do not add up exactly: the chain also copies rows in and out, clips and draws its
parameters). The clips are edgekws.features.signals.speech_like utterances (seeded).

    python tools/bench_augment.py               # 51 clips, 15 rounds
    python tools/bench_augment.py --quick       # 3 rounds (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgekws, installed or not

from edgekws.cliargs import positive_int, seed  # noqa: E402


def operations(x: np.ndarray, rng: np.random.Generator):
    """(name, share of the rows, function of the batch) for each operation of the chain, then the
    chain itself and the integer features."""
    from edgekws import augment as A
    from edgekws.featcache import float_to_int16
    from edgekws.features import FeatureConfig, compute_features

    c, aug, fc = A.AugmentConfig(), A.Augmenter(), FeatureConfig()
    noises = aug.noises

    def rows(p):
        return x[:max(1, int(round(len(x) * p)))]

    def draw(r, k):
        return rng.uniform(r[0], r[1], k)

    def eq(b):
        k = len(b)
        res = np.exp(rng.uniform(np.log(200.0), np.log(6000.0), (k, c.resonances)))
        return A.equalize(b, draw(c.highpass_hz_range, k), draw(c.lowpass_hz_range, k),
                          draw(c.tilt_db_range, k), res, rng.uniform(*c.resonance_db_range, (k, c.resonances)))

    lim = int(c.shift_max_s * c.sample_rate)
    return [
        ("time shift", c.shift_prob, lambda b: A.time_shift(b, rng.integers(-lim, lim + 1, len(b)))),
        ("formant shift", c.formant_prob, lambda b: A.formant_shift(b, draw(c.formant_range, len(b)))),
        ("speed", c.speed_prob, lambda b: A.speed_perturb(b, draw(c.speed_range, len(b)))),
        ("reverb", c.reverb_prob, lambda b: A.reverberate(b, draw(c.rt60_range, len(b)),
                                                          draw(c.drr_db_range, len(b)), rng)),
        ("noise", c.noise_prob, lambda b: A.add_noise(b, A.sample_noise(noises, len(b), b.shape[1], rng),
                                                      draw(c.snr_db_range, len(b)))),
        ("EQ", c.eq_prob, eq),
        ("mu-law", c.mulaw_prob, A.mu_law),
        ("whole chain", 1.0, lambda b: aug.apply(b, rng)),
        ("integer features", 1.0, lambda b: compute_features(float_to_int16(b), fc)),
    ], rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=positive_int, default=51, help="augmented clips per batch (default 51: 80%% of 64)")
    ap.add_argument("--rounds", type=positive_int, default=15)
    ap.add_argument("--seed", type=seed, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 3
    rng = np.random.default_rng(args.seed)
    from edgekws.features.signals import speech_like

    x = np.stack([speech_like(rng, 1.0) for _ in range(args.clips)]).astype(np.float32) / np.float32(32768)
    ops, rows = operations(x, rng)
    times: dict[str, list[float]] = {name: [] for name, _, _ in ops}
    for _ in range(args.rounds + 1):   # the first round warms caches and is not counted
        for name, p, fn in ops:
            b = rows(p)
            t = time.perf_counter()
            fn(b)
            times[name].append(time.perf_counter() - t)
    med = {k: 1000 * statistics.median(v[1:]) for k, v in times.items()}
    chain = med["whole chain"]
    print(f"# {args.clips} augmented clips of 1 s (a batch of 64 at augment_prob 0.8), medians of "
          f"{args.rounds} rounds, ms per batch")
    print("| operation | rows | ms | ratio to the whole chain |")
    print("|---|---|---|---|")
    for name, p, _ in ops:
        print(f"| {name} | {len(rows(p))} | {med[name]:.2f} | {med[name] / chain:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
