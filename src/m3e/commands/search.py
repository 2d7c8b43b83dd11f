"""`m3e index build|add|remove|info` and `m3e search`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from m3e.commands.common import (
    Backend,
    BackendOpt,
    DeviceOpt,
    ModelOpt,
    ThreadsOpt,
    TrustOpt,
    _err,
    _load,
)
from m3e.errors import InputError

app = typer.Typer()


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
