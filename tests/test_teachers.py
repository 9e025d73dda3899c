"""Training with teachers (`edgekws train --teachers`): the soft target's loss and gradient, the
teachers' mean answer at the student's sampling prior, a student that learns what a (wrong) teacher
says, the bundle's record, bit-exact resume, and the refusals (other labels, the output folder, a
teacher changed or gone before --resume, --vocab, bad settings)."""

import shutil

import numpy as np
import pytest

from edgekws.bundle import Bundle
from edgekws.cli import main
from edgekws.errors import BundleError, EdgekwsError
from edgekws.evaluate import FloatNetwork
from edgekws.features import FeatureConfig
from edgekws.nn import SoftmaxCrossEntropy
from edgekws.nn.losses import log_softmax
from edgekws.teachers import Teachers
from edgekws.train import CHECKPOINT, load_checkpoint, train
from test_train import TINY, _same_weights, _weights, make_tiny_dataset

SHORT = {**TINY, "epochs": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def teachers(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return [train(tiny, root / f"t{s}", **{**SHORT, "seed": s}).path for s in (1, 2)]


def test_soft_target_loss_and_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4))
    labels = np.array([0, 3, 1, 2, 3])
    soft = rng.dirichlet(np.ones(4), size=5)
    loss_fn = SoftmaxCrossEntropy(label_smoothing=0.1)
    loss = loss_fn.forward(logits, labels, soft, 0.7)
    hard = np.full((5, 4), 0.1 / 4)
    hard[np.arange(5), labels] += 0.9
    target = 0.3 * hard + 0.7 * soft
    assert loss == pytest.approx(-(target * log_softmax(logits)).sum(1).mean(), rel=1e-12)
    grad = loss_fn.backward()
    num = np.zeros_like(logits)
    for i in np.ndindex(*logits.shape):   # central differences of the same loss
        d = np.zeros_like(logits)
        d[i] = 1e-6
        num[i] = (SoftmaxCrossEntropy(0.1).forward(logits + d, labels, soft, 0.7) -
                  SoftmaxCrossEntropy(0.1).forward(logits - d, labels, soft, 0.7)) / 2e-6
    np.testing.assert_allclose(grad, num, atol=1e-8)
    # weight 0 is the plain loss; weight 1 is the teachers' answer alone
    assert SoftmaxCrossEntropy(0.1).forward(logits, labels, soft, 0.0) == pytest.approx(
        SoftmaxCrossEntropy(0.1).forward(logits, labels), rel=1e-12)
    assert SoftmaxCrossEntropy(0.1).forward(logits, labels, soft, 1.0) == pytest.approx(
        -(soft * log_softmax(logits)).sum(1).mean(), rel=1e-12)
    with pytest.raises(ValueError, match=r"soft must be \(5, 4\) probabilities"):
        SoftmaxCrossEntropy().forward(logits, labels, soft[:3], 0.5)


def test_the_teachers_answer_is_their_mean_probability_at_the_students_prior(teachers):
    b = Bundle.load(teachers[0])
    t = Teachers.load(teachers, b.labels, FeatureConfig())
    x = np.random.default_rng(1).uniform(0, 60, (6, 49, 40)).astype(np.float32)
    unknown = b.labels.index("_unknown_")
    for ratio in (None, 3.0):
        if ratio:
            t.set_prior(unknown, ratio)
        p = t.probabilities(x)
        want = 0
        for path in teachers:
            net = FloatNetwork(Bundle.load(path))
            z = net.model.forward(x.reshape(-1, *net.model.input_shape), training=False).astype(np.float64)
            if ratio:   # the written (balanced) logits moved to a training that draws _unknown_ 3x
                z[:, unknown] += np.log(ratio)
            want = want + np.exp(log_softmax(z)) / len(teachers)
        assert p.dtype == np.float32 and p.shape == (6, len(b.labels))
        np.testing.assert_allclose(p, want, atol=1e-5)
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    # one teacher given twice answers as that teacher alone
    np.testing.assert_allclose(Teachers.load(teachers[:1] * 2, b.labels, FeatureConfig()).probabilities(x),
                               Teachers.load(teachers[:1], b.labels, FeatureConfig()).probabilities(x), atol=1e-6)


def test_a_student_learns_what_its_teacher_says_not_only_the_labels(tiny, teachers, tmp_path):
    """A teacher with yes and no swapped (its classifier rows exchanged): a student trained on its
    answer alone (weight 1) calls the yes clips no; the same training without it calls them yes."""
    opts = {**TINY, "epochs": 12}   # a teacher that hears the tones well
    swapped = train(tiny, tmp_path / "swapped", **{**opts, "seed": 2})
    w = swapped.read_npz("weights.npz")
    yes, no = swapped.labels.index("yes"), swapped.labels.index("no")
    for k in ("classifier.weight", "classifier.bias"):
        axis = 0 if w[k].shape[0] == len(swapped.labels) else -1
        w[k] = np.swapaxes(np.swapaxes(w[k], 0, axis)[[*(no if i == yes else yes if i == no else i
                                                          for i in range(len(swapped.labels)))]], 0, axis)
    swapped.write_npz("weights.npz", w)
    student = train(tiny, tmp_path / "student", teachers=[str(tmp_path / "swapped")], teacher_weight=1.0, **opts)
    plain = train(tiny, tmp_path / "plain", **opts)
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, split_arrays

    arr = split_arrays(load_dataset(tiny, ["yes", "no"]), "all", FeatureCache(None, FeatureConfig()), seed=0)
    said = {}
    for name, b in (("student", student), ("plain", plain)):
        pred = FloatNetwork(Bundle.load(b.path)).logits_features(arr.features).argmax(1)
        said[name] = np.bincount(pred[arr.labels == yes], minlength=len(swapped.labels))
    assert said["plain"][yes] > 0.8 * said["plain"].sum() and said["plain"].sum() == 24, said
    assert said["student"][no] > 0.8 * said["student"].sum(), said


def test_a_student_learns_from_its_teachers_records_them_and_resumes_bit_exact(tiny, teachers, tmp_path):
    ref = train(tiny, tmp_path / "student", teachers=[str(t) for t in teachers], teacher_weight=1.0, **SHORT)
    record = ref.manifest["training"]["teachers"]
    assert [r["path"] for r in record] == [str(t.resolve()) for t in teachers]
    assert [r["weights.npz"] for r in record] == [Bundle.load(t).manifest["files"]["weights.npz"] for t in teachers]
    assert ref.manifest["training"]["config"]["teacher_weight"] == 1.0
    plain = _weights(train(tiny, tmp_path / "plain", **SHORT))
    assert any(not np.array_equal(v, _weights(ref)[k]) for k, v in plain.items())   # the teachers changed it

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny, tmp_path / "again", teachers=[str(t) for t in teachers], teacher_weight=1.0,
              on_epoch_end=stop, **SHORT)
    meta = load_checkpoint(tmp_path / "again" / CHECKPOINT)[0]
    assert meta["teachers"] == record
    again = train(tiny, tmp_path / "again", resume=True, progress=False, log=lambda *a, **k: None)
    _same_weights(_weights(ref), _weights(again))


def _stopped_with_a_teacher_that_goes(tiny, teacher, tmp_path):
    """A student of a copy of `teacher` stopped after its first epoch; the copy is then deleted."""
    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny, tmp_path / "student", teachers=[str(copy)], on_epoch_end=stop, **SHORT)
    shutil.rmtree(copy)
    return copy


def test_resume_refuses_a_teacher_that_changed(tiny, teachers, tmp_path):
    shutil.copytree(teachers[1], _stopped_with_a_teacher_that_goes(tiny, teachers[0], tmp_path))   # another model there
    with pytest.raises(EdgekwsError, match=r"--resume needs the same teachers, and the teachers changed since the "
                                           r"checkpoint was written \(.*teacher\)"):
        train(tiny, tmp_path / "student", resume=True, progress=False, log=lambda *a, **k: None)


def test_resume_names_a_teacher_that_is_gone(tiny, teachers, tmp_path):
    _stopped_with_a_teacher_that_goes(tiny, teachers[0], tmp_path)
    with pytest.raises(EdgekwsError, match=r"student: --resume needs the checkpoint's teachers \(--teachers .*teacher: "
                                           r"not a model bundle"):
        train(tiny, tmp_path / "student", resume=True, progress=False, log=lambda *a, **k: None)


def test_teachers_of_other_words_or_no_bundle_or_the_output_are_refused(tiny, teachers, tmp_path):
    other = train(tiny, tmp_path / "other", **{**SHORT, "words": ["yes", "cat"]}).path
    with pytest.raises(EdgekwsError, match=r"--teachers .*other: its labels _silence_, _unknown_, yes, cat differ "
                                           r"from the data's _silence_, _unknown_, yes, no"):
        train(tiny, tmp_path / "s1", teachers=[str(teachers[0]), str(other)], **SHORT)
    with pytest.raises(BundleError, match=r"--teachers .*nothing: not a model bundle \(no manifest.json"):
        train(tiny, tmp_path / "s2", teachers=[str(tmp_path / "nothing")], **SHORT)
    shutil.copytree(teachers[0], tmp_path / "s3")
    with pytest.raises(EdgekwsError, match=r"--teachers .*s3: is the folder this training writes"):
        train(tiny, tmp_path / "s3", teachers=[str(tmp_path / "s3")], overwrite=True, **SHORT)
    assert Bundle.load(tmp_path / "s3")   # and it is still there
    for bad, message in (({"teachers": str(teachers[0])}, r"--teachers: must be a list of model bundle folders"),
                         ({"teachers": []}, r"--teachers: must be a list of model bundle folders"),
                         ({"teachers": [str(teachers[0])], "teacher_weight": 0.0},
                          r"--teacher-weight: must be a weight in \(0, 1\], got 0.0"),
                         ({"teacher_weight": 0.5}, r"--teacher-weight: weighs the teachers' answers; give the teachers"),
                         ({"teachers": [str(teachers[0])], "vocabulary": str(tmp_path / "vocab")},
                          r"--teachers: cannot train with --vocab")):
        with pytest.raises(EdgekwsError, match=message):
            train(tiny, tmp_path / "s4", **{**SHORT, **bad})
    assert not (tmp_path / "s4").exists()


def test_cli_teachers_reach_training_as_absolute_paths(tiny, teachers, tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr("edgekws.train._train", lambda data, out, **kw: seen.update(kw))
    monkeypatch.chdir(teachers[0].parent)
    assert main(["train", str(tiny), "--out", str(tmp_path / "m"), "--teachers", teachers[0].name,
                 teachers[1].name, "--teacher-weight", "0.5"]) == 0
    assert seen["teachers"] == [str(t.resolve()) for t in teachers] and seen["teacher_weight"] == 0.5
    seen.clear()
    assert main(["train", str(tiny), "--out", str(tmp_path / "m"), "--teacher-weight", "0.5"]) == 2
    assert "--teacher-weight: weighs the teachers' answers; give the teachers too" in capsys.readouterr().err
    assert not seen
