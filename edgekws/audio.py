"""Audio I/O: read any PCM/float WAV as 16 kHz mono, write 16 kHz mono int16 WAV atomically.

Everything that can go wrong with a file (missing, empty, cut before its samples, not a WAV, an
unsupported encoding, absurd header fields, NaN/inf samples) raises `AudioError` naming the file and
the problem. A data chunk shorter than its header says (a recorder stopped before fixing the size)
is read up to the end of the file, as other WAV readers do. The parser is small and written here on purpose: it reads exactly the RIFF/WAVE chunks we
need, validates every size before trusting it, and never hands a bad header to a library.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from math import gcd
from pathlib import Path

import numpy as np

from edgekws.errors import AudioError, is_int
from edgekws.fileio import OutputError, atomic_open

SAMPLE_RATE = 16000

_FMT_PCM = 1
_FMT_FLOAT = 3
_FMT_EXTENSIBLE = 0xFFFE
_MAX_CHANNELS = 64
_MAX_RATE = 768_000
_MAX_BYTES = 1 << 31  # 2 GiB: the most edgekws reads (a RIFF file can be up to 4 GiB)


def _scan_chunks(read, size: int, name: str) -> tuple[bytes, int, int]:
    """Find the 'fmt ' and 'data' chunks of a RIFF/WAVE stream of `size` bytes, where read(pos, n)
    gives up to n bytes at pos. Returns (fmt body, data offset, data bytes present): a truncated
    data chunk counts up to the end of the file."""
    if size == 0:
        raise AudioError(f"{name}: file is empty")
    head = read(0, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if head[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian WAV (RIFX) is not supported")
    pos, fmt, payload = 12, None, None
    while pos + 8 <= size:
        cid, csize = read(pos, 4), struct.unpack("<I", read(pos + 4, 4))[0]
        if cid == b"fmt ":
            fmt = read(pos + 8, min(csize, 1024))
            if len(fmt) < 16:
                raise AudioError(f"{name}: 'fmt ' chunk is {len(fmt)} bytes, need at least 16")
        elif cid == b"data":
            payload = (pos + 8, max(0, min(csize, size - pos - 8)))  # a truncated chunk: up to the end of the file
            if fmt is not None:
                break
        pos += 8 + csize + (csize & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise AudioError(f"{name}: no 'fmt ' chunk (truncated or not a WAV file)")
    if payload is None:
        raise AudioError(f"{name}: no 'data' chunk (truncated file?)")
    return fmt, *payload


def _check_fmt(fmt: bytes, name: str) -> tuple[int, int, int, int, int]:
    """(format tag, channels, rate, bits, block align) of a 'fmt ' chunk, or AudioError."""
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FMT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioError(f"{name}: WAVE_FORMAT_EXTENSIBLE header is too short")
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if not 1 <= channels <= _MAX_CHANNELS:
        raise AudioError(f"{name}: absurd channel count {channels}")
    if not 1000 <= rate <= _MAX_RATE:
        raise AudioError(f"{name}: absurd sample rate {rate} Hz")
    if not ((tag == _FMT_PCM and bits in (8, 16, 24, 32)) or (tag == _FMT_FLOAT and bits in (32, 64))):
        raise AudioError(f"{name}: unsupported encoding (format tag {tag}, {bits} bits); "
                         "need PCM 8/16/24/32-bit or IEEE float 32/64-bit")
    if block_align != bits // 8 * channels:
        raise AudioError(f"{name}: inconsistent header (block align {block_align}, "
                         f"expected {bits // 8 * channels} for {channels} ch × {bits} bits)")
    return tag, channels, rate, bits, block_align


def _decode_frames(raw: bytes, tag: int, bits: int, channels: int, name: str) -> np.ndarray:
    """Whole frames of sample data -> (n, channels) in [-1, 1]: float32, exact for 8/16/24-bit PCM and
    float32 data (half the memory of float64); float64 for 32-bit PCM and float64 data."""
    if tag == _FMT_FLOAT:
        x = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32 if bits == 32 else np.float64)
        if not np.all(np.isfinite(x)):
            raise AudioError(f"{name}: contains NaN or infinite samples")
        x = np.clip(x, -1.0, 1.0)
    elif bits == 8:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - np.float32(128.0)) / np.float32(128.0)
    elif bits == 16:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / np.float32(32768.0)
    elif bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / np.float32(1 << 23)
    else:
        x = np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)
    return x.reshape(-1, channels)


def _frame_count(length: int, block_align: int, name: str) -> int:
    """Whole frames in `length` bytes of sample data, at least one."""
    if length // block_align == 0:
        raise AudioError(f"{name}: no audio samples in the data chunk")
    return length // block_align


def _too_short(name: str, n: int, rate: int, sr: int) -> AudioError:
    return AudioError(f"{name}: {n} sample(s) at {rate} Hz, less than one sample at {sr} Hz")


def _parse_wav(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Decode WAV bytes into samples (n, channels) in [-1, 1] (_decode_frames) and the sample rate."""
    fmt, at, length = _scan_chunks(lambda pos, n: data[pos:pos + n], len(data), name)
    tag, channels, rate, bits, block_align = _check_fmt(fmt, name)
    n = _frame_count(length, block_align, name)
    return _decode_frames(data[at:at + n * block_align], tag, bits, channels, name), rate


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly).

    x : (n,) float array  ->  (round(n * sr_out / sr_in),) float32
    """
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    from scipy import signal

    g = gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    if max(up, down) > 1000:  # an odd rate (e.g. 44099 Hz): the polyphase filter would be huge
        n = int(round(x.size * sr_out / sr_in))
        if n == 0:   # a sample or two at a high odd rate: nothing at sr_out (scipy divides by zero)
            return np.zeros(0, np.float32)
        return signal.resample(x, n).astype(np.float32)
    return signal.resample_poly(x, up, down).astype(np.float32)


def check_rate(sr, what: str) -> int:
    """A sample rate argument: an integer in [1000, 768000] Hz (the rates a WAV header may hold here)."""
    if not is_int(sr) or not 1000 <= sr <= _MAX_RATE:
        raise AudioError(f"{what}: sample rate must be an integer from 1000 to {_MAX_RATE} Hz, got {sr!r}")
    return int(sr)


class StreamResampler:
    """resample() for a stream that arrives in blocks: push() blocks of any size, flush() at the end.
    The concatenated output equals resample() of the whole stream (block edges leave no clicks, as
    resampling each block alone would), a few ms behind the input: each output waits for the
    polyphase filter's reach (about 10 input periods of the slower rate) past it.

        rs = StreamResampler(48000, 16000); y = rs.push(block) ...; y_end = rs.flush()
    """

    def __init__(self, sr_in: int, sr_out: int):
        sr_in, sr_out = check_rate(sr_in, "resampler input"), check_rate(sr_out, "resampler output")
        g = gcd(sr_in, sr_out)
        self.up, self.down = sr_out // g, sr_in // g
        if max(self.up, self.down) > 1000:
            raise AudioError(f"{sr_in} Hz -> {sr_out} Hz: no streaming resampler for this odd rate ratio; "
                             "open the device at a common rate (16000, 32000, 44100 or 48000 Hz; "
                             "listen --rate, record --rate)")
        # resample_poly's filter reaches 10 * max(up, down) upsampled samples each side of an output
        reach = -(-10 * max(self.up, self.down) // self.up) + 2
        self.pad = -(-reach // self.down) * self.down          # in input samples, a multiple of down
        self.reset()

    def reset(self) -> None:
        self._hist = np.zeros(self.pad, np.float32)   # the input from absolute index next - pad on
        self._next = 0                                # first input index whose output is not out yet
        self._n = 0                                   # input samples pushed

    def _out(self, seg: np.ndarray, count: int) -> np.ndarray:
        from scipy import signal

        skip = self.pad * self.up // self.down
        return signal.resample_poly(seg, self.up, self.down).astype(np.float32)[skip:skip + count]

    def push(self, x: np.ndarray) -> np.ndarray:
        """(n,) float samples -> the (m,) float32 output they complete."""
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim != 1 and not (x.ndim == 2 and x.shape[1] == 1):
            raise AudioError(f"resampler: expected mono float samples (n,), got {x.dtype} {x.shape}")
        x = x.astype(np.float32).reshape(-1)
        if not np.isfinite(x).all():
            raise AudioError("resampler: NaN or infinite samples")
        if self.up == self.down:
            return x.copy()
        self._hist = np.concatenate([self._hist, x])
        self._n += len(x)
        end = (self._n - self.pad) // self.down * self.down   # its outputs have all their input
        if end <= self._next:
            return np.zeros(0, np.float32)
        seg = self._hist[:end - self._next + 2 * self.pad]
        y = self._out(seg, (end - self._next) * self.up // self.down)
        self._hist = self._hist[end - self._next:]
        self._next = end
        return y

    def flush(self) -> np.ndarray:
        """The rest of the output, as if the stream ended in silence (as resample() pads); resets."""
        if self.up == self.down:
            return np.zeros(0, np.float32)
        left = self._n - self._next
        count = -(-left * self.up // self.down)
        seg = np.concatenate([self._hist, np.zeros(self.pad + self.down, np.float32)])
        y = self._out(seg, count) if count > 0 else np.zeros(0, np.float32)
        self.reset()
        return y


def to_int16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] → int16: scale by 32767, round to nearest, saturate."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def decode_wav(data: bytes, *, sr: int = SAMPLE_RATE, dtype: str = "int16", name: str = "<bytes>") -> np.ndarray:
    """Decode WAV bytes to mono at `sr`. Returns (n,) int16 or float32 in [-1, 1]."""
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
    x, rate = _parse_wav(data, name)
    mono = _mono(x)
    if rate != sr:
        n_in, mono = len(mono), resample(mono, rate, sr)
        if not mono.size:
            raise _too_short(name, n_in, rate, sr)
    return _finish(mono, rate != sr, dtype)


def _mono(x: np.ndarray) -> np.ndarray:
    # the channel mean in float64: a float32 sum of 3 channels (or 2 of float data) rounds (1 LSB)
    return x.mean(axis=1, dtype=np.float64) if x.shape[1] > 1 else x[:, 0]


def _finish(mono: np.ndarray, resampled: bool, dtype: str) -> np.ndarray:
    """Mono samples -> the decoded result: float32, or int16 by x 32768 (which inverts the 16-bit
    decoding exactly, so 16-bit mono input at the wanted rate round-trips bit for bit)."""
    if resampled:
        np.clip(mono, -1.0, 1.0, out=mono)
    if dtype == "float32":
        return mono.astype(np.float32)
    return np.clip(np.rint(mono * mono.dtype.type(32768.0)), -32768, 32767).astype(np.int16)


_BLOCK_FRAMES = 1 << 18   # frames a file is decoded by (seconds, not the whole file, in memory at once)


def _read_wav_blocks(f, size: int, name: str, sr: int, dtype: str) -> np.ndarray | None:
    """read_wav of a regular file block by block: the same samples as decode_wav of its bytes, with
    memory for the result only (an hour of 48 kHz stereo took GBs). None where the rate needs the
    one-shot resampler (an odd rate such as 44099 Hz): then the caller decodes it whole."""
    def read(pos, n):
        f.seek(pos)
        return f.read(n)

    fmt, at, length = _scan_chunks(read, size, name)
    tag, channels, rate, bits, block_align = _check_fmt(fmt, name)
    n = _frame_count(length, block_align, name)
    rs = None
    if rate != sr:
        try:
            rs = StreamResampler(rate, sr)
        except AudioError:
            return None
    parts = []
    f.seek(at)
    for start in range(0, n, _BLOCK_FRAMES):
        raw = f.read(min(_BLOCK_FRAMES, n - start) * block_align)
        mono = _mono(_decode_frames(raw, tag, bits, channels, name))
        parts.append(_finish(rs.push(mono), True, dtype) if rs is not None else _finish(mono, False, dtype))
    if rs is not None:
        parts.append(_finish(rs.flush(), True, dtype))
    out = np.concatenate(parts)
    if not out.size:
        raise _too_short(name, n, rate, sr)
    return out


def read_wav(path: str | os.PathLike, *, sr: int = SAMPLE_RATE, dtype: str = "int16") -> np.ndarray:
    """Read a WAV file of any PCM width, channel count and rate as mono at `sr`.

    Returns (n,) int16 (16-bit input at `sr` comes back bit for bit) or float32 in [-1, 1].
    Raises AudioError naming the file on any problem.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise AudioError(f"read_wav: a file path is a str or os.PathLike, got {type(path).__name__}")
    name = str(path)
    sr = check_rate(sr, f"{name}: reading")
    if dtype not in ("int16", "float32", np.int16, np.float32):
        raise AudioError(f"{name}: read as dtype 'int16' or 'float32', not {dtype!r}")
    dtype = np.dtype(dtype).name
    try:
        st = os.stat(path)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):  # /dev/zero would never end
            raise AudioError(f"{name}: is a device, not a WAV file")
        if st.st_size > _MAX_BYTES:
            raise AudioError(f"{name}: file is {st.st_size} bytes, more than the 2 GiB edgekws reads")
        with open(path, "rb") as f:
            fst = os.fstat(f.fileno())
            if dtype in ("int16", "float32") and stat.S_ISREG(fst.st_mode):
                out = _read_wav_blocks(f, fst.st_size, name, sr, dtype)
                if out is not None:
                    return out
                f.seek(0)
            data = f.read(_MAX_BYTES + 1)  # bounded: a pipe has no size to check first
        if len(data) > _MAX_BYTES:
            raise AudioError(f"{name}: more than the {_MAX_BYTES} bytes (2 GiB) edgekws reads")
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{name}: is a directory, not a WAV file") from None
    except OSError as exc:
        raise AudioError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return decode_wav(data, sr=sr, dtype=dtype, name=name)


def encode_wav(samples: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Mono int16 WAV bytes. samples: (n,) int16, or float in [-1, 1] (scaled by 32767, saturated)."""
    sr = check_rate(sr, "audio to write")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"audio to write must be mono (n,), got shape {x.shape}")
    if not len(x):
        raise AudioError("audio to write holds no samples")
    if np.issubdtype(x.dtype, np.integer) and x.dtype != np.int16 and (x.min() < -32768 or x.max() > 32767):
        raise AudioError(f"audio to write: {x.dtype} samples outside the int16 range; give int16, or float "
                         "in [-1, 1]")
    if x.dtype != np.int16:
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise AudioError(f"audio to write has unsupported dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating):
            if not np.all(np.isfinite(x)):
                raise AudioError("audio to write contains NaN or infinite samples")
            x = to_int16(x)
        else:
            x = np.clip(x, -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    pcm = x.astype("<i2").tobytes()
    buf.write(b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE")
    buf.write(b"fmt " + struct.pack("<IHHIIHH", 16, _FMT_PCM, 1, sr, sr * 2, 2, 16))
    buf.write(b"data" + struct.pack("<I", len(pcm)) + pcm)
    return buf.getvalue()


def write_wav(path: str | os.PathLike, samples: np.ndarray, sr: int = SAMPLE_RATE, *,
              overwrite: bool = True) -> None:
    """Write mono int16 WAV atomically (temp file + rename).

    overwrite=False: an existing file is kept and AudioError is raised (recordings are never overwritten).
    """
    data = encode_wav(samples, sr)
    if not overwrite and os.path.exists(path):
        raise AudioError(f"{path}: already exists; refusing to overwrite")
    try:
        with atomic_open(path, "wb", overwrite=overwrite) as f:
            f.write(data)
    except FileExistsError:
        raise AudioError(f"{path}: already exists; refusing to overwrite") from None
    except OutputError as exc:
        raise AudioError(str(exc)) from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot write ({exc.strerror or exc})") from None
