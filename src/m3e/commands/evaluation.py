"""`m3e eval` and `m3e eval compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from m3e.commands.common import (
    Backend,
    BackendOpt,
    DeviceOpt,
    Language,
    ModelOpt,
    Source,
    Split,
    ThreadsOpt,
    TrustOpt,
    _err,
    _load,
)
from m3e.errors import InputError

app = typer.Typer()


eval_app = typer.Typer(help="Evaluate models on Chinese tasks with MTEB's metrics; compare results.",
                       no_args_is_help=False, add_completion=False)
app.add_typer(eval_app, name="eval")


@eval_app.callback(invoke_without_command=True)
def eval_cmd(
    ctx: typer.Context,
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Comma-separated task names.")] = None,
    category: Annotated[str | None, typer.Option(help="Every built-in task of a category (s2s, s2p, p2p, "
                                                 "bitext, s2c).")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Every built-in task of a type (STS, "
                                                  "Classification, ...).")] = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Run every built-in task (of --split).")] = False,
    language: Annotated[Language | None, typer.Option(help="Every built-in task of a language (zh-en: "
                                                      "cross-lingual).")] = None,
    split: Annotated[Split, typer.Option(help="test: the evaluation tasks; validation: the dev files, for "
                                         "choosing checkpoints and settings (never report them as test scores)."
                                         )] = Split.test,
    task_file: Annotated[list[Path] | None, typer.Option("--task-file", help="Your own task file (jsonl/csv/tsv; "
                                                        "formats in docs/evaluation.md). Repeatable.")] = None,
    file_type: Annotated[str | None, typer.Option("--task-type", help="Type of the --task-file records when "
                                                  "their fields are ambiguous.")] = None,
    distractors: Annotated[list[Path] | None, typer.Option("--distractors", help="Passages (txt one a line, or "
                                                           "jsonl/csv/tsv with a text column) added to the corpus "
                                                           "of every chosen retrieval task, without qrels; the "
                                                           "result is filed as TASK+FILE. Repeatable.")] = None,
    data_dir: Annotated[Path | None, typer.Option(envvar="M3E_DATA_DIR", help="Folder holding the dataset "
                                                  "folders (default: $M3E_DATA_DIR).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Results folder.")] = Path("results"),
    source: Annotated[Source, typer.Option(help="local: the files in --data-dir; hub: the C-MTEB datasets of the "
                                        "same task names through the mteb package (needs the hub).")] = Source.local,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Keep embeddings on disk, keyed by model and "
                                        "text, so re-runs and added tasks only encode new texts.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache folder (default: "
                                                   "$M3E_HOME/embedding-cache).")] = None,
    list_tasks: Annotated[bool, typer.Option("--list", help="List the built-in tasks and exit.")] = False,
    rescore: Annotated[str | None, typer.Option("--rescore", "--reranker", help="A second stage: an embedding "
                                                "model or a reranker re-scores the first model's top --candidates "
                                                "on retrieval tasks (filed as MODEL>SECOND@N); a reranker also "
                                                "ranks the candidates of reranking tasks. The first model's own "
                                                "results are written beside them.")] = None,
    candidates: Annotated[int, typer.Option("--candidates", "--top-k", min=1, help="First-stage candidates for "
                                            "--rescore/--reranker.")] = 100,
    bm25: Annotated[bool, typer.Option("--bm25", help="Score the lexical baseline instead of a model: BM25 over "
                                       "jieba words (retrieval tasks; filed as bm25-jieba).")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Evaluate a model; writes OUTPUT/<model>/<task>.json and OUTPUT/summary.md."""
    if ctx.invoked_subcommand is not None:
        return
    from m3e.evaluation.builtin import BUILTIN_TASKS, select_tasks

    if list_tasks:
        for t in BUILTIN_TASKS.values():
            typer.echo(f"{t.name:24} {t.type:18} {t.category:6} {t.language:5} {t.split:10} {t.main_score:15} "
                       f"{t.description}")
        return
    if sum([bool(tasks), bool(category or task_type or language), all_tasks, bool(task_file)]) != 1:
        raise InputError("choose the tasks with exactly one of --tasks, --category/--type/--language, --all or "
                         "--task-file (see --list)")
    if task_file:
        from m3e.evaluation.task_files import task_from_file

        chosen = [task_from_file(f, file_type) for f in task_file]
        data_dir = data_dir or Path(".")
    else:
        chosen = select_tasks([n.strip() for n in tasks.split(",") if n.strip()] if tasks else None, category,
                              task_type, str(split), str(language) if language else None)
        if source == "local":
            if data_dir is None:
                raise InputError("no data folder: pass --data-dir DIR or set M3E_DATA_DIR")
            if not data_dir.is_dir():
                raise InputError(f"data folder {data_dir} does not exist")
    if distractors:
        if source == "hub":
            raise InputError("--distractors works on local tasks only (--source local)")
        retrieval = [t for t in chosen if t.type == "Retrieval"]
        if not retrieval:
            raise InputError("--distractors: none of the chosen tasks is a retrieval task")
        chosen = [t.with_distractors(distractors) if t.type == "Retrieval" else t for t in chosen]
    if bm25:
        wrong = [t.name for t in chosen if t.type != "Retrieval"]
        if wrong or source == "hub" or rescore:
            raise InputError("--bm25 scores local retrieval tasks only, without --rescore"
                             + (f" (not {', '.join(wrong)}; use --type Retrieval)" if wrong else ""))
        from m3e.evaluation.lexical import run_bm25
        from m3e.evaluation.runner import save_result, write_summary

        for t in chosen:
            result = run_bm25(t, data_dir)
            save_result(output, result)
            typer.echo(f"{result['task']:24} {result['main_score_name']:15} {result['main_score'] * 100:6.2f}  "
                       f"({result['n_samples']} samples, {result['seconds']:.1f}s)")
        write_summary(output)
        typer.echo(f"results in {output}/, summary in {output / 'summary.md'}")
        return
    if rescore:
        from m3e.evaluation.runner import STAGE_TYPES
        from m3e.models.resolver import resolve

        if source == "hub":
            raise InputError("--rescore/--reranker works on local tasks only (--source local)")
        role = resolve(rescore).role
        allowed = STAGE_TYPES[role]
        wrong = [t.name for t in chosen if t.type not in allowed]
        if wrong:
            raise InputError(f"a second stage {role} ({rescore}) applies to {' and '.join(allowed)} tasks only, not "
                             f"{', '.join(wrong)} (use --type Retrieval" + (" or --tasks" if role == "reranker"
                                                                            else "") + ")")
    embedder = _load(model, device, threads, trust_remote_code, backend)
    rescorer = None
    if rescore:
        from m3e.models.resolver import load_any

        rescorer = load_any(rescore, device=device, threads=threads, trust_remote_code=trust_remote_code, log=_err)

    def show(result: dict) -> None:
        dropped = "".join(f", dropped {n} ({why})" for why, n in result["dropped"].items())
        dropped += "".join(f", +{n} distractors from {src}" for src, n in result.get("distractors", {}).items())
        n = f"{result['n_samples']} samples" if result["n_samples"] is not None else "hub data"
        typer.echo(f"{result['task']:24} {result['main_score_name']:15} {result['main_score'] * 100:6.2f}  "
                   f"({n}{dropped}, {result['seconds']:.1f}s)")

    if source == "hub":
        from m3e.evaluation.mteb_adapter import hub_task, run_mteb_task
        from m3e.evaluation.runner import save_result, write_summary

        for t in chosen:
            ours, theirs = hub_task(t.name)
            result = run_mteb_task(theirs, embedder, ours.name, ours.category)
            save_result(output, result)
            show(result)
        write_summary(output)
    else:
        from m3e.evaluation.runner import evaluate

        store = second_store = None
        if cache:
            from m3e.evaluation.cache import EmbeddingCache
            from m3e.utils.paths import m3e_home

            store = EmbeddingCache(cache_dir or m3e_home() / "embedding-cache", embedder)
            if rescorer is not None and getattr(rescorer, "kind", "") != "reranker":
                second_store = EmbeddingCache(cache_dir or m3e_home() / "embedding-cache", rescorer)
        evaluate(embedder, chosen, data_dir, output, progress=show, cache=store, show_progress=True,
                 rescore=rescorer, candidates=candidates, rescore_cache=second_store)
        for s in (store, second_store):
            if s is not None:
                typer.echo(f"embedding cache {s.path}: {s.hits} vectors reused")
                s.close()
    typer.echo(f"results in {output}/, summary in {output / 'summary.md'}")


@eval_app.command("compare")
def eval_compare(
    output: Annotated[Path, typer.Argument(help="Results folder written by m3e eval.")],
    png: Annotated[Path | None, typer.Option(help="Bar chart path (default: OUTPUT/compare.png).")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated model names (default: all).")] = None,
    no_chart: Annotated[bool, typer.Option("--no-chart", help="Table only.")] = False,
) -> None:
    """Table of several models' results (per-type and per-category averages) and a PNG bar chart."""
    from m3e.evaluation.compare import compare

    chosen = [m.strip() for m in models.split(",")] if models else None
    table, chart = compare(output, None if no_chart else (png or output / "compare.png"), chosen)
    typer.echo(table)
    if chart:
        typer.echo(f"chart: {chart}")
