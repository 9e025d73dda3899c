"""`edgekws train DATA --out MODEL`: train a keyword model with the numpy engine into a model bundle.

Pipeline: dataset (balanced `_silence_` / `_unknown_`) -> int16 1 s clips -> cached int8 features ->
model input (q - zero_point) * scale -> the network of `--arch` (models.py). Training draws every
random choice (shuffling, audio augmentation, silence cuts, time warp, SpecAugment, band shift,
tilt, dropout) from generators whose state is saved in the checkpoint, so an interrupted run resumed with
`--resume` ends with the same weights, bit for bit, as an uninterrupted one.

Per epoch: a tqdm bar (loss, accuracy, ETA), validation, the best weights kept (by validation
accuracy), early stopping, and an atomic checkpoint MODEL/checkpoint.npz (model, optimizer, RNG
states, history, epoch). Ctrl-C leaves the last epoch's checkpoint; `--resume` reruns from there.
Batches (augmented audio -> integer features -> time warp, SpecAugment, band shift, tilt) are made
ahead of the training loop in a forked worker process (BatchPipeline), each from its own seeded generator.
At the end, MODEL becomes a bundle: manifest, weights.npz (best weights), history.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekws import cliargs
from edgekws.bundle import TRAIN_LOCK
from edgekws.errors import BundleError, EdgekwsError, is_int, is_real
from edgekws.fileio import OutputError, check_outside, make_dir
from edgekws.models import DEFAULT_ARCH
from edgekws.nn.losses import consistency_to_mean
from edgekws.nn.parallel import more_threads, one_blas_thread

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "edgekws-train-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (stored in the checkpoint and the manifest)."""

    arch: str = DEFAULT_ARCH
    epochs: int = 60                 # 60: 97.6-98.2% on unseen speakers; issue 11: longer helps unseen voices
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0
    words: list[str] | None = None
    weight_decay: float = 0.01       # AdamW, decoupled, weights only
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02       # cosine schedule ends at lr * this
    # early stop after this many epochs without a better val accuracy; 12 cut English short at
    # epoch 40 of 60 (best 28: 96.9% int8), before the low learning rates of the cosine tail
    patience: int = 20
    grad_clip: float = 5.0
    augment: bool = True             # audio-level augmentation (edgekws.augment) on the fly
    augment_prob: float = 0.8        # fraction of word clips augmented per epoch
    specaugment: bool = True         # time/frequency masks on the features
    # Random non-uniform tempo of the features (time_warp) for this fraction of training examples: the
    # engines time a word's sounds differently (eSpeak NG's Japanese words last ~1.5x Open JTalk's). At 0.8:
    # Japanese eSpeak -> Open JTalk +0.6..+3.9 points clean alone, +8 with `edgekws adapt` (two seeds);
    # English on the Flite/Festival judging set +2 (two seeds each); own voices Japanese -1.0, English
    # -1.3 with both engines (97.2 / 96.3%, one seed under 97%); streams level (RESULTS.md). On by default
    # since session 6.
    time_warp: float = 0.8
    # A random shift of the mel bands (freq_shift_bands) for this fraction of training examples: the
    # whole spectrum (pitch harmonics, formants, tilt) moves up or down by up to FREQ_SHIFT_BANDS bands,
    # about a third of the frequency above 1 kHz, as between a low and a high voice. Open JTalk's voice
    # sits 3-4 bands above eSpeak NG's: Japanese eSpeak NG -> Open JTalk 65.4 -> 81.1%, the reverse
    # 39.1 -> 43.3%; English on the Flite/Festival judging set 75.9 -> 73.4 / 76.7% (two seeds); own
    # voices within a point; on since session 27 (RESULTS.md).
    freq_shift: float = 0.5
    # A random linear tilt of the spectrum (spectral_tilt) for this fraction of training examples: up to
    # ±SPECTRAL_TILT_DB / 2 at the top band and the opposite at the bottom, as between a bright and a dull
    # voice or vocoder (the audio EQ's tilt bends 48% of clips on a log-frequency axis before the
    # features; this one is a line over the mel bands after them). Tilting Open JTalk's clips brighter
    # helped a band-shift model hear them; trained in, Japanese eSpeak NG -> Open JTalk 81.1 / 71.4 /
    # 65.0 -> 83.5 / 80.8 / 68.8% (seeds 0 / 1 / 2), pink 10 dB +3..+11; twice the tilt (24 dB) lost on
    # seed 0 (71.7%). On since session 28 (RESULTS.md).
    tilt: float = 0.5
    # Consistency between two voices of every training example: each batch is also seen with one more
    # band shift (up to ±FREQ_SHIFT_BANDS), tilt and time warp drawn for every example (second_voice),
    # and the two views' answers are pulled toward their mean with this weight (consistency_to_mean;
    # the cross-entropy stays on the first view). In every epoch at weight 2, Japanese eSpeak NG -> Open
    # JTalk 83.5 / 80.8 / 68.8 -> 85.2 / 84.4 / 77.6% (seeds 0 / 1 / 2) for twice the training time
    # (session 31); in the last third only (consistency_from), most of that for a third of the cost. The
    # history's train_loss then includes the agreement term. 0 = off.
    consistency: float = 2.0
    # The first this-many epochs train without the second voice, the rest with it: the agreement shapes
    # a model that has learned the words. None: the last third (late_start; epoch 40 of 60). From epoch
    # 40 at weight 2, over five seeds: Japanese eSpeak NG -> Open JTalk 75.8 -> 79.6% as trained, 81.7 ->
    # 86.0% with eval's voice and rate search; own voices Japanese 98.0%, English 97.4% int8; 494 s of
    # English training, 547 s of Japanese, alone (RESULTS.md, Voices: sessions 32-34). The kept checkpoint
    # is the best epoch after E (the first one with the second voice replaces the best so far), and
    # early stopping counts from it (session 33). The default since session 34.
    consistency_from: int | None = None
    silence_ratio: float = 1.0
    # Streams of unknown words (issue 7) need more of them than the clips' balance: _unknown_ examples
    # per epoch = 3x a command's. Japanese test streams, hits above every false accept: 72% -> 94%
    # with hard negatives too (--hard-negatives S: words the model takes for a command come back
    # 1 + S x that probability as often; hard_negative_weights). Off by default since session 52: with
    # every Japanese speaker saying ほん the streams lose some hits without them and ja960 fewer false
    # accepts (seeds 0 / 1: 96.6% hits at 0.43 FA/h and 93.8% at 0/h, against 96.6% at 4.70/h and
    # 96.9% at 0.43/h with S = 20; English 82.2 / 77.8% against 81.8 / 86.7%; the demo -4.7 points on
    # two seeds), own voices hold or rise (int8 Japanese 98.9 / 98.5%, English 97.2 / 98.1%, against
    # 98.7 / 98.5% and 96.9 / 97.4%), and voices never heard gain (eSpeak NG -> Open JTalk 77.4 ->
    # 79.7% as trained, 86.1 -> 88.6% voice-normalized, five seeds; the teachers' recipe 83.3 ->
    # 87.0%; RESULTS.md, Voices, sessions 51-52).
    unknown_ratio: float = 3.0
    hard_negatives: float = 0.0
    # Training sees _unknown_ r times as often as a command, so the model learns that prior: voices it
    # never met went to _unknown_ (Japanese eSpeak -> Open JTalk 38.3%, 1,272 of 2,112 commands). The
    # finished model's _unknown_ bias gets -log(r) (logit adjustment for the sampling prior): 63.1%,
    # its own voices 99.4% -> 99.1%, streams unchanged (their thresholds are tuned).
    prior_correction: bool = True
    # The finished bundle's embedding pool also averages the architecture's retrain taps (block 3 of
    # the dscnn models) with zero classifier weights: the same answers, twice the embedding for
    # last-layer retraining (192 values for the default; +2 / +2 / +6 points at 5 / 20 / all examples
    # of a new language; models.py). Off: half the values and of the head trainer's RAM on a device.
    retrain_tap: bool = True
    # Vocabulary dataset folders, comma-separated (`edgekws synth --vocab [KIND]`, any language): each
    # of their word folders trains as one more class, and those classes are dropped from the bundle. The
    # model's own labels stay; its features learn to tell many more words apart, which is what last-layer retraining for
    # a new language needs: a Japanese base + 63 English words retrains to English at 84.0 / 91.5 /
    # 96.3% from 5 / 20 / all examples per word (another base seed: 83.0 / 89.3 / 95.6%; 75.9 / 83.3 /
    # 91.3% without), for 0.8 points of its own Japanese (97.4% int8; RESULTS.md); with 300 more words
    # (`synth --vocab broad`) and 78 minimal pairs beside them, 91.2 / 91.5% at 5 examples for speakers
    # never heard (RESULTS.md, session 46). Off by default.
    vocabulary: str | None = None
    # With a vocabulary: a Dense layer "whiten" before the classifier scales down the directions of
    # the embedding that vary between clips of one vocabulary word (models.with_whitening; the same
    # answers): +1.4 / +1.0 points at 5 / 20 examples per word for a Japanese base's English head,
    # three base seeds (RESULTS.md, session 41). Costs E x E int8 weights (37 KB for the default's 192).
    whiten: bool = True
    # Teachers (edgekws.teachers): finished models of the same labels, often the same recipe with other
    # seeds; their mean probability of each augmented example weighs teacher_weight in its target. With
    # the five LOEO defaults as teachers, Japanese eSpeak NG -> Open JTalk 82.2% over four student seeds
    # against 78.3% for the default on the same seeds (RESULTS.md, Voices, session 37); with the second
    # voice in every epoch as well (consistency_from=0) 88.8% (87.8-89.7%, int8 89.0%; session 38). Off
    # by default: the teachers are trained first, and each step also runs them (a student ~2x a default);
    # and trained on both engines (English, session 39) the same recipe lost on voices of other engines
    # (Flite/Festival 72.8% against 75.7% for five defaults) and on its own (96.1% against 97.8%).
    teachers: list | None = None
    teacher_weight: float = 0.7

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {"hard_negatives": 0.0, "prior_correction": False, "time_warp": 0.0, "retrain_tap": False,
             "whiten": False,
             "freq_shift": 0.0, "tilt": 0.0, "consistency": 0.0, "consistency_from": 0,
             **d}  # older configs: without them
        return cls(**{k: v for k, v in d.items() if k in names}).resolved()

    def resolved(self) -> "TrainConfig":
        """This config with consistency_from chosen when it is None: the last third of the epochs with
        consistency (late_start), every epoch without it (0)."""
        if self.consistency_from is not None:
            return self
        start = late_start(self.epochs) if self.consistency and is_int(self.epochs, numpy=False) else 0
        return dataclasses.replace(self, consistency_from=start)

    def check(self) -> None:
        from edgekws.models import get_arch

        get_arch(self.arch)
        number = lambda v: is_real(v, numpy=False) and math.isfinite(v)  # noqa: E731
        for name in ("epochs", "batch", "patience"):
            v = getattr(self, name)
            if not is_int(v, numpy=False) or v < 1:
                raise EdgekwsError(f"--{name}: must be a positive integer, got {v!r}")
        if self.batch < 2:   # BatchNorm after a Dense layer (dnn) has one value per channel in a batch of one
            raise EdgekwsError(f"--batch: must be 2 or more (BatchNorm needs more than one example), got {self.batch}")
        if not (number(self.lr) and 0 < self.lr < 10):
            raise EdgekwsError(f"--lr: must be a number in (0, 10), got {self.lr!r}")
        if not (number(self.unknown_ratio) and 0 < self.unknown_ratio <= MAX_SAMPLING):
            raise EdgekwsError(f"--unknown-ratio: must be a number in (0, {MAX_SAMPLING}], got {self.unknown_ratio!r}")
        if not (number(self.hard_negatives) and 0 <= self.hard_negatives <= MAX_SAMPLING):
            raise EdgekwsError(f"--hard-negatives: must be a number in [0, {MAX_SAMPLING}], got {self.hard_negatives!r}")
        if not (number(self.augment_prob) and 0 <= self.augment_prob <= 1):
            raise EdgekwsError(f"augment_prob: must be in [0, 1], got {self.augment_prob!r}")
        for name in ("time_warp", "freq_shift", "tilt"):
            v = getattr(self, name)
            if not (number(v) and 0 <= v <= 1):
                raise EdgekwsError(f"--{name.replace('_', '-')}: must be a fraction in [0, 1], got {v!r}")
        if not (number(self.consistency) and 0 <= self.consistency <= MAX_CONSISTENCY):
            raise EdgekwsError(f"--consistency: must be a weight in [0, {MAX_CONSISTENCY:g}], got {self.consistency!r}")
        start = self.resolved().consistency_from   # None: the default, two thirds of the epochs
        if not is_int(start, numpy=False) or not 0 <= start < self.epochs:
            raise EdgekwsError(f"--consistency-from: must be an epoch count in [0, {self.epochs}) (the training's "
                               f"epochs), got {start!r}")
        if start and not self.consistency:
            raise EdgekwsError(
                "--consistency-from: starts consistency training late; it needs a nonzero --consistency W (0, or "
                "--no-augment, turns the second voice off)")
        if self.teachers is not None and (not isinstance(self.teachers, (list, tuple)) or not self.teachers or
                                          not all(isinstance(t, str) and t for t in self.teachers)):
            raise EdgekwsError(f"--teachers: must be a list of model bundle folders, got {self.teachers!r}")
        if not (number(self.teacher_weight) and 0 < self.teacher_weight <= 1):
            raise EdgekwsError(f"--teacher-weight: must be a weight in (0, 1], got {self.teacher_weight!r}")
        if self.teachers and self.vocabulary:
            raise EdgekwsError("--teachers: cannot train with --vocab (the teachers have no vocabulary classes)")
        if not is_int(self.seed, numpy=False) or not 0 <= self.seed < 2 ** 63:
            raise EdgekwsError(f"--seed: must be an integer in [0, 2^63), got {self.seed!r}")
        for name, ok, want in (("label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
                               ("weight_decay", lambda v: v >= 0, ">= 0"), ("grad_clip", lambda v: v >= 0, ">= 0 (0: no clipping)"),
                               ("warmup_epochs", lambda v: v >= 0, ">= 0"),
                               ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
                               ("silence_ratio", lambda v: 0 <= v <= MAX_SAMPLING, f"in [0, {MAX_SAMPLING}]")):
            v = getattr(self, name)
            if not (number(v) and ok(v)):   # before the data loads, not as a ValueError of the engine
                raise EdgekwsError(f"{name}: must be a finite number {want}, got {v!r}")


def late_start(epochs: int) -> int:
    """The default --consistency-from: the epochs before the last third (40 of 60, 5 of 8, 0 of 1)."""
    return 2 * epochs // 3


# The largest --unknown-ratio and --hard-negatives (far above any useful value; larger ones overflowed
# the draw's arithmetic after the first epoch, and in every --resume)
MAX_SAMPLING = 1000
MAX_CONSISTENCY = 100.0


# Small and quick: `edgekws train --quick` (a smoke run) and tests; the demo has its own plan (edgekws.demo).
QUICK = {"arch": "dscnn-s", "epochs": 8, "batch": 32, "lr": 5e-3, "patience": 4}


# What `--no-augment` sets: every augmentation of the training input off.
NO_AUGMENT = {"augment": False, "specaugment": False, "time_warp": 0.0, "freq_shift": 0.0, "tilt": 0.0,
              "consistency": 0.0}

# The option of `edgekws train` behind each TrainConfig field whose name is not its flag.
FLAG_OF = {"vocabulary": "--vocab", "augment": "--no-augment", "specaugment": "--no-augment",
           "retrain_tap": "--no-retrain-tap", "whiten": "--no-whiten"}


def _resume_differences(given: dict, config: "TrainConfig", quick: bool) -> str:
    """The options given to a --resume that differ from the checkpoint's, named by their flags ("" when
    none): --quick's settings count as given, the default words equal no --words, and --no-augment
    names the time warp, band shift, tilt and second voice it turned off."""
    from edgekws.data import DEFAULT_WORDS

    source = {}
    if quick:
        for k, v in QUICK.items():
            if given.get(k) is None:
                given, source[k] = {**given, k: v}, "--quick"
    norm = lambda k, v: (list(v) if v else list(DEFAULT_WORDS)) if k == "words" else (  # noqa: E731
        list(v) if isinstance(v, (list, tuple)) else v)
    by_flag: dict[str, list[str]] = {}
    for k, v in given.items():
        if v is None or not hasattr(config, k):
            continue
        mine, theirs = norm(k, v), norm(k, getattr(config, k))
        if mine != theirs:
            flag = source.get(k) or FLAG_OF.get(k) or "--" + k.replace("_", "-")
            if k in NO_AUGMENT and given.get("augment") is False and mine == NO_AUGMENT[k]:
                flag = "--no-augment"   # which turns them off too, unless given a nonzero value
            by_flag.setdefault(flag, []).append(f"{k} {mine!r}, the checkpoint's {theirs!r}")
    return ", ".join(f"{flag} ({'; '.join(parts)})" for flag, parts in by_flag.items())


# ---- checkpoints -----------------------------------------------------------------------------

def save_checkpoint(path: Path, model, opt, meta: dict, best_state: dict | None) -> None:
    """Atomically write model + optimizer + best weights (arrays) and `meta` (JSON) to one .npz."""
    from edgekws.bundle import npz_bytes
    from edgekws.fileio import atomic_write_bytes

    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        arrays.update({f"best/{k}": v for k, v in best_state.items()})
    sd = opt.state_dict()
    for pname, slots in sd["state"].items():
        for slot, v in slots.items():
            arrays[f"opt/{pname}/{slot}"] = v
    meta = {**meta, "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "opt_step_count": sd["step_count"], "opt_lr": sd["lr"],
            "opt_slots": {p: sorted(s) for p, s in sd["state"].items()},
            "model_random_state": model.random_state()}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    atomic_write_bytes(path, npz_bytes(arrays))


def load_checkpoint(path: Path) -> tuple[dict, dict, dict, dict]:
    """-> (meta, model_state, best_state, optimizer state_dict). BundleError if unreadable."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: no checkpoint to resume from (train without --resume)") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: is a folder, not a training checkpoint") from None
    except NotADirectoryError:
        raise BundleError(f"{path.parent}: is a file, not a model folder; nothing to resume") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: corrupt or truncated checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or \
            meta.get("version") != CHECKPOINT_VERSION:
        raise BundleError(f"{path}: not an edgekws training checkpoint of version {CHECKPOINT_VERSION}")
    model_state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    best_state = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
    try:
        _check_checkpoint_meta(meta, best_state)
        opt_state = {"step_count": meta["opt_step_count"], "lr": meta["opt_lr"],
                     "state": {p: {s: arrays[f"opt/{p}/{s}"] for s in slots}
                               for p, slots in meta["opt_slots"].items()}}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {exc})") from None
    bad = [k for k, v in arrays.items() if k.startswith(("model/", "best/"))
           and np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v))]
    if bad:
        raise BundleError(f"{path}: corrupt checkpoint (non-finite values in {bad[0]}); start over with --force")
    return meta, model_state, best_state, opt_state


_CHECKPOINT_META = {"config": dict, "epoch": int, "history": list, "best": dict, "bad_epochs": int,
                    "fingerprint": str, "rng_state": dict, "elapsed_s": (int, float), "opt_step_count": int,
                    "opt_lr": (int, float), "opt_slots": dict}


def _check_checkpoint_meta(meta: dict, best_state: dict) -> None:
    """Raise ValueError/KeyError/TypeError unless `meta` has what a resume reads, consistently."""
    for key, kind in _CHECKPOINT_META.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise TypeError(f"{key!r} is {type(meta[key]).__name__}")
    if not 0 <= meta["epoch"] == len(meta["history"]):
        raise ValueError(f"epoch {meta['epoch']} with {len(meta['history'])} epochs of history")
    if not isinstance(meta["best"].get("epoch"), int):
        raise TypeError("'best' has no epoch")
    if meta["best"]["epoch"] >= 1 and not best_state:
        raise ValueError(f"no weights of the best epoch {meta['best']['epoch']} (resumed runs of "
                         "earlier edgekws wrote such checkpoints); start over with --force")


def _bundle_fingerprint(out: Path):
    """The dataset fingerprint of the bundle in `out` (None: no bundle; "" : a bundle without one)."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return ""
    return str(((manifest.get("training") if isinstance(manifest, dict) else None) or {}).get(
        "dataset_fingerprint", ""))


# ---- batches ---------------------------------------------------------------------------------

def dequantize(features: np.ndarray, feature_config) -> np.ndarray:
    """int8 features (N, T, F) -> float32 model input (N, T, F): (q - zero_point) * scale."""
    zp = np.float32(feature_config.input_zero_point)
    return (features.astype(np.float32) - zp) * np.float32(feature_config.input_scale)


def spec_augment(x: np.ndarray, rng: np.random.Generator, max_time: int = 8, max_freq: int = 6) -> np.ndarray:
    """One time mask and one frequency mask per example, set to 0 (= db_min) in place.

    x : (N, T, F) float32 dequantized features
    """
    n, t, f = x.shape
    wt = rng.integers(0, max_time + 1, n)
    t0 = rng.integers(0, t, n)
    wf = rng.integers(0, max_freq + 1, n)
    f0 = rng.integers(0, f, n)
    tt, ff = np.arange(t), np.arange(f)
    tmask = (tt[None] >= t0[:, None]) & (tt[None] < (t0 + wt)[:, None])
    fmask = (ff[None] >= f0[:, None]) & (ff[None] < (f0 + wf)[:, None])
    x[tmask[:, :, None] | fmask[:, None, :]] = 0.0
    return x


TIME_WARP_STRETCH = 2.0


def time_warp(x: np.ndarray, rng: np.random.Generator, prob: float, max_stretch: float = TIME_WARP_STRETCH,
              segments: int = 4) -> np.ndarray:
    """Random non-uniform tempo, in place: each example (with probability prob) is read through a
    monotonic piecewise-linear time map of `segments` equal output parts, each part covering a stretch
    of the input up to max_stretch times longer or shorter (log-uniform, rescaled so the map spans
    the whole window), with linear interpolation between frames. Speakers and engines time the
    sounds of a word differently, not just its overall speed.

    x : (N, T, F) float32 dequantized features
    """
    n, t, _ = x.shape
    rows = np.flatnonzero(rng.random(n) < prob)
    if not len(rows) or t < 2:
        return x
    log_s = np.log(max_stretch)
    d = np.exp(rng.uniform(-log_s, log_s, (len(rows), segments)))
    d *= (t - 1) / d.sum(axis=1, keepdims=True)                   # input frames per output part
    start = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(d, axis=1)[:, :-1]], axis=1)
    pos = np.arange(t) * (segments / (t - 1))                      # output frame -> part + fraction
    part = np.minimum(pos.astype(int), segments - 1)
    src = np.clip(start[:, part] + (pos - part) * d[:, part], 0, t - 1)      # (rows, t) input positions
    x[rows] = _read_at(x[rows], src[:, :, None], 1)
    return x


def _read_at(x: np.ndarray, src: np.ndarray, axis: int) -> np.ndarray:
    """x read at fractional positions `src` along `axis`, linear between neighbours (time warp, band
    shift). src: positions in [0, x.shape[axis] - 1], broadcastable to x with x's size along `axis`."""
    i0 = np.minimum(src.astype(int), x.shape[axis] - 2)
    w = (src - i0).astype(np.float32)
    lo = np.take_along_axis(x, i0, axis)
    hi = np.take_along_axis(x, i0 + 1, axis)
    return lo + w * (hi - lo)


FREQ_SHIFT_BANDS = 4.0


def freq_shift_bands(x: np.ndarray, rng: np.random.Generator, prob: float,
                     max_bands: float = FREQ_SHIFT_BANDS) -> np.ndarray:
    """Random shift of the band axis, in place: each example (with probability prob) reads band b
    from input band b + s, s uniform in [-max_bands, max_bands] (linear interpolation between bands,
    the edge bands repeated past the ends). s < 0 moves the spectrum up (a higher voice).

    x : (N, T, F) float32 dequantized features
    """
    n, _, f = x.shape
    rows = np.flatnonzero(rng.random(n) < prob)
    if not len(rows) or f < 2:
        return x
    s = rng.uniform(-max_bands, max_bands, len(rows))
    src = np.clip(np.arange(f)[None, :] + s[:, None], 0, f - 1)          # (rows, F) input positions
    x[rows] = _read_at(x[rows], src[:, None, :], 2)
    return x


SPECTRAL_TILT_DB = 12.0


def spectral_tilt(x: np.ndarray, rng: np.random.Generator, prob: float, top_db: float,
                  max_db: float = SPECTRAL_TILT_DB) -> np.ndarray:
    """Random linear tilt of the band axis, in place: each example (with probability prob) gets
    s * (b / (F - 1) - 1/2) dB added to band b, s uniform in [-max_db, max_db] (s > 0: a brighter
    voice), clipped to the features' range [0, top_db]. It runs last, so SpecAugment's masks and the
    floor (0 dB) tilt too: a bright tilt lifts them by up to max_db / 2, as the measured models trained.

    x : (N, T, F) float32 dequantized features (dB above db_min)
    """
    n, _, f = x.shape
    rows = np.flatnonzero(rng.random(n) < prob)
    if not len(rows):
        return x
    s = rng.uniform(-max_db, max_db, len(rows)).astype(np.float32)
    ramp = np.arange(f, dtype=np.float32) / np.float32(f - 1) - np.float32(0.5)
    x[rows] = np.clip(x[rows] + s[:, None, None] * ramp[None, None, :], 0.0, top_db)
    return x


def second_voice(x: np.ndarray, rng: np.random.Generator, top_db: float) -> np.ndarray:
    """The same examples in another voice, for --consistency: a copy of x (N, T, F) with one more time
    warp, band shift and tilt drawn for every example (each always applied)."""
    v = np.array(x, dtype=np.float32, copy=True)
    time_warp(v, rng, 1.0, TIME_WARP_STRETCH)
    freq_shift_bands(v, rng, 1.0, FREQ_SHIFT_BANDS)
    spectral_tilt(v, rng, 1.0, top_db, SPECTRAL_TILT_DB)
    return v


class BatchMaker:
    """Builds training inputs: cached features, or fresh features of augmented audio, plus fresh
    silence cuts, time warp, SpecAugment, band shift and tilt (those on) — all drawn from the generator passed to `make`."""

    def __init__(self, train_arrays, noises, feature_config, config: TrainConfig, augmenter=None):
        self.a = train_arrays
        self.noises = noises
        self.fc = feature_config
        self.cfg = config
        self.augmenter = augmenter
        self.silence = train_arrays.is_silence

    def make(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """idx (B,) indices into the training arrays -> (B, T, F) float32 model input."""
        from edgekws.featcache import cut_silence, float_to_int16
        from edgekws.features import compute_features

        feats = self.a.features[idx].copy()
        sil = np.flatnonzero(self.silence[idx])
        if len(sil):
            audio = float_to_int16(cut_silence(self.noises, len(sil), self.a.audio.shape[1], rng))
            feats[sil] = compute_features(audio, self.fc)
        if self.augmenter is not None and self.cfg.augment:
            pick = np.flatnonzero(~self.silence[idx] & (rng.random(len(idx)) < self.cfg.augment_prob))
            if len(pick):
                audio = self.a.audio[idx[pick]].astype(np.float32) / np.float32(32768.0)
                audio = self.augmenter.apply(audio, rng)
                feats[pick] = compute_features(float_to_int16(audio), self.fc)
        x = dequantize(feats, self.fc)
        if self.cfg.time_warp > 0:
            time_warp(x, rng, self.cfg.time_warp, TIME_WARP_STRETCH)
        if self.cfg.specaugment:
            spec_augment(x, rng)
        if self.cfg.freq_shift > 0:
            freq_shift_bands(x, rng, self.cfg.freq_shift, FREQ_SHIFT_BANDS)
        if self.cfg.tilt > 0:
            spectral_tilt(x, rng, self.cfg.tilt, 255 * self.fc.input_scale, SPECTRAL_TILT_DB)
        return x


def n_steps(n: int, batch: int) -> int:
    """Steps of an epoch of n examples: batches of `batch`, the rest in a last one, but a rest of one
    example joins the batch before it (a BatchNorm after a Dense layer cannot train on one value)."""
    steps = -(-n // batch)
    return steps - 1 if n % batch == 1 and steps > 1 else steps


def epoch_steps(perm: np.ndarray, batch: int) -> list[np.ndarray]:
    """The index arrays of an epoch's steps (n_steps of them), in order."""
    k = n_steps(len(perm), batch)
    return [perm[s * batch:(s + 1) * batch if s < k - 1 else len(perm)] for s in range(k)]


def batch_key(seed: int, epoch: int, step: int) -> list[int]:
    """Seed of the generator that makes batch `step` of epoch `epoch` (0-based): a batch's random
    choices depend only on this, not on which process makes it or when."""
    return [seed, 3, epoch, step]


PIPELINE_DEPTH = 3  # batches requested ahead of the training loop (more workers than this would idle)


MAX_WORKERS = 64   # batch-making processes; each holds a copy of the training audio


def default_workers() -> int:
    """One batch worker per core, at most PIPELINE_DEPTH, where a second core and fork()
    exist (Linux, a Raspberry Pi), else 0. One more process than cores on purpose: while the
    training process waits for a batch its core makes batches too (on 2 cores an epoch of the
    480-speaker default took about 10 s with 2 workers and 11.5 s with 1; BENCHMARKS.md)."""
    import multiprocessing

    cores = os.cpu_count() or 1
    return min(cores, PIPELINE_DEPTH) if cores >= 2 and "fork" in multiprocessing.get_all_start_methods() else 0


_WORKER: dict = {}


def _worker_init(maker) -> None:
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    _WORKER["maker"] = maker
    parent = os.getppid()

    def orphaned() -> None:  # the training process was killed (SIGKILL, OOM): don't linger
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()


def _worker_make(idx: np.ndarray, key: list[int]) -> np.ndarray:
    return _WORKER["maker"].make(idx, np.random.default_rng(key))


class DeferredInterrupt:
    """Ctrl-C during training, taken at a step boundary: while active, SIGINT only sets `pending`
    and the loop raises KeyboardInterrupt at its next check (`check()`). A KeyboardInterrupt raised
    inside a wait on the batch worker (concurrent.futures) can leave a lock held, and shutting the
    worker down then hangs. Only in the main thread, and only where SIGINT has its default handler
    (a process started with SIGINT ignored stays deaf to it)."""

    def __init__(self):
        import signal
        import threading

        self.pending, self._old = False, None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        self.pending = True

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class BatchPipeline:
    """The batches of an epoch, made ahead of the training loop by `workers` forked processes
    (workers=0: made here, one at a time, when the loop asks for them). Measured on 2 cores:
    augmentation and features take ~45% of a training step (a batch takes a worker longer than the
    step that uses it); in workers they overlap the forward/backward pass.
    The bits do not change with `workers`: each batch has its own generator (batch_key).
    Forked workers share the training arrays with this process (copy-on-write), nothing is pickled
    but the batch indices and the finished inputs."""

    def __init__(self, maker: BatchMaker, seed: int, workers: int, depth: int = PIPELINE_DEPTH):
        self.maker, self.seed, self.depth = maker, seed, depth
        self.pool = None
        if workers > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_worker_init, initargs=(maker,))

    def batches(self, perm: np.ndarray, batch: int, epoch: int):
        """Yields (idx, x) for the steps of one epoch: idx (B,) indices, x (B, T, F) float32."""
        steps = epoch_steps(perm, batch)
        if self.pool is None:
            for s, idx in enumerate(steps):
                yield idx, self.maker.make(idx, np.random.default_rng(batch_key(self.seed, epoch, s)))
            return
        from concurrent.futures.process import BrokenProcessPool

        pending: list = []
        ahead = 0
        for s, idx in enumerate(steps):
            while ahead < len(steps) and len(pending) < self.depth:
                pending.append(self.pool.submit(_worker_make, steps[ahead], batch_key(self.seed, epoch, ahead)))
                ahead += 1
            try:
                x = pending.pop(0).result()
            except BrokenProcessPool as e:
                raise EdgekwsError("train: the batch worker process died (out of memory?); "
                                   "train with --workers 0 to make batches in this process") from e
            yield idx, x

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def make_augmenter(noises, config: dict | None = None):
    """The audio-level augmenter of edgekws.augment (default config, or `config` from a checkpoint),
    or None if that module is absent. A dataset without noise files (your own recordings) mixes in
    the augmenter's white, pink and brown noise: an empty list switched the noise step off."""
    try:
        from edgekws.augment import AugmentConfig, Augmenter
    except ImportError:
        return None
    return Augmenter(AugmentConfig.from_dict(config) if config else AugmentConfig(), list(noises) or None)


class EpochOrder:
    """The examples of one epoch: every command and silence example, plus a fresh draw of
    `unknown_ratio` x (mean command class size) of the `_unknown_` examples, shuffled.

    labels : (N,) int label indices of the training arrays
    """

    def __init__(self, labels: np.ndarray, unknown_label: int, n_words: int, unknown_ratio: float):
        self.unknown = np.flatnonzero(labels == unknown_label)
        self.rest = np.flatnonzero(labels != unknown_label)
        # labels: _silence_, _unknown_, the n_words commands, then any vocabulary classes (not counted)
        n_commands = int(np.sum((labels >= 2) & (labels < 2 + n_words)))
        self.n_unknown = min(len(self.unknown), int(round(unknown_ratio * n_commands / max(n_words, 1))))
        self.size = len(self.rest) + self.n_unknown
        # how many times as often as a command _unknown_ is drawn (unknown_ratio, or less when the
        # dataset has fewer unknown clips than that asks for)
        self.drawn_ratio = self.n_unknown * n_words / max(n_commands, 1)

    def draw(self, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
        """-> (size,) indices into the training arrays, in training order. weights: (len(unknown),)
        draw probabilities of the unknown examples (then drawn with replacement), None = uniform."""
        if not self.n_unknown:
            picked = self.unknown[:0]
        elif weights is None:
            picked = rng.choice(self.unknown, self.n_unknown, replace=False)
        else:
            picked = rng.choice(self.unknown, self.n_unknown, replace=True, p=weights / weights.sum())
        return rng.permutation(np.concatenate([self.rest, picked]))


def prior_corrected(state: dict, arch: dict, unknown: int, ratio: float) -> tuple[dict, dict]:
    """state with the classifier's bias of class `unknown` lowered by log(ratio), where ratio = how
    many times as often as a command that class was drawn in training; and {"_unknown_": shift}
    ({} when ratio <= 0 or the last layer has no bias)."""
    from edgekws.models import classifier_name

    key = f"{classifier_name(arch)}.bias"
    if ratio <= 0 or key not in state:
        return state, {}
    bias = np.array(state[key], copy=True)
    shift = -math.log(ratio)
    bias[unknown] = bias[unknown] + np.float32(shift)
    return {**state, key: bias}, {"_unknown_": round(shift, 6)}


# Hard-negative weights are per word, so they need a good mean per word, not every clip: each epoch
# scores a fresh sample of at most this many training clips of each unknown word. On ja480 (2,304
# clips, 38 words) that is 608 clips, a quarter of the scoring; against scoring all, the draw
# probabilities differ by 3-5% (total variation; rank correlation of the words 0.91-0.95), and
# a new sample every epoch averages that out over training (BENCHMARKS.md).
HARD_NEGATIVE_SAMPLE = 16


def hard_negative_sample(words, per_word: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most per_word clips of each word (all of a word's clips when it has
    fewer), drawn without replacement: the clips hard_negative_weights scores."""
    words = np.asarray(words)
    if not len(words):
        return np.zeros(0, np.int64)
    names, inverse = np.unique(words, return_inverse=True)
    counts = np.bincount(inverse)
    pick = [rng.choice(np.flatnonzero(inverse == w), min(per_word, int(counts[w])), replace=False)
            for w in range(len(names))]
    return np.sort(np.concatenate(pick))


def hard_negative_weights(model, x: np.ndarray, words, strength: float,
                          n_labels: int | None = None, scored: np.ndarray | None = None) -> np.ndarray:
    """Draw weights of unknown-word examples: 1 + strength x (mean over the scored clips of the same
    word of the highest command probability the model gives them). Words that sound like a command
    (ほん and オン) come back more often. words (N,) the folder names of all unknown examples;
    scored: indices of the clips scored (hard_negative_sample; None = all N), and x (len(scored), T, F)
    float32 their features. Labels: _silence_, _unknown_, then the commands; n_labels: how many of
    the outputs are the model's own labels (the rest, vocabulary classes, are left out)."""
    words = np.asarray(words)
    scored = np.arange(len(words)) if scored is None else np.asarray(scored)
    logits = predict_logits(model, x)[:, :n_labels]
    p = np.exp(logits - logits.max(1, keepdims=True))
    conf = (p[:, 2:].max(1) / p.sum(1)).astype(np.float64)
    names, inverse = np.unique(words, return_inverse=True)
    hits = np.bincount(inverse[scored], minlength=len(names))
    per_word = np.bincount(inverse[scored], conf, len(names)) / np.maximum(hits, 1)
    return 1.0 + strength * per_word[inverse]


# ---- evaluation helper -----------------------------------------------------------------------

def predict_logits(model, x: np.ndarray, batch: int = 256, until: str | None = None) -> np.ndarray:
    """x (N, T, F) float32 -> logits (N, K), inference mode, in batches; with `until` (a layer name)
    that layer's outputs instead (e.g. the embedding)."""
    shape, stop = model.input_shape, {"until": until} if until is not None else {}   # models without until= too
    out = [model.forward(x[i:i + batch].reshape(-1, *shape), training=False, **stop) for i in range(0, len(x), batch)]
    if out:
        return np.concatenate(out)
    last = model.output_shape if until is None else {r["name"]: r["output_shape"] for r in model.layer_info()}[until]
    return np.zeros((0, *last), np.float32)


def _loss_acc(model, loss_fn, x, y, n_labels: int | None = None) -> tuple[float, float]:
    """Validation loss and accuracy: x (N, T, F) float32, y (N,) int; the answer is the best of the
    first n_labels outputs (the model's own labels, without vocabulary classes)."""
    logits = predict_logits(model, x)
    return float(loss_fn.forward(logits, y)), float(np.mean(logits[:, :n_labels].argmax(1) == y))


def vocabulary_folders(spec) -> list[Path]:
    """--vocab DIR[,DIR...] -> its folders (a comma separates them)."""
    parts = [p.strip() for p in str(spec).split(",")]
    if not all(parts):
        raise EdgekwsError(f"--vocab {spec}: an empty folder name (check for doubled or trailing commas)")
    return [Path(p) for p in parts]


def load_vocabulary(spec):
    """The dataset of `--vocab DIR[,DIR...]`: every word folder of those folders is a vocabulary class,
    in the order of their names (several folders train as one folder holding all their words would).
    Returns (dataset, fingerprint); one folder's fingerprint is its dataset's, as before."""
    from edgekws.data import Dataset, load_dataset, word_folders

    parts, owner = [], {}
    for root in vocabulary_folders(spec):
        if not root.is_dir():
            raise EdgekwsError(f"--vocab {root}: not a folder (make one with: edgekws synth --lang L --vocab --out {root})")
        words = [p.name for p in word_folders(root) if any(p.glob("*.wav"))]
        if not words:
            raise EdgekwsError(f"--vocab {root}: no word folders of .wav clips (make one with: edgekws synth "
                               f"--lang L --vocab --out {root})")
        for w in words:
            if w in owner:
                raise EdgekwsError(f"--vocab: both {owner[w]} and {root} hold a word folder {w!r}; "
                                   "a word trains as one class, so give it in one folder")
            owner[w] = root
        parts.append(load_dataset(root, words))
    if len(owner) < 2:
        raise EdgekwsError(f"--vocab {spec}: needs at least 2 word folders of .wav clips, found {len(owner)}")
    if len(parts) == 1:
        return parts[0], parts[0].fingerprint()
    words = tuple(sorted(owner))
    rank = {w: i for i, w in enumerate(words)}
    clips = sorted((c for d in parts for c in d.clips), key=lambda c: rank[c.word])   # stable: per folder sorted
    fingerprint = hashlib.sha256("+".join(d.fingerprint() for d in parts).encode()).hexdigest()
    return Dataset(root=parts[0].root, words=words, clips=clips, noise_files=[]), fingerprint


def with_vocabulary(tr, extra, n_labels: int):
    """Training arrays `tr` (labels < n_labels) plus the vocabulary's arrays `extra` (its labels
    _silence_, _unknown_, then its words) -> one SplitArrays, the vocabulary words as classes
    n_labels, n_labels + 1, ..."""
    from edgekws.featcache import SplitArrays

    return SplitArrays(audio=np.concatenate([tr.audio, extra.audio]),
                       features=np.concatenate([tr.features, extra.features]),
                       labels=np.concatenate([tr.labels, extra.labels - 2 + n_labels]),
                       clips=list(tr.clips) + list(extra.clips))


# ---- the training run ------------------------------------------------------------------------

def _build(config: TrainConfig, n_classes: int):
    from edgekws.models import architecture_dict, layers_from_architecture
    from edgekws.nn import AdamW, Sequential, SoftmaxCrossEntropy

    arch = architecture_dict(config.arch, n_classes)
    model = Sequential(layers_from_architecture(arch), arch["input_shape"],
                       rng=np.random.default_rng([config.seed, 1]))
    opt = AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return arch, model, opt, SoftmaxCrossEntropy(label_smoothing=config.label_smoothing)


def whiten_with_vocabulary(arch: dict, state: dict, tr, n_labels: int, fc) -> tuple[dict, dict, dict]:
    """The finished model (arch, state) with a whitening layer fitted to the float embeddings of the
    vocabulary's training clips (tr's labels >= n_labels, as cached: no augmentation)."""
    from edgekws.models import WHITEN_FLOOR, WHITEN_SHRINK, layers_from_architecture, with_whitening, \
        within_class_whitening
    from edgekws.nn import Sequential

    model = Sequential(layers_from_architecture(arch), arch["input_shape"], rng=0)
    model.load_state_dict(state)
    idx = np.flatnonzero(tr.labels >= n_labels)
    emb = predict_logits(model, dequantize(tr.features[idx], fc), until=arch["embedding"])
    arch, state = with_whitening(arch, state, *within_class_whitening(emb, tr.labels[idx]))
    return arch, state, {"clips": int(len(idx)), "words": int(len(np.unique(tr.labels[idx]))),
                         "shrink": WHITEN_SHRINK, "floor": WHITEN_FLOOR}


def without_vocabulary(config: TrainConfig, state: dict, n_labels: int) -> tuple[dict, dict]:
    """The architecture for n_labels classes and `state` with the classifier's rows of the vocabulary
    classes (all after the first n_labels) removed: the same logits for the model's own labels."""
    from edgekws.models import architecture_dict, classifier_name

    arch = architecture_dict(config.arch, n_labels)
    name = classifier_name(arch)
    cut = {k: np.ascontiguousarray(state[k][:n_labels]) for k in (f"{name}.weight", f"{name}.bias") if k in state}
    return arch, {**state, **cut}


LOCK = TRAIN_LOCK


@contextlib.contextmanager
def exclusive(out: Path):
    """Hold OUT/.edgekws-train.lock while training writes into OUT: a second `edgekws train` on the same
    folder is refused instead of both writing checkpoint.npz and one bundle silently losing. POSIX
    only (fcntl); elsewhere no lock is taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    lock = out / LOCK
    while True:
        try:
            f = open(lock, "a+")
        except OSError as exc:
            raise OutputError(f"{out}: cannot write here ({exc.strerror or exc})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            who = f.read().strip() or "?"
            f.close()
            raise BundleError(f"{out}: another edgekws train (pid {who}) is writing here; wait for it "
                              "to finish or choose another --out") from None
        # the file locked must still be the one at `lock`: a training that ended meanwhile removed it, and
        # a lock on a removed file locks nothing (the next training would create and lock a new one)
        try:
            if os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    with f:
        for tmp in out.glob(f".{CHECKPOINT}.*.tmp"):   # checkpoints of killed trainings, never renamed
            tmp.unlink(missing_ok=True)
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # still holding the lock: nobody else is between


def train(data, out, *, resume: bool = False, **kwargs):
    """Train a model on dataset folder `data` into bundle folder `out`; returns the Bundle.
    Arguments: see _train. The folder is created first (an impossible --out fails before any
    feature is computed) and locked against a second training for the whole run."""
    out = Path(out)
    check_outside(out, data)
    if kwargs.get("teacher_weight") is not None and not kwargs.get("teachers") and not resume:
        raise EdgekwsError("--teacher-weight: weighs the teachers' answers; give the teachers too (--teachers M ...)")
    teachers = kwargs.get("teachers")
    if teachers and isinstance(teachers, (list, tuple)) and all(isinstance(t, (str, Path)) and str(t)
                                                                for t in teachers):   # else TrainConfig.check says
        kwargs["teachers"] = [str(Path(t).resolve()) for t in teachers]   # recorded so, for --resume
    if kwargs.get("vocabulary"):
        for folder in vocabulary_folders(kwargs["vocabulary"]):
            check_outside(out, folder, "--vocab")
            v, d = folder.resolve(), Path(data).resolve()
            if v == d or d in v.parents or v in d.parents:   # its clips would train under two labels
                raise EdgekwsError(f"--vocab {folder}: is the dataset {data} or inside it (or holds it); "
                                   "a vocabulary is a dataset of other words (edgekws synth --vocab)")
    created = False
    if resume:
        if not (out / CHECKPOINT).exists() and (out / "manifest.json").is_file():
            raise BundleError(f"{out}: holds a finished model bundle; nothing to resume (to train it again "
                              "from the start, pass --force instead of --resume)")
        if not (out / CHECKPOINT).is_file():
            load_checkpoint(out / CHECKPOINT)  # raises its "nothing to resume" error (no folder made)
    else:
        created = not out.exists()
        if not (out / "manifest.json").exists() and not (out / CHECKPOINT).exists():
            from edgekws.bundle import refuse_other_files

            refuse_other_files(out)   # what Bundle.create checks at the end, before hours of training
        make_dir(out)
    try:
        with exclusive(out):
            return _train(data, out, resume=resume, **kwargs)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # a refused start leaves no trace
            out.rmdir()
        raise


def _load_teachers(config: TrainConfig, labels, fc, out: Path, meta: dict | None):
    """--teachers' models (edgekws.teachers), checked against this training's labels and features and,
    on --resume, against the checkpoint's record of them."""
    from edgekws.teachers import Teachers

    try:
        teachers = Teachers.load(config.teachers, labels, fc, out)
    except EdgekwsError as exc:
        if meta is None:
            raise
        # the checkpoint's teachers, by the absolute paths it recorded
        raise type(exc)(f"{out}: --resume needs the checkpoint's teachers ({exc})") from None
    if meta is not None and (said := teachers.changed_since(meta.get("teachers"))):
        raise EdgekwsError(f"{out}: --resume needs the same teachers, and {said}; train again with --force")
    return teachers


@one_blas_thread
def _train(data, out, *, arch: str | None = None, epochs: int | None = None, batch: int | None = None,
           lr: float | None = None, seed: int | None = None, words=None, resume: bool = False,
           quick: bool = False, overwrite: bool = False, cache_dir=None, progress: bool = True,
           log=print, on_epoch_end=None, augment_config: dict | None = None, workers: int | None = None,
           **options):
    """Train a model on dataset folder `data` into bundle folder `out`; returns the Bundle.

    quick        : small/fast preset (models.ARCHITECTURES["dscnn-s"], few epochs) for demos
    resume       : continue from out/checkpoint.npz (its config wins over the arguments)
    cache_dir    : feature cache root (default DATA/.edgekws-cache; False = memory only)
    on_epoch_end : callable(epoch, record) called after each epoch's checkpoint is written
                   (tests interrupt a run from here)
    augment_config : AugmentConfig fields for the audio augmentation (None: its defaults; a resumed
                   run keeps the checkpoint's)
    workers      : processes that make batches ahead of the training loop (None: default_workers();
                   0: this process). Speed only: the weights are the same bits for any value.
    options      : any other TrainConfig field (augment=False, patience=..., ...)
    """
    from tqdm import tqdm

    from edgekws.bundle import Bundle
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, load_noises, split_arrays
    from edgekws.features import FeatureConfig
    from edgekws.models import arch_budget
    from edgekws.nn import clip_grad_norm, cosine

    out = Path(out)
    ckpt_path = out / CHECKPOINT
    if isinstance(words, str):   # "yes,no" as on the command line, not the letters y, e, s
        words = [w.strip() for w in words.split(",")]
    given = {"arch": arch, "epochs": epochs, "batch": batch, "lr": lr, "seed": seed,
             "words": list(words) if words else None, **options}
    given = {k: v.item() if isinstance(v, np.generic) else v for k, v in given.items()}   # np.int64 seeds too
    if resume:
        meta, model_state, ckpt_best, opt_state = load_checkpoint(ckpt_path)
        config = TrainConfig.from_dict(meta["config"])
        if said := _resume_differences(given, config, quick):
            raise EdgekwsError(f"{out}: --resume continues with the checkpoint's settings, and {said} "
                               "differ; leave them out, or start over with --force")
        other = _bundle_fingerprint(out)
        if other not in (None, meta["fingerprint"]):
            raise BundleError(f"{out}: holds a model bundle of other data beside the checkpoint (written "
                              "there by another command); move one of them away")
        log(f"resuming {ckpt_path} after epoch {meta['epoch']} of {config.epochs} "
            "(the checkpoint's settings are used)")
    else:
        if ckpt_path.exists() and not overwrite:   # also beside a bundle it was writing when stopped
            raise BundleError(f"{out}: holds an unfinished training checkpoint; continue it with "
                              "--resume or start over with --force")
        if (out / "manifest.json").exists() and not overwrite:
            raise BundleError(f"{out}: already holds a model bundle (choose another --out or pass --force)")
        base = {**(QUICK if quick else {})}
        base.update({k: v for k, v in given.items() if v is not None})
        unknown = set(base) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise EdgekwsError(f"train: unknown option(s) {sorted(unknown)}")
        config = TrainConfig(**base).resolved()
        meta = None
    config.check()
    if workers is None:
        workers = default_workers()
    if not is_int(workers, numpy=False) or not 0 <= workers <= MAX_WORKERS:
        raise EdgekwsError(f"--workers: must be an integer in 0..{MAX_WORKERS}, got {workers!r}")

    fc = FeatureConfig()
    ds = load_dataset(data, config.words)
    teachers = _load_teachers(config, ds.labels, fc, out, meta) if config.teachers else None
    vocab, vocab_fingerprint = load_vocabulary(config.vocabulary) if config.vocabulary else (None, None)
    fingerprint = ds.fingerprint()
    if vocab is not None:
        fingerprint = hashlib.sha256(f"{fingerprint}+{vocab_fingerprint}".encode()).hexdigest()
    if meta is not None and meta["fingerprint"] != fingerprint:
        before = meta.get("data")
        if isinstance(before, str) and Path(before) != Path(data).resolve():   # named since session 36
            raise EdgekwsError(f"{data}: the checkpoint was written for another dataset folder, {before}; resume "
                               "needs the same data (or train again with --force)")
        raise EdgekwsError(f"{data}: the dataset changed since the checkpoint was written; "
                           "resume needs the same data (or train again with --force)")
    if cache_dir is None:
        cache_dir = default_cache_dir(data)
    cache = FeatureCache(cache_dir or None, fc)
    noises = load_noises(ds.noise_files, fc.sample_rate)
    t0 = time.perf_counter()
    # every _unknown_ clip is loaded; each epoch draws a fresh balanced subset of them (epoch_order)
    tr = split_arrays(ds, "train", cache, seed=config.seed, noises=noises,
                      unknown_ratio=1e9, silence_ratio=config.silence_ratio)
    va = split_arrays(ds, "val", cache, seed=config.seed, noises=noises,
                      unknown_ratio=config.unknown_ratio, silence_ratio=config.silence_ratio)
    if len(tr.labels) == 0:
        raise EdgekwsError(f"{data}: no training clips")
    n_labels = len(ds.labels)
    n_vocab = 0
    if vocab is not None:
        extra = split_arrays(vocab, "train", cache, seed=config.seed, noises=noises, unknown_ratio=0,
                             silence_ratio=0)
        if not len(extra.labels):
            raise EdgekwsError(f"--vocab {config.vocabulary}: no clips in its training split")
        if config.whiten and np.bincount(extra.labels).max() < 2:
            raise EdgekwsError(f"--vocab {config.vocabulary}: no word has two clips in its training split, so the "
                               "whitening layer cannot learn how clips of one word vary; add speakers or use --no-whiten")
        n_vocab = len(vocab.words)
        tr = with_vocabulary(tr, extra, n_labels)
        log(f"vocabulary {config.vocabulary}: {n_vocab} more words as training classes "
            f"({len(extra.labels)} clips; dropped from the bundle)")
    log(f"{data}: {len(tr.labels)} training clips and {len(va.labels)} validation examples, "
        f"labels {', '.join(ds.labels)}; features in {time.perf_counter() - t0:.1f} s "
        f"({cache.misses} computed, {cache.hits} cached)")

    arch_dict, model, opt, loss_fn = _build(config, n_labels + n_vocab)
    if teachers is not None:
        log(f"teachers: {len(teachers)} model(s); their mean probability weighs {config.teacher_weight:g} in "
            "every training target (each step also runs them)")
    budget = arch_budget(arch_dict)
    log(f"architecture {config.arch}: {model.num_params():,} parameters\n{budget.table()}")

    rng = np.random.default_rng([config.seed, 2])
    history: list[dict] = []
    best = {"epoch": -1, "val_accuracy": -1.0, "val_loss": float("inf")}
    best_state = None
    bad_epochs, start_epoch, elapsed_before = 0, 0, 0.0
    if meta is not None:
        try:
            model.load_state_dict(model_state)
            own = model.state_dict()
            if ckpt_best and (set(ckpt_best) != set(own) or
                              any(ckpt_best[k].shape != own[k].shape for k in own)):
                raise ValueError("the best epoch's weights do not fit the model")
            model.set_random_state(meta["model_random_state"])
            opt.load_state_dict(opt_state)
            rng.bit_generator.state = meta["rng_state"]
        except (BundleError, KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{ckpt_path}: corrupt checkpoint or not one of this training "
                              f"({exc})") from None
        history, best, bad_epochs = meta["history"], meta["best"], meta["bad_epochs"]
        best_state = ckpt_best or None  # the best epoch's weights so far, not the latest
        start_epoch, elapsed_before = meta["epoch"], meta["elapsed_s"]

    if not len(va.labels):
        log(f"note: {data} has no validation clips; the last epoch is kept and there is no early stop")
    augmenter = (make_augmenter(noises, (meta and meta.get("augment_config")) or augment_config)
                 if config.augment else None)
    augment_config = augmenter.config.to_dict() if augmenter is not None else None
    maker = BatchMaker(tr, noises, fc, config, augmenter)
    if config.augment and maker.augmenter is None:
        log("note: edgekws.augment is not available; training without audio augmentation")
    x_val = dequantize(va.features, fc)
    order = EpochOrder(tr.labels, ds.label_index["_unknown_"], len(ds.words), config.unknown_ratio)
    if teachers is not None:
        teachers.set_prior(ds.label_index["_unknown_"], order.drawn_ratio)
    n = order.size
    unknown_words = None
    if config.hard_negatives > 0 and len(order.unknown):
        unknown_words = np.array([tr.clips[i].word for i in order.unknown])
    steps_per_epoch = n_steps(n, config.batch)
    total_steps = steps_per_epoch * config.epochs
    warm = int(round(config.warmup_epochs * steps_per_epoch))
    t_start = time.perf_counter()
    make_dir(out)
    if meta is None and (out / "manifest.json").exists():
        # --force over a bundle: the data is good, so the old model goes now, not at the end; a stop
        # in between leaves a checkpoint that resumes (beside no bundle of other data)
        from edgekws.bundle import remove_old_outputs, write_lock

        with write_lock(out):   # an export writing its project now finishes first, and is then removed
            remove_old_outputs(out)
            (out / "manifest.json").unlink()
        log(f"{out}: removed the earlier model bundle (--force)")
    epoch = saved_epoch = start_epoch
    pipeline = BatchPipeline(maker, config.seed, workers)
    # the batch workers wait while this process validates and scores hard negatives: use their cores
    idle_threads = min(os.cpu_count() or 1, 4) if workers else 1
    ctrl_c = DeferredInterrupt()
    stopped_early = bool(meta and meta.get("stopped_early"))
    try:
        while epoch < config.epochs and not stopped_early:
            t_epoch = time.perf_counter()
            weights = None
            if unknown_words is not None and epoch > 0:
                # a fresh sample of each word's clips every epoch (seeded by the epoch: resumable)
                scored = hard_negative_sample(unknown_words, HARD_NEGATIVE_SAMPLE,
                                              np.random.default_rng([config.seed, 4, epoch]))
                with more_threads(idle_threads):
                    weights = hard_negative_weights(model, dequantize(tr.features[order.unknown[scored]], fc),
                                                    unknown_words, config.hard_negatives, n_labels, scored)
            perm = order.draw(rng, weights)
            seen = correct = 0
            loss_sum = 0.0
            bar = tqdm(pipeline.batches(perm, config.batch, epoch), total=steps_per_epoch,
                       desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                       # on a terminal only: in a log file the per-epoch lines say it all (None = tty)
                       disable=None if progress else True, leave=False, file=sys.stderr)
            for s, (idx, x) in enumerate(bar):
                x = x.reshape(-1, *model.input_shape)
                y = tr.labels[idx]
                soft = teachers.probabilities(x) if teachers is not None else None
                opt.lr = cosine(epoch * steps_per_epoch + s, config.lr, total_steps,
                                min_lr=config.lr * config.min_lr_ratio, warmup_steps=warm)
                if config.consistency and epoch >= config.consistency_from:   # both voices in one batch (BatchNorm sees them together)
                    b = len(x)   # not `n`: that is the epoch's example count, which the bundle records
                    other = second_voice(x.reshape(b, *tr.features.shape[1:]),
                                         np.random.default_rng([config.seed, 7, epoch, s]),
                                         255 * fc.input_scale).reshape(x.shape)
                    both = model.forward(np.concatenate([x, other]), training=True)
                    logits = both[:b]
                    loss = loss_fn.forward(logits, y, soft, config.teacher_weight)
                    agree, grad = consistency_to_mean(both, config.consistency)
                    grad[:b] += loss_fn.backward()
                    loss += agree
                else:
                    logits = model.forward(x, training=True)
                    loss = loss_fn.forward(logits, y, soft, config.teacher_weight)
                    grad = loss_fn.backward()
                model.zero_grad()
                model.backward(grad)
                if config.grad_clip:
                    clip_grad_norm(model.parameters(), config.grad_clip)
                opt.step()
                ctrl_c.check()
                seen += len(idx)
                correct += int(np.sum(logits.argmax(1) == y))
                loss_sum += loss * len(idx)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            bar.close()
            if len(va.labels):
                with more_threads(idle_threads):
                    val_loss, val_acc = _loss_acc(model, loss_fn, x_val, va.labels, n_labels)
            else:  # no validation split: no validation figures, the latest epoch is kept, no early stopping
                val_loss = val_acc = None
            epoch += 1
            record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                      **({"val_loss": val_loss, "val_accuracy": val_acc} if val_acc is not None else {}),
                      "lr": opt.lr, "seconds": time.perf_counter() - t_epoch}
            history.append(record)
            # with --consistency-from E the kept epoch comes after the switch: the first epoch with the
            # second voice replaces the best so far (the own-engine validation cannot see what it adds)
            improved = val_acc is None or val_acc > best["val_accuracy"] or (
                val_acc == best["val_accuracy"] and val_loss < best["val_loss"]) or (
                config.consistency_from > 0 and epoch == config.consistency_from + 1)
            if improved:
                best = {"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss}
                best_state = model.state_dict()
                bad_epochs = 0
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= config.patience and epoch > config.consistency_from
            log(f"epoch {epoch}/{config.epochs}: loss {record['train_loss']:.4f} acc {record['train_accuracy']:.3f}"
                + (f" | val loss {val_loss:.4f} acc {val_acc:.3f}{' *' if improved else ''}" if val_acc is not None
                   else " | no validation clips")
                + f" | {record['seconds']:.1f} s")
            elapsed = elapsed_before + time.perf_counter() - t_start
            saved_epoch = -1     # while the checkpoint is written: neither the old nor the new epoch for sure
            save_checkpoint(ckpt_path, model, opt, {
                "config": config.to_dict(), "epoch": epoch, "history": history, "best": best,
                "bad_epochs": bad_epochs, "stopped_early": stopped_early, "fingerprint": fingerprint,
                "data": str(Path(data).resolve()),
                "labels": list(ds.labels), "rng_state": rng.bit_generator.state, "elapsed_s": elapsed,
                "augment_config": augment_config,
                **({"teachers": teachers.records} if teachers is not None else {})},
                best_state)
            saved_epoch = epoch
            ctrl_c.check()
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
        if stopped_early and epoch < config.epochs:
            log(f"early stop: no better validation accuracy for {config.patience} epochs")
    except KeyboardInterrupt:
        if saved_epoch > 0 or (saved_epoch < 0 and ckpt_path.exists()):
            after = f" after epoch {saved_epoch}" if saved_epoch > 0 else ""
            log(f"\ninterrupted: the checkpoint{after} is in {ckpt_path}; "
                f"continue with: edgekws train {data} --out {out} --resume")
        else:
            log("\ninterrupted before the first epoch ended: nothing was saved; run the same command again")
        raise
    finally:
        ctrl_c.restore()
        pipeline.close()

    elapsed = elapsed_before + time.perf_counter() - t_start
    final = dict(best_state if best_state is not None else model.state_dict())
    if n_vocab:  # the vocabulary classes only trained the features: the bundle keeps its own labels
        arch_dict, final = without_vocabulary(config, final, n_labels)
        budget = arch_budget(arch_dict)
    correction = {}
    if config.prior_correction:
        final, correction = prior_corrected(final, arch_dict, ds.label_index["_unknown_"], order.drawn_ratio)
        if correction:
            log(f"prior correction: _unknown_ bias {correction['_unknown_']:+.4f} (drawn "
                f"{order.drawn_ratio:.2f}x as often as a command)")
    from edgekws.models import arch_budget, with_retrain_taps

    arch_out, final = with_retrain_taps(arch_dict, final) if config.retrain_tap else (arch_dict, final)
    if arch_out is not arch_dict:
        budget = arch_budget(arch_out)
        taps = next(c["taps"] for c in arch_out["layers"] if c.get("taps"))
        log(f"embedding for retraining: {arch_out['embedding']} + the averages of {', '.join(taps)} "
            f"({budget.rows[-1].input_shape[0]} values; zero classifier weights, the logits are unchanged)")
    whitening = {}
    if n_vocab and config.whiten:
        arch_out, final, whitening = whiten_with_vocabulary(arch_out, final, tr, n_labels, fc)
        budget = arch_budget(arch_out)
        log(f"embedding for retraining: whitened within the words of the vocabulary ({whitening['clips']:,} "
            f"clips; {budget.rows[-2].weight_bytes:,} B of int8 weights; the logits are unchanged)")
    bundle = Bundle.create(out, labels=list(ds.labels), feature_config=fc.to_dict(),
                           architecture={**arch_out, "budget": {k: v for k, v in budget.to_dict().items() if k != "rows"}},
                           training={"seed": config.seed, "config": config.to_dict(),
                                     "dataset": str(Path(data).resolve()),   # quantize reads it from anywhere
                                     "dataset_fingerprint": fingerprint, "epochs_run": epoch,
                                     "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
                                     "stopped_early": stopped_early, "train_seconds": round(elapsed, 1),
                                     "n_train": int(n), "n_val": int(len(va.labels)),
                                     "augment_config": augment_config, "prior_correction": correction,
                                     **({"whitening": whitening} if whitening else {}),
                                     **({"teachers": teachers.records} if teachers is not None else {}),
                                     **({"vocabulary": {"folder": str(config.vocabulary), "words": list(vocab.words),
                                                        "fingerprint": vocab_fingerprint}} if vocab else {})},
                           overwrite=True, by_train=True, staged=True)
    bundle.write_npz("weights.npz", final)
    bundle.write_json("history.json", history)
    bundle.finish()
    ckpt_path.unlink(missing_ok=True)
    kept = (f"best validation accuracy {best['val_accuracy']:.4f} at epoch {best['epoch']}"
            if best["val_accuracy"] is not None else f"no validation clips: kept the last epoch ({best['epoch']})")
    log(f"{out}: {kept}, {epoch} epochs in {elapsed:.0f} s")
    return bundle


# ---- command line ----------------------------------------------------------------------------

def register(sub) -> None:
    from edgekws.models import ARCHITECTURES, DEFAULT_ARCH

    p = sub.add_parser("train", help="train a keyword model (numpy engine) into a model bundle",
                       description="Train on a Speech Commands-layout dataset folder. Ctrl-C keeps a "
                                   "checkpoint; --resume continues it with bit-identical results.")
    p.add_argument("data", nargs="?", help="dataset folder: DATA/<word>/<speaker>_nohash_<n>.wav")
    p.add_argument("--out", metavar="MODEL", help="model bundle folder to create (required)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), help=f"architecture (default {DEFAULT_ARCH})")
    p.add_argument("--epochs", type=int, help=f"maximum epochs (default {TrainConfig.epochs})")
    p.add_argument("--batch", type=int, help=f"batch size (default {TrainConfig.batch})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {TrainConfig.lr})")
    p.add_argument("--seed", type=cliargs.seed, help="random seed (default 0)")
    p.add_argument("--words", help="comma-separated command words (default: yes,no,up,down,left,right,on,off,stop,go)")
    p.add_argument("--patience", type=int, help=f"early stop after N epochs without progress (default {TrainConfig.patience})")
    p.add_argument("--unknown-ratio", type=float, metavar="R",
                   help=f"_unknown_ examples per epoch, as a multiple of a command's (default {TrainConfig.unknown_ratio:g})")
    p.add_argument("--hard-negatives", type=float, metavar="S",
                   help=f"weight of unknown words the model confuses with a command (default "
                        f"{TrainConfig.hard_negatives:g}; 0 = uniform)")
    p.add_argument("--time-warp", type=float, metavar="P",
                   help=f"fraction of examples given a random non-uniform tempo (default {TrainConfig.time_warp:g}; 0 = off)")
    p.add_argument("--freq-shift", type=float, metavar="P",
                   help=f"fraction of examples whose bands are shifted by up to ±{FREQ_SHIFT_BANDS:g} (a higher or lower "
                        f"voice; default {TrainConfig.freq_shift:g}; 0 = off)")
    p.add_argument("--tilt", type=float, metavar="P",
                   help=f"fraction of examples whose spectrum is tilted by up to ±{SPECTRAL_TILT_DB / 2:g} dB at the "
                        f"band edges (a brighter or duller voice; default {TrainConfig.tilt:g}; 0 = off)")
    p.add_argument("--consistency", type=float, metavar="W",
                   help="weight of the agreement between two voices (band shift, tilt, time warp) of every "
                        f"example, from --consistency-from on (default {TrainConfig.consistency:g}; 0 = off)")
    p.add_argument("--consistency-from", type=int, metavar="E",
                   help="train the first E epochs without --consistency's second voice (default: two thirds "
                        "of --epochs, 40 of 60, about 1.3x the training time; 0 = every epoch, about 2x); the "
                        "kept checkpoint is the best epoch after E")
    p.add_argument("--vocab", metavar="DIR[,DIR...]",
                   help="vocabulary datasets (edgekws synth --vocab [KIND]): their words train as extra classes, "
                        "dropped from the bundle; better features for retraining to a new language")
    p.add_argument("--teachers", nargs="+", metavar="M",
                   help="finished model bundles of the same words (e.g. this recipe with other seeds): the model "
                        "also learns their mean answer to every training example (each step also runs them); "
                        "measured to help a model trained on one TTS engine hear the other, not a model "
                        "trained on both hear a third (RESULTS.md, Voices, session 39)")
    p.add_argument("--teacher-weight", type=float, metavar="W",
                   help=f"weight of the teachers' answer in each target (default {TrainConfig.teacher_weight:g})")
    p.add_argument("--no-retrain-tap", action="store_true",
                   help="write the plain embedding, block 4's average alone (96 values for dscnn-l; default: the pool "
                        "also averages block 3 for "
                        "last-layer retraining; the model's answers are the same)")
    p.add_argument("--no-whiten", action="store_true",
                   help="with --vocab: no whitening layer before the classifier (default: one, from the "
                        "vocabulary's clips; better heads from few examples, E x E more int8 weights)")
    p.add_argument("--no-augment", action="store_true",
                   help="no audio augmentation, time warp, SpecAugment, band shift, tilt or second voice")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes making augmented batches ahead of training (default: one per core, "
                        "at most 3, on a multi-core machine; 0 = none; the weights do not depend on it)")
    p.add_argument("--quick", action="store_true", help="small model and few epochs (a quick try)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in MODEL")
    p.add_argument("--force", action="store_true", help="replace an existing bundle or checkpoint in MODEL")
    p.add_argument("--cache", metavar="DIR", type=cliargs.folder, help="feature cache folder (default DATA/.edgekws-cache)")
    p.add_argument("--budget", action="store_true", help="print the budget of every architecture and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgekws.data import parse_words
    from edgekws.models import ARCHITECTURES, arch_budget

    if args.budget:
        for name, spec in ARCHITECTURES.items():
            print(f"\n{name}: {spec.description}\n{arch_budget(name).table()}")
        return 0
    if not args.data or not args.out:
        raise EdgekwsError("give the dataset folder DATA and --out MODEL")
    opts = dict(NO_AUGMENT) if args.no_augment else {}
    if args.no_retrain_tap:
        opts["retrain_tap"] = False
    if args.no_whiten:
        opts["whiten"] = False
    if args.patience is not None:
        opts["patience"] = args.patience
    if args.vocab:
        opts["vocabulary"] = ",".join(str(p.resolve()) for p in vocabulary_folders(args.vocab))
    if args.teachers:
        opts["teachers"] = list(args.teachers)
    for name in ("unknown_ratio", "hard_negatives", "time_warp", "freq_shift", "tilt", "consistency",
                 "consistency_from", "teacher_weight"):   # checked in TrainConfig.check
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    try:
        train(args.data, args.out, arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr,
              seed=args.seed, words=parse_words(args.words), resume=args.resume, quick=args.quick,
              overwrite=args.force, cache_dir=args.cache, workers=args.workers, **opts)
    except KeyboardInterrupt:
        return 130
    return 0
