"""ONNX Runtime backends against the torch fp32 path of the same model (the reference)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from m3e.errors import InputError, M3EError
from m3e.models import load_model
from m3e.models import onnx_backend as ob
from m3e.models import onnx_runtime as rt
from tests.conftest import SAMPLE, build_tiny_st_model

pytest.importorskip("onnxruntime")


@pytest.fixture()
def fresh_st(tmp_path, tiny_hf_dir) -> Path:
    """A tiny model in its own folder, so each test exports from scratch into the shared m3e home."""
    return build_tiny_st_model(tmp_path / "model", tiny_hf_dir)


def test_onnx_fp32_equals_torch_and_int8_is_close(fresh_st):
    ref = load_model(str(fresh_st), device="cpu").encode(SAMPLE, prompt_name="query")
    fp32 = load_model(str(fresh_st), backend="onnx")
    np.testing.assert_allclose(fp32.encode(SAMPLE, prompt_name="query"), ref, atol=2e-5)
    int8 = load_model(str(fresh_st), backend="onnx-int8")
    cos = np.sum(int8.encode(SAMPLE, prompt_name="query") * ref, axis=1)
    assert cos.mean() >= 0.99, cos
    assert int8.label.endswith("@onnx-int8") and int8.fidelity["mean_cosine"] >= 0.99


def test_padding_and_batching_do_not_change_onnx_vectors(fresh_st):
    model = load_model(str(fresh_st), backend="onnx")
    together = model.encode(SAMPLE, batch_size=64)
    one_by_one = np.stack([model.encode([t])[0] for t in SAMPLE])
    np.testing.assert_allclose(together, one_by_one, atol=2e-5)


def test_export_happens_once_and_is_reused(fresh_st):
    said: list[str] = []
    load_model(str(fresh_st), backend="onnx-int8", log=said.append)
    assert any("exporting" in m for m in said)
    folder = rt.onnx_folder(fresh_st.resolve(), str(fresh_st))
    meta = json.loads((folder / "export.json").read_text())
    assert set(meta["files"]) == {"model.onnx", "model_int8.onnx"}
    stamp = (folder / "model_int8.onnx").stat().st_mtime_ns
    said.clear()
    load_model(str(fresh_st), backend="onnx", log=said.append)
    assert said == [] and (folder / "model_int8.onnx").stat().st_mtime_ns == stamp


def test_changed_model_files_get_a_new_export(fresh_st):
    before = rt.export_key(fresh_st, "m")
    weights = next(fresh_st.rglob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert rt.export_key(fresh_st, "m") != before


def test_interrupted_export_leaves_nothing_that_looks_complete(fresh_st, monkeypatch):
    def boom(src, dst, peaks=None, reduce_range=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(ob, "_quantize", boom)
    with pytest.raises(KeyboardInterrupt):
        load_model(str(fresh_st), backend="onnx-int8")
    folder = rt.onnx_folder(fresh_st.resolve(), str(fresh_st))
    assert not folder.exists()
    assert not [p for p in folder.parent.glob(f".{folder.name}*")]  # no temporary left behind
    monkeypatch.undo()
    assert load_model(str(fresh_st), backend="onnx-int8").backend == "onnx-int8"


def test_fidelity_guard_refuses_a_drifted_export(fresh_st, monkeypatch):
    monkeypatch.setenv("M3E_ONNX_MIN_COSINE", "1.01")  # nothing passes a floor above 1
    with pytest.raises(M3EError, match="too far from torch fp32"):
        load_model(str(fresh_st), backend="onnx-int8")


def test_bad_backend_and_gpu_device_are_refused(tiny_st_dir, tiny_model):
    with pytest.raises(InputError, match="backend must be one of torch, onnx, onnx-int8"):
        load_model(str(tiny_st_dir), backend="tensorrt")
    with pytest.raises(InputError, match="runs on CPU"):
        load_model(str(tiny_st_dir), backend="onnx", device="cuda:0")


def test_cli_backend_flag(fresh_st, tmp_path):
    from tests.test_cli import run

    out = tmp_path / "v.npy"
    r = run("encode", "今天天气很好", "I like apples", "-o", str(out), "--model", str(fresh_st),
            "--backend", "onnx")
    assert r.returncode == 0, r.stderr
    ref = load_model(str(fresh_st)).encode(["今天天气很好", "I like apples"])
    np.testing.assert_allclose(np.load(out), ref, atol=2e-5)
    r = run("encode", "x", "--model", str(fresh_st), "--backend", "tpu")
    assert r.returncode == 2 and "'tpu' is not one of" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.builtin
@pytest.mark.data
def test_builtin_int8_keeps_cosine_and_sts_b(builtin_model, shared_data, m3e_home):
    """The acceptance figures: mean cosine >= 0.99 on the fixed set, STS-B Spearman within 0.5 points."""
    from scipy.stats import spearmanr

    int8 = load_model("multilingual-e5-small-q4", backend="onnx-int8")
    fid = ob.fidelity(builtin_model, int8)
    assert fid["mean_cosine"] >= 0.99, fid
    rows = [line.split("\t") for line in
            (shared_data / "STS-B" / "STS-B.test.data").read_text(encoding="utf-8").splitlines()]
    sents = sorted({s for r in rows for s in r[:2]})
    gold = [float(r[2]) for r in rows]

    def rho(model) -> float:
        vecs = dict(zip(sents, model.encode(sents, prompt_name="query"), strict=True))
        return spearmanr([float(vecs[a] @ vecs[b]) for a, b, _ in rows], gold).statistic

    assert abs(rho(int8) - rho(builtin_model)) * 100 <= 0.5


def test_no_stale_temp_folders_after_success(fresh_st):
    load_model(str(fresh_st), backend="onnx")
    folder = rt.onnx_folder(fresh_st.resolve(), str(fresh_st))
    leftovers = [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    shutil.rmtree(folder)


def test_only_outlier_layers_keep_fp32_down_projections():
    names = [f"/model/encoder/layer.{i}/output/dense/MatMul" for i in range(6)] + ["/odd/MatMul"]
    peaks = {0: 30.0, 1: 10.0, 2: 11.0, 3: 9.0, 4: 70.0, 5: 12.0}  # median 11.5 -> limit 23
    assert ob.keep_fp32(names, peaks) == [names[0], names[4], "/odd/MatMul"]
    assert ob.keep_fp32(names, {}) == names  # no layer statistics: keep every one in fp32


def test_activation_peaks_cover_every_layer(tiny_model):
    peaks = ob.activation_peaks(tiny_model)
    assert sorted(peaks) == [0, 1] and all(v > 0 for v in peaks.values())


@pytest.mark.parametrize(("kernels", "limit"), [("avx2", 64), ("vnni", 127)])
def test_cpus_without_vnni_get_seven_bit_weights(fresh_st, monkeypatch, kernels, limit):
    """AVX2's u8 x s8 pair sums saturate int16 on full-range weights: such CPUs get ONNX Runtime's reduce_range;
    the kind of CPU is part of the export key and of export.json, so a cache is never reused across them."""
    import onnx
    from onnx import numpy_helper

    monkeypatch.setattr(rt, "int8_kernels", lambda: kernels)
    model = load_model(str(fresh_st), backend="onnx-int8")
    meta = json.loads((model.path.parent / "export.json").read_text())
    assert meta["int8_kernels"] == kernels and meta["reduce_range"] == (kernels == "avx2")
    graph = onnx.load(str(model.path)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert peak <= limit and (kernels == "avx2" or peak > 64)
    assert model.fidelity["min_cosine"] >= 0.98
    here = rt.export_key(fresh_st, "m")
    monkeypatch.setattr(rt, "int8_kernels", lambda: "avx2" if kernels == "vnni" else "vnni")
    assert rt.export_key(fresh_st, "m") != here


def test_int8_kernels_reads_this_cpu():
    assert rt.int8_kernels() in ("vnni", "arm-dot", "avx2")


def test_an_exported_model_encodes_without_torch_or_sentence_transformers(fresh_st, tmp_path):
    """After the export, loading and encoding (library and CLI) import neither; vectors equal the torch path."""
    import subprocess
    import sys

    ref = load_model(str(fresh_st)).encode(SAMPLE, prompt_name="query")
    load_model(str(fresh_st), backend="onnx")  # the export, in this process
    code = ("import json, sys\n"
            "from m3e.models import load_model\n"
            f"m = load_model({str(fresh_st)!r}, backend='onnx')\n"
            f"v = m.encode({SAMPLE!r}, prompt_name='query')\n"
            "heavy = [n for n in ('torch', 'sentence_transformers', 'transformers') if n in sys.modules]\n"
            "print(json.dumps({'heavy': heavy, 'vectors': v.tolist(), 'kind': type(m).__name__}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["kind"] == "OnnxEmbedder"
    np.testing.assert_allclose(np.array(got["vectors"]), ref, atol=2e-5)


def test_onnx_windows_truncation_and_prompts_follow_the_torch_rules(fresh_st):
    """The ONNX runner shares the encoding rules: long texts in windows, truncation counted, prompts resolved."""
    torch_model = load_model(str(fresh_st))
    onnx_model = load_model(str(fresh_st), backend="onnx")
    long = ["长文本 " * 200, "short"]
    for mode in ("truncate", "window"):
        np.testing.assert_allclose(onnx_model.encode(long, truncate=mode, prompt_name="passage"),
                                   torch_model.encode(long, truncate=mode, prompt_name="passage"), atol=2e-5)
    assert onnx_model.last_stats.windows == torch_model.last_stats.windows > 1
    assert onnx_model.prompts == torch_model.prompts and onnx_model.dim == torch_model.dim
    assert onnx_model.count_tokens(long) == torch_model.count_tokens(long)
    with pytest.raises(InputError, match="no prompt named 'qeury'"):
        onnx_model.encode(["x"], prompt_name="qeury")


def test_an_onnx_model_saves_as_the_sentence_transformers_model(fresh_st, tmp_path):
    from sentence_transformers import SentenceTransformer

    onnx_model = load_model(str(fresh_st), backend="onnx")
    onnx_model.save(tmp_path / "saved")
    got = SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(SAMPLE, normalize_embeddings=True)
    np.testing.assert_allclose(got, onnx_model.encode(SAMPLE), atol=2e-5)
