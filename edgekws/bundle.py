"""The model bundle: the one folder every command reads and writes.

    MODEL_DIR/
      manifest.json   format name + version, labels, feature config, architecture, quantization,
                      training metadata, and the sha256 of every file below
      weights.npz     float parameters       int8.npz, model.onnx, c/, metrics.json, ... (later stages)

Loading checks the format name and version, every file's checksum and the checksum of the manifest's
model fields (labels, feature config, architecture, int8 parameters; the detector's stream settings
stay editable), and refuses a mismatch with a BundleError that names the bundle, the file and the problem. Files are written atomically, the
manifest last, so an interrupted write never leaves a bundle that passes verification with
half-written content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekws import __version__
from edgekws.errors import BundleError
from edgekws.fileio import atomic_write_bytes, atomic_write_text, make_dir, not_a_folder, other_files, sha256_file

FORMAT = "edgekws-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The manifest fields that define what the model computes. Their sha256 (MODEL_DIGEST) is written
# with every manifest and checked on load, so a damaged or hand-edited label list, feature config,
# architecture or int8 parameter set is refused instead of silently changing answers. The detector's
# "stream" settings and the metadata stay editable.
MODEL_FIELDS = ("labels", "feature_config", "architecture", "quantization")
MODEL_DIGEST = "model_sha256"
INCOMPLETE = "incomplete"  # set while a staged bundle is written (Bundle.create(staged=True) ... finish())
PENDING = "pending"  # {name: [old sha256, new sha256]} while a listed file is replaced (Bundle.write_bytes)
TRAIN_LOCK = ".edgekws-train.lock"  # held by `edgekws train` for its whole run (edgekws.train.exclusive)


def rebuildable(name: str) -> bool:
    """A record about the model, not the model: eval writes metrics.json, report report.html and its
    plots, training history.json. Bundle.verify leaves a missing or damaged one out instead of refusing
    the model (deleting a plot must not make a model unusable)."""
    return name in ("metrics.json", "history.json", "report.html") or ("/" not in name and name.endswith(".png"))


# What commands write into a bundle from its model: removed with the model they were made from, listed
# or not (a write stopped between its file and the manifest leaves the file unlisted)
OUTPUT_FILES = ("int8.npz", "model.onnx", "model.int8.onnx", "metrics.json", "report.html", "curves.png",
                "c/ekws_model_data.c", "c/ekws_model_data.h", "c/model.bin")


_HELD: set[str] = set()   # the bundle folders whose write lock this process holds


@contextlib.contextmanager
def write_lock(path: Path):
    """An exclusive lock on the bundle folder `path` for one change (a file and its manifest entry):
    two commands writing one bundle take turns. The lock is on the folder itself (no lock file to
    leave behind). POSIX only (fcntl); elsewhere no lock is taken."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    key = os.path.realpath(path)
    if key in _HELD:     # this process holds it already (flock twice in one process would wait forever)
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:      # no folder: the write that follows says why
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.add(key)
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)


def train_lock_holder(path: Path) -> str | None:
    """The pid (as text, "?" if unknown) of a running `edgekws train` that holds `path`'s lock, else None.
    POSIX only (fcntl); elsewhere None."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        f = open(Path(path) / TRAIN_LOCK)
    except OSError:            # no lock file: no training there
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "?"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def environment() -> dict[str, str]:
    """Versions that went into a model, for the training metadata."""
    import scipy

    return {"edgekws": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "platform": platform.platform()}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Deterministic .npz bytes (fixed zip timestamps), so the same arrays give the same sha256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            one = io.BytesIO()
            np.lib.format.write_array(one, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, one.getvalue())
    return buf.getvalue()


def plain(obj):
    """`obj` with numpy scalars and arrays turned into Python values (in place for dicts and lists):
    a seed given as np.int64 through the Python API must not stop a manifest write half-way."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = plain(v)
    elif isinstance(obj, list):
        obj[:] = [plain(v) for v in obj]
    elif isinstance(obj, tuple):
        return [plain(v) for v in obj]
    elif isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def model_digest(manifest: dict) -> str:
    """sha256 of the MODEL_FIELDS of a manifest (canonical JSON)."""
    fields = {k: manifest.get(k) for k in MODEL_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_fields(manifest: dict, mpath) -> None:
    """The manifest's fields have their types, and the labels agree with the architecture: a
    hand-edited manifest whose labels no longer match the model's outputs is refused here, not by a
    wrong answer (or an IndexError) later."""
    labels = manifest["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or \
            not all(isinstance(lab, str) and lab for lab in labels) or len(set(labels)) != len(labels):
        raise BundleError(f"{mpath}: manifest 'labels' must be a list of at least 2 distinct label names, "
                          f"got {labels!r}")
    for key in ("feature_config", "architecture", "files"):
        if not isinstance(manifest[key], dict):
            raise BundleError(f"{mpath}: manifest {key!r} must be an object, got {type(manifest[key]).__name__}")
    for key in ("training", "head", "stream", "quantization"):   # optional (quantization None before quantize)
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise BundleError(f"{mpath}: manifest {key!r} must be an object, got {type(manifest[key]).__name__}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["files"].items()):
        raise BundleError(f"{mpath}: manifest 'files' must map file names to sha256 digests")
    arch = manifest["architecture"]
    layers = arch.get("layers")
    if not (isinstance(layers, list) and all(isinstance(layer, dict) for layer in layers)):
        raise BundleError(f"{mpath}: manifest 'architecture' needs a list of 'layers'")
    if "input_shape" in arch:
        _check_input_shape(manifest, mpath)
    units = layers[-1].get("units") if layers else None
    for what, n in (("n_classes", arch.get("n_classes")), ("last layer's units", units)):
        if n is not None and n != len(labels):
            raise BundleError(f"{mpath}: manifest has {len(labels)} labels but the architecture's {what} is "
                              f"{n}: the labels do not match the model's outputs")


def _check_input_shape(manifest: dict, mpath) -> None:
    """The model's input is one second of the frontend's frames: (frames, bands[, 1]). A feature_config
    edited apart from the architecture would feed the model a window of the wrong shape."""
    from edgekws.features import FeatureConfig
    from edgekws.features.config import FeatureConfigError

    try:
        fc = FeatureConfig.from_dict(manifest["feature_config"])
    except (FeatureConfigError, TypeError, ValueError) as exc:
        raise BundleError(f"{mpath}: manifest 'feature_config' is invalid ({exc})") from None
    want = [fc.num_frames(fc.sample_rate), fc.num_bands]
    shape = manifest["architecture"].get("input_shape")
    if not (isinstance(shape, list) and len(shape) in (2, 3) and shape[:2] == want and shape[2:] in ([], [1])):
        raise BundleError(f"{mpath}: the architecture's input_shape {shape!r} does not match the feature "
                          f"config, which gives {want[0]} frames x {want[1]} bands per 1 s window")


def remove_old_outputs(path: Path) -> None:
    """Before a bundle is written over another (--force): remove the files the old manifest lists
    and the export projects inside it, so that no output of the old model (c/ arrays, .onnx, a
    firmware project) survives beside the new one to be flashed by mistake."""
    try:
        old = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError):
        old = {}
    listed = [str(n) for n in old] if isinstance(old, dict) else []
    _remove_files(path, sorted({*listed, *OUTPUT_FILES, *_stale_temp_files(path)}), projects=True)


def _stale_temp_files(path: Path) -> list[str]:
    """Temporary files of writes killed before their rename (`.NAME.XXXX.tmp`, fileio.atomic_open), in
    the bundle folder and its c/: called under the write lock, when no write of this bundle runs."""
    found = []
    for sub in ("", "c"):
        d = path / sub
        if d.is_dir():
            found += [str(Path(sub) / f.name) for f in d.glob(".*.tmp") if f.is_file()]
    return found


def _remove_files(path: Path, names: list[str], projects: bool = False) -> None:
    """Delete the bundle files `names` (only inside the bundle), the folders they leave empty, and with
    `projects` the export projects (MODEL/<target>) inside the bundle, as a new export would (their
    own files; the user's stay): when the model changes, not when a report drops a stale plot."""
    from edgekws.export.targets import TARGETS, remove_project  # export --target writes into MODEL/<target>

    root = path.resolve()
    for name in names:
        f = (path / name).resolve()
        if root in f.parents and f.is_file():  # only inside the bundle
            f.unlink()
    for sub in {*(TARGETS if projects else ()), *(Path(n).parts[0] for n in names if len(Path(n).parts) > 1)}:
        d = path / sub
        if d.is_dir() and not d.is_symlink():
            if sub in TARGETS:
                remove_project(d)
            elif not any(d.iterdir()):
                d.rmdir()


def refuse_other_files(path: Path, allowed=()) -> None:
    """A new bundle goes into an empty or new folder: a dataset, a project or someone's files are
    never mixed into (hidden files such as train's lock do not count, nor the names `allowed`)."""
    if others := other_files(path, allowed=allowed):
        raise BundleError(f"{path}: holds other files ({others}); a model bundle goes into an empty or new folder")


def check_bundle_folder(path, *, overwrite: bool = False, by_train: bool = False) -> None:
    """Everything Bundle.create refuses about the folder `path`, without writing anything: commands
    call it before their work (minutes of embedding or training), not only when they write."""
    from edgekws.fileio import cannot_make_folder

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BundleError(f"{path}: exists and is not a folder")
    if problem := cannot_make_folder(path):
        raise BundleError(f"{path}: cannot create this folder ({problem})")
    if by_train:
        return
    if who := train_lock_holder(path):
        raise BundleError(f"{path}: an edgekws train (pid {who}) is writing here; wait for it to finish "
                          "or choose another --out")
    if (path / "checkpoint.npz").exists() and not overwrite:
        raise BundleError(f"{path}: holds an unfinished training (checkpoint.npz; edgekws train … "
                          "--resume continues it); choose another --out or pass --force (overwrite=True in Python)")
    if not (path / MANIFEST).exists():
        refuse_other_files(path, allowed=("checkpoint.npz",))
    elif not overwrite:
        raise BundleError(f"{path}: already holds a model bundle (choose another --out, remove it, "
                          "or pass --force; overwrite=True in Python)")


class Bundle:
    """A verified model bundle on disk. Construct with `Bundle.create` or `Bundle.load`."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest
        self._seen = _identity(manifest)   # the model this object read or wrote last
        self.dropped: dict[str, str] = {}  # records verify left out (missing or damaged): name -> listed sha256

    # ---- creation and loading ------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, labels: list[str], feature_config: dict, architecture: dict,
               training: dict | None = None, overwrite: bool = False, by_train: bool = False,
               staged: bool = False) -> "Bundle":
        """by_train: the caller is `edgekws train` finishing the run of the checkpoint.npz in `path`;
        any other writer refuses a folder holding an unfinished training (or with overwrite, drops it).
        staged: the bundle is marked incomplete until the writer calls finish() after its last file,
        so a write interrupted half-way is refused by load() instead of loading without its int8
        model or head (and `--force` writes it again)."""
        path = Path(path)
        check_bundle_folder(path, overwrite=overwrite, by_train=by_train)
        make_dir(path)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "labels": list(labels), "feature_config": feature_config,
                    "architecture": architecture, "quantization": None,
                    "training": {**(training or {}), "environment": environment()}, "files": {}}
        if staged:
            manifest[INCOMPLETE] = True
        try:   # before the old model's files go: a field JSON cannot hold fails with nothing removed
            json.dumps(plain(manifest), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{path}: a manifest field cannot be written as JSON ({exc})") from None
        bundle = cls(path, manifest)
        with write_lock(path):
            ckpt = path / "checkpoint.npz"
            if not by_train and ckpt.exists():   # overwrite=True (check_bundle_folder refuses it otherwise)
                ckpt.unlink()
            if (path / MANIFEST).exists():
                remove_old_outputs(path)
            bundle._store(manifest)
        return bundle

    def finish(self) -> None:
        """The last file of a staged bundle is written: it loads from now on."""
        if INCOMPLETE in self.manifest:
            with self._locked() as m:
                m.pop(INCOMPLETE, None)
                self._store(m)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> "Bundle":
        try:
            return cls._load(path, verify)
        except BundleError:
            # another command may be changing the bundle right now (a file replaced after the manifest
            # was read): read it again while writers wait, and only then call it damaged
            if not isinstance(path, (str, os.PathLike)) or not Path(path).is_dir():
                raise
            with write_lock(Path(path)):
                return cls._load(path, verify)

    @classmethod
    def _load(cls, path, verify: bool) -> "Bundle":
        if not isinstance(path, (str, os.PathLike)):
            raise BundleError(f"a model bundle is a folder path, got {path!r}")
        path = Path(path)
        mpath = path / MANIFEST
        if problem := not_a_folder(path, "model bundle folder"):
            raise BundleError(f"{path}: {problem}")
        if not mpath.is_file():
            raise BundleError(f"{path}: not a model bundle (no {MANIFEST})")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{mpath}: corrupt manifest ({exc})") from None
        except RecursionError:
            raise BundleError(f"{mpath}: corrupt manifest (nested too deeply)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{mpath}: not an {FORMAT} manifest")
        if "format_version" not in manifest:
            raise BundleError(f"{mpath}: manifest lacks 'format_version'")
        version = manifest["format_version"]
        if version != FORMAT_VERSION:
            raise BundleError(f"{path}: bundle format version {version!r} is not supported by this "
                              f"edgekws (which reads version {FORMAT_VERSION}); re-export the model")
        for key in ("labels", "feature_config", "architecture", "files"):
            if key not in manifest:
                raise BundleError(f"{mpath}: manifest lacks {key!r}")
        if manifest.get(INCOMPLETE):
            if (path / "checkpoint.npz").is_file():   # train stopped while writing its bundle
                raise BundleError(f"{path}: an incomplete model bundle: training was interrupted while writing "
                                  "it; finish it with: edgekws train … --resume (it takes seconds)")
            raise BundleError(f"{path}: an incomplete model bundle: writing it was interrupted; write it again "
                              "(the same command with --force, or overwrite=True in Python)")
        check_fields(manifest, mpath)
        # bundles written before the digest existed have none; every manifest written now has one
        digest = _digest_or_none(manifest)
        if (MODEL_DIGEST in manifest or digest is None) and manifest.get(MODEL_DIGEST) != digest:
            raise BundleError(f"{mpath}: the model fields ({', '.join(MODEL_FIELDS)}) do not match their "
                              "checksum: the manifest is damaged or was edited by hand (only the 'stream' "
                              "settings may be edited)")
        _settle_pending(path, manifest)
        bundle = cls(path, manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check every file listed in the manifest against its sha256. A missing or damaged record
        (`rebuildable`: metrics, history, the report and its plots) does not make the model wrong: it is
        left out of this object (`dropped` names it) and the command that writes it writes it again."""
        for name, digest in list(self.manifest["files"].items()):
            f = self.path / name
            problem = ("listed in the manifest is missing" if not f.is_file() else
                       "is corrupt or truncated (checksum mismatch)" if sha256_file(f) != digest else None)
            if problem is None:
                continue
            if rebuildable(name):
                del self.manifest["files"][name]
                self.dropped[name] = digest
                _note_dropped(self.path, name, problem)
                continue
            raise BundleError(f"{self.path}: file {name} {problem}")

    # ---- files ---------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes, **fields: Any) -> None:
        """Write (or replace) a file of the bundle atomically and record its checksum, and any manifest
        `fields` that describe it (e.g. quantization=... with int8.npz) in the same manifest write."""
        _check_name(name)
        self._check_fields(fields)
        digest = hashlib.sha256(data).hexdigest()   # of what this call writes, not of what is on disk then
        with self._locked() as m:
            if fields:
                check_fields({**m, **fields}, self.path / MANIFEST)   # nothing stored that would not load
            if name in m["files"]:   # a listed file: pending first, so that a stop between the rename and the
                old = m["files"].pop(name)   # manifest write leaves a bundle that loads with either the old
                m.setdefault(PENDING, {})[name] = [old, digest]   # or the new file (_settle_pending)
                self._store(m)
            atomic_write_bytes(self.path / name, data)
            m["files"][name] = digest   # listed again: _store drops its pending entry
            m.update(fields)
            self._store(m)

    def write_npz(self, name: str, arrays: dict[str, np.ndarray], **fields: Any) -> None:
        self.write_bytes(name, npz_bytes(arrays), **fields)

    def remove(self, names, **fields: Any) -> None:
        """Forget the files `names` and set manifest `fields` in one manifest write, then delete the files."""
        self._check_fields(fields)
        names = list(names)
        with self._locked() as m:
            self._forget(m, [n for n in names if n in m["files"]], fields)

    def drop_outputs(self, keep=("weights.npz", "history.json")) -> list[str]:
        """Before the model's numbers change (quantize, QAT): forget every file made from them (int8.npz,
        ONNX, C arrays, metrics, report) and the quantization in one manifest write, then delete those
        files and the export projects inside the bundle. An interruption leaves either the old bundle
        or a float-only one that loads; no output of the old model stays listed beside the new one
        to be flashed or compared by mistake. Returns the names dropped (projects as "<target>/")."""
        from edgekws.export.targets import TARGETS, has_project_files

        with self._locked() as m:   # the files listed now, also those another command added meanwhile
            gone = sorted(n for n in m["files"] if n not in keep)
            projects = [f"{t}/" for t in TARGETS if (self.path / t).is_dir() and not (self.path / t).is_symlink()
                        and has_project_files(self.path / t)]
            self._forget(m, gone, {"quantization": None}, projects=True,
                         unlisted=[*(n for n in OUTPUT_FILES if n not in keep), *_stale_temp_files(self.path)])
        return gone + projects

    def _forget(self, m: dict, names: list[str], fields: dict, unlisted=(), projects: bool = False) -> None:
        """Under the lock: drop `names` from the manifest `m`, set `fields`, write it, then delete those
        files and any of `unlisted` (outputs a stopped write left without an entry)."""
        if not (names or fields):
            return
        for name in names:
            del m["files"][name]
        for name in [*names, *unlisted]:   # a stopped replacement of a file that goes now: forgotten too
            m.get(PENDING, {}).pop(name, None)
        m.update(fields)
        self._store(m)
        _remove_files(self.path, [*names, *(n for n in unlisted if n not in m["files"])], projects=projects)

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, (json.dumps(plain(obj), indent=1, sort_keys=True) + "\n").encode())

    def read_bytes(self, name: str) -> bytes:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path}: has no {name} (have: {', '.join(sorted(self.files)) or 'none'})")
        data = (self.path / name).read_bytes() if (self.path / name).is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != self.manifest["files"][name]:
            self._changed_meanwhile(name)
            if data is None:
                raise BundleError(f"{self.path}: file {name} listed in the manifest is missing")
            raise BundleError(f"{self.path}: file {name} is corrupt or truncated (checksum mismatch)")
        return data

    def _changed_meanwhile(self, name: str) -> None:
        """A listed file is missing or does not match: if another command replaced it since this one
        read the manifest, say that (the bundle is fine), not that the file is damaged."""
        with write_lock(self.path):
            try:
                disk = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
                moved = _identity(disk) != self._seen or disk["files"].get(name) != self.manifest["files"][name]
            except (OSError, ValueError, RecursionError, AttributeError, KeyError, TypeError):
                return
        if moved:
            raise BundleError(f"{self.path}: another edgekws command changed this model while this one ran "
                              f"({name} was replaced); run this command again")

    def read_npz(self, name: str) -> dict[str, np.ndarray]:
        data = self.read_bytes(name)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{self.path}: {name} is not a readable .npz ({exc})") from None

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read_bytes(name))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{self.path}: {name} is not valid JSON ({exc})") from None

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    @property
    def files(self) -> dict[str, str]:
        return dict(self.manifest["files"])

    # ---- metadata ------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    def update(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. quantization=..., stream=...) and save the manifest."""
        self._check_fields(fields)
        with self._locked() as m:
            m.update(fields)
            check_fields(m, self.path / MANIFEST)   # e.g. labels=... that no longer fit the model: not stored
            self._store(m)

    @staticmethod
    def _check_fields(fields: dict) -> None:
        reserved = {"format", "format_version", "files", MODEL_DIGEST} & fields.keys()
        if reserved:
            raise ValueError(f"manifest fields {sorted(reserved)} are managed by Bundle")

    @contextlib.contextmanager
    def unchanged(self):
        """Hold the bundle's write lock while the caller reads this model and writes what it makes from
        it outside the manifest (an export project inside MODEL/): refused, like every write, if another
        command changed the model since this object read it."""
        with self._locked() as manifest:
            yield manifest   # the manifest on disk now: what to copy (another command may have added files)

    @contextlib.contextmanager
    def _locked(self):
        """Hold the bundle's write lock and give the manifest as it is on disk now: entries another
        command wrote since this one loaded the bundle (an eval's metrics beside an export's files)
        are kept. If another command changed the model meanwhile (quantize, train, adapt), whatever this
        one made came from the old model: refused rather than listed beside the new one."""
        with write_lock(self.path):
            try:
                disk = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            except FileNotFoundError:
                disk = None
            except (OSError, ValueError, RecursionError) as exc:
                raise BundleError(f"{self.path / MANIFEST}: cannot read the manifest again before writing ({exc})") from None
            if disk is None or not isinstance(disk, dict) or not isinstance(disk.get("files"), dict):
                raise BundleError(f"{self.path}: the model bundle was removed or damaged while this command ran")
            if _identity(disk) != self._seen:
                raise BundleError(f"{self.path}: another edgekws command changed this model while this one ran "
                                  "(quantize, train, adapt, retrain --force); run this command again")
            _settle_pending(self.path, disk)   # a stopped replacement: its file is listed from now on
            for name, digest in self.dropped.items():   # left out on load: unlisted at this write for good
                if disk["files"].get(name) == digest:
                    del disk["files"][name]
            yield disk

    def _store(self, manifest: dict) -> None:
        """Write `manifest` (under the lock) and make it this object's."""
        pending = {k: v for k, v in manifest.get(PENDING, {}).items() if k not in manifest["files"]}
        manifest.pop(PENDING, None)
        if pending:
            manifest[PENDING] = pending
        plain(manifest)
        manifest[MODEL_DIGEST] = model_digest(manifest)
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        self.manifest, self._seen = manifest, _identity(manifest)


_NOTED: set = set()   # (bundle, record) pairs said once in this process


def _note_dropped(path: Path, name: str, problem: str) -> None:
    key = (str(Path(path).resolve()), name)
    if key not in _NOTED:
        _NOTED.add(key)
        print(f"note: {path}: {name} {problem}; left out (a record, not the model: the command that writes it "
              "writes it again)", file=sys.stderr)


def _check_name(name) -> None:
    """A bundle file is a plain relative name inside the folder, not the manifest or a hidden file."""
    from pathlib import PurePosixPath

    parts = PurePosixPath(name).parts if isinstance(name, str) and name else ()
    if not parts or "/".join(parts) != name or parts[0] == "/" or ".." in parts or parts == (MANIFEST,) or \
            any(p.startswith(".") for p in parts) or "\\" in name:   # only names in their one plain spelling
        raise BundleError(f"bundle file name {name!r}: must be a relative name inside the bundle folder "
                          f"(not {MANIFEST}, no '..', no hidden file)")


def _settle_pending(path: Path, manifest: dict) -> None:
    """A write stopped while it replaced a listed file left it in PENDING with its old and new checksum:
    list it with the one the file on disk has (the write happened or it did not). A file matching
    neither stays unlisted."""
    pending = manifest.get(PENDING)
    if not isinstance(pending, dict):
        manifest.pop(PENDING, None)
        return
    for name, digests in pending.items():
        f = path / str(name)
        if name not in manifest["files"] and isinstance(digests, list) and f.is_file() \
                and (found := sha256_file(f)) in digests:
            manifest["files"][name] = found


def _identity(manifest: dict) -> tuple:
    """What a model bundle's manifest says about the model: a command that read one identity writes
    only over the same one. The digest is computed from the model fields (a bundle written before
    model_sha256 existed gets one at its first write; the model is the same). created changes with
    every new bundle (train --force, adapt, retrain)."""
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    # the float weights too: quantize --qat-epochs rewrites them, and an int8 model quantized from the
    # old ones must not be listed beside them
    return (_digest_or_none(manifest), manifest.get("created"), manifest.get(INCOMPLETE, False),
            files.get("weights.npz"))


def _digest_or_none(manifest: dict) -> str | None:
    """model_digest, or None for model fields JSON cannot hold (NaN, infinity: never written by edgekws)."""
    try:
        return model_digest(manifest)
    except (ValueError, TypeError):
        return None


def as_bundle(model) -> "Bundle":
    """A Bundle, or the bundle at a path: what every API function that takes a model accepts."""
    return model if isinstance(model, Bundle) else Bundle.load(model)
