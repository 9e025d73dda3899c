"""Bad option values end in argparse's clean error (exit 2, the option named), never a traceback.

Each case below was once a raw traceback from numpy or the stream builder (found by trying -1, 0, nan,
inf on every numeric option of every subcommand).
"""

import argparse
import io
import sys
from pathlib import Path

import pytest

from edgekws import cliargs
from edgekws.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


class ClosedPipe(io.StringIO):
    """sys.stdout after its reader has gone (`edgekws … | head -1`): every write is a BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _required(sub):
    """Minimal argv that satisfies a subcommand's required positionals and options."""
    argv = []
    for a in sub._actions:
        if not a.option_strings and a.nargs not in ("?", "*") and a.dest != "help":
            argv.append("x")
        elif a.option_strings and a.required:
            argv += [a.option_strings[-1], "x" if not a.choices else next(iter(a.choices))]
    return argv


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_every_seed_option_refuses_a_negative_seed(capsys):
    subs = _subparsers()
    with_seed = [name for name, sub in subs.items() if any("--seed" in a.option_strings for a in sub._actions)]
    # the commands that once passed -1 on to numpy, and the others that take a seed
    assert {"train", "quantize", "retrain", "adapt", "eval-stream", "demo", "synth"} <= set(with_seed)
    for name in with_seed:
        line = _error(capsys, [name, *_required(subs[name]), "--seed", "-1"])
        assert line == f"edgekws {name}: error: argument --seed: must be 0 or more, got -1", name
        line = _error(capsys, [name, *_required(subs[name]), "--seed", "1e3"])
        assert line == f"edgekws {name}: error: argument --seed: expected a whole number, got '1e3'", name


@pytest.mark.parametrize("argv, message", [
    (["eval-stream", "m", "d", "--hop-every", "0"], "argument --hop-every: must be 1 or more, got 0"),
    (["eval-stream", "m", "d", "--negative-minutes", "nan"],
     "argument --negative-minutes: must be a finite number above 0, got nan"),
    (["eval-stream", "m", "d", "--negative-minutes", "inf"],
     "argument --negative-minutes: must be a finite number above 0, got inf"),
    (["eval-stream", "m", "d", "--negative-minutes", "0"],
     "argument --negative-minutes: must be a finite number above 0, got 0"),
    (["eval-voices", "--work", "w", "--enroll", "-1"], "argument --enroll: must be 1 or more, got -1"),
    (["eval-voices", "--work", "w", "--enroll-noisy", "-2"], "argument --enroll-noisy: must be 0 or more, got -2"),
    (["eval-voices", "--work", "w", "--seeds", "0,-1"], "argument --seeds: must be 0 or more, got -1"),
    (["eval-voices", "--work", "w", "--seeds", "0,a"], "argument --seeds: expected a whole number, got 'a'"),
    (["eval-voices", "--work", "w", "--seeds", ","],
     "argument --seeds: expected comma-separated seeds such as 0,1,2, got ','"),
    (["predict", "m", "a.wav", "--top", "0"], "argument --top: must be 1 or more, got 0"),
    (["retrain", "m", "d", "--out", "o", "--cache", __file__], f"argument --cache: {__file__} is a file, not a folder"),
    (["train", "d", "--out", "o", "--cache", __file__], f"argument --cache: {__file__} is a file, not a folder"),
    (["record", "--out", "d", "--takes", "0"], "argument --takes: must be 1 or more, got 0"),
    (["record", "--out", "d", "--seconds=-inf"], "argument --seconds: must be a finite number above 0, got -inf"),
    (["synth", "--lang", "en", "--out", "d", "--speakers", "two"],
     "argument --speakers: expected a whole number, got 'two'"),
])
def test_bad_values_are_argument_errors(capsys, argv, message):
    assert _error(capsys, argv) == f"edgekws {argv[0]}: error: {message}"


@pytest.mark.parametrize("argv, message", [
    (["eval-stream", "m", "d", "--negative-minutes", "1e9"], "--negative-minutes: must be in (0, 600], got 1e+09"),
    (["eval-stream", str(ROOT / "data" / "fixtures" / "base-ja"), "d", "--hop-every", "50"],
     "hop_every 50 (--hop-every, or the bundle's 'stream' setting): must be at most the model's window of 49 frames"),
    (["eval-stream", "m", "d", "--target-fa", "2"], "--target-fa sets how --tune tunes; give --tune too"),
    (["eval-stream", "m", "d", "--shrink", "0"], "--shrink sets how --tune tunes; give --tune too"),
    (["report", "m", "--split", "val"], "--split chooses the split of --data; give --data DATA too"),
    # an empty value (an unset $WAV in --file "$WAV") was read as no option: listen took the microphone
    (["listen", "m", "--file", ""], "argument --file: empty value"),
    (["eval", "m", "d", "--json="], "argument --json: empty value"),
    (["features", "a.wav", "--save", ""], "argument --save: empty value"),
    (["predict", "", "a.wav"], "a positional argument: empty value"),
    (["eval-voices", "--ja", "d", "--work", "w", "--enroll-noisy", "3"],
     "--enroll-noisy adds noisy copies to enrollment; give --enroll K too"),
    (["eval-voices", "--ja", "d", "--work", "w", "--enroll", "1", "--enroll-noisy", "40"],
     "--enroll-noisy: must be an integer in 0..32, got 40"),
    (["eval-voices", "--ja", "d", "--work", "w", "--enroll", "1", "--arch", "gru"],
     "--enroll retrains an int8 head, and --arch gru has layers the int8 pipeline does not support; choose a DS-CNN, cnn or dnn architecture"),
    (["train", "d", "--out", "o", "--batch", "1"], "--batch: must be 2 or more (BatchNorm needs more than one example), got 1"),
    (["train", "d", "--out", "o", "--unknown-ratio", "1e307"], "--unknown-ratio: must be a number in (0, 1000], got 1e+307"),
    (["train", "d", "--out", "o", "--hard-negatives", "1e308"], "--hard-negatives: must be a number in [0, 1000], got 1e+308"),
    (["train", "d", "--out", "o", "--consistency", "nan"], "--consistency: must be a weight in [0, 100], got nan"),
    (["eval-voices", "--ja", "d", "--work", "w", "--consistency", "-2"], "--consistency: must be a weight in [0, 100], got -2.0"),
    (["train", "d", "--out", "o", "--consistency", "0", "--consistency-from", "40"],
     "--consistency-from: starts consistency training late; it needs a nonzero --consistency W (0, or --no-augment, "
     "turns the second voice off)"),
    (["train", "d", "--out", "o", "--no-augment", "--consistency-from", "5"],
     "--consistency-from: starts consistency training late; it needs a nonzero --consistency W (0, or --no-augment, "
     "turns the second voice off)"),
    (["train", "d", "--out", "o", "--epochs", "30", "--consistency-from", "30"],
     "--consistency-from: must be an epoch count in [0, 30) (the training's epochs), got 30"),
    (["train", "d", "--out", "o", "--consistency", "2", "--consistency-from", "60"],
     "--consistency-from: must be an epoch count in [0, 60) (the training's epochs), got 60"),
    (["eval-voices", "--ja", "d", "--work", "w", "--consistency", "2", "--epochs", "30", "--consistency-from", "30"],
     "--consistency-from: must be an epoch count in [0, 30) (the training's epochs), got 30"),
    (["listen", "m", "--file", "a.wav", "--device", "3"], "--device is for --mic; a --file is read whole"),
    (["listen", "m", "--file", "a.wav", "--seconds", "5"], "--seconds is for --mic; a --file is read whole"),
    (["record", "--out", "d", "--background", "--words", "yes"],
     "--words and --takes are for word recording; --background records noise for --seconds"),
    (["record", "--out", "d", "--background", "--takes", "3"],
     "--words and --takes are for word recording; --background records noise for --seconds"),
    (["record", "--out", "d", "--seconds", "3"], "--seconds is for --background; words are recorded in takes (--takes)"),
    (["eval-voices", "--ja", "d", "--work", "w", "--snr", "nan"], "--snr: expected a level in dB from -20 to 80, got nan"),
    (["eval-voices", "--ja", "d", "--work", "w", "--snr", "-500"], "--snr: expected a level in dB from -20 to 80, got -500"),
    (["eval-voices", "--ja", ".", "--work", "w"], "--work w: is inside the input folder --ja .; choose a folder outside it"),
    (["eval-voices", "--ja", "d", "--work", "w", "--json", "d/r.json"],
     "--json d/r.json: is inside the input folder --ja d; choose a file outside it"),
])
def test_bad_values_found_before_any_work(capsys, argv, message, tmp_path, monkeypatch):
    from edgekws.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"edgekws {argv[0]}: error: {message}"
    assert not any(tmp_path.iterdir())            # refused before anything was written


def test_good_values_parse():
    args = build_parser().parse_args(["eval-voices", "--work", "w", "--seeds", " 0, 2,7 ", "--enroll", "5"])
    assert args.seeds == (0, 2, 7) and args.enroll == 5
    assert build_parser().parse_args(["eval-voices", "--work", "w"]).seeds == (0,)
    args = build_parser().parse_args(["eval-stream", "m", "d", "--negative-minutes", "0.5", "--hop-every", "3"])
    assert args.negative_minutes == 0.5 and args.hop_every == 3
    assert cliargs.seed("0") == 0 and cliargs.seed(str(2**40)) == 2**40


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8_is_printed_escaped_not_a_crash(tmp_path):
    """Under a strict UTF-8 locale (en_US.UTF-8), printing a name decoded with surrogates raised
    UnicodeEncodeError after the work was done."""
    import os
    import subprocess

    import numpy as np

    from edgekws.audio import write_wav

    name = os.fsdecode(b"bad\xffname.wav")
    write_wav(tmp_path / name, np.zeros(16000, np.float32))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-m", "edgekws", "predict", str(root / "data/fixtures/base-ja"),
                        str(tmp_path / name)], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"bad\\udcffname.wav" in r.stdout and b"Traceback" not in r.stderr


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`edgekws dataset DATA | head -1`: BrokenPipeError is an OSError without a file name, which the
    generic OSError branch re-raised as a traceback before the pipe branch could see it."""
    from edgekws.cli import main

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["dataset", str(ROOT / "data" / "fixtures" / "en-shots")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_empty_values_that_mean_something_are_kept():
    """--cache "" keeps features in memory only, --device "" is the default device, --c "" the bundle's c/."""
    from edgekws.cli import _empty_value

    assert _empty_value(["eval", "m", "d", "--cache", ""]) == ""
    assert _empty_value(["listen", "m", "--mic", "--device", ""]) == ""
    assert _empty_value(["eval", "m", "d", "--cache="]) == ""
    assert _empty_value(["eval", "m", "d", "--json", ""]) == "argument --json"
    assert _empty_value(["eval", "", "d"]) == "a positional argument"


def test_ctrl_c_while_the_commands_are_imported_is_quiet(monkeypatch, capsys):
    import edgekws.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["eval", "m", "d"]) == 130
    assert capsys.readouterr().err == "\nedgekws: interrupted\n"


def test_negative_snr_ranges_reach_their_options(tmp_path):
    """`--copy-snr -5,10` (accepted by the checks) ended in argparse's 'expected one argument'."""
    from edgekws.cli import _negative_lists

    argv = _negative_lists(["retrain", "m", "d", "--out", "o", "--copy-snr", "-5,10"])
    assert argv[-1] == "--copy-snr=-5,10"
    assert build_parser().parse_args(argv).copy_snr == "-5,10"
    argv = _negative_lists(["eval-stream", "m", "d", "--snr", "-.5,10"])
    assert build_parser().parse_args(argv).snr == "-.5,10"
    assert _negative_lists(["eval-stream", "m", "d", "--seed", "-3"])[-2:] == ["--seed", "-3"]   # others stay


def test_user_mistakes_in_the_environment_and_odd_paths_are_clean_errors(tmp_path, monkeypatch, capsys):
    """Each was a traceback: a symlink loop as a path (Python 3.11's resolve() raises RuntimeError),
    EDGEKWS_NUM_THREADS=abc, a device that refuses the write (/dev/full), CC with an open quote."""
    from edgekws.cli import main
    from edgekws.errors import EdgekwsError
    from edgekws.fileio import OutputError, atomic_write_text
    from edgekws.firmware import FirmwareBuildError, find_compiler
    from edgekws.nn import parallel

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    model = ROOT / "data" / "fixtures" / "base-ja"
    assert main(["train", str(ROOT / "data" / "fixtures" / "en-shots"), "--out", str(loop)]) == 2
    assert f"edgekws train: error: {loop}: a symbolic link that points to itself (a loop)" in capsys.readouterr().err
    assert main(["eval", str(model), str(tmp_path), "--json", str(loop)]) == 2
    assert f"{loop}: a symbolic link that points to itself" in capsys.readouterr().err

    monkeypatch.setenv("EDGEKWS_NUM_THREADS", "abc")
    monkeypatch.setitem(parallel._state, "threads", None)
    with pytest.raises(EdgekwsError, match="EDGEKWS_NUM_THREADS=abc: expected a whole number from 0 to 256"):
        parallel.get_num_threads()
    monkeypatch.setenv("EDGEKWS_NUM_THREADS", "2")
    assert parallel.get_num_threads() == 2
    monkeypatch.setenv("EDGEKWS_NUM_THREADS", "0")   # one thread, as before
    monkeypatch.setitem(parallel._state, "threads", None)
    assert parallel.get_num_threads() == 1

    if Path("/dev/full").exists():
        with pytest.raises(OutputError, match="/dev/full: cannot write"):
            atomic_write_text("/dev/full", "{}")
        with pytest.raises(OutputError, match="/dev/full: cannot write"):
            atomic_write_text("/dev/full", "x" * 100_000)   # fails in write(), not at the flush

    monkeypatch.setenv("CC", '"gcc')
    with pytest.raises(FirmwareBuildError, match="CC=\"gcc: cannot be split into words"):
        find_compiler()


def test_integer_and_number_checks_refuse_bools_and_keep_json_values_plain():
    """is_int / is_real (edgekws.errors) behind every API argument check: True is not a count, numpy
    scalars pass where the value is used at once, and not where it is written to JSON."""
    import numpy as np

    from edgekws.errors import EdgekwsError, is_int, is_real
    from edgekws.retrain.core import check_shots
    from edgekws.train import TrainConfig

    assert [is_int(v) for v in (3, np.int64(3), np.uint8(3), True, np.bool_(True), 3.0, "3")] == \
        [True, True, True, False, False, False, False]
    assert not is_int(np.int64(3), numpy=False)
    assert [is_real(v) for v in (3, 0.5, np.float32(0.5), np.int16(2), False, 1j, np.complex128(1), "1")] == \
        [True, True, True, True, False, False, False, False]
    assert not is_real(np.float32(0.5), numpy=False)
    check_shots(np.int64(5))                     # used at once: a numpy integer is fine
    with pytest.raises(EdgekwsError, match=r"shots \(--shots\): must be a positive integer, got True"):
        check_shots(True)
    with pytest.raises(EdgekwsError, match=r"--seed: must be an integer in \[0, 2\^63\), got (np\.int64\()?1"):
        TrainConfig(seed=np.int64(1)).check()    # written to the manifest: json cannot write np.int64
    for bad, message in (({"lr": True}, "--lr: must be a number in (0, 10), got True"),
                         ({"unknown_ratio": "2"}, "--unknown-ratio: must be a number in (0, 1000], got '2'"),
                         ({"augment_prob": None}, "augment_prob: must be in [0, 1], got None")):
        with pytest.raises(EdgekwsError) as exc:   # once accepted (True as 1) or a raw TypeError
            TrainConfig(**bad).check()
        assert str(exc.value) == message
    with pytest.raises(EdgekwsError, match=r"^--lr: must be a number in \(0, 10\), got (np\.float32\()?0\.5"):
        TrainConfig(lr=np.float32(0.5)).check()  # the manifest is JSON


def test_counts_refuse_true_in_the_synth_and_augmentation_checks():
    """True == 1 once passed as --speakers, --seed or a resonance count through the Python API."""
    import numpy as np

    from edgekws.augment import AugmentConfig
    from edgekws.errors import EdgekwsError
    from edgekws.retrain.core import check_hyper
    from edgekws.synth.generator import _check_args

    _check_args(np.int64(4), 2, 1.0, 1, None, np.uint32(7))      # numpy integers stay fine
    with pytest.raises(EdgekwsError, match=r"^--speakers must be an integer in 1\.\.100000, got True$"):
        _check_args(True, 2, 1.0, 1, None, 0)
    with pytest.raises(EdgekwsError, match=r"^--seed must be a non-negative integer, got True$"):
        _check_args(4, 2, 1.0, 1, None, True)
    with pytest.raises(EdgekwsError, match=r"^--repeats must be an integer in 1\.\.100, got True$"):
        _check_args(4, 2, 1.0, True, None, 0)
    for bad, message in (({"resonances": True}, "resonances must be an integer in 0..8"),
                         ({"noise_prob": True}, "AugmentConfig.noise_prob must be a probability in [0, 1], got True"),
                         ({"sample_rate": None}, "AugmentConfig: sample_rate must be a positive integer"),   # was a raw
                         ({"shift_max_s": None}, "AugmentConfig: shift_max_s must be in [0, 1] s")):       # TypeError
        with pytest.raises(EdgekwsError) as exc:
            AugmentConfig(**bad)
        assert str(exc.value).endswith(message)
    with pytest.raises(EdgekwsError, match=r"must be numbers"):
        check_hyper({"lr": np.complex128(0.5)})                 # np.number let complex through
