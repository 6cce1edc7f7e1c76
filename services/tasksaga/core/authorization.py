"""Who may do what to which task: principals, the roles a definition asks for, and the rule.

The seed's ``[RequiresRole]`` shortcut is ``TaskDefinition(..., roles=Roles(...))``: per action,
the roles any one of which lets a caller act. The deployment may register its own
``AuthorizationHandler``; the default, ``RoleAuthorization``, enforces the definition's roles
inside the caller's tenant. Pure: no I/O, so every rule is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Action(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    CANCEL = "cancel"
    OPERATE = "operate"  # operator actions: retry a failed compensation, repair
    SIGNAL = "signal"  # send a signal a wait_for step waits for (a human step: an approval)


#: The role every deployment understands as "may operate any task type of its tenant".
OPERATOR_ROLE = "tasksaga:operator"
#: The deployment's own operators: besides their tenant's, the dead letters of every tenant
#: and those no tenant can be found for (garbage written to a topic names none).
PLATFORM_OPERATOR_ROLE = "tasksaga:platform-operator"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a person (JWT) or a service account (API key)."""

    subject: str
    tenant: str
    roles: frozenset[str] = frozenset()
    kind: str = "user"  # "user" (a bearer token) or "service" (an API key)


@dataclass(frozen=True)
class Roles:
    """Per action, the roles that allow it (any one suffices); ``None`` lets every
    authenticated caller of the tenant act. Operator actions need the operator role unless
    a definition names other roles."""

    submit: frozenset[str] | None = None
    read: frozenset[str] | None = None
    cancel: frozenset[str] | None = None
    operate: frozenset[str] | None = frozenset({OPERATOR_ROLE})
    signal: frozenset[str] | None = None
    # Actions named in a mapping that are not actions: reported by the diagnostics (TS120).
    unknown_actions: tuple[str, ...] = field(default=(), compare=False)

    def __init__(
        self,
        submit: Iterable[str] | None = None,
        read: Iterable[str] | None = None,
        cancel: Iterable[str] | None = None,
        operate: Iterable[str] | None = (OPERATOR_ROLE,),
        unknown_actions: tuple[str, ...] = (),
        signal: Iterable[str] | None = None,
    ) -> None:
        object.__setattr__(self, "submit", _roles(submit))
        object.__setattr__(self, "read", _roles(read))
        object.__setattr__(self, "cancel", _roles(cancel))
        object.__setattr__(self, "operate", _roles(operate))
        object.__setattr__(self, "unknown_actions", unknown_actions)
        object.__setattr__(self, "signal", _roles(signal))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Iterable[str] | None]) -> Roles:
        """``{"submit": ["uploader"], ...}``; names that are not actions are kept for the
        diagnostics instead of being silently ignored."""
        known = {a.value for a in Action}
        unknown = tuple(sorted(k for k in mapping if k not in known))
        values = {k: v for k, v in mapping.items() if k in known}
        return cls(**values, unknown_actions=unknown)

    def required_for(self, action: Action) -> frozenset[str] | None:
        required: frozenset[str] | None = getattr(self, action.value)
        return required


def _roles(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return frozenset({values})
    return frozenset(values)


@dataclass(frozen=True)
class TaskRef:
    """What the rule needs to know of an existing task instance."""

    task_id: str
    task_type: str
    tenant: str
    submitted_by: str | None = None


class AuthorizationHandler(Protocol):
    """Decides whether ``principal`` may take ``action`` on a task type or one instance."""

    def allows(
        self, principal: Principal, action: Action, task_type: str, roles: Roles,
        task: TaskRef | None,
    ) -> bool: ...


class RoleAuthorization:
    """The default rule: an instance is visible only inside its tenant, and the action needs
    one of the roles the definition names for it (the operator role always may operate)."""

    def allows(
        self, principal: Principal, action: Action, task_type: str, roles: Roles,
        task: TaskRef | None,
    ) -> bool:
        if task is not None and task.tenant != principal.tenant:
            return False
        if action is Action.OPERATE and OPERATOR_ROLE in principal.roles:
            return True
        required = roles.required_for(action)
        return required is None or bool(required & principal.roles)
