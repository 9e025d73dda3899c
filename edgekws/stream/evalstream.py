"""Streaming evaluation: long test streams built from a dataset split, hit rate, false accepts per
hour and latency, and threshold tuning on validation streams to a target false-accept rate.

Streams (16 kHz int16, every choice drawn from a seeded generator):
  command stream   background noise throughout (a random stretch of a random noise file at a random
                   gain per segment); the split's command clips, shuffled, each preceded by a gap of
                   GAP_S seconds that holds an unknown-word clip half of the time
  negative stream  background noise + the split's unknown-word clips, `negative_minutes` long:
                   the long stretch of non-command audio for false accepts
Scoring: a command occurrence is hit by a detection of its label between the clip start and
HIT_TOLERANCE_S after the clip end (at most one hit each). Every other detection (wrong label,
duplicate, or outside all occurrences) is a false accept. False accepts per hour count both streams'
non-command time. Latency is the detection time minus the end of the speech in the clip (the last
10 ms block within 30 dB of the clip's loudest one).
"""

from __future__ import annotations

import numpy as np

from edgekws.errors import DatasetError, EdgekwsError

SR = 16000
GAP_S = (1.0, 2.5)
NOISE_GAIN = (0.03, 0.3)
HIT_TOLERANCE_S = 1.0
SMOOTH_CHOICES = (1, 2, 3, 4, 5)
THRESHOLD_GRID = np.round(np.linspace(0.30, 0.99, 70) * 32768).astype(int)


def _noise_bed(noises: list[np.ndarray], n: int, rng: np.random.Generator, gain=NOISE_GAIN) -> np.ndarray:
    """n samples of background (float64, int16 scale), one random stretch and gain per ~5 s."""
    out = np.zeros(n)
    usable = [x for x in noises if len(x) > 0]
    seg = 5 * SR
    for s in range(0, n, seg):
        m = min(seg, n - s)
        if not usable:
            out[s:s + m] = rng.standard_normal(m) * rng.uniform(0, 30)
            continue
        src = usable[int(rng.integers(len(usable)))]
        reps = -(-(m + len(src)) // len(src))
        start = int(rng.integers(len(src)))
        out[s:s + m] = np.tile(src, reps)[start:start + m] * 32768.0 * rng.uniform(*gain)
    return out


def speech_end(clip: np.ndarray) -> int:
    """Sample index just after the last 10 ms block within 30 dB of the loudest block."""
    x = clip.astype(np.float64)
    n = len(x) // 160
    if n == 0:
        return len(x)
    e = (x[:n * 160].reshape(n, 160) ** 2).mean(axis=1)
    loud = np.flatnonzero(e >= e.max() * 1e-3)
    return int((loud[-1] + 1) * 160) if len(loud) else len(x)


def build_command_stream(commands, unknowns, noises, rng, gain=NOISE_GAIN):
    """commands [(int16 clip, label)], unknowns [int16 clip] -> (int16 audio, events)
    events: [(start, end, speech_end, label)] in samples."""
    order = rng.permutation(len(commands))
    pieces, events, pos = [], [], 0
    for i in order:
        clip, label = commands[i]
        gap = np.zeros(int(rng.uniform(*GAP_S) * SR))
        if unknowns and len(gap) >= SR + SR // 4 and rng.random() < 0.5:
            u = unknowns[int(rng.integers(len(unknowns)))]
            at = int(rng.integers(0, len(gap) - len(u) - SR // 4 + 1))
            gap[at:at + len(u)] += u
        pieces += [gap, clip.astype(np.float64)]
        pos += len(gap)
        events.append((pos, pos + len(clip), pos + speech_end(clip), label))
        pos += len(clip)
    tail = np.zeros(2 * SR)
    speech = np.concatenate(pieces + [tail]) if pieces else tail
    audio = speech + _noise_bed(noises, len(speech), rng, gain)
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16), events


def build_negative_stream(unknowns, noises, seconds: float, rng, gain=NOISE_GAIN) -> np.ndarray:
    """Background noise with unknown words every 1.5-4 s: (round(seconds * SR),) int16."""
    n = int(round(seconds * SR))
    audio = _noise_bed(noises, n, rng, gain)
    pos = int(rng.uniform(0.5, 2.0) * SR)
    while unknowns and pos + SR <= n:
        u = unknowns[int(rng.integers(len(unknowns)))]
        audio[pos:pos + len(u)] += u
        pos += len(u) + int(rng.uniform(1.5, 4.0) * SR)
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16)


def score(dets, events, seconds: float, extra_fa: int = 0, extra_seconds: float = 0.0) -> dict:
    """Match detections [(time_s, label)] with events -> hits, false accepts, latency."""
    hit = [False] * len(events)
    fa = 0
    latencies = []
    for t, label in dets:
        s = t * SR
        match = None
        for i, (start, end, send, lab) in enumerate(events):
            if start <= s <= end + HIT_TOLERANCE_S * SR and lab == label and not hit[i]:
                match = i
                break
        if match is None:
            fa += 1
        else:
            hit[match] = True
            latencies.append((s - events[match][2]) / SR * 1000.0)
    command_s = sum(e[1] - e[0] for e in events) / SR
    neg_hours = (seconds - command_s + extra_seconds) / 3600.0
    total_fa = fa + extra_fa
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {"commands": len(events), "hits": int(sum(hit)),
            "hit_rate": float(np.mean(hit)) if events else 0.0,
            "false_accepts": int(total_fa), "false_accepts_in_command_stream": int(fa),
            "non_command_hours": round(neg_hours, 4),
            "false_accepts_per_hour": float(total_fa / neg_hours) if neg_hours > 0 else 0.0,
            "latency_ms_median": round(float(np.median(lat)), 1),
            "latency_ms_p90": round(float(np.percentile(lat, 90)), 1)}


def load_split_audio(bundle, data, split: str, seed: int):
    """(commands [(clip, label)], unknowns [clip], noises) of a split of dataset folder `data`."""
    from edgekws.data import SILENCE, UNKNOWN, load_dataset
    from edgekws.featcache import load_clips, load_noises

    words = [w for w in bundle.labels if w not in (SILENCE, UNKNOWN)]
    ds = load_dataset(data, words)
    cmd = [c for c in ds.clips if c.split == split and c.label not in (SILENCE, UNKNOWN)]
    unk = [c for c in ds.clips if c.split == split and c.label == UNKNOWN]
    if not cmd:
        raise DatasetError(f"{data}: no command clips in the {split} split")
    clips = load_clips([c.path for c in cmd], SR, SR)
    uclips = load_clips([c.path for c in unk], SR, SR) if unk else np.zeros((0, SR), np.int16)
    commands = [(clips[i], c.label) for i, c in enumerate(cmd)]
    return commands, [u.astype(np.float64) for u in uclips], load_noises(ds.noise_files, SR)


def make_streams(bundle, data, split: str, seed: int, negative_minutes: float, gain=NOISE_GAIN):
    """(command stream, its events, negative stream) of a split; gain: (lo, hi) noise gain range."""
    commands, unknowns, noises = load_split_audio(bundle, data, split, seed)
    rng = np.random.default_rng([seed, 0x57EA])
    cmd_audio, events = build_command_stream(commands, unknowns, noises, rng, gain)
    neg_audio = build_negative_stream(unknowns, noises, negative_minutes * 60.0, rng, gain)
    return cmd_audio, events, neg_audio


def _run(setup, audio, engine):
    from edgekws.stream.pipeline import detect_audio

    return [(d.time, d.label) for d in detect_audio(setup, audio, engine)]


def evaluate_streams(setup, cmd_audio, events, neg_audio, engine: str = "onnx") -> dict:
    """Run the detector over both streams and score it."""
    dc = _run(setup, cmd_audio, engine)
    dn = _run(setup, neg_audio, engine) if len(neg_audio) else []
    out = score(dc, events, len(cmd_audio) / SR, extra_fa=len(dn), extra_seconds=len(neg_audio) / SR)
    out["stream_seconds"] = round((len(cmd_audio) + len(neg_audio)) / SR, 1)
    return out


def tune(setup, cmd_audio, events, neg_audio, target_fa_per_hour: float = 1.0, engine: str = "onnx") -> dict:
    """Choose smooth and one threshold for every command: the highest hit rate with false accepts
    per hour <= target on these (validation) streams; ties go to the higher threshold. The logits
    are computed once; only the cheap detector is rerun per candidate. Returns the tuning record
    and updates setup.config in place."""
    from edgekws.stream.detector import NON_COMMANDS, fire
    from edgekws.stream.engines import make_engine
    from edgekws.stream.pipeline import run_logits, step_scores

    eng = make_engine(engine, setup.qm, setup.bundle)
    runs = []
    for audio in (cmd_audio, neg_audio):
        logits, newest = run_logits(setup, audio, eng)
        runs.append((logits, newest))
    cfg = setup.config
    fc = setup.feature_config
    commands = [i for i, lab in enumerate(setup.labels) if lab not in NON_COMMANDS]
    best = None
    for smooth in SMOOTH_CHOICES:
        scores = [step_scores(setup, lg, smooth) for lg, _ in runs]
        for q in THRESHOLD_GRID:
            thr = np.full(len(setup.labels), -1, np.int64)
            thr[commands] = q
            dets = []
            for (lg, newest), sc in zip(runs, scores):
                dets.append([((newest[t] * fc.hop_len + fc.window_len) / fc.sample_rate, setup.labels[k])
                             for t, k, _ in fire(sc, thr, cfg.refractory)])
            m = score(dets[0], events, len(cmd_audio) / SR, len(dets[1]), len(neg_audio) / SR)
            if m["false_accepts_per_hour"] > target_fa_per_hour:
                continue
            key = (m["hit_rate"], -smooth, int(q))
            if best is None or key > best[0]:
                best = (key, smooth, int(q), m)
    if best is None:
        raise EdgekwsError(f"tuning: no threshold reaches {target_fa_per_hour} false accepts per hour "
                           "on the validation streams")
    _, smooth, q, m = best
    cfg.smooth = smooth
    cfg.thresholds = {setup.labels[k]: q for k in commands}
    cfg.tuning = {"target_false_accepts_per_hour": target_fa_per_hour, "engine": engine,
                  "validation": m}
    return cfg.tuning
