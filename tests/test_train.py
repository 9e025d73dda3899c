"""Training pipeline: learning on a tiny tone dataset, the feature cache, checkpoints, bit-exact
resume after an interruption (in process and by a real SIGINT / SIGKILL), bundle contents."""

import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekws.audio import write_wav
from edgekws.bundle import Bundle
from edgekws.errors import BundleError, EdgekwsError
from edgekws.featcache import FeatureCache, cut_silence, fit_length, split_arrays
from edgekws.train import CHECKPOINT, dequantize, load_checkpoint, spec_augment, train
from quant_helpers import interrupted_when_writing

TONES = {"yes": 500.0, "no": 1500.0, "cat": 3200.0}  # word folder -> tone frequency (Hz)


def make_tiny_dataset(root, speakers=12, repeats=2, seed=0, tones=TONES):
    """A Speech Commands-layout folder whose 'words' are tone bursts: yes, no (commands) and cat
    (unknown), speakers 0-7 train, 8-9 val, 10-11 test (list files), one background noise file."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000.0
    val, test = [], []
    for word, f0 in tones.items():
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            for r in range(repeats):
                f = f0 * rng.uniform(0.92, 1.08)
                start, length = rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.5)
                env = ((t >= start) & (t < start + length)).astype(float)
                x = 0.3 * env * np.sin(2 * np.pi * f * t) + 0.003 * rng.standard_normal(16000)
                name = f"spk{s:02d}_nohash_{r}.wav"
                write_wav(root / word / name, np.round(x * 32767).astype(np.int16))
                (val if s in (8, 9) else test if s in (10, 11) else []).append(f"{word}/{name}")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav",
              np.round(0.05 * rng.standard_normal(48000) * 32767).astype(np.int16))
    return root


# consistency 0: these tests check the plain training rules (the default's late second voice has its own)
TINY = dict(arch="dscnn-s", epochs=7, batch=8, lr=0.02, seed=3, words=["yes", "no"], patience=50, consistency=0.0,
            progress=False, log=lambda *a, **k: None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """One uninterrupted tiny run (the reference for the resume tests)."""
    out = tmp_path_factory.mktemp("ref") / "model"
    return train(tiny, out, **TINY)


def _weights(bundle_or_path):
    b = bundle_or_path if isinstance(bundle_or_path, Bundle) else Bundle.load(bundle_or_path)
    return b.read_npz("weights.npz")


def _same_weights(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_learns_the_tiny_task_and_writes_a_complete_bundle(reference, tiny):
    b = Bundle.load(reference.path)
    assert b.labels == ["_silence_", "_unknown_", "yes", "no"]
    tr = b.manifest["training"]
    assert tr["seed"] == 3 and len(tr["dataset_fingerprint"]) == 64 and tr["epochs_run"] == 7
    assert "numpy" in tr["environment"] and tr["config"]["arch"] == "dscnn-s"
    assert b.manifest["architecture"]["name"] == "dscnn-s" and b.manifest["architecture"]["budget"]["fits"]
    assert b.manifest["feature_config"]["num_bands"] == 40
    history = b.read_json("history.json")
    assert [h["epoch"] for h in history] == list(range(1, 8))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # 4 balanced classes, 16 validation clips: chance is 0.25. Seven epochs of strongly augmented
    # tone bursts reach anywhere from 0.375 to 1.0 by seed (seeds 9-28), so the test asks for
    # twice chance, not a quality figure
    assert max(h["val_accuracy"] for h in history) >= 0.5
    assert not (reference.path / CHECKPOINT).exists()  # removed once the bundle is complete


def test_resume_after_interrupt_in_process_is_bit_exact(reference, tiny, tmp_path):
    out = tmp_path / "model"
    _interrupted(tiny, out, after=2)
    assert (out / CHECKPOINT).exists() and not (out / "manifest.json").exists()
    meta, *_ = load_checkpoint(out / CHECKPOINT)
    assert meta["epoch"] == 2
    with pytest.raises(BundleError, match="--resume"):  # a fresh start must not clobber it
        train(tiny, out, **TINY)
    resumed = train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)
    _same_weights(_weights(resumed), _weights(reference))
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.read_json("history.json")) == strip(reference.read_json("history.json"))


def _children(pid):
    """Process ids of pid's children (Linux /proc; one file read, so the test's signal is not delayed)."""
    from pathlib import Path

    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid):
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_resume_after_a_real_signal_is_bit_exact(sig, tiny, reference, tmp_path):
    epochs = TINY["epochs"]
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "edgekws", "train", str(tiny), "--out", str(out), "--arch", "dscnn-s",
           "--epochs", str(epochs), "--batch", "8", "--lr", "0.02", "--seed", "3", "--words", "yes,no",
           "--consistency", "0"]

    def as_in_a_terminal():  # a test runner started in the background (cmd &) passes SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(cmd + ["--patience", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=as_in_a_terminal)
    deadline = time.time() + 120
    while not (out / CHECKPOINT).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    workers = _children(proc.pid)  # the batch worker process(es)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    from edgekws.train import default_workers

    assert len(workers) == default_workers()
    deadline = time.time() + 10  # killed or interrupted, the trainer leaves no worker behind
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), workers
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), stderr.decode()
    if sig == signal.SIGINT:
        assert b"--resume" in stdout + stderr
    meta, *_ = load_checkpoint(out / CHECKPOINT)
    assert 1 <= meta["epoch"] < epochs
    done = subprocess.run(cmd + ["--patience", "50", "--resume"], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    _same_weights(_weights(out), _weights(reference))


def _interrupted(tiny, out, after=1, **cfg):
    """Train with TINY (updated by cfg) into `out`, interrupted as by Ctrl-C after epoch `after`."""
    def stop(epoch, record):
        if epoch == after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny, out, on_epoch_end=stop, **{**TINY, **cfg})


def test_interrupt_messages_say_what_was_saved(tiny, tmp_path, monkeypatch):
    import edgekws.train as tr

    lines = []
    _interrupted(tiny, tmp_path / "m", after=2, log=lines.append)
    assert lines[-1].strip() == (f"interrupted: the checkpoint after epoch 2 is in {tmp_path / 'm' / CHECKPOINT}; "
                                 f"continue with: edgekws train {tiny} --out {tmp_path / 'm'} --resume")

    def ctrl_c(*a, **k):   # Ctrl-C during the first epoch's validation: no checkpoint yet
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "_loss_acc", ctrl_c)
    lines.clear()
    with pytest.raises(KeyboardInterrupt):
        train(tiny, tmp_path / "first", **{**TINY, "log": lines.append})
    assert lines[-1].strip() == "interrupted before the first epoch ended: nothing was saved; run the same command again"
    assert not (tmp_path / "first" / CHECKPOINT).exists()


def test_corrupt_checkpoint_is_refused(tiny, tmp_path):
    out = tmp_path / "model"
    _interrupted(tiny, out)
    ck = out / CHECKPOINT
    ck.write_bytes(ck.read_bytes()[:500])
    with pytest.raises(BundleError, match="corrupt or truncated checkpoint"):
        train(tiny, out, resume=True, progress=False)
    with pytest.raises(BundleError, match="no checkpoint"):
        train(tiny, tmp_path / "elsewhere", resume=True, progress=False)

    ck.write_bytes(b"")
    with pytest.raises(BundleError, match="corrupt or truncated checkpoint"):
        train(tiny, out, resume=True, progress=False)


def _rewrite_checkpoint(path, edit):
    """Rewrite a checkpoint's arrays and metadata through edit(arrays, meta)."""
    import json

    from edgekws.bundle import npz_bytes

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta = edit(arrays, meta) or meta
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.write_bytes(npz_bytes(arrays))


@pytest.mark.parametrize("edit, message", [
    (lambda a, m: [m], "not an edgekws training checkpoint"),
    (lambda a, m: m.pop("fingerprint") and None, "corrupt checkpoint \\(KeyError: 'fingerprint'\\)"),
    (lambda a, m: m.update(epoch=999), "corrupt checkpoint \\(ValueError: epoch 999 with 2 epochs of history\\)"),
    (lambda a, m: m.update(best="yes"), "corrupt checkpoint \\(TypeError: 'best' is str\\)"),
    (lambda a, m: [a.pop(k) for k in list(a) if k.startswith("best/")] and None,
     "no weights of the best epoch"),
    (lambda a, m: a.update({k: np.full_like(v, np.nan) for k, v in a.items() if k.startswith("model/")}),
     "non-finite values in"),
    (lambda a, m: a.update({k: v[:1] for k, v in a.items() if k.startswith("opt/")}),
     "corrupt checkpoint or not one of this training"),
    (lambda a, m: a.update({k: v[:1] for k, v in a.items() if k.startswith("best/")}),
     "the best epoch's weights do not fit the model"),
])
def test_damaged_checkpoint_metadata_is_refused(tiny, tmp_path, edit, message):
    out = tmp_path / "model"
    _interrupted(tiny, out, after=2, epochs=3)
    _rewrite_checkpoint(out / CHECKPOINT, edit)
    with pytest.raises(BundleError, match=message):
        train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)


def test_resume_keeps_the_best_epoch_not_the_latest(tiny, tmp_path, monkeypatch):
    """With every validation equal, epoch 1 stays the best: the bundle must hold epoch 1's weights
    whether or not the run was interrupted (a resumed run once wrote the last epoch's)."""
    import edgekws.train as tr

    monkeypatch.setattr(tr, "_loss_acc", lambda *a, **k: (1.0, 0.5))
    cfg = {**TINY, "epochs": 4}
    whole = train(tiny, tmp_path / "whole", **cfg)
    assert whole.manifest["training"]["best_epoch"] == 1
    _interrupted(tiny, tmp_path / "cut", after=2, **cfg)
    resumed = train(tiny, tmp_path / "cut", resume=True, progress=False, log=lambda *a, **k: None)
    assert resumed.manifest["training"]["best_epoch"] == 1
    _same_weights(_weights(resumed), _weights(whole))


def test_resume_refuses_a_bundle_of_other_data_beside_its_checkpoint(tiny, tmp_path):
    import json

    out = tmp_path / "model"
    _interrupted(tiny, out)
    from edgekws.errors import EdgekwsError

    with pytest.raises(EdgekwsError, match=r"--resume continues with the checkpoint's settings, and --epochs "
                                           r"\(epochs 9, the checkpoint's 7\), --words \(words \['yes'\], the "
                                           r"checkpoint's \['yes', 'no'\]\) differ; leave them out, or start over "
                                           r"with --force"):
        train(tiny, out, resume=True, epochs=9, words=["yes"], seed=3, progress=False)
    b = Bundle.create(tmp_path / "other", labels=["_silence_", "_unknown_", "go"], feature_config={},
                      architecture={"layers": []}, training={"dataset_fingerprint": "f" * 64})
    (out / "manifest.json").write_text(json.dumps(b.manifest))   # as another command once wrote there
    with pytest.raises(BundleError, match="model: holds a model bundle of other data beside the checkpoint"):
        train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)




def test_resume_with_other_data_names_the_checkpoints_folder(tiny, tmp_path):
    """Resuming with another dataset folder said "the dataset changed", which sent users looking for a
    change in a folder nobody had touched: the checkpoint names its folder now."""
    import shutil

    from pathlib import Path

    mine, other = tmp_path / "mine", tmp_path / "other"
    shutil.copytree(tiny, mine)
    shutil.copytree(tiny, other)
    out = tmp_path / "model"
    _interrupted(mine, out)
    assert load_checkpoint(out / CHECKPOINT)[0]["data"] == str(mine.resolve())
    next(iter(sorted((other / "yes").glob("*.wav")))).unlink()
    quiet = lambda *a, **k: None  # noqa: E731
    with pytest.raises(EdgekwsError, match=f"the checkpoint was written for another dataset folder, "
                                           f"{re.escape(str(mine.resolve()))}; resume needs the same data"):
        train(other, out, resume=True, progress=False, log=quiet)
    next(iter(sorted((mine / "yes").glob("*.wav")))).unlink()     # the same folder, changed: said so
    with pytest.raises(EdgekwsError, match=f"{re.escape(str(mine))}: the dataset changed since the checkpoint"):
        train(mine, out, resume=True, progress=False, log=quiet)

def test_resume_compares_options_as_the_user_gave_them():
    """The default words given explicitly are the checkpoint's None; --quick's settings count; every
    difference is named by the flag the user typed."""
    from edgekws.data import DEFAULT_WORDS
    from edgekws.train import TrainConfig, _resume_differences

    cfg = TrainConfig()
    assert _resume_differences({"words": list(DEFAULT_WORDS)}, cfg, quick=False) == ""
    assert _resume_differences({"words": None, "epochs": None}, cfg, quick=False) == ""
    said = _resume_differences({"arch": None}, cfg, quick=True)
    assert said.startswith("--quick (arch 'dscnn-s', the checkpoint's 'dscnn-l'; epochs 8, the checkpoint's 60")
    said = _resume_differences({"augment": False, "specaugment": False, "time_warp": 0.0, "freq_shift": 0.3,
                                "tilt": 0.0, "vocabulary": "/v", "retrain_tap": False}, cfg, quick=False)
    assert said == ("--no-augment (augment False, the checkpoint's True; specaugment False, the checkpoint's True; "
                    "time_warp 0.0, the checkpoint's 0.8; tilt 0.0, the checkpoint's 0.5), --freq-shift (freq_shift "
                    "0.3, the checkpoint's 0.5), "
                    "--vocab (vocabulary '/v', the checkpoint's None), --no-retrain-tap (retrain_tap False, the "
                    "checkpoint's True)")
    assert _resume_differences({"time_warp": 0.0}, cfg, quick=False) == "--time-warp (time_warp 0.0, the checkpoint's 0.8)"


def test_a_second_training_into_the_same_folder_is_refused(tiny, tmp_path):
    import os

    from edgekws.train import LOCK, exclusive

    out = tmp_path / "model"
    out.mkdir()
    with exclusive(out):  # as a first `edgekws train` holds it for its whole run
        with pytest.raises(BundleError, match=f"model: another edgekws train \\(pid {os.getpid()}\\) is "
                                              "writing here"):
            train(tiny, out, **TINY)
        # any other writer (retrain, adapt) is refused too: the training would replace its bundle
        with pytest.raises(BundleError, match=f"model: an edgekws train \\(pid {os.getpid()}\\) is writing "
                                              "here; wait for it to finish or choose another --out"):
            Bundle.create(out, labels=["_silence_", "_unknown_", "yes"], feature_config={}, architecture={})
        assert (out / LOCK).exists()
    assert list(out.iterdir()) == []  # the lock is gone with its holder
    done = train(tiny, out, **{**TINY, "epochs": 1})
    assert not (done.path / LOCK).exists() and (done.path / "manifest.json").exists()


def test_existing_bundle_is_not_overwritten_without_force(reference, tiny):
    with pytest.raises(BundleError, match="already holds a model bundle"):
        train(tiny, reference.path, **TINY)
    with pytest.raises(BundleError, match="holds a finished model bundle; nothing to resume"):
        train(tiny, reference.path, resume=True)


def test_force_over_a_bundle_removes_it_before_training_so_a_stop_resumes(reference, tiny, tmp_path):
    """--force over a bundle of other data, stopped after epoch 1: --resume (what the message says)
    once refused, "a model bundle of other data beside the checkpoint", with the old model and its
    exports still in place."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(reference.path, out)
    (out / "cortex-m4").mkdir()
    (out / "cortex-m4" / "main.c").write_text("an export of the old model")
    _interrupted(tiny, out, after=1, overwrite=True, seed=4)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT]   # the old bundle and its export are gone
    resumed = train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)
    whole = train(tiny, tmp_path / "whole", **{**TINY, "seed": 4})
    _same_weights(_weights(resumed), _weights(whole))


def test_feature_cache_is_content_addressed(tiny, tmp_path):
    from edgekws.data import load_dataset
    from edgekws.features import FeatureConfig

    ds = load_dataset(tiny, ["yes", "no"])
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    a = split_arrays(ds, "val", cache, seed=1)
    assert a.features.dtype == np.int8 and a.features.shape == (len(a.labels), 49, 40)
    assert cache.misses == len(a.labels) and cache.hits == 0
    again = FeatureCache(tmp_path / "cache", FeatureConfig())  # a new process: reads the shards
    b = split_arrays(ds, "val", again, seed=1)
    assert again.misses == 0 and again.hits == len(b.labels)
    assert np.array_equal(a.features, b.features) and np.array_equal(a.labels, b.labels)
    other = FeatureCache(tmp_path / "cache", FeatureConfig(num_bands=32))  # another config: other folder
    assert other.features(a.audio[:2]).shape == (2, 49, 32) and other.misses == 2
    shard = next((tmp_path / "cache" / FeatureConfig().config_hash()).glob("*.npz"))
    shard.write_bytes(b"garbage")  # a damaged shard is recomputed, never trusted
    fresh = FeatureCache(tmp_path / "cache", FeatureConfig())
    assert np.array_equal(fresh.features(a.audio), a.features) and fresh.misses == len(a.labels)



def test_an_unwritable_cache_is_said_once_and_features_still_come(tmp_path, capsys):
    """`--cache /proc/x` (or a full disk) was ignored without a word."""
    from edgekws.features import FeatureConfig, compute_features

    (tmp_path / "afile").write_text("x")
    cache = FeatureCache(tmp_path / "afile", FeatureConfig())      # its shard folder cannot be made
    audio = np.random.default_rng(3).integers(-3000, 3000, (3, 16000)).astype(np.int16)
    assert np.array_equal(cache.features(audio[:2]), compute_features(audio[:2], FeatureConfig()))
    cache.features(audio[2:])
    err = capsys.readouterr().err
    assert err.count("note: feature cache") == 1 and "cannot be written" in err and cache.unwritable

def test_the_cache_hits_keys_ending_in_zero_and_skips_foreign_shards(tmp_path):
    """'S32' keys lose trailing zero bytes (1 clip in 256 never hit the cache), and an empty or
    non-npz shard raised (EOFError, TypeError) instead of being recomputed."""
    from edgekws.features import FeatureConfig

    rng = np.random.default_rng(0)
    clips, zero_end = [], 0
    while zero_end < 2:        # clips whose sha256 ends in a zero byte, and some that do not
        x = rng.integers(-3000, 3000, 16000).astype(np.int16)
        if FeatureCache.key(x)[-1] == 0:
            zero_end += 1
            clips.append(x)
        elif len(clips) < 4:
            clips.append(x)
    audio = np.stack(clips)
    first = FeatureCache(tmp_path / "c", FeatureConfig())
    want = first.features(audio)
    again = FeatureCache(tmp_path / "c", FeatureConfig())
    assert np.array_equal(again.features(audio), want) and (again.hits, again.misses) == (len(audio), 0)
    shard_dir = tmp_path / "c" / FeatureConfig().config_hash()
    (shard_dir / "empty.npz").write_bytes(b"")
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    (shard_dir / "array.npz").write_bytes(buf.getvalue())   # a .npy under a shard's name
    third = FeatureCache(tmp_path / "c", FeatureConfig())
    assert np.array_equal(third.features(audio), want) and third.misses == 0


def test_a_dataset_without_noise_files_still_gets_noise_augmentation():
    """Your own recordings without _background_noise_: an empty noise list switched the augmenter's
    noise step off; it mixes in its own white, pink and brown noise, as retrain and adapt do."""
    from edgekws.train import make_augmenter

    aug = make_augmenter([])
    assert aug is not None and len(aug.noises) >= 3
    given = [np.ones(16000, np.float32) * 0.1]
    assert make_augmenter(given).noises is not None and len(make_augmenter(given).noises) == 1


def test_silence_cuts_and_length_fitting_are_seeded():
    noise = [np.linspace(-0.5, 0.5, 40000, dtype=np.float32)]
    a = cut_silence(noise, 3, 16000, np.random.default_rng(5))
    b = cut_silence(noise, 3, 16000, np.random.default_rng(5))
    assert a.shape == (3, 16000) and np.array_equal(a, b) and np.abs(a).max() <= 0.5
    quiet = cut_silence([], 2, 16000, np.random.default_rng(0))
    assert np.abs(quiet).max() < 0.01
    # a room recorded for less than a clip is repeated, not replaced by quiet Gaussian noise
    room = np.full(9000, 0.3, np.float32)
    cuts = cut_silence([room], 20, 16000, np.random.default_rng(1))
    assert np.abs(cuts).max() > 0.1 and np.allclose(cuts / cuts[:, :1].clip(1e-9), 1.0)
    x = np.arange(10, dtype=np.int16)
    assert fit_length(x, 4).tolist() == [3, 4, 5, 6] and fit_length(x, 12).tolist()[-2:] == [0, 0]


def test_dequantize_and_spec_augment():
    from edgekws.features import FeatureConfig

    fc = FeatureConfig()
    q = np.array([[[-128, 127]]], np.int8)
    x = dequantize(q, fc)
    assert x.dtype == np.float32 and x[0, 0, 0] == 0 and abs(x[0, 0, 1] - (fc.db_max - fc.db_min)) < 1e-4
    feats = np.ones((8, 49, 40), np.float32)
    m1 = spec_augment(feats.copy(), np.random.default_rng(1))
    m2 = spec_augment(feats.copy(), np.random.default_rng(1))
    assert np.array_equal(m1, m2) and (m1 == 0).any() and (m1 == 1).mean() > 0.6


def test_time_warp_is_a_seeded_monotone_piecewise_linear_tempo_map():
    from edgekws.train import time_warp

    t, parts, stretch = 49, 4, 2.0
    ramp = np.tile(np.arange(t, dtype=np.float32)[None, :, None], (16, 1, 3))   # x[t] = t: out = source position
    w = time_warp(ramp.copy(), np.random.default_rng(7), 1.0, stretch, parts)
    assert np.array_equal(w, time_warp(ramp.copy(), np.random.default_rng(7), 1.0, stretch, parts))
    assert not np.array_equal(w, time_warp(ramp.copy(), np.random.default_rng(8), 1.0, stretch, parts))
    assert np.allclose(w[:, 0], 0) and np.allclose(w[:, -1], t - 1, atol=1e-4)   # spans the whole window
    assert np.all(np.diff(w[:, :, 0], axis=1) > 0) and np.array_equal(w[..., 0], w[..., 2])
    slope = np.diff(w[:, :, 0], axis=1)       # input frames per output frame: constant within a part
    part = np.minimum((np.arange(t - 1) * parts) // (t - 1), parts - 1)
    for j in range(parts):
        s = slope[:, part == j]
        assert np.allclose(s, s[:, :1], atol=1e-4)
    rates = np.stack([slope[:, part == j][:, 0] for j in range(parts)], 1)
    assert (rates.max(1) / rates.min(1) <= stretch ** 2 + 1e-4).all() and (rates.max(1) / rates.min(1) > 1.05).any()
    assert abs(rates.mean() - 1) < 0.01            # the parts share the window: mean rate 1
    x = np.random.default_rng(0).normal(size=(5, t, 40)).astype(np.float32)
    assert np.allclose(time_warp(x.copy(), np.random.default_rng(1), 1.0, 1.0), x, atol=1e-5)   # no stretch
    assert np.array_equal(time_warp(x.copy(), np.random.default_rng(1), 0.0), x)               # nobody picked
    half = time_warp(x.copy(), np.random.default_rng(3), 0.5)
    changed = ~np.all(np.isclose(half, x), axis=(1, 2))
    assert 0 < changed.sum() < 5


def test_freq_shift_moves_every_band_of_a_picked_example_by_one_seeded_amount():
    from edgekws.train import FREQ_SHIFT_BANDS, freq_shift_bands

    n, t, f = 64, 5, 40
    ramp = np.tile(np.arange(f, dtype=np.float32)[None, None, :], (n, t, 1))   # x[b] = b: out = source band
    out = freq_shift_bands(ramp.copy(), np.random.default_rng(7), 1.0)
    assert np.array_equal(out, freq_shift_bands(ramp.copy(), np.random.default_rng(7), 1.0))
    assert not np.array_equal(out, freq_shift_bands(ramp.copy(), np.random.default_rng(8), 1.0))
    assert (out == out[:, :1]).all()                                  # the same shift in every frame
    s = out[:, 0, f // 2] - f // 2                                     # each example's shift, read mid-axis
    assert np.abs(s).max() <= FREQ_SHIFT_BANDS + 1e-5 and (s > 1).any() and (s < -1).any()
    inside = (np.arange(f)[None] + s[:, None] >= 0) & (np.arange(f)[None] + s[:, None] <= f - 1)
    expect = np.clip(np.arange(f)[None] + s[:, None], 0, f - 1)        # linear: a ramp stays a ramp,
    assert np.allclose(out[:, 0], expect, atol=1e-4) and inside.mean() > 0.8   # clamped to the edge bands
    x = np.random.default_rng(0).normal(size=(6, t, f)).astype(np.float32)
    assert np.array_equal(freq_shift_bands(x.copy(), np.random.default_rng(1), 0.0), x)             # nobody picked
    assert np.allclose(freq_shift_bands(x.copy(), np.random.default_rng(1), 1.0, 0.0), x, atol=1e-6)  # no shift
    up = freq_shift_bands(x.copy(), _FixedShift(2.0), 1.0, 3.0)      # an integer shift: band b reads b + 2
    assert np.allclose(up[..., :-2], x[..., 2:], atol=1e-6) and np.allclose(up[..., -2:], x[..., -1:].repeat(2, -1), atol=1e-6)
    down = freq_shift_bands(x.copy(), _FixedShift(-0.5), 1.0, 3.0)   # half a band: the mean of two neighbours
    assert np.allclose(down[..., 1:], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-6) and np.array_equal(down[..., 0], x[..., 0])
    half = freq_shift_bands(x.copy(), np.random.default_rng(3), 0.5)
    changed = ~np.all(np.isclose(half, x), axis=(1, 2))
    assert 0 < changed.sum() < 6


class _FixedShift:
    """A generator stand-in: every example picked, every draw `s` (bands of a shift, dB of a tilt)."""

    def __init__(self, s):
        self.s = s

    def random(self, n):
        return np.zeros(n)

    def uniform(self, lo, hi, n):
        return np.full(n, self.s)


def test_spectral_tilt_adds_one_seeded_line_across_the_bands_of_a_picked_example():
    from edgekws.train import SPECTRAL_TILT_DB, spectral_tilt

    n, t, f = 64, 5, 40
    x = np.random.default_rng(0).uniform(20, 80, (n, t, f)).astype(np.float32)
    out = spectral_tilt(x.copy(), np.random.default_rng(7), 1.0, 102.0)
    assert np.array_equal(out, spectral_tilt(x.copy(), np.random.default_rng(7), 1.0, 102.0))
    assert not np.array_equal(out, spectral_tilt(x.copy(), np.random.default_rng(8), 1.0, 102.0))
    d = out - x
    assert np.allclose(d, d[:, :1], atol=1e-4)                           # the same tilt in every frame
    s = d[:, 0, -1] - d[:, 0, 0]                                         # each example's top - bottom, dB
    assert np.allclose(d[:, 0], s[:, None] * (np.arange(f) / (f - 1) - 0.5), atol=1e-4)   # a straight line
    assert np.abs(s).max() <= SPECTRAL_TILT_DB + 1e-4 and (s > 4).any() and (s < -4).any()
    assert np.array_equal(spectral_tilt(x.copy(), np.random.default_rng(1), 0.0, 102.0), x)   # nobody picked
    bright = spectral_tilt(x.copy(), _FixedShift(12.0), 1.0, 102.0)     # +6 dB at the top band, -6 at the bottom
    assert np.allclose(bright[..., -1] - x[..., -1], 6.0, atol=1e-5) and np.allclose(bright[..., 0] - x[..., 0], -6.0, atol=1e-5)
    edges = np.zeros((1, 1, f), np.float32)                             # clipped to the features' range
    edges[..., f // 2:] = 100.0
    clipped = spectral_tilt(edges, _FixedShift(12.0), 1.0, 102.0)
    assert clipped.min() == 0.0 and clipped.max() == 102.0
    half = spectral_tilt(x.copy(), np.random.default_rng(3), 0.5, 102.0)
    changed = ~np.all(np.isclose(half, x), axis=(1, 2))
    assert 0.3 * n < changed.sum() < 0.7 * n


@pytest.mark.parametrize("name", ["freq_shift", "tilt"])
def test_band_shift_and_tilt_settings_are_checked_and_reach_train(monkeypatch, tmp_path, name):
    import edgekws.train as tr
    from edgekws.cli import main
    from edgekws.train import TrainConfig

    flag = "--" + name.replace("_", "-")
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(tr.EdgekwsError, match=rf"^{flag}: must be a fraction in \[0, 1\], got "):
            TrainConfig(**{name: bad}).check()
    assert getattr(TrainConfig(), name) == 0.5 and getattr(TrainConfig.from_dict({"epochs": 3}), name) == 0.0   # older configs
    seen = {}
    monkeypatch.setattr(tr, "train", lambda data, out, **kw: seen.update(kw))
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", flag, "0.3"]) == 0
    assert seen[name] == 0.3
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--no-augment"]) == 0
    assert seen[name] == 0.0


def test_time_warp_setting_is_checked_and_reaches_train(monkeypatch, tmp_path, capsys):
    import edgekws.train as tr
    from edgekws.cli import main
    from edgekws.train import TrainConfig

    with pytest.raises(tr.EdgekwsError, match=r"^--time-warp: must be a fraction in \[0, 1\], got 1.5"):
        TrainConfig(time_warp=1.5).check()
    assert TrainConfig().time_warp == 0.8 and TrainConfig.from_dict({"epochs": 3, "time_warp": 0.5}).time_warp == 0.5
    assert TrainConfig.from_dict({"epochs": 3}).time_warp == 0.0          # configs older than the option
    seen = {}
    monkeypatch.setattr(tr, "train", lambda data, out, **kw: seen.update(kw))
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--time-warp", "0.3"]) == 0
    assert seen["time_warp"] == 0.3
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--no-augment"]) == 0
    assert seen["time_warp"] == 0.0 and seen["augment"] is False and seen["specaugment"] is False


def test_cli_budget_lists_every_architecture(capsys):
    from edgekws.cli import main

    assert main(["train", "--budget"]) == 0
    text = capsys.readouterr().out
    for name in ("dscnn", "dscnn-w", "dscnn-l", "dscnn-s", "cnn", "dnn", "gru"):
        assert f"\n{name}:" in text
    assert "OVER BUDGET" not in text


def test_each_epoch_draws_a_fresh_balanced_unknown_subset():
    from edgekws.train import EpochOrder

    labels = np.array([0] * 5 + [1] * 40 + [2] * 5 + [3] * 5)  # silence, unknown, two commands
    order = EpochOrder(labels, unknown_label=1, n_words=2, unknown_ratio=1.0)
    assert order.size == 5 + 5 + 5 + 5
    rng = np.random.default_rng(0)
    a, b = order.draw(rng), order.draw(rng)
    for idx in (a, b):
        assert len(idx) == len(set(idx)) == order.size
        assert np.bincount(labels[idx], minlength=4).tolist() == [5, 5, 5, 5]
    assert set(a[labels[a] == 1]) != set(b[labels[b] == 1])
    again = np.random.default_rng(0)
    assert np.array_equal(order.draw(again), a)


def test_augment_config_is_used_and_recorded(tiny, tmp_path, monkeypatch):
    cfg = {"shift_prob": 0.0, "formant_prob": 0.0, "speed_prob": 0.0, "reverb_prob": 0.0}
    b = train(tiny, tmp_path / "m", **{**TINY, "epochs": 1}, augment_config=cfg)
    recorded = b.manifest["training"]["augment_config"]
    assert all(recorded[k] == v for k, v in cfg.items())
    default = train(tiny, tmp_path / "d", **{**TINY, "epochs": 1})
    assert default.manifest["training"]["augment_config"]["speed_prob"] > 0
    warped = train(tiny, tmp_path / "w", **{**TINY, "epochs": 1}, time_warp=1.0)
    assert warped.manifest["training"]["config"]["time_warp"] == 1.0
    w, d = warped.read_npz("weights.npz"), default.read_npz("weights.npz")
    assert any(not np.array_equal(w[k], d[k]) for k in d)   # the warp reaches the batches
    shifted = train(tiny, tmp_path / "s", **{**TINY, "epochs": 1}, freq_shift=1.0)
    assert shifted.manifest["training"]["config"]["freq_shift"] == 1.0
    s = shifted.read_npz("weights.npz")
    assert any(not np.array_equal(s[k], d[k]) for k in d)   # the band shift reaches the batches
    import edgekws.train as tr

    calls, real = [], tr.spectral_tilt   # the training batches are tilted, in the features' dB range
    monkeypatch.setattr(tr, "spectral_tilt", lambda x, rng, *a: calls.append(a) or real(x, rng, *a))
    tilted = train(tiny, tmp_path / "t", **{**TINY, "epochs": 1}, tilt=1.0, workers=0)
    assert tilted.manifest["training"]["config"]["tilt"] == 1.0
    assert len(calls) >= 2 and all(c == (1.0, 102.0, tr.SPECTRAL_TILT_DB) for c in calls)


def test_cli_unknown_ratio_and_hard_negatives_reach_train_and_are_checked(monkeypatch, tmp_path, capsys):
    import edgekws.train as tr
    from edgekws.cli import main

    seen = {}
    monkeypatch.setattr(tr, "train", lambda data, out, **kw: seen.update(kw))
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--unknown-ratio", "2.5"]) == 0
    assert seen["unknown_ratio"] == 2.5
    seen.clear()
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m"]) == 0
    assert "unknown_ratio" not in seen  # the TrainConfig default applies
    assert main(["train", str(tmp_path), "--out", "m", "--hard-negatives", "0"]) == 0
    assert seen["hard_negatives"] == 0.0
    monkeypatch.undo()   # bad values: the real train refuses them (TrainConfig.check) before reading DATA
    assert main(["train", str(tmp_path), "--out", "m", "--unknown-ratio", "-1"]) == 2
    assert "--unknown-ratio: must be a number in (0, 1000], got -1.0" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", "m", "--hard-negatives", "nan"]) == 2
    assert "--hard-negatives: must be a number in [0, 1000], got nan" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", "m", "--unknown-ratio", "inf"]) == 2
    assert "--unknown-ratio: must be a number in (0, 1000], got inf" in capsys.readouterr().err
    from edgekws.train import TrainConfig

    with pytest.raises(tr.EdgekwsError, match=r"^--hard-negatives: must be a number in \[0, 1000\], got -1"):
        TrainConfig(hard_negatives=-1).check()


def test_hard_negatives_favour_unknown_words_that_sound_like_commands():
    from edgekws.train import EpochOrder, hard_negative_weights

    class Stub:  # logits: clips of "book" look like the command at index 2, "desk" like _unknown_
        input_shape, output_shape = (1,), (None, 4)

        def forward(self, x, training):
            assert not training
            out = np.zeros((len(x), 4), np.float32)
            out[np.arange(len(x)), np.where(x[:, 0] > 0, 2, 1)] = 5.0
            return out

    words = ["book", "desk", "book", "desk", "desk"]
    x = np.array([[1.0], [0.0], [1.0], [0.0], [0.0]], np.float32)
    w = hard_negative_weights(Stub(), x, words, strength=10.0)
    p_cmd = np.exp(5.0) / (np.exp(5.0) + 3)   # the command probability of a "book" clip
    assert np.allclose(w, [1 + 10 * p_cmd, 1 + 10 / (np.exp(5.0) + 3)] * 2 + [1 + 10 / (np.exp(5.0) + 3)])
    labels = np.array([0] * 2 + [1] * 5 + [2] * 2 + [3] * 2)   # silence, unknown (the 5 above), commands
    order = EpochOrder(labels, unknown_label=1, n_words=2, unknown_ratio=2.0)
    draws = np.concatenate([order.draw(np.random.default_rng(s), w) for s in range(200)])
    unk = np.bincount(draws[labels[draws] == 1] - 2, minlength=5)
    assert unk[[0, 2]].sum() > 3 * unk[[1, 3, 4]].sum()          # "book" drawn far more often
    assert np.array_equal(order.draw(np.random.default_rng(7), w), order.draw(np.random.default_rng(7), w))


def test_hard_negatives_score_a_sample_of_each_word_and_weigh_all_its_clips():
    from edgekws.train import hard_negative_sample, hard_negative_weights

    words = np.array(["book"] * 7 + ["desk"] * 2 + ["cat"] * 5)
    pick = hard_negative_sample(words, 3, np.random.default_rng(0))
    assert np.all(np.diff(pick) > 0)
    assert {w: int(np.sum(words[pick] == w)) for w in ("book", "desk", "cat")} == {"book": 3, "desk": 2, "cat": 3}
    assert np.array_equal(pick, hard_negative_sample(words, 3, np.random.default_rng(0)))
    assert np.array_equal(hard_negative_sample(words, 99, np.random.default_rng(1)), np.arange(len(words)))

    class Stub:  # the first feature is the logit of the command at index 2
        input_shape, output_shape = (1,), (None, 3)

        def forward(self, x, training):
            return np.concatenate([np.zeros((len(x), 2), np.float32), x[:, :1]], axis=1)

    logit = np.random.default_rng(3).normal(0, 2, (len(words), 1)).astype(np.float32)
    conf = np.exp(logit[:, 0]) / (np.exp(logit[:, 0]) + 2)
    w = hard_negative_weights(Stub(), logit[pick], words, 2.0, scored=pick)
    for name in ("book", "desk", "cat"):   # every clip of a word: 1 + 2 x the mean over its scored clips
        mine = words == name
        assert np.allclose(w[mine], 1 + 2 * conf[pick][words[pick] == name].mean())
    assert np.allclose(hard_negative_weights(Stub(), logit, words, 2.0),
                       hard_negative_weights(Stub(), logit, words, 2.0, scored=np.arange(len(words))))


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_workers_change_the_speed_not_the_weights(workers, reference, tiny, tmp_path):
    b = train(tiny, tmp_path / "m", **TINY, workers=workers)  # reference: default_workers()
    _same_weights(_weights(b), _weights(reference))


def test_cli_workers_reach_train_and_are_checked(tiny, tmp_path, capsys):
    from edgekws.cli import main

    assert main(["train", str(tiny), "--out", str(tmp_path / "m"), "--workers", "-1"]) == 2
    assert "--workers: must be an integer in 0..64, got -1" in capsys.readouterr().err
    assert main(["train", str(tiny), "--out", str(tmp_path / "m"), "--workers", str(10 ** 23)]) == 2  # a traceback
    assert f"--workers: must be an integer in 0..64, got {10 ** 23}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_prior_correction_lowers_the_unknown_bias_by_the_log_of_its_sampling_ratio(tiny, tmp_path):
    """_unknown_ drawn r times as often as a command -> its bias -log(r) in the finished model, and
    nothing else changes. Tiny set: 32 command clips of 2 words, 16 'cat' clips; unknown_ratio 0.5
    draws 8 per epoch = half a command's 16, so the bias rises by log 2."""
    import math

    from edgekws.train import TrainConfig

    opts = {**TINY, "epochs": 2, "unknown_ratio": 0.5}
    on = train(tiny, tmp_path / "on", **opts)
    off = train(tiny, tmp_path / "off", **opts, prior_correction=False)
    a, b = _weights(on), _weights(off)
    name = on.manifest["architecture"]["layers"][-1]["name"]
    for k in a:
        if k != f"{name}.bias":
            assert np.array_equal(a[k], b[k]), k
    unknown = on.labels.index("_unknown_")
    diff = a[f"{name}.bias"] - b[f"{name}.bias"]
    assert diff[unknown] == pytest.approx(math.log(2), abs=1e-6) and not np.delete(diff, unknown).any()
    assert on.manifest["training"]["prior_correction"] == {"_unknown_": round(math.log(2), 6)}
    assert off.manifest["training"]["prior_correction"] == {}
    assert TrainConfig.from_dict({"epochs": 3}).prior_correction is False  # older checkpoints: as trained


def test_default_model_is_written_with_its_retrain_tap(tiny, tmp_path):
    """dscnn trains on block 4's average; the bundle's pool also averages block 3 (zero classifier
    weights for it), and its int8 model runs the same in numpy and C."""
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import int8_forward, quantize_bundle
    from edgekws.retrain.core import dataset_examples

    b = train(tiny, tmp_path / "m", **{**TINY, "arch": "dscnn", "epochs": 1})
    arch = b.manifest["architecture"]
    assert next(c for c in arch["layers"] if c["type"] == "GlobalAvgPool")["taps"] == ["relu3pw"]
    w = _weights(b)["classifier.weight"]
    assert w.shape == (4, 128) and not w[:, 64:].any() and w[:, :64].any()
    feats, _, _ = dataset_examples(tiny, ["yes", "no"])
    qm = quantize_bundle(Bundle.load(b.path), feats, log=lambda *a: None)
    assert [q.op for q in qm.layers].count("tappool") == 1 and qm.layers[-2].out_shape == (128,)
    np.testing.assert_array_equal(CModel(model_blob(qm)).logits_int8(feats), int8_forward(qm, feats))
    # --no-retrain-tap: the plain 64-value embedding, the same weights otherwise
    plain = train(tiny, tmp_path / "p", **{**TINY, "arch": "dscnn", "epochs": 1, "retrain_tap": False})
    assert "taps" not in next(c for c in plain.manifest["architecture"]["layers"] if c["type"] == "GlobalAvgPool")
    wp = _weights(plain)
    np.testing.assert_array_equal(wp["classifier.weight"], w[:, :64])
    assert plain.manifest["training"]["config"]["retrain_tap"] is False


def test_cli_no_retrain_tap_reaches_train(monkeypatch, tmp_path):
    import edgekws.train as tr
    from edgekws.cli import main
    from edgekws.train import TrainConfig

    assert TrainConfig().retrain_tap is True
    assert TrainConfig.from_dict({"epochs": 3}).retrain_tap is False   # checkpoints older than the option
    seen = {}
    monkeypatch.setattr(tr, "train", lambda data, out, **kw: seen.update(kw))
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m"]) == 0
    assert "retrain_tap" not in seen
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--no-retrain-tap"]) == 0
    assert seen["retrain_tap"] is False


def test_ctrl_c_is_taken_at_a_step_boundary():
    """While training, SIGINT only marks the interrupt; check() raises it where the loop can stop
    cleanly (a KeyboardInterrupt inside a wait on the batch worker could hang its shutdown)."""
    import os
    import signal

    from edgekws.train import DeferredInterrupt

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        d = DeferredInterrupt()
        os.kill(os.getpid(), signal.SIGINT)   # delivered here, between bytecodes: no exception
        assert d.pending
        with pytest.raises(KeyboardInterrupt):
            d.check()
        d.check()                              # taken once
        d.restore()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        deaf = DeferredInterrupt()             # a process started with Ctrl-C ignored stays deaf
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        deaf.restore()
    finally:
        signal.signal(signal.SIGINT, before)


VOCAB_TONES = {"low": 300.0, "mid": 2200.0, "high": 4500.0}  # a "vocabulary" of three more tone words


def test_vocabulary_words_train_as_classes_that_the_bundle_drops(tiny, reference, tmp_path):
    """--vocab DIR: DIR's three tone 'words' train as classes 4-6 beside the 4 labels; the bundle keeps
    the 4 labels and the first 4 classifier rows (--no-whiten), and the features differ from a run
    without them. By default a whitening layer fitted to the vocabulary's clips comes before the
    classifier: the same logits as the model without it."""
    from edgekws.evaluate import FloatNetwork
    from edgekws.models import layers_from_architecture
    from edgekws.nn import Sequential
    from edgekws.train import load_checkpoint

    vocab = make_tiny_dataset(tmp_path / "vocab", speakers=10, repeats=1, seed=5, tones=VOCAB_TONES)
    seen = {}

    def grab(epoch, record):
        seen["ckpt"] = load_checkpoint(tmp_path / "m" / CHECKPOINT)

    b = train(tiny, tmp_path / "m", **TINY, vocabulary=str(vocab), whiten=False, on_epoch_end=grab)
    assert b.labels == ["_silence_", "_unknown_", "yes", "no"]
    meta, state, best, _ = seen["ckpt"]
    name = b.manifest["architecture"]["layers"][-1]["name"]
    assert state[f"{name}.weight"].shape[0] == 7 and b.manifest["architecture"]["layers"][-1]["units"] == 4
    w, w_ref = _weights(b), _weights(reference)
    final = best or state
    np.testing.assert_array_equal(w[f"{name}.weight"], final[f"{name}.weight"][:4])
    assert set(w) == set(w_ref) and any(not np.array_equal(w[k], w_ref[k]) for k in w if not k.startswith(name))
    tr = b.manifest["training"]
    assert tr["vocabulary"]["words"] == ["high", "low", "mid"] and tr["config"]["vocabulary"] == str(vocab)
    assert tr["dataset_fingerprint"] != reference.manifest["training"]["dataset_fingerprint"]
    assert "whitening" not in tr and not tr["config"]["whiten"]
    # its own 4 labels learned: twice chance, as for the reference run (seven epochs of the tiny task
    # reach 0.375-1.0 by seed; this run reached 0.81 with hard negatives on, 0.56 without: session 52)
    assert max(h["val_accuracy"] for h in b.read_json("history.json")) >= 0.5

    white = train(tiny, tmp_path / "w", **TINY, vocabulary=str(vocab))
    arch = white.manifest["architecture"]
    assert [c["name"] for c in arch["layers"]][-2:] == ["whiten", name] and arch["embedding"] == "whiten"
    ww = _weights(white)
    assert set(ww) == set(w) | {"whiten.weight", "whiten.bias"}
    assert all(np.array_equal(ww[k], w[k]) for k in w if not k.startswith(name))   # same training
    info = white.manifest["training"]["whitening"]
    n_vocab = sum(len(list((vocab / t).glob("*.wav"))) for t in VOCAB_TONES)
    assert info["words"] == 3 and 0 < info["clips"] < n_vocab and info["shrink"] == 0.1
    plain = Sequential(layers_from_architecture(b.manifest["architecture"]), b.manifest["architecture"]["input_shape"])
    plain.load_state_dict(w)
    net = FloatNetwork(white)
    feats = np.random.default_rng(2).integers(-128, 128, (16, 49, 40)).astype(np.int8)
    ref = plain.forward(net._input(feats))
    np.testing.assert_allclose(net.logits_features(feats), ref, atol=1e-4 * np.abs(ref).max())
    emb = net.embed_features(feats)
    np.testing.assert_allclose(emb, plain.forward(net._input(feats), until="embedding") @ ww["whiten.weight"].T
                               + ww["whiten.bias"], rtol=1e-4, atol=1e-4)
    assert white.manifest["architecture"]["budget"]["weight_bytes"] == \
        b.manifest["architecture"]["budget"]["weight_bytes"] + emb.shape[1] * (emb.shape[1] + 4)


def test_vocabulary_run_resumes_bit_exact(tiny, tmp_path):
    vocab = make_tiny_dataset(tmp_path / "vocab", speakers=10, repeats=1, seed=5, tones=VOCAB_TONES)
    opts = {**TINY, "epochs": 3, "vocabulary": str(vocab)}
    whole = train(tiny, tmp_path / "a", **opts)
    _interrupted(tiny, tmp_path / "b", after=1, **opts)
    resumed = train(tiny, tmp_path / "b", resume=True, progress=False, log=lambda *a, **k: None)
    _same_weights(_weights(whole), _weights(resumed))


def test_bad_vocabulary_folders_are_refused(tiny, tmp_path):
    from edgekws.errors import EdgekwsError

    with pytest.raises(EdgekwsError, match=r"--vocab .*nowhere: not a folder \(make one with: edgekws synth"):
        train(tiny, tmp_path / "m", **TINY, vocabulary=str(tmp_path / "nowhere"))
    one = make_tiny_dataset(tmp_path / "one", speakers=2, repeats=1, tones={"low": 300.0})
    with pytest.raises(EdgekwsError, match="needs at least 2 word folders of .wav clips, found 1"):
        train(tiny, tmp_path / "m", **TINY, vocabulary=str(one))
    thin = make_tiny_dataset(tmp_path / "thin", speakers=1, repeats=1, tones=VOCAB_TONES)   # one clip a word
    with pytest.raises(EdgekwsError, match=r"--vocab .*thin: no word has two clips in its training split, so the "
                                           r"whitening layer cannot .*; add speakers or use --no-whiten"):
        train(tiny, tmp_path / "m", **TINY, vocabulary=str(thin))
    for same in (str(tiny), f"{tiny}/yes"):   # the commands would train under two labels
        with pytest.raises(EdgekwsError, match=f"--vocab {re.escape(str(same))}: is the dataset .* or inside it "
                                               r"\(or holds it\)"):
            train(tiny, tmp_path / "m", **TINY, vocabulary=str(same))
    assert not (tmp_path / "m").exists()


def test_several_vocabulary_folders_train_as_one_folder_of_all_their_words(tiny, tmp_path):
    """--vocab A,B (say `synth --vocab` and `synth --vocab broad`): the words of both folders train as
    one folder holding them all would (the same weights, bit for bit, whitening included); a word in
    two folders, or an empty name in the list, is refused before any training."""
    from edgekws.errors import EdgekwsError

    vocab = make_tiny_dataset(tmp_path / "vocab", speakers=10, repeats=1, seed=5, tones=VOCAB_TONES)
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(vocab, a)
    (b / "low").parent.mkdir()
    shutil.move(str(a / "low"), str(b / "low"))    # b: low; a: high, mid
    for lst in ("validation_list.txt", "testing_list.txt"):   # the same splits (synth's folders: the hash rule)
        shutil.copy(a / lst, b / lst)
    one = train(tiny, tmp_path / "m1", **TINY, vocabulary=str(vocab))
    two = train(tiny, tmp_path / "m2", **TINY, vocabulary=f"{b},{a}")
    _same_weights(_weights(one), _weights(two))
    t1, t2 = one.manifest["training"], two.manifest["training"]
    assert t2["vocabulary"]["words"] == ["high", "low", "mid"] and t2["config"]["vocabulary"] == f"{b},{a}"
    assert t2["whitening"] == t1["whitening"]
    assert t2["dataset_fingerprint"] != t1["dataset_fingerprint"]   # other folders: another record

    shutil.copytree(b / "low", a / "low")
    with pytest.raises(EdgekwsError, match=f"--vocab: both {re.escape(str(a))} and {re.escape(str(b))} hold a word "
                                           "folder 'low'; a word trains as one class"):
        train(tiny, tmp_path / "m3", **TINY, vocabulary=f"{a},{b}")
    with pytest.raises(EdgekwsError, match=r"--vocab .*,: an empty folder name \(check for doubled or trailing"):
        train(tiny, tmp_path / "m3", **TINY, vocabulary=f"{a},")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgekwsError, match=r"--vocab .*empty: no word folders of .wav clips \(make one with"):
        train(tiny, tmp_path / "m3", **TINY, vocabulary=f"{a},{tmp_path / 'empty'}")
    with pytest.raises(EdgekwsError, match=f"--vocab {re.escape(str(tiny))}: is the dataset"):
        train(tiny, tmp_path / "m3", **TINY, vocabulary=f"{a},{tiny}")
    assert not (tmp_path / "m3").exists()


def test_an_epoch_never_ends_in_a_batch_of_one():
    """A last batch of one example reached the dnn's Dense -> BatchNorm as one value per channel."""
    from edgekws.train import epoch_steps, n_steps

    for n, batch in [(10, 3), (9, 3), (65, 64), (66, 64), (64, 64), (5, 4), (1, 4)]:
        steps = epoch_steps(np.arange(n), batch)
        assert len(steps) == n_steps(n, batch) and np.array_equal(np.concatenate(steps), np.arange(n))
        assert all(len(s) <= batch + 1 for s in steps)
        assert n == 1 or min(len(s) for s in steps) >= 2
    assert [len(s) for s in epoch_steps(np.arange(65), 64)] == [65]


def test_epoch_order_counts_only_the_models_own_commands():
    """Vocabulary classes (labels after the commands) do not change how many unknown words an epoch draws."""
    from edgekws.train import EpochOrder

    labels = np.array([0] * 5 + [1] * 100 + [2] * 10 + [3] * 10 + [4] * 40 + [5] * 40)
    order = EpochOrder(labels, 1, 2, 3.0)
    assert order.n_unknown == 30 and order.drawn_ratio == 3.0
    assert order.size == 5 + 20 + 80 + 30


def test_cli_vocab_reaches_train_as_an_absolute_path(monkeypatch, tmp_path):
    import edgekws.train as tr
    from edgekws.cli import main

    seen = {}
    monkeypatch.setattr(tr, "train", lambda data, out, **kw: seen.update(kw))
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--vocab", "v"]) == 0
    assert seen["vocabulary"] == str(tmp_path / "v")
    assert "whiten" not in seen                        # the default: TrainConfig.whiten
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--vocab", "v", "--no-whiten"]) == 0
    assert seen["whiten"] is False
    assert main(["train", str(tmp_path), "--out", str(tmp_path) + "-m", "--vocab", "v,w"]) == 0
    assert seen["vocabulary"] == f"{tmp_path / 'v'},{tmp_path / 'w'}"


def test_stopped_while_writing_its_bundle_resume_finishes_it(reference, tiny, tmp_path):
    """Ctrl-C after Bundle.create but before history.json: the half-written bundle is refused and
    both messages point to --resume (not --force, which would throw the training away); --resume
    writes the same bundle as the uninterrupted run."""
    out = tmp_path / "model"
    with interrupted_when_writing("history.json"), pytest.raises(KeyboardInterrupt):
        train(tiny, out, **TINY)
    assert (out / CHECKPOINT).exists() and (out / "manifest.json").exists()
    with pytest.raises(BundleError, match=r"an incomplete model bundle: training was interrupted while writing "
                                          r"it; finish it with: edgekws train … --resume"):
        Bundle.load(out)
    with pytest.raises(BundleError, match="holds an unfinished training checkpoint; continue it with --resume"):
        train(tiny, out, **TINY)
    _same_weights(_weights(train(tiny, out, resume=True, **TINY)), _weights(reference))


def test_without_validation_clips_no_validation_figures_are_made_up(tiny, tmp_path):
    """No validation split: the history and the manifest hold no validation figures (the training
    accuracy was written in their place), and the last epoch is kept."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    (data / "validation_list.txt").write_text("")
    lines = []
    b = train(data, tmp_path / "m", **{**TINY, "epochs": 2, "log": lines.append})
    history = b.read_json("history.json")
    assert [h["epoch"] for h in history] == [1, 2]
    assert all("val_accuracy" not in h and "val_loss" not in h and "train_accuracy" in h for h in history)
    tr = b.manifest["training"]
    assert tr["n_val"] == 0 and tr["val_accuracy"] is None and tr["best_epoch"] == 2
    assert any("no validation clips: kept the last epoch (2)" in line for line in lines)


def test_the_dataset_is_recorded_as_an_absolute_path(tiny, tmp_path, monkeypatch):
    """Trained as `train data` in one folder, the bundle was calibrated by `quantize` on whatever
    `data` meant in the folder quantize ran in (or refused it there as gone)."""
    from edgekws.quant import calibration_features

    monkeypatch.chdir(tiny.parent)
    bundle = train(tiny.name, tmp_path / "model", **{**TINY, "epochs": 1})
    assert bundle.manifest["training"]["dataset"] == str(tiny.resolve())
    monkeypatch.chdir(tmp_path)
    recorded = calibration_features(Bundle.load(tmp_path / "model"))
    np.testing.assert_array_equal(recorded, calibration_features(Bundle.load(tmp_path / "model"), tiny))


def test_the_python_api_takes_words_as_on_the_command_line_and_checks_every_number(tiny, tmp_path):
    """train(words="yes,no") trained on the letters y, e, s; seed=-1 or "abc", label_smoothing=5 and
    grad_clip=-1 failed in numpy or the engine after the data had loaded; np.int64 seeds are plain seeds."""
    from edgekws.train import TrainConfig

    for bad, message in (({"seed": -1}, "--seed: must be an integer"), ({"seed": "abc"}, "--seed: must be"),
                         ({"seed": 1.5}, "--seed: must be"), ({"label_smoothing": 5}, "label_smoothing: must be"),
                         ({"weight_decay": float("nan")}, "weight_decay: must be"),
                         ({"grad_clip": -1}, r"grad_clip: must be a finite number >= 0 \(0: no clipping\)")):
        with pytest.raises(EdgekwsError, match=message):
            TrainConfig(**bad).check()
    TrainConfig(grad_clip=0).check()   # 0 turns clipping off, as the training loop reads it
    with pytest.raises(EdgekwsError, match="--seed: must be"):
        train(tiny, tmp_path / "m0", **{**TINY, "seed": -1})
    assert not (tmp_path / "m0").exists()
    b = train(tiny, tmp_path / "m", **{**TINY, "epochs": 1, "words": "yes, no", "seed": np.int64(3)})
    assert b.labels == ["_silence_", "_unknown_", "yes", "no"] and b.manifest["training"]["seed"] == 3


def test_consistency_loss_gradient_and_values():
    from edgekws.nn.losses import consistency_to_mean, log_softmax

    rng = np.random.default_rng(5)
    z = rng.standard_normal((8, 5))
    loss, grad = consistency_to_mean(z, 2.0)
    p = np.exp(log_softmax(z))
    m = (p[:4] + p[4:]) / 2
    kl = lambda a, b: (a * (np.log(a) - np.log(b))).sum(1)   # noqa: E731
    assert loss == pytest.approx(np.mean(kl(m, p[:4]) + kl(m, p[4:])), rel=1e-12)   # weight 2 / 2
    num = np.zeros_like(z)   # finite differences with the target m held constant (the stop-gradient)
    for i in range(8):
        for k in range(5):
            d = np.zeros_like(z)
            d[i, k] = 1e-6
            num[i, k] = (consistency_to_mean(z + d, 2.0, m)[0] - consistency_to_mean(z - d, 2.0, m)[0]) / 2e-6
    assert np.allclose(grad, num, atol=1e-8) and np.allclose(grad, (p - np.concatenate([m, m])) / 4)
    same = np.concatenate([z[:4], z[:4] + 3.0])   # the same answers (logits shifted by a constant): nothing to pull
    loss, grad = consistency_to_mean(same, 5.0)
    assert loss == pytest.approx(0.0, abs=1e-12) and np.allclose(grad, 0.0, atol=1e-15)
    assert consistency_to_mean(z.astype(np.float32), 1.0)[1].dtype == np.float32
    with pytest.raises(ValueError, match=r"consistency_to_mean: logits must be \(2N, K\), got shape \(3, 5\)"):
        consistency_to_mean(z[:3], 1.0)


def test_second_voice_moves_every_example_and_is_seeded():
    from edgekws.train import second_voice

    x = np.random.default_rng(1).uniform(0, 60, (6, 49, 40)).astype(np.float32)
    a = second_voice(x, np.random.default_rng(3), 64.0)
    b = second_voice(x, np.random.default_rng(3), 64.0)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == x.shape
    before = x.copy()
    second_voice(x, np.random.default_rng(4), 64.0)
    assert np.array_equal(x, before)                          # a copy: the first voice is left as it was
    assert all(not np.array_equal(a[i], x[i]) for i in range(6))
    assert a.min() >= 0 and a.max() <= 64.0


def test_consistency_trains_and_resumes_bit_exact(tiny, tmp_path):
    opts = dict(TINY, epochs=3, consistency=2.0, consistency_from=0)    # every epoch
    ref = train(tiny, tmp_path / "ref", **opts)
    assert ref.manifest["training"]["config"]["consistency"] == 2.0
    plain = train(tiny, tmp_path / "plain", **dict(TINY, epochs=3))
    assert not all(np.array_equal(a, b) for a, b in zip(_weights(ref).values(), _weights(plain).values()))
    assert ref.manifest["training"]["n_train"] == plain.manifest["training"]["n_train"] > TINY["batch"]
    out = tmp_path / "model"
    _interrupted(tiny, out, after=1, **opts)
    resumed = train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)
    _same_weights(_weights(resumed), _weights(ref))
    with pytest.raises(EdgekwsError, match=r"--consistency: must be a weight in \[0, 100\], got -1"):
        train(tiny, tmp_path / "bad", **dict(TINY, consistency=-1.0))


def test_hard_negatives_are_off_by_default_and_when_on_train_and_resume_bit_exact(tmp_path, monkeypatch):
    import edgekws.train as tr
    from edgekws.train import TrainConfig

    assert TrainConfig().hard_negatives == 0.0          # off by default since session 52 (RESULTS.md)
    data = make_tiny_dataset(tmp_path / "data", tones={**TONES, "dog": 2400.0})   # two unknown words
    scored, real = [], tr.hard_negative_weights
    monkeypatch.setattr(tr, "hard_negative_weights", lambda *a, **k: scored.append(a[3]) or real(*a, **k))
    plain = train(data, tmp_path / "plain", **dict(TINY, epochs=3))
    assert scored == [] and plain.manifest["training"]["config"]["hard_negatives"] == 0.0
    opts = dict(TINY, epochs=3, hard_negatives=20.0)
    ref = train(data, tmp_path / "ref", **opts)
    assert scored == [20.0, 20.0]                       # epochs 2 and 3 draw by the model's confusions
    assert ref.manifest["training"]["config"]["hard_negatives"] == 20.0
    assert not all(np.array_equal(a, b) for a, b in zip(_weights(ref).values(), _weights(plain).values()))
    out = tmp_path / "model"
    _interrupted(data, out, after=2, **opts)
    resumed = train(data, out, resume=True, progress=False, log=lambda *a, **k: None)
    _same_weights(_weights(resumed), _weights(ref))


def test_consistency_from_trains_the_first_epochs_plainly_and_resumes_across_the_switch(tiny, tmp_path):
    late = dict(TINY, epochs=3, consistency=2.0, consistency_from=2)
    ref = train(tiny, tmp_path / "ref", **late)
    assert ref.manifest["training"]["config"]["consistency_from"] == 2
    plain = train(tiny, tmp_path / "plain", **dict(TINY, epochs=3))
    h_late, h_plain = ref.read_json("history.json"), plain.read_json("history.json")
    for k in ("train_loss", "val_loss", "train_accuracy"):      # epochs 1-2 the same bits, then not
        assert [r[k] for r in h_late[:2]] == [r[k] for r in h_plain[:2]], k
    assert h_late[2]["train_loss"] != h_plain[2]["train_loss"]
    assert not all(np.array_equal(a, b) for a, b in zip(_weights(ref).values(), _weights(plain).values()))
    out = tmp_path / "model"
    _interrupted(tiny, out, after=2, **late)                  # stopped at the switch, resumed past it
    _same_weights(_weights(train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)), _weights(ref))
    for bad, message in ((dict(consistency_from=3), r"--consistency-from: must be an epoch count in \[0, 3\) \(the training's epochs\), got 3"),
                         (dict(consistency_from=-1), r"--consistency-from: must be an epoch count in \[0, 3\) \(the training's epochs\), got -1"),
                         (dict(consistency_from=1.0), r"--consistency-from: must be an epoch count in \[0, 3\) \(the training's epochs\), got 1.0"),
                         (dict(consistency=0.0, consistency_from=1),
                          r"--consistency-from: starts consistency training late; it needs a nonzero --consistency W \(0, or --no-augment, "
                          r"turns the second voice off\)")):
        with pytest.raises(EdgekwsError, match=message):
            train(tiny, tmp_path / "bad", **{**late, **bad})


def test_the_default_trains_the_last_third_with_the_second_voice(tiny, tmp_path):
    from edgekws.train import NO_AUGMENT, TrainConfig, late_start

    assert [late_start(e) for e in (1, 2, 3, 8, 60)] == [0, 1, 2, 5, 40]
    assert TrainConfig().consistency == 2.0 and TrainConfig().resolved().consistency_from == 40
    assert TrainConfig(epochs=30).resolved().consistency_from == 20
    assert TrainConfig(consistency=0.0).resolved().consistency_from == 0
    assert TrainConfig(consistency_from=0).resolved().consistency_from == 0        # given: kept
    old = TrainConfig.from_dict({"epochs": 60})            # a bundle from before: trained without it
    assert (old.consistency, old.consistency_from) == (0.0, 0)
    assert NO_AUGMENT["consistency"] == 0.0                # --no-augment: no second voice either
    default = dict(TINY, epochs=3, consistency=None)         # None: not given, the default
    ref = train(tiny, tmp_path / "default", **default)
    cfg = ref.manifest["training"]["config"]
    assert (cfg["consistency"], cfg["consistency_from"]) == (2.0, 2)
    explicit = train(tiny, tmp_path / "explicit", **dict(TINY, epochs=3, consistency=2.0, consistency_from=2))
    _same_weights(_weights(ref), _weights(explicit))
    out = tmp_path / "model"
    _interrupted(tiny, out, after=1, **default)                     # resumes to the same bits
    _same_weights(_weights(train(tiny, out, resume=True, progress=False, log=lambda *a, **k: None)), _weights(ref))


def test_early_stopping_waits_for_the_second_voice(tiny, tmp_path, monkeypatch):
    import edgekws.train as tr

    monkeypatch.setattr(tr, "_loss_acc", lambda *a, **k: (1.0, 0.5))   # validation never improves after epoch 1
    plain = train(tiny, tmp_path / "plain", **dict(TINY, epochs=6, patience=1))
    assert len(plain.read_json("history.json")) == 2                          # epoch 2 did not improve: stop
    late = train(tiny, tmp_path / "late", **dict(TINY, epochs=6, patience=1, consistency=2.0, consistency_from=3))
    # no stop before the second voice; its first epoch (4) is kept as the best, patience counts from it: stop after 5
    assert len(late.read_json("history.json")) == 5
    assert plain.manifest["training"]["best_epoch"] == 1
    assert late.manifest["training"]["best_epoch"] == 4  # the first epoch with the second voice, not the better-scored epoch 1
    w_late, w_plain = _weights(late), _weights(plain)
    assert not all(np.array_equal(w_late[k], w_plain[k]) for k in w_plain)
    _interrupted(tiny, tmp_path / "at4", after=4, epochs=6, patience=1, consistency=2.0, consistency_from=3)
    at4 = load_checkpoint(tmp_path / "at4" / CHECKPOINT)[1]       # the model as epoch 4 left it
    assert at4 and all(np.array_equal(w_late[k], v) for k, v in at4.items())   # kept, not epoch 5's
