#!/usr/bin/env python3
"""The quality table of last-layer retraining: accuracy on UNSEEN speakers of the new language vs
examples per word, next to a model trained from scratch on all of that language's data and a head
trained on a randomly initialized backbone (how much the other language's features help) and a head
retrained on the from-scratch model's own backbone (the same K clips: what last-layer retraining
reaches at K examples when the frozen features already know these very words, the ceiling).

    python tools/eval_retrain.py --data-ja D_JA --data-en D_EN --base-ja M_JA --base-en M_EN [--prepare]
    python tools/eval_retrain.py --data-en D_EN --base-ja M_JA     # a Japanese base alone: no ceiling columns

--prepare synthesizes the two datasets (edgekws synth, 200 speakers each) and trains + quantizes
the two base models (edgekws train, default DS-CNN, 20 epochs) where they are missing. Japanese
base -> English head is measured, and with --reverse also English base -> Japanese head. Heads
learn from K clips per class of the new language's TRAIN split (speakers of the hash rule) and are
tested on its TEST split (other speakers), int8 head, mean (min-max) over --seeds draws. Without
--base-en (a Japanese base to judge, no English model at hand) the table leaves out the two columns
that need the new language's own model: its backbone's head and its accuracy from scratch; the
Japanese dataset is then not needed either.

--voice-norm N adds a column: the same heads on voice-normalized embeddings (edgekws/voicenorm.py):
each clip's embedding moved by its speaker's offset, known from up to N of that speaker's other clips,
unlabeled (a device that has heard its user before); the shots' too, from their own speakers.
--self-train F adds a column: the same heads (voice-normalized with --voice-norm) learned again from
the shots and up to N (--voice-norm's, else 10) unlabeled clips of each shot's speaker, labelled by
the first head: the fraction F of each class it is surest of (`edgekws retrain --self-train F`). With
both, one more column reads the same heads on the test speakers as heard (cold: no offset of theirs is
known, as plain `edgekws eval` of such a head reads them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.bundle import Bundle  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.quant import int8_forward, load_quantized, quantize_model  # noqa: E402
from edgekws.retrain import Backbone, fit_head, int8_logits, pick_shots  # noqa: E402
from edgekws.retrain.core import (SPEAKER_CLIPS, dataset_speakers, head_float_logits,  # noqa: E402
                                   is_self_train_fraction, self_trained_head, speaker_pool)
from edgekws.voicenorm import normalized, reference  # noqa: E402


def prepare(args) -> None:
    from edgekws.quant import quantize_bundle
    from edgekws.synth.generator import synthesize_dataset
    from edgekws.train import train

    for lang, data, seed in (("ja", args.data_ja, 1), ("en", args.data_en, 2)):
        if not Path(data).is_dir():
            synthesize_dataset(data, lang, speakers=200, seed=seed)
    for data, model in ((args.data_ja, args.base_ja), (args.data_en, args.base_en)):
        if not (Path(model) / "manifest.json").is_file():
            train(data, model, epochs=20, seed=0, progress=False)
        b = Bundle.load(model)
        if not b.has("int8.npz"):
            quantize_bundle(b)


def random_backbone(base: Bundle, calib: np.ndarray, seed: int) -> Backbone:
    """The base architecture with random (seeded) weights, quantized on `calib` features; without a
    whitening layer (train --vocab's, fitted to the trained embedding: random, it is no baseline)."""
    from edgekws.features import FeatureConfig
    from edgekws.models import WHITEN_LAYER, layers_from_architecture
    from edgekws.nn import Sequential

    arch = dict(base.manifest["architecture"])
    arch["layers"] = [c for c in arch["layers"] if c.get("name") != WHITEN_LAYER]
    model = Sequential(layers_from_architecture(arch), arch["input_shape"], rng=np.random.default_rng([seed, 99]))
    fc = FeatureConfig.from_dict(base.manifest["feature_config"])
    return Backbone.from_quantized(quantize_model(model, calib, fc.input_scale, fc.input_zero_point))


def run_direction(base_path, scratch_path, data, args, log) -> list[str]:
    """scratch_path: the new language's own model (its labels name the words; None: the base's labels,
    and no "own backbone" / "from scratch" columns)."""
    base = Bundle.load(base_path)
    scratch = Bundle.load(scratch_path) if scratch_path is not None else None
    words = [w for w in (scratch if scratch is not None else base).labels if not w.startswith("_")]
    xtr, ytr, names, str_ = dataset_speakers(data, words, "train", seed=0)
    xte, yte, _, ste = dataset_speakers(data, words, "test", seed=0)
    n_cls = len(names)
    backbones = {"pretrained": Backbone.from_bundle(base), "random": random_backbone(base, xtr[:500], args.seeds)}
    if scratch is not None:
        scratch_acc = float(np.mean(int8_forward(load_quantized(scratch), xte).argmax(1) == yte))
        backbones["native"] = Backbone.from_bundle(scratch)
    t0 = time.perf_counter()
    emb = {k: (b.embed(xtr), b.embed(xte)) for k, b in backbones.items()}
    log(f"  embeddings of {len(ytr)} train + {len(yte)} test clips in {time.perf_counter() - t0:.1f} s")
    if args.voice_norm:   # each clip's voice known from up to N of its speaker's other clips
        etr, ete = emb["pretrained"]
        ref = reference(etr, str_)
        emb["voicenorm"] = (normalized(etr, str_, ref, others=args.voice_norm, seed=0),
                            normalized(ete, ste, ref, others=args.voice_norm, seed=1))
        backbones["voicenorm"] = backbones["pretrained"]
    if args.self_train:
        emb["selftrain"] = emb["voicenorm" if args.voice_norm else "pretrained"]
        backbones["selftrain"] = backbones["pretrained"]
    rows = []
    for shots in args.shots:
        k = None if shots == "all" else int(shots)
        cells = {}
        for name, loss in (("pretrained", "ce"), ("pretrained", "triplet"), ("voicenorm", "ce"), ("selftrain", "ce"),
                           ("random", "ce"), ("native", "ce")):
            if (loss == "triplet" and not args.triplet) or name not in backbones:
                continue
            bb = backbones[name]
            etr, ete = emb[name]
            accs, faccs, colds = [], [], []
            for seed in range(args.seeds if k is not None else 1):
                idx = pick_shots(ytr, k, seed)
                head = fit_head(etr[idx], ytr[idx], n_cls, bb.scale, bb.zero_point, epochs=args.epochs,
                                engine="numpy" if loss == "triplet" else args.engine, loss=loss, seed=seed)
                if name == "selftrain" and k is not None:   # the shots' speakers' unlabeled clips, first head's labels
                    pool = speaker_pool(str_, idx, args.voice_norm or SPEAKER_CLIPS, seed)
                    head, _ = self_trained_head(bb, head, etr[idx], ytr[idx], etr[pool], args.self_train, n_cls,
                                                epochs=args.epochs, engine=args.engine, seed=seed)
                accs.append(np.mean(int8_logits(bb, head.qhead, ete).argmax(1) == yte))
                faccs.append(np.mean(head_float_logits(head, ete, bb).argmax(1) == yte))
                if name == "selftrain" and args.voice_norm:   # the same head, test speakers as heard (cold)
                    colds.append(np.mean(int8_logits(bb, head.qhead, emb["pretrained"][1]).argmax(1) == yte))
            cells[(name, loss)] = (np.mean(accs), np.min(accs), np.max(accs), np.mean(faccs))
            if colds:
                cells[("cold", loss)] = (np.mean(colds), np.min(colds), np.max(colds))
        rows.append((shots, cells))
        p = cells[("pretrained", "ce")]
        log(f"  shots {shots}: pretrained int8 {p[0]:.3f} (float32 head {p[3]:.3f}), "
            f"random {cells[('random', 'ce')][0]:.3f}"
            + (f", native {cells[('native', 'ce')][0]:.3f}" if scratch is not None else ""))
    head = "| examples per word | retrained head, int8 (min-max) | float32 head |" + \
           (" triplet + CE, int8 |" if args.triplet else "") + \
           (f" voice-normalized ({args.voice_norm} clips), int8 (min-max) |" if args.voice_norm else "") + \
           (f" + self-training ({args.self_train:g}), int8 (min-max) |" if args.self_train else "") + \
           (" the same, test speakers cold, int8 (min-max) |" if args.self_train and args.voice_norm else "") + \
           " random backbone, int8 |" + \
           (" the new language's own backbone, int8 | from scratch, all data |" if scratch is not None else "")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for shots, cells in rows:
        p, r = cells[("pretrained", "ce")], cells[("random", "ce")]
        line = f"| {shots} | {100 * p[0]:.1f}% ({100 * p[1]:.1f}-{100 * p[2]:.1f}) | {100 * p[3]:.1f}% |"
        if args.triplet:
            line += f" {100 * cells[('pretrained', 'triplet')][0]:.1f}% |"
        if args.voice_norm:
            sp = cells[("voicenorm", "ce")]
            line += f" {100 * sp[0]:.1f}% ({100 * sp[1]:.1f}-{100 * sp[2]:.1f}) |"
        if args.self_train:
            st = cells[("selftrain", "ce")]
            line += f" {100 * st[0]:.1f}% ({100 * st[1]:.1f}-{100 * st[2]:.1f}) |"
            if args.voice_norm:
                c = cells[("cold", "ce")]
                line += f" {100 * c[0]:.1f}% ({100 * c[1]:.1f}-{100 * c[2]:.1f}) |"
        line += f" {100 * r[0]:.1f}% |"
        if scratch is not None:
            line += f" {100 * cells[('native', 'ce')][0]:.1f}% | {100 * scratch_acc:.1f}% |"
        out.append(line)
    out.append(f"\n{len(yte)} test clips of {len(names)} classes ({', '.join(names)}) from speakers never seen; "
               f"heads learn from the train split; {args.epochs} epochs, engine {args.engine}.")
    if args.voice_norm:
        out.append(f"Voice-normalized: each clip's embedding less its voice's offset, the mean of up to "
                   f"{args.voice_norm} other clips of its speaker (in its own split) from the train clips' "
                   f"mean; a `_silence_` cut takes a drawn speaker's offset (edgekws/voicenorm.py).")
    if args.self_train:
        out.append(f"Self-training: the head learned again from the shots and up to {args.voice_norm or SPEAKER_CLIPS} "
                   f"unlabeled train clips of each shot's speaker, the {args.self_train:g} of each class the first "
                   "head is surest of, with its labels (edgekws retrain --self-train); 'all' has no clips left."
                   + (" Cold: the same heads on the test clips as heard (no offset of the test speakers)."
                      if args.voice_norm else ""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-ja", help="Japanese dataset: needed by --reverse and --prepare")
    ap.add_argument("--data-en", required=True)
    ap.add_argument("--base-ja", required=True, help="Japanese model bundle (quantized)")
    ap.add_argument("--base-en", help="English model bundle (quantized): the ceiling columns; needed by "
                    "--reverse and --prepare")
    ap.add_argument("--prepare", action="store_true", help="synthesize / train / quantize what is missing")
    ap.add_argument("--shots", default="1,3,5,10,20,all")
    ap.add_argument("--seeds", type=int, default=3, help="draws of the K examples per setting (default 3)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--engine", choices=("numpy", "c"), default="numpy")
    ap.add_argument("--triplet", action="store_true", help="add a triplet-loss column")
    ap.add_argument("--reverse", action="store_true", help="also English base -> Japanese head")
    ap.add_argument("--voice-norm", type=int, default=0, metavar="N",
                    help="add a column: heads on voice-normalized embeddings, each voice known from up to "
                         "N of its other clips (0: off)")
    ap.add_argument("--self-train", type=float, default=0.0, metavar="F",
                    help="add a column: the heads learned again with the shots' speakers' unlabeled clips, the "
                         "fraction F of each class the first head is surest of (0: off)")
    args = ap.parse_args(argv)
    args.shots = [s.strip() for s in args.shots.split(",") if s.strip()]
    if not args.shots or any(s != "all" and not (s.isdigit() and int(s) >= 1) for s in args.shots):
        ap.error(f"--shots: comma-separated counts >= 1 or 'all', got {','.join(args.shots)!r}")
    if args.seeds < 1 or args.epochs < 0:
        ap.error("--seeds must be at least 1 and --epochs at least 0")
    if not (args.self_train == 0 or is_self_train_fraction(args.self_train)):
        ap.error(f"--self-train must be 0 (off) or a fraction in [0.000001, 1], got {args.self_train}")
    if args.voice_norm < 0:
        ap.error(f"--voice-norm must be 0 (off) or a number of clips >= 1, got {args.voice_norm}")
    for name, value in (("--base-en", args.base_en), ("--data-ja", args.data_ja)):
        if value is None and (args.reverse or args.prepare):
            ap.error(f"--{'reverse' if args.reverse else 'prepare'} needs {name}")
    try:
        return _measure(args)
    except EdgekwsError as exc:   # a missing dataset or bundle: one line, not a traceback
        print(f"eval_retrain: error: {exc}", file=sys.stderr)
        return 2


def _measure(args) -> int:
    if args.prepare:
        prepare(args)
    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    log("Japanese base -> English head")
    table = ["### Japanese base -> English head", "",
             *run_direction(args.base_ja, args.base_en, args.data_en, args, log)]
    if args.reverse:
        log("English base -> Japanese head")
        table += ["", "### English base -> Japanese head", "",
                  *run_direction(args.base_en, args.base_ja, args.data_ja, args, log)]
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
