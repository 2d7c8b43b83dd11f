"""Rerankers trained the m3e way: the same sources and formats as the bi-encoder, one source per batch, hard
negatives mined by an embedding model behind the false-negative guard, checkpoints chosen on held-out data.

The loop is sentence-transformers' ``CrossEncoderTrainer`` (transformers' Trainer: checkpoints and
``--resume``, gradient accumulation, torchrun/accelerate for several GPUs); its proportional multi-dataset
sampler draws every batch from one source. Two losses: ``bce`` (binary cross-entropy on each (query, document)
pair: the positive 1, mined negatives 0, scored pairs their score scaled to [0, 1]) and ``listwise`` (InfoNCE
over the positive, the mined negatives and in-batch negatives: sentence-transformers' cross-encoder
MultipleNegativesRankingLoss). Validation: a fixed-seed share of each source's queries, never trained on, ranked
with their positive and mined negatives (MRR@10, nDCG@10); the best checkpoint by nDCG@10 is the model.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from m3e.errors import InputError

LOSSES = ("bce", "listwise")


@dataclass
class RerankConfig:
    output: str = "m3e-reranker"
    loss: str = "bce"
    negatives: int = 3  # hard negatives per query: the record's own first, then mined ones
    mine_with: str | None = None  # embedding model that mines negatives (default: the default model)
    mine_backend: str = "torch"
    rank_range: list[int] = field(default_factory=lambda: [3, 50])  # mined among these ranks (1-based, end excl.)
    margin: float = 0.95  # skip candidates at or above margin x the positive's similarity (likely positives)
    in_batch: int = 3  # listwise: in-batch negatives per query besides the hard ones
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16  # bce: pairs; listwise: queries
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    freeze_embeddings: bool = True  # the 250k-piece table of multilingual models: memory, and a smaller diff
    validation: float = 0.03  # share of each source's queries held out for checkpoint choice
    max_validation: int = 60  # per source
    eval_every: int = 100
    save_every: int = 100
    resume: bool = False
    seed: int = 42
    threads: int | None = None
    device: str | None = None

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, not '{self.loss}'")
        if not (isinstance(self.rank_range, (list, tuple)) and len(self.rank_range) == 2
                and 1 <= self.rank_range[0] < self.rank_range[1]):
            raise InputError(f"rank_range is [first, last) ranks, e.g. [3, 50]; got {self.rank_range!r}")
        if self.negatives < 1 or self.batch_size < 2:
            raise InputError("negatives must be >= 1 and batch_size >= 2")
        if not 0 < self.validation < 0.5:
            raise InputError(f"validation is a share of the queries between 0 and 0.5, not {self.validation}")


@dataclass
class Group:
    query: str
    positive: str
    negatives: list[str]
    label: float | None = None  # scored pairs: the score scaled to [0, 1]; no negatives


def scored_groups(source) -> list[Group]:
    """A scored source's pairs, their scores scaled to [0, 1] over the source (binary 0/1 sources stay 0/1)."""
    records = [r for r in source.batch(range(len(source)))]
    scores = [float(r.score) for r in records]
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return []
    return [Group(r.anchor, r.positive, [], (float(r.score) - lo) / (hi - lo)) for r in records]


def ranking_groups(source, miner, config: RerankConfig, counts: dict) -> list[Group]:
    """(query, positive, negatives) of a pair or triplet source: its own negatives first, then mined ones among
    the source's positives (ranked ``rank_range`` by ``miner``, skipping likely positives)."""
    from m3e.data.records import Source
    from m3e.training.mining import mine

    records = source.batch(range(len(source)))
    need = [r for r in records if len(r.negatives) < config.negatives]
    mined: dict[tuple[str, str], list[str]] = {}
    if need and miner is not None:
        rows, skipped = mine(miner, Source(source.name, "pair", need), [], rank_range=tuple(config.rank_range),
                             num_negatives=config.negatives, margin=config.margin, seed=config.seed)
        for k, v in skipped.items():
            counts[k] = counts.get(k, 0) + v
        mined = {(row["query"], row["pos"][0]): row["neg"] for row in rows}
    out = []
    for r in records:
        negs = list(dict.fromkeys(r.negatives + mined.get((r.anchor, r.positive), [])))
        negs = [n for n in negs if n not in (r.anchor, r.positive)][:config.negatives]
        if not negs:
            counts["no negative found"] = counts.get("no negative found", 0) + 1
            continue
        out.append(Group(r.anchor, r.positive, negs))
    return out


def split_groups(groups: list[Group], config: RerankConfig) -> tuple[list[Group], list[Group]]:
    """Held-out queries (a fixed-seed sample; every group of a held-out query goes with it) and the rest."""
    queries = sorted({g.query for g in groups})
    random.Random(config.seed).shuffle(queries)
    n = min(config.max_validation, int(len(queries) * config.validation))
    held = set(queries[:n])
    return [g for g in groups if g.query not in held], [g for g in groups if g.query in held and g.label is None]


def training_rows(groups: list[Group], config: RerankConfig) -> dict[str, list]:
    """Columns for the chosen loss: bce (query, document, label) or listwise (query, positive, negative_1..k)."""
    if config.loss == "bce":
        rows = {"query": [], "document": [], "label": []}
        for g in groups:
            pairs = [(g.positive, g.label)] if g.label is not None else \
                [(g.positive, 1.0)] + [(n, 0.0) for n in g.negatives]
            for doc, label in pairs:
                rows["query"].append(g.query)
                rows["document"].append(doc)
                rows["label"].append(float(label))
        return rows
    k = config.negatives
    rows = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}}
    for g in groups:
        if g.label is not None or len(g.negatives) < k:
            continue
        rows["query"].append(g.query)
        rows["positive"].append(g.positive)
        for i in range(k):
            rows[f"negative_{i + 1}"].append(g.negatives[i])
    return rows


def load_cross_encoder(name: str, *, device: str | None, max_length: int):
    """A CrossEncoder to train from ``name``: a reranker as it is, or an embedding model's transformer with a new
    one-label head."""
    from sentence_transformers import CrossEncoder

    from m3e.models.resolver import resolve

    resolved = resolve(name)
    path = resolved.path
    if resolved.role != "reranker" and (path / "modules.json").is_file():
        modules = json.loads((path / "modules.json").read_text())
        first = next((m for m in modules if m.get("type", "").endswith("Transformer")), None)
        path = path / first["path"] if first and first.get("path") else path
    return CrossEncoder(str(path), num_labels=1, device=device, max_length=max_length,
                        model_kwargs={"use_safetensors": True})


def train_reranker(base: str, sources: list, config: RerankConfig, log=print) -> Path:
    """Train a reranker from ``base`` on ``sources``; returns the output folder (model/ is the chosen checkpoint)."""
    from datasets import Dataset, DatasetDict
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss

    from m3e.models.encoder import pick_device, set_threads
    from m3e.models.resolver import default_model_name, load_model
    from m3e.utils.atomic import atomic_dir, write_text

    config.check()
    out = Path(config.output)
    model_dir = out / "model"
    if model_dir.exists() and not config.resume:
        raise InputError(f"{model_dir} exists; choose a new --output, or --resume to continue that run")
    set_threads(config.threads)
    device = pick_device(config.device)
    start = time.perf_counter()
    miner = None
    if any(s.kind != "scored" for s in sources):
        miner = load_model(config.mine_with or default_model_name(), device=device, threads=config.threads,
                           backend=config.mine_backend if device == "cpu" else "torch")
    train_sets, val_groups, report = {}, [], {}
    for source in sources:
        counts: dict[str, int] = {}
        if source.kind == "scored":
            if config.loss == "listwise":
                report[source.name] = {"skipped": f"{len(source)} scored pairs (the listwise loss needs a positive "
                                                  "and negatives; use loss: bce)"}
                log(f"{source.name}: skipped, {report[source.name]['skipped']}")
                continue
            groups = scored_groups(source)
        else:
            groups = ranking_groups(source, miner, config, counts)
        train, held = split_groups(groups, config)
        rows = training_rows(train, config)
        n_rows = len(next(iter(rows.values())))
        report[source.name] = {"records": len(source), "groups": len(groups), "validation_queries": len(held),
                               "training_rows": n_rows, "mining": counts}
        log(f"{source.name}: {len(groups):,} groups, {n_rows:,} training rows, {len(held)} held-out queries"
            + (f"; mining: {counts}" if counts else ""))
        if n_rows:
            train_sets[source.name] = Dataset.from_dict(rows)
        val_groups += held
    if not train_sets:
        raise InputError("no training rows: every source was empty or skipped")
    del miner
    rng = random.Random(config.seed)
    samples = []
    for g in val_groups:  # shuffled: the evaluator's "base" ranking (the list's own order) is then a random one
        docs = [g.positive, *g.negatives]
        rng.shuffle(docs)
        samples.append({"query": g.query, "positive": [g.positive], "documents": docs})
    evaluator = CrossEncoderRerankingEvaluator(samples, name="validation", batch_size=32, write_csv=False) \
        if samples else None

    model = load_cross_encoder(base, device=device, max_length=config.max_length)
    if config.freeze_embeddings:
        model[0].model.get_input_embeddings().weight.requires_grad_(False)
    loss = BinaryCrossEntropyLoss(model) if config.loss == "bce" else \
        MultipleNegativesRankingLoss(model, num_negatives=config.in_batch)
    before = evaluator(model) if evaluator is not None else {}
    if before:
        log(f"validation before training: {_short(before)}")
    metric = "eval_validation_ndcg@10"
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, learning_rate=config.lr,
        warmup_steps=config.warmup_ratio,  # below 1: a share of the steps (transformers 5)
        multi_dataset_batch_sampler="proportional", eval_strategy="steps" if evaluator else "no",
        eval_steps=config.eval_every, save_strategy="steps", save_steps=config.save_every, save_total_limit=2,
        load_best_model_at_end=evaluator is not None, metric_for_best_model=metric if evaluator else None,
        greater_is_better=True, logging_steps=10, seed=config.seed, report_to="none", use_cpu=device == "cpu",
        dataloader_drop_last=True, disable_tqdm=True, save_only_model=False)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=DatasetDict(train_sets), loss=loss,
                                  evaluator=evaluator)
    resume = config.resume and any((out / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    after = evaluator(model) if evaluator is not None else {}
    if after:
        log(f"validation after training (chosen checkpoint): {_short(after)}")
    with atomic_dir(model_dir, replace=True) as tmp:
        model.save(str(tmp))
    write_text(out / "training_report.json", json.dumps({
        "base": base, "config": asdict(config), "sources": report, "validation_before": before,
        "validation_after": after, "best_checkpoint": trainer.state.best_model_checkpoint,
        "steps": trainer.state.global_step, "seconds": round(time.perf_counter() - start, 1)},
        indent=2, ensure_ascii=False))
    return out


def _short(metrics: dict) -> str:
    return ", ".join(f"{k.split('_', 1)[-1]} {v:.4f}" for k, v in metrics.items()
                     if k.endswith(("mrr@10", "ndcg@10", "map")))


def pack_reranker(trained: Path, base: str, target: Path, rank: int = 64, card: str | None = None) -> dict:
    """Write a trained reranker as a difference from the built-in ``base`` it was trained from (see
    :mod:`m3e.models.weight_diff`); returns the packing report (per-matrix error, bytes)."""
    import torch
    from sentence_transformers import CrossEncoder

    from m3e.models.weight_diff import DIFF_FILE, pack_diff, write_diff

    model = CrossEncoder(str(trained), device="cpu")
    starts = []
    for seed in (1, 2):  # what the base lacks is initialized at random: two seeds tell it apart, stored whole
        torch.manual_seed(seed)
        starts.append(load_cross_encoder(base, device="cpu", max_length=model.max_length)[0].model.state_dict())
    fresh = {k for k, v in starts[0].items() if not torch.equal(v, starts[1][k])}
    packed, errors = pack_diff(starts[0], model[0].model.state_dict(), rank, full=fresh)
    info = {"base": base, "rank": rank, "max_length": model.max_length, "new_tensors": sorted(fresh),
            "worst_relative_error": max(errors.values(), default=0.0),
            "mean_relative_error": sum(errors.values()) / max(len(errors), 1)}
    write_diff(Path(target), packed, info)
    if card:
        (Path(target) / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return {**info, "bytes": (Path(target) / DIFF_FILE).stat().st_size, "matrices": len(errors)}


def build_from_diff(folder: Path, base: str, target: Path) -> Path:
    """The CrossEncoder folder of a packed reranker: the base's transformer with a new head, plus the difference."""
    from m3e.models.weight_diff import apply_diff, read_diff

    packed, info = read_diff(folder)
    model = load_cross_encoder(base, device="cpu", max_length=int(info.get("max_length") or 512))
    hf = model[0].model
    hf.load_state_dict(apply_diff(hf.state_dict(), packed))
    model.save(str(target))
    return target
