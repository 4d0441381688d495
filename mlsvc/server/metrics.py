"""GET /metrics: Prometheus text with request counts, latencies and errors per route and per model, and jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsvc.service import PredictionOutcome, ServiceFigures

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's instruments, in a registry of their own (so that several apps can live in one process)."""

    def __init__(self, figures: Callable[[], ServiceFigures]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlsvc_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlsvc_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlsvc_predictions_total",
            "Records scored in real time, by model and path.",
            ["model", "version", "path"],
            registry=self.registry,
        )
        self.predict_latency = Histogram(
            "mlsvc_predict_duration_seconds",
            "Real-time predict latency by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predict_errors = Counter(
            "mlsvc_predict_errors_total",
            "Refused or failed predict calls by model reference and error code.",
            ["model", "code"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "mlsvc_scoring_fallback_total",
            "Records scored by the plain pipeline because the model could not be compiled.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(figures))
        # Each label set's child, looked up once: ``labels()`` checks and locks on every call. Bounded as the label
        # sets are (routes, methods, statuses; models, versions and paths).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}

    def observe_prediction(self, outcome: PredictionOutcome, seconds: float) -> None:
        key = (outcome.model_id, outcome.version, outcome.path)
        children = self._prediction_children.get(key)
        if children is None:
            children = self._prediction_children[key] = (
                self.predictions.labels(outcome.model_id, str(outcome.version), outcome.path),
                self.fallbacks.labels(outcome.model_id) if outcome.path == "pipeline" else None,
                self.predict_latency.labels(outcome.model_id),
            )
        counted, fallbacks, latency = children
        counted.inc(outcome.count)
        if fallbacks is not None:
            fallbacks.inc(outcome.count)
        latency.observe(seconds)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StoreCollector(Collector):
    """Figures of the whole deployment, read through the service at scrape time so every process's work counts."""

    def __init__(self, figures: Callable[[], ServiceFigures]) -> None:
        self.figures = figures

    def collect(self) -> Iterable[GaugeMetricFamily]:
        figures = self.figures()
        jobs = GaugeMetricFamily("mlsvc_jobs", "Jobs in the queue by state.", labels=["state"])
        for state, count in figures.jobs_by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        rows = GaugeMetricFamily("mlsvc_batch_rows_scored", "Rows scored by batch predictions, all time.")
        rows.add_metric([], figures.batch_rows_scored)
        yield rows
        refused = GaugeMetricFamily(
            "mlsvc_artifact_integrity_failures",
            "Model loads refused, by any process, because the files did not match their registered digests; all time.",
        )
        refused.add_metric([], figures.integrity_failures)
        yield refused


class RequestMetrics:
    """Counts and times every HTTP request by its route template (not its raw path, which holds ids)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)
