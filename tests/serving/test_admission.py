"""The token budget on its own: reservations grow and shrink, the budget refuses with 429 (Retry-After from the
measured throughput) or, for a request larger than the whole budget, 413."""

from __future__ import annotations

import pytest

from m3e.serving.admission import TokenBudget, estimate_tokens, pre_read_reservation
from m3e.serving.errors import APIError


def test_reserve_resize_release():
    budget = TokenBudget(1000)
    a = budget.reserve(600)
    assert budget.used == 600
    with pytest.raises(APIError) as busy:
        budget.reserve(500)
    assert busy.value.status == 429 and busy.value.headers["Retry-After"] == "1"  # no throughput measured yet
    assert budget.reserve(300, have=a) == 300 and budget.used == 300  # shrinking always fits
    b = budget.reserve(700)
    assert budget.used == 1000
    with pytest.raises(APIError):
        budget.reserve(301, have=300)  # growing past the limit
    budget.release(b)
    budget.release(300)
    assert budget.used == 0
    with pytest.raises(APIError) as huge:
        budget.reserve(1001)
    assert huge.value.status == 413 and huge.value.code == "request_too_large"


def test_retry_after_follows_the_measured_throughput():
    budget = TokenBudget(100_000)
    budget.observe(5000, 1.0)  # 5,000 tokens/s
    budget.reserve(90_000)
    with pytest.raises(APIError) as busy:
        budget.reserve(20_000)
    assert busy.value.headers["Retry-After"] == "18"  # 90,000 tokens at 5,000/s
    budget.observe(1, 1e-9)  # an absurd sample moves the smoothed rate, never below a second or above a minute
    assert 1 <= budget.retry_after(90_000) <= 60


def test_estimates_before_the_body_is_read():
    assert estimate_tokens("3000", 16_000_000) == 1000  # 3 bytes a token
    assert estimate_tokens(None, 3_000) == 1000  # chunked: the largest body allowed
    assert estimate_tokens("abc", 3_000) == 1000
    assert pre_read_reservation("30000000", 64_000_000, 1_048_576) == 1_048_576  # at most the whole budget
