"""Admission by tokens: one budget bounds all the work the server holds at once.

A request reserves an estimate from its declared body size before its body is read (3 bytes a token: one
Chinese character is 3 bytes of UTF-8 and about one token), the real count once tokenized, and gives it back when
its response is written. Over the budget the answer is 429 with ``Retry-After`` at once, so memory under a flood
is bounded by the budget, not by the number of clients.
"""

from __future__ import annotations

import math
import threading

from m3e.serving.errors import APIError

BYTES_PER_TOKEN = 3


class TokenBudget:
    def __init__(self, limit: int, metrics=None) -> None:
        self.limit = limit
        self.used = 0
        self.metrics = metrics
        self._lock = threading.Lock()
        self._rate = 0.0  # tokens embedded per second, smoothed: for Retry-After

    def reserve(self, tokens: int, have: int = 0) -> int:
        """Grow a reservation from ``have`` to ``tokens``; 429 if the budget cannot take it, 413 if it never can."""
        if tokens > self.limit:
            raise APIError(413, f"the request needs {tokens} tokens, more than this server's budget of {self.limit} "
                                "(--max-queue-tokens); send fewer or shorter inputs", param="input",
                           code="request_too_large")
        with self._lock:
            if self.used - have + tokens > self.limit and tokens > have:
                busy = self.used
            else:
                self.used += tokens - have
                self._gauge()
                return tokens
        if self.metrics is not None:
            self.metrics.rejected.labels("token_budget").inc()
        raise APIError(429, f"the server is busy ({busy} of {self.limit} tokens in flight); retry shortly",
                       code="queue_full", headers={"Retry-After": str(self.retry_after(busy))})

    def release(self, tokens: int) -> None:
        with self._lock:
            self.used -= tokens
            self._gauge()

    def observe(self, tokens: int, seconds: float) -> None:
        """Feed the throughput estimate behind Retry-After (called by the inference worker)."""
        if seconds > 0 and tokens > 0:
            rate = tokens / seconds
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate

    def retry_after(self, busy: int) -> int:
        if self._rate <= 0:
            return 1
        return max(1, min(60, math.ceil(busy / self._rate)))

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.tokens_in_flight.set(self.used)


def estimate_tokens(content_length: str | None, max_body_bytes: int) -> int:
    """Tokens a body of that declared size may hold; unknown size (chunked): the largest body allowed."""
    size = int(content_length) if content_length and content_length.isdigit() else max_body_bytes
    return max(1, min(size, max_body_bytes) // BYTES_PER_TOKEN)


def pre_read_reservation(content_length: str | None, max_body_bytes: int, limit: int) -> int:
    """What a request reserves before its body is read: its estimate, at most the whole budget (a body that may
    hold more waits for an idle server; its real count decides after tokenizing)."""
    return min(estimate_tokens(content_length, max_body_bytes), limit)
