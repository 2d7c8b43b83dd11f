"""Prometheus metrics, one registry per app (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("m3e_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.queue_depth = Gauge("m3e_queue_depth", "Requests waiting for the inference worker", ["model"],
                                 registry=r)
        self.tokens_in_flight = Gauge("m3e_tokens_in_flight", "Tokens admitted and not yet answered (all models)",
                                      registry=r)
        self.rejected = Counter("m3e_rejected_requests", "Requests refused with 429, by reason", ["reason"],
                                registry=r)
        self.batch_inputs = Histogram("m3e_batch_inputs", "Texts per model batch", ["model"], registry=r,
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048))
        self.tokens = Counter("m3e_tokens", "Tokens embedded", ["model"], registry=r)
        self.truncated = Counter("m3e_truncated_inputs", "Inputs cut at the model's max length", ["model"],
                                 registry=r)
        self.dropped = Counter("m3e_dropped_requests", "Queued requests dropped because the client left",
                               ["model"], registry=r)
        self.batch_errors = Counter("m3e_batch_errors", "Model batches that failed (their requests got 500)",
                                    ["model"], registry=r)
        self.worker_alive = Gauge("m3e_worker_alive", "1 while the model's inference worker runs", ["model"],
                                  registry=r)
        self.worker_restarts = Counter("m3e_worker_restarts", "Inference workers restarted after dying", ["model"],
                                       registry=r)
        self.latency = Histogram("m3e_request_latency_seconds", "Embedding request latency", ["model"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
