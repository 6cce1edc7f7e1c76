"""The CLI's exit codes: scripts branch on them (docs/cli.md, "Exit codes").

``watch`` (and ``submit --watch``, ``retry --watch``) ends with the task's outcome: 0 when it
completed, one code per other terminal status.
"""

from __future__ import annotations

OK = 0
API_ERROR = 1  # the API refused the request (4xx/5xx); the message says why
REBUILD_INCOMPLETE = 1  # replay rebuild: a projecting process failed; run the rebuild again
USAGE = 2  # bad options or arguments, an unusable profile (click's own usage errors are 2 too)
UNREACHABLE = 3  # the API could not be reached at all
FAILED = 10  # the task ended Failed (compensated)
CANCELLED = 11  # the task ended Cancelled
COMPENSATION_FAILED = 12  # a compensation failed for good: an operator must act (retry)
NEEDS_ATTENTION = 13  # a step failed after the pivot: an operator must act (retry --forward)
WATCH_TIMEOUT = 14  # watch --timeout passed before the task ended
STREAM_LOST = 15  # the event stream could not be reopened (watch --max-reconnects)

#: The exit code of each terminal status.
BY_STATUS = {
    "Completed": OK,
    "Failed": FAILED,
    "Cancelled": CANCELLED,
    "CompensationFailed": COMPENSATION_FAILED,
    "NeedsAttention": NEEDS_ATTENTION,
}
