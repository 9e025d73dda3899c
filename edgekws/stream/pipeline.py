"""Audio in, detections out: the streaming chain of firmware/src/pipeline.c in Python.

    setup = StreamSetup.from_bundle(bundle)                 # int8 model, labels, detector settings
    dets = detect_audio(setup, audio_int16, engine="onnx")  # a whole recording
    live = StreamingDetector(setup, "numpy"); live.push(block) -> [Detection, ...]

Definition (shared with C): feature frames come from the integer frontend; a ring of the last
T frames (T = 49, the model input) starts full of -128 (digital silence); after every hop_every-th
frame the model runs on the ring in time order and the detector takes one step. A detection's
time is the end of the newest frame the model saw: (frame * hop_len + window_len) / sample_rate.
Samples that do not complete a frame (a stream ending mid-frame) are never used.
The batch path computes all frames, views the windows in place and runs the model in batches;
it gives exactly the detections of the step-by-step path and of the C pipeline.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from edgekws.errors import AudioError, EdgekwsError, is_real
from edgekws.stream.detector import Detector, StreamConfig, detect_steps, exp_lut, posteriors_q15, smooth_q15

SILENCE_Q = -128
BATCH = 512
CHUNK_SAMPLES = 16000 * 30  # frontend work per call in the batch path


@dataclass
class Detection:
    label: str
    index: int        # class index
    score_q15: int    # smoothed posterior, Q15
    frame: int        # newest frame the model saw
    time: float       # seconds from the start of the stream

    @property
    def score(self) -> float:
        return self.score_q15 / 32768.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        d["time"] = round(self.time, 3)
        return d


@dataclass
class StreamSetup:
    """Everything the chain needs: the int8 model, labels, features and detector settings."""

    qm: object
    labels: list
    feature_config: object
    config: StreamConfig
    bundle: object = None

    @classmethod
    def from_bundle(cls, bundle, config: StreamConfig | None = None) -> "StreamSetup":
        """The chain of a quantized bundle (a Bundle or its path), with its own stream settings
        unless `config` is given (checked as the manifest's are)."""
        from edgekws.bundle import as_bundle
        from edgekws.features import FeatureConfig
        from edgekws.quant import load_quantized

        bundle = as_bundle(bundle)
        if config is not None and not isinstance(config, StreamConfig):
            raise EdgekwsError(f"stream config: a StreamConfig, got {type(config).__name__} (StreamConfig(**dict) "
                               "makes one)")
        qm = load_quantized(bundle)
        fc = FeatureConfig.from_dict(bundle.manifest["feature_config"])
        setup = cls(qm, bundle.labels, fc, config or StreamConfig.from_bundle(bundle), bundle)
        setup.check()
        return setup

    def check(self) -> None:
        self.config.check(self.labels)
        shape = tuple(self.qm.input_shape)
        if int(np.prod(shape)) % self.feature_config.num_bands:
            raise EdgekwsError(f"stream: model input {shape} is not a whole number of "
                               f"{self.feature_config.num_bands}-band frames")
        if len(self.labels) != self.qm.num_classes:
            raise EdgekwsError(f"stream: {len(self.labels)} labels for {self.qm.num_classes} model outputs")
        if self.config.voice_offset is not None:
            from edgekws.voicenorm import embedding_size

            head = self.qm.layers[-1]
            if len(self.qm.layers) < 2 or head.op != "dense":
                raise EdgekwsError(f"voice_offset (the bundle's 'stream' setting): the model's last layer is a "
                                   f"{head.op}, not a dense classifier whose input can move")
            if len(self.config.voice_offset) != embedding_size(self.qm):
                raise EdgekwsError(f"voice_offset (the bundle's 'stream' setting): {len(self.config.voice_offset)} "
                                   f"values for the model's embedding of {embedding_size(self.qm)} "
                                   "(calibrate again: edgekws calibrate MODEL CLIPS --method norm --save)")
        if abs(self.config.voice_shift) >= self.feature_config.num_bands:
            raise EdgekwsError(f"voice_shift {self.config.voice_shift} (the bundle's 'stream' setting): must be "
                               f"smaller than the {self.feature_config.num_bands} bands of a frame")
        if self.config.hop_every > self.window_frames:   # frames between two windows would never be heard
            raise EdgekwsError(f"hop_every {self.config.hop_every} (--hop-every, or the bundle's 'stream' "
                               f"setting): must be at most the model's window of {self.window_frames} frames")

    def engine(self, name):
        """The model engine `name` (numpy, onnx, c) as this setup runs it: with the stream setting
        voice_offset, the embedding moves by it before the classifier."""
        from edgekws.stream.engines import make_engine

        return make_engine(name, self.qm, self.bundle, self.config.voice_offset)

    @property
    def window_frames(self) -> int:
        return int(np.prod(self.qm.input_shape)) // self.feature_config.num_bands

    @property
    def lut(self) -> np.ndarray:
        return exp_lut(self.qm.output_scale)

    @property
    def thresholds(self) -> np.ndarray:
        return self.config.threshold_array(self.labels)

    def detection(self, k: int, score: int, frame: int) -> Detection:
        fc = self.feature_config
        t = (frame * fc.hop_len + fc.window_len) / fc.sample_rate
        return Detection(self.labels[k], int(k), int(score), int(frame), t)


def as_int16(audio) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1 or a.dtype != np.int16:
        raise AudioError(f"stream: expected mono (n,) int16 audio, got {a.dtype} {a.shape}")
    return a


def stream_features(audio: np.ndarray, fc) -> np.ndarray:
    """All frames of a long recording: (n,) int16 -> (T, F) int8, in bounded-memory chunks."""
    from edgekws.features import StreamingFrontend

    audio = as_int16(audio)
    fe = StreamingFrontend(fc)
    parts = [fe.push(audio[i:i + CHUNK_SAMPLES]) for i in range(0, len(audio), CHUNK_SAMPLES)]
    return np.concatenate(parts) if parts else np.zeros((0, fc.num_bands), np.int8)


def heard_frames(frames: np.ndarray, shift: int) -> np.ndarray:
    """Feature frames (T, F) as the model hears them: moved by `shift` bands, a stream setting's
    voice_shift (a calibrated voice; ekws_pipeline_set_voice_shift in C), or as they are (0)."""
    s = int(shift)
    if not s:
        return frames
    from edgekws.evaluate import shift_bands

    return shift_bands(frames, s)


def step_windows(frames: np.ndarray, window: int, hop_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of every step: frames (T, F) -> (windows (S, window, F) int8 view, newest frame (S,))."""
    f = frames.shape[1]
    if len(frames) < hop_every:
        return np.zeros((0, window, f), np.int8), np.zeros(0, np.int64)
    padded = np.concatenate([np.full((window - 1, f), SILENCE_Q, np.int8), frames])
    newest = np.arange(hop_every - 1, len(frames), hop_every)
    view = np.lib.stride_tricks.sliding_window_view(padded, (window, f))[:, 0]
    return view[newest], newest


def step_logits(engine, windows: np.ndarray, shape) -> np.ndarray:
    """Batched logits of (S, window, F) windows: (S, K) int8. An hour of stream takes minutes: a
    progress bar appears on a terminal after 2 s (never in a pipe, a log or a test)."""
    import sys

    from tqdm import tqdm

    starts = tqdm(range(0, len(windows), BATCH), desc="model steps", unit="batch", leave=False,
                  disable=None, delay=2, file=sys.stderr)
    out = [engine.logits(np.ascontiguousarray(windows[i:i + BATCH]).reshape(-1, *shape)) for i in starts]
    return np.concatenate(out) if out else np.zeros((0, 0), np.int8)


def run_logits(setup: StreamSetup, audio: np.ndarray, engine) -> tuple[np.ndarray, np.ndarray]:
    """Every model step of a recording: ((S, K) int8 logits, (S,) newest frame)."""
    frames = heard_frames(stream_features(audio, setup.feature_config), setup.config.voice_shift)
    windows, newest = step_windows(frames, setup.window_frames, setup.config.hop_every)
    if len(newest) == 0:
        return np.zeros((0, setup.qm.num_classes), np.int8), newest
    return step_logits(engine, windows, setup.qm.input_shape), newest


def step_scores(setup: StreamSetup, logits: np.ndarray, smooth: int | None = None) -> np.ndarray:
    """Smoothed Q15 scores (S, K) of step logits (for threshold tuning)."""
    return smooth_q15(posteriors_q15(logits, setup.lut), smooth or setup.config.smooth)


END_SILENCE = 1.0  # seconds of silence a whole recording is heard to end with (detect_audio)


def silence(setup: StreamSetup, seconds: float, what: str) -> np.ndarray:
    """`seconds` (a number in [0, 60]) of digital silence at the setup's rate; `what` is the error
    for any other value."""
    if not is_real(seconds, numpy=False) or not 0 <= seconds <= 60:
        raise EdgekwsError(f"{what}, got {seconds!r}")
    return np.zeros(int(round(seconds * setup.feature_config.sample_rate)), np.int16)


def as_setup(setup) -> StreamSetup:
    """A StreamSetup, or one made from a model bundle (a Bundle or its folder) with its own settings."""
    if isinstance(setup, StreamSetup):
        return setup
    from edgekws.bundle import Bundle

    if isinstance(setup, (str, os.PathLike, Bundle)):
        return StreamSetup.from_bundle(setup)
    raise EdgekwsError(f"stream: a StreamSetup or a model bundle folder, got {type(setup).__name__}")


def detect_audio(setup: StreamSetup, audio: np.ndarray, engine: str = "numpy",
                 end_silence: float = END_SILENCE) -> list[Detection]:
    """Detections in a whole recording (n,) int16 with the numpy, onnx or c engine.

    end_silence: seconds of digital silence heard after the recording (default 1 s, as `edgekws
    listen --file`): the recording ends as if the speaker then fell silent, so that the smoothed
    score of a command said at its very end can still rise. 0 = exactly the samples given, which is
    what a device that was pushed this audio has detected (the golden vectors use 0)."""
    setup = as_setup(setup)
    setup.check()   # settings assigned after from_bundle are checked too
    audio = as_int16(audio)
    tail = silence(setup, end_silence, "end_silence: must be a number of seconds in [0, 60]")
    if len(tail):
        audio = np.concatenate([audio, tail])
    if engine == "c":
        from edgekws.stream.cpipeline import CPipeline

        return CPipeline(setup).push(audio)
    eng = setup.engine(engine)
    logits, newest = run_logits(setup, audio, eng)
    if len(newest) == 0:
        return []
    c = setup.config
    hits = detect_steps(logits, setup.lut, setup.thresholds, c.smooth, c.refractory)
    return [setup.detection(k, s, newest[t]) for t, k, s in hits]


class StreamingDetector:
    """Push int16 blocks of any size as they arrive; get the detections they complete. The settings
    (hop, smoothing, refractory, thresholds) are those of `setup` when it is built, in every engine
    (the C pipeline copies them): settings changed later need a new detector."""

    def __init__(self, setup: StreamSetup, engine: str = "numpy"):
        setup = as_setup(setup)
        setup.check()
        self.setup = setup
        self.hop_every = setup.config.hop_every
        self.voice_shift = setup.config.voice_shift
        if engine == "c":
            from edgekws.stream.cpipeline import CPipeline

            self._c = CPipeline(setup)
            return
        from edgekws.features import StreamingFrontend

        self._c = None
        self.engine = setup.engine(engine)
        self.frontend = StreamingFrontend(setup.feature_config)
        c = setup.config
        self.detector = Detector(setup.lut, setup.thresholds, c.smooth, c.refractory)
        self.reset()

    def reset(self) -> None:
        if self._c is not None:
            self._c.reset()
            return
        fc = self.setup.feature_config
        self.ring = np.full((self.setup.window_frames, fc.num_bands), SILENCE_Q, np.int8)
        self.oldest = 0
        self.frames = 0
        self.frontend.reset()
        self.detector.reset()

    def push(self, samples: np.ndarray) -> list[Detection]:
        if self._c is not None:
            return self._c.push(as_int16(samples))
        out = []
        for frame in heard_frames(self.frontend.push(as_int16(samples)), self.voice_shift):
            self.ring[self.oldest] = frame
            self.oldest = (self.oldest + 1) % len(self.ring)
            self.frames += 1
            if self.frames % self.hop_every:
                continue
            window = np.concatenate([self.ring[self.oldest:], self.ring[:self.oldest]])
            logits = self.engine.logits(window.reshape(1, *self.setup.qm.input_shape))[0]
            hit = self.detector.step(logits)
            if hit is not None:
                out.append(self.setup.detection(hit[0], hit[1], self.frames - 1))
        return out

    def flush(self, seconds: float = END_SILENCE) -> list[Detection]:
        """The stream has ended: push `seconds` of digital silence (what detect_audio hears after a
        recording) and return what it completes, e.g. a command said at the very end of a file.
        The detector then carries on as after any silence."""
        return self.push(silence(self.setup, seconds, "flush: seconds must be a number in [0, 60]"))
