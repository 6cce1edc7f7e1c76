"""Diagnostics of artifacts (``produces=`` / ``consumes=``, TS190-TS194): a step opens only
what an earlier stage publishes, and one name has one producer per stage."""

from __future__ import annotations

import re
from collections import Counter

from tasksaga.core.artifacts import base_name
from tasksaga.core.definition import Diagnostic, TaskDefinition

#: An artifact name: it is a key in the step's result and in log lines, never a path.
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def artifact_declarations(definition: TaskDefinition) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for step in definition.steps:
        for name in (*step.produces, *step.consumes):
            if base_name(name) != name and ARTIFACT_NAME.match(base_name(name)):
                found.append(Diagnostic(
                    "TS192", f"step {step.name!r} declares artifact name {name!r}: an indexed "
                             f"name is published, not declared; declare "
                             f"{'consumes' if name in step.consumes else 'produces'}="
                             f"[{base_name(name)!r}] and open {name!r} (or each of "
                             f"ctx.artifacts.names({base_name(name)!r}))"))
            elif not ARTIFACT_NAME.match(name):
                found.append(Diagnostic(
                    "TS192", f"step {step.name!r} declares artifact name {name!r}: use 1-128 "
                             "letters, digits, '_', '.' or '-', starting with a letter or digit"))
        for name, count in Counter(step.produces).items():
            if count > 1:
                found.append(Diagnostic(
                    "TS193", f"step {step.name!r} lists artifact {name!r} {count} times in "
                             "produces=; list it once"))
        for name in (n for n in step.consumes if base_name(n) == n):  # indexed: TS192
            earlier = [s for s in definition.steps if s.order < step.order and name in s.produces]
            if not earlier:
                found.append(Diagnostic(
                    "TS190", f"step {step.name!r} consumes artifact {name!r}, which no step "
                             "ordered before it produces; add it to an earlier step's produces= "
                             "or fix the name"))
    for stage in definition.stages():
        producers = Counter(name for s in stage.steps for name in set(s.produces))
        for name, count in producers.items():
            if count > 1:
                names = ", ".join(repr(s.name) for s in stage.steps if name in s.produces)
                found.append(Diagnostic(
                    "TS191", f"steps {names} run in the same stage and all produce artifact "
                             f"{name!r}: a later step could not tell which one it opens; give "
                             "each its own name"))
    return found
