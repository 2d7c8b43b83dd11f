"""Packed differences: rebuilt weights equal the trained ones where the change has at most the packed rank."""

from __future__ import annotations

import pytest
import torch

from m3e.models.weight_diff import apply_diff, pack_diff, read_diff, write_diff


def test_low_rank_changes_rebuild_exactly_and_unchanged_tensors_are_left_out(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(40, 30, generator=g), "b": torch.randn(30, generator=g),
            "frozen": torch.randn(50, 8, generator=g)}
    change = torch.randn(40, 2, generator=g) @ torch.randn(2, 30, generator=g) * 0.01  # rank 2
    trained = {"w": base["w"] + change, "b": base["b"] + 0.1, "frozen": base["frozen"].clone(),
               "head": torch.randn(1, 30, generator=g)}
    packed, errors = pack_diff(base, trained, rank=4)
    assert not any(k.startswith("frozen") for k in packed)
    assert set(packed) == {"w::left", "w::right", "b::full", "head::full"}
    assert errors["w"] < 1e-3  # fp16 factors of an exact rank-2 change
    write_diff(tmp_path, packed, {"rank": 4})
    loaded, info = read_diff(tmp_path)
    rebuilt = apply_diff(base, loaded)
    assert info == {"rank": 4}
    torch.testing.assert_close(rebuilt["w"], trained["w"], atol=1e-4, rtol=0)
    for name in ("b", "frozen", "head"):
        torch.testing.assert_close(rebuilt[name], trained[name])


def test_a_higher_rank_change_keeps_its_largest_directions():
    g = torch.Generator().manual_seed(1)
    base = {"w": torch.zeros(60, 60)}
    delta = torch.randn(60, 60, generator=g)
    packed, errors = pack_diff(base, {"w": delta}, rank=8)
    u, s, vh = torch.linalg.svd(delta)
    best = (u[:, :8] * s[:8]) @ vh[:8]  # Eckart-Young: the best rank-8 approximation
    torch.testing.assert_close(apply_diff(base, packed)["w"], best, atol=5e-3, rtol=0)
    assert errors["w"] == pytest.approx(float(torch.linalg.norm(delta - best) / torch.linalg.norm(delta)), abs=1e-3)
