"""OpenTelemetry tracing: one span per handled message, context carried in Kafka headers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_tracer = trace.get_tracer("tasksaga")


def configure(service_name: str, console_export: bool = False) -> None:
    """Install the SDK tracer provider for this process (exporter only when asked)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if console_export:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


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


@contextmanager
def consume_span(consumer: str, message: Any, envelope: Any) -> Iterator[None]:
    context = extract_context(message.headers())
    with _tracer.start_as_current_span(
        f"{consumer} handle {type(envelope.payload).__name__}",
        context=context,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": message.topic() or "",
            "messaging.message.id": envelope.message_id,
            "tasksaga.task_id": envelope.task_id,
        },
    ):
        yield


@contextmanager
def batch_span(consumer: str, messages: list[Any]) -> Iterator[None]:
    """One span for a batch, linked to the span of every message it handles."""
    links = []
    for message in messages:
        context = trace.get_current_span(extract_context(message.headers())).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context))
    with _tracer.start_as_current_span(
        f"{consumer} handle batch", kind=trace.SpanKind.CONSUMER, links=links,
        attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(messages)},
    ):
        yield


@contextmanager
def span(name: str, **attributes: str) -> Iterator[None]:
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
