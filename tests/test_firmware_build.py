"""How Python builds and loads the C library (edgekws.firmware) and what its ctypes wrappers check
before C sees an argument: the flags that keep C and numpy bit-equal, $CC with arguments, a cache
that works without a compiler, a library other users can load, and no out-of-bounds read or write
from a wrong shape or size."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekws import firmware
from edgekws.errors import EdgekwsError
from edgekws.firmware import CFLAGS, FirmwareBuildError, build_library, find_compiler, firmware_dir

try:
    find_compiler()
except FirmwareBuildError:   # no C compiler: nothing here can be built
    pytest.skip("no C compiler", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


def test_no_fused_multiply_add_in_any_compiler():
    """head.c's float32 training equals numpy's bit for bit only without FMA contraction; GCC's
    -std=c99 implies it, clang's does not."""
    assert "-ffp-contract=off" in CFLAGS


def test_cc_keeps_its_arguments(monkeypatch):
    monkeypatch.setenv("CC", "gcc -DEKWS_UNUSED_FLAG=1")
    cmd = find_compiler()
    assert Path(cmd[0]).name == "gcc" and cmd[1:] == ["-DEKWS_UNUSED_FLAG=1"]
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    with pytest.raises(FirmwareBuildError, match="no C compiler found"):
        find_compiler()


def test_a_firmware_dir_given_by_name_is_that_or_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKWS_FIRMWARE_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FirmwareBuildError, match=f"EDGEKWS_FIRMWARE_DIR={tmp_path / 'nowhere'}: not a firmware tree"):
        firmware_dir()
    monkeypatch.setenv("EDGEKWS_FIRMWARE_DIR", str(ROOT / "firmware"))
    assert firmware_dir() == ROOT / "firmware"


def test_the_cached_library_loads_for_others_and_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKWS_CACHE_DIR", str(tmp_path))
    lib = build_library(["-DEKWS_TEST_BUILD_KEY=1"])       # a flag set of its own: a fresh build here
    assert tmp_path in lib.parents
    assert stat.S_IMODE(lib.stat().st_mode) & 0o055 == 0o055   # group and others may read and load it
    monkeypatch.setenv("CC", "no-such-compiler-xyz")           # the compiler is gone (a Pi after the build)
    assert build_library(["-DEKWS_TEST_BUILD_KEY=1"]) == lib
    with pytest.raises(FirmwareBuildError, match="no C compiler found"):
        build_library(["-DEKWS_TEST_BUILD_KEY=2"])              # never built: nothing to fall back on


def test_the_c_head_trainer_checks_what_numpy_checks():
    """C copies C x E weights and reads every example row: a wrong shape read past the buffer
    (AddressSanitizer: heap-buffer-overflow in ekws_head_set_weights), and add() stored half a batch."""
    from edgekws.retrain import HeadConfig, HeadTrainer
    from edgekws.retrain.chead import CHeadTrainer

    cfg = HeadConfig(4, 8, max_examples=10)
    q = np.arange(40, dtype=np.int8).reshape(5, 8)
    for tr in (HeadTrainer(cfg, 0.05, 0), CHeadTrainer(cfg, 0.05, 0)):
        with pytest.raises(EdgekwsError, match=r"head: weights must be \(4, 8\) and bias \(4,\), got \(2, 8\) and \(4,\)"):
            tr.set_weights(np.zeros((2, 8), np.float32), np.zeros(4, np.float32))
        with pytest.raises(EdgekwsError, match=r"with N labels, got int8 \(5, 8\) and 2 labels"):
            tr.add(q, [0, 1])
        with pytest.raises(EdgekwsError, match=r"labels must be integers in \[0, 4\)"):
            tr.add(q, [0, 1, 9, 2, 3])                            # the third is bad: nothing is stored
        with pytest.raises(EdgekwsError, match=r"labels must be integers in \[0, 4\)"):
            tr.add(q[:1], [2 ** 32 + 1])                          # no wrap to 1 in C's uint32
        assert tr.num_examples == 0
        tr.add(q, [0, 1, 2, 3, 0])
        assert tr.num_examples == 5


def test_the_c_model_refuses_a_bad_arena_size():
    from edgekws.bundle import Bundle
    from edgekws.export.c import model_blob
    from edgekws.export.cruntime import CModel
    from edgekws.quant import load_quantized

    blob = model_blob(load_quantized(Bundle.load(ROOT / "data" / "fixtures" / "base-ja")))
    for bad in (-4, 2.5, True, 2 ** 40):   # -4 became SIZE_MAX - 3 in C: a 4-byte arena written past
        with pytest.raises(EdgekwsError, match=r"C model: arena_size must be an integer in \[0, 2\^31\)"):
            CModel(blob, arena_size=bad)


def test_a_second_process_reuses_the_build(tmp_path):
    """The key does not depend on the process: a second interpreter finds the first one's build."""
    env = {**os.environ, "EDGEKWS_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "from edgekws.firmware import build_library; print(build_library(['-DEKWS_TEST_BUILD_KEY=3']))"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0 and first.stdout == again.stdout and first.stdout.strip()
    assert (Path(first.stdout.strip()).parent / firmware.SOURCE_KEY).is_file()
