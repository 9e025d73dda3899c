"""The streaming detector, integer only: int8 logits -> Q15 posteriors -> smoothing -> threshold ->
refractory period. Bit-identical to firmware/src/detector.c (the definition is written out in
firmware/include/ekws/detector.h).

    cfg = StreamConfig.from_bundle(bundle)            # hop_every, smooth, refractory, thresholds
    lut = exp_lut(qm.output_scale)                    # (256,) uint16, shared with C
    hits = detect_steps(logits, lut, cfg.threshold_array(labels), cfg.smooth, cfg.refractory)

`Detector` is the step-by-step twin (one model step at a time, for microphones); `detect_steps`
runs a whole sequence vectorized and gives the same detections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgekws.errors import BundleError, EdgekwsError, is_int

ONE_Q15 = 32768
LUT_SIZE = 256
MAX_CLASSES = 32   # EKWS_DETECTOR_MAX_CLASSES
MAX_SMOOTH = 16    # EKWS_DETECTOR_MAX_SMOOTH
MAX_REFRACTORY = 100000   # steps: StreamConfig.check's and Detector's limit
MAX_HOP_EVERY = 1000   # frames between model steps (20 s): StreamConfig.check's limit
DISABLED = -1      # threshold of a class that never fires
NON_COMMANDS = ("_silence_", "_unknown_")
DEFAULT_THRESHOLD = 0.8
REFRACTORY_S = 1.0          # a word stays inside 1 s windows for about this long: fire once per word


def check_c_classes(n: int, fix: str) -> None:
    """Refuse a class count the C detector cannot hold (its status would say only "invalid
    configuration"); fix names what to use instead."""
    if n > MAX_CLASSES:
        raise EdgekwsError(f"the C stream detector handles at most {MAX_CLASSES} classes (EKWS_DETECTOR_MAX_CLASSES, "
                           f"firmware/include/ekws/detector.h); this model has {n}: {fix}")


def exp_lut(output_scale: float) -> np.ndarray:
    """exp_lut[d] = round(65535 * exp(-output_scale * d)) for d in 0..255: (256,) uint16.

    d is a difference of int8 logits, so the table covers every case; C receives this table."""
    s = float(output_scale)
    if not math.isfinite(s) or s <= 0:
        raise EdgekwsError(f"detector: the model's output scale must be a positive number, got {output_scale!r}")
    d = np.arange(LUT_SIZE, dtype=np.float64)
    return np.round(65535.0 * np.exp(-s * d)).astype(np.uint16)


def posteriors_q15(logits: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """logits (N, K) int8 -> (N, K) int64 Q15 posteriors: (e * 32768 + S // 2) // S."""
    q = np.asarray(logits)
    if q.dtype != np.int8 or q.ndim != 2:
        raise EdgekwsError(f"detector: logits must be (N, K) int8, got {q.dtype} {q.shape}")
    q = q.astype(np.int64)
    e = np.asarray(lut, np.int64)[q.max(axis=1, keepdims=True) - q]
    total = e.sum(axis=1, keepdims=True)
    return (e * ONE_Q15 + total // 2) // total


def smooth_q15(post: np.ndarray, smooth: int) -> np.ndarray:
    """(N, K) Q15 posteriors -> (N, K) int64: mean of the last `smooth` steps (earlier steps count as
    0), floor-divided by `smooth`."""
    c = np.cumsum(np.asarray(post, np.int64), axis=0)
    lagged = np.zeros_like(c)
    if len(c) > smooth:
        lagged[smooth:] = c[:-smooth]
    return (c - lagged) // smooth


def fire(smoothed: np.ndarray, threshold: np.ndarray, refractory: int) -> list[tuple[int, int, int]]:
    """Thresholds + refractory period over smoothed scores (N, K) -> [(step, class, score_q15)].

    A class fires when its score >= its threshold (thresholds outside [0, 32768] never fire); among
    several, the highest score wins (the lowest index on ties). After a detection at step t, steps
    t+1 .. t+refractory stay silent."""
    thr = np.asarray(threshold, np.int64)
    enabled = (thr >= 0) & (thr <= ONE_Q15)
    ok = (smoothed >= thr) & enabled
    steps = np.flatnonzero(ok.any(axis=1))
    out = []
    i = 0
    while i < len(steps):  # one iteration per detection: jump over the refractory period
        t = int(steps[i])
        k = int(np.argmax(np.where(ok[t], smoothed[t], -1)))
        out.append((t, k, int(smoothed[t, k])))
        i = int(np.searchsorted(steps, t + refractory + 1))
    return out


def detect_steps(logits: np.ndarray, lut: np.ndarray, threshold: np.ndarray, smooth: int,
                 refractory: int) -> list[tuple[int, int, int]]:
    """The whole detector over a sequence of model steps: logits (N, K) int8 -> [(step, class, score)]."""
    return fire(smooth_q15(posteriors_q15(logits, lut), smooth), threshold, refractory)


def refractory_steps(hop_every: int, seconds: float = REFRACTORY_S, hop_ms: float = 20.0) -> int:
    """Model steps (every hop_every frames of hop_ms) that cover `seconds`."""
    return int(math.ceil(seconds * 1000.0 / (hop_every * hop_ms) - 1e-9))


class Detector:
    """Step-by-step detector (the state machine of detector.c), for live streams."""

    def __init__(self, lut: np.ndarray, threshold: np.ndarray, smooth: int, refractory: int):
        self.lut = np.asarray(lut, np.uint16)
        self.threshold = np.asarray(threshold, np.int64)
        for name, v, lo, hi in (("smooth", smooth, 1, MAX_SMOOTH), ("refractory", refractory, 0, MAX_REFRACTORY)):
            if not is_int(v) or not lo <= v <= hi:
                raise EdgekwsError(f"detector {name} must be an integer in [{lo}, {hi}], got {v!r}")
        self.smooth, self.refractory = int(smooth), int(refractory)
        self.reset()

    def reset(self) -> None:
        self._ring = np.zeros((self.smooth, len(self.threshold)), np.int64)
        self._pos = 0
        self._cooldown = 0
        self.steps = 0

    def step(self, logits: np.ndarray) -> tuple[int, int] | None:
        """logits (K,) int8 -> (class, score_q15) or None."""
        post = posteriors_q15(np.asarray(logits).reshape(1, -1), self.lut)[0]
        self._ring[self._pos] = post
        self._pos = (self._pos + 1) % self.smooth
        self.steps += 1
        smoothed = self._ring.sum(axis=0) // self.smooth
        if self._cooldown > 0:
            self._cooldown -= 1
            return None
        hits = fire(smoothed[None], self.threshold, self.refractory)
        if not hits:
            return None
        self._cooldown = self.refractory
        return hits[0][1], hits[0][2]


@dataclass
class StreamConfig:
    """The detector's settings, stored in the bundle as manifest["stream"].

    hop_every  : feature frames (20 ms each) between model steps
    smooth     : model steps averaged
    refractory : model steps after a detection in which nothing fires
    thresholds : {label: Q15 threshold, an int in 1..32768}; labels not listed (and
                 _silence_/_unknown_) never fire, so StreamConfig() alone detects nothing
    voice_shift: bands every feature frame moves by before the model hears it (band b reads band
                 b + voice_shift, the edge band repeated): the voice `edgekws calibrate --save` measured;
                 0 = frames as they are (stored only when not 0)
    voice_offset: None, or one whole number per embedding value that the model's embedding moves by
                 before its classifier (edgekws/voicenorm.py): the voice `edgekws calibrate --method
                 norm --save` measured (stored only when set; not with a voice_shift)
    The timing defaults (a step every 40 ms, a mean over 320 ms, 1 s refractory) with
    StreamConfig.default(labels)'s thresholds are a good start on synthesized streams; `edgekws
    eval-stream --tune` chooses smooth and the thresholds. check() refuses what the C detector
    could not take (floats, bools, out-of-range values).
    """

    hop_every: int = 2
    smooth: int = 8
    refractory: int = 25
    thresholds: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)
    voice_shift: int = 0
    voice_offset: list | None = None

    @classmethod
    def default(cls, labels) -> "StreamConfig":
        q = int(round(DEFAULT_THRESHOLD * ONE_Q15))
        return cls(thresholds={lab: q for lab in labels if lab not in NON_COMMANDS})

    @classmethod
    def from_bundle(cls, bundle) -> "StreamConfig":
        d = bundle.manifest.get("stream")
        if not d:
            return cls.default(bundle.labels)
        def whole(v):   # the manifest is edited by hand: 0.5 must not silently become 0
            if not is_int(v, numpy=False):
                raise TypeError(v)
            return v

        try:
            cfg = cls(hop_every=whole(d["hop_every"]), smooth=whole(d["smooth"]), refractory=whole(d["refractory"]),
                      thresholds={str(k): whole(v) for k, v in d["thresholds"].items()}, tuning=dict(d.get("tuning", {})),
                      voice_shift=whole(d.get("voice_shift", 0)), voice_offset=d.get("voice_offset"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"lack {exc}" if isinstance(exc, KeyError) else "have a value of the wrong type"
            raise BundleError(f"{bundle.path}: manifest 'stream' settings {what}: they must be an object with "
                              "integers hop_every, smooth, refractory and thresholds mapping labels to "
                              "integers, and optionally an integer voice_shift or a list voice_offset (edgekws eval-stream "
                              "--tune and edgekws calibrate --save write them)") from None
        try:
            cfg.check(bundle.labels)
        except EdgekwsError as exc:
            raise BundleError(f"{bundle.path}: manifest {exc}") from None
        return cfg

    def check(self, labels=None) -> None:
        """Refuse settings the detector cannot take; with `labels`, thresholds must name labels."""
        for k in ("hop_every", "smooth", "refractory"):
            v = getattr(self, k)
            if not is_int(v):
                raise EdgekwsError(f"'stream' setting {k} must be an integer, got {v!r}")
        if not isinstance(self.thresholds, dict):
            raise EdgekwsError(f"'stream' thresholds must map labels to Q15 integers, got {self.thresholds!r}")
        if labels is not None:
            unknown = sorted(str(k) for k in set(self.thresholds) - set(labels))
            if unknown:
                raise EdgekwsError(f"'stream' thresholds name unknown labels {unknown} (labels: {', '.join(labels)})")
        bad = {k: v for k, v in self.thresholds.items()
               if not is_int(v) or not 1 <= v <= ONE_Q15}
        if bad:
            raise EdgekwsError(f"'stream' thresholds {bad} are not Q15 posteriors: each is an integer in "
                               f"1..{ONE_Q15} ({ONE_Q15 // 2} = 0.5); leave a command out to disable it")
        if not 1 <= self.hop_every <= MAX_HOP_EVERY:
            raise EdgekwsError(f"'stream' setting hop_every must be in [1, {MAX_HOP_EVERY}], got {self.hop_every}")
        if not 1 <= self.smooth <= MAX_SMOOTH:
            raise EdgekwsError(f"'stream' setting smooth must be in [1, {MAX_SMOOTH}], got {self.smooth}")
        if not 0 <= self.refractory <= MAX_REFRACTORY:
            raise EdgekwsError(f"'stream' setting refractory must be in [0, {MAX_REFRACTORY}], got {self.refractory}")
        from edgekws.evaluate import MAX_VOICE_SEARCH

        if not is_int(self.voice_shift) or abs(self.voice_shift) > MAX_VOICE_SEARCH:
            raise EdgekwsError(f"'stream' setting voice_shift must be a whole number of bands in "
                               f"[-{MAX_VOICE_SEARCH}, {MAX_VOICE_SEARCH}], got {self.voice_shift!r}")
        if self.voice_offset is not None:
            off = self.voice_offset
            if not isinstance(off, list) or not off or not all(is_int(v) and abs(v) < 2 ** 31 for v in off):
                raise EdgekwsError("'stream' setting voice_offset must be a list of whole numbers (one per "
                                   f"embedding value; edgekws calibrate --method norm --save), got "
                                   f"{type(off).__name__ if not isinstance(off, list) else 'a list with other values'}")
            if self.voice_shift:
                raise EdgekwsError("'stream' settings voice_shift and voice_offset: a voice is calibrated one "
                                   "way or the other, not both")

    def to_dict(self) -> dict:
        return {"hop_every": self.hop_every, "smooth": self.smooth, "refractory": self.refractory,
                "thresholds": dict(self.thresholds), "tuning": dict(self.tuning),
                "detector": "Q15 posteriors from an exp table of the int8 logits, mean of the last "
                            "`smooth` model steps, fire at >= threshold, then `refractory` silent steps",
                **({"voice_shift": int(self.voice_shift)} if self.voice_shift else {}),
                **({"voice_offset": [int(v) for v in self.voice_offset]} if self.voice_offset is not None else {})}

    def threshold_array(self, labels) -> np.ndarray:
        """(K,) int32 Q15 thresholds in label order (DISABLED for labels without one)."""
        return np.array([self.thresholds.get(lab, DISABLED) if lab not in NON_COMMANDS else DISABLED
                         for lab in labels], np.int32)
