"""Model bundle: round trip, checksums, and refusal of corrupt, truncated or foreign bundles."""

import json

import numpy as np
import pytest

from edgekws.bundle import FORMAT_VERSION, MODEL_DIGEST, Bundle, model_digest, npz_bytes
from edgekws.errors import BundleError


def _make(tmp_path):
    b = Bundle.create(tmp_path / "m", labels=["_silence_", "_unknown_", "yes"],
                      feature_config={"sample_rate": 16000}, architecture={"layers": []},
                      training={"seed": 1})
    w = {"conv.w": np.arange(12, dtype=np.float32).reshape(3, 4), "dense.b": np.ones(3, np.float32)}
    b.write_npz("weights.npz", w)
    b.write_json("history.json", {"loss": [1.0, 0.5]})
    return b, w


def test_roundtrip_and_checksums(tmp_path):
    b, w = _make(tmp_path)
    again = Bundle.load(tmp_path / "m")
    assert again.labels == ["_silence_", "_unknown_", "yes"]
    got = again.read_npz("weights.npz")
    assert set(got) == set(w) and all(np.array_equal(got[k], w[k]) and got[k].dtype == w[k].dtype for k in w)
    assert again.read_json("history.json") == {"loss": [1.0, 0.5]}
    assert again.manifest["training"]["seed"] == 1 and "numpy" in again.manifest["training"]["environment"]
    assert npz_bytes(w) == npz_bytes(dict(reversed(list(w.items()))))  # deterministic bytes


def test_corrupt_truncated_missing_files_are_refused(tmp_path):
    b, _ = _make(tmp_path)
    f = tmp_path / "m" / "weights.npz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="weights.npz is corrupt or truncated"):
        Bundle.load(tmp_path / "m")
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BundleError, match="checksum mismatch"):
        Bundle.load(tmp_path / "m")
    f.unlink()
    with pytest.raises(BundleError, match="weights.npz listed in the manifest is missing"):
        Bundle.load(tmp_path / "m")



def test_a_missing_or_damaged_record_leaves_the_model_usable_and_is_written_again(tmp_path, capsys):
    """metrics.json, history.json, report.html and the plots are records about the model: deleting a
    plot or a damaged metrics.json must not make every command refuse the model (they once did, and
    the commands that write them refused too)."""
    b, w = _make(tmp_path)
    b.write_json("metrics.json", {"accuracy": 0.5})
    b.write_bytes("report.html", b"<html></html>")
    b.write_bytes("curves.png", b"png")
    b.write_bytes("confusion-int8.png", b"png")
    root = tmp_path / "m"
    (root / "curves.png").unlink()
    (root / "report.html").unlink()
    (root / "metrics.json").write_text('{"accuracy": 0.9}')       # edited: its checksum no longer matches
    again = Bundle.load(root)
    assert sorted(again.dropped) == ["curves.png", "metrics.json", "report.html"]
    err = capsys.readouterr().err
    assert f"note: {root}: curves.png listed in the manifest is missing; left out" in err
    assert "metrics.json is corrupt or truncated (checksum mismatch); left out" in err
    Bundle.load(root)
    assert capsys.readouterr().err == ""                                # said once a run
    assert not again.has("metrics.json") and not again.has("curves.png") and again.has("confusion-int8.png")
    assert again.read_json("history.json") == {"loss": [1.0, 0.5]}
    assert set(again.read_npz("weights.npz")) == set(w)               # the model itself: untouched, checked
    again.write_bytes("report.html", b"<html>2</html>")               # what report does
    # the write unlisted the other left-out records for good, and they stay out of this object
    assert not again.has("curves.png") and not again.has("metrics.json")
    on_disk = json.loads((root / "manifest.json").read_text())["files"]
    assert "curves.png" not in on_disk and "metrics.json" not in on_disk and "report.html" in on_disk
    again.write_json("metrics.json", {"accuracy": 0.75})              # what eval does
    fresh = Bundle.load(root)
    assert fresh.dropped == {} and fresh.read_json("metrics.json") == {"accuracy": 0.75}
    (root / "history.json").unlink()
    assert list(Bundle.load(root).dropped) == ["history.json"]
    (root / "weights.npz").write_bytes(b"x")                          # the model is still refused
    with pytest.raises(BundleError, match="weights.npz is corrupt or truncated"):
        Bundle.load(root)

def test_wrong_version_and_foreign_folders(tmp_path):
    b, _ = _make(tmp_path)
    m = tmp_path / "m" / "manifest.json"
    man = json.loads(m.read_text())
    man["format_version"] = FORMAT_VERSION + 1
    m.write_text(json.dumps(man))
    with pytest.raises(BundleError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        Bundle.load(tmp_path / "m")
    m.write_text("{not json")
    with pytest.raises(BundleError, match="corrupt manifest"):
        Bundle.load(tmp_path / "m")
    m.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="not an edgekws-model manifest"):
        Bundle.load(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle.load(tmp_path / "empty")
    with pytest.raises(BundleError, match="no such model bundle"):
        Bundle.load(tmp_path / "nothing")


def test_create_refuses_to_clobber_and_read_unknown_file(tmp_path):
    b, _ = _make(tmp_path)
    with pytest.raises(BundleError, match="already holds a model bundle"):
        Bundle.create(tmp_path / "m", labels=[], feature_config={}, architecture={})
    with pytest.raises(BundleError, match="has no int8.npz"):
        b.read_npz("int8.npz")
    with pytest.raises(ValueError, match="managed by Bundle"):
        b.update(files={})


def _edit_manifest(tmp_path, reseal=True, **fields):
    """Edit manifest fields; reseal: also rewrite the model digest (as a writer of edgekws would), so
    that the field checks behind it are reached."""
    m = tmp_path / "m" / "manifest.json"
    man = json.loads(m.read_text())
    man.update(fields)
    if reseal:
        man[MODEL_DIGEST] = model_digest(man)
    m.write_text(json.dumps(man))


@pytest.mark.parametrize("labels, message", [
    (["_silence_", "_unknown_"], "manifest has 2 labels but the architecture's n_classes is 3"),
    (["_silence_", "_unknown_", "yes", "no"], "manifest has 4 labels but the architecture's n_classes is 3"),
    (["_silence_", "yes", "yes"], "'labels' must be a list of at least 2 distinct label names"),
    ("yes", "'labels' must be a list of at least 2 distinct label names"),
    (["_silence_", "", "yes"], "'labels' must be a list of at least 2 distinct label names"),
])
def test_labels_that_disagree_with_the_model_are_refused(tmp_path, labels, message):
    _make(tmp_path)
    _edit_manifest(tmp_path, architecture={"n_classes": 3, "layers": [{"type": "Dense", "units": 3}]})
    assert Bundle.load(tmp_path / "m").labels == ["_silence_", "_unknown_", "yes"]
    _edit_manifest(tmp_path, labels=labels)
    with pytest.raises(BundleError, match=message):
        Bundle.load(tmp_path / "m")


def test_last_layer_units_and_field_types_are_checked(tmp_path):
    _make(tmp_path)
    _edit_manifest(tmp_path, architecture={"layers": [{"type": "Dense", "units": 5}]})
    with pytest.raises(BundleError, match="architecture's last layer's units is 5"):
        Bundle.load(tmp_path / "m")
    _edit_manifest(tmp_path, architecture=[])
    with pytest.raises(BundleError, match="manifest 'architecture' must be an object, got list"):
        Bundle.load(tmp_path / "m")
    _edit_manifest(tmp_path, architecture={}, files={"weights.npz": 5})
    with pytest.raises(BundleError, match="'files' must map file names to sha256 digests"):
        Bundle.load(tmp_path / "m")


@pytest.mark.parametrize("field, value", [
    ("labels", ["_silence_", "_unknown_", "no"]),
    ("feature_config", {"sample_rate": 8000}),
    ("architecture", {"layers": [], "name": "other"}),
    ("quantization", {"input": {"scale": 0.5, "zero_point": -128}}),
])
def test_edited_or_damaged_model_fields_are_refused(tmp_path, field, value):
    b, _ = _make(tmp_path)
    b.update(quantization={"input": {"scale": 0.4, "zero_point": -128}})
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert man[MODEL_DIGEST] == model_digest(man)
    _edit_manifest(tmp_path, reseal=False, **{field: value})
    with pytest.raises(BundleError, match=r"model fields \(labels, feature_config, architecture, quantization\) "
                                          r"do not match their checksum"):
        Bundle.load(tmp_path / "m")


def test_stream_settings_stay_editable_and_old_manifests_load(tmp_path):
    b, _ = _make(tmp_path)
    _edit_manifest(tmp_path, reseal=False, stream={"smooth": 4}, training={"seed": 2})
    assert Bundle.load(tmp_path / "m").manifest["stream"] == {"smooth": 4}
    m = tmp_path / "m" / "manifest.json"
    man = json.loads(m.read_text())
    del man[MODEL_DIGEST]  # written before the digest existed
    m.write_text(json.dumps(man))
    again = Bundle.load(tmp_path / "m")
    again.update(stream={"smooth": 8})  # any write seals it
    assert json.loads(m.read_text())[MODEL_DIGEST] == model_digest(man)
    with pytest.raises(ValueError, match="managed by Bundle"):
        again.update(**{MODEL_DIGEST: "0" * 64})


def test_inconsistent_shapes_and_missing_keys_are_refused(tmp_path):
    """Edits that once passed the checks and crashed later (a manifest without the digest, as older
    writers left it, or resealed by hand)."""
    _make(tmp_path)
    _edit_manifest(tmp_path, architecture={"input_shape": [49, 40, 1], "layers": []})
    Bundle.load(tmp_path / "m")  # 1 s of the default frontend: 49 frames x 40 bands
    _edit_manifest(tmp_path, architecture={"input_shape": [10, 10, 1], "layers": []})
    with pytest.raises(BundleError, match=r"input_shape \[10, 10, 1\] does not match the feature config, which "
                                          r"gives 49 frames x 40 bands"):
        Bundle.load(tmp_path / "m")
    _edit_manifest(tmp_path, architecture={"input_shape": [49, 40, 1], "layers": []},
                   feature_config={"sample_rate": 16000, "num_bands": 20})
    with pytest.raises(BundleError, match="gives 49 frames x 20 bands"):
        Bundle.load(tmp_path / "m")
    _edit_manifest(tmp_path, feature_config={"num_bands": "many"})
    with pytest.raises(BundleError, match="manifest 'feature_config' is invalid"):
        Bundle.load(tmp_path / "m")
    _edit_manifest(tmp_path, feature_config={}, architecture={"n_classes": 3})
    with pytest.raises(BundleError, match="manifest 'architecture' needs a list of 'layers'"):
        Bundle.load(tmp_path / "m")
    m = tmp_path / "m" / "manifest.json"
    man = json.loads(m.read_text())
    del man["format_version"]
    m.write_text(json.dumps(man))
    with pytest.raises(BundleError, match="manifest lacks 'format_version'"):
        Bundle.load(tmp_path / "m")
    with pytest.raises(BundleError, match="is a file, not a model bundle folder"):
        Bundle.load(m)


def test_weights_that_do_not_fit_the_architecture_name_the_file(tmp_path):
    from edgekws.evaluate import FloatNetwork
    from quant_helpers import make_bundle

    b, model = make_bundle(tmp_path / "m")
    state = model.state_dict()
    key = next(iter(state))
    state[key] = np.zeros((1, *state[key].shape[1:]), state[key].dtype)
    b.write_npz("weights.npz", state)
    with pytest.raises(BundleError, match=f"weights.npz: does not fit the manifest's architecture \\({key} has shape"):
        FloatNetwork(Bundle.load(b.path))


def test_force_removes_the_old_models_outputs_and_checkpoints_are_respected(tmp_path):
    b, _ = _make(tmp_path)
    b.write_bytes("c/model.bin", b"old model")
    (tmp_path / "m" / "cortex-m4" / "src").mkdir(parents=True)          # an export --target project
    (tmp_path / "m" / "cortex-m4" / "src" / "model.c").write_text("old")
    (tmp_path / "m" / "notes.txt").write_text("mine")                    # not an output of edgekws
    new = Bundle.create(tmp_path / "m", labels=["_silence_", "_unknown_", "go"], feature_config={},
                        architecture={"layers": []}, overwrite=True)
    assert sorted(p.name for p in new.path.iterdir()) == ["manifest.json", "notes.txt"]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "checkpoint.npz").write_bytes(b"an unfinished training")
    with pytest.raises(BundleError, match="t: holds an unfinished training \\(checkpoint.npz; edgekws train … "
                                          "--resume continues it\\); choose another --out or pass --force"):
        Bundle.create(tmp_path / "t", labels=["a", "b"], feature_config={}, architecture={"layers": []})
    Bundle.create(tmp_path / "t", labels=["a", "b"], feature_config={}, architecture={"layers": []},
                  overwrite=True)
    assert not (tmp_path / "t" / "checkpoint.npz").exists()  # --force: that training is given up


def test_load_needs_a_folder_path(tmp_path):
    for bad in (None, 3):
        with pytest.raises(BundleError, match=f"a model bundle is a folder path, got {bad}"):
            Bundle.load(bad)


@pytest.mark.parametrize("renamed", [True, False])
def test_a_stop_while_a_listed_file_is_replaced_leaves_a_bundle_that_loads(tmp_path, monkeypatch, renamed):
    """Replacing a listed file (eval's metrics.json, QAT's weights.npz) keeps its old and new checksum
    pending: a stop just after the rename (or just before it) loads with whichever file is on disk. It
    left a checksum mismatch that every command refused and none could repair."""
    import edgekws.bundle as bm

    b, _ = _make(tmp_path)
    b.write_json("metrics.json", {"accuracy": 0.5})
    real = bm.atomic_write_bytes

    def stop(path, data, **kw):
        if renamed:
            real(path, data, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(bm, "atomic_write_bytes", stop)
    with pytest.raises(KeyboardInterrupt):
        b.write_json("metrics.json", {"accuracy": 0.9})
    monkeypatch.undo()
    assert "pending" in json.loads((tmp_path / "m" / "manifest.json").read_text())
    again = Bundle.load(tmp_path / "m")
    assert again.read_json("metrics.json") == {"accuracy": 0.9 if renamed else 0.5}
    again.write_json("history.json", {"loss": [0.1]})     # the next write lists it for good
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "pending" not in manifest and "metrics.json" in manifest["files"]
    (tmp_path / "m" / "metrics.json").write_text("{}")      # other damage: a record is left out (see below)
    assert list(Bundle.load(tmp_path / "m").dropped) == ["metrics.json"]


def test_the_checksum_is_of_the_bytes_written_not_of_the_file_found_later(tmp_path, monkeypatch):
    """Another writer replacing the file between this write and its checksum must not get its file
    listed under this write's metadata: the bundle is refused instead."""
    import edgekws.bundle as bm

    b, _ = _make(tmp_path)
    real = bm.atomic_write_bytes

    def raced(path, data, **kw):
        real(path, data, **kw)
        (tmp_path / "m" / "int8.npz").write_bytes(b"the other command's int8 model")

    monkeypatch.setattr(bm, "atomic_write_bytes", raced)
    b.write_npz("int8.npz", {"w": np.zeros(3, np.int8)}, quantization={"scheme": "mine"})
    monkeypatch.undo()
    with pytest.raises(BundleError, match="int8.npz is corrupt or truncated"):
        Bundle.load(tmp_path / "m")


def test_two_commands_on_one_bundle_keep_each_others_files_or_refuse_a_changed_model(tmp_path):
    _make(tmp_path)
    a, b = Bundle.load(tmp_path / "m"), Bundle.load(tmp_path / "m")
    a.write_json("metrics.json", {"accuracy": 0.5})        # eval ...
    b.write_bytes("model.onnx", b"onnx")                   # ... while export runs: both stay listed
    assert {"metrics.json", "model.onnx"} <= set(Bundle.load(tmp_path / "m").files)
    b.write_npz("int8.npz", {"w": np.zeros(3, np.int8)}, quantization={"scheme": "new"})   # quantize ...
    with pytest.raises(BundleError, match="another edgekws command changed this model while this one ran"):
        a.write_json("metrics.json", {"accuracy": 0.7})   # ... so a's metrics are of the old model
    assert Bundle.load(tmp_path / "m").read_json("metrics.json") == {"accuracy": 0.5}
    assert not (tmp_path / "m" / ".edgekws-write.lock").exists()   # the lock is on the folder: no file


def test_outputs_of_the_old_model_go_listed_or_not_and_stale_temp_files_too(tmp_path):
    b, _ = _make(tmp_path)
    m = tmp_path / "m"
    (m / "c").mkdir()
    (m / "c" / "model.bin").write_bytes(b"an export stopped before its manifest entry")
    (m / "cortex-m4").mkdir()
    (m / "cortex-m4" / "main.c").write_text("a firmware project of the old model")
    b.write_bytes("curves.png", b"png")
    b.remove(["curves.png"])                              # a report dropping a stale plot keeps the projects
    assert (m / "cortex-m4" / "main.c").exists() and not (m / "curves.png").exists()
    assert b.drop_outputs() == ["cortex-m4/"]              # nothing but weights and history is listed ...
    assert not (m / "c").exists() and not (m / "cortex-m4").exists()   # quantize again: every old output goes
    (m / ".weights.npz.x1y2.tmp").write_bytes(b"a write killed before its rename")
    (m / "model.onnx").write_bytes(b"unlisted")
    Bundle.create(m, labels=["_silence_", "_unknown_", "yes"], feature_config={}, architecture={"layers": []},
                  overwrite=True)
    assert sorted(p.name for p in m.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(training="x"), "manifest 'training' must be an object, got str"),
    (lambda m: m.update(head=[1]), "manifest 'head' must be an object, got list"),
    (lambda m: m.update(quantization={"calibration": {"seed": float("nan")}}),
     "the model fields .* do not match their checksum"),
])
def test_metadata_of_the_wrong_type_or_nan_is_a_one_line_error(tmp_path, edit, message):
    _make(tmp_path)
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(tmp_path / "m")


def test_a_manifest_nested_too_deeply_is_refused(tmp_path):
    _make(tmp_path)
    (tmp_path / "m" / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError, match="corrupt manifest"):
        Bundle.load(tmp_path / "m")


def test_a_bundle_written_before_the_model_digest_is_not_taken_for_a_changed_model(tmp_path):
    """The first write adds model_sha256 to an old manifest: the model did not change, so another
    command that loaded the bundle before it still writes."""
    _make(tmp_path)
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest[MODEL_DIGEST]
    path.write_text(json.dumps(manifest))
    a, b = Bundle.load(tmp_path / "m"), Bundle.load(tmp_path / "m")
    b.write_bytes("model.onnx", b"onnx")
    a.write_json("metrics.json", {"accuracy": 0.5})
    assert {"metrics.json", "model.onnx"} <= set(Bundle.load(tmp_path / "m").files)


def test_the_write_lock_is_reentrant_in_one_process(tmp_path):
    """unchanged() holds the lock while an export writes into the bundle (flock twice in one process
    would wait forever)."""
    b, _ = _make(tmp_path)
    with b.unchanged():
        b.write_bytes("model.onnx", b"onnx")
    assert Bundle.load(tmp_path / "m").has("model.onnx")
    other = Bundle.load(tmp_path / "m")
    b.write_npz("int8.npz", {"w": np.zeros(2, np.int8)}, quantization={"scheme": "new"})
    with pytest.raises(BundleError, match="another edgekws command changed this model"):
        with other.unchanged():
            pass


def test_a_file_replaced_by_another_command_is_said_so_not_called_damaged(tmp_path):
    """eval loaded the bundle, a quantize replaced int8.npz meanwhile: 'changed while this one ran', not
    'corrupt or truncated' (the bundle is sound)."""
    b, _ = _make(tmp_path)
    b.write_npz("int8.npz", {"w": np.zeros(2, np.int8)}, quantization={"scheme": "a"})
    reader = Bundle.load(tmp_path / "m")
    b.write_npz("int8.npz", {"w": np.ones(2, np.int8)}, quantization={"scheme": "b"})
    with pytest.raises(BundleError, match=r"another edgekws command changed this model while this one ran "
                                          r"\(int8.npz was replaced\)"):
        reader.read_npz("int8.npz")
    (tmp_path / "m" / "int8.npz").write_bytes(b"damaged")       # real damage is still called damage
    with pytest.raises(BundleError, match="int8.npz is corrupt or truncated"):
        Bundle.load(tmp_path / "m", verify=False).read_npz("int8.npz")


def test_new_float_weights_are_a_changed_model(tmp_path):
    """quantize --qat-epochs rewrites weights.npz: a quantize that read the old weights must not list its
    int8 model beside the new ones."""
    _make(tmp_path)
    stale, qat = Bundle.load(tmp_path / "m"), Bundle.load(tmp_path / "m")
    qat.write_npz("weights.npz", {"conv.w": np.zeros((3, 4), np.float32), "dense.b": np.zeros(3, np.float32)})
    with pytest.raises(BundleError, match="another edgekws command changed this model"):
        stale.write_npz("int8.npz", {"w": np.zeros(2, np.int8)}, quantization={"scheme": "old weights"})


def test_quantize_again_forgets_a_stopped_replacement_and_removes_stale_temporaries(tmp_path, monkeypatch):
    import edgekws.bundle as bm

    b, _ = _make(tmp_path)
    b.write_bytes("model.int8.onnx", b"old")
    monkeypatch.setattr(bm, "atomic_write_bytes", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        b.write_bytes("model.int8.onnx", b"new")            # stopped: model.int8.onnx pending
    monkeypatch.undo()
    (tmp_path / "m" / ".int8.npz.k1l2.tmp").write_bytes(b"a write killed before its rename")
    again = Bundle.load(tmp_path / "m")
    assert again.has("model.int8.onnx")
    again.drop_outputs()                                     # quantize again
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "pending" not in manifest and "model.int8.onnx" not in Bundle.load(tmp_path / "m").files
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["history.json", "manifest.json", "weights.npz"]


def test_unchanged_gives_the_manifest_on_disk_with_files_other_commands_added(tmp_path):
    """export --target pi copies what this manifest lists: its own loaded list missed an eval's
    metrics.json added meanwhile, and the Pi folder's model then failed to load."""
    _make(tmp_path)
    export, ev = Bundle.load(tmp_path / "m"), Bundle.load(tmp_path / "m")
    ev.write_json("metrics.json", {"accuracy": 0.5})
    with export.unchanged() as manifest:
        assert "metrics.json" in manifest["files"] and "metrics.json" not in export.files


def test_a_new_model_removes_an_export_projects_own_files_and_keeps_the_users(tmp_path):
    """Quantizing again (or --force) deleted MODEL/pi whole, the user's venv/ and notes with it."""
    from edgekws.export.targets import MARKER

    b, _ = _make(tmp_path)
    pi = tmp_path / "m" / "pi"
    (pi / "model").mkdir(parents=True)
    (pi / "model" / "int8.npz").write_bytes(b"the old model")
    (pi / "run.py").write_text("export's")
    (pi / MARKER).write_text("pi\nmodel/int8.npz\nrun.py\n")
    (pi / "venv" / "bin").mkdir(parents=True)
    (pi / "venv" / "bin" / "python").write_text("the user's")
    (pi / "NOTES.txt").write_text("the user's")
    assert b.drop_outputs() == ["pi/"]
    assert sorted(str(p.relative_to(pi)) for p in pi.rglob("*")) == [MARKER, "NOTES.txt", "venv", "venv/bin",
                                                                    "venv/bin/python"]
    marker = (pi / MARKER).read_text().splitlines()
    assert marker[0] == "pi" and all(line.startswith("#") for line in marker[1:])   # lists no file any more
    (pi / "run.py").write_text("the user's own run.py now")
    b2 = Bundle.create(tmp_path / "m", labels=["_silence_", "_unknown_", "go"], feature_config={},
                       architecture={"layers": []}, overwrite=True)          # --force: the same
    assert (pi / "NOTES.txt").read_text() == "the user's" and (pi / "run.py").read_text() == "the user's own run.py now"
    assert b2.drop_outputs() == []   # nothing of an export left to remove, so none is reported
    cm4 = tmp_path / "m" / "cortex-m4"   # a project of export's files only goes whole
    (cm4 / "src").mkdir(parents=True)
    (cm4 / "src" / "main.c").write_text("export's")
    (cm4 / MARKER).write_text("cortex-m4\nsrc/main.c\n")
    assert b2.drop_outputs() == ["cortex-m4/"] and not cm4.exists()


def test_numpy_values_in_fields_are_written_as_json_and_nothing_is_lost(tmp_path):
    """A seed given as np.int64 through the Python API passed the checks and then stopped the manifest
    write with a TypeError after the old model's files were deleted: a bundle no command could load."""
    b, _ = _make(tmp_path)
    b.write_json("metrics.json", {"accuracy": np.float32(0.5), "n": np.int64(3), "c": np.eye(2, dtype=np.int64)})
    b.update(quantization={"seed": np.int64(3), "scales": (np.float64(0.5),)})
    again = Bundle.load(tmp_path / "m")
    assert again.manifest["quantization"] == {"seed": 3, "scales": [0.5]}
    assert again.read_json("metrics.json") == {"accuracy": 0.5, "n": 3, "c": [[1, 0], [0, 1]]}
    new = Bundle.create(tmp_path / "m", labels=["_silence_", "_unknown_", "go"], feature_config={},
                        architecture={"layers": []}, training={"seed": np.int64(7)}, overwrite=True)
    assert Bundle.load(new.path).manifest["training"]["seed"] == 7
    before = sorted(p.name for p in new.path.iterdir())
    with pytest.raises(BundleError, match="a manifest field cannot be written as JSON"):
        Bundle.create(tmp_path / "m", labels=["a", "b"], feature_config={}, architecture={"layers": []},
                      training={"dataset": object()}, overwrite=True)
    assert sorted(p.name for p in new.path.iterdir()) == before and Bundle.load(new.path)


def test_file_names_stay_inside_the_bundle_and_fields_are_checked_before_they_are_stored(tmp_path):
    """write_bytes("../notes.txt") wrote outside the bundle, write_bytes("manifest.json") broke it for
    good, and update(labels=...) stored labels that no longer fit the model."""
    b, _ = _make(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("../notes.txt", str(tmp_path / "notes.txt"), "manifest.json", ".edgekws-write.lock", "c/../x",
                 "", None, "./manifest.json", "manifest.json/", "c//model.bin"):
        with pytest.raises(BundleError, match="must be a relative name inside the bundle folder"):
            b.write_bytes(name, b"x")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(BundleError, match="manifest 'labels' must be a list of at least 2 distinct label names"):
        b.update(labels=["a"])
    with pytest.raises(BundleError, match="manifest 'stream' must be an object"):
        b.write_bytes("x.bin", b"x", stream="fast")
    assert Bundle.load(tmp_path / "m").labels == ["_silence_", "_unknown_", "yes"]
    assert "x.bin" not in Bundle.load(tmp_path / "m").files and not (tmp_path / "m" / "x.bin").exists()
    b.write_bytes("c/model.bin", b"ok")   # a plain name in a subfolder is fine
