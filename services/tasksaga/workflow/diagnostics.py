"""Checks of a workflow definition (TS180-TS189, docs/diagnostics.md), run when it is
registered and by ``tasksaga-check``: what can be seen in the body's source that would break
replay (a clock, randomness, ids or I/O not recorded in the history) or misuse the API."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import TYPE_CHECKING

from tasksaga.core.definition import Diagnostic, TaskDefinition
from tasksaga.core.steps import StepDef

if TYPE_CHECKING:
    from tasksaga.workflow.definition import WorkflowDefinition

RESERVED_NAMES = frozenset({"sleep", "now", "random", "uuid"})
_CLOCK = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "sleep"),
          ("datetime", "now"), ("datetime", "utcnow"), ("date", "today"),
          ("datetime", "today")}
_IO_MODULES = {"asyncio", "requests", "httpx", "socket", "subprocess", "os", "urllib",
               "psycopg", "boto3"}


def diagnose_workflow(definition: WorkflowDefinition) -> list[Diagnostic]:
    body = definition.body
    found: list[Diagnostic] = []
    where = f"workflow {definition.name!r} ({getattr(body, '__qualname__', body)})"
    if not inspect.iscoroutinefunction(body):
        found.append(Diagnostic("TS180", f"{where} is not an async def: a workflow body is "
                                         "async def body(wf: WorkflowContext, request)"))
    for name in sorted(set(definition.signal_types) & set(s.name for s in _steps(definition))):
        found.append(Diagnostic("TS187", f"{where}: signal {name!r} has the name of a @step; "
                                         "rename one: they share the task's step names"))
    for step_name in sorted(s.name for s in _steps(definition) if s.name in RESERVED_NAMES):
        found.append(Diagnostic("TS187", f"{where}: @step {step_name!r} takes a name the "
                                         f"workflow reserves ({sorted(RESERVED_NAMES)})"))
    tree = _source_tree(body)
    if tree is None:
        return found
    found += _child_names(definition, where)
    for node in ast.walk(tree):
        found += _call_diagnostics(definition, where, node)
        if isinstance(node, ast.ExceptHandler) and (
                node.type is None or (isinstance(node.type, ast.Name)
                                      and node.type.id == "BaseException")):
            found.append(Diagnostic(
                "TS188", f"{where} line {node.lineno}: a bare except (or except "
                         "BaseException) would catch the replay's non-determinism signal; "
                         "catch Exception, StepFailed or WorkflowCancelled", "warning"))
    return found


def _call_diagnostics(definition: WorkflowDefinition, where: str,
                      node: ast.AST) -> list[Diagnostic]:
    if not isinstance(node, ast.Call):
        return []
    func, line = node.func, getattr(node, "lineno", 0)
    if isinstance(func, ast.Name) and func.id in ("open", "input", "print"):
        return [Diagnostic("TS184", f"{where} line {line}: {func.id}() is I/O; do it in a "
                                    "@step, which runs on a worker")]
    if not isinstance(func, ast.Attribute):
        return []
    owner = _dotted(func.value)
    pair = (owner.rsplit(".", 1)[-1], func.attr)
    if pair in _CLOCK:
        return [Diagnostic("TS181", f"{where} line {line}: {owner}.{func.attr}() reads a clock "
                                    "a replay would read again; use wf.now() (recorded) or "
                                    "wf.sleep()")]
    if owner == "random" or owner.startswith("random.") or owner == "secrets":
        return [Diagnostic("TS182", f"{where} line {line}: {owner}.{func.attr}() is random a "
                                    "replay would not repeat; use wf.random() (recorded)")]
    if owner == "uuid" and func.attr.startswith("uuid"):
        return [Diagnostic("TS183", f"{where} line {line}: uuid.{func.attr}() makes an id a "
                                    "replay would not repeat; use wf.uuid() (recorded)")]
    if owner.split(".", 1)[0] in _IO_MODULES:
        return [Diagnostic("TS184", f"{where} line {line}: {owner}.{func.attr}() is I/O (or "
                                    "an event loop) in the body; do it in a @step")]
    if func.attr == "signal" and node.args and isinstance(node.args[0], ast.Constant):
        name = node.args[0].value
        if isinstance(name, str) and name not in definition.signal_types:
            return [Diagnostic("TS185", f"{where} line {line}: wf.signal({name!r}) is not "
                                        f"declared; add it to @workflow(signals={{...}}) "
                                        f"(declared: {sorted(definition.signal_types)})")]
    if func.attr == "step" and node.args and isinstance(node.args[0], ast.Name):
        target = node.args[0].id
        known = {s.name for s in _steps(definition)} | set(_step_variables(definition))
        value = vars(inspect.getmodule(definition.body) or object).get(target)
        if target not in known and value is not None:
            return [Diagnostic("TS186", f"{where} line {line}: wf.step({target}, ...) takes a "
                                        f"@step handler; {target} is not one (decorate it "
                                        "with @tasksaga.workflow.step)")]
    return []


def started_children(definition: WorkflowDefinition) -> list[tuple[int, str]]:
    """(line, task type) of each ``wf.child(...)`` whose type the source names: a string,
    or a name of the body's module bound to a task definition. The registry and
    ``tasksaga-check`` check them against the deployed types (TS150, TS158)."""
    tree = _source_tree(definition.body)
    if tree is None:
        return []
    module = vars(inspect.getmodule(definition.body) or object)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "child" and node.args):
            continue
        target = node.args[0]
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            found.append((node.lineno, target.value))
        elif isinstance(target, ast.Name) and isinstance(module.get(target.id), TaskDefinition):
            found.append((node.lineno, module[target.id].name))
    return found


def _child_names(definition: WorkflowDefinition, where: str) -> list[Diagnostic]:
    taken = {s.name for s in definition.steps} | set(definition.signal_types) | RESERVED_NAMES
    found = []
    for line, task_type in started_children(definition):
        if task_type == definition.name:
            found.append(Diagnostic(
                "TS156", f"{where} line {line}: wf.child({task_type!r}) starts a task of its "
                         "own type: every child would start another, for ever", "warning"))
        elif task_type in taken:
            found.append(Diagnostic(
                "TS189", f"{where} line {line}: wf.child({task_type!r}): a child await is "
                         f"named after its task type, and {task_type!r} is already a @step, a "
                         "signal or a reserved name of this workflow (the task would fail "
                         "there); rename one"))
    return found


def _steps(definition: WorkflowDefinition) -> list[StepDef]:
    from tasksaga.workflow.definition import WorkflowStep

    return [s for s in definition.steps if s.handler is not None
            and isinstance(getattr(s.handler, "__self__", None), WorkflowStep)]


def _step_variables(definition: WorkflowDefinition) -> list[str]:
    from tasksaga.workflow.definition import WorkflowStep

    module = inspect.getmodule(definition.body)
    return [k for k, v in vars(module or object).items() if isinstance(v, WorkflowStep)]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _source_tree(body: object) -> ast.AST | None:
    try:
        source = textwrap.dedent(inspect.getsource(body))  # type: ignore[arg-type]
    except (OSError, TypeError):  # no source (a REPL, a built-in): nothing to read
        return None
    return ast.parse(source)
