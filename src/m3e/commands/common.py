"""What every command shares: fixed-value choice types, the model/device options, one-line errors, loading."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


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
    from m3e.models.encoding import role_prompt

    return role_prompt(embedder, role)


def _symmetric_prompt(embedder, prompt_name: str | None) -> str | None:
    """For sentence-to-sentence comparison use the model's 'query' prompt when it has one (e5 style)."""
    return prompt_name or _role_prompt(embedder, "query")
