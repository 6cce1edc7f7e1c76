"""OpenTelemetry: traces carried in Kafka headers, metrics read by Prometheus.

One instrumentation API (OpenTelemetry) serves traces and metrics. Metrics leave the process
through the OpenTelemetry Prometheus reader, which registers with prometheus-client's default
registry; ``ops_server`` serves that registry at ``/metrics``. Spans leave through an OTLP
exporter configured by the standard ``OTEL_*`` variables (``OTEL_TRACES_EXPORTER=otlp``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``).

A task is one trace: each message carries its span's context in its headers and the span that
handles it continues that context. A batch gets a span of its own linked to its messages, and
each message of the batch still gets a span continuing the message's trace (``message_span``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler

_tracer = trace.get_tracer("tasksaga")
# The contexts of the messages of the batch being handled, by message id (see message_span).
_batch_contexts: ContextVar[Mapping[str, Any] | None] = ContextVar("batch_contexts",
                                                                    default=None)


def exporters_from_env(environ: Mapping[str, str]) -> list[str]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names ("none" and empty: none)."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    unknown = [n for n in names if n and n not in {"otlp", "console", "none"}]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER names unknown exporters {unknown}: "
                         "use otlp, console or none")
    return [n for n in names if n in {"otlp", "console"}]


def configure(service_name: str, console_export: bool = False,
              environ: Mapping[str, str] | None = None) -> None:
    """Install the tracer and meter providers of this process.

    ``OTEL_SERVICE_NAME`` (standard) overrides ``service_name``; the OTLP exporter reads its
    endpoint, headers and timeout from the standard variables itself.
    """
    env = os.environ if environ is None else environ
    resource = Resource.create({"service.name": service_name})
    exporters = exporters_from_env(env)
    provider = TracerProvider(resource=resource, sampler=default_sampler(
        exporting=console_export or bool(exporters), environ=env))
    if console_export or "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, views=metric_views(),
                                             metric_readers=[_prometheus_reader()]))


def default_sampler(exporting: bool, environ: Mapping[str, str]) -> Sampler | None:
    """Which spans this process records, unless ``OTEL_TRACES_SAMPLER`` says (None: the SDK
    reads it).

    A recorded span that no exporter takes is work for nothing (~0.2 ms a step in the
    orchestrator alone). Without an exporter, a trace this process starts is not sampled:
    its spans still get ids, so trace ids reach the events and the next services, but
    nothing is recorded. A parent's decision is followed either way, so a trace sampled by
    an exporting process is still recorded here, for the exporting processes after it."""
    if environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(ALWAYS_ON if exporting else ALWAYS_OFF)


# The HTTP server metrics keep only these attributes: the instrumentation also records the
# Host header and the server name, which any client chooses (one new series per value).
HTTP_METRIC_ATTRIBUTES = frozenset({"http.method", "http.status_code", "http.target",
                                    "http.route", "http.request.method",
                                    "http.response.status_code"})


def metric_views() -> list[View]:
    return [View(instrument_name="http.server.*", attribute_keys=set(HTTP_METRIC_ATTRIBUTES))]


def _prometheus_reader() -> Any:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    # target_info carries the resource (service name) once; no per-series resource labels.
    return PrometheusMetricReader()


def inject_headers() -> list[tuple[str, bytes]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def extract_context(headers: list[tuple[str, bytes]] | None) -> Any:
    carrier = {k: v.decode("utf-8", "replace") for k, v in headers or [] if v is not None}
    return propagate.extract(carrier)


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _message_attributes(message: Any, envelope: Any) -> dict[str, Any]:
    return {"messaging.system": "kafka",
            "messaging.destination.name": message.topic() or "",
            "messaging.message.id": envelope.message_id,
            "tasksaga.task_id": envelope.task_id}


@contextmanager
def consume_span(consumer: str, message: Any, envelope: Any) -> Iterator[None]:
    context = extract_context(message.headers())
    with _tracer.start_as_current_span(
        f"{consumer} handle {type(envelope.payload).__name__}",
        context=context,
        kind=trace.SpanKind.CONSUMER,
        attributes=_message_attributes(message, envelope),
    ):
        yield


@contextmanager
def batch_span(consumer: str, messages: list[Any],
               envelopes: list[Any] | None = None) -> Iterator[None]:
    """One span for a batch, linked to the span of every message it handles.

    With ``envelopes`` (one per message), ``message_span`` inside the batch continues each
    message's own trace.
    """
    links = []
    contexts: dict[str, tuple[Any, dict[str, Any]]] = {}
    for index, message in enumerate(messages):
        context = extract_context(message.headers())
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
        if envelopes is not None:
            envelope = envelopes[index]
            contexts[envelope.message_id] = (context, _message_attributes(message, envelope))
    with _tracer.start_as_current_span(
        f"{consumer} handle batch", kind=trace.SpanKind.CONSUMER, links=links,
        attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(messages),
                    "tasksaga.consumer": consumer},
    ):
        token = _batch_contexts.set(contexts)
        try:
            yield
        finally:
            _batch_contexts.reset(token)


@contextmanager
def message_span(envelope: Any) -> Iterator[None]:
    """Inside a batch: a span for one of its messages, continuing that message's trace and
    linked to the batch span. Outside a batch (``consume_span`` already continues the
    message's trace): nothing."""
    found = (_batch_contexts.get() or {}).get(envelope.message_id)
    if found is None:
        yield
        return
    context, attributes = found
    batch = trace.get_current_span().get_span_context()
    with _tracer.start_as_current_span(
        f"handle {type(envelope.payload).__name__}", context=context,
        kind=trace.SpanKind.CONSUMER, attributes=attributes,
        links=[trace.Link(batch)] if batch.is_valid else [],
    ):
        yield


@contextmanager
def span(name: str, **attributes: str) -> Iterator[None]:
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
