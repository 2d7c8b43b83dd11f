"""The `m3e` command line: a thin layer over the package; user mistakes print one line, no traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from m3e.commands import evaluation, search, serving, training
from m3e.commands.common import (
    Backend,
    BackendOpt,
    DeviceOpt,
    Dtype,
    Engine,
    ModelOpt,
    ThreadsOpt,
    Truncate,
    TrustOpt,
    _err,
    _load,
    _role_prompt,
    _symmetric_prompt,
)
from m3e.errors import InputError, M3EError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Chinese-first text embeddings: encode, compare, evaluate, train and serve.")


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


for group in (evaluation, serving, training, search):  # after the commands above: --help lists them in this order
    app.add_typer(group.app)


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
