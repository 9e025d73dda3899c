"""A dataset split as arrays: 1 s int16 clips, their cached int8 features, label indices, and
`_silence_` examples cut from background noise.

Integer features are computed once and cached on disk, content-addressed: the key of a clip is the
sha256 of its (length-fitted) int16 samples, and the cache folder has one subfolder per feature
config hash. Each computation adds one shard (`<sha256 of its keys>.npz`: keys (N,) bytes, features
(N, T, F) int8), written atomically, so an interrupted run never leaves a corrupt cache and two runs
never fight over one file. A shard that fails to load is ignored (and recomputed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekws.audio import read_wav
from edgekws.bundle import npz_bytes
from edgekws.data import Clip, Dataset
from edgekws.fileio import atomic_write_bytes

CLIP_SECONDS = 1.0
SILENCE_MAX_GAIN = 1.0     # background noise cut for _silence_ is scaled by U(0, this)
QUIET_NOISE_STD = 30.0     # without noise files, _silence_ is Gaussian noise with std U(0, this) int16 steps


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """(S,) int16 -> (n,) int16: zero-padded at the end if short, centre-cropped if long."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return np.ascontiguousarray(x[start:start + n])
    return np.concatenate([x, np.zeros(n - len(x), x.dtype)])


def load_clips(paths, n_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """Read WAV files as (N, n_samples) int16 (resampled, mono, fitted to length)."""
    out = np.zeros((len(paths), n_samples), np.int16)
    for i, p in enumerate(paths):
        out[i] = fit_length(read_wav(p, sr=sample_rate, dtype="int16"), n_samples)
    return out


def load_noises(paths, sample_rate: int = 16000) -> list[np.ndarray]:
    """Background noise files as a list of (S_i,) float32 in [-1, 1]."""
    return [read_wav(p, sr=sample_rate, dtype="float32") for p in paths]


def room_noises(paths, sample_rate: int = 16000) -> list[np.ndarray]:
    """The recorded background noise files (the room), or white, pink and brown noise if there are none."""
    from edgekws.augment import default_noises

    return load_noises(paths, sample_rate) if len(paths) else default_noises(sr=sample_rate)


def cut_silence(noises: list[np.ndarray], n: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """n `_silence_` examples (n, n_samples) float32: a random stretch of a random noise file (one
    shorter than n_samples repeated) times a random gain in [0, SILENCE_MAX_GAIN), or quiet Gaussian
    noise without noise files."""
    out = np.zeros((n, n_samples), np.float32)
    # a file shorter than the clip repeats (as the augmenter's noise does): a room recorded for 0.9 s
    # is still the room, not Gaussian noise
    usable = [x if len(x) >= n_samples else np.resize(x, n_samples) for x in noises if len(x)]
    for i in range(n):
        if usable:
            src = usable[int(rng.integers(len(usable)))]
            start = int(rng.integers(len(src) - n_samples + 1))
            out[i] = src[start:start + n_samples] * np.float32(rng.uniform(0.0, SILENCE_MAX_GAIN))
        else:
            out[i] = rng.standard_normal(n_samples).astype(np.float32) * np.float32(
                rng.uniform(0.0, QUIET_NOISE_STD) / 32768.0)
    return out


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """(…) float32 in [-1, 1] -> int16, rounded and saturated."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


_UNWRITABLE: set = set()   # cache folders already said to be unwritable in this process


class FeatureCache:
    """Content-addressed int8 feature cache for one FeatureConfig.

    folder : cache root (None = no disk cache, memory only)
    config : a FeatureConfig
    """

    def __init__(self, folder: str | Path | None, config):
        self.config = config
        self.folder = None if folder is None else Path(folder) / config.config_hash()
        self._mem: dict[bytes, np.ndarray] | None = None
        self.unwritable = False   # said once (features)
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._mem is None:
            self._mem = {}
            if self.folder is not None and self.folder.is_dir():
                for shard in sorted(self.folder.glob("*.npz")):
                    try:
                        z = np.load(shard, allow_pickle=False)
                        if not isinstance(z, np.lib.npyio.NpzFile):   # a .npy, not a shard
                            continue
                        with z:
                            keys, feats = z["keys"], z["features"]
                    except Exception:   # noqa: BLE001 - empty, damaged, foreign: recomputed, never trusted
                        continue
                    if len(keys) != len(feats):
                        continue
                    for k, f in zip(keys, feats):
                        # "S32" drops trailing zero bytes (1 key in 256): restore them, or it never hits
                        self._mem[bytes(k).ljust(32, b"\0")] = f
        return self._mem

    @staticmethod
    def key(clip: np.ndarray) -> bytes:
        return hashlib.sha256(np.ascontiguousarray(clip, np.int16).tobytes()).digest()

    def features(self, audio: np.ndarray) -> np.ndarray:
        """audio (N, S) int16 -> features (N, T, F) int8, computing only what the cache lacks."""
        from edgekws.features import compute_features

        mem = self._load()
        keys = [self.key(a) for a in audio]
        missing = [i for i, k in enumerate(keys) if k not in mem]
        # one computation per distinct key
        first: dict[bytes, int] = {}
        for i in missing:
            first.setdefault(keys[i], i)
        todo = list(first.values())
        self.hits += len(keys) - len(missing)
        self.misses += len(todo)
        if todo:
            feats = compute_features(np.ascontiguousarray(audio[todo]), self.config)
            new_keys = [keys[i] for i in todo]
            for k, f in zip(new_keys, feats):
                mem[k] = f
            if self.folder is not None:
                name = hashlib.sha256(b"".join(new_keys)).hexdigest()[:32]
                blob = npz_bytes({"keys": np.array(new_keys, dtype="S32"), "features": feats})
                try:
                    atomic_write_bytes(self.folder / f"{name}.npz", blob)
                except OSError as exc:   # a read-only or full disk only costs recomputation next time
                    self.unwritable = True
                    if str(self.folder) not in _UNWRITABLE:   # said once a run
                        import sys

                        _UNWRITABLE.add(str(self.folder))
                        why = f" ({exc.strerror})" if getattr(exc, "strerror", None) else ""
                        print(f"note: feature cache {self.folder}: cannot be written{why}; features are computed "
                              "again next time", file=sys.stderr)
        t, f = self.config.num_frames(audio.shape[1]), self.config.num_bands
        if not keys:
            return np.zeros((0, t, f), np.int8)
        return np.stack([mem[k] for k in keys])


@dataclass
class SplitArrays:
    """One split of a dataset as arrays.

    audio    : (N, S) int16, 1 s clips (silence examples included, cut with a fixed seed)
    features : (N, T, F) int8
    labels   : (N,) int64 label indices into the dataset's labels
    clips    : the N Clip records (path None for silence)
    """

    audio: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    clips: list[Clip]

    @property
    def is_silence(self) -> np.ndarray:
        return np.array([c.path is None for c in self.clips], bool)


def split_arrays(ds: Dataset, split: str, cache: FeatureCache, *, seed: int = 0,
                 noises: list[np.ndarray] | None = None, unknown_ratio: float = 1.0,
                 silence_ratio: float = 1.0) -> SplitArrays:
    """Balanced clips of `split` (see Dataset.select) with audio and cached features.

    `seed` draws the `_unknown_` subset and the silence cuts, so the same seed gives the same arrays.
    """
    cfg = cache.config
    n_samples = int(round(CLIP_SECONDS * cfg.sample_rate))
    clips = ds.select(split, seed=seed, unknown_ratio=unknown_ratio, silence_ratio=silence_ratio)
    words = [c for c in clips if c.path is not None]
    silent = [c for c in clips if c.path is None]
    if noises is None:
        noises = load_noises(ds.noise_files, cfg.sample_rate)
    rng = np.random.default_rng([seed, 7919])
    audio = np.concatenate([load_clips([c.path for c in words], n_samples, cfg.sample_rate),
                            float_to_int16(cut_silence(noises, len(silent), n_samples, rng))])
    ordered = words + silent
    index = ds.label_index
    labels = np.array([index[c.label] for c in ordered], np.int64)
    return SplitArrays(audio=audio, features=cache.features(audio), labels=labels, clips=ordered)


def default_cache_dir(data_root: str | Path) -> Path:
    """Where `edgekws train/eval` cache features: DATA/.edgekws-cache (ignored by the dataset loader)."""
    return Path(data_root) / ".edgekws-cache"
