"""Errors a step handler raises to steer retries. Any other exception is retried per policy."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Retrying cannot help (bad input, a permanent refusal): fail the step now."""


class StepCancelled(Exception):
    """The handler stopped because its cancellation signal fired."""
