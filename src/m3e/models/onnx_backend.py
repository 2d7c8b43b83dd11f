"""Exporting models to ONNX for the ``onnx`` (fp32, fused graph) and ``onnx-int8`` (dynamic int8) backends, once
per model version, and checking each export against the torch fp32 path before it is used.

An embedder's graph holds the transformer and the model's own pooling and dense modules (sentence-transformers'
code, traced), so its output is the pooled vector and running it needs neither torch nor sentence-transformers
(:mod:`m3e.models.onnx_runtime`). The export goes into ``$M3E_HOME/onnx/<name>-<key>/`` (the model folder may be
a read-only hub cache), written to a temporary folder and renamed, so a killed export never looks complete.

Why our own export instead of ``SentenceTransformer(backend="onnx")``: that path needs optimum, which does
not follow transformers 5, and it neither fuses attention for our encoder nor checks the quantized vectors.
Here the fidelity guard measures mean and minimum cosine against the torch fp32 path on a fixed sentence set
at export time; an export below ``onnx_runtime.MIN_MEAN_COSINE`` is refused instead of silently serving worse vectors.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from m3e.errors import InputError, M3EError
from m3e.models import onnx_runtime as rt
from m3e.models.onnx_runtime import (
    EXPORT_VERSION,
    FILES,
    TOKENIZER_FILE,
    OnnxEmbedder,
    OnnxReranker,
    check_backend,
    onnx_folder,
)

# Architectures whose attention/LayerNorm/GELU patterns ONNX Runtime's BERT optimizer fuses.
_FUSABLE = {"bert": "bert", "xlm-roberta": "bert", "roberta": "bert", "ernie": "bert", "nezha": "bert"}

# The fixed sentence set of the fidelity guard: Chinese and English, short and long, queries and passages.
FIDELITY_SENTENCES = [
    "今天天气怎么样？", "我想订一张明天去上海的火车票。", "这款手机的电池续航时间很长，拍照效果也不错。",
    "如何在家里做一道正宗的宫保鸡丁？", "股市今天大幅下跌，投资者情绪低迷。", "他在北京大学学习计算机科学。",
    "请问信用卡逾期一天会影响征信吗", "花呗怎么提前还款", "一个女孩在梳头。", "一群男孩在海滩上踢足球。",
    "我们公司明年计划在华南地区开设三家新门店，并招聘大约两百名员工。",
    "长江是中国最长的河流，全长约六千三百公里，流经十一个省级行政区，最终注入东海。",
    "深度学习模型通过大量数据训练，可以学习到文本的语义表示，从而用于检索、聚类和分类等任务。",
    "外卖送得很快，但是菜有点凉了，味道一般。", "这本书写得太好了，强烈推荐给大家！", "质量太差，用了两天就坏了。",
    "糖尿病患者应该如何控制饮食？", "猫为什么喜欢晒太阳", "量子计算机与传统计算机有什么区别？",
    "M3E 是一个中文文本嵌入模型。", "向量数据库可以用来存储和检索文本嵌入。",
    "What is the capital of France?", "The quick brown fox jumps over the lazy dog.",
    "Text embeddings map sentences to vectors so that similar meanings are close together.",
    "How do I reset my password?", "Machine learning is a subfield of artificial intelligence.",
    "The weather is nice today, let's go for a walk in the park.",
    "Retrieval-augmented generation combines a search index with a large language model.",
    "我用 Python 写了一个 web server，支持 OpenAI 兼容的 embeddings API。",
    "Apple 发布了新款 iPhone，售价 5999 元起。", "2023年第三季度GDP同比增长4.9%。", "你好", "谢谢",
    "这个问题我也不知道怎么回答，你可以问问老师或者查一下相关资料，应该能找到答案的。",
    "北京时间昨晚，中国女排以三比零战胜对手，成功晋级决赛。主教练赛后表示，队员们发挥出色。",
    "根据合同第五条规定，乙方应在收到货物后三十日内支付全部货款，逾期每日按未付金额的千分之五支付违约金。",
]


def _transformer(st):
    from sentence_transformers.models import Transformer

    first = st[0]
    if not isinstance(first, Transformer) or not hasattr(first, "auto_model"):
        raise M3EError(f"the onnx backends need a model whose first module is a transformer "
                       f"(this one starts with {type(first).__name__}); use --backend torch")
    return first


class _Wrapped(torch.nn.Module):
    def __init__(self, model, names: list[str], output: str = "last_hidden_state"):
        super().__init__()
        self.model = model
        self.names = names
        self.output = output

    def forward(self, *inputs):
        return getattr(self.model(**dict(zip(self.names, inputs, strict=True))), self.output)


class _Pooled(torch.nn.Module):
    """An embedder as one graph: the transformer's token embeddings, then the model's own sentence-transformers
    modules after it (pooling, dense; normalization is left to the caller, after windows are averaged)."""

    def __init__(self, hf, modules, names: list[str]):
        super().__init__()
        self.model = hf
        self.rest = torch.nn.ModuleList(modules)
        self.names = names

    def forward(self, *inputs):
        features = dict(zip(self.names, inputs, strict=True))
        features["token_embeddings"] = self.model(**features).last_hidden_state
        for module in self.rest:
            features = module(features)
        return features["sentence_embedding"]


def _export_fp32(hf, folder: Path, input_names: list[str], output: str = "sentence_embedding",
                 modules: list | None = None) -> Path:
    """Trace a transformers model with eager attention (the pattern ONNX Runtime fuses), then fuse what it can:
    with ``modules`` (an embedder's pooling and dense layers) the output is the pooled vector, else a classifier's
    logits."""
    previous = getattr(hf.config, "_attn_implementation", None)
    raw = folder / "raw.onnx"
    try:
        if hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation("eager")
        dummy = tuple(torch.ones((2, 8), dtype=torch.long) if n == "attention_mask" else
                      torch.randint(5, 100, (2, 8)) if n == "input_ids" else torch.zeros((2, 8), dtype=torch.long)
                      for n in input_names)
        axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
        axes[output] = {0: "batch"}
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            wrapped = _Pooled(hf, modules, input_names) if modules is not None else _Wrapped(hf, input_names, "logits")
            torch.onnx.export(wrapped.eval().cpu(), dummy, str(raw), input_names=input_names,
                              output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)
    finally:
        if previous is not None and hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation(previous)
    out = folder / FILES["onnx"]
    kind = _FUSABLE.get(getattr(hf.config, "model_type", ""))
    if kind is None:
        raw.rename(out)
        return out
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(raw), model_type=kind, num_heads=hf.config.num_attention_heads,
                         hidden_size=hf.config.hidden_size, opt_level=1)
    opt.save_model_to_file(str(out))
    raw.unlink()
    return out


def _after_activation(model) -> list[str]:
    """MatMuls fed by the feed-forward activation (GELU output): its outliers make int8 lose the most there."""
    producer = {out: node for node in model.graph.node for out in node.output}
    gelus = {"Gelu", "BiasGelu", "FastGelu", "QuickGelu"}
    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        src = producer.get(node.input[0])
        by_graph = src is not None and src.op_type in gelus
        by_name = "output/dense" in node.name and "attention" not in node.name  # unfused exports
        if by_graph or by_name:
            found.append(node.name)
    return found


def activation_peaks(embedder) -> dict[int, float]:
    """Largest |GELU output| per encoder layer on the fixed sentences (BERT-family layouts; else empty)."""
    return _peaks(_transformer(embedder.model).auto_model,
                  lambda: embedder.encode(FIDELITY_SENTENCES, show_progress=False))


def _peaks(hf, run) -> dict[int, float]:
    """Largest |GELU output| per encoder layer of ``hf`` while ``run()`` runs (a classifier's encoder too)."""
    base = getattr(hf, "base_model", hf)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(layer, "intermediate") for layer in layers):
        return {}
    peaks: dict[int, float] = {}

    def hook(i):
        def record(_module, _inputs, out):
            peaks[i] = max(peaks.get(i, 0.0), float(out.detach().abs().max()))
        return record

    handles = [layer.intermediate.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return peaks


def keep_fp32(down_projections: list[str], peaks: dict[int, float]) -> list[str]:
    """The down-projections to leave in fp32: those whose input (the GELU output) has outliers, i.e. a peak
    above twice the median layer's, and any we cannot place in a layer."""
    if not peaks:
        return list(down_projections)
    limit = 2.0 * float(np.median(list(peaks.values())))
    keep = []
    for name in down_projections:
        found = re.search(r"layer\.(\d+)[./]", name)
        layer = int(found.group(1)) if found else None
        if layer is None or layer not in peaks or peaks[layer] > limit:
            keep.append(name)
    return keep


def _quantize(src: Path, dst: Path, peaks: dict[int, float] | None = None,
              reduce_range: bool | None = None) -> tuple[Path, list[str]]:
    """Dynamic int8, weights per output channel; feed-forward down-projections fed by outliers stay fp32.

    Measured on the built-in model (STS-B test, 2,456 sentences): per-tensor int8 mean cosine 0.991; per
    channel 0.997 but Spearman -0.54 points; per channel with all 12 down-projections in fp32 0.9991 and -0.14
    points but 1/3 of the linear FLOPs left in fp32. The error comes from a few layers whose GELU outputs peak
    far above the others (layers 0, 4 and 5 here: 33, 66, 32 vs a median of 12), so only those stay fp32.

    ``reduce_range`` (default: on CPUs without VNNI): 7-bit weights, so the int16 pair sums of AVX2's u8 x s8
    instructions cannot saturate.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its "pre-process" advice
    keep = keep_fp32(_after_activation(onnx.load(str(src), load_external_data=False)), peaks or {})
    if reduce_range is None:
        reduce_range = rt.int8_kernels() == "avx2"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep,
                     reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst, keep


def fidelity(reference, runner, sentences: list[str] | None = None) -> dict:
    """Mean and minimum cosine of ``runner``'s vectors (an :class:`OnnxEmbedder`) against ``reference``'s (the
    torch fp32 embedder of the same model)."""
    sentences = sentences or FIDELITY_SENTENCES
    ref = reference.encode(sentences, show_progress=False)
    got = runner.encode(sentences, show_progress=False)
    cos = np.sum(ref * got, axis=1)
    return {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
            "sentences": len(sentences)}


def _measure_files(paths: tuple[Path, Path], measure) -> dict:
    """``{file name: {backend, bytes, fidelity}}`` of the fp32 and int8 exports; ``measure(path, kind)``."""
    return {path.name: {"backend": kind, "bytes": path.stat().st_size, "fidelity": measure(path, kind)}
            for kind, path in zip(("onnx", "onnx-int8"), paths, strict=True)}


def _export_once(folder: Path, backend: str, what: str, build, report, log=None) -> dict:
    """``folder``'s export metadata, exporting first when ``backend``'s file is missing: ``build(tmp)`` writes every
    file into a fresh folder and returns its metadata; an interrupted export leaves only a temporary folder, and an
    older export stays usable until the new one is whole. ``report(fidelity)`` words each file's check."""
    from m3e.utils.atomic import atomic_dir

    meta_path = folder / "export.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if FILES[backend] in meta.get("files", {}):
        return meta
    say = log or (lambda _m: None)
    say(f"exporting {what} to ONNX (once; cached in {folder})")
    start = time.perf_counter()
    with atomic_dir(folder, replace=True) as tmp:
        meta = {"export_version": EXPORT_VERSION, **build(tmp), "int8_kernels": rt.int8_kernels(),
                "seconds": round(time.perf_counter() - start, 1),
                "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__}
        (tmp / "export.json").write_text(json.dumps(meta, indent=2))
    for kind, name in FILES.items():
        say(f"  {kind}: {report(meta['files'][name]['fidelity'])}")
    return meta


def _exportable(model, backend: str) -> None:
    """A torch model on CPU with a fast tokenizer (whose tokenizer.json the runtime reads), or a clear error."""
    check_backend(backend)
    if not model.device.startswith("cpu"):
        raise InputError(f"the {backend} backend runs on CPU; on {model.device} use --backend torch")
    rt.require_onnxruntime()
    if not getattr(model.tokenizer, "is_fast", False):
        raise M3EError(f"the onnx backends need the model's fast tokenizer (tokenizer.json); {model.name} has only a "
                       "slow one: use --backend torch")


def _write_tokenizer(model, folder: Path) -> None:
    (folder / TOKENIZER_FILE).write_text(model.tokenizer.backend_tokenizer.to_str(), encoding="utf-8")


def _same_tokens(model, runner) -> None:
    """The runtime's tokenizer.json must give the model tokenizer's ids on the fixed sentences."""
    if runner.tokenize(FIDELITY_SENTENCES) != model.tokenize(FIDELITY_SENTENCES):
        raise M3EError(f"{model.name}: its tokenizer.json tokenizes differently from the model's tokenizer; use "
                       "--backend torch")


def export_embedder(embedder, backend: str, model_dir: Path | None, threads: int, log=None,
                    load_model=None) -> OnnxEmbedder:
    """``embedder`` (torch, CPU) exported once to ONNX and checked; the runner that encodes with the export."""
    _exportable(embedder, backend)
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if embedder._wants_token_types else [])
    folder = onnx_folder(model_dir, embedder.name)
    runtime = {"input_names": input_names, "prefix": embedder._prefix, "suffix": embedder._suffix,
               "pad_id": int(embedder._pad_id), "dim": embedder.dim, "max_length": embedder.max_length,
               "prompts": embedder.prompts, "default_prompt_name": embedder.default_prompt_name}

    def runner(path: Path, kind: str, fid: dict | None = None) -> OnnxEmbedder:
        return OnnxEmbedder(path, runtime, kind, threads, name=embedder.name, provenance=embedder.provenance,
                            fidelity=fid, load_model=load_model)

    def build(tmp: Path) -> dict:
        _write_tokenizer(embedder, tmp)
        peaks = activation_peaks(embedder)
        fp32 = _export_fp32(_transformer(embedder.model).auto_model, tmp, input_names,
                            modules=embedder._modules[1:])
        int8, kept = _quantize(fp32, tmp / FILES["onnx-int8"], peaks)
        _same_tokens(embedder, runner(fp32, "onnx"))
        files = _measure_files((fp32, int8), lambda path, kind: fidelity(embedder, runner(path, kind)))
        return {"model": embedder.name, "model_dir": str(model_dir), "reduce_range": rt.int8_kernels() == "avx2",
                "input_names": input_names, "files": files, "fp32_in_int8": kept, "runtime": runtime,
                "activation_peaks": {str(k): round(v, 3) for k, v in peaks.items()}}

    def report(f: dict) -> str:
        return (f"mean cosine {f['mean_cosine']:.4f}, min {f['min_cosine']:.4f} vs torch fp32 "
                f"({f['sentences']} sentences)")

    meta = _export_once(folder, backend, embedder.name, build, report, log)
    return runner(folder / FILES[backend], backend, rt.check_fidelity(meta, backend, embedder.name))


# ---- rerankers ----------------------------------------------------------------------------------------------------
FIDELITY_QUERIES = FIDELITY_SENTENCES[3:4] + FIDELITY_SENTENCES[6:8] + FIDELITY_SENTENCES[16:19] + \
    FIDELITY_SENTENCES[21:22] + FIDELITY_SENTENCES[24:25]


def rank_fidelity(reranker, runner) -> dict:
    """How far ``runner``'s scores (an :class:`OnnxReranker`) are from ``reranker``'s (torch fp32) on fixed
    query/document pairs: what matters for a reranker is the order it puts documents in, so the guard measures rank
    correlation and top-1 agreement, not only values."""
    from scipy.stats import spearmanr

    ref = [reranker.score(q, FIDELITY_SENTENCES, raw=True) for q in FIDELITY_QUERIES]
    got = [runner.score(q, FIDELITY_SENTENCES, raw=True) for q in FIDELITY_QUERIES]
    per_query = [float(spearmanr(r, g).statistic) for r, g in zip(ref, got, strict=True)]
    top1 = sum(int(np.argmax(r) == np.argmax(g)) for r, g in zip(ref, got, strict=True))
    diff = float(np.max(np.abs(reranker.activate(np.concatenate(ref)) - reranker.activate(np.concatenate(got)))))
    return {"mean_spearman": round(float(np.nanmean(per_query)), 6),
            "min_spearman": round(float(np.nanmin(per_query)), 6),
            "top1_agree": f"{top1}/{len(ref)}", "max_score_diff": round(diff, 6),
            "pairs": len(FIDELITY_QUERIES) * len(FIDELITY_SENTENCES)}


def export_reranker(reranker, backend: str, model_dir: Path | None, threads: int, log=None, load_model=None,
                    max_length: int | None = None) -> OnnxReranker:
    """``reranker`` (torch, CPU) exported once to ONNX and checked on its ranking; the runner that scores with it."""
    _exportable(reranker, backend)
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if reranker._wants_token_types else [])
    folder = onnx_folder(model_dir, reranker.name + "-rerank")
    pre, ta, mid, tb, suf = reranker._types
    runtime = {"input_names": input_names, "pad_id": int(reranker._pad_id),
               "template": {"pre": reranker._pre, "mid": reranker._mid, "suf": reranker._suf,
                            "types": [list(pre), int(ta), list(mid), int(tb), list(suf)]},
               "max_length": int(min(reranker.model.max_length or 512, 512))}

    def runner(path: Path, kind: str, fid: dict | None = None) -> OnnxReranker:
        return OnnxReranker(path, runtime, kind, threads, name=reranker.name, provenance=reranker.provenance,
                            fidelity=fid, max_length=max_length, load_model=load_model)

    def build(tmp: Path) -> dict:
        _write_tokenizer(reranker, tmp)
        peaks = _peaks(reranker.hf, lambda: [reranker.score(q, FIDELITY_SENTENCES) for q in FIDELITY_QUERIES])
        fp32 = _export_fp32(reranker.hf, tmp, input_names, output="logits")
        int8, kept = _quantize(fp32, tmp / FILES["onnx-int8"], peaks)
        _same_tokens(reranker, runner(fp32, "onnx"))
        files = _measure_files((fp32, int8), lambda path, kind: rank_fidelity(reranker, runner(path, kind)))
        return {"model": reranker.name, "kind": "reranker", "model_dir": str(model_dir), "input_names": input_names,
                "files": files, "fp32_in_int8": kept, "runtime": runtime}

    def report(f: dict) -> str:
        return (f"Spearman mean {f['mean_spearman']:.4f}, min {f['min_spearman']:.4f}, top-1 {f['top1_agree']}, "
                f"max score diff {f['max_score_diff']:.4f} vs torch fp32")

    meta = _export_once(folder, backend, f"reranker {reranker.name}", build, report, log)
    return runner(folder / FILES[backend], backend, rt.check_rank_fidelity(meta, backend, reranker.name))
