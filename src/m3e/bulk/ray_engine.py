"""The same bulk encode on Ray Data: from a laptop (a local Ray) to a cluster of GPU nodes (``address``).

    files --(our reader: same ids, same bad-row rules)--> Ray Data blocks of (id, text)
          --map_batches(M3EEncoder, concurrency=N)--> (id, text, embedding) --write_parquet--> shards

:class:`M3EEncoder` is public: use it in your own pipelines,
``ds.map_batches(M3EEncoder, fn_constructor_kwargs={"model": "m3e-small-zh"}, concurrency=4, batch_format="pyarrow")``.
Ray is an optional extra: ``pip install 'm3e[ray]'``.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3e.bulk.job import EncodeOptions, EncodeSummary
from m3e.bulk.shards import MANIFEST, embedding_array
from m3e.data.rows import walk_inputs
from m3e.data.skips import SkipReport
from m3e.data.streams import SUFFIXES, Reader
from m3e.errors import InputError
from m3e.utils.atomic import write_text
from m3e.utils.memory import HeapTrimmer

BLOCK_ROWS = 4096  # rows per block the readers hand to Ray
IO_CPUS = 0.5  # CPU share of a read or write task: they wait on files, the encoder actors compute


@dataclass
class RayOptions:
    model: str | None = None
    backend: str = "torch"
    device: str | None = None
    threads: int | None = None  # CPU threads per encoder actor (default 1)
    trust_remote_code: bool = False
    address: str | None = None  # None: start a local Ray
    num_workers: int = 2  # encoder actors
    gpus_per_worker: float = 0.0


class M3EEncoder:
    """A Ray Data callable class: loads the model once per actor, then embeds each batch it is given.

    Batches may be pyarrow Tables (``batch_format="pyarrow"``: the ``embedding`` column is a fixed-size list,
    as in m3e's shards) or dicts of numpy arrays (the ``embedding`` column is a 2-D array).
    """

    def __init__(self, model: str | None = None, *, backend: str = "torch", device: str | None = None,
                 threads: int | None = 1, prompt: str | None = None, prompt_name: str | None = None,
                 text_column: str = "text", keep_text: bool = True, dtype: str = "float32", batch_size: int = 64,
                 max_batch_tokens: int = 16384, truncate: str = "truncate", normalize: bool = True,
                 trust_remote_code: bool = False) -> None:
        from m3e.models import load_model

        self.embedder = load_model(model, device=device, threads=threads, backend=backend,
                                   trust_remote_code=trust_remote_code)
        self.prompt = self.embedder.resolve_prompt(prompt, prompt_name)
        self.text_column, self.keep_text, self.dtype = text_column, keep_text, dtype
        self.kwargs = {"batch_size": batch_size, "max_batch_tokens": max_batch_tokens, "truncate": truncate,
                       "normalize": normalize, "show_progress": False}
        self.trimmer = HeapTrimmer()  # an actor lives for the whole job: keep its RSS flat

    def __call__(self, batch):
        import pyarrow as pa

        self.trimmer.maybe_trim()

        if isinstance(batch, pa.Table):
            texts = batch.column(self.text_column).to_pylist()
            vectors = self.embedder.encode(texts, prompt=self.prompt, **self.kwargs)
            if not self.keep_text:
                batch = batch.drop_columns([self.text_column])
            return batch.append_column("embedding", embedding_array(vectors, self.dtype))
        texts = [str(t) for t in batch[self.text_column]]
        vectors = self.embedder.encode(texts, prompt=self.prompt, **self.kwargs)
        out = {k: v for k, v in batch.items() if self.keep_text or k != self.text_column}
        out["embedding"] = vectors.astype(np.float16 if self.dtype == "float16" else np.float32)
        return out


def _datasource(files: list[Path], options: EncodeOptions, output: Path):
    """Our reader as a Ray datasource: one read task per file, blocks of (id, text); skips reported to a side
    file per task (the driver adds them up)."""
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    def read(index: int, path: Path):
        report = SkipReport()
        reader = Reader(options.column, options.id_column, options.fmt, options.skip_bad, report)
        ids: list[str] = []
        texts: list[str] = []
        for record in reader.file_records(path):
            ids.append(record.id)
            texts.append(record.text)
            if len(ids) >= BLOCK_ROWS:
                yield pa.table({"id": ids, "text": texts})
                ids, texts = [], []
        if ids:
            yield pa.table({"id": ids, "text": texts})
        if report:
            write_text(output / "_skipped" / f"{index:05d}.json", json.dumps(
                {"counts": dict(report), "examples": report.examples}, ensure_ascii=False))

    class Files(Datasource):
        def estimate_inmemory_data_size(self):
            return sum(f.stat().st_size for f in files)

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda i=i, f=f: read(i, f),
                             BlockMetadata(num_rows=None, size_bytes=f.stat().st_size, input_files=[str(f)],
                                           exec_stats=None))
                    for i, f in enumerate(files)]

    return Files()


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with a clear message, when nothing listens at a Ray address (ray.init would wait a long time)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address}: expected host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                         "with `ray start --head`, or leave --address out to use a local Ray") from None


def encode_with_ray(inputs: list, output: str | Path, options: EncodeOptions, ray_options: RayOptions,
                    log=print) -> EncodeSummary:
    try:
        import ray
    except ImportError:
        raise InputError("the Ray engine needs Ray: pip install 'm3e[ray]'") from None
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output} is not empty; the Ray engine writes into a new folder")
    files = walk_inputs(inputs, SUFFIXES)
    if ray_options.address:
        check_address(ray_options.address)
    start = time.perf_counter()
    threads = ray_options.threads or 1
    started_here = not ray.is_initialized()
    if started_here:
        if ray_options.address:
            ray.init(address=ray_options.address, log_to_driver=False)
        else:
            # one CPU per encoder thread, plus one for reading files and writing shards beside them
            ray.init(num_cpus=ray_options.num_workers * threads + 1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    try:
        ds = ray.data.read_datasource(_datasource(files, options, output), num_cpus=IO_CPUS)
        if options.max_texts:
            ds = ds.limit(options.max_texts)
        encoder_args = {"model": ray_options.model, "backend": ray_options.backend, "device": ray_options.device,
                        "threads": threads, "prompt": options.prompt, "prompt_name": options.prompt_name,
                        "keep_text": options.with_text, "dtype": options.dtype, "batch_size": options.batch_size,
                        "max_batch_tokens": options.max_batch_tokens, "truncate": options.truncate,
                        "normalize": options.normalize, "trust_remote_code": ray_options.trust_remote_code}
        ds = ds.map_batches(M3EEncoder, fn_constructor_kwargs=encoder_args,
                            compute=ray.data.ActorPoolStrategy(size=ray_options.num_workers),
                            batch_size=min(options.chunk, 2048), batch_format="pyarrow", num_cpus=threads,
                            num_gpus=ray_options.gpus_per_worker or None)
        from ray.data.datasource import FilenameProvider

        class Parts(FilenameProvider):
            def get_filename_for_task(self, write_uuid, task_index):
                return f"part-{write_uuid}-{task_index:05d}.parquet"

        ds.write_parquet(str(output), filename_provider=Parts(), compression="zstd",
                         max_rows_per_file=options.shard_size, ray_remote_args={"num_cpus": IO_CPUS})
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
        if isinstance(cause, InputError) or "InputError" in str(exc):
            message = str(cause).splitlines()[-1].split("InputError: ", 1)[-1]
            raise InputError(message) from None
        raise
    finally:
        if started_here:
            ray.shutdown()
    return _finish(output, options, time.perf_counter() - start)


def _finish(output: Path, options: EncodeOptions, seconds: float) -> EncodeSummary:
    import pyarrow.parquet as pq

    report = SkipReport()
    for side in sorted((output / "_skipped").glob("*.json")):
        got = json.loads(side.read_text(encoding="utf-8"))
        report.merge(SkipReport(got["counts"], got["examples"]))
    shards = sorted(output.glob("part-*.parquet"))
    rows = [pq.ParquetFile(f).metadata.num_rows for f in shards]
    summary = EncodeSummary(output, texts=sum(rows), tokens=None, truncated=None, seconds=seconds, shards=len(shards),
                            skipped=dict(report), skip_report=report)
    body = {"format": 1, "engine": "ray", "job": {"column": options.column, "id_column": options.id_column,
                                                  "dtype": options.dtype, "with_text": options.with_text},
            "shards": [{"file": f.name, "rows": n} for f, n in zip(shards, rows, strict=True)],
            "skipped": dict(report), "complete": True, "rows": sum(rows), "seconds": round(seconds, 3)}
    write_text(output / MANIFEST, json.dumps(body, indent=2, ensure_ascii=False))
    return summary
