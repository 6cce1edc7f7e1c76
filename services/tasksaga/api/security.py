"""Authentication and authorization as FastAPI dependencies: the guards every route declares.

``Caller`` authenticates (bearer JWT or API key) and counts the request against the tenant's
rate limit. ``Access`` asks the registered ``AuthorizationHandler`` whether the caller may take
an action on a task type or on one instance. An instance the caller may not see is answered
exactly like a missing one, so nothing tells a tenant which ids exist elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from tasksaga.api.access_store import RateLimiter
from tasksaga.api.identity import (
    DEVELOPMENT_PRINCIPAL,
    ApiKeyLookup,
    AuthenticationFailed,
    TokenVerifier,
    verify_api_key,
)
from tasksaga.core.authorization import (
    Action,
    AuthorizationHandler,
    Principal,
    Roles,
    TaskRef,
)

log = logging.getLogger(__name__)


class Unauthenticated(HTTPException):
    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        challenge = f'Bearer realm="tasksaga", error="{error}", error_description="{reason}"'
        super().__init__(401, reason, headers={"WWW-Authenticate": challenge})


class RateLimited(HTTPException):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(429, f"too many requests for this tenant; retry in {retry_after_s} s",
                         headers={"Retry-After": str(retry_after_s)})


def not_found(task_id: str) -> HTTPException:
    """The one answer for "missing" and "not yours": identical status and body."""
    return HTTPException(404, f"no task {task_id}")


@dataclass
class Security:
    verifier: TokenVerifier
    api_keys: ApiKeyLookup | None
    rate_limiter: RateLimiter | None
    authorization: AuthorizationHandler
    insecure_dev: bool = False
    clock_s: Callable[[], float] = time.time

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if api_key:
            return self._api_key(api_key)
        if not authorization:
            if self.insecure_dev and not self.verifier.configured:
                return DEVELOPMENT_PRINCIPAL
            raise Unauthenticated("authentication required: send 'Authorization: Bearer "
                                  "<token>' or 'X-API-Key: <key>'", "invalid_request")
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "apikey":
            return self._api_key(credentials)
        if scheme.lower() != "bearer" or not credentials:
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'",
                                  "invalid_request")
        try:
            return self.verifier.verify(credentials)
        except AuthenticationFailed as error:
            raise Unauthenticated(error.reason, error.error) from error

    def _api_key(self, presented: str) -> Principal:
        if self.api_keys is None:
            raise Unauthenticated("API keys are not accepted here")
        try:
            return verify_api_key(presented, self.api_keys)
        except AuthenticationFailed as error:
            raise Unauthenticated(error.reason, error.error) from error

    def count(self, principal: Principal) -> None:
        if self.rate_limiter is None:
            return
        retry_after = self.rate_limiter.hit(principal.tenant, self.clock_s())
        if retry_after is not None:
            raise RateLimited(retry_after)

    def require(self, principal: Principal, action: Action, task_type: str, roles: Roles,
                task: TaskRef | None = None) -> None:
        """403 for a type the caller may not use; 404 for an instance it may not see."""
        if self.authorization.allows(principal, action, task_type, roles, task):
            return
        if task is not None and (task.tenant != principal.tenant or action is Action.READ
                                 or not self.authorization.allows(
                                     principal, Action.READ, task_type, roles, task)):
            raise not_found(task.task_id)
        raise HTTPException(403, f"you may not {action.value} tasks of type {task_type!r}")


def get_security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


# Declared so that the OpenAPI document names both schemes; the headers are read below.
_BEARER = HTTPBearer(auto_error=False, description="a JWT from your identity provider")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="a service account's key (tasksaga-apikey create)")


async def current_caller(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    _api_key: Annotated[str | None, Depends(_API_KEY)],
) -> Principal:
    security = get_security(request)
    principal = await run_in_threadpool(
        security.authenticate, request.headers.get("authorization"),
        request.headers.get("x-api-key"))
    await run_in_threadpool(security.count, principal)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(current_caller)]
SecurityDep = Annotated[Security, Depends(get_security)]
