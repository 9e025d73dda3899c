"""Leave-one-engine-out benchmark: how well a model trained on one speech engine's voices
recognizes voices it never heard (issue 11).

    from edgekws.voices import benchmark, format_table
    res = benchmark({"ja": "data/ja_both", "en": "data/en_both"}, "runs/voices", epochs=20)
    print(format_table(res))

    edgekws eval-voices --ja data/ja_both --en data/en_both --work runs/voices --json voices.json

Input: a synthesized dataset per language holding both engines (`edgekws synth --engines
espeak,openjtalk`); a clip's engine is its speaker-id prefix (`espk…` eSpeak NG, `ojt…` Open JTalk).
For each direction (train engine → held-out engine):

* train  : every clip of the train engine's speakers (10% of its speakers, by the Speech Commands
           hash rule, validate and pick the best epoch), with the training noises only;
* test   : every clip of the held-out engine, balanced like `edgekws eval` (commands, as many
           `_unknown_`, as many `_silence_`): clean, and with noise at `snr_db` (10 dB, measured
           over the whole 1 s clip, as augment.add_noise does);
* noise  : TRAIN_NOISES (white, brown, mains hum, babble of the train engine) feed augmentation and
           `_silence_` in training; the tests use noise training never saw — pink noise (a colour
           kept out) and babble of the held-out engine's voices, one column each. `_silence_` test
           examples are cut from those held-out noises.
* enroll : optionally (enroll=K) the int8 model's last layer is retrained (edgekws.retrain) on K
           clips per class of the held-out engine and tested on its other clips.

Accuracy is over the 12 classes (`_silence_`, `_unknown_`, ten commands), as `edgekws eval`. The
clean error is split in two: command clips taken for `_unknown_` (the word was not recognized) and the
top-1 among the command logits alone (was the right command the likeliest one?). For the default
`dscnn-l`, Japanese eSpeak NG → Open JTalk, session 30 found most command errors to be of the first
kind: rejected, not confused. "sure" is what a stream detector needs on top: the share of command clips
right with a probability for their command above what all but the surest 1% of the set's unknown-word
clips reach for any command (SURE_UNKNOWN_SHARE); "own_sure" the same on the training engine's own
validation clips. Session 45 (RESULTS.md, Voices): the default eSpeak NG -> Open JTalk (float, seed 0)
classifies 84.5% of Open JTalk's clips but is sure of 24.7% (99.1% of its own validation clips), and
detects 7-12% of Open JTalk's commands in streams.
Training runs the normal `edgekws.train.train`; its options pass through unchanged.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

import numpy as np

from edgekws import cliargs
from edgekws.errors import EdgekwsError
from edgekws.fileio import make_dir

ENGINE_PREFIX = {"espeak": "espk", "openjtalk": "ojt"}
ENGINE_NAMES = {"espeak": "eSpeak NG", "openjtalk": "Open JTalk"}
DIRECTIONS = (("espeak", "openjtalk"), ("openjtalk", "espeak"))
# Noise kinds by file stem (edgekws synth writes white_noise, pink_noise, brown_noise, hum_50hz,
# babble_<engine>). "{train}" / "{test}" stand for the engines of a direction.
TRAIN_NOISES = ("white_noise", "brown_noise", "hum_50hz", "babble_{train}")
TEST_NOISES = ("pink_noise", "babble_{test}")
SNR_DB = 10.0
SURE_UNKNOWN_SHARE = 0.01   # "sure": above the probability all but this share of unknown words stay under


def engine_of(speaker: str) -> str:
    """The engine of a speaker id by its prefix: 'espk0012' -> 'espeak', 'ojt0003' -> 'openjtalk'."""
    for engine, prefix in ENGINE_PREFIX.items():
        if speaker.startswith(prefix):
            return engine
    raise EdgekwsError(f"speaker {speaker!r}: no engine prefix ({', '.join(ENGINE_PREFIX.values())})")


def noise_names(train: str, test: str) -> tuple[list[str], list[str]]:
    """File stems of the training noises and of the held-out test noises of one direction."""
    return ([n.format(train=train) for n in TRAIN_NOISES], [n.format(test=test) for n in TEST_NOISES])


def _link(src: Path, dst: Path) -> None:
    make_dir(dst.parent)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def engine_view(data, dst, engine: str, noises, clips=None, val_percent: float = 10.0) -> Path:
    """A dataset folder of symlinks: the clips of `engine`'s speakers and the noise files named in
    `noises` (stems). `clips` (relative paths) restricts the clips further. A validation_list.txt
    puts `val_percent` of the speakers (hash rule) in validation and everything else in training.
    Returns dst. Raises if a noise file is missing."""
    from edgekws.data import BACKGROUND_DIR, load_dataset, which_split

    data, dst = Path(data), Path(dst)
    ds = load_dataset(data, _command_folders(data))
    if dst.exists():
        import shutil

        shutil.rmtree(dst)
    keep = None if clips is None else set(clips)
    val = []
    linked = 0
    for c in ds.clips:
        rel = f"{c.word}/{c.path.name}"
        try:
            of = engine_of(c.speaker)
        except EdgekwsError:
            raise EdgekwsError(f"{c.path}: speaker {c.speaker!r} is not a synthesized voice (no engine prefix "
                               f"{', '.join(ENGINE_PREFIX.values())}); eval-voices needs an edgekws synth "
                               "dataset") from None
        if of != engine or (keep is not None and rel not in keep):
            continue
        _link(c.path, dst / rel)
        linked += 1
        if which_split(c.path.name, val_percent, 0.0) == "val":
            val.append(rel)
    if not linked:
        raise EdgekwsError(f"{data}: no clips of {engine} voices (speaker ids {ENGINE_PREFIX[engine]}…); "
                           "eval-voices needs a dataset synthesized with both engines "
                           "(edgekws synth --engines espeak,openjtalk)")
    by_stem = {p.stem: p for p in ds.noise_files}
    missing = [n for n in noises if n not in by_stem]
    if missing:
        raise EdgekwsError(f"{data}: no background noise file(s) {missing} (synthesize with both engines)")
    for n in noises:
        _link(by_stem[n], dst / BACKGROUND_DIR / f"{n}.wav")
    (dst / "validation_list.txt").write_text("".join(f"{r}\n" for r in sorted(val)), encoding="utf-8")
    (dst / "commands.txt").write_text("".join(f"{w}\n" for w in ds.words), encoding="utf-8")
    return dst


def _command_folders(data: Path) -> list[str]:
    """The command words of a dataset: those of its synth manifest, else the default words present."""
    from edgekws.data import DEFAULT_WORDS
    from edgekws.synth.generator import MANIFEST

    if (data / "commands.txt").is_file():     # a view written by engine_view
        return (data / "commands.txt").read_text(encoding="utf-8").split()
    if (data / MANIFEST).is_file():
        return list(json.loads((data / MANIFEST).read_text(encoding="utf-8"))["commands"])
    return [w for w in DEFAULT_WORDS if (data / w).is_dir()]


# ---- test sets ---------------------------------------------------------------------------------

def held_out_sets(view, fc, *, seed: int = 0, snr_db: float = SNR_DB, cache_dir=None, exclude=()) -> dict:
    """Balanced test arrays of a held-out view: {"clean": (features, labels), "<noise> 10dB": ...}.

    features (N, T, F) int8, labels (N,) int. Word clips (not `_silence_`) get one excerpt of the
    named noise file at snr_db; `exclude` (relative clip paths) drops enrollment clips.
    """
    from edgekws.augment import add_noise, sample_noise
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, float_to_int16, load_noises, split_arrays
    from edgekws.features import compute_features

    view = Path(view)
    ds = load_dataset(view, _command_folders(view))
    if exclude:
        drop = set(exclude)
        ds.clips = [c for c in ds.clips if f"{c.word}/{c.path.name}" not in drop]
    cache = FeatureCache(cache_dir, fc)
    arr = split_arrays(ds, "all", cache, seed=seed)
    out = {"clean": (arr.features, arr.labels)}
    words = np.flatnonzero(~arr.is_silence)
    audio = arr.audio[words].astype(np.float32) / np.float32(32768.0)
    for path, noise in zip(ds.noise_files, load_noises(ds.noise_files, fc.sample_rate)):
        rng = np.random.default_rng([seed, 0x5A1, zlib.crc32(path.stem.encode())])
        noisy = add_noise(audio, sample_noise([noise], len(words), audio.shape[1], rng),
                          np.full(len(words), snr_db))
        feats = arr.features.copy()
        feats[words] = compute_features(float_to_int16(np.clip(noisy, -1, 1)), fc)
        out[f"{path.stem.split('_')[0]} {snr_db:g}dB"] = (feats, arr.labels)
    return out


def _accuracy(engine, sets: dict) -> dict:
    """{set: {"accuracy", "commands", "to_unknown", "commands_top1", "sure", "n"}}: accuracy over the 12
    classes and on the command clips; the share of command clips taken for `_unknown_` (the model did not
    recognize the word: rejection); the share of command clips whose best *command* logit is the right
    one (what the features still tell apart when `_unknown_` and `_silence_` do not compete); sure_share
    of the command clips. The command figures are None for a set without command clips ("sure" also
    without unknown-word clips). Labels are ordered as the dataset's: `_silence_` 0, `_unknown_` 1, then
    the commands."""
    out = {}
    for name, (x, y) in sets.items():
        logits = engine.logits_features(x)
        pred = logits.argmax(1)
        cmd = y >= 2
        some = bool(cmd.any())
        out[name] = {"accuracy": float(np.mean(pred == y)),
                     "commands": float(np.mean(pred[cmd] == y[cmd])) if some else None,
                     "to_unknown": float(np.mean(pred[cmd] == 1)) if some else None,
                     "commands_top1": float(np.mean(logits[cmd, 2:].argmax(1) + 2 == y[cmd])) if some else None,
                     "sure": sure_share(logits, y),
                     "n": int(len(y))}
    return out


def sure_share(logits: np.ndarray, y: np.ndarray, unknown_share: float = SURE_UNKNOWN_SHARE) -> float | None:
    """The share of command clips (label >= 2) classified right with a softmax probability for their
    command above t, where t is the probability of the surest command of the unknown-word clips (label 1)
    that all of them but the surest `unknown_share` stay at or under (the (floor(share * n) + 1)-th
    largest): how many commands a detector that lets that share of unknown words through would catch.
    None without command or unknown-word clips."""
    from edgekws.evaluate import softmax

    cmd, unk = y >= 2, y == 1
    if not cmd.any() or not unk.any():
        return None
    p = softmax(np.asarray(logits, np.float64))
    top_unknown = np.sort(p[unk, 2:].max(1))[::-1]
    t = top_unknown[min(int(np.floor(unknown_share * len(top_unknown) + 1e-9)), len(top_unknown) - 1)]
    right = (p.argmax(1) == y) & (p[np.arange(len(y)), y] > t)
    return float(np.mean(right[cmd]))


# ---- one direction -----------------------------------------------------------------------------

def pick_enrollment(view, shots: int, seed: int = 0) -> list[str]:
    """`shots` clips per word folder (commands, and `shots` of the unknown words) of a view, seeded:
    relative paths."""
    from edgekws.data import UNKNOWN, load_dataset

    view = Path(view)
    ds = load_dataset(view, _command_folders(view))
    rng = np.random.default_rng([seed, 0xE27])
    picked = []
    for label in (UNKNOWN, *ds.words):
        rels = sorted(f"{c.word}/{c.path.name}" for c in ds.clips if c.label == label)
        picked += [rels[i] for i in sorted(rng.choice(len(rels), min(shots, len(rels)), replace=False))]
    return picked


def run_direction(data, work, train_engine: str, test_engine: str, *, seed: int = 0, snr_db: float = SNR_DB,
                  enroll: int | None = None, enroll_noisy: int = 0, augment_config: dict | None = None,
                  test_data=None, voice_search: int = 0, rate_search: int = 0, log=print,
                  **train_options) -> dict:
    """Train on `train_engine`'s clips of dataset `data`, test on `test_engine`'s (see the module doc).

    work          : folder for the views, the model bundle(s) and the feature cache
    test_data     : take the held-out engine's clips and noises from this dataset instead (same words),
                    so that training-data levers are measured on one fixed test set
    augment_config: AugmentConfig fields for training (None: train's default)
    voice_search  : also score the float model with edgekws.evaluate.VoiceSearch over this many bands:
                    "float_search" (as "float") and "val_search": the training engine's validation
                    clips, as training drew them, with and without it ({"plain" / "search": {"accuracy",
                    "unknown_recall"}, "n"})
    rate_search   : with it (or alone), search speaking rates too (VoiceSearch's rate_search; "rate_search")
    train_options : passed to edgekws.train.train (epochs=, arch=, label_smoothing=, augment=False, ...)
    returns {"train", "test", "seed", "train_config", "val_accuracy", "seconds", "float": {set: acc},
             "own_sure": sure_share on the training engine's validation clips (None without them),
             "enroll": {...} (if enroll)}
    """
    from edgekws.evaluate import FloatNetwork
    from edgekws.features import FeatureConfig
    from edgekws.train import train

    for e in (train_engine, test_engine):
        if e not in ENGINE_PREFIX:
            raise EdgekwsError(f"unknown engine {e!r} (choose from {', '.join(ENGINE_PREFIX)})")
    if train_engine == test_engine:
        raise EdgekwsError("the held-out engine must differ from the training engine")
    work = Path(work)
    tag = f"{train_engine}-to-{test_engine}"
    cache = work / ".cache"
    train_noises, test_noises = noise_names(train_engine, test_engine)
    tr_view = engine_view(data, work / f"view-{train_engine}", train_engine, train_noises)
    test_data = data if test_data is None else test_data
    te_view = engine_view(test_data, work / f"view-{test_engine}-test", test_engine, test_noises)
    fc = FeatureConfig()
    t0 = time.perf_counter()
    bundle = train(tr_view, work / f"model-{tag}", seed=seed, overwrite=True, cache_dir=cache,
                   progress=False, log=lambda *a: None, augment_config=augment_config,
                   **{"words": _command_folders(tr_view), **train_options})
    seconds = time.perf_counter() - t0
    training = bundle.manifest["training"]
    res = {"train": train_engine, "test": test_engine, "seed": seed, "snr_db": snr_db, "test_data": str(test_data),
           "train_noises": train_noises, "test_noises": test_noises,
           "train_config": training["config"], "augment_config": training.get("augment_config"),
           "val_accuracy": training["val_accuracy"], "epochs_run": training["epochs_run"],
           "n_train": training["n_train"], "seconds": round(seconds, 1)}
    sets = held_out_sets(te_view, fc, seed=seed, snr_db=snr_db, cache_dir=cache)
    net = FloatNetwork(bundle)
    res["float"] = _accuracy(net, sets)
    val = own_validation(bundle, tr_view, seed, cache)
    res["own_sure"] = sure_share(net.logits_features(val.features), val.labels) if len(val.labels) else None
    clean = res["float"]["clean"]
    log(f"  {tag}: " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in res["float"].items())
        + f"; clean commands: {_fraction(clean['to_unknown'], '.3f')} to _unknown_, top-1 among commands "
          f"{_fraction(clean['commands_top1'], '.3f')}, sure {_fraction(clean['sure'], '.3f')} (own validation "
          f"{_fraction(res['own_sure'], '.3f')}; in-engine val {_fraction(res['val_accuracy'], '.3f')}, {seconds:.0f} s)")
    if voice_search or rate_search:
        res.update(_voice_search(bundle, net, val, sets, voice_search, rate_search))
        own = res["val_search"]
        from edgekws.evaluate import search_name

        log(f"  {tag}, {search_name(voice_search, rate_search)}: " + ", ".join(
            f"{k} {v['accuracy']:.3f}" for k, v in res["float_search"].items())
            + f"; own validation {_fraction(own['plain']['accuracy'], '.3f')} -> "
              f"{_fraction(own['search']['accuracy'], '.3f')}, `_unknown_` recall "
              f"{_fraction(own['plain']['unknown_recall'], '.2f')} -> {_fraction(own['search']['unknown_recall'], '.2f')}")
    if enroll:
        res["enroll"] = enroll_direction(bundle, test_data, work, train_view=tr_view, test_engine=test_engine,
                                         train_noises=train_noises, test_noises=test_noises, shots=enroll,
                                         noisy=enroll_noisy, seed=seed, snr_db=snr_db, log=log)
    return res


def _voice_search(bundle, net, val, sets: dict, bands: int, rates: int = 0) -> dict:
    """run_direction's voice-search figures for `bundle` (its float network `net`): the held-out sets, and
    the training engine's own validation clips `val` (own_validation: what searching costs the voices it
    knows: unknown words heard as commands); "n": how many."""
    from edgekws.data import UNKNOWN
    from edgekws.evaluate import VoiceSearch

    search = VoiceSearch(net, bands, rates)
    unknown = val.labels == bundle.labels.index(UNKNOWN)
    own = {}
    for name, engine in (("plain", net), ("search", search)):
        pred = engine.logits_features(val.features).argmax(1) if len(val.labels) else val.labels
        own[name] = {"accuracy": float(np.mean(pred == val.labels)) if len(val.labels) else None,
                     "unknown_recall": float(np.mean(pred[unknown] == val.labels[unknown])) if unknown.any() else None}
    own["n"] = int(len(val.labels))
    return {"voice_search": int(bands), "rate_search": int(rates), "float_search": _accuracy(search, sets),
            "val_search": own}


def own_validation(bundle, train_view, seed: int, cache):
    """The training engine's validation clips as training drew them (edgekws.featcache.SplitArrays)."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, load_noises, split_arrays
    from edgekws.features import FeatureConfig

    fc = FeatureConfig()
    config = bundle.manifest["training"]["config"]
    ds = load_dataset(train_view, _command_folders(Path(train_view)))
    return split_arrays(ds, "val", FeatureCache(cache, fc), seed=seed, noises=load_noises(ds.noise_files, fc.sample_rate),
                        unknown_ratio=config["unknown_ratio"], silence_ratio=config["silence_ratio"])


def enroll_direction(bundle, data, work, *, train_view, test_engine, train_noises, test_noises, shots: int = 3,
                     noisy: int = 0, seed: int = 0, snr_db: float = SNR_DB, log=print) -> dict:
    """Quantize `bundle`, retrain its last layer on `shots` clips per class of the held-out engine
    (silence cut from the training noises; `noisy` noisy copies of each clip with the training noises,
    edgekws.retrain.noisy_copies), test int8 before/after on its other clips."""
    from edgekws.data import load_dataset
    from edgekws.evaluate import KeywordModel
    from edgekws.featcache import FeatureCache, split_arrays
    from edgekws.features import FeatureConfig
    from edgekws.quant import quantize_bundle
    from edgekws.retrain import retrain

    work = Path(work)
    cache = work / ".cache"
    fc = FeatureConfig()
    calib = split_arrays(load_dataset(train_view, _command_folders(Path(train_view))), "train",
                         FeatureCache(cache, fc), seed=seed).features
    calib = calib[np.sort(np.random.default_rng(seed).choice(len(calib), min(1000, len(calib)), replace=False))]
    quantize_bundle(bundle, calib, seed=seed, log=lambda *a: None)
    full = engine_view(data, work / f"view-{test_engine}-all", test_engine, [])
    picked = pick_enrollment(full, shots, seed)
    enroll_view = engine_view(data, work / f"view-{test_engine}-enroll", test_engine, train_noises, clips=picked)
    (enroll_view / "validation_list.txt").unlink()
    te_view = work / f"view-{test_engine}-test"
    new = retrain(bundle, enroll_view, work / f"model-{bundle.path.name}-enrolled", shots=shots, seed=seed,
                  overwrite=True, cache_dir=cache, noisy=noisy, log=lambda *a: None)
    sets = held_out_sets(te_view, fc, seed=seed, snr_db=snr_db, cache_dir=cache, exclude=picked)
    out = {"shots": shots, "noisy_copies": noisy, "clips": len(picked), "before_int8": _accuracy(KeywordModel(bundle, "int8").engine, sets),
           "after_int8": _accuracy(KeywordModel(new, "int8").engine, sets)}
    log(f"  enrolled ({shots} clips/class): " + ", ".join(
        f"{k} {out['before_int8'][k]['accuracy']:.3f} -> {v['accuracy']:.3f}" for k, v in out["after_int8"].items()))
    return out


# ---- the benchmark -----------------------------------------------------------------------------

def _check_enroll_leaves_tests(ds, engines, enroll: int, name: str) -> None:
    """--enroll K takes K clips of each class of the held-out engine: each needs one more to test."""
    from collections import Counter

    from edgekws.data import UNKNOWN

    counts = Counter((engine_of(c.speaker), c.label) for c in ds.clips if c.label in (UNKNOWN, *ds.words))
    for engine in sorted(engines):
        fewest, label = min((counts[(engine, lab)], lab) for lab in (UNKNOWN, *ds.words))
        if fewest <= enroll:
            raise EdgekwsError(f"--enroll {enroll}: {name} has {fewest} {ENGINE_NAMES[engine]} clip(s) of "
                               f"{label!r}, which leaves none to test; give --enroll {max(fewest - 1, 0)} or less")

def benchmark(datasets: dict, work, *, directions=DIRECTIONS, seeds=(0,), snr_db: float = SNR_DB,
              enroll: int | None = None, enroll_noisy: int = 0, augment_config: dict | None = None,
              test_datasets: dict | None = None, voice_search: int = 0, rate_search: int = 0, log=print,
              **train_options) -> dict:
    """Every language × direction × seed. datasets: {"ja": folder, "en": folder} (both engines each);
    test_datasets: {lang: folder} to test on another dataset's held-out engine (see run_direction).

    returns {"snr_db", "train_options", "augment", "runs": [run_direction results + "lang"]}
    """
    from edgekws.fileio import check_outside

    from edgekws.data import load_dataset

    for lang, data in datasets.items():   # its views, models and cache would read as word folders
        check_outside(work, data, f"--{lang}", "--work")
    for lang, data in datasets.items():   # every dataset readable before the first of hours of training
        try:
            ds = load_dataset(data, _command_folders(Path(data)))
        except (EdgekwsError, OSError, ValueError, KeyError) as exc:
            raise EdgekwsError(f"--{lang} {data}: {exc}") from None
        if enroll:   # the enrollment and test clips come from the held-out engine of the test data
            test_data = (test_datasets or {}).get(lang, data)
            tds = ds if test_data == data else load_dataset(test_data, _command_folders(Path(test_data)))
            _check_enroll_leaves_tests(tds, {test for _, test in directions}, enroll, f"--{lang} {test_data}")
    runs = []
    for lang, data in datasets.items():
        for train_engine, test_engine in directions:
            for seed in seeds:
                log(f"{lang}: train {ENGINE_NAMES[train_engine]} -> test {ENGINE_NAMES[test_engine]}, seed {seed}")
                r = run_direction(data, Path(work) / lang / f"seed{seed}", train_engine, test_engine, seed=seed,
                                  snr_db=snr_db, enroll=enroll, enroll_noisy=enroll_noisy,
                                  augment_config=augment_config, log=log, voice_search=voice_search,
                                  rate_search=rate_search,
                                  test_data=(test_datasets or {}).get(lang), **train_options)
                runs.append({"lang": lang, "dataset": str(data), **r})
    return {"snr_db": snr_db, "train_options": train_options, "augment_config": augment_config, "runs": runs}


def summarize(results: dict) -> list[dict]:
    """One row per (lang, train, test): mean and min/max over seeds of each test set's accuracy,
    "clean_commands": the mean share of clean command clips taken for `_unknown_` and their top-1
    among the commands (None when a run lacks them: results saved before session 30), and "sure":
    the mean sure_share of the clean set and of the own validation clips (absent when a run lacks it:
    results saved before session 45; "own" None when no run had validation clips)."""
    groups: dict = {}
    for r in results["runs"]:
        groups.setdefault((r["lang"], r["train"], r["test"]), []).append(r)
    rows = []
    for (lang, tr, te), rs in groups.items():
        row = {"lang": lang, "train": tr, "test": te, "seeds": [r["seed"] for r in rs],
               "val": _mean([r["val_accuracy"] for r in rs]), "sets": {}}
        for name in rs[0]["float"]:
            acc = [r["float"][name]["accuracy"] for r in rs]
            row["sets"][name] = {"mean": float(np.mean(acc)), "min": float(min(acc)), "max": float(max(acc))}
        clean = [r["float"]["clean"] for r in rs]
        row["clean_commands"] = {k: _mean([c.get(k) for c in clean]) if all(c.get(k) is not None for c in clean)
                                 else None for k in ("to_unknown", "commands_top1")}
        if all(c.get("sure") is not None for c in clean):
            row["sure"] = {"clean": _mean([c["sure"] for c in clean]), "own": _mean([r.get("own_sure") for r in rs])}
        if all("float_search" in r for r in rs) and len({(r["voice_search"], r.get("rate_search", 0)) for r in rs}) == 1:
            row["search"] = {"bands": rs[0]["voice_search"], "rates": rs[0].get("rate_search", 0),
                             "clean": _mean([r["float_search"]["clean"]["accuracy"] for r in rs]),
                             **{f"val_{k}": {m: _mean([r["val_search"][m][k] for r in rs]) for m in ("plain", "search")}
                                for k in ("accuracy", "unknown_recall")}}
        if all("enroll" in r for r in rs):
            row["enroll"] = {name: float(np.mean([r["enroll"]["after_int8"][name]["accuracy"] for r in rs]))
                             for name in rs[0]["enroll"]["after_int8"]}
            row["before_enroll"] = {name: float(np.mean([r["enroll"]["before_int8"][name]["accuracy"] for r in rs]))
                                    for name in rs[0]["enroll"]["before_int8"]}
        rows.append(row)
    return rows


def _mean(values) -> float | None:
    """Mean of the values that exist (a training set with no validation speaker has none), else None."""
    have = [v for v in values if v is not None]
    return float(np.mean(have)) if have else None


def _fraction(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(results: dict) -> str:
    """A Markdown table: language, train → test engine, in-engine validation, then each test set
    (mean over seeds, with min–max when there are several), the split of the clean command errors
    (n/a for results saved without it), the commands it is sure of, own voices → clean (n/a likewise)
    and enrollment if it was run."""
    rows = summarize(results)
    if not rows:
        return "(no runs)"
    sets = list(rows[0]["sets"])
    enroll = "enroll" in rows[0]
    split = any(v is not None for r in rows for v in r["clean_commands"].values())
    head = ["lang", "train → test", "in-engine val", *sets]
    if split:
        head += ["clean commands → `_unknown_`", "clean commands, top-1 among commands"]
    sure = any("sure" in r for r in rows)
    if sure:
        head += [f"commands sure ({100 * SURE_UNKNOWN_SHARE:g}% of unknown words): own validation → clean"]
    widths = {(r["search"]["bands"], r["search"].get("rates", 0)) for r in rows if "search" in r}
    bands = widths.pop() if len(widths) == 1 else None     # rows searched alike: their columns
    if bands is not None:
        from edgekws.evaluate import search_name

        head += [f"clean, {search_name(*bands)}",
                 "own validation: plain → search",
                 "own `_unknown_` recall: plain → search"]
    if enroll:
        head += [f"int8 {s}: before → after enroll" for s in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["lang"], f"{ENGINE_NAMES[r['train']]} → {ENGINE_NAMES[r['test']]}",
                 _fraction(r["val"] and 100 * r["val"], ".1f")]
        for s in sets:
            v = r["sets"][s]
            cells.append(f"{100 * v['mean']:.1f}" + (f" ({100 * v['min']:.1f}–{100 * v['max']:.1f})"
                                                      if len(r["seeds"]) > 1 else ""))
        if split:
            cells += [_fraction(r["clean_commands"][k] and 100 * r["clean_commands"][k], ".1f")
                      for k in ("to_unknown", "commands_top1")]
        if sure:
            v = r.get("sure")
            cells.append("n/a" if v is None else
                         f"{_fraction(v['own'] and 100 * v['own'], '.1f')} → {_fraction(100 * v['clean'], '.1f')}")
        if bands is not None:
            v = r.get("search")
            pct = lambda x: _fraction(x and 100 * x, ".1f")   # noqa: E731
            cells += ["n/a"] * 3 if v is None else [
                pct(v["clean"]), f"{pct(v['val_accuracy']['plain'])} → {pct(v['val_accuracy']['search'])}",
                f"{_fraction(v['val_unknown_recall']['plain'], '.2f')} → {_fraction(v['val_unknown_recall']['search'], '.2f')}"]
        if enroll:
            cells += [f"{100 * r['before_enroll'][s]:.1f} → {100 * r['enroll'][s]:.1f}" for s in sets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("eval-voices", help="leave-one-engine-out benchmark: train on one TTS engine, test on the other",
                       description="Train on eSpeak NG only and test on Open JTalk, and the reverse, per language; "
                                   "clean and at 10 dB SNR with noise not used in training. Prints a table.")
    p.add_argument("--ja", metavar="DATA", help="Japanese dataset with both engines (edgekws synth --lang ja)")
    p.add_argument("--en", metavar="DATA", help="English dataset with both engines (edgekws synth --lang en)")
    p.add_argument("--work", required=True, help="folder for views, models and the feature cache")
    p.add_argument("--json", metavar="FILE", help="write every result here")
    p.add_argument("--seeds", type=cliargs.seed_list, default=(0,), help="comma-separated training seeds (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs (default: train's)")
    p.add_argument("--arch", help="architecture (default: train's)")
    p.add_argument("--time-warp", type=float, metavar="P", help="training time warp fraction (default: train's)")
    p.add_argument("--freq-shift", type=float, metavar="P", help="training band shift fraction (default: train's)")
    p.add_argument("--tilt", type=float, metavar="P", help="training spectral tilt fraction (default: train's)")
    p.add_argument("--consistency", type=float, metavar="W", help="training consistency weight between two voices "
                                                                  "(default: train's)")
    p.add_argument("--consistency-from", type=int, metavar="E",
                   help="train the first E epochs without the consistency term (default: train's, two thirds "
                        "of the epochs)")
    p.add_argument("--snr", type=float, default=SNR_DB, help=f"SNR of the noisy tests in dB (default {SNR_DB:g})")
    p.add_argument("--enroll", type=cliargs.positive_int, metavar="K", help="also enroll K clips per class of the held-out engine")
    p.add_argument("--enroll-noisy", type=cliargs.non_negative_int, default=0, metavar="N",
                   help="enrollment also learns from N noisy copies of each clip (retrain --noisy-copies)")
    p.add_argument("--voice-search", type=cliargs.voice_search, default=0, metavar="K",
                   help="also score each model with voice search over K bands (eval --voice-search), and its "
                        "cost on the training engine's own validation clips (default 0 = off)")
    p.add_argument("--rate-search", type=cliargs.rate_search, default=0, metavar="L",
                   help="search speaking rates too (eval --rate-search; default 0 = off)")
    p.set_defaults(func=run)


def check_enroll_options(enroll, noisy: int, arch) -> None:
    """What enrollment needs, checked before the first training (it found them after hours of it)."""
    if noisy and not enroll:
        raise EdgekwsError("--enroll-noisy adds noisy copies to enrollment; give --enroll K too")
    if not enroll:
        return
    from edgekws.models import DEFAULT_ARCH, arch_budget
    from edgekws.retrain.core import MAX_COPIES

    if not 0 <= noisy <= MAX_COPIES:
        raise EdgekwsError(f"--enroll-noisy: must be an integer in 0..{MAX_COPIES}, got {noisy}")

    if not arch_budget(arch or DEFAULT_ARCH).int8_ready:
        raise EdgekwsError(f"--enroll retrains an int8 head, and --arch {arch} has layers the int8 pipeline does "
                           "not support; choose a DS-CNN, cnn or dnn architecture")


LANG_NAMES = {"ja": "Japanese", "en": "English"}


def synthesized_language(data):
    """The lang of DATA/synth_manifest.json (edgekws synth), or None (not synthesized, or unreadable:
    load_dataset reports a missing folder)."""
    try:
        lang = json.loads((Path(data) / "synth_manifest.json").read_text(encoding="utf-8")).get("lang")
    except (OSError, ValueError, AttributeError):
        return None
    return lang if isinstance(lang, str) else None


def run(args) -> int:
    datasets = {lang: d for lang, d in (("ja", args.ja), ("en", args.en)) if d}
    if not datasets:
        raise EdgekwsError("give --ja DATA and/or --en DATA")
    for lang, d in datasets.items():   # a synthesized set knows its language: --ja with English data is a mix-up
        said = synthesized_language(d)
        if said is not None and said != lang:
            raise EdgekwsError(f"--{lang} {d}: synthesized in {LANG_NAMES.get(said, said)} "
                               f"(synth_manifest.json lang {said!r}); give it as --{said}")
    if not -20 <= args.snr <= 80:   # as eval-stream's --snr; NaN fails too
        raise EdgekwsError(f"--snr: expected a level in dB from -20 to 80, got {args.snr:g}")
    from edgekws.fileio import check_output_file

    if args.json:
        from edgekws.evaluate import refuse_foreign_json

        check_output_file(args.json, "--json", tuple((d, f"--{lang}") for lang, d in datasets.items()))
        refuse_foreign_json(args.json, "runs")   # before the trainings, not after
    opts = {k: v for k, v in (("epochs", args.epochs), ("arch", args.arch), ("time_warp", args.time_warp),
                              ("freq_shift", args.freq_shift), ("tilt", args.tilt),
                              ("consistency", args.consistency), ("consistency_from", args.consistency_from))
            if v is not None}
    from edgekws.train import TrainConfig

    TrainConfig(**opts).check()   # before the views and the first training, not 0.4 s into it
    check_enroll_options(args.enroll, args.enroll_noisy, args.arch)
    res = benchmark(datasets, args.work, seeds=args.seeds, snr_db=args.snr, enroll=args.enroll,
                    enroll_noisy=args.enroll_noisy, voice_search=args.voice_search,
                    rate_search=args.rate_search, **opts)
    if args.json:   # before the table: a closed stdout (`| head`) must not lose hours of trainings
        from edgekws.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=1))
    print(format_table(res))
    return 0
