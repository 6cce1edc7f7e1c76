"""Tables of the bench's extra shapes (``results["extra"]``, from extra_phase.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.procstat import MACHINE, OTHERS

PROCESSES = ("api", "orchestrator", "worker", "notifier", "kafka", "postgres", "minio",
             "generator")


def _table(header: list[str], rows: list[list[str]]) -> str:
    from bench.report import table

    return table(header, rows)


def _num(value: Any, digits: int = 1) -> str:
    from bench.report import _num as num

    return num(value, digits)


def _check(found: Mapping[str, Any]) -> str:
    count = found.get("check_problem_count")
    if count is None:
        return "not run"
    if not count:
        return f"passed ({found.get('tasks_checked', 0)} tasks)"
    return f"FAILED ({count}): {(found.get('check_problems') or ['?'])[0]}"


def _per_process(values: Mapping[str, float], digits: int = 0) -> str:
    """``name value`` of each process, largest first (the machine's totals left out)."""
    shown = [(n, v) for n, v in values.items() if n not in (MACHINE, OTHERS) and v > 0]
    return ", ".join(f"{n} {v:,.{digits}f}" for n, v in sorted(shown, key=lambda kv: -kv[1]))


def _members(group: Mapping[str, Any]) -> str:
    members = group.get("members") or {}
    cells = [f"{client}: " + "; ".join(f"{t.rsplit('.', 1)[-1]} {ps}" for t, ps in topics.items())
             for client, topics in members.items()]
    return " / ".join(cells) + ("" if group.get("settled") else " (not settled)")


def scale_table(scale: Mapping[str, Any]) -> str:
    rows = []
    for label in ("1+1", "2+2"):
        found = scale.get(label) or {}
        groups = found.get("groups") or {}
        rows.append([label, _num(found.get("max_rate")), _num(found.get("transitions_per_s")),
                     _members(groups.get("orchestrator") or {}),
                     _members(groups.get("worker") or {}),
                     _per_process(found.get("us_per_step") or {}),
                     _num((found.get("cpu_cores") or {}).get(OTHERS), 2), _check(found)])
    return _table(["orchestrators + workers", "max tasks/s", "step transitions/s",
                   "orchestrator partitions (member: topic [partitions])",
                   "worker partitions", "CPU µs per step transition",
                   "other processes' cores (not the run's)", "check"], rows) + (
        f"\n\n2+2 / 1+1 (step transitions/s at the maximum): {scale.get('ratio')}")


def payload_table(payload: Mapping[str, Any]) -> str:
    rows = []
    for key, label in (("payload-inline", "inline (in the step result)"),
                       ("payload-artifact", "artifact (object store, by reference)")):
        found = payload.get(key) or {}
        e2e = found.get("e2e_ms") or {}
        rows.append([label, _num(found.get("offered")), _num(found.get("achieved")),
                     _num(found.get("transitions_per_s")), _num(e2e.get("p50")),
                     _num(e2e.get("p99")), _per_process(found.get("us_per_step") or {}),
                     _check(found)])
    return _table(["100 KB of step data", "offered tasks/s", "achieved tasks/s",
                   "steps/s", "e2e p50 ms", "e2e p99 ms", "CPU µs per step transition",
                   "check"], rows)


def fan_out_table(fan: Mapping[str, Any]) -> str:
    return _table(["items", "submit → completed s", "step transitions/s",
                   "CPU µs per step transition", "every item once"],
                  [[str(fan.get("items")), _num(fan.get("seconds"), 2),
                    _num(fan.get("transitions_per_s")),
                    _per_process(fan.get("us_per_step") or {}), _check(fan)]])


def waiting_table(waiting: Mapping[str, Any]) -> str:
    before = waiting.get("rss_kib_before") or {}
    during = waiting.get("rss_kib_waiting") or {}
    rows = [[name, _num(before.get(name, 0) / 1024), _num(during.get(name, 0) / 1024),
             f"{(during.get(name, 0) - before.get(name, 0)) / 1024:+,.1f}"]
            for name in sorted(during, key=lambda n: -during[n])]
    late = waiting.get("lateness_ms") or {}
    summary = (f"{waiting.get('tasks')} tasks sent at {_num(waiting.get('rate'), 0)}/s, due to "
               f"wake at {_num(waiting.get('wake_rate'), 0)}/s (they fired at "
               f"{_num(waiting.get('wakes_per_s'))}/s), sleeping "
               f"{_num(waiting.get('first_sleep_s'))} to {_num(waiting.get('last_sleep_s'))} "
               f"s; at most "
               f"{waiting.get('peak_waiting')} asleep at once ({waiting.get('peak_at_s')} s "
               f"after the first send). Timer lateness (wake recorded minus due): p50 "
               f"{_num(late.get('p50'))} ms, p99 {_num(late.get('p99'))} ms, max "
               f"{_num(late.get('max'))} ms over {late.get('count')} timers; "
               f"{waiting.get('reached_after_due')} tasks reached the sleep after it was due. "
               f"Check: {_check(waiting)}.")
    return _table(["process", "RSS before MiB", "RSS with all asleep MiB", "difference MiB"],
                  rows) + "\n\n" + summary + (
        "\n\n(postgres: the RSS of all its processes summed; shared buffers count in each.)")


def cost_table(cost: Mapping[str, Any]) -> str:
    cores = cost.get("cpu_cores") or {}
    per_step = cost.get("us_per_step") or {}
    names = [n for n in PROCESSES if n in cores] + sorted(
        n for n in cores if n not in PROCESSES and n not in (MACHINE, OTHERS)) + [
        n for n in (OTHERS, MACHINE) if n in cores]
    rows = [[n, _num(cores.get(n), 3), _num(per_step.get(n), 0)] for n in names]
    ours = sum(v for n, v in per_step.items() if n not in (MACHINE, OTHERS))
    rows.append(["all of the run's processes", _num(sum(
        v for n, v in cores.items() if n not in (MACHINE, OTHERS)), 3), _num(ours, 0)])
    e2e = cost.get("e2e_ms") or {}
    return _table(["process", "CPU cores", "CPU µs per step transition"], rows) + (
        f"\n\nlinear3 at {_num(cost.get('offered'))} tasks/s offered, "
        f"{_num(cost.get('achieved'))} achieved, {_num(cost.get('transitions_per_s'))} step "
        f"transitions/s; e2e p50 {_num(e2e.get('p50'))} ms, p99 {_num(e2e.get('p99'))} ms. "
        f"Check: {_check(cost)}.")


def hops_table(hops: Mapping[str, Any]) -> str:
    from bench.extra_model import HOPS

    found = hops.get("hops_ms") or {}
    rows = [[label, _num((found.get(key) or {}).get("p50"), 2),
             _num((found.get(key) or {}).get("p90"), 2),
             _num((found.get(key) or {}).get("p99"), 2)] for key, label in HOPS]
    cores = hops.get("cpu_cores") or {}
    return _table(["hop", "p50 ms", "p90 ms", "p99 ms"], rows) + (
        f"\n\nlinear3 at {_num(hops.get('offered'))} tasks/s offered (half of its maximum), "
        f"{_num(hops.get('achieved'))} achieved, {hops.get('tasks')} tasks measured; the "
        f"machine {_num(cores.get(MACHINE), 2)} cores busy ({_per_process(cores, 2)}). "
        "Each hop's percentiles are its own (they do not add up to the end-to-end's). "
        f"Check: {_check(hops)}.")


SECTIONS = (
    ("scale", "Scale-out by consumer groups (linear3)", scale_table),
    ("payload", "100 KB payloads: by object-store reference against inline", payload_table),
    ("fanout", "One task, a dynamic fan-out (for_each)", fan_out_table),
    ("waiting", "Tasks waiting on a durable sleep", waiting_table),
    ("cost", "CPU cost model (linear3 at a fixed rate)", cost_table),
    ("hops", "Where the end-to-end time goes (linear3 at half load)", hops_table),
)


def render_extra(extra: Mapping[str, Any]) -> str:
    parts = []
    for key, title, render in SECTIONS:
        found = extra.get(key)
        if found:
            took = f" ({found['duration_s']} s)" if "duration_s" in found else ""
            parts += [f"### {title}{took}", "", render(found), ""]
    return "\n".join(parts)
