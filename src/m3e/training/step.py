"""One optimization step's forward and backward, plain or cached (GradCache).

GradCache: embed everything without gradients in mini-batches, compute the loss on the full batch of
embeddings and its gradient with respect to them, then re-embed each mini-batch with gradients (replaying its
dropout RNG) and backpropagate that slice of the embedding gradient. The contrastive batch is then limited by
time, not memory; the gradients equal the uncached step's (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from m3e.data.records import Record
from m3e.training import losses


@dataclass
class BatchTexts:
    """A batch laid out for the loss: texts per role, with prompts already applied."""

    kind: str  # pair | triplet | scored
    anchors: list[str]
    positives: list[str]
    negatives: list[str]
    scores: list[float]


def layout(records: list[Record], kind: str, anchor_prefix: str, doc_prefix: str) -> BatchTexts:
    negatives = [doc_prefix + n for r in records for n in r.negatives] if kind != "scored" else []
    return BatchTexts(kind, [anchor_prefix + r.anchor for r in records],
                      [doc_prefix + r.positive for r in records], negatives,
                      [float(r.score) for r in records] if kind == "scored" else [])


class RandState:
    """CPU and CUDA RNG state, so a mini-batch can be re-embedded with the same dropout masks."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def compute_loss(batch: BatchTexts, embed: Callable[[list[str]], torch.Tensor], *, temperature: float,
                 symmetric: bool, gather: bool, dims: list[int] | None, cosent_scale: float,
                 embeddings: dict[str, torch.Tensor] | None = None, keep_base: float = 0.0,
                 keep_geometry: float = 0.0, reference: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The batch's contrastive loss, plus ``keep_base`` x the drift from ``reference`` (the starting model's
    embeddings of the same texts, per role) and ``keep_geometry`` x the change of the cosines the loss does not
    act on, when given."""
    e = embeddings or {role: embed(texts) for role, texts in roles(batch)}
    if batch.kind == "scored":
        scores = torch.tensor(batch.scores, device=e["anchors"].device)
        loss = losses.matryoshka(losses.cosent, dims, e["anchors"], e["positives"], scores=scores, scale=cosent_scale)
    else:
        loss = losses.matryoshka(losses.info_nce, dims, e["anchors"], e["positives"], e.get("negatives"),
                                 temperature=temperature, symmetric=symmetric, gather=gather)
    if keep_base and reference:
        names = sorted(reference)
        loss = loss + keep_base * losses.drift(torch.cat([e[r] for r in names]), torch.cat([reference[r]
                                                                                          for r in names]))
    if keep_geometry and reference:
        names = [r for r, _ in roles(batch)]
        loss = loss + keep_geometry * losses.geometry(torch.cat([e[r] for r in names]),
                                                      torch.cat([reference[r] for r in names]), taught_pairs(batch))
    return loss


def taught_pairs(batch: BatchTexts) -> torch.Tensor:
    """(N, N) bool over the batch's texts in role order: True where the loss acts on the cosine (a scored record's
    own pair; for InfoNCE every anchor against every candidate), symmetric."""
    sizes = [len(texts) for _, texts in roles(batch)]
    n, a = sum(sizes), sizes[0]
    taught = torch.zeros((n, n), dtype=torch.bool)
    if batch.kind == "scored":
        idx = torch.arange(a)
        taught[idx, a + idx] = True
    else:
        taught[:a, a:] = True
    return taught | taught.T


def reference_embeddings(batch: BatchTexts, embed_reference: Callable[[list[str]], torch.Tensor],
                         mini_batch: int) -> dict[str, torch.Tensor]:
    """The starting model's embeddings of every text of the batch (no gradients), per role."""
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for role, texts in roles(batch):
            out[role] = torch.cat([embed_reference(texts[i:i + mini_batch]) for i in range(0, len(texts), mini_batch)])
    return out


def roles(batch: BatchTexts) -> list[tuple[str, list[str]]]:
    out = [("anchors", batch.anchors), ("positives", batch.positives)]
    if batch.negatives:
        out.append(("negatives", batch.negatives))
    return out


def attention_mini_batch(lengths: dict[str, tuple[int, int]], heads: int, layers: int,
                         budget_bytes: float) -> int | None:
    """The most texts per forward that keep the attention matrices a CPU step holds for backward under budget, or
    None when the whole batch fits. ``lengths``: role -> (texts, padded tokens). With a padding mask, CPU SDPA
    falls back to the math path, which keeps scores, probabilities, the dropout mask and its output per layer
    (about 16 bytes x heads x tokens^2 per text and layer); one 32-pair batch of 300-token texts took 21.7 GB."""
    per_text = max(16 * heads * layers * length ** 2 for _, length in lengths.values())
    if sum(16 * heads * layers * n * length ** 2 for n, length in lengths.values()) <= budget_bytes:
        return None
    return max(1, int(budget_bytes // per_text))


def plain_step(batch: BatchTexts, embed, backward: Callable[[torch.Tensor], None], **loss_kw) -> float:
    loss = compute_loss(batch, embed, **loss_kw)
    backward(loss)
    return float(loss.detach())


def cached_step(batch: BatchTexts, embed, backward: Callable[[torch.Tensor], None], mini_batch: int,
                no_sync=nullcontext, **loss_kw) -> float:
    """GradCache. ``no_sync`` (DDP) keeps gradient all-reduce to the last mini-batch's backward."""
    chunks: list[tuple[str, int, list[str], RandState]] = []
    cached: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for role, texts in roles(batch):
            for start in range(0, len(texts), mini_batch):
                part = texts[start:start + mini_batch]
                state = RandState()
                cached.setdefault(role, []).append(embed(part))
                chunks.append((role, start, part, state))
    leaves = {role: torch.cat(parts).detach().requires_grad_() for role, parts in cached.items()}
    loss = compute_loss(batch, embed, embeddings=leaves, **loss_kw)
    loss.backward()
    for i, (role, start, part, state) in enumerate(chunks):
        grad = leaves[role].grad[start:start + len(part)]
        saved = RandState()
        state.restore()
        last = i == len(chunks) - 1
        with nullcontext() if last else no_sync():
            emb = embed(part)
            backward(torch.dot(emb.flatten().float(), grad.flatten().float()))
        saved.restore()
    return float(loss.detach())


class Stepper:
    """One optimizer step's forward and backward for a batch of one source: the model's embeddings, the starting
    model's (for the drift and geometry terms), and the CPU attention-memory split into GradCache mini-batches."""

    def __init__(self, model, inner, acc, config, frozen, drift_weights: list[float]) -> None:
        self.model, self.inner, self.acc, self.config = model, inner, acc, config
        self.frozen = frozen  # a frozen copy of the starting model (full fine-tuning), or None (LoRA: adapter off)
        self.drift_weights = drift_weights
        self.prepare = getattr(inner, "preprocess", None) or inner.tokenize  # sentence-transformers 6 renamed it
        auto = inner[0].auto_model.config
        self.heads, self.layers = auto.num_attention_heads, auto.num_hidden_layers
        self.budget = config.attention_memory_gb * 2**30 if acc.device.type == "cpu" else 0
        self.loss_kw = {"temperature": config.temperature, "symmetric": config.symmetric,
                        "gather": acc.num_processes > 1, "dims": config.matryoshka_dims,
                        "cosent_scale": config.cosent_scale, "keep_geometry": config.keep_geometry}

    def features(self, texts: list[str]) -> dict:
        return {k: v.to(self.acc.device) if torch.is_tensor(v) else v for k, v in self.prepare(texts).items()}

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.model(self.features(texts))["sentence_embedding"]

    def embed_reference(self, texts: list[str]) -> torch.Tensor:
        features = self.features(texts)
        if self.frozen is not None:
            return self.frozen(features)["sentence_embedding"]
        self.inner.eval()
        try:
            with self.inner[0].auto_model.disable_adapter():
                return self.inner(features)["sentence_embedding"]
        finally:
            self.inner.train()

    def split(self, batch: BatchTexts) -> int | None:
        """GradCache mini-batch for a CPU batch whose attention would not fit the budget, else None."""
        if not self.budget:
            return None
        tok = self.inner.tokenizer
        lengths = {role: (len(texts), max(len(ids) for ids in tok(texts, truncation=True,
                                                                   max_length=self.inner.max_seq_length)["input_ids"]))
                   for role, texts in roles(batch)}
        return attention_mini_batch(lengths, self.heads, self.layers, self.budget)

    def __call__(self, batch: BatchTexts, source_index: int) -> tuple[float, bool]:
        """(loss, whether the batch was split for memory); gradients are accumulated in the model."""
        keep_base = self.drift_weights[source_index]
        kw = dict(self.loss_kw, keep_base=keep_base)
        kw["reference"] = (reference_embeddings(batch, self.embed_reference, self.config.mini_batch)
                           if keep_base or self.config.keep_geometry else None)
        mini = self.config.mini_batch if self.config.cached else self.split(batch)
        if mini:
            loss = cached_step(batch, self.embed, self.acc.backward, mini, no_sync=lambda: self.acc.no_sync(self.model),
                               **kw)
            return loss, not self.config.cached
        return plain_step(batch, self.embed, self.acc.backward, **kw), False
