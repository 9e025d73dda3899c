"""The benchmark and evaluation scripts in tools/ refuse absurd values with argparse's one-line error
(exit status 2), where a zero count used to end in a traceback or a table of nan."""

import pytest

from tool_helpers import load_tool

CASES = [
    ("bench_augment", ["--rounds", "0"], "argument --rounds: must be 1 or more, got 0"),
    ("bench_augment", ["--clips", "-3"], "argument --clips: must be 1 or more, got -3"),
    ("bench_epoch", ["--rounds", "0"], "argument --rounds: must be 1 or more, got 0"),
    ("bench_epoch", ["--workers", "0", "-1"], "argument --workers: must be 0 or more, got -1"),
    ("bench_frontend", ["--clips", "0"], "argument --clips: must be 1 or more, got 0"),
    ("bench_infer", ["--repeats", "0"], "argument --repeats: must be 1 or more, got 0"),
    ("bench_retrain", ["--shots", "0"], "argument --shots: must be 1 or more, got 0"),
    ("bench_train", ["--rounds", "0"], "argument --rounds: must be 1 or more, got 0"),
    ("qemu_count", ["--hops", "0"], "argument --hops: must be 1 or more, got 0"),
    ("qemu_count", ["--firmware", "nowhere"], "--firmware nowhere: not a firmware tree (no src/frontend.c)"),
    ("world_variants", ["d", "o", "--variants", "0"], "argument --variants: must be 1 or more, got 0"),
    ("gen_golden", ["--out", "nowhere"], "--out nowhere: not a firmware tree (no src/frontend.c and include/ekws/)"),
]


@pytest.mark.parametrize("tool,argv,message", CASES, ids=[f"{c[0]}:{c[1][-2]}" for c in CASES])
def test_tool_refuses_absurd_values(tool, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool(tool).main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_world_variants_refuses_a_file_as_out(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "yes").mkdir(parents=True)
    out = tmp_path / "out"
    out.write_text("mine")
    assert load_tool("world_variants").main([str(data), str(out), "--variants", "1"]) == 1
    assert f"{out}: is a file, not a folder" in capsys.readouterr().err
    assert out.read_text() == "mine"


RUN_CASES = [   # a script run as a program: an EdgekwsError is one line and exit status 2 (cliargs.run_tool)
    ("bench_infer", ["{tmp}/nowhere"], "bench_infer.py: error: {tmp}/nowhere: no such model bundle folder"),
    ("eval_adabn", ["--work", "{tmp}/nowhere"], "eval_adabn.py: error: {tmp}/nowhere/model-espeak-to-openjtalk: "
                                                 "no such model bundle folder"),
    ("bench_epoch", ["--data", "{tmp}/nowhere"], "bench_epoch.py: error: {tmp}/nowhere: no such dataset folder"),
    ("eval_voices", ["--work", "{tmp}/w", "--seeds", "a"], "argument --seeds: expected a whole number, got 'a'"),
    ("qemu_run", ["--seconds", "-1"], "argument --seconds: must be a finite number above 0, got -1"),
]


@pytest.mark.parametrize("tool,argv,message", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_tool_run_as_a_program_reports_a_mistake_in_one_line(tool, argv, message, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / f"{tool}.py"
    proc = subprocess.run([sys.executable, str(script), *(a.format(tmp=tmp_path) for a in argv)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message.format(tmp=tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr



def test_world_variants_refuses_data_without_speakers_of_the_engine(tmp_path, capsys):
    """A dataset of a person's recordings wrote '0 clips written' and exit 0."""
    pytest.importorskip("pyworld")
    data = tmp_path / "data"
    (data / "yes").mkdir(parents=True)
    (data / "yes" / "alice_nohash_0.wav").write_bytes(b"RIFF")
    assert load_tool("world_variants").main([str(data), str(tmp_path / "out"), "--variants", "1"]) == 1
    assert "no clips of espeak speakers (file names espk…_nohash_…) to make variants of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
