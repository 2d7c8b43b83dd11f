"""Run the real `mteb` package on an m3e model, and C-MTEB tasks from the hub under our task names.

``MtebEncoder`` wraps an :class:`~m3e.models.encoder.Embedder` as an mteb encoder: mteb's prompt resolution
picks the prompt (query for queries and for symmetric task types, passage for documents: the same as our own
runner), our encoder (token-budget batches) does the work. ``run_mteb_task`` turns mteb's scores into an m3e
result dict, so hub runs land in the same results folder and summary as the offline built-ins.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from m3e.errors import InputError


def _mteb():
    try:
        import mteb
    except ImportError:  # pragma: no cover - depends on the extra
        raise InputError("the mteb package is not installed: pip install 'm3e[mteb]'") from None
    return mteb


def MtebEncoder(embedder):  # noqa: N802 - a factory standing in for a class defined on first use
    """An mteb ``EncoderProtocol`` around ``embedder`` (mteb is imported only when this is called)."""
    _mteb()
    from mteb.models import SentenceTransformerEncoderWrapper

    class _Encoder(SentenceTransformerEncoderWrapper):
        def __init__(self, embedder) -> None:
            # mteb's prompt keys are prompt types (query/document) mapping to prompt text
            # symmetric task types get the one prompt our own tasks give both sides (mteb would give none)
            from m3e.evaluation.types import TYPES

            prompts = {kind: embedder.prompts[name] for kind, name in (("query", "query"), ("document", "passage"))
                       if name in embedder.prompts}
            for task_type in TYPES.values():
                names = set(task_type.prompts.values())
                if len(names) == 1 and (name := names.pop()) in embedder.prompts:
                    prompts[task_type.name] = embedder.prompts[name]
            saved = dict(embedder.model.prompts or {})
            with warnings.catch_warnings():  # mteb warns whenever prompts are passed explicitly
                warnings.simplefilter("ignore")
                super().__init__(embedder.model, model_prompts=prompts or None)
            embedder.model.prompts = saved  # mteb writes its prompt table into the model; keep ours
            self.embedder = embedder

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
            name = self.get_prompt_name(task_metadata, prompt_type)
            prompt = (self.model_prompts or {}).get(name, "") if name else ""
            texts = [t for batch in inputs for t in batch["text"]]
            return np.asarray(self.embedder.encode(texts, prompt=prompt), dtype=np.float32)

    return _Encoder(embedder)


def run_mteb_task(task, embedder, our_name: str | None = None, category: str = "s2s") -> dict:
    """Evaluate one mteb task object with mteb's own evaluator; the result in m3e's result format."""
    start = time.perf_counter()
    split = task.metadata.eval_splits[-1] if "test" in task.metadata.eval_splits else task.metadata.eval_splits[0]
    scores = task.evaluate(MtebEncoder(embedder), split, encode_kwargs={})
    per_subset = next(iter(scores.values()))
    main = task.metadata.main_score
    flat = {k: float(v) for k, v in per_subset.items() if isinstance(v, (int, float, np.floating))}
    return {
        "task": our_name or task.metadata.name,
        "type": task.metadata.type,
        "model": embedder.name,
        "category": category,
        "main_score_name": main,
        "main_score": flat[main],
        "scores": flat,
        "n_samples": None,
        "dropped": {},
        "description": f"C-MTEB {task.metadata.name} ({task.metadata.dataset['path']}), split {split}, "
                       "evaluated by the mteb package",
        "seconds": round(time.perf_counter() - start, 3),
    }


def hub_task(name: str):
    """The C-MTEB task (with its data from the hub) for one of our task names."""
    from m3e.evaluation.builtin import BUILTIN_TASKS

    ours = BUILTIN_TASKS.get(name)
    if ours is None or not ours.mteb_name:
        have = [t.name for t in BUILTIN_TASKS.values() if t.mteb_name]
        raise InputError(f"task {name} has no C-MTEB counterpart; hub tasks: {', '.join(have)}")
    return ours, _mteb().get_task(ours.mteb_name)
