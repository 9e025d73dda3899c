#!/usr/bin/env python3
"""Training epoch of the default recipe: batches made in the training process vs made ahead of it
by forked worker processes (edgekws.train.BatchPipeline), on the same data, same seed.

An epoch of `edgekws train` = draw the epoch's examples (with --hard-negatives, scored from epoch 2) -> for each
batch: augment audio, compute integer features, SpecAugment (the batch maker) -> forward, backward,
AdamW (the training step) -> validation. With --workers 0 both halves share one core; with 1 the
batch maker runs on the other core, ahead of the step; with 2 (one more process than cores) a core
the training process leaves idle while it waits for a batch, or while it validates, makes batches
too. Runs alternate 0 1 2 0 1 2 and the medians of the per-epoch seconds (training history) are
compared; the weights of every run must be the same bits (workers change the speed, not the result).

    python tools/bench_epoch.py                # synthesized English, 80 speakers, 3 epochs x 2 rounds
    python tools/bench_epoch.py --data D       # any dataset folder
    python tools/bench_epoch.py --quick        # 1 epoch x 1 round (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgekws, installed or not

from edgekws.cliargs import non_negative_int, positive_int  # noqa: E402


def get_data(data: str | None, build: Path, speakers: int) -> Path | None:
    if data:
        return Path(data)
    try:
        from edgekws.synth.generator import synthesize_dataset

        out = build / "synth-en"
        synthesize_dataset(out, "en", speakers=speakers, seed=5, overwrite=True)
        return out
    except Exception as e:  # no eSpeak NG (edgekws[synth]) here
        print(f"skipped: no dataset (--data D) and no synthesizer: {e}")
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="dataset folder (default: synthesize English, --speakers)")
    ap.add_argument("--speakers", type=positive_int, default=80)
    ap.add_argument("--epochs", type=positive_int, default=3)
    ap.add_argument("--rounds", type=positive_int, default=2)
    ap.add_argument("--workers", type=non_negative_int, nargs="+", default=[0, 1, 2],
                    help="worker counts to compare (default: 0 1 2; the first is the ratios' reference)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.speakers = 1, 1, 24
    from edgekws.train import TrainConfig, default_workers, train

    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        data = get_data(args.data, build, args.speakers)
        if data is None:
            return 0
        settings = args.workers
        per_epoch: dict[int, list[float]] = {w: [] for w in settings}
        weights: dict[int, dict] = {}
        wall: dict[int, list[float]] = {w: [] for w in settings}
        n_train = None
        for r in range(args.rounds):
            for w in settings:
                t = time.perf_counter()
                b = train(data, build / f"m{w}{r}", epochs=args.epochs, patience=args.epochs, workers=w,
                          consistency=0.0,   # the plain epochs (before the default's second voice)
                          progress=False, log=lambda *a, **k: None, cache_dir=build / "cache")
                wall[w].append(time.perf_counter() - t)
                per_epoch[w] += [h["seconds"] for h in b.read_json("history.json")]
                weights[w] = b.read_npz("weights.npz")
                n_train = b.manifest["training"]["n_train"]
        same = all(np.array_equal(weights[settings[0]][k], weights[w][k]) for w in settings for k in weights[w])
        med = {w: statistics.median(v) for w, v in per_epoch.items()}
        cfg = TrainConfig()
        print(f"default recipe ({cfg.arch}, batch {cfg.batch}, audio augmentation, SpecAugment, "
              f"{cfg.unknown_ratio:g}x _unknown_{', hard negatives' if cfg.hard_negatives else ''};\n"
              f"the epochs before the second voice)\n"
              f"{n_train} examples per epoch, {args.epochs} epochs x {args.rounds} rounds per setting, "
              f"medians of per-epoch seconds\n")
        print("| batches made | s/epoch | ratio | whole run (s, median) |")
        print("|---|---|---|---|")
        default = default_workers()
        for w in settings:
            name = "in the training process" if w == 0 else f"by {w} worker process{'es' if w > 1 else ''}"
            name += f" (--workers {w}{', the default here' if w == default else ''})"
            print(f"| {name} | {med[w]:.2f} | {med[w] / med[settings[0]]:.2f} | {statistics.median(wall[w]):.1f} |")
        print(f"\nsame weights, bit for bit: {'yes' if same else 'NO'}")
        return 0 if same else 1


if __name__ == "__main__":
    from edgekws.cliargs import run_tool

    sys.exit(run_tool(main, "bench_epoch.py"))
