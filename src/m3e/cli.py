"""The `m3e` command line: a thin layer over the package; user mistakes print one line, no traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from m3e.errors import InputError, M3EError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Chinese-first text embeddings: encode, compare, evaluate, train and serve.")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Built-in name, model folder or hub "
                                              "id (default: $M3E_MODEL or the built-in default).")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: best available).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads (default: $M3E_THREADS or all CPUs).")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model repositories to run "
                                        "their own Python code (off by default).")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _load(model: str | None, device: str | None, threads: int | None, trust: bool = False):
    from m3e.models import load_model

    return load_model(model, device=device, threads=threads, trust_remote_code=trust)


def _symmetric_prompt(embedder, prompt_name: str | None) -> str | None:
    """For sentence-to-sentence comparison use the model's 'query' prompt when it has one (e5 style)."""
    if prompt_name:
        return prompt_name
    return "query" if "query" in embedder.prompts else None


@app.command()
def encode(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed.")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="txt (one text a line), jsonl, "
                                               "csv or tsv file.")] = None,
    column: Annotated[str, typer.Option(help="Field or column holding the text (jsonl/csv/tsv).")] = "text",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write .npy or .jsonl "
                                                "(default: JSON lines on stdout).")] = None,
    prompt_name: Annotated[str | None, typer.Option(help="Named prompt from the model, e.g. query "
                                                    "or passage.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Literal prompt prepended to every text.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget per batch.")] = 16384,
    truncate: Annotated[str, typer.Option(help="Over-long texts: truncate, error or window.")] = "truncate",
    normalize: Annotated[bool, typer.Option(help="L2-normalize vectors.")] = True,
    skip_blank: Annotated[bool, typer.Option(help="Skip empty lines/fields (counted) instead of failing.")]
    = False,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Embed texts and write vectors (.npy, .jsonl, or JSON lines on stdout)."""
    import numpy as np

    from m3e.data.texts import read_texts
    from m3e.utils.atomic import atomic_path

    if bool(texts) == bool(input):
        raise InputError("give texts as arguments or --input FILE (exactly one of them)")
    lines: list[int] | None = None
    if input is not None:
        source = read_texts(input, column=column, skip_blank=skip_blank)
        items, lines = source.texts, source.lines
        if source.skipped_blank:
            _err(f"skipped {source.skipped_blank} empty entries in {input}")
        if not items:
            raise InputError(f"{input}: no texts to embed")
    else:
        items = list(texts or [])
    if output is not None and output.suffix.lower() not in (".npy", ".jsonl"):
        raise InputError(f"--output must end in .npy or .jsonl, got {output.name}")

    embedder = _load(model, device, threads, trust_remote_code)
    vectors = embedder.encode(items, prompt=prompt, prompt_name=prompt_name, batch_size=batch_size,
                              max_batch_tokens=max_batch_tokens, truncate=truncate, normalize=normalize)
    stats = embedder.last_stats
    where = (lambda i: f"line {lines[i]}") if lines else (lambda i: f"text {i}")
    if stats.truncated:
        shown = ", ".join(where(i) for i in stats.truncated[:5])
        more = "" if len(stats.truncated) <= 5 else f" and {len(stats.truncated) - 5} more"
        _err(f"truncated {len(stats.truncated)} of {len(items)} texts at {embedder.max_length} tokens "
             f"({shown}{more}); use --truncate window to keep all of them")

    def rows():
        for i, (text, vec) in enumerate(zip(items, vectors, strict=True)):
            row = {"index": i, "text": text, "embedding": [round(float(x), 7) for x in vec]}
            if lines:
                row["line"] = lines[i]
            yield json.dumps(row, ensure_ascii=False)

    if output is None:
        for row in rows():
            typer.echo(row)
    elif output.suffix.lower() == ".npy":
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors.astype(np.float32))
    else:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for row in rows():
                fh.write(row + "\n")
    _err(f"encoded {len(items)} texts with {embedder.name} (dim {embedder.dim}, {stats.tokens} tokens, "
         f"{stats.seconds:.2f}s)" + (f" -> {output}" if output else ""))


@app.command()
def similarity(
    texts: Annotated[list[str], typer.Argument(help="Two or more texts.")],
    prompt_name: Annotated[str | None, typer.Option(help="Named prompt (default: the model's 'query' "
                                                    "prompt if it has one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matrix as JSON.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Print the cosine similarity matrix of the given texts."""
    if len(texts) < 2:
        raise InputError("similarity needs at least two texts")
    embedder = _load(model, device, threads, trust_remote_code)
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
def demo(
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 3,
) -> None:
    """A short tour on the default model: similarity of a few sentences and a search over a corpus."""
    import time

    from rich.markup import escape

    from m3e.demo import QUERIES, SENTENCES, corpus
    from m3e.utils.display import console, similarity_table

    t0 = time.perf_counter()
    console.print("[bold]m3e demo[/bold]: loading the model (the built-in one is converted on first use)…")
    embedder = _load(model, device, threads)
    console.print(f"model [cyan]{embedder.name}[/cyan]: dim {embedder.dim}, max length "
                  f"{embedder.max_length}, device {embedder.device}; {embedder.provenance} "
                  f"({time.perf_counter() - t0:.1f}s)")
    vectors = embedder.encode(SENTENCES, prompt_name=_symmetric_prompt(embedder, None))
    similarity_table(SENTENCES, vectors @ vectors.T, title="1. sentence similarity (Chinese + English)")

    docs = corpus()
    passage = "passage" if "passage" in embedder.prompts else None
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


@app.command("eval")
def eval_cmd(
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Comma-separated task names.")] = None,
    category: Annotated[str | None, typer.Option(help="Run every built-in task of a category (s2s, ...).")]
    = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Run every built-in task.")] = False,
    data_dir: Annotated[Path | None, typer.Option(envvar="M3E_DATA_DIR", help="Folder holding the dataset "
                                                  "folders (default: $M3E_DATA_DIR).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Results folder.")] = Path("results"),
    list_tasks: Annotated[bool, typer.Option("--list", help="List the built-in tasks and exit.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, threads: ThreadsOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Evaluate a model on built-in Chinese tasks with MTEB's metrics; writes JSON per task + summary.md."""
    from m3e.evaluation.tasks import BUILTIN_TASKS, select_tasks

    if list_tasks:
        for t in BUILTIN_TASKS.values():
            typer.echo(f"{t.name:10} {t.type:19} {t.category:4} {t.main_score:16} {t.description}")
        return
    if sum([bool(tasks), bool(category), all_tasks]) != 1:
        raise InputError("choose the tasks with exactly one of --tasks, --category or --all (see --list)")
    chosen = select_tasks([n.strip() for n in tasks.split(",") if n.strip()] if tasks else None, category)
    if data_dir is None:
        raise InputError("no data folder: pass --data-dir DIR or set M3E_DATA_DIR")
    if not data_dir.is_dir():
        raise InputError(f"data folder {data_dir} does not exist")
    from m3e.evaluation.runner import evaluate

    embedder = _load(model, device, threads, trust_remote_code)

    def show(result: dict) -> None:
        dropped = "".join(f", dropped {n} rows ({why})" for why, n in result["dropped"].items())
        typer.echo(f"{result['task']:10} {result['main_score_name']:16} {result['main_score'] * 100:6.2f}  "
                   f"({result['n_samples']} samples{dropped}, {result['seconds']:.1f}s)")

    evaluate(embedder, chosen, data_dir, output, progress=show)
    typer.echo(f"results in {output}/, summary in {output / 'summary.md'}")


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
