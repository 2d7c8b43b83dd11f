"""FineTuner: the M3E recipe on an accelerate loop.

    FineTuner.from_pretrained("multilingual-e5-small-q4", "pairs.jsonl").run(epochs=1, output="out")

Data: sources from files, folders or ``datasets`` objects (see :mod:`m3e.data.records`), batched one source at
a time without duplicate texts (:mod:`m3e.data.batching`). Loss: InfoNCE with in-batch and hard negatives,
CoSENT for scored pairs (:mod:`m3e.training.losses`), plain or cached (:mod:`m3e.training.step`). Runs on one
device, or on several through ``torchrun`` / ``accelerate launch`` with negatives gathered across devices
(DeepSpeed through accelerate's config). Checkpoints are atomic and resumable exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from m3e.data.batching import epoch_plan
from m3e.data.records import Source, read_sources, source_from_dataset
from m3e.errors import InputError
from m3e.training import step as steps
from m3e.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from m3e.training.memory import MemoryGuard, peak_resident_bytes


@dataclass
class TrainConfig:
    output: str = "m3e-finetuned"
    epochs: int = 1
    max_steps: int | None = None  # stop early (after this many optimizer steps)
    batch_size: int = 32  # contrastive batch (all devices together)
    lr: float | None = None  # None: by model width (see default_lr)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    temperature: float = 0.05
    symmetric: bool = False
    cosent_scale: float = 20.0
    matryoshka_dims: list[int] | None = None
    max_length: int | None = None  # None: the model's
    cached: bool = False
    mini_batch: int = 32  # cached: texts per forward
    # CPU: a batch whose attention matrices would take more than this runs as GradCache in mini-batches that fit
    # (same gradients; see steps.attention_mini_batch); 0: never
    attention_memory_gb: float = 4.0
    gradient_checkpointing: bool = False
    dropout: float | None = None  # the backbone's dropout probability while training (None: the model's own)
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] | None = None  # module name parts (e.g. [query, value]); None: query, key, value, dense
    lora_layers: list[int] | None = None  # transformer layer indices that get adapters; None: every layer
    # LoRA: the learned difference is merged and shipped x this (a WiSE-FT-style step back toward the base, which
    # trades in-domain gains for the base's retrieval and long-text behaviour); 1: as trained
    merge_scale: float = 1.0
    bitfit: bool = False
    keep_base: float = 0.0  # weight of the drift of each text's embedding from the starting model's (0: off)
    # weight of the change of the cosines between a batch's texts that the loss does not act on (0: off);
    # see losses.geometry
    keep_geometry: float = 0.0
    # hand freed host memory back to the system when the process holds more than this fraction of the machine's
    # memory (0: never); see m3e.training.memory
    trim_memory_above: float = 0.4
    seed: int = 42
    shuffle: bool = True
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end of each epoch
    keep_checkpoints: int = 2
    resume: bool = False
    eval_tasks: list[str] = field(default_factory=list)
    eval_every: int = 0  # steps; 0: at the end of each epoch when eval_tasks are given
    eval_data_dir: str | None = None
    tensorboard: bool = False
    anchor_prompt: str | None = None  # default instruction for anchors (prompt name or literal); per-source wins
    doc_prompt: str | None = None
    progress: bool = True


def _set_backbone(st, model: torch.nn.Module) -> None:
    """Swap the transformer inside a SentenceTransformer (``model`` in sentence-transformers 6, where
    ``auto_model`` is a read-only alias)."""
    module = st[0]
    if isinstance(getattr(type(module), "auto_model", None), property) and hasattr(module, "model"):
        module.model = model
    else:
        module.auto_model = model


def _note_peak(state: dict) -> None:
    """Peak host memory so far, kept across resumes (a resumed process's own peak starts again from zero)."""
    state["memory"]["peak_resident_gb"] = max(state["memory"]["peak_resident_gb"],
                                              round(peak_resident_bytes() / 2**30, 2))


def default_lr(hidden_size: int) -> float:
    """Small models take larger steps: 5e-5 up to width 384, 3e-5 up to 768 (base), 1e-5 beyond (large)."""
    return 5e-5 if hidden_size <= 384 else 3e-5 if hidden_size <= 768 else 1e-5


def _as_sources(data) -> list[Source]:
    items = data if isinstance(data, (list, tuple)) else [data]
    sources: list[Source] = []
    for item in items:
        if isinstance(item, Source):
            sources.append(item)
        elif isinstance(item, (str, Path)):
            sources.extend(read_sources(item))
        elif hasattr(item, "column_names"):
            sources.append(source_from_dataset(item, name=getattr(getattr(item, "info", None), "dataset_name", None)
                                               or f"dataset{len(sources)}"))
        else:
            raise InputError(f"cannot train on {type(item).__name__}; give file or folder paths, Source objects or "
                             "datasets.Dataset objects")
    names = [s.name for s in sources]
    for i, name in enumerate(names):
        if names.count(name) > 1:
            sources[i].name = f"{name}#{names[:i + 1].count(name)}"
    return sources


class FineTuner:
    def __init__(self, embedder, sources: list[Source]) -> None:
        self.embedder = embedder
        self.sources = sources
        if not sources or not any(s.records for s in sources):
            raise InputError("no training records")

    @classmethod
    def from_pretrained(cls, model: str, data, **load_kwargs) -> FineTuner:
        from m3e.models.resolver import load_model

        return cls(load_model(model, **load_kwargs), _as_sources(data))

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _prompt(self, value: str | None) -> str:
        if value is None:
            return ""
        return self.embedder.prompts.get(value, value)

    def _prefixes(self, source: Source, config: TrainConfig) -> tuple[str, str]:
        """Anchor and document prefixes: the source's, else the run's, else the model's query/passage prompts
        (query/passage for retrieval-style triplets, query on both sides for pairs and scored pairs)."""
        prompts = self.embedder.prompts
        anchor = source.instruction or config.anchor_prompt or ("query" if "query" in prompts else None)
        if source.doc_instruction or config.doc_prompt:
            doc = source.doc_instruction or config.doc_prompt
        elif source.kind == "triplet" and "passage" in prompts:
            doc = "passage"
        else:
            doc = "query" if "query" in prompts else None
        return self._prompt(anchor), self._prompt(doc)

    def trainable(self, config: TrainConfig) -> torch.nn.Module:
        st = self.embedder.model
        if config.lora and config.bitfit:
            raise InputError("choose LoRA or BitFit, not both")
        if config.merge_scale != 1.0 and not config.lora:
            raise InputError(f"merge_scale {config.merge_scale:g} needs LoRA (lora: true)")
        if config.merge_scale <= 0:
            raise InputError(f"merge_scale must be > 0, got {config.merge_scale:g}")
        if config.gradient_checkpointing:
            st[0].auto_model.gradient_checkpointing_enable()
        if config.dropout is not None:
            if not 0 <= config.dropout < 1:
                raise InputError(f"dropout must be in [0, 1), got {config.dropout:g}")
            for module in st[0].auto_model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = config.dropout
        if config.lora:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError:
                raise InputError("LoRA needs the peft package: pip install peft") from None
            names = [m for m, _ in st[0].auto_model.named_modules()]
            wanted = config.lora_targets or ["query", "key", "value", "dense"]
            missing = [n for n in wanted if not any(m.split(".")[-1] == n for m in names)]
            if config.lora_targets and missing:
                raise InputError(f"lora_targets: no module named {', '.join(missing)} in this model")
            targets = [n for n in wanted if n not in missing]
            layers = st[0].auto_model.config.num_hidden_layers
            bad = [i for i in config.lora_layers or [] if not 0 <= i < layers]
            if bad:
                raise InputError(f"lora_layers: {bad} out of range for a model of {layers} layers (0-{layers - 1})")
            self._lora_targets = targets  # for the model card: what the adapter really covers
            _set_backbone(st, get_peft_model(st[0].auto_model, LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets,
                layers_to_transform=config.lora_layers or None)))
        elif config.bitfit:
            for name, p in st.named_parameters():
                p.requires_grad = name.endswith(".bias")
        return st

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self, config: TrainConfig | None = None, **overrides) -> Path:
        config = config or TrainConfig()
        for k, v in overrides.items():
            if not hasattr(config, k):
                raise InputError(f"unknown training option '{k}'")
            setattr(config, k, v)
        from accelerate import Accelerator
        from transformers import get_linear_schedule_with_warmup

        out = Path(config.output)
        ckpt_root = out / "checkpoints"
        acc = Accelerator(mixed_precision=config.mixed_precision, cpu=self.embedder.device == "cpu"
                          and not torch.cuda.is_available())
        world, rank = acc.num_processes, acc.process_index
        if config.batch_size % world:
            raise InputError(f"batch size {config.batch_size} does not split over {world} processes")
        torch.manual_seed(config.seed)
        model = self.trainable(config)
        frozen = None
        drift_weights = [s.keep_base if s.keep_base is not None else config.keep_base for s in self.sources]
        # LoRA: the base is the model with its adapter switched off
        if (any(drift_weights) or config.keep_geometry) and not config.lora:
            import copy

            frozen = copy.deepcopy(model).eval().requires_grad_(False).to(acc.device)
        # the training length is a memory setting: exported models keep the length the base model reads
        self._served_max_length = model.max_seq_length
        if config.max_length:
            model.max_seq_length = config.max_length
        hidden = model[0].auto_model.config.hidden_size
        lr = config.lr or default_lr(hidden)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        plans = [epoch_plan(self.sources, config.batch_size, config.seed if config.shuffle else 0, e)
                 for e in range(config.epochs)]
        total = sum(len(p[0]) for p in plans)
        if config.max_steps:
            total = min(total, config.max_steps)
        if total == 0:
            raise InputError(f"no full batch of {config.batch_size} in any source; lower --batch-size")
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total * config.warmup_ratio), total)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        inner = acc.unwrap_model(model)

        state = {"step": 0, "epoch": 0, "position": 0, "best": None, "history": [], "evals": [], "seconds": 0.0,
                 "memory": {"peak_resident_gb": 0.0, "trims": 0, "split_steps": 0}}  # summed over resumes
        if config.resume:
            found = latest_checkpoint(ckpt_root)
            if found is None:
                acc.print(f"no checkpoint in {ckpt_root}; starting from the beginning")
            else:
                weights, extra, saved = load_checkpoint(found)
                missing = set(self._weights(inner)) - set(weights)
                if missing:
                    raise InputError(f"checkpoint {found} does not match this model (missing {sorted(missing)[:3]})")
                inner.load_state_dict(weights, strict=False)
                optimizer.load_state_dict(extra["optimizer"])
                scheduler.load_state_dict(extra["scheduler"])
                set_rng_state(saved["rng"], extra["torch_rng"], extra.get("cuda_rng"))
                state.update({k: saved.get(k, state[k]) for k in state})  # older checkpoints: no "memory"
                acc.print(f"resumed from {found} (step {state['step']})")
        if acc.is_main_process:
            for s in self.sources:
                acc.print(s.report())
            for e, (_, stats) in enumerate(plans[:1]):
                acc.print(f"epoch {e}: batches per source {stats.batches}; records left over (no full batch) "
                          f"{stats.left_over}")

        writer = None
        if config.tensorboard and acc.is_main_process:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InputError("--tensorboard needs the tensorboard package") from None
            writer = SummaryWriter(str(out / "runs"))

        prepare = getattr(inner, "preprocess", None) or inner.tokenize  # sentence-transformers 6 renamed it

        def features_of(texts: list[str]) -> dict:
            return {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in prepare(texts).items()}

        def embed(texts: list[str]) -> torch.Tensor:
            return model(features_of(texts))["sentence_embedding"]

        def embed_reference(texts: list[str]) -> torch.Tensor:
            features = features_of(texts)
            if frozen is not None:
                return frozen(features)["sentence_embedding"]
            inner.eval()
            try:
                with inner[0].auto_model.disable_adapter():
                    return inner(features)["sentence_embedding"]
            finally:
                inner.train()

        auto_config = inner[0].auto_model.config
        budget = config.attention_memory_gb * 2**30 if acc.device.type == "cpu" else 0

        def split(batch: steps.BatchTexts) -> int | None:
            """GradCache mini-batch for a CPU batch whose attention would not fit the budget, else None."""
            if not budget:
                return None
            tok = inner.tokenizer
            lengths = {role: (len(texts), max(len(ids) for ids in tok(texts, truncation=True, max_length=inner.
                                                                    max_seq_length)["input_ids"]))
                       for role, texts in steps.roles(batch)}
            return steps.attention_mini_batch(lengths, auto_config.num_attention_heads,
                                              auto_config.num_hidden_layers, budget)

        loss_kw = {"temperature": config.temperature, "symmetric": config.symmetric, "gather": world > 1,
                   "dims": config.matryoshka_dims, "cosent_scale": config.cosent_scale,
                   "keep_geometry": config.keep_geometry}
        progress = None
        if config.progress and acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=total, initial=state["step"], desc="train", unit="step", dynamic_ncols=True)
        guard = MemoryGuard(config.trim_memory_above)
        model.train()
        started = time.perf_counter() - state["seconds"]
        pairs_done = 0
        done = state["step"] >= total
        while not done and state["epoch"] < config.epochs:
            schedule = plans[state["epoch"]][0]
            while state["position"] < len(schedule):
                s_index, rows = schedule[state["position"]]
                source = self.sources[s_index]
                local = rows[rank * (len(rows) // world):(rank + 1) * (len(rows) // world)]
                a_pre, d_pre = self._prefixes(source, config)
                batch = steps.layout([source.records[i] for i in local], source.kind, a_pre, d_pre)
                t0 = time.perf_counter()
                loss_kw["keep_base"] = drift_weights[s_index]
                loss_kw["reference"] = steps.reference_embeddings(batch, embed_reference, config.mini_batch) \
                    if drift_weights[s_index] or config.keep_geometry else None
                mini = config.mini_batch if config.cached else split(batch)
                if mini:
                    loss = steps.cached_step(batch, embed, acc.backward, mini,
                                             no_sync=lambda: acc.no_sync(model), **loss_kw)
                    state["memory"]["split_steps"] += not config.cached
                else:
                    loss = steps.plain_step(batch, embed, acc.backward, **loss_kw)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["memory"]["trims"] += guard.after_step()
                state["step"] += 1
                state["position"] += 1
                pairs_done += len(rows)
                rate = len(rows) / max(time.perf_counter() - t0, 1e-9)
                if progress is not None:
                    progress.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{rate:.0f}", src=source.name[:16])
                    progress.update(1)
                if writer is not None:
                    writer.add_scalar("loss", loss, state["step"])
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], state["step"])
                state["history"].append([state["step"], round(loss, 6)])
                at_end = state["step"] >= total
                if config.eval_tasks and config.eval_every and state["step"] % config.eval_every == 0:
                    self._evaluate(acc, inner, config, state, out)
                if config.save_every and state["step"] % config.save_every == 0 and not at_end:
                    self._checkpoint(acc, inner, optimizer, scheduler, state, started, ckpt_root, config)
                if at_end:
                    done = True
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
                if config.eval_tasks and not config.eval_every:
                    self._evaluate(acc, inner, config, state, out)
                if state["epoch"] < config.epochs:
                    self._checkpoint(acc, inner, optimizer, scheduler, state, started, ckpt_root, config)
        if progress is not None:
            progress.close()
        state["seconds"] = time.perf_counter() - started
        _note_peak(state)
        if config.eval_tasks and not any(e["step"] == state["step"] for e in state["evals"]):
            self._evaluate(acc, inner, config, state, out)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._save_output(inner, config, state, out, lr)
        if writer is not None:
            writer.close()
        return out

    # ---- pieces of the loop -----------------------------------------------------------------------------------
    @staticmethod
    def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: the trainable weights (all of them for full fine-tuning)."""
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v for k, v in model.state_dict().items() if k in trainable}

    def _checkpoint(self, acc, inner, optimizer, scheduler, state, started, root, config) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            state["seconds"] = time.perf_counter() - started
            _note_peak(state)
            save_checkpoint(root, state["step"], self._weights(inner), optimizer, scheduler, dict(state),
                            keep=config.keep_checkpoints)

    def _evaluate(self, acc, inner, config, state, out) -> None:
        if not acc.is_main_process:
            return
        from m3e.evaluation.builtin import select_tasks
        from m3e.evaluation.runner import evaluate
        from m3e.models.encoder import Embedder

        data_dir = config.eval_data_dir
        if data_dir is None:
            import os

            data_dir = os.environ.get("M3E_DATA_DIR")
        if not data_dir:
            raise InputError("--eval-tasks needs --data-dir or $M3E_DATA_DIR")
        inner.eval()
        with torch.no_grad():
            results = evaluate(Embedder(inner, name=f"step-{state['step']}"), select_tasks(config.eval_tasks),
                               Path(data_dir), out / "eval")
        inner.train()
        score = sum(r["main_score"] for r in results) / len(results)
        entry = {"step": state["step"], "score": score, **{r["task"]: r["main_score"] for r in results}}
        state["evals"].append(entry)
        acc.print(f"eval at step {state['step']}: " + ", ".join(f"{r['task']} {r['main_score'] * 100:.2f}"
                                                                for r in results))
        if state["best"] is None or score > state["best"]["score"]:
            state["best"] = entry
            self._export(inner, out / "best", config.merge_scale)

    def _export(self, inner, target: Path, merge_scale: float = 1.0) -> None:
        """A plain sentence-transformers folder (LoRA merged into a copy at ``merge_scale``, the training model
        untouched); written beside ``target`` and swapped in, so an older export stays until the new one is
        complete."""
        if target.exists():
            fresh = target.with_name(target.name + ".new")
            if fresh.exists():
                shutil.rmtree(fresh)
            self._export(inner, fresh, merge_scale)
            old = target.with_name(target.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)
            fresh.rename(target)
            shutil.rmtree(old)
            return
        from m3e.models.adapters import scale_lora
        from m3e.models.encoder import Embedder

        auto = inner[0].auto_model
        if hasattr(auto, "merge_and_unload"):
            import copy

            merged = copy.deepcopy(inner)
            _set_backbone(merged, scale_lora(merged[0].auto_model, merge_scale).merge_and_unload())
            merged.max_seq_length = self._served_max_length
            Embedder(merged, name=self.embedder.name).save(target)
            auto.save_pretrained(str(target / "adapter"))
            config = target / "adapter" / "adapter_config.json"  # the base's name, not this machine's cache path
            settings = json.loads(config.read_text(encoding="utf-8"))
            settings["base_model_name_or_path"] = self.embedder.name
            if merge_scale != 1.0:  # peft scales the difference by alpha / r
                settings["lora_alpha"] = settings["lora_alpha"] * merge_scale
            config.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
        else:
            training_length, inner.max_seq_length = inner.max_seq_length, self._served_max_length
            try:
                Embedder(inner, name=self.embedder.name).save(target)
            finally:
                inner.max_seq_length = training_length

    def _save_output(self, inner, config, state, out: Path, lr: float) -> None:
        final = out / "final"
        self._export(inner, final, config.merge_scale)
        chosen = out / "best" if state.get("best") and (out / "best").is_dir() else final
        model_dir = out / "model"
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(chosen, model_dir)
        card = model_card(self.embedder.name, self.sources, config, state, lr, chosen.name,
                          getattr(self, "_lora_targets", None))
        for folder in {model_dir, final}:
            (folder / "README.md").write_text(card, encoding="utf-8")
        (out / "training_state.json").write_text(json.dumps(
            {"config": asdict(config), "lr": lr, "steps": state["step"], "seconds": state["seconds"],
             "host_memory": state.get("memory"),
             "best": state.get("best"), "evals": state.get("evals", []),
             "sources": [{"name": s.name, "kind": s.kind, "records": len(s.records), "weight": s.weight,
                          "skipped": dict(s.skipped)} for s in self.sources]}, indent=2), encoding="utf-8")


def model_card(base: str, sources: list[Source], config: TrainConfig, state: dict, lr: float, chosen: str,
               lora_targets: list[str] | None = None) -> str:
    rows = "\n".join(f"| {s.name} | {s.kind} | {len(s.records):,} | {s.weight:g} | "
                     f"{sum(s.skipped.values()):,} ({', '.join(f'{n} {w}' for w, n in s.skipped.items()) or '-'}) |"
                     for s in sources)
    method = "LoRA (merged)" if config.lora else "BitFit" if config.bitfit else "full fine-tuning"
    if config.lora:
        method += (f", r={config.lora_r}, alpha {config.lora_alpha}, on "
                   f"{'/'.join(lora_targets or config.lora_targets or ['query', 'key', 'value', 'dense'])}"
                   f"{' in layers ' + ','.join(map(str, config.lora_layers)) if config.lora_layers else ''}")
    evals = state.get("evals", [])
    eval_lines = ""
    if evals:
        tasks = [k for k in evals[-1] if k not in ("step", "score")]
        eval_lines = "\n## Evaluation during training (main score x 100)\n\n| step | " + " | ".join(tasks) + \
            " | mean |\n|---|" + "---|" * (len(tasks) + 1) + "\n" + "\n".join(
                f"| {e['step']} | " + " | ".join(f"{e[t] * 100:.2f}" for t in tasks) + f" | {e['score'] * 100:.2f} |"
                for e in evals) + "\n"
    loss = (f"InfoNCE, temperature {config.temperature:g}{', symmetric' if config.symmetric else ''}; "
            f"CoSENT (scale {config.cosent_scale:g}) for scored pairs")
    if config.matryoshka_dims:
        loss += f"; Matryoshka {config.matryoshka_dims}"
    merge = f"\n| LoRA merge scale | {config.merge_scale:g} |" if config.lora and config.merge_scale != 1 else ""
    kept = {s.name: s.keep_base if s.keep_base is not None else config.keep_base for s in sources}
    if any(kept.values()):
        loss += "; drift from the base model's embeddings x " + ", ".join(f"{w:g} ({n})" for n, w in kept.items()
                                                                         if w)
    if config.keep_geometry:
        loss += f"; change of the untaught cosines between a batch's texts x {config.keep_geometry:g}"
    held = state.get("memory")
    memory = (f"\n| host memory peak | {held['peak_resident_gb']:g} GiB ({held['trims']} trims, "
              f"{held['split_steps']} steps split for attention memory) |") if held else ""
    return f"""---
library_name: sentence-transformers
tags: [sentence-transformers, m3e, chinese, embeddings]
base_model: {base}
---

# Fine-tuned from {base} with m3e

Loads in plain `SentenceTransformer(path)`; prompts are kept in `config_sentence_transformers.json`.
This folder is the {'best checkpoint by mean evaluation score' if chosen == 'best' else 'final model'}.

## Data

| source | kind | records | weight | skipped rows |
|---|---|---|---|---|
{rows}

Every batch holds records of one source, with no text twice (false negatives).

## Hyperparameters

| | |
|---|---|
| method | {method} |
| steps | {state['step']} ({config.epochs} epoch(s)) |
| batch size | {config.batch_size}{' (cached, mini-batch ' + str(config.mini_batch) + ')' if config.cached else ''} |
| learning rate | {lr:g}, linear decay, warmup {config.warmup_ratio:g} |
| loss | {loss} |
| max length | {f'{config.max_length} while training' if config.max_length else 'model default'} |{merge}
| precision | {config.mixed_precision} |
| seed | {config.seed} |
| training time | {state.get('seconds', 0):.0f} s |{memory}
{eval_lines}"""
