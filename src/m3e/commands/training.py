"""`m3e finetune`, `train`, `distill`, `mine` and `data prepare`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from m3e.commands.common import (
    Backend,
    BackendOpt,
    DeviceOpt,
    ModelOpt,
    Precision,
    RowType,
    ThreadsOpt,
    TrustOpt,
    _err,
    _load,
)
from m3e.errors import InputError

app = typer.Typer()


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
    base: Annotated[str | None, typer.Option(help="Override: start from this model (built-in, folder, hub id) "
                                             "instead of the recipe's base, e.g. to continue an earlier model.")]
    = None,
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
                     max_records=max_records, base=base, max_steps=max_steps, epochs=epochs,
                     batch_size=batch_size, mixed_precision=str(mixed_precision) if mixed_precision else None,
                     resume=resume or None)
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
