#!/usr/bin/env python3
"""BatchNorm re-estimation on a voice the model never heard (AdaBN), measured on the
leave-one-engine-out benchmark.

    edgekws eval-voices --ja DATA --work W          # trains W/ja/seed0/model-espeak-to-openjtalk, ...
    python tools/eval_adabn.py --work W/ja/seed0 --direction espeak-to-openjtalk --clips 36,1500

The held-out engine's test speakers are split in two halves by a hash of their id: the float model's
BatchNorm statistics are re-estimated (edgekws.nn.adapt_batchnorm) on N unlabeled clean clips of
half A, and accuracy is measured on half B (clean, babble and pink noise at 10 dB), before and after;
then the product path, `edgekws adapt` (edgekws.adapt) on N word recordings of half A, in int8.
Prints one line per setting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.adapt import MIN_CLIPS, adapt  # noqa: E402
from edgekws.bundle import Bundle  # noqa: E402
from edgekws.data import load_dataset  # noqa: E402
from edgekws.evaluate import FloatNetwork  # noqa: E402
from edgekws.features import FeatureConfig  # noqa: E402
from edgekws.nn import adapt_batchnorm  # noqa: E402
from edgekws.quant import Int8Network  # noqa: E402
from edgekws.voices import _command_folders, held_out_sets  # noqa: E402


def halves(view: Path) -> tuple[list[str], list[str]]:
    """Relative clip paths of speakers A and B of a view (half each, by crc32 of the speaker id)."""
    ds = load_dataset(view, _command_folders(view))
    a = [f"{c.word}/{c.path.name}" for c in ds.clips if zlib.crc32(c.speaker.encode()) % 2 == 0]
    b = [f"{c.word}/{c.path.name}" for c in ds.clips if zlib.crc32(c.speaker.encode()) % 2 == 1]
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="an eval-voices folder: WORK/<lang>/seed<k>")
    ap.add_argument("--direction", default="espeak-to-openjtalk")
    ap.add_argument("--clips", default="36,1500", help="numbers of unlabeled adaptation clips")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    engines = args.direction.split("-to-")
    if len(engines) != 2 or not all(engines):
        ap.error(f"--direction: TRAIN-to-TEST, e.g. espeak-to-openjtalk, got {args.direction!r}")
    try:
        clip_counts = [int(v) for v in args.clips.split(",")]
    except ValueError:
        clip_counts = []
    if not clip_counts or min(clip_counts) < MIN_CLIPS:   # what edgekws adapt needs
        ap.error(f"--clips: comma-separated counts of at least {MIN_CLIPS}, got {args.clips!r}")
    work = Path(args.work)
    test_engine = args.direction.split("-to-")[1]
    bundle = Bundle.load(work / f"model-{args.direction}")
    view = work / f"view-{test_engine}-test"
    a, b = halves(view)
    fc = FeatureConfig()
    test = held_out_sets(view, fc, seed=args.seed, cache_dir=work / ".cache", exclude=a)
    pool = held_out_sets(view, fc, seed=args.seed, cache_dir=work / ".cache", exclude=b)["clean"][0]

    def accuracy(net) -> str:
        return " / ".join(f"{100 * np.mean(net.logits_features(x).argmax(1) == y):.1f}" for x, y in test.values())

    print(f"{args.direction}: test on {len(test['clean'][1])} clips of half B; {' / '.join(test)}")
    print(f"  before: {accuracy(FloatNetwork(bundle))}")
    if Int8Network.available(bundle):
        print(f"  int8 before: {accuracy(Int8Network(bundle))}")
    else:
        print("  int8 before: (the bundle is not quantized: edgekws quantize MODEL)")
    for n in clip_counts:
        net = FloatNetwork(bundle)
        pick = np.random.default_rng([args.seed, n]).permutation(len(pool))[:n]
        adapt_batchnorm(net.model, net._input(pool[pick]))
        print(f"  AdaBN on {len(pick)} unlabeled clips of half A: {accuracy(net)}")
        # the product path: `edgekws adapt MODEL FOLDER` on n word recordings of half A, int8
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "voice"
            (folder / "_background_noise_").mkdir(parents=True)   # the room: the training engine's noises
            for noise in (work / f"view-{args.direction.split('-to-')[0]}" / "_background_noise_").glob("*.wav"):
                (folder / "_background_noise_" / noise.name).symlink_to(noise.resolve())
            words = [rel for rel in a if not rel.startswith("_")]
            for i in np.random.default_rng([args.seed, n, 1]).permutation(len(words))[:n]:
                (folder / words[i].replace("/", "__")).symlink_to((view / words[i]).resolve())
            new = adapt(bundle, folder, Path(tmp) / "adapted", limit=n, seed=args.seed, log=lambda *a: None)
            print(f"  edgekws adapt on {min(n, len(words))} word recordings of half A, int8: "
                  f"{accuracy(Int8Network(new))}")
    return 0


if __name__ == "__main__":
    from edgekws.cliargs import run_tool

    sys.exit(run_tool(main, "eval_adabn.py"))
