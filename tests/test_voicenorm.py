"""edgekws.voicenorm: each voice's average embedding moved onto the training clips' average, in
int8 arithmetic for int8 embeddings and in float for float ones."""

from __future__ import annotations

import numpy as np
import pytest

from edgekws.errors import EdgekwsError
from edgekws.voicenorm import normalize, normalized, offset_of, offsets, reference, voiced


def _emb(rows):
    return np.array(rows, np.int8)


def test_reference_is_the_mean_of_clips_with_a_speaker():
    emb = _emb([[10, 0], [20, 4], [-100, 100]])
    np.testing.assert_array_equal(reference(emb, ["a", "b", ""]), [15.0, 2.0])
    np.testing.assert_array_equal(voiced(["a", "", None]), [True, False, False])


def test_offset_rounds_half_up_in_int32():
    ref = np.array([0.0, 0.0, 0.0, 0.0])
    clips = _emb([[1, -1, 2, 3], [2, -2, 3, 3]])        # means 1.5, -1.5, 2.5, 3
    np.testing.assert_array_equal(offset_of(clips, ref), [2, -1, 3, 3])
    assert offset_of(clips, ref).dtype == np.int32


def test_each_clip_leaves_itself_out():
    """Speaker a: three clips; each one's offset is the mean of the two others less the reference."""
    emb = _emb([[0, 6], [3, 0], [6, 3], [9, 9]])
    spk = np.array(["a", "a", "a", "b"], dtype=object)
    ref = np.array([1.0, 1.0])
    off = offsets(emb, spk, ref, others=10)
    np.testing.assert_array_equal(off[0], np.floor([(3 + 6) / 2 - 1 + 0.5, (0 + 3) / 2 - 1 + 0.5]))
    np.testing.assert_array_equal(off[1], [2, 4])       # mean of clips 0, 2: (3, 4.5) - 1 -> 2, 4 (3.5 up)
    np.testing.assert_array_equal(off[2], [1, 2])       # mean of clips 0, 1: (1.5, 3) - 1 -> 1 (0.5 up), 2
    np.testing.assert_array_equal(off[3], [0, 0])       # b's only clip: nothing heard before it
    np.testing.assert_array_equal(normalize(emb, off), emb.astype(np.int32) - off)


def test_at_most_others_clips_are_drawn_and_the_seed_fixes_them():
    rng = np.random.default_rng(3)
    emb = rng.integers(-100, 100, (12, 5)).astype(np.int8)
    spk = np.array(["a"] * 12, dtype=object)
    ref = np.zeros(5)
    off = offsets(emb, spk, ref, others=1, seed=4)
    for i in range(12):      # each offset is exactly one other clip (no rounding with one clip)
        hits = [j for j in range(12) if j != i and np.array_equal(off[i], emb[j].astype(np.int32))]
        assert hits, i
    np.testing.assert_array_equal(off, offsets(emb, spk, ref, others=1, seed=4))
    assert not np.array_equal(off, offsets(emb, spk, ref, others=1, seed=5))
    full = offsets(emb, spk, ref, others=11)
    np.testing.assert_array_equal(full, offsets(emb, spk, ref, others=100))   # all 11 others either way


def test_silence_takes_a_speakers_offset_and_saturates():
    emb = _emb([[100, -100], [120, -120], [5, -5]])
    spk = np.array(["a", "a", ""], dtype=object)
    off = offsets(emb, spk, np.array([200.0, -200.0]), others=10)
    np.testing.assert_array_equal(off, [[-80, 80], [-100, 100], [-80, 80]])   # silence: a's (first clip's)
    out = normalize(emb, off)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [[127, -128], [127, -128], [85, -85]])   # 180 / 220 clamp


def test_a_voice_moved_away_is_brought_back():
    """Two words; every other voice moves its clips by +9 or -9 along the line between the words. A
    nearest-mean rule learned from one voice misreads a word of the voices moved the other way; after
    the normalization it reads them all."""
    rng = np.random.default_rng(0)
    words = np.array([[20, 0, 0, 0], [0, 20, 0, 0]], float)
    emb, lab, spk = [], [], []
    for v in range(8):
        shift = (1 if v % 2 == 0 else -1) * np.array([9.0, -9.0, 0, 0])
        for w in range(2):
            for _ in range(3):
                emb.append(words[w] + shift + rng.normal(0, 1, 4))
                lab.append(w)
                spk.append(f"v{v}")
    emb = np.clip(np.round(emb), -128, 127).astype(np.int8)
    lab, spk = np.array(lab), np.array(spk, dtype=object)

    def accuracy(x):
        shots = spk == "v0"
        means = np.stack([x[shots & (lab == w)].astype(float).mean(0) for w in range(2)])
        pred = np.argmin(((x[~shots, None, :].astype(float) - means) ** 2).sum(-1), 1)
        return np.mean(pred == lab[~shots])

    ref = reference(emb, spk)
    np.testing.assert_allclose(ref, [10, 10, 0, 0], atol=0.5)
    assert accuracy(emb) < 0.8
    assert accuracy(normalized(emb, spk, ref, others=5)) == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: reference(np.zeros((2, 3), np.int16), ["a", "b"]), "embeddings must be int8 or float (N, E)"),
    (lambda: reference(np.zeros((2, 3), np.int8), ["a"]), "2 embeddings but 1 speaker ids"),
    (lambda: reference(np.zeros((2, 3), np.int8), ["", ""]), "no clip with a speaker id"),
    (lambda: offsets(np.zeros((2, 3), np.int8), ["a", "a"], np.zeros(3), others=0), "clips per voice must be an integer >= 1, got 0"),
    (lambda: offsets(np.zeros((2, 3), np.int8), ["a", "a"], np.zeros(4)), "reference of shape (4,), embeddings of 3"),
    (lambda: normalize(np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int32)), "embeddings (2, 3) and offsets (2, 4) differ"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(EdgekwsError, match="voice normalization") as e:
        call()
    assert message in str(e.value)


def test_float_embeddings_are_moved_without_rounding():
    emb = np.array([[0.25, 1.0], [0.75, 3.0], [9.0, 9.0]], np.float32)
    spk = np.array(["a", "a", ""], dtype=object)
    ref = reference(emb, spk)
    np.testing.assert_allclose(ref, [0.5, 2.0])
    off = offsets(emb, spk, ref)
    assert off.dtype == np.float32
    np.testing.assert_allclose(off, [[0.25, 1.0], [-0.25, -1.0], [0.25, 1.0]])
    np.testing.assert_allclose(normalize(emb, off), [[0.0, 0.0], [1.0, 4.0], [8.75, 8.0]])


# ---- the firmware's voice normalization (ekws_model_embed / ekws_voice_offset / ekws_model_invoke_voice)

@pytest.mark.parametrize("arch", ["dscnn-s", "whitened"])
def test_c_embedding_offset_and_moved_logits_equal_numpy(arch):
    """The C runtime's embedding is the numpy backbone's, its voice offset offset_of's (float32
    reference), and its logits with the offset the numpy classifier on normalize()'s embedding."""
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel, voice_offset_c
    from edgekws.quant import quantize_model
    from edgekws.quant.qmodel import layer_forward
    from edgekws.retrain.core import Backbone
    from quant_helpers import FC, features, make_model, make_whitened_model

    model = make_whitened_model(seed=2) if arch == "whitened" else make_model(arch, seed=3)
    qm = quantize_model(model, features(32, seed=4), FC.input_scale, FC.input_zero_point)
    c = CModel(model_blob(qm))
    x = features(12, seed=5)
    emb = Backbone.from_quantized(qm).embed(x)
    assert c.embedding_size == emb.shape[1]
    np.testing.assert_array_equal(c.embed_int8(x), emb)
    ref = (emb.astype(np.float64).mean(0) + np.random.default_rng(6).normal(0, 20, emb.shape[1])).astype(np.float32)
    spk = np.array(["a"] * 6 + ["b"] * 6, dtype=object)
    offs = offsets(emb, spk, ref.astype(np.float64), others=3, seed=7)
    for i in (0, 7):   # a voice's offset from some of its clips, as the device computes it
        np.testing.assert_array_equal(voice_offset_c(emb[[j for j in range(12) if spk[j] == spk[i] and j != i][:3]], ref),
                                      offset_of(emb[[j for j in range(12) if spk[j] == spk[i] and j != i][:3]],
                                                ref.astype(np.float64)))
    offs[3] += 300    # saturates every value of one example
    want = layer_forward(qm.layers[-1], normalize(emb, offs))
    np.testing.assert_array_equal(c.logits_voice_int8(x, offs), want)
    np.testing.assert_array_equal(c.logits_voice_int8(x, np.zeros_like(offs)), c.logits_int8(x))


def test_c_voice_offset_rounds_half_up_and_refuses_bad_input():
    from edgekws.export.cruntime import voice_offset_c

    e = np.array([[1, -1, 2, 3, 0], [2, -2, 3, 3, 0]], np.int8)   # means 1.5, -1.5, 2.5, 3, 0
    ref = np.array([0, 0, 0, 0.25, -0.5], np.float32)
    np.testing.assert_array_equal(voice_offset_c(e, ref), [2, -1, 3, 3, 1])
    np.testing.assert_array_equal(voice_offset_c(e, ref), offset_of(e, ref.astype(np.float64)))
    for bad in (np.float32("nan"), np.float32(2e6)):
        with pytest.raises(EdgekwsError, match="ekws_voice_offset failed: argument out of range"):
            voice_offset_c(e, np.array([0, 0, 0, 0, bad], np.float32))
    with pytest.raises(EdgekwsError, match="ekws_voice_offset failed"):
        voice_offset_c(e[:0], ref)


def test_c_voice_invoke_refuses_offsets_of_another_size():
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import quantize_model
    from quant_helpers import FC, features, make_model

    qm = quantize_model(make_model("dscnn-s", seed=3), features(8, seed=4), FC.input_scale, FC.input_zero_point)
    c = CModel(model_blob(qm))
    x = features(2, seed=5)
    with pytest.raises(EdgekwsError, match=r"C model: offsets of shape \(2, 3\), expected \(2, "):
        c.logits_voice_int8(x, np.zeros((2, 3), np.int32))
