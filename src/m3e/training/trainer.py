"""FineTuner: the M3E recipe on an accelerate loop.

    FineTuner.from_pretrained("multilingual-e5-small-q4", "pairs.jsonl").run(epochs=1, output="out")

The parts, each in its own module: data (sources from files through the Arrow cache, :mod:`m3e.data.prepared`,
or in memory), the plan (array batch plans and the run's fingerprint, :mod:`m3e.training.plan`), the step
(InfoNCE with in-batch and hard negatives, CoSENT for scored pairs, plain or cached, :mod:`m3e.training.step`),
checkpoints (atomic, exact resume, :mod:`m3e.training.checkpoint`) and the export (:mod:`m3e.models.export`).
This module sets them up and runs the loop, on one device or on several through ``torchrun`` / ``accelerate
launch`` with negatives gathered across devices; every rank maps the same cache and computes the same plan, and
takes its share of each global batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from m3e.data.records import Source, source_from_dataset
from m3e.errors import InputError
from m3e.models.export import export_model, set_backbone
from m3e.training import step as steps
from m3e.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from m3e.training.memory import MemoryGuard, peak_resident_bytes
from m3e.training.plan import TrainingPlan, check_resume, weights_digest
from m3e.utils.atomic import atomic_dir, write_text


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


def _note_peak(state: dict) -> None:
    """Peak host memory so far, kept across resumes (a resumed process's own peak starts again from zero)."""
    state["memory"]["peak_resident_gb"] = max(state["memory"]["peak_resident_gb"],
                                              round(peak_resident_bytes() / 2**30, 2))


def default_lr(hidden_size: int) -> float:
    """Small models take larger steps: 5e-5 up to width 384, 3e-5 up to 768 (base), 1e-5 beyond (large)."""
    return 5e-5 if hidden_size <= 384 else 3e-5 if hidden_size <= 768 else 1e-5


def _as_sources(data) -> list:
    from m3e.data.prepared import ArrowSource, prepare_sources
    from m3e.data.records import FILE_TYPES
    from m3e.data.rows import ignored_line

    items = data if isinstance(data, (list, tuple)) else [data]
    sources: list = []
    for item in items:
        if isinstance(item, (Source, ArrowSource)):
            sources.append(item)
        elif isinstance(item, (str, Path)):
            ignored: list[Path] = []
            sources.extend(prepare_sources(item, ignored=ignored))
            if ignored:
                print(ignored_line(ignored, FILE_TYPES))
        elif hasattr(item, "column_names"):
            sources.append(source_from_dataset(item, name=getattr(getattr(item, "info", None), "dataset_name", None)
                                               or f"dataset{len(sources)}"))
        else:
            raise InputError(f"cannot train on {type(item).__name__}; give file or folder paths, Source objects or "
                             "datasets.Dataset objects")
    return sources


class FineTuner:
    def __init__(self, embedder, sources: list) -> None:
        from m3e.models.static import StaticEmbedder

        if isinstance(embedder, StaticEmbedder):
            raise InputError(f"{embedder.name} is a static model: m3e finetune trains transformers; a static model "
                             "is distilled from one (m3e distill RECIPE, with the fine-tuned model as its teacher)")
        from m3e.data.records import unique_names

        self.embedder = embedder
        self.sources = sources
        for line in unique_names(sources):  # --data a/pairs.jsonl --data b/pairs.jsonl: two sources, two names
            print(line)
        if not sources or not any(len(s) for s in sources):
            raise InputError("no training records")

    @classmethod
    def from_pretrained(cls, model: str, data, **load_kwargs) -> FineTuner:
        from m3e.models.resolver import load_model

        return cls(load_model(model, **load_kwargs), _as_sources(data))

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _prefixes(self, source: Source, config: TrainConfig) -> tuple[str, str]:
        """Anchor and document prefixes: the source's, else the run's, else the model's query/passage prompts
        (query/passage for retrieval-style triplets, query on both sides for pairs and scored pairs)."""
        from m3e.models.encoding import prompt_text, role_prompt

        emb = self.embedder
        anchor = source.instruction or config.anchor_prompt or role_prompt(emb, "query")
        doc = (source.doc_instruction or config.doc_prompt
               or role_prompt(emb, "passage" if source.kind == "triplet" and role_prompt(emb, "passage") else "query"))
        where = f"source {source.name}"
        return (prompt_text(emb, anchor, where=f"{where}: instruction"),
                prompt_text(emb, doc, where=f"{where}: doc_instruction"))

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
            set_backbone(st, get_peft_model(st[0].auto_model, LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets,
                layers_to_transform=config.lora_layers or None)))
        elif config.bitfit:
            for name, p in st.named_parameters():
                p.requires_grad = name.endswith(".bias")
        return st

    # ---- the run ----------------------------------------------------------------------------------------------
    def run(self, config: TrainConfig | None = None, **overrides) -> Path:
        config = config or TrainConfig()
        for k, v in overrides.items():
            if not hasattr(config, k):
                raise InputError(f"unknown training option '{k}'")
            setattr(config, k, v)
        eval_dir = self._check_eval_options(config)  # before any work: a typo must not cost a training run
        for source in self.sources:  # an unknown prompt name is refused here, not at the source's first batch
            self._prefixes(source, config)
        from accelerate import Accelerator, DistributedDataParallelKwargs

        out = Path(config.output)
        # parameters the pooled embedding never uses (BERT's pooler; a LoRA adapter on it) get no gradient: DDP must
        # not wait for them
        acc = Accelerator(mixed_precision=config.mixed_precision, cpu=self.embedder.device == "cpu"
                          and not torch.cuda.is_available(),
                          kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        if getattr(self, "_eval_warning", None):
            acc.print(self._eval_warning)
        if config.batch_size % acc.num_processes:
            raise InputError(f"batch size {config.batch_size} does not split over {acc.num_processes} processes")
        torch.manual_seed(config.seed)
        start = weights_digest(self.embedder.model)  # before LoRA wraps it: what a checkpoint is relative to
        model = self.trainable(config)
        drift_weights = [s.keep_base if s.keep_base is not None else config.keep_base for s in self.sources]
        frozen = None  # LoRA: the base is the model with its adapter switched off
        if (any(drift_weights) or config.keep_geometry) and not config.lora:
            import copy

            frozen = copy.deepcopy(model).eval().requires_grad_(False).to(acc.device)
        # the training length is a memory setting: exported models keep the length the base model reads
        self._served_max_length = model.max_seq_length
        if config.max_length:
            model.max_seq_length = config.max_length
        plan = TrainingPlan.build(self.sources, config, start)
        lr = config.lr or default_lr(model[0].auto_model.config.hidden_size)
        optimizer, scheduler = _optimizer(model, config, lr, plan.total)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        inner = acc.unwrap_model(model)
        state = self._start_state(acc, inner, optimizer, scheduler, plan, config, out / "checkpoints")
        if acc.is_main_process:
            for s in self.sources:
                acc.print(s.report())
            stats = plan.epochs[0].stats
            acc.print(f"epoch 0: batches per source {stats.batches}; records left over (no full batch) "
                      f"{stats.left_over}")
        stepper = steps.Stepper(model, inner, acc, config, frozen, drift_weights)
        self._loop(acc, model, inner, stepper, optimizer, scheduler, plan, state, config, out, eval_dir)
        if config.eval_tasks and not any(e["step"] == state["step"] for e in state["evals"]):
            self._evaluate(acc, inner, config, state, out, eval_dir)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._save_output(inner, config, state, out, lr)
        return out

    def _check_eval_options(self, config: TrainConfig) -> Path | None:
        if not config.eval_tasks:
            return None
        from m3e.evaluation.builtin import select_tasks

        tested = [t.name for t in select_tasks(config.eval_tasks) if t.split == "test"]  # unknown names fail here
        self._eval_warning = (f"warning: choosing checkpoints on test tasks ({', '.join(tested)}) fits them; the "
                              "scores you report on them will be too high. Use validation tasks "
                              "(eval_tasks: [validation], see m3e eval --list)") if tested else None
        data_dir = config.eval_data_dir or os.environ.get("M3E_DATA_DIR")
        if not data_dir:
            raise InputError("--eval-tasks needs --data-dir or $M3E_DATA_DIR")
        if not Path(data_dir).is_dir():
            raise InputError(f"evaluation data folder {data_dir} does not exist")
        return Path(data_dir)

    def _start_state(self, acc, inner, optimizer, scheduler, plan: TrainingPlan, config, root: Path) -> dict:
        """A new run's state, or the latest checkpoint's when resuming the same plan (refused otherwise)."""
        state = {"step": 0, "epoch": 0, "position": 0, "best": None, "history": [], "evals": [], "seconds": 0.0,
                 "memory": {"peak_resident_gb": 0.0, "trims": 0, "split_steps": 0},  # summed over resumes
                 "fingerprint": plan.fingerprint,
                 "left_over": {str(e): p.stats.left_over for e, p in enumerate(plan.epochs)}}
        if not config.resume:
            return state
        found = latest_checkpoint(root)
        if found is None:
            acc.print(f"no checkpoint in {root}; starting from the beginning")
            return state
        weights, extra, saved = load_checkpoint(found)
        check_resume(saved.get("fingerprint"), plan.fingerprint, str(found))
        missing = set(_trainable_weights(inner)) - set(weights)
        if missing:
            raise InputError(f"checkpoint {found} does not match this model (missing {sorted(missing)[:3]})")
        inner.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        set_rng_state(saved["rng"], extra["torch_rng"], extra.get("cuda_rng"))
        state.update({k: saved.get(k, state[k]) for k in state})
        acc.print(f"resumed from {found} (step {state['step']})")
        return state

    def _loop(self, acc, model, inner, stepper, optimizer, scheduler, plan, state, config, out, eval_dir) -> None:
        """Step through the plan from ``state``'s position: checkpoints, evaluation, progress, TensorBoard."""
        world, rank = acc.num_processes, acc.process_index
        writer = _tensorboard(out) if config.tensorboard and acc.is_main_process else None
        progress = None
        if config.progress and acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=plan.total, initial=state["step"], desc="train", unit="step", dynamic_ncols=True)
        guard = MemoryGuard(config.trim_memory_above)
        ckpt_root = out / "checkpoints"
        model.train()
        started = time.perf_counter() - state["seconds"]
        done = state["step"] >= plan.total
        while not done and state["epoch"] < config.epochs:
            epoch = plan.epochs[state["epoch"]]
            while state["position"] < len(epoch):
                s_index, rows = epoch[state["position"]]
                source = self.sources[s_index]
                share = len(rows) // world  # this rank's part of the global batch
                a_pre, d_pre = self._prefixes(source, config)
                batch = steps.layout(source.batch(rows[rank * share:(rank + 1) * share]), source.kind, a_pre, d_pre)
                t0 = time.perf_counter()
                loss, split = stepper(batch, s_index)
                if world > 1:  # log the global batch's loss (the mean over ranks), as one process would see it
                    loss = float(acc.reduce(torch.tensor(loss, device=acc.device), reduction="mean"))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["memory"]["split_steps"] += split
                state["memory"]["trims"] += guard.after_step()
                state["step"] += 1
                state["position"] += 1
                if progress is not None:
                    rate = len(rows) / max(time.perf_counter() - t0, 1e-9)
                    progress.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{rate:.0f}", src=source.name[:16])
                    progress.update(1)
                if writer is not None:
                    writer.add_scalar("loss", loss, state["step"])
                    writer.add_scalar("lr", scheduler.get_last_lr()[0], state["step"])
                state["history"].append([state["step"], round(loss, 6)])
                at_end = state["step"] >= plan.total
                if config.eval_tasks and config.eval_every and state["step"] % config.eval_every == 0:
                    self._evaluate(acc, inner, config, state, out, eval_dir)
                if config.save_every and state["step"] % config.save_every == 0 and not at_end:
                    self._checkpoint(acc, inner, optimizer, scheduler, state, started, ckpt_root, config)
                if at_end:
                    done = True
                    break
            else:
                state["epoch"] += 1
                state["position"] = 0
                if state["epoch"] < config.epochs:  # the checkpoint first: an evaluation that fails loses nothing
                    self._checkpoint(acc, inner, optimizer, scheduler, state, started, ckpt_root, config)
                if config.eval_tasks and not config.eval_every:
                    self._evaluate(acc, inner, config, state, out, eval_dir)
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        state["seconds"] = time.perf_counter() - started
        _note_peak(state)

    # ---- pieces of the loop -----------------------------------------------------------------------------------
    def _checkpoint(self, acc, inner, optimizer, scheduler, state, started, root, config) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            state["seconds"] = time.perf_counter() - started
            _note_peak(state)
            save_checkpoint(root, state["step"], _trainable_weights(inner), optimizer, scheduler, dict(state),
                            keep=config.keep_checkpoints)

    def _evaluate(self, acc, inner, config, state, out, data_dir: Path) -> None:
        if not acc.is_main_process:
            return
        from m3e.evaluation.builtin import select_tasks
        from m3e.evaluation.runner import evaluate
        from m3e.models.encoder import Embedder

        inner.eval()
        with torch.no_grad():
            results = evaluate(Embedder(inner, name=f"step-{state['step']}"), select_tasks(config.eval_tasks),
                               data_dir, out / "eval")
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
        export_model(inner, target, base_name=self.embedder.name, max_length=self._served_max_length,
                     merge_scale=merge_scale)

    def _save_output(self, inner, config, state, out: Path, lr: float) -> None:
        final = out / "final"
        self._export(inner, final, config.merge_scale)
        chosen = out / "best" if state.get("best") and (out / "best").is_dir() else final
        card = model_card(self.embedder.name, self.sources, config, state, lr, chosen.name,
                          getattr(self, "_lora_targets", None))
        write_text(final / "README.md", card)
        with atomic_dir(out / "model", replace=True) as tmp:  # hard links: one copy of the weights on disk
            shutil.copytree(chosen, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
            (tmp / "README.md").unlink(missing_ok=True)
            (tmp / "README.md").write_text(card, encoding="utf-8")
        write_text(out / "training_state.json", json.dumps(
            {"config": asdict(config), "lr": lr, "steps": state["step"], "seconds": state["seconds"],
             "host_memory": state.get("memory"), "best": state.get("best"), "evals": state.get("evals", []),
             "fingerprint": state.get("fingerprint"), "left_over": state.get("left_over"),
             "history": state.get("history", []),
             "sources": [{"name": s.name, "kind": s.kind, "records": len(s), "weight": s.weight,
                          "license": s.license, "skipped": dict(s.skipped)} for s in self.sources]}, indent=2))


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows one (the copies are never written to), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: the trainable weights (all of them for full fine-tuning)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in trainable}


def _optimizer(model, config: TrainConfig, lr: float, total: int):
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    return optimizer, get_linear_schedule_with_warmup(optimizer, math.ceil(total * config.warmup_ratio), total)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard needs the tensorboard package") from None
    return SummaryWriter(str(out / "runs"))


def model_card(base: str, sources: list, config: TrainConfig, state: dict, lr: float, chosen: str,
               lora_targets: list[str] | None = None) -> str:
    rows = "\n".join(f"| {s.name} | {s.kind} | {len(s):,} | {s.weight:g} | "
                     f"{s.skipped.total():,} ({', '.join(f'{n} {w}' for w, n in s.skipped.items()) or '-'}) | "
                     f"{s.license or 'not given'} |" for s in sources)
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

| source | kind | records | weight | skipped rows | license (as the recipe states it) |
|---|---|---|---|---|---|
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
