"""Speech Commands layout: a tiny tree in the exact v2 layout (lists included) loads unchanged."""

import numpy as np
import pytest

from edgekws.audio import write_wav
from edgekws.cli import main
from edgekws.data import SILENCE, UNKNOWN, load_dataset, parse_words, speaker_of, which_split
from edgekws.errors import DatasetError

# Real Speech Commands v2 file names (speaker hash _nohash_ take number).
SPEAKERS = ["0a7c2a8d", "0b40aa8e", "0c40e715", "0ff728b5", "1a892463", "c4e00ee9", "ffd2ba2f"]


def _tree(root, words=("yes", "no", "up", "marvin", "bed"), lists=True):
    for w in words:
        for s in SPEAKERS:
            for n in range(2):
                write_wav(root / w / f"{s}_nohash_{n}.wav", np.zeros(160, np.int16))
    write_wav(root / "_background_noise_" / "white_noise.wav", np.zeros(1600, np.int16))
    (root / "_background_noise_" / "README.md").write_text("noise")
    (root / "LICENSE").write_text("CC-BY-4.0")
    if lists:
        (root / "validation_list.txt").write_text("yes/0a7c2a8d_nohash_0.wav\nyes/0a7c2a8d_nohash_1.wav\n"
                                                  "marvin/0b40aa8e_nohash_0.wav\n")
        (root / "testing_list.txt").write_text("no/ffd2ba2f_nohash_1.wav\n")
    return root


def test_speech_commands_v2_tree_with_lists(tmp_path):
    ds = load_dataset(_tree(tmp_path), ["yes", "no", "up"])
    assert ds.labels == (SILENCE, UNKNOWN, "yes", "no", "up")
    assert len(ds.clips) == 5 * 7 * 2 and ds.noise_files == [tmp_path / "_background_noise_" / "white_noise.wav"]
    by_path = {c.path.relative_to(tmp_path).as_posix(): c for c in ds.clips}
    assert by_path["yes/0a7c2a8d_nohash_0.wav"].split == "val"
    assert by_path["marvin/0b40aa8e_nohash_0.wav"].split == "val"
    assert by_path["marvin/0b40aa8e_nohash_0.wav"].label == UNKNOWN
    assert by_path["no/ffd2ba2f_nohash_1.wav"].split == "test"
    assert sum(c.split == "train" for c in ds.clips) == 70 - 4
    assert by_path["bed/c4e00ee9_nohash_1.wav"].speaker == "c4e00ee9"



def test_split_lists_written_by_other_tools(tmp_path):
    """A list saved with a byte-order mark (Notepad), entries with './' (`find .`) or backslashes are
    the same clips; a list none of whose entries is a clip is an error, not a silent all-train split."""
    root = _tree(tmp_path)
    (root / "validation_list.txt").write_text("\ufeffyes/0a7c2a8d_nohash_0.wav\r\n./yes/0a7c2a8d_nohash_1.wav\r\n"
                                              "marvin\\0b40aa8e_nohash_0.wav\r\n", encoding="utf-8")
    ds = load_dataset(root, ["yes", "no", "up"])
    by_path = {c.path.relative_to(root).as_posix(): c.split for c in ds.clips}
    assert [k for k, v in by_path.items() if v == "val"] == ["marvin/0b40aa8e_nohash_0.wav",
                                                             "yes/0a7c2a8d_nohash_0.wav", "yes/0a7c2a8d_nohash_1.wav"]
    (root / "testing_list.txt").write_text("data/no/ffd2ba2f_nohash_1.wav\n")
    with pytest.raises(DatasetError, match=r"testing_list\.txt: none of its 1 entries is a clip of the dataset "
                                           r"\(e\.g\. 'data/no/ffd2ba2f_nohash_1\.wav'; entries are paths relative to"):
        load_dataset(root, ["yes", "no", "up"])

def test_hash_rule_keeps_a_speaker_in_one_split(tmp_path):
    ds = load_dataset(_tree(tmp_path, lists=False), ["yes", "no"])
    for s in SPEAKERS:
        assert len({c.split for c in ds.clips if c.speaker == s}) == 1
    # the rule only looks at the speaker part of the name
    assert which_split("abc_nohash_0.wav") == which_split("abc_nohash_7.wav")
    splits = [which_split(f"spk{i}_nohash_0.wav") for i in range(4000)]
    assert 0.08 < splits.count("val") / 4000 < 0.12 and 0.08 < splits.count("test") / 4000 < 0.12


def test_hash_rule_matches_reference_values():
    # values computed from the published rule: sha1(speaker) mod 2^27 scaled to percent
    import hashlib
    for name in ["0a7c2a8d_nohash_0.wav", "ffd2ba2f_nohash_3.wav", "espk0001_nohash_0.wav"]:
        h = int(hashlib.sha1(name.split("_nohash_")[0].encode()).hexdigest(), 16)
        pct = (h % 2**27) * (100.0 / (2**27 - 1))
        want = "val" if pct < 10 else "test" if pct < 20 else "train"
        assert which_split(name) == want
    assert speaker_of("x/ojt0003_nohash_12.wav") == "ojt0003"


def test_select_balances_unknown_and_silence(tmp_path):
    ds = load_dataset(_tree(tmp_path, lists=False), ["yes", "no"])
    sel = ds.select("all", seed=3)
    n_cmd = sum(c.label in ("yes", "no") for c in sel)
    assert n_cmd == 28
    assert sum(c.label == UNKNOWN for c in sel) == 14 and sum(c.label == SILENCE for c in sel) == 14
    assert sel == ds.select("all", seed=3)
    assert [c.path for c in sel if c.label == UNKNOWN] != [c.path for c in ds.select("all", seed=4) if c.label == UNKNOWN]
    with pytest.raises(DatasetError, match="split must be"):
        ds.select("training")


def test_fingerprint_changes_with_content(tmp_path):
    ds = load_dataset(_tree(tmp_path), ["yes"])
    a = ds.fingerprint()
    write_wav(tmp_path / "yes" / f"{SPEAKERS[0]}_nohash_0.wav", np.ones(160, np.int16))
    assert load_dataset(tmp_path, ["yes"]).fingerprint() != a
    b = load_dataset(tmp_path, ["yes"]).fingerprint()
    (tmp_path / "validation_list.txt").write_text("yes/0a7c2a8d_nohash_0.wav\n")  # one clip moves to train
    assert load_dataset(tmp_path, ["yes"]).fingerprint() != b


def test_bad_datasets_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
    _tree(tmp_path)
    with pytest.raises(DatasetError, match=r"no folder for command word\(s\) \['left'\]"):
        load_dataset(tmp_path, ["yes", "left"])
    with pytest.raises(DatasetError, match=r"^words \(--words\): repeated command word in \['yes', 'yes'\]$"):
        load_dataset(tmp_path, ["yes", "yes"])
    with pytest.raises(DatasetError, match=r"^words \(--words\): invalid command word\(s\) \['_silence_'\]$"):
        load_dataset(tmp_path, ["_silence_"])
    with pytest.raises(DatasetError, match=r"^words \(--words\): at least one command word is needed$"):
        load_dataset(tmp_path, [])
    (tmp_path / "down").mkdir()
    with pytest.raises(DatasetError, match="hold no .wav"):
        load_dataset(tmp_path, ["down"])


def test_dataset_command(tmp_path, capsys):
    _tree(tmp_path)
    assert main(["dataset", str(tmp_path), "--words", "yes,no"]) == 0
    out = capsys.readouterr().out
    assert "marvin" in out and "_unknown_" in out and "70 clips" in out
    assert main(["dataset", str(tmp_path / "missing")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err


def test_fingerprint_names_a_folder_or_dangling_link_posing_as_a_wav(tmp_path):
    _tree(tmp_path)
    (tmp_path / "yes" / f"{SPEAKERS[0]}_nohash_7.wav").mkdir()
    with pytest.raises(DatasetError, match=f"{SPEAKERS[0]}_nohash_7.wav: is a folder, not a WAV file"):
        load_dataset(tmp_path, ["yes"]).fingerprint()
    (tmp_path / "yes" / f"{SPEAKERS[0]}_nohash_7.wav").rmdir()
    (tmp_path / "yes" / f"{SPEAKERS[0]}_nohash_8.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(DatasetError, match=r"_nohash_8.wav: cannot read \(No such file or directory\)"):
        load_dataset(tmp_path, ["yes"]).fingerprint()
    with pytest.raises(DatasetError, match="is a file, not a dataset folder"):
        load_dataset(tmp_path / "LICENSE")


def test_hidden_junk_is_not_a_clip_and_odd_names_hash(tmp_path, capsys):
    """dataset counted .DS_Store.wav and macOS's ._copies, which train then refused; a file name that
    is not UTF-8 crashed the summary and the fingerprint."""
    import os

    from edgekws.cli import main

    _tree(tmp_path)
    before = load_dataset(tmp_path, ["yes"])
    (tmp_path / "yes" / ".DS_Store.wav").write_bytes(b"junk")
    (tmp_path / "yes" / f"._{SPEAKERS[0]}_nohash_0.wav").write_bytes(b"AppleDouble")
    after = load_dataset(tmp_path, ["yes"])
    assert [c.path for c in after.clips] == [c.path for c in before.clips]
    assert after.fingerprint() == before.fingerprint()
    odd = tmp_path / "yes" / os.fsdecode(b"\xffspk_nohash_0.wav")
    odd.write_bytes((tmp_path / "yes" / f"{SPEAKERS[0]}_nohash_0.wav").read_bytes())
    ds = load_dataset(tmp_path, ["yes"])
    assert odd in [c.path for c in ds.clips] and len(ds.fingerprint()) == 64
    assert main(["dataset", str(tmp_path), "--words", "yes"]) == 0
    assert which_split(odd.name) in ("train", "val", "test")      # the hash rule, without list files
    assert which_split("spk_nohash_0.wav") == which_split("spk_nohash_9.wav")


@pytest.mark.parametrize("text, message", [
    ("yes,,no", r"--words: 'yes,,no' has an empty word \(two commas in a row, or one at an end\)"),
    ("yes,no,", r"--words: 'yes,no,' has an empty word"),
    (" , ", r"--words: no words in ' , '"),
    ("yes,no,yes", r"--words: yes given more than once in 'yes,no,yes'"),
])
def test_words_option_refuses_empty_and_repeated_words(tmp_path, capsys, text, message):
    with pytest.raises(DatasetError, match=message):
        parse_words(text)
    _tree(tmp_path)
    assert main(["dataset", str(tmp_path), "--words", text]) == 2
    assert "--words: " in capsys.readouterr().err
    assert parse_words(" yes , no ") == ["yes", "no"] and parse_words(None) is None
