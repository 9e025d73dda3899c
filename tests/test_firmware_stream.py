"""The C detector and streaming pipeline (firmware/src/detector.c, pipeline.c): equal to the Python
reference step by step through ctypes, the C golden test (test_detector.c) passing against a
golden file that regenerates identically, and the pipeline's argument checks."""

import ctypes as C
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekws.errors import EdgekwsError
from edgekws.firmware import find_compiler, firmware_dir, load_library
from edgekws.stream.cpipeline import CPipeline, _DetectorConfig
from edgekws.stream.detector import StreamConfig, detect_steps, exp_lut
from edgekws.stream.golden import GOLDEN, gen_detector_golden, pipeline_case
from edgekws.stream.pipeline import detect_audio


class _Det(C.Structure):
    _fields_ = [("label", C.c_int32), ("score_q15", C.c_int32)]


def c_detect(logits, lut, thr, smooth, refractory):
    lib = load_library()
    lib.ekws_detector_step.argtypes = [C.c_void_p, C.c_void_p, C.c_size_t, C.POINTER(_Det)]
    lut = np.ascontiguousarray(lut, np.uint16)
    thr = np.ascontiguousarray(thr, np.int32)
    cfg = _DetectorConfig(logits.shape[1], smooth, refractory, lut.ctypes.data_as(C.POINTER(C.c_uint16)),
                          thr.ctypes.data_as(C.POINTER(C.c_int32)))
    state = C.create_string_buffer(64 * 1024)  # larger than ekws_detector_t
    assert lib.ekws_detector_init(state, C.byref(cfg)) == 0
    out, d = [], _Det()
    for t, x in enumerate(np.ascontiguousarray(logits, np.int8)):
        assert lib.ekws_detector_step(state, x.ctypes.data, len(x), C.byref(d)) == 0
        if d.label >= 0:
            out.append((t, d.label, d.score_q15))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_c_detector_equals_python(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 13))
    logits = rng.integers(-128, 128, (300, k)).astype(np.int8)
    logits[(np.arange(300) // 9) % 3 == 1, int(rng.integers(k))] = 127
    lut = exp_lut(rng.uniform(0.02, 0.4))
    thr = rng.integers(-1, 32769, k)
    smooth, refractory = int(rng.integers(1, 17)), int(rng.integers(0, 9))
    want = detect_steps(logits, lut, thr, smooth, refractory)
    assert c_detect(logits, lut, thr, smooth, refractory) == want


def test_c_golden_test_passes_and_golden_regenerates_identically(tmp_path):
    root = firmware_dir()
    assert gen_detector_golden()[GOLDEN] == (root / GOLDEN).read_text(), \
        "regenerate with: python -m edgekws.stream.golden"
    srcs = [str(p) for p in sorted((root / "src").glob("*.c")) + sorted((root / "generated").glob("*.c"))]
    exe = tmp_path / "test_detector"
    cmd = [*find_compiler(), "-std=c99", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", f"-I{root / 'include'}",
           f"-I{root / 'generated'}", f"-I{root / 'tests'}", str(root / "tests" / "test_detector.c"), *srcs,
           "-o", str(exe), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("test_detector: ok")


def test_pipeline_chunks_and_reset():
    setup, audio, want = pipeline_case()
    keys = [(d.frame, d.index, d.score_q15) for d in want]
    pipe = CPipeline(setup)
    got = []
    for i in range(0, len(audio), 777):
        got += pipe.push(audio[i:i + 777])
    assert [(d.frame, d.index, d.score_q15) for d in got] == keys
    pipe.reset()
    assert [(d.frame, d.index, d.score_q15) for d in pipe.push(audio)] == keys


def test_pipeline_refuses_a_detector_for_another_model():
    setup, _, _ = pipeline_case()
    setup.labels = setup.labels + ["extra"]
    with pytest.raises(EdgekwsError, match="ekws_pipeline_init failed: invalid configuration"):
        CPipeline(setup)


def test_pipeline_buffer_check():
    setup, audio, _ = pipeline_case()
    pipe = CPipeline(setup)
    lib = pipe.lib
    got = C.c_size_t(0)
    st = lib.ekws_pipeline_push(pipe._state, np.ascontiguousarray(audio).ctypes.data, len(audio), None, 0, C.byref(got))
    assert lib.ekws_status_str(st).decode() == "null pointer"
    st = lib.ekws_pipeline_push(pipe._state, None, 0, None, 0, C.byref(got))
    assert st == 0 and got.value == 0


def test_pipeline_with_the_default_settings_equals_python():
    """The shipped defaults (a step every 2 frames, a mean of 8, 25 steps refractory) on 6 s of
    speech-like audio: the C pipeline and the numpy reference detect the same words."""
    from edgekws.features.signals import speech_like
    from edgekws.stream.engines import NumpyEngine
    from edgekws.stream.pipeline import run_logits, step_scores

    setup, _, _ = pipeline_case()
    setup.config = StreamConfig.default(setup.labels)
    assert (setup.config.hop_every, setup.config.smooth, setup.config.refractory) == (2, 8, 25)
    audio = np.concatenate([speech_like(np.random.default_rng(20 + i), 1.0) for i in range(6)])
    s = step_scores(setup, run_logits(setup, audio, NumpyEngine(setup.qm))[0])
    setup.config.thresholds = {lab: int(np.percentile(s[:, k], 80)) for k, lab in enumerate(setup.labels) if k >= 2}
    want = [(d.frame, d.index, d.score_q15) for d in detect_audio(setup, audio, "numpy", end_silence=0)]
    assert len(want) >= 2
    assert [(d.frame, d.index, d.score_q15) for d in CPipeline(setup).push(audio)] == want
    frames = [f for f, _, _ in want]
    assert min(np.diff(frames)) > 2 * 25  # the refractory period: 25 steps of 2 frames
