"""The pure core: task declarations, the TaskInstance aggregate (evolve, decide), retry rules.

Nothing in this package performs I/O; tests/unit/test_core_is_pure.py enforces it. Every name
a definition module needs is importable from here.
"""

from tasksaga.core.authorization import (
    OPERATOR_ROLE,
    Action,
    AuthorizationHandler,
    Principal,
    RoleAuthorization,
    Roles,
    TaskRef,
)
from tasksaga.core.context import SagaContext, StepContext, StepDataMissing
from tasksaga.core.definition import DefinitionError, Diagnostic, TaskDefinition
from tasksaga.core.errors import NonRetryableError, StepCancelled
from tasksaga.core.request_fields import CallbackUrl, UploadedFile, UploadStepData
from tasksaga.core.retry import Backoff, RetryPolicy
from tasksaga.core.steps import AwaitMode, Placement, StepCondition

__all__ = [
    "OPERATOR_ROLE",
    "Action",
    "AuthorizationHandler",
    "AwaitMode",
    "Backoff",
    "CallbackUrl",
    "DefinitionError",
    "Diagnostic",
    "NonRetryableError",
    "Placement",
    "Principal",
    "RetryPolicy",
    "RoleAuthorization",
    "Roles",
    "SagaContext",
    "StepCancelled",
    "StepCondition",
    "StepContext",
    "StepDataMissing",
    "TaskDefinition",
    "TaskRef",
    "UploadStepData",
    "UploadedFile",
]
