"""Audio I/O: every PCM width and float, channel mixing, resampling, atomic writes, bad files."""

import os
import struct
import wave

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgekws.audio import StreamResampler, decode_wav, encode_wav, read_wav, resample, to_int16, write_wav
from edgekws.errors import AudioError


def _wav_bytes(samples: np.ndarray, rate: int, bits: int, fmt_tag: int = 1) -> bytes:
    """Hand-built WAV: samples (n, ch) already in the target integer/float representation."""
    n, ch = samples.shape
    width = bits // 8
    if fmt_tag == 3:
        pcm = samples.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 8:
        pcm = samples.astype(np.uint8).tobytes()
    elif bits == 24:
        v = samples.astype(np.int64).ravel() & 0xFFFFFF
        pcm = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], 1).astype(np.uint8).tobytes()
    else:
        pcm = samples.astype({16: "<i2", 32: "<i4"}[bits]).tobytes()
    fmt = struct.pack("<HHIIHH", fmt_tag, ch, rate, rate * ch * width, ch * width, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_int16_roundtrip_is_bit_exact(tmp_path):
    x = np.random.default_rng(0).integers(-32768, 32768, 16000).astype(np.int16)
    write_wav(tmp_path / "a.wav", x)
    np.testing.assert_array_equal(read_wav(tmp_path / "a.wav"), x)
    with wave.open(str(tmp_path / "a.wav")) as w:  # the standard library agrees on the format
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)


@pytest.mark.parametrize("bits,tag,scale", [(8, 1, 128), (16, 1, 32768), (24, 1, 1 << 23),
                                            (32, 1, 1 << 31), (32, 3, 1.0), (64, 3, 1.0)])
def test_every_width_decodes_to_the_same_signal(bits, tag, scale):
    t = np.arange(1600) / 16000
    ref = 0.5 * np.sin(2 * np.pi * 440 * t)
    s = ref * scale
    if bits == 8:
        s = s + 128
    if tag == 1:
        s = np.rint(s)
    got = decode_wav(_wav_bytes(s[:, None], 16000, bits, tag), dtype="float32")
    assert got.dtype == np.float32 and got.shape == (1600,)
    np.testing.assert_allclose(got, ref, atol=1.0 / 128 if bits == 8 else 1e-4)


def test_stereo_is_mixed_to_mono_and_resampled():
    t = np.arange(44100) / 44100
    left = 0.25 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, left * 0.5], 1)
    got = decode_wav(_wav_bytes(np.rint(stereo * 32768), 44100, 16), dtype="float32")
    assert got.shape == (16000,)
    t16 = np.arange(16000) / 16000
    np.testing.assert_allclose(got[100:-100], 0.75 * 0.25 * np.sin(2 * np.pi * 300 * t16)[100:-100], atol=2e-3)


def test_resample_lengths_and_identity():
    x = np.random.default_rng(1).standard_normal(48000).astype(np.float32)
    assert resample(x, 48000, 16000).shape == (16000,)
    assert resample(x, 16000, 16000) is not x
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)


def test_to_int16_rounds_and_saturates():
    np.testing.assert_array_equal(to_int16(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5 / 32767])),
                                  [0, 32767, -32767, 32767, -32768, 0])


@pytest.mark.parametrize("data,msg", [
    (b"", "file is empty"),
    (b"hello world, not audio", "not a WAV file"),
    (b"RIFX" + b"\0" * 4 + b"WAVE", "big-endian"),
    (b"RIFF\x04\0\0\0WAVE", "no 'fmt ' chunk"),
])
def test_bad_headers_raise_audio_error(data, msg):
    with pytest.raises(AudioError, match=msg):
        decode_wav(data, name="x.wav")


def test_truncated_and_absurd_files(tmp_path):
    good = _wav_bytes(np.zeros((100, 1)), 16000, 16)
    with pytest.raises(AudioError, match="no 'data' chunk"):
        decode_wav(good[:36], name="t.wav")
    absurd = bytearray(good)
    struct.pack_into("<H", absurd, 22, 0)  # zero channels
    with pytest.raises(AudioError, match="absurd channel count 0"):
        decode_wav(bytes(absurd), name="t.wav")
    absurd = bytearray(good)
    struct.pack_into("<I", absurd, 24, 5)  # 5 Hz
    with pytest.raises(AudioError, match="absurd sample rate 5 Hz"):
        decode_wav(bytes(absurd), name="t.wav")
    odd = bytearray(good)
    struct.pack_into("<H", odd, 34, 12)  # 12-bit PCM
    with pytest.raises(AudioError, match="unsupported encoding"):
        decode_wav(bytes(odd), name="t.wav")
    with pytest.raises(AudioError, match="no audio samples"):
        decode_wav(_wav_bytes(np.zeros((0, 1)), 16000, 16), name="t.wav")


def test_nan_samples_are_refused():
    x = np.array([[0.1], [np.nan], [0.2]])
    with pytest.raises(AudioError, match="NaN or infinite"):
        decode_wav(_wav_bytes(x, 16000, 32, 3), name="nan.wav")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="is a directory"):
        read_wav(tmp_path)
    p = tmp_path / "junk.wav"
    p.write_bytes(b"junk")
    with pytest.raises(AudioError, match=r"junk\.wav: not a WAV file"):
        read_wav(p)


def test_write_is_atomic_and_never_overwrites_when_asked(tmp_path):
    p = tmp_path / "sub" / "take.wav"
    write_wav(p, np.zeros(10, np.int16))
    before = p.read_bytes()
    with pytest.raises(AudioError, match="already exists"):
        write_wav(p, np.ones(10, np.int16), overwrite=False)
    assert p.read_bytes() == before
    with pytest.raises(AudioError, match="NaN"):
        write_wav(tmp_path / "bad.wav", np.array([np.nan]))
    assert not (tmp_path / "bad.wav").exists()
    assert [f for f in os.listdir(p.parent) if f.endswith(".tmp")] == []
    with pytest.raises(AudioError, match="mono"):
        encode_wav(np.zeros((2, 2)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_any_bytes_give_audio_or_audio_error(data):
    try:
        x = decode_wav(data, name="fuzz.wav")
    except AudioError:
        return
    assert x.dtype == np.int16 and x.ndim == 1 and x.size > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(0, 60))
def test_fuzz_mutated_headers(tail, cut):
    base = bytearray(_wav_bytes(np.arange(-50, 50)[:, None] * 300, 16000, 16))
    for i, b in enumerate(tail[:44]):
        base[(i * 7) % 44] = b
    try:
        x = decode_wav(bytes(base[: len(base) - cut]), dtype="float32", name="fuzz.wav")
    except AudioError:
        return
    assert x.dtype == np.float32 and np.all(np.isfinite(x)) and np.all(np.abs(x) <= 1.0)


def test_devices_are_refused_and_pipes_are_read(tmp_path):
    import threading

    with pytest.raises(AudioError, match="^/dev/zero: is a device, not a WAV file$"):
        read_wav("/dev/zero")  # once an endless read
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    x = (np.arange(1600) % 200 - 100).astype(np.int16)
    writer = threading.Thread(target=lambda: fifo.write_bytes(encode_wav(x)))
    writer.start()
    got = read_wav(fifo)
    writer.join(10)
    assert np.array_equal(got, x)


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000, 16000])
def test_stream_resampler_in_blocks_equals_resampling_the_whole_stream(rate):
    """`listen --mic` at a device's 44.1 / 48 kHz: resampling each block alone clicked at block
    edges (8,298 int16 steps in a probe); one resampler over the stream gives resample()'s samples."""
    rng = np.random.default_rng(rate)
    x = (0.3 * rng.normal(size=int(1.3 * rate))).astype(np.float32)
    rs, parts, i = StreamResampler(rate, 16000), [], 0
    while i < len(x):
        n = int(rng.integers(0, 3000))
        parts.append(rs.push(x[i:i + n]))
        i += n
    np.testing.assert_array_equal(np.concatenate(parts + [rs.flush()]), resample(x, rate, 16000))
    y = np.concatenate([rs.push(x[:500]), rs.flush()])   # flush() reset it: a new stream starts clean
    np.testing.assert_array_equal(y, resample(x[:500], rate, 16000))
    with pytest.raises(AudioError, match=r"44099 Hz -> 16000 Hz: no streaming resampler for this odd rate"):
        StreamResampler(44099, 16000)


def test_a_sample_or_two_at_an_odd_rate_is_a_clear_error():
    """At 44099 Hz one sample is less than one sample at 16 kHz (scipy's FFT resampler divided by zero)."""
    one = _wav_bytes(np.array([[1000]]), 44099, 16)
    with pytest.raises(AudioError, match=r"x\.wav: 1 sample\(s\) at 44099 Hz, less than one sample at 16000 Hz"):
        decode_wav(one, name="x.wav")
    assert resample(np.ones(2, np.float32), 96001, 16000).shape == (0,)


@pytest.mark.parametrize("bits,tag,channels", [(8, 1, 2), (16, 1, 2), (16, 1, 1), (24, 1, 2), (24, 1, 3),
                                               (32, 1, 2), (32, 3, 2), (32, 3, 3), (64, 3, 1)])
def test_decoding_in_float32_gives_the_float64_answer(bits, tag, channels):
    """Samples are decoded in float32 where that is exact (half the memory of a long file): the int16
    result equals a float64 decoding of the same data, for every width, mono and stereo."""
    rng = np.random.default_rng(bits + tag + channels)
    n = 4000
    if tag == 3:
        raw = rng.uniform(-1, 1, (n, channels))
        ref = raw.astype(np.float32 if bits == 32 else np.float64).astype(np.float64)
    elif bits == 8:
        raw = rng.integers(0, 256, (n, channels))
        ref = (raw - 128.0) / 128.0
    else:
        raw = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, channels))
        ref = raw / float(1 << (bits - 1))
    expect = np.clip(np.rint(ref.mean(axis=1) * 32768.0), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(decode_wav(_wav_bytes(raw, 16000, bits, tag)), expect)


@pytest.mark.parametrize("rate,bits,tag,channels", [(16000, 16, 1, 1), (48000, 16, 1, 2), (44100, 24, 1, 3),
                                                    (8000, 8, 1, 1), (22050, 32, 3, 2), (44099, 16, 1, 1),
                                                    (16000, 32, 1, 2)])
def test_reading_a_file_block_by_block_gives_the_samples_of_decoding_it_whole(tmp_path, monkeypatch, rate, bits,
                                                                               tag, channels):
    """read_wav decodes a file in blocks (an hour of 48 kHz stereo took GBs), resampling as a stream:
    the same int16 and float32 samples as decode_wav of the whole file, bit for bit."""
    import edgekws.audio as au

    rng = np.random.default_rng(rate + bits + channels)
    n = 3 * rate // 2 + 7
    if tag == 3:
        raw = rng.uniform(-1, 1, (n, channels))
    elif bits == 8:
        raw = rng.integers(0, 256, (n, channels))
    else:
        raw = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, channels))
    data = _wav_bytes(raw, rate, bits, tag)
    path = tmp_path / "x.wav"
    path.write_bytes(data)
    monkeypatch.setattr(au, "_BLOCK_FRAMES", 4096)     # many blocks, the last one short
    for dtype in ("int16", "float32"):
        np.testing.assert_array_equal(read_wav(path, dtype=dtype), decode_wav(data, dtype=dtype))
    path.write_bytes(data[:-101])                       # a truncated data chunk: up to the end of the file
    np.testing.assert_array_equal(read_wav(path), decode_wav(data[:-101]))


def test_the_python_api_refuses_rates_dtypes_and_samples_it_cannot_honour(tmp_path):
    """write_wav(sr=500) wrote a WAV read_wav refuses, sr=-1 a struct.error, int32 PCM was clipped;
    read_wav(sr=0) a ZeroDivisionError; StreamResampler took stereo as one interleaved stream and
    None as a NaN sample."""
    from edgekws.audio import StreamResampler, read_wav, write_wav

    f = tmp_path / "a.wav"
    x = (np.sin(np.arange(1600) / 5) * 0.5).astype(np.float32)
    for sr in (500, -1, 44100.5, "16000", 2 ** 32, True):
        with pytest.raises(AudioError, match="sample rate must be an integer from 1000 to 768000 Hz"):
            write_wav(f, x, sr)
    assert not f.exists()
    with pytest.raises(AudioError, match="int32 samples outside the int16 range"):
        write_wav(f, np.array([0, 70000], np.int32))
    with pytest.raises(AudioError, match="audio to write holds no samples"):
        write_wav(f, np.zeros(0, np.int16))
    write_wav(f, np.array([0, 1000, -1000], np.int32))   # integers in range are int16 values
    assert read_wav(f).tolist() == [0, 1000, -1000]
    for sr in (0, -16000, 8000.5, 10 ** 7):
        with pytest.raises(AudioError, match="sample rate must be an integer"):
            read_wav(f, sr=sr)
    with pytest.raises(AudioError, match="read as dtype 'int16' or 'float32'"):
        read_wav(f, dtype="float64")
    assert read_wav(f, dtype=np.int16).tolist() == [0, 1000, -1000]
    with pytest.raises(AudioError, match="a file path is a str or os.PathLike"):
        read_wav(None)
    with pytest.raises(AudioError, match="resampler input: sample rate"):
        StreamResampler(0, 16000)
    rs = StreamResampler(48000, 16000)
    for bad in (np.zeros((100, 2), np.float32), None, np.zeros(10, np.int16), np.array([np.nan], np.float32)):
        with pytest.raises(AudioError, match="resampler: "):
            rs.push(bad)
    assert len(rs.push(np.zeros((4800, 1), np.float32))) + len(rs.flush()) == 1600
