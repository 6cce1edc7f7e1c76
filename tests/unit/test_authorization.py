"""The default authorization rule and the roles shortcut of the DSL."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tasksaga.core.authorization import (
    OPERATOR_ROLE,
    Action,
    Principal,
    RoleAuthorization,
    Roles,
    TaskRef,
)
from tasksaga.core.definition import TaskDefinition
from tasksaga.core.diagnostics import diagnose

RULE = RoleAuthorization()
ALICE = Principal("alice", "acme", frozenset({"uploader"}))
BOB = Principal("bob", "acme")
MALLORY = Principal("mallory", "evil", frozenset({"uploader", OPERATOR_ROLE}))
ACME_TASK = TaskRef("t1", "Zip", "acme", "alice")


def test_default_roles_let_every_caller_of_the_tenant_submit_read_and_cancel() -> None:
    for action in (Action.SUBMIT, Action.READ, Action.CANCEL):
        assert RULE.allows(BOB, action, "Zip", Roles(), None)
        assert RULE.allows(BOB, action, "Zip", Roles(), ACME_TASK)


def test_operator_actions_need_the_operator_role_by_default() -> None:
    assert not RULE.allows(BOB, Action.OPERATE, "Zip", Roles(), ACME_TASK)
    operator = Principal("ops", "acme", frozenset({OPERATOR_ROLE}))
    assert RULE.allows(operator, Action.OPERATE, "Zip", Roles(), ACME_TASK)


def test_an_action_with_roles_needs_one_of_them() -> None:
    roles = Roles(submit={"uploader", "admin"}, read="auditor")
    assert RULE.allows(ALICE, Action.SUBMIT, "Zip", roles, None)
    assert not RULE.allows(BOB, Action.SUBMIT, "Zip", roles, None)
    assert not RULE.allows(ALICE, Action.READ, "Zip", roles, ACME_TASK)


@pytest.mark.parametrize("action", list(Action))
def test_no_role_reaches_another_tenants_instance(action: Action) -> None:
    assert not RULE.allows(MALLORY, action, "Zip", Roles(), ACME_TASK)


class Request(BaseModel):
    name: str


def test_roles_given_for_an_unknown_action_are_diagnosed() -> None:
    task = TaskDefinition("Roles", queue="q", request=Request,
                          roles={"sumbit": ["uploader"], "read": ["auditor"]})

    @task.step("Only", order=1)
    def only(ctx: object) -> None: ...

    codes = {(d.code, d.message) for d in diagnose(task)}
    assert any(code == "TS118" and "'sumbit'" in message for code, message in codes)
    assert task.roles.read == frozenset({"auditor"})
    assert task.roles.submit is None


def test_roles_as_a_mapping_equal_the_same_roles_declared_directly() -> None:
    assert Roles.from_mapping({"submit": ["a"], "operate": ["b"]}) == Roles(submit=["a"],
                                                                            operate=["b"])


def test_request_fields_declared_as_callback_urls_are_found_for_vetting() -> None:
    from tasksaga.core.definition import outbound_urls
    from tasksaga_examples.video_pipeline import VideoRequest

    values = {"title": "t", "callback_url": "http://10.0.0.1/"}
    assert outbound_urls(VideoRequest, values) == [("callback_url", "http://10.0.0.1/")]
    assert outbound_urls(VideoRequest, {"title": "t"}) == []
