"""Version 2 of the e2e versioned task: its first step is renamed (Prepare -> Reserve), so a
version 1 task decided by version 2 would not find the step it completed."""

from __future__ import annotations

from tests.e2e.version_tasks_v1 import versioned

versioned_v2 = versioned(2, "Reserve")
