"""Datasets in the Google Speech Commands layout: discovery, labels and train/validation/test splits.

    ROOT/<word>/<speaker>_nohash_<n>.wav
    ROOT/_background_noise_/*.wav
    ROOT/validation_list.txt, ROOT/testing_list.txt       (optional; paths relative to ROOT)

Labels are `_silence_`, `_unknown_`, then the chosen command words (the 12-class convention).
Every word folder that is not a command is `_unknown_`. Without the list files, a clip's split
follows the Speech Commands hash rule on its speaker id, so one speaker never spans two splits.
`_silence_` examples have no file: training and evaluation cut them from background noise.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekws.errors import DatasetError
from edgekws.fileio import not_a_folder

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_DIR = "_background_noise_"
SPLIT_LISTS = ("validation_list.txt", "testing_list.txt")   # optional; paths relative to the dataset
DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SPLITS = ("train", "val", "test")

_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # the constant of the Speech Commands split rule
_NOHASH = re.compile(r"_nohash_.*$")


def speaker_of(filename: str) -> str:
    """Speaker id of a clip file name: everything before `_nohash_` (or the stem if absent)."""
    stem = Path(filename).name
    base = _NOHASH.sub("", stem)
    return base if base != stem else Path(stem).stem


def which_split(filename: str, val_percent: float = 10.0, test_percent: float = 10.0) -> str:
    """The Speech Commands hash rule: a stable split from the speaker part of the file name.

    Returns "train", "val" or "test". The percentage is computed from the SHA-1 of the speaker id,
    as in the dataset's reference code, so the same speaker always lands in the same split.
    """
    key = _NOHASH.sub("", Path(filename).name)
    # surrogateescape: a file name that is not valid UTF-8 hashes its own bytes (valid names: unchanged)
    h = int(hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest(), 16)
    pct = (h % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if pct < val_percent:
        return "val"
    if pct < val_percent + test_percent:
        return "test"
    return "train"


@dataclass(frozen=True)
class Clip:
    """One example. `path` is None for a `_silence_` example (cut from background noise later)."""

    path: Path | None
    word: str          # folder name (SILENCE for silence examples)
    label: str         # a command word, UNKNOWN or SILENCE
    speaker: str
    split: str


@dataclass
class Dataset:
    """An indexed dataset folder. `clips` holds every word clip of every split (no silence)."""

    root: Path
    words: tuple[str, ...]
    clips: list[Clip]
    noise_files: list[Path]
    labels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = (SILENCE, UNKNOWN, *self.words)

    @property
    def label_index(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {word folder: count}}"""
        out: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        for c in self.clips:
            out[c.split][c.word] = out[c.split].get(c.word, 0) + 1
        return out

    def select(self, split: str, *, seed: int = 0, unknown_ratio: float = 1.0,
               silence_ratio: float = 1.0) -> list[Clip]:
        """The clips of one split, balanced: every command clip, plus `_unknown_` and `_silence_`
        examples each about `ratio` × the mean count of one command class.

        split : "train", "val", "test" or "all"
        The unknown subset is drawn with `seed` (the same seed gives the same list).
        """
        if split not in (*SPLITS, "all"):
            raise DatasetError(f"split must be one of train, val, test, all; got {split!r}")
        pool = [c for c in self.clips if split == "all" or c.split == split]
        commands = [c for c in pool if c.label not in (UNKNOWN, SILENCE)]
        unknown = [c for c in pool if c.label == UNKNOWN]
        per_class = len(commands) / max(len(self.words), 1)
        rng = np.random.default_rng(seed)
        n_unk = min(len(unknown), int(round(unknown_ratio * per_class)))
        picked = [unknown[i] for i in sorted(rng.choice(len(unknown), n_unk, replace=False))] if n_unk else []
        n_sil = int(round(silence_ratio * per_class))
        silence = [Clip(None, SILENCE, SILENCE, SILENCE, split) for _ in range(n_sil)]
        return commands + picked + silence

    def fingerprint(self) -> str:
        """sha256 over every clip's relative path, split and content: identifies the data a model saw
        and which of it validated (an edited validation_list.txt changes it)."""
        h = hashlib.sha256()
        h.update("".join(f"{c.path.relative_to(self.root)}={c.split}\n" for c in
                         sorted((c for c in self.clips if c.path), key=lambda c: str(c.path))).encode(
            "utf-8", "surrogateescape"))   # a name that is not UTF-8 hashes its bytes
        for p in sorted([c.path for c in self.clips if c.path] + self.noise_files):
            h.update(str(p.relative_to(self.root)).encode("utf-8", "surrogateescape"))
            try:
                h.update(p.read_bytes())
            except IsADirectoryError:
                raise DatasetError(f"{p}: is a folder, not a WAV file") from None
            except OSError as exc:
                raise DatasetError(f"{p}: cannot read ({exc.strerror or exc})") from None
        return h.hexdigest()


def _read_list(path: Path) -> set[str]:
    """The clip paths of a split list, as 'word/file.wav' (a byte-order mark, './' and backslashes
    are accepted: what Notepad, `find .` and Windows write)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file of relative clip paths") from None
    return {posixpath.normpath(line.strip().replace("\\", "/")) for line in text.splitlines() if line.strip()}


def wav_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The .wav clips of a folder, sorted. Hidden files (.DS_Store.wav, macOS's ._name.wav copies) are
    not clips; a folder named *.wav is refused by name (as a clip it could only fail later)."""
    found = Path(folder).rglob("*.wav") if recursive else Path(folder).glob("*.wav")
    clips = sorted(p for p in found if not p.name.startswith("."))
    if folders := [p for p in clips if p.is_dir()]:
        raise DatasetError(f"{folders[0]}: is a folder, not a WAV file")
    return clips


def word_folders(root: Path) -> list[Path]:
    """The word folders of a dataset folder, sorted: every subfolder not starting with '.' or '_'."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def load_dataset(root: str | Path, words: list[str] | tuple[str, ...] | None = None, *,
                 val_percent: float = 10.0, test_percent: float = 10.0) -> Dataset:
    """Index a Speech Commands folder.

    words : the command words (default: yes no up down left right on off stop go). Every other word
            folder becomes `_unknown_`. A command word with no folder is an error.
    Splits come from validation_list.txt / testing_list.txt when present (all other clips are
    training), otherwise from the hash rule with the given percentages.
    """
    root = Path(root)
    if problem := not_a_folder(root, "dataset folder"):
        raise DatasetError(f"{root}: {problem}")
    words = tuple(DEFAULT_WORDS if words is None else words)
    if not words:
        raise DatasetError("words (--words): at least one command word is needed")
    bad = [w for w in words if not w or w.startswith("_") or "/" in w]
    if bad:
        raise DatasetError(f"words (--words): invalid command word(s) {bad}")
    if len(set(words)) != len(words):
        raise DatasetError(f"words (--words): repeated command word in {list(words)}")
    folders = word_folders(root)
    missing = [w for w in words if not (root / w).is_dir()]
    if missing:
        have = ", ".join(p.name for p in folders) or "none"
        raise DatasetError(f"{root}: no folder for command word(s) {missing} (word folders found: {have})")

    val_list, test_list = (_read_list(root / n) if (root / n).is_file() else None for n in SPLIT_LISTS)
    use_lists = val_list is not None or test_list is not None

    clips: list[Clip] = []
    rels: set[str] = set()
    for folder in folders:
        label = folder.name if folder.name in words else UNKNOWN
        for wav in wav_files(folder):
            rel = f"{folder.name}/{wav.name}"
            rels.add(rel)
            if use_lists:
                split = "val" if rel in (val_list or ()) else "test" if rel in (test_list or ()) else "train"
            else:
                split = which_split(wav.name, val_percent, test_percent)
            clips.append(Clip(wav, folder.name, label, speaker_of(wav.name), split))
    for name, listed in zip(SPLIT_LISTS, (val_list, test_list)):
        if listed and not listed & rels:
            raise DatasetError(f"{root / name}: none of its {len(listed)} entries is a clip of the dataset (e.g. "
                               f"{min(listed)!r}; entries are paths relative to {root}, such as 'yes/x_nohash_0.wav')")
    empty = [w for w in words if not any(c.word == w for c in clips)]
    if empty:
        raise DatasetError(f"{root}: command word folder(s) {empty} hold no .wav files")
    noise_dir = root / BACKGROUND_DIR
    noise = wav_files(noise_dir) if noise_dir.is_dir() else []
    return Dataset(root=root, words=words, clips=clips, noise_files=noise)


def parse_words(text: str | None) -> list[str] | None:
    """`--words yes,no,up` → ["yes", "no", "up"]; None stays None (the default words)."""
    if text is None:
        return None
    words = [w.strip() for w in text.split(",")]
    if not any(words):
        raise DatasetError(f"--words: no words in {text!r}")
    if not all(words):
        raise DatasetError(f"--words: {text!r} has an empty word (two commas in a row, or one at an end)")
    if twice := sorted({w for w in words if words.count(w) > 1}):
        raise DatasetError(f"--words: {', '.join(twice)} given more than once in {text!r}")
    return words


def _run_dataset(args) -> int:
    ds = load_dataset(args.data, parse_words(args.words))
    counts = ds.counts()
    names = sorted({w for split in counts.values() for w in split})
    print(f"{ds.root}: {len(ds.clips)} clips, labels {', '.join(ds.labels)}, "
          f"{len(ds.noise_files)} background noise file(s)")
    print(f"{'word':<16}{'label':<12}" + "".join(f"{s:>8}" for s in SPLITS))
    for w in names:
        label = w if w in ds.words else UNKNOWN
        print(f"{w:<16}{label:<12}" + "".join(f"{counts[s].get(w, 0):>8}" for s in SPLITS))
    speakers = {s: len({c.speaker for c in ds.clips if c.split == s}) for s in SPLITS}
    print(f"{'speakers':<28}" + "".join(f"{speakers[s]:>8}" for s in SPLITS))
    return 0


def register(sub) -> None:
    p = sub.add_parser("dataset", help="summarize a dataset folder (Speech Commands layout)",
                       description="Count clips per word and split, as training will see them.")
    p.add_argument("data", help="dataset folder: DATA/<word>/<speaker>_nohash_<n>.wav")
    p.add_argument("--words", help="comma-separated command words (default: yes,no,up,down,left,right,on,off,stop,go)")
    p.set_defaults(func=_run_dataset)
