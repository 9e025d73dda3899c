"""`edgekws synth`: build an offline TTS keyword dataset in the Speech Commands layout."""

from __future__ import annotations

import time

from edgekws import cliargs
from edgekws.errors import EdgekwsError
from edgekws.synth.words import COMMANDS, DEFAULT_ENGINES, ENGINES, VOCABULARIES, vocabulary_words


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="synthesize a keyword dataset offline (eSpeak NG, Open JTalk)",
        description="Synthesize spoken commands offline into DIR/<word>/<speaker>_nohash_<n>.wav "
                    "(16 kHz mono, 1.0 s), DIR/_background_noise_/ and DIR/synth_manifest.json. "
                    "Folders carry the English meaning in both languages. Same --seed gives a "
                    "byte-identical dataset whatever --jobs.",
    )
    p.add_argument("--lang", required=True, choices=["ja", "en"], help="language to speak")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--words", metavar="W1,W2,...",
                   help=f"command words (default: {','.join(COMMANDS)}); custom: label=text, "
                        "e.g. light=でんき or light=light:ライト")
    p.add_argument("--vocab", nargs="?", const="everyday", choices=VOCABULARIES, metavar="KIND",
                   help="instead of commands, a vocabulary with no unknown words and no noise, for edgekws "
                        "train --vocab (better features for retraining to this language): 'everyday' (the "
                        "default) 63 everyday words; 'pairs' 78 English words of minimal pairs (lock/rock; "
                        "Open JTalk says those with a katakana reading); 'broad' 300 frequent English words "
                        "(eSpeak NG alone)")
    p.add_argument("--speakers", type=cliargs.integer, metavar="N",
                   help="pseudo-speakers, shared among engines (default 160; each says every word)")
    p.add_argument("--repeats", type=cliargs.integer, default=1, metavar="N",
                   help="times each speaker says each command (default 1)")
    p.add_argument("--unknown", type=cliargs.integer, metavar="N",
                   help="non-command words per speaker, for _unknown_ (default 6; 0 = none)")
    p.add_argument("--confusable", metavar="W1,W2",
                   help="unknown words that every speaker says besides its random ones: words that sound "
                        "like a command (default: ja book, ほん ~ オン; en none; 'none' for none)")
    p.add_argument("--noise-seconds", type=float, metavar="S",
                   help="length of each background noise file (default 30; 0 = none)")
    p.add_argument("--engines", metavar="E1,E2",
                   help=f"subset of {','.join(ENGINES)} (default: en {','.join(DEFAULT_ENGINES['en'])}; "
                        f"ja {','.join(DEFAULT_ENGINES['ja'])}). openjtalk speaks English as "
                        "katakana loanwords (Japanese-accented English); English custom words without "
                        "a katakana reading are spoken by espeak alone")
    p.add_argument("--openjtalk-voices", metavar="V1,V2",
                   help="Open JTalk voices its speakers take in turn (default mei; mei,m001: every second "
                        "speaker the male voice NIT ATR503 M001, which needs pip install \"edgekws[voices]\"; "
                        "Mei's other styles mei_angry, mei_bashful, mei_happy, mei_sad need "
                        "edgekws fetch-voices DIR and EDGEKWS_HTSVOICES=DIR)")
    p.add_argument("--espeak-variants", metavar="V1,V2",
                   help="eSpeak NG voice variants its speakers take in turn (default: all that eSpeak NG "
                        "ships, about a hundred); fewer, e.g. f1,m1, to measure how many voices a model "
                        "needs to hear one it never met")
    p.add_argument("--world", type=cliargs.integer, metavar="K",
                   help="WORLD-vocoder voice variants of every eSpeak NG speaker, each a new speaker in its "
                        "source's split (default 0; needs pyworld: pip install \"edgekws[world]\")")
    p.add_argument("--seed", type=cliargs.seed, default=0, help="random seed (default 0)")
    p.add_argument("--jobs", type=cliargs.integer, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--quick", action="store_true", help="small dataset for a quick try (12 speakers: too few for a test "
                   "split, so evaluate it with --split all)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty DIR, replacing a previous synthesized dataset")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgekws.synth.generator import MANIFEST, synthesize_dataset

    t0 = time.perf_counter()
    per_word_engines = False
    if args.vocab:
        if args.words:
            raise EdgekwsError("give --vocab or --words, not both")
        args.words = vocabulary_words(args.lang, args.vocab)
        per_word_engines = args.vocab == "pairs"   # each word said by the engines that have a text for it
        if per_word_engines and args.engines is None:
            args.engines = ",".join(DEFAULT_ENGINES[args.lang])
        args.unknown = 0 if args.unknown is None else args.unknown
        args.noise_seconds = 0 if args.noise_seconds is None else args.noise_seconds
    m = synthesize_dataset(args.out, lang=args.lang, words=args.words, speakers=args.speakers,
                           seed=args.seed, jobs=args.jobs, engines=args.engines,
                           unknown_per_speaker=args.unknown, repeats=args.repeats,
                           noise_seconds=args.noise_seconds, quick=args.quick,
                           overwrite=args.force, progress=True, world=args.world,
                           confusable=args.confusable, per_word_engines=per_word_engines,
                           openjtalk_voices=args.openjtalk_voices, espeak_variants=args.espeak_variants)
    cmds = [c for c in m["clips"] if c["kind"] == "command"]
    per_engine = {e: sum(1 for s in m["speakers"] if s["engine"] == e) for e in m["engines"]}
    print(f"{args.out}: {len(cmds)} command clips ({len(m['commands'])} words), "
          f"{len(m['clips']) - len(cmds)} unknown-word clips, {len(m['noise'])} noise files, "
          f"speakers {per_engine} ({m['world_variants']} WORLD variant(s) per eSpeak NG speaker among them), "
          f"{time.perf_counter() - t0:.1f} s; manifest {MANIFEST}")
    for note in m["attribution"]:
        print(note)
    return 0
