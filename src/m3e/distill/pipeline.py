"""``m3e distill RECIPE``: a static model from a transformer teacher, in resumable stages.

    sources --overlap filter--> corpus (texts + roles, a held-out slice) --teacher--> vectors (shards)
    teacher tokenizer --corpus--> kept tokens --skeletoken--> pruned teacher --model2vec--> plain static model
    plain static model + (texts, vectors) --tokenlearn--> trained static model --int8--> the shipped model

Each stage writes into ``OUTPUT/work/`` under a key of what it depends on and is skipped when its result is
there, so ``--resume`` after a kill redoes at most the stage that was running (teacher vectors resume by shard).
Both static models are validated on the held-out records (:mod:`m3e.distill.validation`); ``report.json`` holds
every number, and ``OUTPUT/model`` is the selected model, exactly as ``OUTPUT/packed`` dequantizes.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from m3e.errors import InputError

RECIPE_KEYS = {"name", "teacher", "description", "sources", "sources_from", "max_records", "filter_tasks",
               "filter_files", "distill", "license"}


@dataclass
class DistillConfig:
    pca_dims: int = 256  # model2vec's PCA of the token vectors (and tokenlearn's of the targets)
    sif_coefficient: float | None = 1.0e-4  # model2vec's frequency weighting of token vectors (None: off)
    extra_latin: int = 8000  # most probable ASCII tokens kept beyond the corpus's own
    min_count: int = 1  # corpus tokens seen fewer times are dropped (single characters always stay)
    tokenlearn: bool = True  # fit the token vectors to the teacher's vectors of the corpus
    held_out: float = 0.02  # share of records held out for validation
    sentences: bool = True  # also learn from each sentence of the longer texts (passages): more, shorter targets
    max_texts: int | None = None  # cap on the texts tokenlearn trains on (a fixed-seed sample)
    # Teacher vectors are unit length, so tokenlearn's MSE is ~1e-4 and its early stop (an absolute 1e-4
    # improvement) ends training after 3 epochs; targets scaled by this (None: sqrt(dim)) train to convergence.
    target_scale: float | None = None
    teacher_backend: str = "torch"
    quantize: str = "int8"  # int8 (shipped size) or float32 rows in the packed file
    seed: int = 42


def load_distill_recipe(path: Path) -> dict:
    from m3e.training.recipe import check_filter_files, check_sources, read_recipe_file

    recipe = read_recipe_file(path, RECIPE_KEYS, "a distill recipe", required=("teacher",))
    sources = list(recipe.get("sources") or [])
    if not isinstance(sources, list):
        raise InputError(f"{path}: 'sources' is a list of mappings with a 'path'")
    if recipe.get("sources_from"):
        from m3e.training.recipe import load_recipe

        other = Path(path).parent / recipe["sources_from"]
        # A static model learns from every text: the training recipe's per-source caps do not carry over.
        sources = [{k: v for k, v in spec.items() if k != "max_records"} for spec in load_recipe(other)["sources"]]
        sources += list(recipe.get("sources") or [])
    if not sources:
        raise InputError(f"{path}: no sources (give 'sources' or 'sources_from')")
    check_sources(path, sources)
    check_filter_files(path, recipe.get("filter_files"))
    recipe["sources"] = sources
    known = {f.name for f in fields(DistillConfig)}
    bad = set(recipe.get("distill") or {}) - known
    if bad:
        raise InputError(f"{path}: unknown distill options {sorted(bad)}; known: {sorted(known)}")
    return recipe


def _quiet_progress() -> None:
    """model2vec's and tokenlearn's progress bars draw only on a terminal (a log file gets our stage lines)."""
    import functools

    import model2vec.distill.inference as m2v_inference
    import tokenlearn.pretrain as tl_pretrain
    from tqdm import tqdm

    for module in (m2v_inference, tl_pretrain):
        if getattr(module, "tqdm", None) is tqdm:
            module.tqdm = functools.partial(tqdm, disable=None)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_distill(path: Path, data_dir: Path, output: Path | None = None, resume: bool = False,
                threads: int | None = None, log=print, **overrides) -> Path:
    from m3e.distill.corpus import Corpus, build_corpus
    from m3e.distill.features import teacher_vectors
    from m3e.models.resolver import load_model
    from m3e.training.recipe import build_sources

    recipe = load_distill_recipe(path)
    config = DistillConfig(**{**(recipe.get("distill") or {}),
                              **{k: v for k, v in overrides.items() if v is not None}})
    output = Path(output or recipe.get("name", "m3e-static"))
    if output.exists() and any(output.iterdir()) and not resume:
        raise InputError(f"{output} exists and is not empty; pass --resume to continue it, or choose a new folder")
    work = output / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    times: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        times[name] = round(time.perf_counter() - t0, 1)
        log(f"[{name}] done in {times[name]:.0f} s")

    # 1. texts: sources, test-overlap filter (+ the recipe's extra evaluation/validation files), held-out slice
    t0 = time.perf_counter()
    sources, report, sizes = build_sources(recipe, Path(data_dir))
    log(f"test-overlap filter against {sum(sizes.values()):,} texts of {len(sizes)} tasks and held-back files:")
    for name, counts in report.items():
        log(f"  {name}: kept {counts['kept']:,}, dropped {counts['dropped_records']:,} records")
    corpus = build_corpus(sources, config.held_out, sentences=config.sentences)
    fingerprint = corpus.fingerprint()
    saved = work / "corpus"
    if not (saved / "corpus.json").is_file() or \
            json.loads((saved / "corpus.json").read_text())["fingerprint"] != fingerprint:
        corpus.save(saved)
    corpus = Corpus.load(saved)
    val_texts, val_roles = corpus.validation_texts()
    log(f"corpus: {len(corpus.texts):,} distinct training texts and {len(corpus.sentences):,} sentences of the longer "
        f"ones, {len(val_texts):,} held-out texts in {len(corpus.held_out)} sources (fingerprint {fingerprint})")
    stage("corpus", t0)

    # 2. the teacher's vectors (the slow stage: resumable by shard)
    t0 = time.perf_counter()
    teacher = load_model(recipe["teacher"], device="cpu", threads=threads, backend=config.teacher_backend, log=log)
    from m3e.models.fingerprint import model_fingerprint

    key = {"teacher": teacher.label, "fingerprint": model_fingerprint(teacher)}  # a retrained teacher: new vectors
    # Held-out texts between the whole texts and their sentences: each part's shards stay cached when another grows.
    n, m = len(corpus.texts), len(val_texts)
    all_texts = corpus.texts + val_texts + corpus.sentences
    all_roles = corpus.roles + val_roles + corpus.sentence_roles
    vectors = teacher_vectors(teacher, all_texts, all_roles, work / f"teacher-{_key(key)}", key, log=log)
    train_vec = np.concatenate([vectors[:n], vectors[n + m:]])
    val_vec = vectors[n:n + m]
    train_texts = corpus.texts + corpus.sentences
    stage("teacher vectors", t0)

    def teacher_encode(texts: list[str], role: str) -> np.ndarray:
        prompt = {"query": "query", "passage": "passage"}[role]
        return teacher.encode(texts, prompt_name=prompt if prompt in teacher.prompts else None, show_progress=False)

    from m3e.distill.validation import evaluate

    val_ref = (val_texts, val_vec)
    results: dict[str, dict] = {"teacher": evaluate(teacher_encode, corpus.held_out)}
    log(f"validation, teacher {teacher.name}: {_summary(results['teacher'])}")

    # 3. vocabulary and the plain model2vec distillation
    t0 = time.perf_counter()
    plain_key = _key(fingerprint, config.pca_dims, config.sif_coefficient, config.extra_latin, config.min_count, key)
    plain_dir = work / f"plain-{plain_key}"
    vocab_report = _distill_plain(teacher, train_texts, config, plain_dir, log)
    stage("distill", t0)
    results["plain"] = _validate(plain_dir, corpus.held_out, val_ref)
    log(f"validation, plain distillation: {_summary(results['plain'])}")

    chosen = plain_dir
    if config.tokenlearn:
        t0 = time.perf_counter()
        learned_dir = work / f"tokenlearn-{_key(plain_dir.name, config.max_texts, config.seed, config.target_scale)}"
        if not (learned_dir / "config.json").is_file():
            _tokenlearn(plain_dir, train_texts, train_vec, config, learned_dir, log)
        stage("tokenlearn", t0)
        results["tokenlearn"] = _validate(learned_dir, corpus.held_out, val_ref)
        log(f"validation, tokenlearn: {_summary(results['tokenlearn'])}")
        chosen = learned_dir

    # 4. the shipped form: int8 rows (or float32), and the folder exactly as it dequantizes
    from m3e.distill.pack import read_packed, write_model, write_packed
    from m3e.utils.atomic import atomic_dir, write_text

    embeddings, tokenizer_json, _ = _read_model(chosen)
    info = {"name": recipe.get("name"), "teacher": recipe["teacher"], "dim": int(embeddings.shape[1]),
            "vocabulary": int(embeddings.shape[0]), "quantize": config.quantize, "corpus": fingerprint}
    with atomic_dir(output / "packed", replace=True) as tmp:
        write_packed(tmp, embeddings, tokenizer_json, info, quantize=config.quantize)
    embeddings, tokenizer_json, _ = read_packed(output / "packed")
    with atomic_dir(output / "model", replace=True) as tmp:
        write_model(tmp, embeddings, tokenizer_json, {"m3e": info}, card=recipe.get("description"))
    results["shipped"] = _validate(output / "model", corpus.held_out, val_ref)
    log(f"validation, shipped ({config.quantize}): {_summary(results['shipped'])}")
    times["total"] = round(time.perf_counter() - started, 1)
    write_text(output / "report.json", json.dumps({
        "recipe": str(path), "config": asdict(config), "overlap_filter": report, "evaluation_texts": sizes,
        "corpus": {"texts": len(corpus.texts), "sentences": len(corpus.sentences), "by_source": corpus.sources,
                   "held_out_pairs": {k: len(v["pairs"]) for k, v in corpus.held_out.items()}},
        "vocabulary": vocab_report, "validation": results, "seconds": times,
        "packed_bytes": sum(f.stat().st_size for f in (output / "packed").glob("*")),
    }, indent=2, ensure_ascii=False))
    return output


def _summary(result: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.items() if k != "per_source")


def _read_model(folder: Path) -> tuple[np.ndarray, str, dict]:
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    emb = tensors["embeddings"] if "embeddings" in tensors else tensors["embedding.weight"]
    if "mapping" in tensors:
        emb = emb[tensors["mapping"]]
    if "weights" in tensors:
        emb = emb * tensors["weights"][:, None]
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    return emb.astype(np.float32), (folder / "tokenizer.json").read_text(encoding="utf-8"), config


def _validate(folder: Path, held_out: dict, reference) -> dict:
    from m3e.distill.validation import evaluate
    from m3e.models.resolver import load_model

    model = load_model(str(folder), device="cpu")
    return evaluate(lambda texts, _role: model.encode(texts, show_progress=False), held_out, reference)


def _distill_plain(teacher, texts: list[str], config: DistillConfig, folder: Path, log) -> dict:
    """Prune the teacher's vocabulary to the corpus, then model2vec's distillation; written to ``folder``."""
    from m3e.distill.vocab import choose_tokens, is_cjk, prune_teacher
    from m3e.utils.atomic import atomic_dir

    report_path = folder / "vocabulary.json"
    if report_path.is_file():
        return json.loads(report_path.read_text())
    try:
        from model2vec.distill import distill_from_model
    except ImportError:
        raise InputError("m3e distill needs model2vec and tokenlearn: pip install 'm3e[distill]'") from None
    _quiet_progress()
    st = teacher.model
    hf_model, tokenizer = st[0].auto_model, st[0].tokenizer
    keep, why = choose_tokens(tokenizer, texts, extra_latin=config.extra_latin, min_count=config.min_count)
    log(f"vocabulary: keeping {len(keep):,} of {len(tokenizer):,} tokens ({why})")
    pruned_model, pruned_tok = prune_teacher(hf_model, tokenizer, keep)
    static = distill_from_model(pruned_model, pruned_tok, pca_dims=config.pca_dims,
                                sif_coefficient=config.sif_coefficient, quantize_to="float32")
    # No CJK character of the corpus may fall to the unknown token that the teacher's tokenizer knew.
    chars = sorted({c for t in texts for c in t if is_cjk(c)})
    unk_new = static.tokenizer.token_to_id(tokenizer.unk_token)
    orig_unk = {c for c, e in zip(chars, tokenizer.backend_tokenizer.encode_batch_fast(chars, add_special_tokens=False),
                                   strict=True) if tokenizer.unk_token_id in e.ids}
    lost = [c for c, e in zip(chars, static.tokenizer.encode_batch_fast(chars, add_special_tokens=False),
                              strict=True) if unk_new in e.ids and c not in orig_unk]
    if lost:
        raise RuntimeError(f"pruning lost {len(lost)} CJK characters of the corpus, e.g. {''.join(lost[:10])}")
    report = {"kept": len(keep), "teacher_vocabulary": len(tokenizer), "why": why,
              "static_vocabulary": static.tokenizer.get_vocab_size(), "corpus_cjk_characters": len(chars),
              "cjk_unknown_in_teacher": len(orig_unk)}
    from m3e.distill.pack import folded_rows, write_model

    with atomic_dir(folder, replace=True) as tmp:
        write_model(tmp, folded_rows(static), static.tokenizer.to_str(),
                    {"pca_dims": config.pca_dims, "sif_coefficient": config.sif_coefficient})
        (tmp / "vocabulary.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _tokenlearn(plain_dir: Path, texts: list[str], vectors: np.ndarray, config: DistillConfig, folder: Path,
                log) -> None:
    """tokenlearn's training on (texts, teacher vectors), started from the plain model."""
    import logging

    import torch
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    root = logging.getLogger().level
    from tokenlearn.train import train_model  # its import sets the root logger to INFO (logging.basicConfig)

    logging.getLogger().setLevel(root)

    from m3e.distill.pack import folded_rows, write_model
    from m3e.utils.atomic import atomic_dir

    logging.getLogger("tokenlearn").setLevel(logging.INFO)  # its epoch and validation-loss lines: the progress
    _quiet_progress()
    emb, tokenizer_json, cfg = _read_model(plain_dir)
    tokenizer = Tokenizer.from_str(_pad_first(tokenizer_json))
    model = StaticModel(vectors=emb, tokenizer=tokenizer, config=cfg, normalize=True)
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)  # tokenlearn holds out the LAST tenth for early stopping
    if config.max_texts:
        order = order[:config.max_texts]
    torch.manual_seed(config.seed)
    scale = config.target_scale or float(np.sqrt(vectors.shape[1]))
    log(f"tokenlearn: training on {len(order):,} texts (targets x {scale:.2f})")
    trained = train_model(model, [texts[i] for i in order], vectors[order] * np.float32(scale), device="cpu",
                          pca_dims=config.pca_dims)
    with atomic_dir(folder, replace=True) as tmp:
        write_model(tmp, folded_rows(trained), trained.tokenizer.to_str(), {"tokenlearn": True})


def _pad_first(tokenizer_json: str) -> str:
    """tokenlearn pads with id 0 and looks the padding row up as "[PAD]": name the pruned tokenizer's padding
    token so (it is id 0 there); the name is never produced from text."""
    data = json.loads(tokenizer_json)
    vocab = data["model"]["vocab"]
    first = vocab[0][0] if isinstance(vocab, list) else min(vocab, key=vocab.get)
    if first not in ("<pad>", "[PAD]"):
        raise RuntimeError(f"tokenlearn needs the padding token at id 0; this tokenizer has {first!r} there")
    if first == "[PAD]":
        return tokenizer_json
    if isinstance(vocab, list):
        vocab[0][0] = "[PAD]"
    else:
        vocab["[PAD]"] = vocab.pop("<pad>")
    for tok in data.get("added_tokens", []):
        if tok["content"] == "<pad>":
            tok["content"] = "[PAD]"
    if data.get("padding") and data["padding"].get("pad_token") == "<pad>":
        data["padding"]["pad_token"] = "[PAD]"
    return json.dumps(data, ensure_ascii=False)
