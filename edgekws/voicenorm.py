"""Voice normalization: each voice's average embedding moved onto the training voices' average.

Every voice moves the classifier's input (the pooled embedding) its own way, and a model meets
voices it never heard. Removing that move is the embedding's counterpart of cepstral mean
normalization: a device keeps the average embedding of the last clips it heard from its user and
subtracts how far that average lies from the reference, the average over the training clips. No
label is needed, and the network is unchanged: for a dense classifier the subtraction is a change of
its bias (b - W @ offset). RESULTS.md, Voices and Last-layer retraining, session 43: with 10 clips of
each voice, the default eSpeak NG -> Open JTalk 79.6 -> 88.3% (five seeds), English defaults on the Flite/Festival
judging set 75.8 -> 82.0%, Japanese base -> English heads from 5 examples 86.4 -> 89.0%. The C
runtime does the same (ekws_model_embed, ekws_voice_offset, ekws_model_invoke_voice in model.h).

int8 embeddings (what the device computes), integer arithmetic:
    offset     = floor(mean of the voice's clips - reference + 1/2)      (int32 per value)
    normalized = clamp(embedding - offset, -128, 127)
float embeddings: offset = mean - reference, normalized = embedding - offset.
The reference is a float vector in the embedding's own units (int8 steps for int8 embeddings).
"""

from __future__ import annotations

import numpy as np

from edgekws.errors import EdgekwsError, is_int

DEFAULT_CLIPS = 10   # clips of a voice its offset is taken from (RESULTS.md, session 43: 5 gave +1, 3 lost)


def _check(emb, speakers) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(emb)
    speakers = np.asarray(speakers, dtype=object)
    if emb.ndim != 2 or not (emb.dtype == np.int8 or np.issubdtype(emb.dtype, np.floating)):
        raise EdgekwsError(f"voice normalization: embeddings must be int8 or float (N, E), got {emb.dtype} {emb.shape}")
    if speakers.shape != (len(emb),):
        raise EdgekwsError(f"voice normalization: {len(emb)} embeddings but {speakers.size} speaker ids")
    return emb, speakers


def clip_speakers(clips) -> np.ndarray:
    """(N,) object: the speaker id of each edgekws.data.Clip, "" for a `_silence_` cut (no file)."""
    return np.array([c.speaker if c.path is not None else "" for c in clips], dtype=object)


def voiced(speakers) -> np.ndarray:
    """(N,) bool: clips with a speaker (a `_silence_` cut has "" or None)."""
    return np.array([bool(s) for s in np.asarray(speakers, dtype=object)], bool)


def reference(emb, speakers) -> np.ndarray:
    """(E,) float64: the average embedding over the clips that have a speaker."""
    emb, speakers = _check(emb, speakers)
    keep = voiced(speakers)
    if not keep.any():
        raise EdgekwsError("voice normalization: no clip with a speaker id to take the reference from")
    return emb[keep].astype(np.float64).mean(0)


def offset_of(clips: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(E,) offset of a voice from some of its clips (M, E): int32 for int8 clips, else float."""
    d = clips.astype(np.float64).mean(0) - ref
    return np.floor(d + 0.5).astype(np.int32) if clips.dtype == np.int8 else d.astype(clips.dtype)


def offsets(emb, speakers, ref, *, others: int = DEFAULT_CLIPS, seed: int = 0) -> np.ndarray:
    """(N, E) each clip's offset from up to `others` OTHER clips of its speaker (drawn with `seed` when
    there are more; the clip itself never counts: the device has heard the voice before, not this
    clip). A speaker's only clip gets 0. A clip without a speaker (a `_silence_` cut) gets the offset
    of a speaker drawn with `seed` (of that speaker's first clip): silence is heard in some user's
    presence. int32 for int8 embeddings, else their float type."""
    emb, speakers = _check(emb, speakers)
    if not is_int(others) or others < 1:
        raise EdgekwsError(f"voice normalization: clips per voice must be an integer >= 1, got {others!r}")
    ref = np.asarray(ref, np.float64)
    if ref.shape != (emb.shape[1],):
        raise EdgekwsError(f"voice normalization: reference of shape {ref.shape}, embeddings of {emb.shape[1]} values")
    rng = np.random.default_rng([seed, 0x5BEA])
    out = np.zeros(emb.shape, np.int32 if emb.dtype == np.int8 else emb.dtype)
    keep = voiced(speakers)
    names = sorted(set(speakers[keep]))
    first = {}
    for name in names:
        idx = np.flatnonzero(speakers == name)
        for i in idx:
            rest = idx[idx != i]
            if not len(rest):
                continue
            if len(rest) > others:
                rest = np.sort(rng.choice(rest, others, replace=False))
            out[i] = offset_of(emb[rest], ref)
        first[name] = out[idx[0]]
    quiet = np.flatnonzero(~keep)
    if len(quiet) and names:
        picks = rng.integers(len(names), size=len(quiet))
        out[quiet] = np.stack([first[names[p]] for p in picks])
    return out


def normalize(emb, offs) -> np.ndarray:
    """emb - offs: int8 saturated for int8 embeddings, else in their float type."""
    emb = np.asarray(emb)
    offs = np.asarray(offs)
    if offs.shape != emb.shape:
        raise EdgekwsError(f"voice normalization: embeddings {emb.shape} and offsets {offs.shape} differ")
    if emb.dtype == np.int8:
        return np.clip(emb.astype(np.int64) - offs, -128, 127).astype(np.int8)   # int64 as in C: no wrap
    return (emb - offs).astype(emb.dtype)


def normalized(emb, speakers, ref, *, others: int = DEFAULT_CLIPS, seed: int = 0) -> np.ndarray:
    """normalize(emb, offsets(...)): the embeddings as a device that knows each voice would see them."""
    return normalize(emb, offsets(emb, speakers, ref, others=others, seed=seed))


# ---- the reference a bundle carries ------------------------------------------------------------

REF_DECIMALS = 4   # the stored reference's values (int8 units) are rounded to this many decimals


def reference_record(emb: np.ndarray, voiced_mask: np.ndarray, source: str) -> dict:
    """manifest["quantization"]["voice_reference"]: the average int8 embedding of the voiced clips
    (a `_silence_` cut has no voice) that `source` names, rounded to REF_DECIMALS."""
    emb = np.asarray(emb)
    keep = np.asarray(voiced_mask, bool)
    if emb.dtype != np.int8 or emb.ndim != 2 or keep.shape != (len(emb),):
        raise EdgekwsError(f"voice reference: int8 embeddings (N, E) and N flags needed, got {emb.dtype} "
                           f"{emb.shape} and {keep.shape}")
    if not keep.any():
        raise EdgekwsError(f"voice reference: no clip with a voice in {source}")
    ref = np.round(emb[keep].astype(np.float64).mean(0), REF_DECIMALS)
    return {"values": ref.tolist(), "clips": int(keep.sum()), "source": source}


def stored_reference(bundle) -> np.ndarray | None:
    """(E,) float64: the training clips' average int8 embedding that `edgekws quantize` and `retrain`
    store in the bundle (None for a bundle quantized before they did)."""
    rec = (bundle.manifest.get("quantization") or {}).get("voice_reference")
    if rec is None:
        return None
    from edgekws.errors import BundleError

    values = rec.get("values") if isinstance(rec, dict) else None
    ref = np.asarray(values if isinstance(values, list) else [], dtype=object)
    ok = ref.ndim == 1 and len(ref) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and abs(v) < 1e6 for v in ref)
    if not ok:
        raise BundleError(f"{bundle.path}: manifest quantization.voice_reference must hold 'values', a list of "
                          "numbers (the training clips' average embedding)")
    return ref.astype(np.float64)


def int8_voice_logits(qm, features: np.ndarray, offset) -> np.ndarray:
    """int8 logits (N, K) of a QuantModel whose embedding (its last dense layer's input) moves by the
    voice `offset` (E,) int32 first: the numpy twin of ekws_model_invoke_voice."""
    from edgekws.quant.qmodel import layer_forward
    from edgekws.retrain.core import Backbone

    head = qm.layers[-1]
    if len(qm.layers) < 2 or head.op != "dense":
        raise EdgekwsError(f"voice normalization: the model's last int8 layer {head.name!r} is a {head.op}, "
                           "not a dense classifier")
    emb = Backbone.from_quantized(qm).embed(features)
    offs = np.broadcast_to(np.asarray(offset, np.int32), emb.shape)
    return layer_forward(head, np.ascontiguousarray(normalize(emb, offs)))


def embedding_size(qm) -> int:
    """Values of a QuantModel's embedding (its last layer's input)."""
    return int(np.prod(qm.layers[-1].in_shape))


# ---- a network split at its classifier ----------------------------------------------------------

class SplitNetwork:
    """An eval engine ("float" or "int8") as embedding -> classifier, the classifier a dense last
    layer: `embed(features)` its input (float, or int8 for the int8 engine), `classify(emb)` logits
    (float32, dequantized for int8)."""

    def __init__(self, engine, name: str):
        from edgekws.evaluate import FloatNetwork
        from edgekws.quant import Int8Network

        self.name = name
        self._float = self._int8 = None
        if type(engine) is FloatNetwork:
            layers = engine.model.layer_info()
            if len(layers) < 2 or layers[-1]["type"] != "Dense":
                raise EdgekwsError(f"voice normalization: the model's last layer is {layers[-1]['type']}, not Dense")
            self._float, self._before = engine, layers[-2]["name"]
        elif type(engine) is Int8Network:
            from edgekws.retrain.core import Backbone

            self._int8, self._backbone = engine, Backbone.from_quantized(engine.qm)
        else:
            raise EdgekwsError(f"voice normalization: engine {name!r} is not supported (float and int8 are)")

    def embed(self, features: np.ndarray) -> np.ndarray:
        if self._float is not None:
            return self._float.embed_features(features, layer=self._before)
        return self._backbone.embed(features)

    def classify(self, emb: np.ndarray) -> np.ndarray:
        if self._float is not None:
            return self._float.model.layers[-1].forward(np.asarray(emb, np.float32), training=False)
        from edgekws.quant.qmodel import layer_forward

        return self._int8.dequantize_logits(layer_forward(self._int8.qm.layers[-1], np.ascontiguousarray(emb)))
