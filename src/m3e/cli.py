"""The `m3e` command line: a thin layer over the package; user mistakes print one line, no traceback."""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from m3e.errors import InputError, M3EError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Chinese-first text embeddings: encode, compare, evaluate, train and serve.")

class _Choice(str, Enum):
    """A fixed set of option values: typer lists them in --help and refuses any other before work starts; a
    member reads and prints as its plain value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


def _choice(name: str, *values: str):
    return _Choice(name, {v: v for v in values})


Backend = _choice("Backend", "torch", "onnx", "onnx-int8")
Truncate = _choice("Truncate", "truncate", "error", "window")
Dtype = _choice("Dtype", "float32", "float16")
Engine = _choice("Engine", "local", "ray")
Source = _choice("Source", "local", "hub")
Precision = _choice("Precision", "no", "fp16", "bf16")
RowType = _choice("RowType", "int8", "float32")
Language = _choice("Language", "zh", "en", "zh-en")
Split = _choice("Split", "test", "validation")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Built-in name, model folder or hub "
                                              "id (default: $M3E_MODEL or the built-in default).")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: best available).")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads (default: $M3E_THREADS or all CPUs).")]
BackendOpt = Annotated[Backend, typer.Option(help="torch (any device), onnx or onnx-int8 (ONNX Runtime on CPU; "
                                          "exported and checked once per model).")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model repositories to run "
                                        "their own Python code (off by default).")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _load(model: str | None, device: str | None, threads: int | None, trust: bool = False,
          backend: str = "torch"):
    from m3e.models import load_model

    return load_model(model, device=device, threads=threads, trust_remote_code=trust, backend=str(backend), log=_err)


def _role_prompt(embedder, role: str) -> str | None:
    from m3e.models.encoder import role_prompt

    return role_prompt(embedder, role)


def _symmetric_prompt(embedder, prompt_name: str | None) -> str | None:
    """For sentence-to-sentence comparison use the model's 'query' prompt when it has one (e5 style)."""
    return prompt_name or _role_prompt(embedder, "query")


@app.command()
def encode(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed.")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="File, folder or glob of txt (one "
                                                    "text a line), jsonl, csv, tsv or parquet; repeatable.")] = None,
    column: Annotated[str, typer.Option(help="Field or column holding the text (jsonl/csv/tsv/parquet).")] = "text",
    id_column: Annotated[str | None, typer.Option(help="Field or column holding each row's id (default: "
                                                  "FILE:LINE).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="A folder: parquet shards (id, text, "
                                                "embedding), streamed, any size. A .npy or .jsonl file: one "
                                                "in-memory array for small inputs. Default: JSON lines on stdout.")]
    = None,
    prompt_name: Annotated[str | None, typer.Option(help="Named prompt from the model, e.g. query "
                                                    "or passage.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Literal prompt prepended to every text.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget per batch.")] = 16384,
    truncate: Annotated[Truncate, typer.Option(help="Over-long texts: cut, refuse, or average windows."
                                              )] = Truncate.truncate,
    normalize: Annotated[bool, typer.Option(help="L2-normalize vectors.")] = True,
    skip_blank: Annotated[bool, typer.Option(help="Skip empty lines/fields (counted) instead of failing.")]
    = False,
    skip_bad: Annotated[bool, typer.Option(help="Skip every bad row (empty, missing field, not UTF-8, invalid "
                                           "JSON), counted and reported by file:line, instead of stopping.")]
    = False,
    no_text: Annotated[bool, typer.Option("--no-text", help="Leave the text column out of the shards.")] = False,
    dtype: Annotated[Dtype, typer.Option(help="Embedding column type in the shards.")] = Dtype.float32,
    shard_size: Annotated[int, typer.Option(min=1, help="Rows per parquet shard.")] = 50_000,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run into the same folder (same inputs "
                                         "and options).")] = False,
    max_texts: Annotated[int | None, typer.Option(min=1, help="Stop after this many texts.")] = None,
    engine: Annotated[Engine, typer.Option(help="local (this process) or ray (Ray Data: a local Ray, or the "
                                        "cluster at --address).")] = Engine.local,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (host:port or ray://host:port); "
                                                "default: start a local Ray.")] = None,
    num_workers: Annotated[int, typer.Option(min=1, help="Ray: encoder actors (one model load each).")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="Ray: GPUs per encoder actor.")] = 0,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Embed texts: arguments or small files to .npy/.jsonl/stdout; corpora of any size to parquet shards."""
    if bool(texts) == bool(input):
        raise InputError("give texts as arguments or --input FILE (exactly one of them)")
    sharded = output is not None and output.suffix.lower() not in (".npy", ".jsonl")
    if not sharded and (engine == "ray" or resume or no_text or dtype != "float32"):
        raise InputError("--engine ray, --resume, --no-text and --dtype write parquet shards: give --output a folder")
    if sharded and not input:
        raise InputError(f"--output {output} would be a folder of parquet shards, which is for --input files; "
                         "for a few texts use -o FILE.npy, -o FILE.jsonl or stdout")
    from m3e.data.rows import ignored_line, walk_inputs
    from m3e.data.streams import SUFFIXES, Reader
    from m3e.utils.paths import check_output

    if input:  # inputs and output checked before the model loads: files, the first row's column, the output
        ignored: list[Path] = []
        files = walk_inputs(input, SUFFIXES, ignored)
        if ignored:
            _err(ignored_line(ignored, SUFFIXES))
        peek = Reader(column, id_column, skip_bad=skip_bad, skip_empty=skip_blank).file_records(files[0])
        next(peek, None)
        peek.close()
    if output is not None:
        check_output(output, folder=sharded)
    from m3e.bulk.job import EncodeOptions

    options = EncodeOptions(column=column, id_column=id_column, skip_bad=skip_bad, prompt=prompt,
                            prompt_name=prompt_name, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                            truncate=str(truncate), normalize=normalize, dtype=str(dtype), with_text=not no_text,
                            shard_size=shard_size, max_texts=max_texts)
    if sharded and engine == "ray":
        from m3e.bulk.ray_engine import RayOptions, encode_with_ray

        summary = encode_with_ray(input, output, options, RayOptions(
            model=model, backend=str(backend), device=device, threads=threads, trust_remote_code=trust_remote_code,
            address=address, num_workers=num_workers, gpus_per_worker=gpus_per_worker), log=_err)
        _encode_report(summary, f"Ray ({num_workers} workers)")
        return
    embedder = _load(model, device, threads, trust_remote_code, backend)
    if sharded:
        from m3e.bulk.job import encode_corpus

        summary = encode_corpus(embedder, input, output, options, resume=resume, show_progress=True)
        _encode_report(summary, embedder.name)
        return
    from m3e.bulk.small import encode_small

    encode_small(embedder, texts, input, output, options, skip_blank, log=_err, echo=typer.echo)


def _encode_report(summary, by: str) -> None:
    if summary.skip_report is not None:
        for line in summary.skip_report.lines():
            _err(line)
    elif summary.skipped:
        _err(f"skipped rows: {summary.skipped}")
    resumed = f" (continuing after {summary.resumed} rows of an earlier run)" if summary.resumed else ""
    rate = summary.texts / summary.seconds if summary.seconds else 0.0
    counts = (f"{summary.tokens} tokens, {summary.truncated} truncated" if summary.tokens is not None else
              "tokens not counted on Ray")
    _err(f"encoded {summary.texts} texts ({counts}) with {by} in {summary.seconds:.1f}s ({rate:.0f} texts/s)"
         f"{resumed} -> {summary.output}/ ({summary.shards} shards)")


@app.command()
def similarity(
    texts: Annotated[list[str], typer.Argument(help="Two or more texts.")],
    prompt_name: Annotated[str | None, typer.Option(help="Named prompt (default: the model's 'query' "
                                                    "prompt if it has one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matrix as JSON.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Print the cosine similarity matrix of the given texts."""
    if len(texts) < 2:
        raise InputError("similarity needs at least two texts")
    embedder = _load(model, device, threads, trust_remote_code, backend)
    vectors = embedder.encode(texts, prompt_name=_symmetric_prompt(embedder, prompt_name))
    matrix = vectors @ vectors.T
    if as_json:
        typer.echo(json.dumps({"model": embedder.name, "texts": texts,
                               "similarity": [[round(float(x), 6) for x in row] for row in matrix]},
                              ensure_ascii=False))
        return
    from m3e.utils.display import similarity_table

    similarity_table(texts, matrix, title=f"cosine similarity ({embedder.name})")


@app.command("models")
def list_models() -> None:
    """List built-in and cached models with their dimension and provenance."""
    from m3e.models.catalog import available_models
    from m3e.utils.display import models_table

    models_table(available_models())


@app.command()
def mix(
    base: Annotated[str, typer.Argument(help="The model every part is a difference from (built-in, folder, hub id).")],
    part: Annotated[list[str], typer.Option("--part", "-p", help="MODEL[:SCALE]: adds SCALE x (MODEL - BASE); "
                                            "scale 1 when left out. Repeatable.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New model folder.")],
) -> None:
    """Mix models in weight space: BASE + sum of SCALE x (MODEL - BASE). Task arithmetic of two fine-tunes,
    a step back toward the base (one part, scale < 1), or checkpoint averaging (n parts, 1/n each)."""
    from m3e.models.mix import mix_models, parse_part

    parts = [parse_part(p) for p in part]
    out = mix_models(base, parts, output, log=_err)
    typer.echo(f"mixed {base} + " + " + ".join(f"{s:g} x ({n} - base)" for n, s in parts) + f" -> {out}")


@app.command()
def demo(
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 3,
) -> None:
    """A short tour on the default model: similarity of a few sentences and a search over a corpus."""
    import time

    from rich.markup import escape

    from m3e.demo import QUERIES, SENTENCES, corpus
    from m3e.utils.display import console, similarity_table

    t0 = time.perf_counter()
    console.print("[bold]m3e demo[/bold]: loading the model (the built-in one is converted on first use)…")
    embedder = _load(model, device, threads, backend=backend)
    console.print(f"model [cyan]{embedder.name}[/cyan]: dim {embedder.dim}, max length "
                  f"{embedder.max_length}, device {embedder.device}; {embedder.provenance} "
                  f"({time.perf_counter() - t0:.1f}s)")
    vectors = embedder.encode(SENTENCES, prompt_name=_symmetric_prompt(embedder, None))
    similarity_table(SENTENCES, vectors @ vectors.T, title="1. sentence similarity (Chinese + English)")

    docs = corpus()
    passage = _role_prompt(embedder, "passage")
    doc_vecs = embedder.encode([d["text"] for d in docs], prompt_name=passage)
    query_vecs = embedder.encode(QUERIES, prompt_name=_symmetric_prompt(embedder, None))
    console.print(f"\n[bold]2. semantic search[/bold] over {len(docs)} sample passages (top {top_k})")
    for query, qv in zip(QUERIES, query_vecs, strict=True):
        scores = doc_vecs @ qv
        console.print(f"\n[bold]Q:[/bold] {query}")
        for rank, j in enumerate(scores.argsort()[::-1][:top_k], 1):
            console.print(f"  {rank}. [green]{scores[j]:.3f}[/green] "
                          + escape(f"[{docs[j]['id']}] {docs[j]['text']}"))
    console.print(f"\ndone in {time.perf_counter() - t0:.1f}s")


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


@app.command()
def serve(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to serve: built-in name, folder "
                                                    "or hub id, optionally as ALIAS=MODEL. Repeatable; the first "
                                                    "is the default. (default: $M3E_MODEL or the built-in)")] = None,
    reranker: Annotated[list[str] | None, typer.Option("--reranker", help="Reranker (cross-encoder) to serve on "
                                                       "/v1/rerank and /rerank: folder, hub id or built-in, "
                                                       "optionally ALIAS=MODEL. Repeatable.")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server to the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", envvar="M3E_API_KEY", help="Require "
                                                      "'Authorization: Bearer KEY' (repeatable).")] = None,
    max_batch_tokens: Annotated[int, typer.Option(min=64, help="Token budget per model batch.")] = 16384,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most texts in one request (OpenAI: 2048).")] = 2048,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body.")] = 16 * 1024 * 1024,
    queue_size: Annotated[int, typer.Option(min=1, help="Requests waiting per model before 429.")] = 256,
    max_queue_tokens: Annotated[int, typer.Option(min=1024, help="Tokens admitted at once over all models "
                                                  "(bodies being read, queued and being embedded); past it "
                                                  "requests get 429 with Retry-After before their body is "
                                                  "read.")] = 1 << 20,
    no_truncate: Annotated[bool, typer.Option("--no-truncate", help="Refuse inputs over the model's max length "
                                              "(413) instead of truncating them.")] = False,
    prompt_name: Annotated[str | None, typer.Option(help="Prompt for requests that give no input_type (default: "
                                                    "the model's 'query' prompt when it has one).")] = None,
    cl100k_file: Annotated[str | None, typer.Option(envvar="M3E_CL100K_FILE", help="Local cl100k_base.tiktoken "
                                                    "to decode token-id inputs (LangChain's default).")] = None,
    device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """OpenAI-compatible embeddings server (/v1/embeddings, /embed, /similarity) and rerank server (/v1/rerank
    Jina/Cohere, /rerank TEI), with /v1/models, /health and /metrics."""
    import os

    from m3e.models.resolver import resolve
    from m3e.serving.app import ServeConfig, split_spec
    from m3e.serving.server import serve as run_server

    set_but_empty = "M3E_API_KEY" in os.environ and not os.environ["M3E_API_KEY"].strip()
    if set_but_empty or api_key is not None and any(not k.strip() for k in api_key):
        raise InputError("--api-key (or $M3E_API_KEY) is empty: the server would accept every request; set the "
                         "variable you meant, or leave the option out to serve without keys on 127.0.0.1")
    specs, rr_specs = list(model or []), list(reranker or [])
    if not specs and not rr_specs:
        from m3e.models.resolver import default_model_name

        specs = [default_model_name()]
    aliases = [split_spec(s)[0] for s in specs + rr_specs]
    if len(set(aliases)) != len(aliases):
        raise InputError(f"two served models share a name: {', '.join(aliases)}; use ALIAS=MODEL")
    from m3e.models.onnx_backend import check_backend

    check_backend(backend)
    for spec in specs:  # fail now, with a clear message, rather than in the background loader
        if resolve(split_spec(spec)[1]).role == "reranker":
            raise InputError(f"--model {spec}: this is a reranker (a cross-encoder); serve it with --reranker")
    for spec in rr_specs:
        if resolve(split_spec(spec)[1]).role != "reranker":
            raise InputError(f"--reranker {spec}: this is an embedding model, not a cross-encoder; serve it with "
                             "--model")
    config = ServeConfig(models=specs, rerankers=rr_specs, host=host, port=port, api_keys=list(api_key or []),
                         max_batch_tokens=max_batch_tokens, max_inputs=max_inputs, max_body_bytes=max_body_bytes,
                         queue_size=queue_size, max_queue_tokens=max_queue_tokens, truncate=not no_truncate,
                         prompt_name=prompt_name, device=device, threads=threads, backend=str(backend),
                         trust_remote_code=trust_remote_code, cl100k_file=cl100k_file)
    if host not in ("127.0.0.1", "localhost", "::1") and not config.api_keys:
        _err(f"warning: serving on {host} without --api-key: anyone who can reach this port can use it")
    routes = (["/v1/embeddings"] if specs else []) + (["/v1/rerank"] if rr_specs else [])
    _err(f"m3e serve: {', '.join(aliases)} on http://{host}:{port} ({', '.join(routes)})")
    run_server(config, log_level=log_level)


CacheDirOpt = Annotated[Path | None, typer.Option(envvar="M3E_DATA_CACHE", help="Where training files are "
                                                  "converted to memory-mapped Arrow caches (default: "
                                                  "$M3E_HOME/data-cache).")]


@app.command()
def finetune(
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Training file or folder (one source per "
                                                    "file; jsonl/json/csv/tsv/parquet). Repeatable.")] = None,
    sources_file: Annotated[Path | None, typer.Option("--sources", help="JSON or YAML list of sources with the "
                                                      "keys of a recipe's sources (path, name, weight, "
                                                      "instruction, columns, max_records, ...).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (model/, checkpoints/, ...).")]
    = Path("m3e-finetuned"),
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")] = None,
    batch_size: Annotated[int, typer.Option(min=2, help="Contrastive batch (over all devices).")] = 32,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: 5e-5 small, 3e-5 base, 1e-5 large).")]
    = None,
    warmup_ratio: Annotated[float, typer.Option(min=0, max=1)] = 0.1,
    temperature: Annotated[float, typer.Option(min=1e-4, help="InfoNCE temperature.")] = 0.05,
    symmetric: Annotated[bool, typer.Option(help="Add the positive->anchor direction to InfoNCE.")] = False,
    matryoshka: Annotated[str | None, typer.Option(help="Matryoshka dimensions, e.g. 384,256,128.")] = None,
    max_length: Annotated[int | None, typer.Option(min=8, help="Max tokens per text (default: the model's).")]
    = None,
    cached: Annotated[bool, typer.Option(help="Cached (GradCache) loss: batch size independent of memory.")]
    = False,
    mini_batch: Annotated[int, typer.Option(min=1, help="Texts per forward pass with --cached.")] = 32,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for activation memory.")] = False,
    mixed_precision: Annotated[Precision, typer.Option(help="Mixed precision (GPU).")] = Precision.no,
    lora: Annotated[bool, typer.Option(help="Train LoRA adapters (output merged, adapter kept).")] = False,
    lora_r: Annotated[int, typer.Option(min=1)] = 8,
    bitfit: Annotated[bool, typer.Option(help="Train only the bias terms.")] = False,
    save_every: Annotated[int, typer.Option(min=0, help="Checkpoint every N steps (0: each epoch).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT/checkpoints/latest.")] = False,
    eval_tasks: Annotated[str | None, typer.Option(help="m3e eval tasks to score during training; the best "
                                                   "checkpoint by their mean main score is kept. 'validation': "
                                                   "every validation task (choose on those, not on test tasks)."
                                                   )] = None,
    eval_every: Annotated[int, typer.Option(min=0, help="Evaluate every N steps (0: each epoch).")] = 0,
    data_dir: Annotated[Path | None, typer.Option(envvar="M3E_DATA_DIR", help="Evaluation data folder.")] = None,
    cache_dir: CacheDirOpt = None,
    seed: Annotated[int, typer.Option()] = 42,
    tensorboard: Annotated[bool, typer.Option(help="Write TensorBoard logs to OUTPUT/runs.")] = False,
    cross_encoder: Annotated[bool, typer.Option("--cross-encoder", help="Train a reranker (a cross-encoder) "
                                                "instead: from --model (an embedding model gets a new one-label "
                                                "head, a reranker goes on training), on the same data.")] = False,
    loss: Annotated[str, typer.Option(help="--cross-encoder loss: bce (pairs labelled 1/0, scored pairs their "
                                      "scaled score) or listwise (InfoNCE over the positive, hard and in-batch "
                                      "negatives).")] = "bce",
    negatives: Annotated[int, typer.Option(min=1, help="--cross-encoder: hard negatives per query (the record's "
                                           "own, then mined).")] = 3,
    mine_with: Annotated[str | None, typer.Option(help="--cross-encoder: embedding model that mines the hard "
                                                  "negatives (default: the default model).")] = None,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Fine-tune the M3E way: in-batch negatives, one source per batch, no duplicate texts in a batch
    (--cross-encoder: a reranker, on the same sources)."""
    from m3e.data.prepared import prepare_sources
    from m3e.data.records import FILE_TYPES
    from m3e.data.rows import ignored_line
    from m3e.training import FineTuner, TrainConfig
    from m3e.training.recipe import sources_file as read_sources_file

    dims = _dims(matryoshka) if matryoshka else None
    sources = []
    for path in data or []:
        ignored: list[Path] = []
        sources.extend(prepare_sources(path, cache_dir, ignored=ignored))
        if ignored:
            _err(ignored_line(ignored, FILE_TYPES))
    if sources_file is not None:
        sources.extend(read_sources_file(sources_file, cache_dir))
    if not sources:
        raise InputError("no training data: give --data PATH (repeatable) or --sources FILE")
    if cross_encoder:
        from m3e.models.resolver import default_model_name
        from m3e.training.cross_encoder import RerankConfig, train_reranker

        embedder_only = [n for n, v in (("--lora", lora), ("--cached", cached), ("--matryoshka", matryoshka),
                                        ("--bitfit", bitfit), ("--symmetric", symmetric)) if v]
        if embedder_only:
            raise InputError(f"{', '.join(embedder_only)} train embedding models; not with --cross-encoder")
        config = RerankConfig(output=str(output), loss=loss, negatives=negatives, mine_with=mine_with,
                              epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr or 3e-5,
                              warmup_ratio=warmup_ratio, max_length=max_length or 256, resume=resume, seed=seed,
                              save_every=save_every or 100, eval_every=eval_every or 100, threads=threads,
                              device=device)
        config.check()
        out = train_reranker(model or default_model_name(), sources, config, log=_err)
        typer.echo(f"reranker in {out / 'model'} (loads in CrossEncoder and `m3e serve --reranker`); report in "
                   f"{out / 'training_report.json'}")
        return
    embedder = _load(model, device, threads, trust_remote_code)
    config = TrainConfig(
        output=str(output), epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
        warmup_ratio=warmup_ratio, temperature=temperature, symmetric=symmetric, matryoshka_dims=dims,
        max_length=max_length, cached=cached, mini_batch=mini_batch, gradient_checkpointing=gradient_checkpointing,
        mixed_precision=str(mixed_precision), lora=lora, lora_r=lora_r, bitfit=bitfit, seed=seed, save_every=save_every,
        resume=resume, eval_tasks=[t.strip() for t in eval_tasks.split(",")] if eval_tasks else [],
        eval_every=eval_every, eval_data_dir=str(data_dir) if data_dir else None, tensorboard=tensorboard)
    out = FineTuner(embedder, sources).run(config)
    typer.echo(f"model in {out / 'model'} (loads in SentenceTransformer); card in {out / 'model' / 'README.md'}")


def _dims(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        raise InputError(f"--matryoshka takes dimensions separated by commas, e.g. 384,256,128; got '{text}'") from None
    if any(d < 1 for d in dims):
        raise InputError(f"--matryoshka dimensions are positive, got '{text}'")
    return dims


RecipeDataOpt = Annotated[Path | None, typer.Option(envvar="M3E_DATA_DIR", help="Folder the recipe's paths are "
                                                  "relative to (default: $M3E_DATA_DIR).")]
RecipeOutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the recipe's "
                                                      "name).")]


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    data_dir: RecipeDataOpt = None,
    output: RecipeOutputOpt = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override: stop after this many steps.")] = None,
    max_records: Annotated[int | None, typer.Option(min=1, help="Cap every source at this many records (a "
                                                    "fixed-seed sample; a smoke run of the recipe).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Override the recipe's batch size.")] = None,
    mixed_precision: Annotated[Precision | None, typer.Option(help="Override the recipe's.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the output's last checkpoint.")] = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None, threads: ThreadsOpt = None,
) -> None:
    """Reproduce a model from a recipe: sources, test-overlap filter, training options, in one command."""
    from m3e.training.recipe import run_recipe

    if data_dir is None:
        raise InputError("no data folder: pass --data-dir DIR or set M3E_DATA_DIR")
    out = run_recipe(recipe, data_dir, output, device=device, threads=threads, cache_dir=cache_dir,
                     max_records=max_records, max_steps=max_steps, epochs=epochs, batch_size=batch_size,
                     mixed_precision=str(mixed_precision) if mixed_precision else None, resume=resume or None)
    typer.echo(f"model in {out / 'model'}; recipe report in {out / 'recipe_report.json'}")


@app.command()
def distill(
    recipe: Annotated[Path, typer.Argument(help="Distill recipe YAML (see recipes/m3e-static-zh.yaml).")],
    data_dir: RecipeDataOpt = None,
    output: RecipeOutputOpt = None,
    pca_dims: Annotated[int | None, typer.Option(min=2, help="Override: vector dimensions.")] = None,
    extra_latin: Annotated[int | None, typer.Option(min=0, help="Override: extra English tokens kept.")] = None,
    min_count: Annotated[int | None, typer.Option(min=1, help="Override: drop corpus tokens seen fewer times.")]
    = None,
    tokenlearn: Annotated[bool | None, typer.Option("--tokenlearn/--no-tokenlearn", help="Override: fit the "
                                                    "token vectors to the teacher's vectors.")] = None,
    quantize: Annotated[RowType | None, typer.Option(help="Override: int8 or float32 rows.")] = None,
    target_scale: Annotated[float | None, typer.Option(min=0.0, help="Override: scale of the teacher vectors "
                                                       "tokenlearn fits (default: sqrt of their dimension).")]
    = None,
    sif_coefficient: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Override: model2vec's "
                                                          "frequency weighting.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in the same folder.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Distill a static model (m3e-static-zh) from a transformer: pruned vocabulary, model2vec, tokenlearn."""
    from m3e.distill.pipeline import run_distill

    if data_dir is None:
        raise InputError("no data folder: pass --data-dir DIR or set M3E_DATA_DIR")
    out = run_distill(recipe, data_dir, output, resume=resume, threads=threads, log=_err, pca_dims=pca_dims,
                      extra_latin=extra_latin, tokenlearn=tokenlearn, quantize=str(quantize) if quantize else None,
                      target_scale=target_scale, sif_coefficient=sif_coefficient, min_count=min_count)
    typer.echo(f"model in {out / 'model'}; shipped form in {out / 'packed'}; report in {out / 'report.json'}")


@app.command()
def mine(
    data: Annotated[Path, typer.Option("--data", "-d", help="Pairs (query, positive) to mine negatives for.")],
    corpus: Annotated[Path, typer.Option(help="Passages to draw negatives from (txt/jsonl/csv/tsv).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="BGE-format jsonl: query, pos, neg.")],
    column: Annotated[str, typer.Option(help="Text field of a jsonl/csv corpus.")] = "text",
    rank_range: Annotated[str, typer.Option("--range", help="Rank window to sample negatives from.")] = "10-100",
    num_negatives: Annotated[int, typer.Option(min=1)] = 7,
    margin: Annotated[float, typer.Option(min=0, max=1, help="Skip candidates with similarity >= margin x the "
                                          "positive's (likely false negatives).")] = 0.95,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Mine hard negatives with a model, avoiding false negatives by rank window and similarity margin."""
    from m3e.data.records import read_source
    from m3e.data.texts import read_texts
    from m3e.training.mining import mine as mine_negatives
    from m3e.utils.atomic import atomic_path

    try:
        lo, hi = (int(x) for x in rank_range.split("-"))
    except ValueError:
        raise InputError(f"--range must look like 10-100, not '{rank_range}'") from None
    if not 1 <= lo < hi:
        raise InputError(f"--range {rank_range}: need 1 <= start < end")
    from m3e.utils.paths import check_output

    check_output(output, folder=False)
    source = read_source(data)
    texts = read_texts(corpus, column=column, skip_blank=True).texts
    embedder = _load(model, device, threads, trust_remote_code, backend)
    rows, counts = mine_negatives(embedder, source, texts, rank_range=(lo, hi), num_negatives=num_negatives,
                                  margin=margin)
    with atomic_path(output) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    typer.echo(f"{len(rows)} rows to {output}; {source.report()}; skipped candidates: {counts}")


data_app = typer.Typer(help="Training data: convert sources to memory-mapped Arrow caches ahead of time.",
                       no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    sources: Annotated[list[Path], typer.Argument(help="Training files or folders (jsonl/json/csv/tsv/parquet; a "
                                                  "folder gives one source per file).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the caches; give it to `m3e finetune "
                                         "--data` (or as --cache-dir).")],
    columns: Annotated[str | None, typer.Option(help="Column names of header-less csv/tsv, comma-separated.")]
    = None,
    format: Annotated[str | None, typer.Option("--format", help="File type when the suffix does not say (jsonl, "  # noqa: A002
                                               "json, csv, tsv, parquet, squad, kbqa).")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding, e.g. gb18030 (default: UTF-8, or GB18030 "
                                                 "when the file starts so).")] = None,
    max_negatives: Annotated[int | None, typer.Option(min=0, help="Keep at most this many hard negatives.")] = None,
) -> None:
    """Convert training sources once; print per-source counts and skipped rows (first line of each reason)."""
    from m3e.data.prepared import prepare_source, write_prepared
    from m3e.data.records import FILE_TYPES
    from m3e.data.rows import ignored_line, walk_inputs

    options = {"columns": columns.split(",") if columns else None, "format": format, "encoding": encoding,
               "max_negatives": max_negatives}
    prepared = []
    t0 = time.perf_counter()
    for path in sources:
        ignored: list[Path] = []
        for f in walk_inputs([path], FILE_TYPES, ignored):
            start = time.perf_counter()
            source = prepare_source(f, output, **options)
            prepared.append(source)
            typer.echo(f"{source.report()} [{time.perf_counter() - start:.1f}s]")
        if ignored:
            _err(ignored_line(ignored, FILE_TYPES))
    from m3e.data.records import unique_names

    for line in unique_names(prepared):
        typer.echo(line)
    write_prepared(output, prepared)
    typer.echo(f"{len(prepared)} sources, {sum(len(s) for s in prepared):,} records in {output} "
               f"({time.perf_counter() - t0:.1f}s); train with: m3e finetune --data {output}")


index_app = typer.Typer(help="Index your own documents for semantic search (build, add, remove, info).",
                        no_args_is_help=True, add_completion=False)
app.add_typer(index_app, name="index")
InputsOpt = Annotated[list[Path], typer.Option("--input", "-i", help="File or folder (txt, md, jsonl, csv, tsv); "
                                               "repeatable.")]
TextFieldOpt = Annotated[str, typer.Option(help="Text field of jsonl/csv/tsv rows; other fields become metadata.")]
IdFieldOpt = Annotated[str, typer.Option(help="Document id field of jsonl/csv/tsv rows (default: file:line).")]


def _change_report(change, verb: str) -> None:
    if change.report is not None:
        for line in change.report.lines():
            _err(line)
    replaced = (f"; replaced {change.removed_chunks} chunks of {change.replaced_sources} files already indexed"
                if change.replaced_sources else "")
    _err(f"{verb} {change.documents} documents as {change.chunks} chunks in {change.seconds:.1f}s{replaced}")


@index_app.command("build")
def index_build(
    input: InputsOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="New index folder.")],
    chunk_size: Annotated[int, typer.Option(min=0, help="Most characters in a chunk (0: whole documents).")] = 400,
    overlap: Annotated[int, typer.Option(min=0, help="Characters of whole sentences repeated between chunks.")]
    = 80,
    text_field: TextFieldOpt = "text", id_field: IdFieldOpt = "id",
    exact_below: Annotated[int, typer.Option(min=0, help="Search exactly below this many chunks, approximately "
                                             "(HNSW) from it on.")] = 20_000,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="An interrupted build of the same inputs and "
                                         "settings continues from its last finished shard (default), or starts "
                                         "over.")] = True,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Chunk, embed (passage prompt) and store documents in a new index folder, a shard at a time."""
    from m3e.search.index import Index, check_new_index
    from m3e.utils.paths import check_output

    check_output(output, folder=True)  # before the model loads
    check_new_index(output)
    embedder = _load(model, device, threads, trust_remote_code, backend)
    index, change = Index.build(input, output, embedder, chunk_size=chunk_size, overlap=overlap,
                                text_field=text_field, id_field=id_field, batch_size=batch_size,
                                exact_below=exact_below, show_progress=True, resume=resume, log=_err)
    _change_report(change, "indexed")
    if len(index) == 0:
        _err("warning: the index is empty")
    typer.echo(f"index {output}: {len(index)} chunks, model {embedder.name}")


def _open_index(folder: Path, model, device, threads, backend, trust=False):
    from m3e.search.index import Index

    return Index.load(folder, model=model, device=device, threads=threads, trust_remote_code=trust,
                      backend=str(backend), log=_err)


def _update_index(folder: Path, model, device, threads, backend):
    from m3e.search.index import Index

    return Index.open_for_update(folder, model=model, device=device, threads=threads, backend=str(backend), log=_err)


@index_app.command("add")
def index_add(
    folder: Annotated[Path, typer.Argument(help="Index folder.")], input: InputsOpt,
    text_field: TextFieldOpt = "text", id_field: IdFieldOpt = "id",
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
) -> None:
    """Add files to an index; a file already in it is replaced by its current content."""
    with _update_index(folder, model, device, threads, backend) as index:
        change = index.add(input, text_field=text_field, id_field=id_field, show_progress=True)
    _change_report(change, "added")
    typer.echo(f"index {folder}: {len(index)} chunks")


@index_app.command("remove")
def index_remove(
    folder: Annotated[Path, typer.Argument(help="Index folder.")],
    source: Annotated[list[Path] | None, typer.Option("--source", "-s", help="File or folder whose chunks to "
                                                      "remove; repeatable.")] = None,
    doc_id: Annotated[list[str] | None, typer.Option("--id", help="Document id to remove; repeatable.")] = None,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
) -> None:
    """Remove documents from an index by source file/folder or document id."""
    if not source and not doc_id:
        raise InputError("say what to remove: --source PATH or --id ID (repeatable)")
    with _update_index(folder, model, device, threads, backend) as index:
        change = index.remove(sources=list(source or []), doc_ids=list(doc_id or []))
    if change.removed_chunks == 0:
        _err("nothing matched; the index is unchanged")
    typer.echo(f"removed {change.removed_chunks} chunks; index {folder}: {len(index)} chunks")


@index_app.command("info")
def index_info(folder: Annotated[Path, typer.Argument(help="Index folder.")]) -> None:
    """Print an index's manifest (model, counts, chunking) as JSON; loads no model."""
    from m3e.search.index import MANIFEST, Index

    path = folder / MANIFEST
    if not path.is_file():
        Index.load(folder)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("probe", None)
    typer.echo(json.dumps(manifest, ensure_ascii=False, indent=2))


@app.command()
def search(
    folder: Annotated[Path, typer.Argument(help="Index folder (from `m3e index build`).")],
    query: Annotated[str, typer.Argument(help="Question or keywords.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="How many chunks to return.")] = 5,
    hybrid: Annotated[bool, typer.Option(help="Fuse BM25 over jieba words with the dense ranking (RRF).")] = False,
    exact: Annotated[bool | None, typer.Option("--exact/--approximate", help="Force exact or HNSW search "
                                               "(default: exact below the index's size threshold).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hit.")] = False,
    rescore: Annotated[str | None, typer.Option("--rescore", "--rerank", help="Re-score the first stage's top "
                                                "candidates with this model: a reranker (cross-encoder) reads the "
                                                "query with each; an embedding model (e.g. m3e-small-zh over an "
                                                "m3e-static-zh index) embeds them on the fly.")] = None,
    candidates: Annotated[int, typer.Option(min=1, help="First-stage candidates for --rescore/--rerank and "
                                            "--hybrid.")] = 100,
    rescore_backend: Annotated[Backend, typer.Option(help="Backend of the --rescore/--rerank model."
                                                     )] = Backend.torch,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None, backend: BackendOpt = Backend.torch,
) -> None:
    """Search an index: the query prompt, top-k chunks with score, source and offsets."""
    index = _open_index(folder, model, device, threads, backend)
    rescorer = None
    if rescore:
        from m3e.models.resolver import load_any

        rescorer = load_any(rescore, device=device, threads=threads, backend=str(rescore_backend), log=_err)
    hits = index.search(query, k=k, hybrid=hybrid, exact=exact, candidates=candidates, rescore=rescorer)
    if as_json:
        for h in hits:
            typer.echo(json.dumps(h.to_dict(), ensure_ascii=False))
        return
    from rich.markup import escape

    from m3e.utils.display import console

    if not hits:
        console.print("no results (the index is empty)")
    for h in hits:
        where = f"{h.source}" + (f":{h.line}" if h.line else "") + f" #{h.chunk} [{h.start}:{h.end}]"
        extra = (f" (dense {h.dense_score if h.dense_score is not None else '-'}, bm25 "
                 f"{h.bm25_score if h.bm25_score is not None else '-'})" if hybrid else
                 f" (first stage {h.dense_score})" if rescorer is not None else "")
        console.print(f"[bold]{h.rank}.[/bold] [green]{h.score:.4f}[/green]{escape(extra)} "
                      f"[cyan]{escape(where)}[/cyan]")
        console.print("   " + escape(h.text.replace("\n", " ")[:300] + ("…" if len(h.text) > 300 else "")))


def main() -> None:
    """Entry point: run the app, turning user errors into one clear line and exit code 2."""
    try:
        app()
    except M3EError as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
