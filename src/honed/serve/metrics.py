"""Prometheus metrics of one server: requests, errors, latency, time to first token, tokens."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    """The server's counters and histograms, in a registry of its own."""

    def __init__(self, engine_state: callable) -> None:  # type: ignore[valid-type]
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "honed_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "honed_request_errors",
            "Requests answered with an error, by route and error type.",
            ["route", "type"],
            registry=r,
        )
        self.latency = Histogram(
            "honed_request_latency_seconds",
            "Time from request to last byte of a generation.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "honed_time_to_first_token_seconds",
            "Time from request to the first new token.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("honed_prompt_tokens", "Prompt tokens read.", registry=r)
        self.completion_tokens = Counter("honed_generated_tokens", "Tokens generated.", registry=r)
        running = Gauge("honed_requests_running", "Generations running now.", registry=r)
        waiting = Gauge("honed_requests_waiting", "Requests waiting for a model.", registry=r)
        running.set_function(lambda: engine_state()[0])
        waiting.set_function(lambda: engine_state()[1])

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
