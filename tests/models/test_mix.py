"""Weight-space mixing: base + sum of scale x (model - base), checked against a naive per-tensor loop."""

from __future__ import annotations

import shutil

import pytest
import torch

from m3e.errors import InputError
from m3e.models.mix import mix_states, parse_part


def _perturbed_copy(src, dst, seed: int):
    from sentence_transformers import SentenceTransformer

    shutil.copytree(src, dst)
    st = SentenceTransformer(str(dst), device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in st[0].auto_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    st.save(str(dst))
    return {k: v.clone() for k, v in st[0].auto_model.state_dict().items()}


def test_mix_states_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(4, 3, generator=gen), "ids": torch.arange(5)}
    a = {"w": torch.randn(4, 3, generator=gen), "ids": torch.arange(5)}
    b = {"w": torch.randn(4, 3, generator=gen), "ids": torch.arange(5)}
    out = mix_states(base, [(a, 0.7), (b, -0.2)])
    naive = torch.empty(4, 3)
    for i in range(4):
        for j in range(3):
            naive[i, j] = base["w"][i, j] + 0.7 * (a["w"][i, j] - base["w"][i, j]) - 0.2 * (b["w"][i, j]
                                                                                           - base["w"][i, j])
    torch.testing.assert_close(out["w"], naive)
    assert torch.equal(out["ids"], base["ids"])
    avg = mix_states(base, [(a, 0.5), (b, 0.5)])  # checkpoint averaging: the mean of the two
    torch.testing.assert_close(avg["w"], (a["w"] + b["w"]) / 2)


def test_other_architectures_are_refused():
    base = {"w": torch.zeros(2, 2)}
    with pytest.raises(InputError, match="v1 is not the base's architecture: tensors the base lacks: extra"):
        mix_states(base, [({"w": torch.zeros(2, 2), "extra": torch.zeros(1)}, 1.0)], ["v1"])
    with pytest.raises(InputError, match=r"v1: tensor w has shape \(3, 2\), the base's is \(2, 2\)"):
        mix_states(base, [({"w": torch.zeros(3, 2)}, 1.0)], ["v1"])


def test_parse_part():
    assert parse_part("out/v1:0.5") == ("out/v1", 0.5)
    assert parse_part("moka-ai/m3e-base") == ("moka-ai/m3e-base", 1.0)
    assert parse_part("C:/models/x") == ("C:/models/x", 1.0)
    assert parse_part("v2:-0.25") == ("v2", -0.25)


def test_cli_mix_loads_in_plain_sentence_transformers(tiny_st_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from tests.test_cli import run

    base = SentenceTransformer(str(tiny_st_dir), device="cpu")[0].auto_model.state_dict()
    one = _perturbed_copy(tiny_st_dir, tmp_path / "one", 1)
    two = _perturbed_copy(tiny_st_dir, tmp_path / "two", 2)
    out = tmp_path / "mixed"
    r = run("mix", str(tiny_st_dir), "--part", f"{tmp_path / 'one'}:0.6", "-p", f"{tmp_path / 'two'}:0.3",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    mixed = SentenceTransformer(str(out), device="cpu")
    state = mixed[0].auto_model.state_dict()
    for key, b in base.items():
        if b.is_floating_point():
            torch.testing.assert_close(state[key], b + 0.6 * (one[key] - b) + 0.3 * (two[key] - b))
    assert mixed.prompts == SentenceTransformer(str(tiny_st_dir), device="cpu").prompts
    r = run("mix", str(tiny_st_dir), "--part", str(tmp_path / "one"), "-o", str(out))
    assert r.returncode == 2 and "exists and is not empty" in r.stderr
