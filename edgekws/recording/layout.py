"""Where recordings go: stable speaker ids, take numbering that resumes, and what to show for a word.

Takes are written as `OUT/<word>/<speaker>_nohash_<n>.wav` (the Speech Commands layout); background
noise as `OUT/_background_noise_/<speaker>_background_<n>.wav`. The split of a clip follows the hash
of its speaker id, so the id must be stable across sessions and must never contain `_nohash_`.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import unicodedata
from pathlib import Path

from edgekws.data import BACKGROUND_DIR, DEFAULT_WORDS, SPLIT_LISTS
from edgekws.errors import EdgekwsError

# What the user reads for each command folder. Folders carry the English meaning in every
# language (as `edgekws synth` does), so datasets of both languages share label names.
PROMPTS = {
    "en": {w: w for w in DEFAULT_WORDS},
    "ja": {
        "yes": "はい", "no": "いいえ", "up": "うえ", "down": "した", "left": "ひだり",
        "right": "みぎ", "on": "オン", "off": "オフ", "stop": "とまれ", "go": "すすめ",
    },
}

_TAKE = re.compile(r"^(?P<speaker>.+)_nohash_(?P<n>\d+)\.wav$")
_BAD_WORD_CHARS = re.compile(r"[/\\\x00-\x1f]")


def speaker_id(name: str | None) -> str:
    """A stable, file-name-safe speaker id: lower-case ASCII letters, digits and '-'.

    None → the login name. 'Alice Smith' → 'alice-smith', 'José' → 'jose'. A name that loses
    characters on the way (non-Latin letters, or more than 32 characters) gets 8 hex digits of the
    SHA-1 of the whole name, so two such names never share an id ('たろう2' → '2-…', 'はなこ2' →
    '2-…', different), and one with no ASCII letter or digit at all (e.g. 'たろう') becomes 'spk-…'.
    The same name always gives the same id, whatever its Unicode form or case.
    """
    return _speaker_ids(name)[0]


def _speaker_ids(name: str | None) -> tuple[str, str]:
    """(the id, the id sessions before 25 gave the name): they differ only for a hashed id, whose hash
    then took the name as typed, not in one Unicode form (NFKC: a name pasted from a macOS file name
    is NFD) and without case ('Alice' and 'alice' are one id)."""
    raw = (name if name is not None else _login_name()).strip()
    if not raw:
        raise EdgekwsError("--speaker: empty name; give a name such as --speaker alice")
    text = unicodedata.normalize("NFKD", raw)
    slug = re.sub(r"[^a-z0-9]+", "-", text.encode("ascii", "ignore").decode().lower()).strip("-")
    lost = any(ord(ch) > 127 and not unicodedata.combining(ch) for ch in text)   # accents are kept as letters
    if slug and not lost and len(slug) <= 32:
        return slug, slug

    def hashed(key: str) -> str:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
        return f"{slug[:23].strip('-')}-{digest}" if slug else f"spk-{digest}"

    return hashed(unicodedata.normalize("NFKC", raw).casefold()), hashed(raw)


def speaker_for(out, name: str | None) -> tuple[str, str | None]:
    """(the speaker id to record under in folder `out`, a note or None): someone whose earlier takes
    are under the id sessions before 25 gave their name keeps it, so a new session adds to their takes
    instead of starting over as another speaker (who could land in another split)."""
    new, old = _speaker_ids(name)
    if old != new and not _has_takes(Path(out), new) and _has_takes(Path(out), old):
        return old, f"speaker '{name}': recording as '{old}', the id of this name's earlier takes"
    return new, None


def _has_takes(out: Path, speaker: str) -> bool:
    return any(out.glob(f"*/{speaker}_nohash_*.wav")) or any(out.glob(f"{BACKGROUND_DIR}/{speaker}_background_*.wav"))


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "me"


def check_words(words: list[str] | tuple[str, ...]) -> list[str]:
    """Validate word folder names for recording; returns them as a list."""
    words = list(words)
    if not words:
        raise EdgekwsError("--words: at least one word is needed")
    bad = [w for w in words if w.startswith((".", "_")) or _BAD_WORD_CHARS.search(w) or w != w.strip()]
    if bad:
        raise EdgekwsError(f"--words: {bad} cannot be word folder names "
                           "(no leading '.' or '_', no slashes or control characters)")
    if len(set(words)) != len(words):
        raise EdgekwsError(f"--words: a word is repeated in {words}")
    lists = [w for w in words if w in SPLIT_LISTS]
    if lists:
        raise EdgekwsError(f"--words: {lists} is the name of a dataset's split list, not a word folder")
    long = [w for w in words if len(w.encode("utf-8")) > 255]
    if long:
        raise EdgekwsError(f"--words: {long[0][:20]}…: a folder name is at most 255 bytes, this one is "
                           f"{len(long[0].encode('utf-8'))}")
    return words


def prompt_for(word: str, lang: str) -> str:
    """The text to say for a word folder, e.g. ('yes', 'ja') → 'はい'."""
    return PROMPTS.get(lang, {}).get(word, word)


def take_numbers(word_dir: Path, speaker: str) -> list[int]:
    """Take numbers already on disk for this speaker in one word folder, sorted."""
    if not word_dir.is_dir():
        return []
    found = []
    for p in word_dir.iterdir():
        m = _TAKE.match(p.name)
        if m and m["speaker"] == speaker:
            found.append(int(m["n"]))
    return sorted(found)


def take_path(out: Path, word: str, speaker: str, n: int) -> Path:
    return out / word / f"{speaker}_nohash_{n}.wav"


def background_path(out: Path, speaker: str, n: int) -> Path:
    return out / BACKGROUND_DIR / f"{speaker}_background_{n}.wav"


def next_free(make_path, start: int) -> tuple[int, Path]:
    """The first number ≥ start whose path does not exist yet."""
    n = start
    while make_path(n).exists():
        n += 1
    return n, make_path(n)
