"""The pure core: task declarations, the TaskInstance aggregate (evolve, decide), retry rules.

Nothing in this package performs I/O; tests/unit/test_core_is_pure.py enforces it.
"""

from tasksaga.core.authorization import Roles
from tasksaga.core.context import SagaContext, StepContext
from tasksaga.core.definition import (
    CallbackUrl,
    Placement,
    StepCondition,
    TaskDefinition,
    UploadedFile,
    UploadStepData,
)
from tasksaga.core.errors import NonRetryableError, StepCancelled
from tasksaga.core.retry import Backoff, RetryPolicy

__all__ = [
    "Backoff",
    "CallbackUrl",
    "NonRetryableError",
    "Placement",
    "RetryPolicy",
    "Roles",
    "SagaContext",
    "StepCancelled",
    "StepCondition",
    "StepContext",
    "TaskDefinition",
    "UploadStepData",
    "UploadedFile",
]
