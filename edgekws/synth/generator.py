"""Write a synthesized keyword dataset in the Google Speech Commands layout, in parallel processes.

    DIR/<word>/<speaker>_nohash_<n>.wav     16 kHz mono int16, exactly 1.0 s, speech at a random offset
    DIR/_background_noise_/*.wav            white, pink, brown, hum, babble (one per engine)
    DIR/synth_manifest.json                 per clip: path, word, spoken text, engine, voice, speaker

Every clip draws its random choices (voice jitter, level, offset) from its own generator, derived
from (seed, speaker, word, repetition), and each job — one speaker's clips in a fixed order, or one
noise file — runs on a freshly loaded eSpeak NG (see espeak.py: it keeps hidden state between
utterances). So the dataset is byte-identical for a given seed whatever the number of processes.
Engines are started lazily inside each worker (eSpeak NG is global state and not thread-safe).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekws.audio import SAMPLE_RATE, resample, write_wav
from edgekws.errors import DatasetError, EdgekwsError, is_int
from edgekws.fileio import atomic_write_text, make_dir
from edgekws.synth import espeak, noise, openjtalk
from edgekws.synth.voices import ID_PREFIX, Speaker, clip_rng, jitter, make_speakers
from edgekws.synth.words import Word, check_engines, check_lang, command_words, unknown_words

MANIFEST = "synth_manifest.json"
MANIFEST_FORMAT = "edgekws-synth-manifest"
MANIFEST_VERSION = 1
NOISE_DIR = "_background_noise_"
CLIP_SAMPLES = SAMPLE_RATE                 # exactly 1.0 s
MAX_SPEECH = int(0.92 * SAMPLE_RATE)      # longer words are re-spoken faster
DEFAULTS = {"speakers": 160, "unknown_per_speaker": 6, "noise_seconds": 30.0}
# Unknown words every speaker says (synthesize_dataset's `confusable`): ほん "book" sounds like the command
# オン, and with only the random draws (57 training clips in a 480-speaker set) a model took 18 of 30
# unseen ほん clips for オン and its streams missed the 95% hits / 1 false accept per hour target; with it,
# three trainings met it (RESULTS.md, Streaming). English "night" ~ "right" gained less and cost clips: none.
DEFAULT_CONFUSABLE = {"ja": ("book",), "en": ()}
# WORLD-vocoder variants per eSpeak NG speaker (edgekws.synth.world). Off by default: English on the
# Flite/Festival judging set, variants named without regard to splits (tools/world_variants.py) 79.0 /
# 79.7% clean (two seeds) against 75.9% without, but made here, each in its source's split, 75.2 / 76.7%
# clean (pink 10 dB 64.6 / 71.5%, 64.2% without) and 96.6 / 96.5% on its own voices (< 97%); Japanese
# across engines gained nothing (lever J). RESULTS.md, Voices.
WORLD_DEFAULT = 0
QUICK = {"speakers": 12, "unknown_per_speaker": 2, "noise_seconds": 5.0}
MEI_ATTRIBUTION = ("Open JTalk clips use the HTS voice \"Mei\" (mei_normal) by the Department of "
                   "Computer Science, Nagoya Institute of Technology, licensed CC BY 3.0 "
                   "(https://creativecommons.org/licenses/by/3.0/).")


def _voice_attribution(voice: str) -> str:
    """The licence line for the clips of an Open JTalk voice other than Mei (openjtalk.EXTRA_VOICES)."""
    return (f"Open JTalk clips of speakers with \"voice\": \"{voice}\" use the HTS voice "
            f"\"{openjtalk.EXTRA_VOICES[voice].title}\" by the Department of Computer Science, Nagoya "
            "Institute of Technology, licensed CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/).")


@dataclass(frozen=True)
class _Job:
    """One unit of work for a process: all clips of one speaker, or one noise file."""

    kind: str                    # "speaker" | "noise" | "babble"
    out: str
    lang: str
    seed: int
    speaker: Speaker | None = None
    items: tuple = ()            # speaker: ((Word, rep), ...); babble: (Speaker, ...)
    name: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------- one clip

def trim_silence(x: np.ndarray, sr: int, top_db: float = 40.0, pad_s: float = 0.015) -> np.ndarray:
    """Cut leading/trailing samples quieter than `top_db` below the peak, keeping `pad_s` margins.

    x : (n,) float array -> (m,) view of x, m <= n (empty if x is all zeros)
    """
    a = np.abs(x)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        return x[:0]
    idx = np.flatnonzero(a > peak * 10 ** (-top_db / 20))
    pad = int(pad_s * sr)
    return x[max(idx[0] - pad, 0): idx[-1] + 1 + pad]


def _speak(speaker: Speaker, text: str, p: dict, tts=None) -> tuple[np.ndarray, int]:
    if speaker.engine == "espeak":
        say = tts.synthesize if tts is not None else espeak.synthesize
        x, sr = say(text, p["voice"], p["rate"], p["pitch"], p["prange"])
        return x.astype(np.float64) / 32768.0, sr
    return openjtalk.synthesize(text, p["speed"], p["half_tone"], p["alpha"], p.get("voice", "mei"))


def speak_16k(speaker: Speaker, text: str, params: dict, tts=None) -> tuple[np.ndarray, dict]:
    """Synthesize, trim and resample one word so that it fits MAX_SPEECH samples.

    A word that is too long is spoken again faster (up to 3 times), then time-compressed. An Open
    JTalk word whose vocoder blows up is spoken again with alpha 0.03 nearer the voice's 0.55 (up to
    3 times; Mei's style voices at alpha 0.65, say).
    tts : an `espeak.session()` engine for eSpeak speakers (None: a fresh engine per call)
    returns ((m,) float32 peak-normalised to 1, the voice parameters actually used)
    """
    p = dict(params)
    steadier = 3        # Open JTalk: tries with alpha moved toward the voice's own before giving up
    for _ in range(4):
        while True:
            x, sr = _speak(speaker, text, p, tts)
            t = trim_silence(x, sr)
            if np.all(np.isfinite(x)) and not (len(t) < 0.1 * sr and len(x) > 0.5 * sr):
                break
            # the vocoder blew up (Open JTalk on long vowel runs, or far from a voice's own alpha):
            # a click would pass for the word
            if speaker.engine == "espeak" or steadier == 0 or p["alpha"] == openjtalk.DEFAULT_ALPHA:
                raise EdgekwsError(f"{speaker.engine} could not say {text!r} ({speaker.id}, {p}): its output "
                                   "collapsed into a click; use a shorter text")
            steadier -= 1
            p["alpha"] = round(p["alpha"] + float(np.clip(openjtalk.DEFAULT_ALPHA - p["alpha"], -0.03, 0.03)), 2)
        y = resample(t, sr, SAMPLE_RATE)
        if len(y) <= MAX_SPEECH:
            break
        factor = len(y) / MAX_SPEECH * 1.05
        if speaker.engine == "espeak":
            p["rate"] = int(min(450, np.ceil(p["rate"] * factor)))
        else:
            p["speed"] = round(min(2.5, p["speed"] * factor), 3)
    else:
        y = resample(y, len(y), MAX_SPEECH)     # last resort: squeeze (raises the pitch a little)
        p["squeezed"] = True
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 0:
        raise EdgekwsError(f"{speaker.engine} produced silence for {text!r} ({speaker.id}, {p})")
    return (y / peak).astype(np.float32), p


def place_in_second(speech: np.ndarray, rng: np.random.Generator,
                    level: tuple[float, float] = (0.35, 0.9)) -> tuple[np.ndarray, int, float]:
    """Put speech (m,) float32 peak 1, m <= 16000, at a random offset in 1 s of silence at a random
    peak level. returns ((16000,) float32, offset in samples, peak)."""
    peak = float(rng.uniform(*level))
    offset = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset:offset + len(speech)] = speech * np.float32(peak)
    return clip, offset, peak


def _session(engine: str):
    """eSpeak speakers get one fresh engine per job: its audio then depends on the job alone."""
    return espeak.session() if engine == "espeak" else contextlib.nullcontext()


def _speaker_job(job: _Job) -> list[dict]:
    spk = job.speaker
    with _session(spk.engine) as tts:
        rows = [_clip(job, spk, word, rep, tts) for word, rep in job.items]
    return rows


def _clip(job: _Job, spk: Speaker, word: Word, rep: int, tts) -> dict:
    rng = clip_rng(job.seed, spk.id, word.label, rep)
    params = jitter(spk, rng)
    text = word.text(spk.engine)
    speech, used = speak_16k(spk, text, params, tts)
    clip, offset, peak = place_in_second(speech, rng)
    rel = f"{word.label}/{spk.id}_nohash_{rep}.wav"
    write_wav(Path(job.out) / rel, clip)
    return {"path": rel, "word": word.label, "kind": word.kind, "text": text,
            "engine": spk.engine, "speaker": spk.id, "voice": used,
            "offset_s": round(offset / SAMPLE_RATE, 4),
            "speech_s": round(len(speech) / SAMPLE_RATE, 4), "peak": round(peak, 4)}


def _noise_job(job: _Job) -> list[dict]:
    n = int(round(job.seconds * SAMPLE_RATE))
    rng = np.random.default_rng([job.seed, 0x0015E, zlib.crc32(job.name.encode())])
    engine = None
    if job.kind == "babble":
        engine = job.items[0].engine
        words = unknown_words(job.lang)
        clips = []
        with _session(engine) as tts:
            for spk in job.items:
                for _ in range(3):
                    word = words[int(rng.integers(len(words)))]
                    speech, _ = speak_16k(spk, word.text(spk.engine), jitter(spk, rng), tts)
                    clips.append(speech)
        x = noise.babble(clips, n, rng)
    elif job.name.startswith("white"):
        x = noise.white(n, rng)
    elif job.name.startswith("pink"):
        x = noise.pink(n, rng)
    elif job.name.startswith("brown"):
        x = noise.brown(n, rng)
    else:
        x = noise.hum(n, rng, mains_hz=50.0)
    rel = f"{NOISE_DIR}/{job.name}.wav"
    write_wav(Path(job.out) / rel, x)
    return [{"path": rel, "kind": job.name.split("_")[0], "engine": engine,
             "seconds": round(n / SAMPLE_RATE, 3)}]


def _run(job: _Job) -> tuple[str, list[dict]]:
    if job.kind == "speaker":
        return job.kind, _speaker_job(job)
    return job.kind, _noise_job(job)


# ---------------------------------------------------------------- the dataset

MAX_SPEAKERS = 100_000   # 12 words x 100,000 speakers: over a million clips; more only fills the disk
MAX_JOBS = 256


def _check_args(speakers, unknown_per_speaker, noise_seconds, repeats, jobs, seed):
    def bad(name, value, what):
        raise EdgekwsError(f"{name} must be {what}, got {value!r}")
    if not is_int(speakers) or not 1 <= speakers <= MAX_SPEAKERS:
        bad("--speakers", speakers, f"an integer in 1..{MAX_SPEAKERS}")
    if not is_int(repeats) or not 1 <= repeats <= 100:
        bad("--repeats", repeats, "an integer in 1..100")
    if not is_int(unknown_per_speaker) or not 0 <= unknown_per_speaker <= 1000:
        bad("--unknown", unknown_per_speaker, "an integer in 0..1000")
    try:
        seconds = float(noise_seconds)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (seconds == 0 or 0.1 <= seconds <= 600):
        bad("--noise-seconds", noise_seconds, "0 (no noise files) or between 0.1 and 600")
    if jobs is not None and (not is_int(jobs) or not 1 <= jobs <= MAX_JOBS):
        bad("--jobs", jobs, f"an integer in 1..{MAX_JOBS}")
    if not is_int(seed) or not 0 <= seed < 2 ** 63:
        bad("--seed", seed, "a non-negative integer")


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        old = out / MANIFEST
        if not old.is_file():              # recordings or another tool's files: never written over
            raise DatasetError(f"{out}: holds files but no {MANIFEST}, so it is not a synthesized dataset "
                               "(--force only replaces one): choose a new folder (an interrupted synth writes "
                               "no manifest: remove what it left and run again)")
        if not overwrite:
            raise DatasetError(f"{out}: folder is not empty; choose a new folder or pass "
                               "--force to replace the synthesized dataset in it")
        # remove the previous dataset's files, nothing else
        try:   # every listed path is checked before the first file is removed
            listed = json.loads(old.read_text(encoding="utf-8"))
            rels = [r["path"] for r in listed.get("clips", []) + listed.get("noise", [])]
            if not all(isinstance(rel, str) for rel in rels):
                raise TypeError("a listed path is not a string")
            paths = [(out / rel).resolve() for rel in rels]   # a NUL byte raises ValueError here
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            raise DatasetError(f"{old}: unreadable manifest; remove the folder by hand") from None
        for p in paths:
            if out.resolve() in p.parents and p.suffix == ".wav":
                p.unlink(missing_ok=True)
        old.unlink()
    make_dir(out)


def _engine_versions(engines) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    dists = {"espeak": "espeakng-loader", "openjtalk": "pyopenjtalk-plus"}
    out = {}
    for e in engines:
        try:
            out[e] = f"{dists[e]} {version(dists[e])}"
        except PackageNotFoundError:
            out[e] = dists[e]
    return out


def _resolve_words(lang, words, engines, per_word_engines: bool = False) -> list[Word]:
    cmds = command_words(lang, words)
    for i, w in enumerate(cmds):
        texts = dict(w.texts)
        if lang == "ja" and "espeak" in engines and "espeak" not in texts:
            texts["espeak"] = openjtalk.to_kana(texts["openjtalk"])   # eSpeak reads only kana
        missing = [e for e in engines if e not in texts]
        if missing and not (per_word_engines and len(missing) < len(engines)):
            raise EdgekwsError(f"--words: custom word {w.label!r} has no text for "
                               f"{', '.join(missing)} (English for Open JTalk needs katakana: "
                               f"{w.label}=text:カタカナ)")
        cmds[i] = Word(w.label, w.kind, texts)
    return cmds


def _check_custom_words(lang, words, cmds, engines, seed, variants) -> None:
    """Say every custom word (`label=text`) once per engine before any file is written: a text an
    engine cannot speak (punctuation only, say) is an argument error, not a failure half-way."""
    entries = words.split(",") if isinstance(words, str) else list(words or ())
    custom = {str(e).split("=", 1)[0].strip() for e in entries if isinstance(e, str) and "=" in e}
    for engine in engines:
        spk = make_speakers(lang, 1, (engine,), seed, variants)[0]
        for w in cmds:
            if w.label in custom:
                try:
                    speak_16k(spk, w.text(engine), spk.params)
                except EdgekwsError as exc:
                    raise EdgekwsError(f"--words: {engine} cannot say the custom word {w.label!r} "
                                       f"({w.text(engine)!r}): {exc}") from None


def _names(value) -> list[str]:
    """A list option, given as a list or as a comma-separated string, as its stripped names."""
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]


def _check_ojt_voices(voices, engines) -> tuple[str, ...]:
    """--openjtalk-voices (None, a list or "mei,m001") -> a tuple of distinct openjtalk.VOICES; None:
    ("mei",). Refused without Open JTalk in engines, as --espeak-variants is without eSpeak NG."""
    if voices is None:
        return ("mei",)
    if "openjtalk" not in engines:
        raise EdgekwsError(f"--openjtalk-voices: no Open JTalk speakers among --engines {','.join(engines)}")
    names = _names(voices)
    bad = [v for v in names if v not in openjtalk.VOICES]
    if not names or bad or len(set(names)) != len(names):
        raise EdgekwsError(f"--openjtalk-voices: {','.join(names)!r} is not a list of distinct voices among "
                           f"{', '.join(openjtalk.VOICES)}")
    return tuple(names)


def _check_espeak_variants(names, engines) -> tuple[str, ...]:
    """--espeak-variants (None, a list or "f1,m1") -> distinct names of espeak.variants(), in its order
    (the order a list is given in does not matter); None: all of them; () without eSpeak NG in engines."""
    if "espeak" not in engines:
        if names is not None:
            raise EdgekwsError(f"--espeak-variants: no eSpeak NG speakers among --engines {','.join(engines)}")
        return ()
    shipped = espeak.variants()
    if names is None:
        return shipped
    names = _names(names)
    bad = [v for v in names if v not in shipped]
    if bad or not names or len(set(names)) != len(names):
        why = f"unknown variant(s) {', '.join(map(repr, bad))}" if bad else "a variant named twice"
        raise EdgekwsError(f"--espeak-variants: {','.join(names)!r}: {why} (eSpeak NG ships {len(shipped)}: "
                           f"{', '.join(shipped[:6])}, …; see espeak-ng-data/voices/!v)")
    return tuple(v for v in shipped if v in names)


def _confusable_indices(lang: str, confusable, unknown, unknown_per_speaker) -> set[int]:
    """--confusable labels -> indices into `unknown` (every speaker says these words). None: the
    language's DEFAULT_CONFUSABLE that are unknown words here (none without unknown words); "none": none."""
    labels = [w.label for w in unknown]
    if confusable is None:
        return {labels.index(w) for w in DEFAULT_CONFUSABLE[lang] if w in labels} if unknown_per_speaker else set()
    if isinstance(confusable, str):
        confusable = [] if confusable.strip() == "none" else [w.strip() for w in confusable.split(",")]
    wanted = list(confusable)
    if wanted and not unknown_per_speaker:
        raise EdgekwsError("--confusable: needs unknown words (--unknown is 0)")
    bad = [w for w in wanted if w not in labels]
    if bad:
        raise EdgekwsError(f"--confusable: {', '.join(map(repr, bad))} not among the unknown words of this "
                           f"language ({', '.join(labels)})")
    return {labels.index(w) for w in wanted}


def synthesize_dataset(out, lang: str = "ja", words=None, speakers: int | None = None,
                       seed: int = 0, jobs: int | None = None, engines=None,
                       unknown_per_speaker: int | None = None, repeats: int = 1,
                       noise_seconds: float | None = None, quick: bool = False,
                       overwrite: bool = False, progress: bool = False, world: int | None = None,
                       confusable=None, per_word_engines: bool = False, openjtalk_voices=None,
                       espeak_variants=None) -> dict:
    """Synthesize a keyword dataset into folder `out` and return its manifest (also written there).

    lang                : "ja" or "en"
    words               : command labels (None = yes no up down left right on off stop go), a list
                          or comma-separated string; custom words as "label=text"
    speakers            : pseudo-speakers, shared round-robin among engines (default 160; quick 12);
                          each says every command `repeats` times
    engines             : subset of ("espeak", "openjtalk"); default both (English custom words
                          without a katakana reading: eSpeak NG alone). Open JTalk speaks English
                          as katakana loanwords (Japanese-accented English)
    unknown_per_speaker : non-command words each speaker says once (default 6; quick 2; 0 = none)
    noise_seconds       : length of each background-noise file (default 30; quick 5; 0 = none)
    jobs                : worker processes (default: all cores); the output does not depend on it
    quick               : small defaults for demos and tests
    overwrite           : allow a non-empty `out`; files of a previous synthesized dataset are removed
    world               : WORLD-vocoder variants of every eSpeak NG speaker (new speakers `espkw<k>…`
                          saying all its clips in a new voice; world_speaker_id keeps each in its source's
                          split); default WORLD_DEFAULT (0); needs pyworld
    confusable          : unknown words (labels, a list or comma-separated string) that every speaker
                          says besides its random ones: words that sound like a command (ja "book" ほん
                          ~ オン, en "night" ~ "right") need many voices before a model keeps them apart;
                          None: the language's DEFAULT_CONFUSABLE; () or "none": none
    per_word_engines    : a word without an engine's text is said by the other engines' speakers
                          alone (`synth --vocab pairs`: English words without a katakana reading)
    openjtalk_voices    : Open JTalk voices its speakers take in turn, a list or comma-separated
                          string of openjtalk.VOICES (default "mei"; "mei,m001": every second speaker
                          male; "mei,m001,mei_angry,mei_bashful,mei_happy,mei_sad": six voices); Mei's
                          speakers say the same clips whatever the list
    espeak_variants     : eSpeak NG voice variants (a list or comma-separated string of espeak.variants())
                          its speakers take, as they take all of them by default: fewer voices, to
                          measure how many a model needs to hear a new one ("f1,m1": two)
    """
    base = QUICK if quick else DEFAULTS
    speakers = base["speakers"] if speakers is None else speakers
    unknown_per_speaker = base["unknown_per_speaker"] if unknown_per_speaker is None else unknown_per_speaker
    noise_seconds = base["noise_seconds"] if noise_seconds is None else noise_seconds
    check_lang(lang)
    defaulted = engines is None
    engines = check_engines(lang, engines)
    if defaulted and lang == "en" and not per_word_engines and \
            any("openjtalk" not in w.texts for w in command_words(lang, words)):
        engines = ("espeak",)   # a custom English word without a katakana reading: eSpeak NG alone
    _check_args(speakers, unknown_per_speaker, noise_seconds, repeats, jobs, seed)
    world = WORLD_DEFAULT if world is None else world
    if not is_int(world, numpy=False) or not 0 <= world <= 8:
        raise EdgekwsError(f"--world: must be an integer in [0, 8], got {world!r}")
    if "espeak" not in engines:
        world = 0
    if world:
        from edgekws.synth import world as world_mod
        world_mod.require_pyworld()             # MissingDependencyError says what to install
    espeak_variants = _check_espeak_variants(espeak_variants, engines)
    ojt_voices = _check_ojt_voices(openjtalk_voices, engines)
    if "openjtalk" in engines:
        openjtalk.require()                     # MissingDependencyError says what to install
        for v in ojt_voices:
            openjtalk.voice_path(v)             # says how to install a voice that is missing
    cmds = _resolve_words(lang, words, engines, per_word_engines)
    unknown = unknown_words(lang, exclude={w.label for w in cmds})
    always = _confusable_indices(lang, confusable, unknown, unknown_per_speaker)
    out = Path(out)
    _check_custom_words(lang, words, cmds, engines, int(seed), espeak_variants)
    _prepare_out(out, overwrite)

    spk_list = make_speakers(lang, int(speakers), engines, int(seed), espeak_variants, ojt_voices)
    job_list: list[_Job] = []
    if noise_seconds > 0:
        for e in engines:                       # babble per engine: leave-one-engine-out stays clean
            babblers = tuple(make_speakers(lang, 24, (e,), int(seed) + 1,
                                           espeak_variants if e == "espeak" else (), ojt_voices))
            job_list.append(_Job("babble", str(out), lang, int(seed), items=babblers,
                                 name=f"babble_{e}", seconds=float(noise_seconds)))
        for name in ("white_noise", "pink_noise", "brown_noise", "hum_50hz"):
            job_list.append(_Job("noise", str(out), lang, int(seed), name=name,
                                 seconds=float(noise_seconds)))
    for spk in spk_list:
        pick = np.random.default_rng([int(seed), 0x0C0DE, zlib.crc32(spk.id.encode())])
        picked = pick.choice(len(unknown), min(unknown_per_speaker, len(unknown)), replace=False) if unknown else []
        chosen = sorted({*picked, *always})
        items = [(w, r) for w in cmds if spk.engine in w.texts for r in range(repeats)] + \
            [(unknown[i], 0) for i in chosen]
        job_list.append(_Job("speaker", str(out), lang, int(seed), speaker=spk, items=tuple(items)))

    results = _run_all(job_list, jobs, progress)
    clips = [row for kind, rows in results if kind == "speaker" for row in rows]
    noises = [row for kind, rows in results if kind != "speaker" for row in rows]
    speakers = [{"id": s.id, "engine": s.engine, "params": s.params} for s in spk_list]
    if world:
        more_clips, more_speakers = _world_variants(out, clips, world, int(seed), jobs, progress)
        clips, speakers = clips + more_clips, speakers + more_speakers
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "lang": lang, "seed": int(seed),
        "engines": list(engines), "engine_versions": _engine_versions(engines),
        "sample_rate": SAMPLE_RATE, "clip_seconds": 1.0,
        "commands": {w.label: w.texts for w in cmds},
        "unknown": {w.label: w.texts for w in unknown},
        "confusable": sorted(unknown[i].label for i in always),
        "speakers": speakers, "world_variants": world,
        "noise": noises, "clips": clips,
        "attribution": ([MEI_ATTRIBUTION] + [_voice_attribution(v) for v in ojt_voices if v != "mei"]
                        if "openjtalk" in engines else []),
    }
    if ojt_voices != ("mei",):   # other voices only with Open JTalk speakers (_check_ojt_voices)
        manifest["openjtalk_voices"] = list(ojt_voices)
    if espeak_variants and espeak_variants != espeak.variants():   # () without eSpeak NG
        manifest["espeak_variants"] = list(espeak_variants)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    return manifest


def world_speaker_id(source: str, k: int) -> str:
    """The id of WORLD variant k of eSpeak speaker `source`: 'espk0012' -> 'espkw0_0012', or
    'espkw0s<j>_0012' for the first j at which the Speech Commands hash rule (edgekws.data.which_split)
    puts it in the same split as its source, so no variant of a test speaker trains."""
    from edgekws.data import which_split

    prefix = ID_PREFIX["espeak"]
    if not source.startswith(prefix):
        raise EdgekwsError(f"world variants: {source!r} is not an eSpeak NG speaker id")
    want, rest = which_split(f"{source}_nohash_0.wav"), source[len(prefix):]
    for j in range(100000):
        sid = f"{prefix}w{k}{f's{j}' if j else ''}_{rest}"
        if which_split(f"{sid}_nohash_0.wav") == want:
            return sid
    raise EdgekwsError(f"world variants: no id for {source!r} in its split")   # unreachable in practice


def _world_task(task) -> int:
    src, outs = task
    from edgekws.synth import world as world_mod

    return world_mod.write_variants(src, outs)


def _world_variants(out: Path, clips: list[dict], variants: int, seed: int, jobs: int | None,
                    progress: bool = False):
    """Resynthesize every eSpeak clip as `variants` new WORLD voices (one voice per new speaker).
    Returns (manifest clip rows, manifest speaker rows) of the new speakers."""
    from edgekws.synth import world as world_mod

    tasks, rows, voices = [], [], {}          # voices: (source speaker, k) -> (new id, WorldVoice)
    for row in clips:
        spk = row["speaker"]
        if row["engine"] != "espeak":
            continue
        outs = []
        for k in range(variants):
            if (spk, k) not in voices:
                rng = np.random.default_rng([seed, 0x3D1, k, zlib.crc32(spk.encode())])
                voices[spk, k] = (world_speaker_id(spk, k), world_mod.WorldVoice.random(rng))
            sid, voice = voices[spk, k]
            rel = f"{row['word']}/{sid}{Path(row['path']).name[len(spk):]}"
            outs.append((str(out / rel), voice))
            rows.append({"path": rel, "word": row["word"], "kind": row["kind"], "text": row["text"],
                         "engine": "espeak", "speaker": sid, "world": {"source": row["path"], **voice.as_dict()}})
        tasks.append((str(out / row["path"]), outs))
    _run_all(tasks, jobs, progress, fn=_world_task, desc="world", unit="clip",   # one file per clip
             chunksize=max(1, len(tasks) // (32 * (jobs or os.cpu_count() or 1))))
    speakers = sorted(({"id": sid, "engine": "espeak", "world_source": src, "world_voice": v.as_dict()}
                       for (src, _), (sid, v) in voices.items()), key=lambda r: r["id"])
    return rows, speakers


def read_manifest(root) -> dict:
    """The manifest of a synthesized dataset in folder `root` (DatasetError if absent or foreign)."""
    path = Path(root) / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no synthesis manifest (not made by edgekws synth?)") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f"{path}: not an {MANIFEST_FORMAT} file")
    if m.get("version") != MANIFEST_VERSION:
        raise DatasetError(f"{path}: manifest version {m.get('version')!r} is not supported "
                           f"(this edgekws reads version {MANIFEST_VERSION})")
    return m


def load_noises(root, exclude_engines=()) -> dict[str, np.ndarray]:
    """Background noise of a synthesized dataset as float32 arrays, by file name, leaving out the
    babble made by `exclude_engines` (for leave-one-engine-out evaluation)."""
    from edgekws.audio import read_wav
    m = read_manifest(root)
    return {Path(n["path"]).stem: read_wav(Path(root) / n["path"], dtype="float32")
            for n in m["noise"] if n.get("engine") not in set(exclude_engines)}


def _worker_signals() -> None:
    """Ctrl-C is the parent's: it stops the workers (each printed its own KeyboardInterrupt traceback).
    SIGTERM keeps its default: a worker killed while it writes a clip leaves at most a hidden .tmp
    file, which no loader reads (a Python handler could run while the worker holds a queue lock)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_all(job_list: list, jobs: int | None, progress: bool, fn=_run, desc: str = "synth",
             unit: str = "job", chunksize: int = 1) -> list:
    """[fn(job) for job in job_list], in order, on up to `jobs` processes, with a progress bar."""
    jobs = min(jobs or os.cpu_count() or 1, len(job_list)) or 1
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(job_list), unit=unit, desc=desc, disable=None)  # a terminal only, not a log
    results = []
    if jobs == 1:
        it = map(fn, job_list)
        pool = None
    else:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        pool = ctx.Pool(jobs, initializer=_worker_signals)
        it = pool.imap(fn, job_list, chunksize=chunksize)
    try:
        for res in it:
            results.append(res)
            if bar is not None:
                bar.update(1)
        if pool is not None:
            pool.close()
    finally:
        if pool is not None:
            pool.terminate()                    # no-op after close(); stops workers on error
            pool.join()
        if bar is not None:
            bar.close()
    return results
