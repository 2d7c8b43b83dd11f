"""The cached (GradCache) step gives the plain step's loss and gradients."""

from __future__ import annotations

import pytest
import torch

from m3e.data.records import Record
from m3e.training import step as steps
from tests.conftest import SAMPLE


def _grads(st, batch, cached, mini_batch=3, keep_base=0.0):
    st.zero_grad(set_to_none=True)

    def embed(texts):
        return st((getattr(st, "preprocess", None) or st.tokenize)(texts))["sentence_embedding"]

    kw = {"temperature": 0.05, "symmetric": True, "gather": False, "dims": None, "cosent_scale": 20.0}
    if keep_base:  # a stand-in reference: the embeddings of the texts shifted, so the drift term has gradients
        ref = steps.reference_embeddings(batch, lambda texts: embed(texts) + 0.1, mini_batch)
        kw.update(keep_base=keep_base, reference=ref)
    if cached:
        loss = steps.cached_step(batch, embed, lambda x: x.backward(), mini_batch, **kw)
    else:
        loss = steps.plain_step(batch, embed, lambda x: x.backward(), **kw)
    return loss, {n: p.grad.clone() for n, p in st.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind,keep_base", [("triplet", 0.0), ("scored", 0.0), ("triplet", 3.0), ("scored", 3.0)])
def test_cached_equals_plain(tiny_model, kind, keep_base):
    st = tiny_model.model
    st.eval()  # no dropout: the two steps see the same network
    t = [s for s in SAMPLE if s.strip()]
    if kind == "triplet":
        records = [Record(t[i], t[i + 1], [t[(i + 5) % len(t)]] if i % 2 else []) for i in range(8)]
    else:
        records = [Record(t[i], t[i + 2], score=float(i % 4)) for i in range(8)]
    batch = steps.layout(records, kind, "query: ", "passage: ")
    loss_plain, g_plain = _grads(st, batch, cached=False, keep_base=keep_base)
    loss_cached, g_cached = _grads(st, batch, cached=True, keep_base=keep_base)
    if keep_base:
        assert loss_plain > _grads(st, batch, cached=False)[0]
    assert loss_cached == pytest.approx(loss_plain, rel=1e-5)
    assert g_plain.keys() == g_cached.keys() and g_plain
    for name in g_plain:
        torch.testing.assert_close(g_cached[name], g_plain[name], rtol=1e-4, atol=1e-6, msg=name)
    st.zero_grad(set_to_none=True)


def test_attention_mini_batch_is_the_largest_split_under_the_budget():
    from m3e.training.step import attention_mini_batch

    heads, layers = 12, 12

    def need(n, length):  # math-path attention held for backward, as documented
        return 16 * heads * layers * n * length ** 2

    lengths = {"anchors": (32, 40), "positives": (32, 302)}
    whole = need(32, 40) + need(32, 302)
    assert attention_mini_batch(lengths, heads, layers, whole) is None  # fits: no split
    for budget in (whole - 1, 4 * 2**30, need(5, 302), need(5, 302) + 1, 1):
        mini = attention_mini_batch(lengths, heads, layers, budget)
        assert mini >= 1
        assert mini == 1 or need(mini, 302) <= budget  # the longest role's chunk fits
        assert need(mini + 1, 302) > budget or mini == 32  # and one more text would not
