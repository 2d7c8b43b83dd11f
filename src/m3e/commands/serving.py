"""`m3e serve`: the OpenAI-compatible embeddings and rerank server."""

from __future__ import annotations

from typing import Annotated

import typer

from m3e.commands.common import (
    Backend,
    BackendOpt,
    DeviceOpt,
    ThreadsOpt,
    TrustOpt,
    _err,
)
from m3e.errors import InputError

app = typer.Typer()


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
    from m3e.models.onnx_runtime import check_backend

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
