"""GET /metrics: Prometheus text with request counts, latencies and errors per route and per model (by name and
version), and jobs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.metadata import Document
from mlsvc.service import PredictionOutcome, ServiceFigures
from mlsvc.service.refs import ModelRefs

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The labels of a predict whose reference names no model: one series for every such reference, so that what
# callers send cannot add series.
UNKNOWN = ("unknown", "")
# A predict call, whatever answered it (the route, the predict lane, a guard before either): its ``ref``.
PREDICT_PATH = re.compile(r"^/v1/models/(?P<ref>[^/]+)/predict$")
# Errors whose reference is not resolved again for its labels: a not_found one resolved to nothing just now (an
# unknown item of a known model leaves it resolved); a process shedding load does no more work than the answer.
_NOT_RESOLVED_AGAIN = frozenset({ErrorCode.NOT_FOUND.value, ErrorCode.UNAVAILABLE.value})
# The catalogue's codes: the only values the code label takes besides ``http_STATUS``.
_CODES = frozenset(code.value for code in ErrorCode)


class ModelLabels:
    """The ``model`` (name) and ``version`` labels of a model id or reference. Bounded by the models that exist: a
    reference that resolves to nothing is ``UNKNOWN``. A model's name and version never change, so each id's labels
    are kept once read."""

    def __init__(self, refs: ModelRefs) -> None:
        self.refs = refs
        self._of_id: dict[str, tuple[str, str]] = {}

    def of_id(self, model_id: str, ref: str) -> tuple[str, str]:
        """The labels of the model ``model_id`` that ``ref`` was just resolved to (which saves reading the store)."""
        labels = self._of_id.get(model_id)
        if labels is not None:
            return labels
        model = self.refs.peek(ref)
        if model is None or model["id"] != model_id:
            model = self.refs.metadata.find("model", model_id)
        return self._remember(model) if model is not None else UNKNOWN

    def known(self, ref: str) -> tuple[str, str] | None:
        """The labels of ``ref`` if it was resolved within the last moment (no I/O), else None."""
        model = self.refs.peek(ref)
        return self._remember(model) if model is not None else None

    def of_ref(self, ref: str) -> tuple[str, str]:
        """The labels of ``ref``, resolving it if need be (reads the store)."""
        known = self.known(ref)
        if known is not None:
            return known
        try:
            return self._remember(self.refs.resolve(ref))
        except MlsvcError:
            return UNKNOWN

    def _remember(self, model: Document) -> tuple[str, str]:
        labels = (str(model["name"]), str(model["version"]))
        if len(self._of_id) > 10_000:  # as many as models in use; cleared rather than grown without end
            self._of_id.clear()
        self._of_id[str(model["id"])] = labels
        return labels


class Metrics:
    """The service's instruments, in a registry of their own (so that several apps can live in one process)."""

    def __init__(self, figures: Callable[[], ServiceFigures], labels: ModelLabels) -> None:
        self.labels = labels
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
            "Records scored in real time, by model name, version and scoring path.",
            ["model", "version", "path"],
            registry=self.registry,
        )
        self.predict_latency = Histogram(
            "mlsvc_predict_duration_seconds",
            "Real-time predict latency by model name and version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predict_errors = Counter(
            "mlsvc_predict_errors_total",
            'Refused or failed predict calls by model name, version and error code (model="unknown": the '
            "reference names no model).",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "mlsvc_scoring_fallback_total",
            "Records scored by the plain pipeline because the model could not be compiled, by model name and version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(figures))
        # Each label set's child, looked up once: ``labels()`` checks and locks on every call. Bounded as the label
        # sets are (routes, methods, statuses; models, versions and paths).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def observe_prediction(self, ref: str, outcome: PredictionOutcome, seconds: float) -> None:
        """A predict by ``ref`` that ``outcome`` answered in ``seconds``."""
        key = (outcome.model_id, outcome.path)
        children = self._prediction_children.get(key)
        if children is None:
            name, version = self.labels.of_id(outcome.model_id, ref)
            children = self._prediction_children[key] = (
                self.predictions.labels(name, version, outcome.path),
                self.fallbacks.labels(name, version) if outcome.path == "pipeline" else None,
                self.predict_latency.labels(name, version),
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

    def observe_predict_error(self, labels: tuple[str, str], code: str) -> None:
        self.predict_errors.labels(*labels, code).inc()

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
    """Counts and times every HTTP request by its route template (not its raw path, which holds ids), and counts
    every predict answered with an error, whichever layer refused it (a guard, the body's validation, the service),
    by the model its reference names and the answer's error code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        predict = PREDICT_PATH.match(scope["path"]) if scope["method"] == "POST" else None
        ref = predict["ref"] if predict is not None else ""
        # A predict's error answer, held until it is counted: a client that reads /metrics after its answer finds
        # its error there.
        held: list[Message] = []

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if predict is not None and status >= 400:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                # This API's error answers come in one part; a long stream is counted by its status, not held.
                if message.get("more_body", False) and len(held) < 64:
                    return
                await release()
                return
            await send(message)

        async def release() -> None:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            await self._observe_predict_error(ref, _error_code(body, status))
            for message in held:
                await send(message)
            held.clear()

        try:
            await self.app(scope, receive, recorded)
            if held:  # an answer that ended without its last part
                await release()
        except Exception:
            if predict is not None:  # answered 500 by the app's outermost layer; no reading the store on this path
                labels = self.metrics.labels.known(ref) or UNKNOWN
                self.metrics.observe_predict_error(labels, ErrorCode.INTERNAL.value)
            raise
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)

    async def _observe_predict_error(self, ref: str, code: str) -> None:
        labels = self.metrics.labels.known(ref)
        if labels is None and code not in _NOT_RESOLVED_AGAIN:
            # Not resolved by the service (a malformed body or a refused call never reaches it): resolved here, off
            # the event loop.
            labels = await run_in_threadpool(self.metrics.labels.of_ref, ref)
        self.metrics.observe_predict_error(labels or UNKNOWN, code)


def _error_code(body: bytes, status: int) -> str:
    """The code of an error answer (``{"error": {"code": …}}``); for any other body, one from its status."""
    try:
        code = orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        code = None
    return code if isinstance(code, str) and code in _CODES else f"http_{status}"
