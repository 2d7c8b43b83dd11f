"""FineTuner end to end on a tiny model: it learns, resumes exactly after kill -9, LoRA and BitFit outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from m3e.errors import InputError
from m3e.evaluation.types.retrieval import retrieval_scores
from m3e.training import FineTuner
from m3e.training.trainer import TrainConfig
from tests.conftest import SAMPLE

CHARS = sorted({c for s in SAMPLE for c in s if "\u4e00" <= c <= "\u9fff"})


def toy_pairs(n=48):
    rows = []
    for i in range(n):
        q = CHARS[i % len(CHARS)] + CHARS[(i * 3 + 1) % len(CHARS)] + CHARS[(i * 5 + 2) % len(CHARS)]
        p = CHARS[(i * 7 + 3) % len(CHARS)] + CHARS[(i * 11 + 4) % len(CHARS)] + q[0]
        rows.append({"query": q, "positive": p})
    uniq = {}
    for r in rows:
        uniq.setdefault(r["query"], r)
    return list(uniq.values())


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def ndcg(embedder, rows) -> float:
    q = embedder.encode([r["query"] for r in rows], prompt_name="query")
    d = embedder.encode([r["positive"] for r in rows], prompt_name="query")
    ids = [f"d{i}" for i in range(len(rows))]
    return retrieval_scores(q, d, ids, [{f"d{i}": 1} for i in range(len(rows))])["ndcg_at_10"]


def test_training_improves_retrieval_and_saves_a_plain_st_model(tiny_st_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from m3e import load_model

    rows = toy_pairs()
    data = write(tmp_path / "toy.jsonl", rows)
    before = ndcg(load_model(str(tiny_st_dir), device="cpu"), rows)
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "out"), epochs=15, batch_size=8, lr=1e-3, progress=False)
    trained = load_model(str(out / "model"), device="cpu")
    after = ndcg(trained, rows)
    assert after > before + 0.1, (before, after)
    st = SentenceTransformer(str(out / "model"), device="cpu")
    np.testing.assert_allclose(st.encode(["今天"], prompt_name="query", normalize_embeddings=True),
                               trained.encode(["今天"], prompt_name="query"), atol=1e-5)
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert "| toy | pair |" in card and "temperature 0.05" in card
    state = json.loads((out / "training_state.json").read_text())
    assert state["sources"][0]["records"] == len(rows) and state["steps"] > 0


def _cli(*args):
    script = Path(sys.executable).with_name("m3e")
    return [str(script), *args]


def test_resume_after_kill_equals_uninterrupted(tiny_st_dir, tmp_path):
    rows = toy_pairs(48) + [{"query": a["query"] + b["query"], "positive": b["positive"] + a["positive"]}
                            for a, b in zip(toy_pairs(48), toy_pairs(48)[5:], strict=False)]
    data = write(tmp_path / "toy.jsonl", rows)
    common = ["finetune", "--model", str(tiny_st_dir), "--data", str(data), "--epochs", "3", "--batch-size", "4",
              "--lr", "1e-3", "--device", "cpu", "--threads", "1"]
    full = subprocess.run(_cli(*common, "-o", str(tmp_path / "a"), "--save-every", "5"), capture_output=True,
                          text=True, timeout=600)
    assert full.returncode == 0, full.stderr
    # the same run, killed hard once a checkpoint exists, then resumed
    proc = subprocess.Popen(_cli(*common, "-o", str(tmp_path / "b"), "--save-every", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = tmp_path / "b" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not pointer.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    # killed as soon as a checkpoint exists (no fixed delay): mid-step, after its first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "b" / "model").exists()
    resumed = subprocess.run(_cli(*common, "-o", str(tmp_path / "b"), "--save-every", "2", "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    held = json.loads((tmp_path / "b" / "training_state.json").read_text())["host_memory"]
    assert held["peak_resident_gb"] > 0 and held["split_steps"] == 0  # tiny texts: nothing to split
    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_lora_and_bitfit(tiny_st_dir, tmp_path):
    pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    from m3e import load_model

    rows = toy_pairs()
    data = write(tmp_path / "toy.jsonl", rows)
    base = load_file(str(tiny_st_dir / "model.safetensors"))
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "lora"), epochs=2, batch_size=8, lr=1e-3, lora=True, progress=False)
    assert (out / "model" / "adapter" / "adapter_config.json").is_file()
    merged = load_file(str(out / "model" / "model.safetensors"))
    assert set(merged) == set(base) and any(not torch.equal(merged[k], base[k]) for k in base)
    st = SentenceTransformer(str(out / "model"), device="cpu")
    np.testing.assert_allclose(st.encode(["今天"], normalize_embeddings=True),
                               load_model(str(out / "model"), device="cpu").encode(["今天"]), atol=1e-5)
    base_plus_adapter = SentenceTransformer(str(tiny_st_dir), device="cpu")
    base_plus_adapter.load_adapter(str(out / "model" / "adapter"))
    np.testing.assert_allclose(base_plus_adapter.encode(["今天"], normalize_embeddings=True),
                               st.encode(["今天"], normalize_embeddings=True), atol=1e-5)

    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "bitfit"), epochs=2, batch_size=8, lr=1e-3, bitfit=True, progress=False)
    tuned = load_file(str(out / "model" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(tuned[k], base[k])}
    assert changed and all(k.endswith(".bias") for k in changed)


def test_cli_finetune_bad_input(tiny_st_dir, tmp_path):
    r = subprocess.run(_cli("finetune", "--model", str(tiny_st_dir), "-o", str(tmp_path / "x")),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no training data" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": "a"}\n', encoding="utf-8")
    r = subprocess.run(_cli("finetune", "--model", str(tiny_st_dir), "--data", str(bad)), capture_output=True,
                       text=True)
    assert r.returncode == 2 and "cannot tell the record type" in r.stderr and "Traceback" not in r.stderr


def test_cli_mine(tiny_st_dir, tmp_path):
    rows = toy_pairs(20)
    data = write(tmp_path / "pairs.jsonl", rows)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(r["positive"] for r in toy_pairs(48)) + "\n", encoding="utf-8")
    out = tmp_path / "mined.jsonl"
    r = subprocess.run(_cli("mine", "--model", str(tiny_st_dir), "--data", str(data), "--corpus", str(corpus),
                            "-o", str(out), "--range", "2-20", "--num-negatives", "3"), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    mined = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(mined) == len(rows)
    for row, src in zip(mined, rows, strict=True):
        assert row["query"] == src["query"] and row["pos"] == [src["positive"]]
        assert src["positive"] not in row["neg"] and len(row["neg"]) <= 3


def test_eval_during_training_keeps_the_best(tiny_st_dir, tmp_path, shared_data):
    rows = toy_pairs()
    data = write(tmp_path / "toy.jsonl", rows)
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "out"), epochs=2, batch_size=8, lr=1e-3, progress=False,
        eval_tasks=["STSB-zh-dev", "STSB-en-dev"], eval_data_dir=str(shared_data))
    state = json.loads((out / "training_state.json").read_text())
    assert [e["step"] for e in state["evals"]] == sorted({e["step"] for e in state["evals"]})
    assert len(state["evals"]) == 2
    best = max(state["evals"], key=lambda e: e["score"])
    assert state["best"]["step"] == best["step"] and (out / "best" / "model.safetensors").is_file()
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert "best checkpoint by mean evaluation score" in card and "| step | STSB-zh-dev | STSB-en-dev | mean |" in card


def test_choosing_checkpoints_on_test_tasks_is_warned(tiny_st_dir, tmp_path, shared_data):
    from m3e.training.trainer import TrainConfig

    tuner = FineTuner.from_pretrained(str(tiny_st_dir), str(write(tmp_path / "toy.jsonl", toy_pairs())),
                                      device="cpu")
    tuner._check_eval_options(TrainConfig(eval_tasks=["validation"], eval_data_dir=str(shared_data)))
    assert tuner._eval_warning is None
    tuner._check_eval_options(TrainConfig(eval_tasks=["STSB", "STSB-en-dev"], eval_data_dir=str(shared_data)))
    assert "checkpoints on test tasks (STSB)" in tuner._eval_warning


def _drift_from_base(tiny_st_dir, model_dir, texts) -> float:
    from m3e import load_model

    a = load_model(str(tiny_st_dir), device="cpu").encode(texts)
    b = load_model(str(model_dir), device="cpu").encode(texts)
    return float(np.mean(1 - (a * b).sum(1)))


@pytest.mark.parametrize("lora", [True, False])
def test_keep_base_holds_embeddings_near_the_starting_model(tiny_st_dir, tmp_path, lora):
    """The reference is the starting model (LoRA: adapter off; otherwise a frozen copy), so a strong keep_base
    weight leaves the tuned embeddings much closer to the base than the same run without it."""
    if lora:
        pytest.importorskip("peft")
    from m3e.data.records import read_source
    from m3e.training import step as steps

    rows = toy_pairs()
    data = write(tmp_path / "toy.jsonl", rows)
    texts = [r["query"] for r in rows] + [r["positive"] for r in rows]
    drifts = {}
    for weight in (0.0, 50.0):
        out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            output=str(tmp_path / f"k{weight}"), epochs=4, batch_size=8, lr=2e-2 if lora else 1e-3, lora=lora,
            keep_base=weight, progress=False)
        drifts[weight] = _drift_from_base(tiny_st_dir, out / "model", texts)
    assert drifts[50.0] < drifts[0.0] / 2, drifts

    # per-source weight wins over the run's: only the source with keep_base gets the reference pass
    seen = []
    real = steps.reference_embeddings
    src = read_source(data, keep_base=0.0)
    tuner = FineTuner.from_pretrained(str(tiny_st_dir), [src], device="cpu")
    try:
        steps.reference_embeddings = lambda *a, **k: seen.append(1) or real(*a, **k)
        tuner.run(output=str(tmp_path / "per-source"), epochs=1, batch_size=8, keep_base=5.0, lora=lora,
                  progress=False)
    finally:
        steps.reference_embeddings = real
    assert not seen


def test_merge_scale_ships_a_fraction_of_the_lora_difference(tiny_st_dir, tmp_path):
    pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    data = write(tmp_path / "toy.jsonl", toy_pairs())
    base = load_file(str(tiny_st_dir / "model.safetensors"))
    runs = {}
    for scale in (1.0, 0.6):
        runs[scale] = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            output=str(tmp_path / f"s{scale}"), epochs=2, batch_size=8, lr=1e-3, lora=True, merge_scale=scale,
            progress=False) / "model"
    full, part = (load_file(str(runs[s] / "model.safetensors")) for s in (1.0, 0.6))
    changed = [k for k in base if not torch.equal(full[k], base[k])]
    assert changed
    for k in base:  # the same training, then base + 0.6 x (trained - base)
        torch.testing.assert_close(part[k], base[k] + 0.6 * (full[k] - base[k]), atol=1e-6, rtol=1e-5)
    a, b = (json.loads((runs[s] / "adapter" / "adapter_config.json").read_text()) for s in (1.0, 0.6))
    assert b["lora_alpha"] == pytest.approx(0.6 * a["lora_alpha"])
    # the shipped adapter on the base gives the scaled merge, in plain sentence-transformers
    st = SentenceTransformer(str(tiny_st_dir), device="cpu")
    st.load_adapter(str(runs[0.6] / "adapter"))
    np.testing.assert_allclose(st.encode(["今天天气不错"], normalize_embeddings=True),
                               SentenceTransformer(str(runs[0.6]), device="cpu").encode(
                                   ["今天天气不错"], normalize_embeddings=True), atol=1e-5)
    assert "LoRA merge scale | 0.6" in (runs[0.6] / "README.md").read_text()
    with pytest.raises(InputError, match="merge_scale 0.5 needs LoRA"):
        FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            output=str(tmp_path / "x"), batch_size=8, merge_scale=0.5, progress=False)


@pytest.mark.parametrize("lora", [True, False])
def test_training_max_length_is_not_the_saved_models(tiny_st_dir, tmp_path, lora):
    """max_length bounds training memory; the exported models (model/, final/) read as far as the base did."""
    if lora:
        pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    data = write(tmp_path / "toy.jsonl", toy_pairs())
    served = SentenceTransformer(str(tiny_st_dir), device="cpu").max_seq_length
    assert served > 8
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "out"), epochs=1, batch_size=8, lr=1e-3, lora=lora, max_length=8, progress=False)
    for folder in ("model", "final"):
        assert SentenceTransformer(str(out / folder), device="cpu").max_seq_length == served
    weights = [f for f in (out / "final").rglob("*.safetensors")]
    assert weights and all((out / "model" / f.relative_to(out / "final")).stat().st_ino == f.stat().st_ino
                           for f in weights)  # model/ is final/ (no eval chose a best): one copy on disk
    assert "| max length | 8 while training |" in (out / "model" / "README.md").read_text(encoding="utf-8")


def test_attention_heavy_cpu_batches_are_split_with_the_same_result(tiny_st_dir, tmp_path):
    """A CPU batch over the attention budget runs as GradCache mini-batches: same weights as the whole batch (dropout
    off, so both see the same network), and the split steps and peak memory are reported."""
    import shutil

    model = tmp_path / "no_dropout"
    shutil.copytree(tiny_st_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    data = write(tmp_path / "toy.jsonl", toy_pairs())
    outs = {}
    for name, budget in (("whole", 0.0), ("split", 1e-9)):
        outs[name] = FineTuner.from_pretrained(str(model), str(data), device="cpu").run(
            output=str(tmp_path / name), epochs=1, batch_size=8, lr=1e-3, progress=False, attention_memory_gb=budget)
    state = {n: json.loads((o / "training_state.json").read_text()) for n, o in outs.items()}
    assert state["whole"]["host_memory"]["split_steps"] == 0
    assert state["split"]["host_memory"]["split_steps"] == state["split"]["steps"] > 0
    assert state["split"]["host_memory"]["peak_resident_gb"] > 0
    a = load_file(str(outs["whole"] / "model" / "model.safetensors"))
    b = load_file(str(outs["split"] / "model" / "model.safetensors"))
    base = load_file(str(model / "model.safetensors"))
    assert any(not torch.allclose(a[k], base[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)


def test_lora_targets_and_layers_limit_what_changes(tiny_st_dir, tmp_path):
    pytest.importorskip("peft")
    data = write(tmp_path / "toy.jsonl", toy_pairs())
    base = load_file(str(tiny_st_dir / "model.safetensors"))
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
        output=str(tmp_path / "qv"), epochs=1, batch_size=8, lr=1e-3, lora=True, lora_targets=["query", "value"],
        lora_layers=[1], progress=False)
    merged = load_file(str(out / "model" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(merged[k], base[k])}
    assert changed and all(".layer.1." in k and (".query." in k or ".value." in k) for k in changed), changed
    settings = json.loads((out / "model" / "adapter" / "adapter_config.json").read_text())
    assert sorted(settings["target_modules"]) == ["query", "value"] and settings["layers_to_transform"] == [1]
    assert "on query/value in layers 1 |" in (out / "model" / "README.md").read_text(encoding="utf-8")
    for bad, message in ((dict(lora_targets=["qkv"]), "no module named qkv"),
                         (dict(lora_layers=[0, 7]), r"lora_layers: \[7\] out of range")):
        with pytest.raises(InputError, match=message):
            FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
                output=str(tmp_path / "bad"), batch_size=8, lora=True, progress=False, **bad)


def _untaught_change(start_dir, model_dir, rows) -> float:
    """1 - correlation of the query-query and positive-positive cosines (pairs no InfoNCE term acts on) with the
    starting model's."""
    from m3e import load_model

    total = []
    for field_ in ("query", "positive"):
        texts = [r[field_] for r in rows]
        a = load_model(str(start_dir), device="cpu").encode(texts)
        b = load_model(str(model_dir), device="cpu").encode(texts)
        upper = np.triu_indices(len(texts), 1)
        total.append(1 - np.corrcoef((a @ a.T)[upper], (b @ b.T)[upper])[0, 1])
    return float(np.mean(total))


@pytest.mark.parametrize("lora", [True, False])
def test_keep_geometry_holds_the_untaught_cosines(tiny_st_dir, tmp_path, lora):
    """keep_geometry ties the cosines the loss does not act on to the starting model's, but not the taught ones:
    their structure changes far less than without it, and the model still learns the pairs. Dropout off: its
    noise alone decorrelates a tiny model's cosines (1 - correlation 0.33 at the start)."""
    if lora:
        pytest.importorskip("peft")
    from m3e import load_model

    rows = toy_pairs()
    data = write(tmp_path / "toy.jsonl", rows)
    change, learned = {}, {}
    for weight in (0.0, 5.0):
        out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            output=str(tmp_path / f"g{weight}"), epochs=4, batch_size=8, lr=2e-2 if lora else 1e-3, lora=lora,
            keep_geometry=weight, dropout=0.0, progress=False)
        change[weight] = _untaught_change(tiny_st_dir, out / "model", rows)
        learned[weight] = ndcg(load_model(str(out / "model"), device="cpu"), rows)
    start = ndcg(load_model(str(tiny_st_dir), device="cpu"), rows)
    assert change[5.0] < 0.6 * change[0.0], change
    assert learned[5.0] > start, (start, learned)
    with pytest.raises(InputError, match="dropout must be in"):
        FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(
            output=str(tmp_path / "bad"), batch_size=8, dropout=1.5, progress=False)


@pytest.mark.parametrize(("field", "value"), [("instruction", "qurey"), ("doc_instruction", "pasage")])
def test_an_unknown_prompt_name_is_refused_before_training(tiny_st_dir, tmp_path, field, value):
    """A typo of a prompt name is an error naming the model's prompts; literal instructions still work."""
    from m3e.data.records import Record, Source

    records = [Record(r["query"], r["positive"]) for r in toy_pairs(16)]
    bad = Source(name="toy", kind="pair", records=records, **{field: value})
    tuner = FineTuner.from_pretrained(str(tiny_st_dir), [bad], device="cpu")
    with pytest.raises(InputError, match=f"source toy: {field}: .*no prompt named '{value}'.*passage, query"):
        tuner.run(output=str(tmp_path / "out"), epochs=1, batch_size=8, progress=False)
    assert not (tmp_path / "out" / "model").exists()
    literal = Source(name="toy", kind="pair", records=records, **{field: "为这个句子生成表示："})
    prefixes = FineTuner.from_pretrained(str(tiny_st_dir), [literal], device="cpu")._prefixes(literal, TrainConfig())
    assert "为这个句子生成表示：" in prefixes


def test_two_data_files_with_one_name_stay_two_sources(tiny_st_dir, tmp_path, capsys):
    from m3e.data.prepared import prepare_sources

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / "pairs.jsonl", toy_pairs(16 if folder == "a" else 12))
    sources = [s for f in ("a", "b") for s in prepare_sources(tmp_path / f / "pairs.jsonl", tmp_path / "cache")]
    tuner = FineTuner.from_pretrained(str(tiny_st_dir), sources, device="cpu")
    assert [(s.name, len(s)) for s in tuner.sources] == [("pairs#1", 16), ("pairs#2", 12)]
    assert "2 sources are named pairs" in capsys.readouterr().out


def test_resume_refuses_another_starting_model(tiny_st_dir, tmp_path):
    """A checkpoint holds only what training changed (here a LoRA adapter): resuming it on other starting weights
    would build a different model without a word."""
    pytest.importorskip("peft")
    import shutil

    from safetensors.torch import save_file

    data = write(tmp_path / "toy.jsonl", toy_pairs())
    opts = dict(output=str(tmp_path / "run"), epochs=1, max_steps=4, batch_size=4, lr=1e-3, lora=True,
                save_every=2, progress=False)
    FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(**opts)
    other = tmp_path / "other"
    shutil.copytree(tiny_st_dir, other)
    weights = load_file(str(other / "model.safetensors"))
    key = sorted(weights)[0]
    weights[key] = weights[key] + 1e-3
    save_file(weights, str(other / "model.safetensors"))
    with pytest.raises(InputError, match="starting model's weights .* changed"):
        FineTuner.from_pretrained(str(other), str(data), device="cpu").run(**opts, resume=True)
    out = FineTuner.from_pretrained(str(tiny_st_dir), str(data), device="cpu").run(**opts, resume=True)
    assert json.loads((out / "training_state.json").read_text())["steps"] == 4


def test_checkpoints_from_before_the_later_keys_still_resume():
    from m3e.training.plan import changes

    old = {"batch_size": 4, "seed": 42, "shuffle": True, "epochs": 1, "sources": []}
    assert changes(old, {**old, "start": "abc"}) == []
    assert changes({**old, "start": "abd"}, {**old, "start": "abc"}) != []
