"""`edgekws retrain MODEL DATA --out MODEL2`: the command line of last-layer retraining."""

from __future__ import annotations

from edgekws import cliargs
from edgekws.errors import EdgekwsError


def register(sub) -> None:
    from edgekws.retrain.core import BASE_INIT_LR, COPY_SNR_DB, DEFAULT_EPOCHS, ENGINES, INITS, LOSSES

    p = sub.add_parser("retrain", help="last-layer retraining for new words or a new language",
                       description="Keep the model's int8 layers up to the embedding frozen and learn a new "
                                   "last layer from the clips of DATA (every clip of DATA is used unless --split "
                                   "says otherwise). Writes a normal model bundle MODEL2 (+ head.bin for devices).")
    p.add_argument("model", help="base model bundle (quantized: run edgekws quantize first)")
    p.add_argument("data", help="dataset folder with the new words: DATA/<word>/<speaker>_nohash_<n>.wav")
    p.add_argument("--out", metavar="MODEL2", required=True, help="new model bundle folder")
    p.add_argument("--words", help="comma-separated command words (default: the base model's words)")
    p.add_argument("--shots", type=int, help="examples per class (default: every clip)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"SGD epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--engine", choices=ENGINES, default="numpy",
                   help="numpy, or c: the firmware's C head trainer (what a Pi or MCU runs); same result")
    p.add_argument("--loss", choices=LOSSES, default="ce",
                   help="ce: imprinting + softmax cross-entropy; triplet: triplet-loss metric first (numpy)")
    p.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                   help="clips of DATA to learn from (default all)")
    p.add_argument("--float-head", action="store_true",
                   help="also keep the head in float32 (targets with an FPU; eval engine int8-f32head)")
    p.add_argument("--init", choices=INITS, default="auto",
                   help="imprint: a new head from class means (new words); base: start from the base model's "
                        "head (more recordings of its own words, e.g. your voice); auto (default): base when "
                        "every word is one of the base model's")
    p.add_argument("--lr", type=float, help=f"head learning rate (default 0.05; {BASE_INIT_LR:g} with --init base)")
    p.add_argument("--noisy-copies", type=int, default=0, metavar="N",
                   help="also learn from N noisy copies of each word clip, mixed with DATA's _background_noise_ "
                        "(your room; white/pink/brown noise if none) at --copy-snr (default 0 = off)")
    p.add_argument("--copy-snr", default=f"{COPY_SNR_DB[0]:g},{COPY_SNR_DB[1]:g}", metavar="LOW,HIGH",
                   help=f"SNR range of the noisy copies in dB (default {COPY_SNR_DB[0]:g},{COPY_SNR_DB[1]:g})")
    p.add_argument("--voice-norm", type=int, default=0, metavar="N",
                   help="learn from voice-normalized embeddings: each example's speaker known from up to N of "
                        "their other clips in DATA (no labels); hear users with edgekws calibrate --method norm "
                        "(default 0 = off)")
    p.add_argument("--self-train", type=float, default=0.0, metavar="F",
                   help="then learn again from the examples' speakers' unlabeled clips in DATA (--voice-norm's, or "
                        "10 of each), labelled by the first head: the fraction F of each class it is surest of "
                        "(0.7 measured; default 0 = off)")
    p.add_argument("--seed", type=cliargs.seed, default=0, help="seed of example choice and shuffling (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle in MODEL2")
    p.add_argument("--cache", metavar="DIR", type=cliargs.folder, help="feature cache folder (default DATA/.edgekws-cache)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgekws.data import parse_words
    from edgekws.retrain.core import check_copies, retrain

    if args.shots is not None and args.shots < 1:
        raise EdgekwsError(f"--shots: must be >= 1, got {args.shots}")
    if args.epochs < 0:
        raise EdgekwsError(f"--epochs: must be >= 0, got {args.epochs}")
    hyper = {"lr": args.lr} if args.lr is not None else {}
    if args.lr is not None and not 0 < args.lr < 10:
        raise EdgekwsError(f"--lr: must be in (0, 10), got {args.lr}")
    snr = check_copies(args.noisy_copies, str(args.copy_snr).split(","))
    retrain(args.model, args.data, args.out, words=parse_words(args.words), shots=args.shots, epochs=args.epochs,
            engine=args.engine, loss=args.loss, seed=args.seed, split=args.split, float_head=args.float_head,
            overwrite=args.force, cache_dir=args.cache, noisy=args.noisy_copies, noisy_snr=snr, init=args.init,
            voice_norm=args.voice_norm, self_train=args.self_train, **hyper)
    return 0
