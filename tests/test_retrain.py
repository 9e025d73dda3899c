"""Last-layer retraining, numpy side: the float32 helpers of the head, imprinting + SGD on
embeddings, the retrained bundle (labels, int8 head bit-exact with the int8 reference, head.bin,
eval/predict/C export), personal recordings whose speaker hashes to val/test, and refusals."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edgekws.bundle import Bundle  # noqa: E402
from edgekws.cli import main  # noqa: E402
from edgekws.data import which_split  # noqa: E402
from edgekws.errors import BundleError, EdgekwsError  # noqa: E402
from edgekws.quant import Int8Network, load_quantized  # noqa: E402
from edgekws.retrain import Backbone, HeadConfig, HeadTrainer, QHead, fit_head, pick_shots, retrain  # noqa: E402
from edgekws.retrain import headmath as hm  # noqa: E402
from edgekws.retrain.core import int8_logits  # noqa: E402
from quant_helpers import interrupted_when_writing, make_bundle  # noqa: E402
from retrain_helpers import quantized_bundle, tone_dataset  # noqa: E402

WORDS = ["alpha", "beta", "gamma"]
quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    base = quantized_bundle(root / "base")
    data = tone_dataset(root / "data")
    new = retrain(base, data, root / "new", words=WORDS, float_head=True, log=quiet)
    return root, base, data, new


# ---- float32 helpers ---------------------------------------------------------------------------

def test_expf_logf_sqrtf_are_accurate():
    x = -np.linspace(0, 87, 20001).astype(np.float32)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(hm.expf(x) - ref) / ref) < 4e-7
    assert hm.expf(np.float32(-88.0)) == 0 and hm.expf(np.float32(0.0)) == 1
    v = np.geomspace(1e-30, 1e30, 5001).astype(np.float32)
    assert np.max(np.abs(hm.logf(v) - np.log(v.astype(np.float64)))) < 2e-5
    assert np.max(np.abs(hm.sqrtf(v) / np.sqrt(v.astype(np.float64)) - 1)) < 3e-7
    assert hm.sqrtf(np.float32(0)) == 0 and hm.sqrtf(np.float32(-1)) == 0


def test_round_half_away_from_zero():
    v = np.array([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 2.4, 126.5, 1e9], np.float32)
    np.testing.assert_array_equal(hm.round_half_away(v), [1, -1, 2, -3, 0, 0, 2, 127, 1e9])


# ---- head training on embeddings ---------------------------------------------------------------

def clustered(n_per=8, c=4, e=24, seed=0, spread=14.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 35, (c, e))
    y = np.repeat(np.arange(c), n_per)
    q = np.clip(np.round(centers[y] + rng.normal(0, spread, (len(y), e))), -128, 127).astype(np.int8)
    return q, y


def test_imprinting_alone_classifies_clusters_and_sgd_lowers_the_loss():
    q, y = clustered()
    tr = HeadTrainer(HeadConfig(4, 24, max_examples=len(y)), 0.05, 3)
    tr.add(q, y)
    tr.imprint()
    assert np.mean(tr.logits().argmax(1) == y) == 1.0
    # the folded head acts on the plain embedding exactly like the standardized one
    w, b = tr.folded()
    np.testing.assert_allclose(hm.head_logits(w, b, tr.x_raw()), tr.logits(), rtol=1e-4, atol=1e-3)
    # imprinted rows: normalized class means, so |w_c| is the same for every class
    norms = np.linalg.norm(tr.weight, axis=1)
    np.testing.assert_allclose(norms, norms[0], rtol=1e-5)
    losses = [tr.train_epoch() for _ in range(15)]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    assert tr.weight.dtype == np.float32 and tr.bias.dtype == np.float32


def test_gradient_matches_finite_differences():
    q, y = clustered(n_per=3, c=3, e=6, seed=2)
    tr = HeadTrainer(HeadConfig(3, 6, max_examples=len(y)), 0.05, 0)
    tr.add(q, y)
    rng = np.random.default_rng(0)
    w, b = (rng.standard_normal((3, 6)) * 0.1).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    tr.set_weights(w, b)
    order = np.arange(len(y))
    tr.gradient(order)
    x = tr.x().astype(np.float64)

    def loss(w64, b64):
        z = x @ w64.T + b64
        z -= z.max(1, keepdims=True)
        return float(np.sum(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    num = np.zeros((3, 6))
    for i in range(3):
        for k in range(6):
            d = np.zeros((3, 6))
            d[i, k] = 1e-5
            num[i, k] = (loss(w + d, b) - loss(w - d, b)) / 2e-5
    np.testing.assert_allclose(tr.grad_w, num, rtol=1e-3, atol=1e-4)


def test_set_weights_after_standardize_is_a_state_error_as_in_c():
    """ekws_head_set_weights after standardize/imprint is EKWS_ERR_STATE: rows in the embedding's space
    would be read in the standardized one. numpy refuses the same; the triplet step sets its rows
    (already in the standardized space) through set_standardized_rows."""
    q, y = clustered(c=3)
    w0, b0 = np.full((3, 24), 0.1, np.float32), np.zeros(3, np.float32)
    for step in ("imprint", "standardize"):
        tr = HeadTrainer(HeadConfig(3, 24, max_examples=len(y)), 0.05, 0)
        tr.add(q, y)
        with pytest.raises(EdgekwsError, match="set_standardized_rows needs standardize/imprint first"):
            tr.set_standardized_rows(w0, b0)
        tr.set_weights(w0, b0)
        getattr(tr, step)()
        with pytest.raises(EdgekwsError, match=r"^head: set_weights must come before standardize/imprint"):
            tr.set_weights(w0, b0)
        tr.set_standardized_rows(w0 * 2, b0 + 1)
        np.testing.assert_array_equal(tr.weight, w0 * 2)


def test_classes_without_examples_keep_their_initial_rows():
    q, y = clustered(c=3)
    init = (np.full((4, 24), 0.25, np.float32), np.array([1, 2, 3, -7], np.float32))
    head = fit_head(q, y, 4, 0.05, 0, epochs=0, init=init)
    np.testing.assert_allclose(head.weight[3], init[0][3], rtol=1e-6)
    assert head.bias[3] == pytest.approx(-7, abs=1e-4)


def test_int8_head_agrees_with_the_float_head():
    q, y = clustered(n_per=10, seed=5)
    head = fit_head(q, y, 4, 0.05, 0, epochs=10, seed=3)
    from edgekws.quant.qmodel import QLayer, layer_forward

    qh = head.qhead
    layer = QLayer("h", "dense", (24,), (4,), (1, 1), (1, 1), ((0, 0), (0, 0)), None, 0.05, 0,
                   qh.output_scale, qh.output_zp, -128, 127, qh.multiplier, qh.shift, weight=qh.weight, bias=qh.bias)
    qlog = (layer_forward(layer, q).astype(np.float32) - qh.output_zp) * qh.output_scale
    flog = hm.head_logits(head.weight, head.bias, hm.dequantize(q, 0.05, 0))
    assert np.max(np.abs(qlog - flog)) < 0.05 * (np.ptp(flog) + 1)
    assert np.mean(qlog.argmax(1) == flog.argmax(1)) >= 0.95


def test_head_blob_round_trips_and_rejects_damage():
    q, y = clustered()
    qh = fit_head(q, y, 4, 0.05, 0, epochs=2).qhead
    blob = qh.blob(with_float=True)
    assert len(blob) == hm.blob_size(4, 24, True)
    back = QHead.from_blob(blob)
    np.testing.assert_array_equal(back.weight, qh.weight)
    np.testing.assert_array_equal(back.multiplier, qh.multiplier)
    np.testing.assert_array_equal(back.fweight, qh.fweight)
    bad = bytearray(blob)
    bad[70] ^= 1
    with pytest.raises(EdgekwsError, match="CRC"):
        QHead.from_blob(bytes(bad), "flash")
    with pytest.raises(EdgekwsError, match="truncated"):
        QHead.from_blob(blob[:100])
    # damage with a valid CRC: refused as ekws_head_check refuses it (Python accepted these three)
    import struct
    import zlib

    def recrc(b):
        struct.pack_into("<I", b, 12, 0)
        struct.pack_into("<I", b, 12, zlib.crc32(bytes(b)) & 0xFFFFFFFF)
        return bytes(b)

    shift_at = hm.HEADER_SIZE + ((4 * 24 + 3) & ~3) + 8 * 4
    for at, fmt, value, message in ((shift_at, "<i", 0, "bad multiplier or shift"),
                                    (28, "<i", 300, "bad quantization parameters"),
                                    (40, "<f", 0.0, "bad quantization parameters")):
        bad = bytearray(blob)
        struct.pack_into(fmt, bad, at, value)
        with pytest.raises(EdgekwsError, match=f"flash: {message}"):
            QHead.from_blob(recrc(bad), "flash")


def test_pick_shots_is_seeded_and_per_class():
    y = np.repeat(np.arange(3), [10, 2, 6])
    a = pick_shots(y, 3, seed=1)
    assert np.array_equal(a, pick_shots(y, 3, seed=1))
    assert list(np.bincount(y[a])) == [3, 2, 3]
    assert len(pick_shots(y, None)) == len(y)
    with pytest.raises(EdgekwsError, match="--shots"):
        pick_shots(y, 0)


def test_workspace_formula_matches_the_header_example():
    assert hm.workspace_size(12, 64, 100) == 16924


# ---- the retrained bundle ----------------------------------------------------------------------

def test_retrained_bundle_is_a_normal_bundle(setup):
    root, base, data, new = setup
    b = Bundle.load(new.path)
    assert b.labels == ["_silence_", "_unknown_", *WORDS]
    assert b.manifest["architecture"]["layers"][-1]["units"] == 5
    info = b.manifest["training"]["retrain"]
    assert info["train_accuracy_int8_head"] >= 0.9 and info["engine"] == "numpy"
    qm = load_quantized(b)
    base_qm = load_quantized(base)
    for a, c in zip(qm.layers[:-1], base_qm.layers[:-1]):  # the backbone is untouched
        np.testing.assert_array_equal(a.weight if a.weight is not None else 0, c.weight if c.weight is not None else 0)
    # the bundle's int8 engine == backbone embedding + retrained head (one fixed-point rule)
    from edgekws.retrain.core import dataset_examples

    feats, labels, _ = dataset_examples(data, WORDS)
    bb = Backbone.from_quantized(qm)
    qh = QHead.from_blob(b.read_bytes("head.bin"))
    np.testing.assert_array_equal(Int8Network(b).logits_int8(feats), int8_logits(bb, qh, bb.embed(feats)))
    assert np.mean(Int8Network(b).logits_int8(feats).argmax(1) == labels) >= 0.9


def test_eval_predict_and_c_export_read_the_retrained_bundle(setup, capsys):
    root, base, data, new = setup
    assert main(["eval", str(new.path), str(data), "--split", "train", "--engine", "int8",
                 "--engine", "int8-f32head"]) == 0
    out = capsys.readouterr().out
    assert "[int8]" in out and "[int8-f32head]" in out
    wav = next((data / "beta").glob("*.wav"))
    assert main(["predict", str(new.path), str(wav), "--engine", "int8"]) == 0
    assert "beta" in capsys.readouterr().out
    assert main(["export", str(new.path), "--c", str(root / "c")]) == 0
    assert (root / "c" / "model.bin").is_file()


def test_quantize_and_qat_refuse_a_retrained_bundle(setup, capsys):
    """Its head learned from the base's int8 embeddings; a new calibration would change them under it."""
    root, base, data, new = setup
    before = Bundle.load(new.path).files
    for extra in ([], ["--qat-epochs", "1"]):
        assert main(["quantize", str(new.path), "--calib", str(data), *extra]) == 2
        err = capsys.readouterr().err
        assert (f"{new.path}: has a retrained head, which learned from the base model's int8 backbone; "
                f"{'fine-tune' if extra else 'quantize'} the base model, then retrain it") in err
    assert Bundle.load(new.path).files == before


def test_personal_recordings_of_one_speaker_train_even_if_the_hash_says_test(tmp_path, setup):
    _, base, _, _ = setup
    speaker = next(s for s in (f"me{i}" for i in range(200)) if which_split(f"{s}_nohash_0.wav") == "test")
    data = tone_dataset(tmp_path / "mine", speakers=1, takes=3, unknown=())
    for f in list(data.rglob("spk00_nohash_*.wav")):
        f.rename(f.with_name(f.name.replace("spk00", speaker)))
    b = retrain(base, data, tmp_path / "out", words=WORDS, epochs=5, log=quiet)
    counts = b.manifest["training"]["retrain"]["counts"]
    assert counts["alpha"] == 3 and counts["_unknown_"] == 0
    with pytest.raises(EdgekwsError, match="no clips in split 'train'"):
        retrain(base, data, tmp_path / "out2", words=WORDS, split="train", log=quiet)


def test_more_shots_than_takes_is_said(setup, tmp_path):
    _, base, data, _ = setup
    lines = []
    retrain(base, data, tmp_path / "many", words=WORDS, shots=500, epochs=1, log=lines.append)
    note = [line for line in lines if line.startswith("note: --shots 500")]
    assert note and all(w in note[0] for w in WORDS) and note[0].endswith("all of them are used")


def test_triplet_loss_variant(setup, tmp_path):
    _, base, data, _ = setup
    b = retrain(base, data, tmp_path / "t", words=WORDS, loss="triplet", epochs=5, shots=6, log=quiet)
    assert b.manifest["training"]["retrain"]["loss"] == "triplet"
    assert b.manifest["training"]["retrain"]["train_accuracy_int8_head"] >= 0.8


def test_more_examples_than_the_head_trainer_takes_are_refused_before_the_embedding(setup, tmp_path, monkeypatch):
    """The head trainer takes at most MAX_EXAMPLES (65535); more was found after embedding every clip,
    with a message about max_examples that named no option."""
    import edgekws.retrain.core as core

    _, base, data, _ = setup
    monkeypatch.setattr(core, "MAX_EXAMPLES", 20)
    monkeypatch.setattr(core.Backbone, "embed", lambda *a, **k: pytest.fail("embedded before the check"))
    with pytest.raises(EdgekwsError, match=r"examples with 1 noisy copies each; a head learns from at most 20: take "
                                           r"fewer with --shots K or fewer --noisy-copies"):
        retrain(base, data, tmp_path / "x", words=WORDS, noisy=1, log=quiet)
    assert not (tmp_path / "x").exists()


def test_refusals(setup, tmp_path, capsys):
    _, base, data, new = setup
    plain, _ = make_bundle(tmp_path / "plain")
    with pytest.raises(BundleError, match="not quantized yet"):
        retrain(plain, data, tmp_path / "x", words=WORDS, log=quiet)
    with pytest.raises(EdgekwsError, match="--engine"):
        retrain(base, data, tmp_path / "x", words=WORDS, engine="gpu", log=quiet)
    with pytest.raises(EdgekwsError, match="--loss"):
        fit_head(*clustered(), 4, 0.05, 0, loss="hinge")
    with pytest.raises(EdgekwsError, match="must differ"):
        retrain(base, data, base.path, words=WORDS, log=quiet)
    with pytest.raises(EdgekwsError, match="no folder for command word"):
        retrain(base, data, tmp_path / "x", words=["delta"], log=quiet)
    with pytest.raises(EdgekwsError, match=r"no folder for command word\(s\) \['delta'\]"):
        retrain(base, data, tmp_path / "x", words="alpha,delta", log=quiet)  # a string is "w1,w2", not letters
    with pytest.raises(EdgekwsError, match=r"head: invalid hyper-parameters: lr must be > 0 and finite, got -1.0; "
                                           r"momentum must be in \[0, 1\), got 1.0"):
        HeadConfig(3, 6, lr=-1.0, momentum=1.0).check()
    with pytest.raises(EdgekwsError, match=r"lr must be > 0 and finite, got inf; weight_decay must be >= 0 and "
                                           r"finite, got inf; imprint_scale must be > 0 and finite, got inf"):
        HeadConfig(3, 6, lr=np.inf, weight_decay=np.inf, imprint_scale=np.inf).check()  # as the C trainer
    with pytest.raises(EdgekwsError, match=r"lr must be > 0 and finite, got 1e\+39; momentum must be in \[0, 1\), "
                                           r"got 0.99999999"):
        HeadConfig(3, 6, lr=1e39, momentum=0.99999999).check()   # inf and 1.0 in the trainers' float32
    # the output folder is judged before any embedding or epoch (a log line would show work done)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    for out, message in ((new.path, "already holds a model bundle"),
                         (tmp_path / "mine", "holds other files (notes.txt)"),
                         (tmp_path / "afile" / "sub", f"cannot create this folder ({tmp_path / 'afile'} is a file")):
        lines = []
        with pytest.raises(BundleError, match=re.escape(message)):
            retrain(base, data, out, words=WORDS, log=lines.append)
        assert lines == []
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "y"), "--shots", "0"]) == 2
    assert "--shots" in capsys.readouterr().err


def test_cli_retrain_writes_a_bundle(setup, tmp_path, capsys):
    _, base, data, _ = setup
    out = tmp_path / "cli"
    assert main(["retrain", str(base.path), str(data), "--out", str(out), "--words", ",".join(WORDS),
                 "--shots", "4", "--epochs", "3", "--seed", "2"]) == 0
    assert "retrained (numpy, ce, imprint) on 20 examples" in capsys.readouterr().out
    assert Bundle.load(out).manifest["training"]["retrain"]["shots"] == 4


def test_noisy_copies_keep_every_class_share_and_are_seeded():
    from edgekws.augment import default_noises
    from edgekws.features import compute_features
    from edgekws.retrain.core import noisy_copies

    t = np.arange(16000) / 16000
    audio = np.stack([(8000 * np.sin(2 * np.pi * f * t)).astype(np.int16) for f in (300, 700, 1100, 1500)])
    labels, silence = np.array([2, 3, 0, 4]), np.array([False, False, True, False])
    noises = default_noises(2.0)
    f1, l1 = noisy_copies(audio, labels, silence, noises, 2, (0, 10), seed=1)
    f2, _ = noisy_copies(audio, labels, silence, noises, 2, (0, 10), seed=1)
    f3, _ = noisy_copies(audio, labels, silence, noises, 2, (0, 10), seed=2)
    assert f1.shape == (8, 49, 40) and f1.dtype == np.int8 and l1.tolist() == [2, 3, 0, 4, 2, 3, 0, 4]
    assert np.array_equal(f1, f2) and not np.array_equal(f1, f3)
    words = [0, 1, 3, 4, 5, 7]
    clean = compute_features(audio[[0, 1, 3, 0, 1, 3]])
    loud = np.abs(f1[words].astype(int) - clean).mean()
    quiet_copy, _ = noisy_copies(audio, labels, silence, noises, 2, (70, 80), seed=1)
    assert np.abs(quiet_copy[words].astype(int) - clean).mean() < 0.2 * loud and loud > 5
    assert not np.array_equal(f1[:4], f1[4:])                      # each copy gets its own noise
    # _silence_ copies are fresh noise cuts, not the (tone) clip at the silence row
    assert np.abs(f1[[2, 6]].astype(int) - compute_features(audio[[2, 2]])).mean() > 5
    assert not np.array_equal(f1[2], f1[6])
    empty, el = noisy_copies(audio, labels, silence, noises, 0)
    assert empty.shape == (0, 49, 40) and el.shape == (0,)


def test_retrain_learns_from_noisy_copies_and_checks_them(setup, tmp_path, capsys):
    _, base, data, _ = setup
    b = retrain(base, data, tmp_path / "n", words=WORDS, shots=4, epochs=3, noisy=2, noisy_snr=(5, 20), log=quiet)
    info = b.manifest["training"]["retrain"]
    assert info["n_examples"] == 3 * sum(info["counts"].values())   # every example and 2 copies
    assert (info["noisy_copies"], info["noisy_snr_db"]) == (2, [5.0, 20.0])
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "c"), "--words", ",".join(WORDS),
                 "--shots", "4", "--epochs", "2", "--noisy-copies", "1", "--copy-snr", "10,30"]) == 0
    n_files = len(list((data / "_background_noise_").glob("*.wav")))
    source = f"{n_files} noise file(s) of DATA" if n_files else "white/pink/brown noise"
    assert f"+ 20 noisy copies (1 per clip, {source}, 10 to 30 dB SNR)" in capsys.readouterr().out
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "d"), "--noisy-copies", "-1"]) == 2
    assert "noisy (--noisy-copies): must be an integer in 0..32, got -1" in capsys.readouterr().err
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "d"), "--noisy-copies", "2",
                 "--copy-snr", "30,10"]) == 2
    assert "noisy_snr (--copy-snr): must be LOW,HIGH with -20 <= LOW <= HIGH <= 80 dB, got 30,10" in capsys.readouterr().err
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "d"), "--copy-snr", "loud"]) == 2
    assert "noisy_snr (--copy-snr): must be LOW,HIGH in dB, got ['loud']" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_enrolling_the_base_models_own_words_starts_from_its_head(tmp_path):
    """init "auto": the same labels as the base -> the base head is kept (standardize only) and
    trained gently; with 0 epochs the new head is the base head (re-quantized); new words imprint."""
    base = quantized_bundle(tmp_path / "base", seed=1)
    data = tone_dataset(tmp_path / "data", words=("w0", "w1", "w2"), speakers=3, takes=1, unknown=("zeta",))
    same = retrain(base, data, tmp_path / "same", epochs=0, log=quiet)
    info = same.manifest["training"]["retrain"]
    assert (info["init"], info["lr"]) == ("base", 0.01)
    w0, w = base.read_npz("weights.npz"), same.read_npz("weights.npz")
    np.testing.assert_allclose(w["classifier.weight"], w0["classifier.weight"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w["classifier.bias"], w0["classifier.bias"], rtol=1e-5, atol=1e-5)
    fresh = retrain(base, data, tmp_path / "fresh", epochs=0, init="imprint", log=quiet)
    assert fresh.manifest["training"]["retrain"]["init"] == "imprint"
    assert not np.allclose(fresh.read_npz("weights.npz")["classifier.weight"], w0["classifier.weight"], atol=1e-3)
    # the C trainer (the device) gives the same bytes in this mode too
    kw = dict(epochs=4, seed=3, log=quiet)
    a = retrain(base, data, tmp_path / "a", engine="numpy", **kw)
    b = retrain(base, data, tmp_path / "b", engine="c", **kw)
    assert a.read_bytes("head.bin") == b.read_bytes("head.bin")
    assert main(["retrain", str(base.path), str(data), "--out", str(tmp_path / "cli"), "--epochs", "2"]) == 0
    with pytest.raises(EdgekwsError, match=r"--init base: alpha, beta, gamma not among the base model's labels"):
        retrain(base, tone_dataset(tmp_path / "new"), tmp_path / "x", words=WORDS, init="base", log=quiet)
    with pytest.raises(EdgekwsError, match="--init base keeps the base head; --loss triplet"):
        retrain(base, data, tmp_path / "x", init="base", loss="triplet", log=quiet)
    with pytest.raises(EdgekwsError, match=r"init \(--init\): 'mean' is not one of auto, imprint, base"):
        retrain(base, data, tmp_path / "x", init="mean", log=quiet)


def test_enrolling_from_every_clip_uses_up_to_three_commands_worth_of_other_words(tmp_path):
    base = quantized_bundle(tmp_path / "base", seed=2)
    own = ("w0", "w1", "w2")                                       # the base model's words
    data = tone_dataset(tmp_path / "data", words=own, speakers=2, takes=2, unknown=("zeta", "eta", "theta", "iota"))
    counts = retrain(base, data, tmp_path / "all", epochs=1, log=quiet).manifest["training"]["retrain"]["counts"]
    assert counts["w0"] == 4 and counts["_unknown_"] == 12 and counts["_silence_"] == 4   # 16 available
    counts = retrain(base, data, tmp_path / "k", shots=2, epochs=1, log=quiet).manifest["training"]["retrain"]["counts"]
    assert counts["w0"] == 2 and counts["_unknown_"] == 2
    # new words (imprinted): one command's worth, as before
    new = tone_dataset(tmp_path / "new", speakers=2, takes=2, unknown=("zeta", "eta", "theta", "iota"))
    counts = retrain(base, new, tmp_path / "n", words=WORDS, epochs=1, log=quiet).manifest["training"]["retrain"]["counts"]
    assert counts["alpha"] == 4 and counts["_unknown_"] == 4


@pytest.mark.parametrize("whitened", [False, True])
def test_retrain_on_a_multi_layer_embedding_is_the_same_in_numpy_and_c(tmp_path, whitened):
    """A base whose embedding also pools earlier blocks (GlobalAvgPool taps): the C runtime computes
    the same 72-value embeddings, both engines write the same head, and the C engine of the new
    bundle gives the int8 reference's logits. Whitened: the same base with train --vocab's whitening
    layer, whose output is then the embedding."""
    from edgekws.quant import quantize_bundle
    from edgekws.quant import CNetwork
    from edgekws.retrain.core import dataset_examples
    from quant_helpers import FC, features, make_tapped_model, tapped_arch
    from quant_helpers import whitened as whitened_model

    arch, model = whitened_model(seed=1) if whitened else (tapped_arch(), make_tapped_model(seed=1))
    base = Bundle.create(tmp_path / "base", labels=["_silence_", "_unknown_", "a", "b", "c"],
                         feature_config=FC.to_dict(), architecture=arch, training={"seed": 0})
    base.write_npz("weights.npz", model.state_dict())
    quantize_bundle(base, features(64, seed=4), log=quiet)
    data = tone_dataset(tmp_path / "data")
    new = {e: retrain(base, data, tmp_path / e, words=WORDS, engine=e, log=quiet) for e in ("numpy", "c")}
    assert new["numpy"].read_bytes("head.bin") == new["c"].read_bytes("head.bin")
    feats, labels, _ = dataset_examples(data, WORDS)
    bb = Backbone.from_bundle(new["c"])
    assert bb.embed_size == 72 and [q.name for q in bb.layers][-1] == ("whiten" if whitened else "embedding")
    np.testing.assert_array_equal(bb.embed(feats, engine="c"), bb.embed(feats))
    b = Bundle.load(new["c"].path)
    np.testing.assert_array_equal(CNetwork(b).logits_int8(feats), Int8Network(b).logits_int8(feats))
    assert np.mean(Int8Network(b).logits_int8(feats).argmax(1) == labels) >= 0.9


def test_retrain_keeps_the_base_stream_timing_and_resets_its_thresholds(tmp_path):
    """A base tuned to run every 4 frames (a slower MCU) once lost that on retraining, and the
    exported firmware went back to the 2-frame default."""
    import shutil

    from edgekws.stream.detector import DEFAULT_THRESHOLD, ONE_Q15, StreamConfig

    fixtures = Path(__file__).resolve().parents[1] / "data" / "fixtures"
    base = tmp_path / "base"
    shutil.copytree(fixtures / "base-ja", base)
    b = Bundle.load(base)
    stream = {**b.manifest["stream"], "hop_every": 4, "smooth": 3, "refractory": 13}
    b.update(stream=stream)
    new = retrain(base, fixtures / "en-shots", tmp_path / "en", epochs=2, log=lambda *a: None)
    cfg = StreamConfig.from_bundle(Bundle.load(new.path))
    assert (cfg.hop_every, cfg.smooth, cfg.refractory) == (4, 3, 13)
    assert cfg.thresholds == {w: round(DEFAULT_THRESHOLD * ONE_Q15) for w in new.labels if not w.startswith("_")}
    assert "not tuned for this head" in cfg.tuning["note"]


def test_retrain_refuses_an_unknown_head_option_before_any_work(tmp_path):
    fixtures = Path(__file__).resolve().parents[1] / "data" / "fixtures"
    with pytest.raises(EdgekwsError, match=r"retrain: unknown option\(s\) \['bogus', 'seed_'\]; the head's are "
                                           r"batch, lr, momentum, weight_decay, imprint_scale"):
        retrain(fixtures / "base-ja", fixtures / "en-shots", tmp_path / "o", bogus=1, seed_=2)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["weight", "bias", "logits"])
def test_a_diverged_head_is_not_quantized(where):
    """As ekws_head_quantize: inf / NaN in the trained head (or its calibration logits) is refused,
    never rounded into int8 values that differ between machines."""
    from edgekws.retrain.headmath import quantize_head

    w, b, z = np.ones((3, 4), np.float32), np.zeros(3, np.float32), np.ones((5, 3), np.float32)
    {"weight": w, "bias": b, "logits": z}[where].flat[1] = np.nan
    with pytest.raises(EdgekwsError, match=r"head: the trained head is not finite \(training diverged"):
        quantize_head(w, b, 0.1, -128, z)


def test_a_head_whose_logits_overflow_float32_is_not_quantized():
    from edgekws.retrain.headmath import quantize_head

    z = np.array([[3e38, -3e38]], np.float32)   # finite logits whose range (hi - lo) is not
    with pytest.raises(EdgekwsError, match=r"head: the trained head is not finite \(its logits overflow float32"):
        quantize_head(np.ones((2, 4), np.float32), np.zeros(2, np.float32), 0.1, -128, z)


def test_an_interrupted_write_leaves_no_bundle_that_loads(setup, tmp_path):
    """Ctrl-C after weights.npz but before int8.npz: the half-written bundle is refused by name (it
    once loaded without its int8 model), and the same call with overwrite=True writes it again."""
    _, base, data, _ = setup
    with interrupted_when_writing("int8.npz"), pytest.raises(KeyboardInterrupt):
        retrain(base, data, tmp_path / "out", words=WORDS, epochs=2, log=quiet)
    with pytest.raises(BundleError, match=r"out: an incomplete model bundle: writing it was interrupted; write it "
                                          r"again \(the same command with --force, or overwrite=True in Python\)"):
        Bundle.load(tmp_path / "out")
    with pytest.raises(BundleError, match=r"already holds a model bundle .*or pass --force; overwrite=True in Python"):
        retrain(base, data, tmp_path / "out", words=WORDS, epochs=2, log=quiet)
    b = retrain(base, data, tmp_path / "out", words=WORDS, epochs=2, overwrite=True, log=quiet)
    assert "incomplete" not in Bundle.load(b.path).manifest and b.has("int8.npz")


@pytest.mark.parametrize("kwargs, message", [
    ({"shots": True}, r"shots \(--shots\): must be a positive integer, got True"),
    ({"shots": 0}, r"shots \(--shots\): must be a positive integer, got 0"),
    ({"seed": -1}, r"seed \(--seed\): must be an integer >= 0, got -1"),
    ({"seed": 1.5}, r"seed \(--seed\): must be an integer >= 0, got 1.5"),
    ({"lr": "0.1"}, r"retrain: head option\(s\) \{'lr': '0.1'\} must be numbers"),
    ({"batch": 2.5}, r"retrain: head option\(s\) \{'batch': 2.5\} must be numbers \(batch a whole one\)"),
    ({"words": [1, 2]}, r"words \(--words\): a list of command words \(strings\) is needed, got \[1, 2\]"),
    ({"words": []}, r"words \(--words\): a list of command words \(strings\) is needed, got \[\]"),
    ({"epochs": True}, r"epochs \(--epochs\): must be an integer >= 0, got True"),
])
def test_python_arguments_of_the_wrong_type_are_refused_by_name(setup, tmp_path, kwargs, message):
    _, base, data, _ = setup
    with pytest.raises(EdgekwsError, match=message):
        retrain(base, data, tmp_path / "out", **{"words": WORDS, "log": quiet, **kwargs})
    assert not (tmp_path / "out").exists()


def test_log_none_is_quiet_and_paths_work_for_the_lower_level_api(setup, tmp_path, capsys):
    from edgekws.retrain import Backbone

    _, base, data, _ = setup
    retrain(str(base.path), data, tmp_path / "out", words=WORDS, epochs=1, log=None)
    assert capsys.readouterr().out == ""
    assert Backbone.from_bundle(str(base.path)).embed_size == Backbone.from_bundle(base).embed_size


def test_voice_normalized_retraining_learns_the_moved_embeddings(setup, tmp_path):
    """--voice-norm N: the head is the one fit_head learns from the examples moved by their speaker's
    offset (the mean of up to N other clips of that speaker less the stored reference, the mean over
    the examples and those clips); bad settings are refused before any work."""
    from edgekws.retrain.core import _examples, speaker_pool
    from edgekws.voicenorm import clip_speakers, offset_of, stored_reference

    root, base, data, _ = setup
    new = retrain(base, data, tmp_path / "vn", words=WORDS, shots=2, voice_norm=3, seed=1, init="imprint", log=quiet)
    arrays, ds = _examples(data, WORDS, "all", 1, None)
    keep = pick_shots(arrays.labels, 2, 1)
    spk = clip_speakers(arrays.clips)
    pool = speaker_pool(spk, keep, 3, 1)
    assert not set(pool) & set(keep) and set(spk[pool]) == set(spk[keep]) - {""}
    assert max(np.bincount(np.unique(spk[pool], return_inverse=True)[1])) == 3
    bb = Backbone.from_bundle(base)
    emb, pool_emb = bb.embed(arrays.features[keep]), bb.embed(arrays.features[pool])
    ref = stored_reference(new)
    rec = new.manifest["quantization"]["voice_reference"]
    voiced = np.concatenate([spk[keep], spk[pool]]) != ""
    assert rec["source"] == "the retraining examples' speakers" and rec["clips"] == int(voiced.sum())
    np.testing.assert_allclose(ref, np.concatenate([emb, pool_emb])[voiced].astype(np.float64).mean(0), atol=5e-5)
    moved = emb.astype(np.int32)
    for i, u in enumerate(spk[keep]):
        if u:
            moved[i] -= offset_of(pool_emb[spk[pool] == u], ref)
    voiced_keep = spk[keep] != ""
    assert (~voiced_keep).any() and not np.array_equal(moved[voiced_keep], emb[voiced_keep])
    from edgekws.retrain.core import voice_normalized

    got, _, _ = voice_normalized(emb, spk[keep], pool_emb, spk[pool], 1)
    np.testing.assert_array_equal(got[voiced_keep], np.clip(moved[voiced_keep], -128, 127))
    speaker_offsets = [offset_of(pool_emb[spk[pool] == u], ref) for u in sorted(set(spk[pool]))]
    for i in np.flatnonzero(~voiced_keep):   # a `_silence_` cut: moved by one of the speakers' offsets
        assert any(np.array_equal(got[i], np.clip(emb[i].astype(np.int32) - o, -128, 127)) for o in speaker_offsets)
    head = fit_head(got, arrays.labels[keep], len(ds.labels), bb.scale, bb.zero_point, seed=1)
    np.testing.assert_array_equal(QHead.from_blob(new.read_bytes("head.bin")).weight, head.qhead.weight)
    assert new.manifest["training"]["retrain"]["voice_norm"] == 3
    for kwargs, message in ((dict(voice_norm=-1), r"voice_norm \(--voice-norm\): 0 \(off\) or a number of clips >= 1"),
                            (dict(voice_norm=True), "got True"),
                            (dict(self_train=1.5), r"self_train \(--self-train\): 0 \(off\) or a fraction in \[0.000001, 1\]"),
                            (dict(self_train=1e-7), r"self_train \(--self-train\): 0 \(off\) or a fraction in \[0.000001, 1\], "
                                                    r"got 1e-07"),
                            (dict(self_train=float("nan")), r"self_train \(--self-train\): .* got nan"),
                            (dict(self_train=float("inf")), r"self_train \(--self-train\): .* got inf"),
                            (dict(voice_norm=3, noisy=1), "--voice-norm with --noisy-copies: not supported together"),
                            (dict(self_train=0.5, noisy=1), "--self-train with --noisy-copies: not supported together")):
        with pytest.raises(EdgekwsError, match=message):
            retrain(base, data, tmp_path / "bad", words=WORDS, shots=2, log=quiet, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_self_training_keeps_the_surest_fraction_of_each_predicted_class():
    from edgekws.retrain.core import self_train_pick

    logits = np.array([[10, 0, 0], [3, 0, 0], [6, 0, 0],       # class 0: sure 0 > 2 > 1
                       [0, 9, 0], [0, 9, 0],                    # class 1: a tie, the earlier first
                       [0, 0, 1]], np.int8)                     # class 2: one clip, always kept
    for engine in ("numpy", "c"):   # the C case of firmware/tests/test_head.c
        assert self_train_pick(logits, 1.0, 0.5, engine).tolist() == [0, 2, 3, 5]
        assert self_train_pick(logits, 1.0, 0.33, engine).tolist() == [0, 3, 5]
        assert self_train_pick(logits, 1.0, 1.0, engine).tolist() == list(range(6))
        assert self_train_pick(np.zeros((0, 3), np.int8), 1.0, 0.5, engine).tolist() == []
        # counts in integers (parts per million): 0.28 x 25 is 7 clips (7.000000000000001 in doubles)
        assert self_train_pick(np.tile([[9, 0]], (25, 1)).astype(np.int8), 1.0, 0.28, engine).tolist() == list(range(7))
        assert self_train_pick(np.tile([[9, 0]], (25, 1)).astype(np.int8), 1.0, 0.2801, engine).tolist() == list(range(8))


def test_self_training_choice_is_the_same_in_c_and_numpy():
    """ekws_head_self_train_pick (float32 ekws_head_expf sums, ties to the earlier clip) equals numpy's
    choice on random logits: wide ones, and narrow ones full of ties and equal sums."""
    from edgekws.retrain.chead import self_train_pick as c_pick
    from edgekws.retrain.core import self_train_pick

    rng = np.random.default_rng(45)
    for case in range(120):
        n, c = int(rng.integers(1, 200)), int(rng.integers(2, 14))
        lo, hi = (-128, 128) if case % 2 else (-2, 3)
        q = rng.integers(lo, hi, (n, c)).astype(np.int8)
        scale, fraction = float(rng.choice([1e-3, 0.05, 0.1, 0.5, 4.0])), float(rng.choice([0.1, 0.33, 0.5, 0.7, 1.0]))
        np.testing.assert_array_equal(c_pick(q, scale, round(fraction * 1e6)), self_train_pick(q, scale, fraction),
                                      f"case {case}")
    q = rng.integers(-128, 128, (5, 3)).astype(np.int8)
    for scale, ppm in ((0.0, 500_000), (float("nan"), 500_000), (float("inf"), 500_000), (1.0, 0), (1.0, 1_000_001)):
        with pytest.raises(EdgekwsError, match="self-training's choice failed in the C head trainer"):
            c_pick(q, scale, ppm)
    with pytest.raises(EdgekwsError, match=r"int8 logits \(N, C\) needed, got shape \(5,\)"):
        c_pick(q[:, 0], 1.0, 500_000)
    with pytest.raises(EdgekwsError, match="fraction -1 ppm is not a uint32"):
        c_pick(q, 1.0, -1)
    for bad in (0, 4e-7, 1.5, float("nan"), float("inf")):      # the Python entry, either engine
        for engine in ("numpy", "c"):
            with pytest.raises(EdgekwsError, match=r"self-training: the fraction must be in \[0.000001, 1\]"):
                self_train_pick(q, 1.0, bad, engine)


def test_self_training_learns_again_from_the_first_heads_labels(setup, tmp_path):
    """--self-train F: a second head from the examples and the surest fraction F of their speakers'
    other clips, labelled by the first head (int8 logits), in either engine."""
    from edgekws.retrain.core import _examples, self_train_pick, speaker_pool
    from edgekws.voicenorm import clip_speakers

    root, base, data, _ = setup
    arrays, ds = _examples(data, WORDS, "all", 2, None)
    keep = pick_shots(arrays.labels, 1, 2)
    spk = clip_speakers(arrays.clips)
    pool = speaker_pool(spk, keep, 10, 2)
    bb = Backbone.from_bundle(base)
    emb, pool_emb = bb.embed(arrays.features[keep]), bb.embed(arrays.features[pool])
    first = fit_head(emb, arrays.labels[keep], len(ds.labels), bb.scale, bb.zero_point, seed=2)
    z = int8_logits(bb, first.qhead, pool_emb)
    pick = self_train_pick(z, first.qhead.output_scale, 0.6)
    assert 0 < len(pick) < len(pool)
    second = fit_head(np.concatenate([emb, pool_emb[pick]]), np.concatenate([arrays.labels[keep], z[pick].argmax(1)]),
                      len(ds.labels), bb.scale, bb.zero_point, seed=2)
    for engine in ("numpy", "c"):
        new = retrain(base, data, tmp_path / engine, words=WORDS, shots=1, self_train=0.6, seed=2, init="imprint",
                      engine=engine, log=quiet)
        np.testing.assert_array_equal(QHead.from_blob(new.read_bytes("head.bin")).weight, second.qhead.weight)
        info = new.manifest["training"]["retrain"]
        assert info["self_train"] == 0.6 and info["pseudo_labelled"] == len(pick)
    lines = []                                              # every clip an example: nothing to label, said
    retrain(base, data, tmp_path / "all", words=WORDS, self_train=0.6, init="imprint", log=lines.append)
    assert any("--self-train: no clip of the examples' speakers is left unlabelled" in x for x in lines)
