"""Pseudo-speakers for synthesized datasets: each a fixed engine + voice setting, reproducible by seed.

A speaker id encodes its engine (`espk0012`, `ojt0003`) and keeps the same voice for every word,
so splits by speaker, and leave-one-engine-out evaluation, mean something.

* eSpeak NG: speaker k takes variant k of a seeded permutation of all voice variants in
  espeak-ng-data (formant, Klatt, whisper, ... — ~104), so the first 104 speakers all differ in
  variant; English speakers also cycle through 8 accents. Pitch, pitch range and rate are drawn
  per speaker.
* Open JTalk (the real voice Mei; with `ojt_voices=("mei", "m001", ...)` speakers take turns
  among the voices, e.g. the male voice M001): a "lower" half of speakers gets a lower pitch and a
  longer vocal tract (larger all-pass alpha), the others higher pitch and shorter tract; speed is
  drawn per speaker.
Each clip then jitters the speaker's rate/pitch a little, as a person never says a word twice
the same way.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from edgekws.synth.openjtalk import VOICES

ID_PREFIX = {"espeak": "espk", "openjtalk": "ojt"}
# Share of the speakers when engines are mixed. Open JTalk costs ~20 ms a clip against ~3 ms for
# eSpeak, and its one voice gives fewer really different speakers.
ENGINE_SHARE = {"espeak": 0.6, "openjtalk": 0.4}
_LANG_CODE = {"en": 1, "ja": 2}
_ENGINE_CODE = {"espeak": 1, "openjtalk": 2}
# Pitch shifts (semitones) of the "lower" and the "higher" half of an Open JTalk voice's speakers.
# Mei speaks near 300 Hz: -11…-5 gives ~160–220 Hz; her four other styles (angry, bashful, happy,
# sad) within 3 semitones of it. M001 speaks near 130 Hz, about 14 semitones lower.
_MEI_HALF_TONES = ((-11.0, -5.0), (-4.0, 4.0))
OJT_HALF_TONES = {**{v: _MEI_HALF_TONES for v in VOICES if v.startswith("mei")}, "m001": ((-4.0, 1.0), (1.0, 7.0))}


@dataclass(frozen=True)
class Speaker:
    """id: e.g. 'espk0012'; engine: 'espeak' | 'openjtalk'; params: the engine's voice settings."""

    id: str
    engine: str
    params: dict = field(hash=False)


def _code(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def clip_rng(seed: int, speaker_id: str, label: str, rep: int) -> np.random.Generator:
    """The generator of one clip, derived from (seed, speaker, word, repetition) only."""
    return np.random.default_rng([int(seed), _code(speaker_id), _code(label), int(rep)])


def speaker_counts(n: int, engines) -> dict[str, int]:
    """How many of `n` speakers each engine gets (ENGINE_SHARE; at least 1 each when n allows)."""
    engines = tuple(engines)
    total = sum(ENGINE_SHARE[e] for e in engines)
    counts = {e: int(round(n * ENGINE_SHARE[e] / total)) for e in engines[1:]}
    for e in counts:
        counts[e] = min(max(counts[e], 1 if n > len(counts) else 0), n - 1)
    counts = {engines[0]: n - sum(counts.values()), **counts}
    return counts


def make_speakers(lang: str, n: int, engines, seed: int, variants=(), ojt_voices=("mei",)) -> list[Speaker]:
    """`n` speakers shared among `engines` by ENGINE_SHARE (ids numbered per engine).

    variants   : eSpeak NG variant names (needed when "espeak" is among the engines)
    ojt_voices : Open JTalk voices (OJT_HALF_TONES) that the engine's speakers take in turn; a speaker
                 of the default voice Mei is the same whatever the list
    """
    from edgekws.synth.espeak import EN_ACCENTS

    engines = tuple(engines)
    counts = speaker_counts(n, engines)
    speakers: list[Speaker] = []
    for engine in engines:
        base = [int(seed), _LANG_CODE[lang], _ENGINE_CODE[engine]]
        order = np.random.default_rng(base).permutation(max(len(variants), 1))
        accents = np.random.default_rng(base + [1]).permutation(len(EN_ACCENTS))
        for k in range(counts[engine]):
            rng = np.random.default_rng(base + [2, k])
            sid = f"{ID_PREFIX[engine]}{k:04d}"
            if engine == "espeak":
                if not variants:
                    raise ValueError("make_speakers: eSpeak NG variants are required")
                variant = variants[order[k % len(variants)]]
                accent = "ja" if lang == "ja" else EN_ACCENTS[accents[(k + k // len(variants)) % 8]]
                rate = (110, 200) if lang == "en" else (105, 180)
                params = {"voice": f"{accent}+{variant}",
                          "rate": int(rng.integers(*rate, endpoint=True)),
                          "pitch": int(rng.integers(15, 85, endpoint=True)),
                          "prange": int(rng.integers(15, 90, endpoint=True))}
            else:
                voice = ojt_voices[k % len(ojt_voices)]
                low = rng.random() < 0.5
                half_tone = rng.uniform(*OJT_HALF_TONES[voice][0 if low else 1])
                alpha = rng.uniform(0.56, 0.66) if low else rng.uniform(0.44, 0.56)
                params = {"half_tone": round(float(half_tone), 2),
                          "alpha": round(float(alpha), 2),
                          "speed": round(float(rng.uniform(0.75, 1.1)), 3)}
                if voice != "mei":          # Mei's speakers keep the parameters they always had
                    params["voice"] = voice
            speakers.append(Speaker(sid, engine, params))
    return speakers


def jitter(speaker: Speaker, rng: np.random.Generator) -> dict:
    """The speaker's voice settings, varied slightly for one clip."""
    p = dict(speaker.params)
    if speaker.engine == "espeak":
        p["rate"] = int(np.clip(round(p["rate"] * rng.uniform(0.9, 1.1)), 80, 450))
        p["pitch"] = int(np.clip(p["pitch"] + rng.integers(-5, 5, endpoint=True), 0, 100))
        p["prange"] = int(np.clip(p["prange"] + rng.integers(-8, 8, endpoint=True), 0, 100))
    else:
        p["speed"] = round(p["speed"] * float(rng.uniform(0.93, 1.07)), 3)
        p["half_tone"] = round(p["half_tone"] + float(rng.uniform(-0.7, 0.7)), 2)
    return p
