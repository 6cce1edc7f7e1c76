"""Tables (Markdown, printed and written) and the throughput / p99 plot (PNG) of a bench run."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.workloads import WORKLOADS

SYSTEMS = ("tasksaga", "DBOS", "Celery")


def ratio(ours: float | None, peer: float | None) -> str:
    if not ours or not peer:
        return "n/a"
    return f"{ours / peer:.2f}"


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and value < 0:
        return "n/a"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _valid(result: Mapping[str, Any] | None) -> bool:
    if not result:
        return False
    return not result.get("check_problem_count") and not result.get("error")


def _valid_results(
    sweeps: Mapping[str, Mapping[str, Any]],
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(workload, system, result) of every sweep whose correctness check passed."""
    for key, by_system in sweeps.items():
        for system in SYSTEMS:
            result = by_system.get(system)
            if result is not None and _valid(result):
                yield key, system, result


def _max_rate(result: Mapping[str, Any] | None) -> float | None:
    if not _valid(result):
        return None
    assert result is not None
    rate = result.get("max_rate")
    return float(rate) if rate else None


def _throughput_cell(result: Mapping[str, Any] | None, step_count: int) -> str:
    if result is None:
        return "not run"
    if not _valid(result):
        return "check failed" if result.get("check_problem_count") else "error"
    rate = _max_rate(result)
    if rate is None:
        return "none sustainable"
    point = result.get("max_point") or {}
    transitions = point.get("transitions_per_s") or rate * step_count
    failed_above = any(p["label"] == "search" and not p["sustainable"] and p["offered"] > rate
                       for p in result.get("points", []))
    # No failure above the best pass: the search ran out of points; the limit is higher.
    bound = "" if failed_above else "≥ "
    return f"{bound}{rate:,.1f} tasks/s ({transitions:,.0f} steps/s)"


def throughput_table(sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, by_system in sweeps.items():
        steps = {s: _max_rate(by_system.get(s)) for s in SYSTEMS}
        cells = [_throughput_cell(by_system.get(s), WORKLOADS[key].step_count) for s in SYSTEMS]

        def bounded(peer: int, value: str, cells: list[str] = cells) -> str:
            # ours / (a peer's lower bound) is an upper bound, and the reverse
            ours_low, peer_low = cells[0].startswith("≥"), cells[peer].startswith("≥")
            if value == "n/a" or ours_low == peer_low:
                return value
            return ("≤ " if peer_low else "≥ ") + value

        rows.append([key, *cells,
                     bounded(1, ratio(steps["tasksaga"], steps["DBOS"])),
                     bounded(2, ratio(steps["tasksaga"], steps["Celery"]))])
    return table(["workload", "tasksaga", "DBOS", "Celery", "ours / DBOS", "ours / Celery"],
                 rows)


def latency_table(sweeps: Mapping[str, Mapping[str, Any]], point_key: str) -> str:
    rows = []
    for key, system, result in _valid_results(sweeps):
        point = result.get(point_key)
        if not point:
            continue
        d, e = point["dispatch_ms"], point["e2e_ms"]
        rows.append([key, system, _num(point["offered"]),
                     _num(d["p50"], 2), _num(d["p95"], 2), _num(d["p99"], 2),
                     _num(e["p50"]), _num(e["p95"]), _num(e["p99"])])
    return table(["workload", "system", "offered tasks/s", "dispatch p50 ms", "dispatch p95 ms",
                  "dispatch p99 ms", "e2e p50 ms", "e2e p95 ms", "e2e p99 ms"], rows)


def _half_p99(result: Mapping[str, Any] | None, field: str) -> float | None:
    if result is None or not _valid(result) or not result.get("half_point"):
        return None
    value = result["half_point"][field]["p99"]
    return float(value) if value and value > 0 else None


def latency_ratio_table(sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    """p99 at half of each system's own maximum, ours / peer (lower is better for us)."""
    rows = []
    for key, by_system in sweeps.items():
        ours, dbos, celery = (by_system.get(s) for s in SYSTEMS)
        rows.append([key,
                     ratio(_half_p99(ours, "dispatch_ms"), _half_p99(dbos, "dispatch_ms")),
                     ratio(_half_p99(ours, "dispatch_ms"), _half_p99(celery, "dispatch_ms")),
                     ratio(_half_p99(ours, "e2e_ms"), _half_p99(dbos, "e2e_ms")),
                     ratio(_half_p99(ours, "e2e_ms"), _half_p99(celery, "e2e_ms"))])
    return table(["workload", "dispatch p99 ours/DBOS", "dispatch p99 ours/Celery",
                  "e2e p99 ours/DBOS", "e2e p99 ours/Celery"], rows)


def cpu_table(sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, system, result in _valid_results(sweeps):
        point = result.get("max_point")
        if not point:
            continue
        cpu = point["cpu"]
        cells = ", ".join(f"{name} {share:.2f}" for name, share in
                          sorted(cpu.items(), key=lambda kv: -kv[1]) if share >= 0.005)
        rows.append([key, system, _num(point["offered"]), cells])
    return table(["workload", "system", "at tasks/s", "CPU, cores (1.00 = one core busy)"], rows)


def sweep_points_table(sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, system, result in _valid_results(sweeps):
        for point in result["points"]:
            rows.append([key, system, point["label"], _num(point["offered"]),
                         _num(point["achieved"]), _num(point["transitions_per_s"], 0),
                         _num(point["e2e_ms"]["p50"]), _num(point["e2e_ms"]["p99"]),
                         "yes" if point["sustainable"] else "no", point["reason"]])
    return table(["workload", "system", "point", "offered/s", "achieved/s", "steps/s",
                  "e2e p50 ms", "e2e p99 ms", "sustainable", "why"], rows)


def check_table(sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, by_system in sweeps.items():
        for system in SYSTEMS:
            result = by_system.get(system)
            if result is None:
                continue
            problems = result.get("check_problems") or ([result["error"]] if result.get("error")
                                                        else [])
            rows.append([key, system, str(result.get("tasks_checked", 0)),
                         "passed" if not problems else f"FAILED: {problems[0]}"])
    return table(["workload", "system", "tasks checked", "check"], rows)


def _processes(count: int) -> str:
    return f"{count} process{'es' if count > 1 else ''}"


def _rebuilds(replay: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The rebuilds by number of processes (a result before parallel rebuilds: its one)."""
    return list((replay.get("rebuild_by_workers") or {"1": replay["rebuild"]}).items())


def replay_table(replay: Mapping[str, Any]) -> str:
    df, one = replay["decode_fold"], replay["one_stream"]
    rows = [
        ["log", f"{replay['log_events']:,} events, {replay['log_streams']:,} streams"],
        ["decode + fold, all streams (1 core)", f"{df['decode_fold_events_per_s']:,.0f} events/s"
         f" (decode {df['decode_events_per_s']:,.0f}/s, fold {df['fold_events_per_s']:,.0f}/s;"
         f" with the Postgres read {df['with_read_events_per_s']:,.0f}/s)"],
        *([["decode + fold, collector paused per batch (as a rebuild runs)",
            f"{paused['decode_fold_events_per_s']:,.0f} events/s (decode "
            f"{paused['decode_events_per_s']:,.0f}/s, fold {paused['fold_events_per_s']:,.0f}/s)"
            + (" — the median of three runs: " + ", ".join(
                f"{r:,.0f}" for r in paused["runs_events_per_s"])
               if paused.get("runs_events_per_s") else "")]]
          if (paused := replay.get("decode_fold_collector_paused")) else []),
        [f"one stream ({one['stream_events']} events): load + decode + fold",
         f"{one['load_ms']:.2f} ms ({one['load_events_per_s']:,.0f} events/s)"],
        ["one stream: decode + fold / fold alone",
         f"{one['decode_fold_ms']:.2f} ms / {one['fold_ms']:.3f} ms "
         f"({one['fold_events_per_s']:,.0f} events/s folded)"],
        *[[f"rebuild all projections ({_processes(int(workers))})",
            f"{rb['events_per_s']:,.0f} events/s ({rb['projected']:,} events in "
            f"{rb['seconds']:.0f} s)"]
          for workers, rb in _rebuilds(replay)],
    ]
    return table(["replay", "result"], rows)


def recovery_table(recovery: Mapping[str, Any]) -> str:
    rows = []
    restart = recovery.get("restart") or {}
    takeover = recovery.get("takeover") or {}
    if "check_failed" in restart:
        rows.append(["restart", "check failed: " + restart["check_failed"][0]])
    elif restart:
        rows.append(["kill -9, restarted at once: first event after the restart",
                     f"{_num(restart.get('resume_after_restart_s'), 2)} s "
                     f"({_num(restart.get('resume_after_kill_s'), 2)} s after the kill); "
                     f"{restart['tasks']} tasks, all ended once"])
    if "check_failed" in takeover:
        rows.append(["takeover", "check failed: " + takeover["check_failed"][0]])
    elif takeover:
        rows.append(["kill -9 of one of two: first event handled from its partitions",
                     f"{_num(takeover.get('takeover_after_kill_s'), 2)} s after the kill "
                     f"(its partitions {takeover.get('victim_partitions')}); "
                     f"{takeover['tasks']} tasks, all ended once"])
    return table([f"recovery (linear3 at {recovery['rate']:.0f} tasks/s)", "result"], rows)


def profile_table(profile: Mapping[str, Any]) -> str:
    parts = []
    for mode in ("cpu", "idle"):
        data = profile.get(mode)
        if not data:
            continue
        title = "on-CPU samples" if mode == "cpu" else "all samples, waits included (--idle)"
        parts.append(f"**{title}** ({data['samples']} samples)\n")
        parts.append(table(["thread", "share"],
                           [[n, f"{s:.1%}"] for n, s in data["threads"]]))
        parts.append("")
        parts.append(table(["function (self)", "share"],
                           [[f"`{n}`", f"{s:.1%}"] for n, s in data["self_top"][:12]]))
        parts.append("")
        parts.append(table(["function (including callees)", "share"],
                           [[f"`{n}`", f"{s:.1%}"] for n, s in data["inclusive_top"][:20]]))
        parts.append("")
    return "\n".join(parts)


SHARD_PROCESSES = ("orchestrator", "worker", "notifier", "api", "postgres", "postgres-2",
                   "kafka")


def shards_table(shards: Mapping[str, Any]) -> str:
    """linear3 on one shard and on two: max step transitions/s, CPU µs per step per process."""
    rows = []
    for key, label in (("one", "one shard"), ("two", "two shards (two clusters)")):
        found = shards.get(key) or {}
        per_step = found.get("us_per_step") or {}
        checked = "passed" if not found.get("check_problem_count") else (
            f"FAILED ({found['check_problem_count']})")
        rows.append([label, _num(found.get("max_rate")), _num(found.get("transitions_per_s")),
                     *(_num(per_step.get(n), 0) if n in per_step else "-"
                       for n in SHARD_PROCESSES), checked])
    header = ["event store", "max tasks/s", "step transitions/s",
              *(f"{n} µs/step" for n in SHARD_PROCESSES), "check"]
    return table(header, rows) + f"\n\ntwo / one (step transitions/s): {shards.get('ratio')}"


def plot(sweeps: Mapping[str, Mapping[str, Any]], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    keys = list(sweeps)
    cols = 2 if len(keys) > 1 else 1
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    colors = {"tasksaga": "tab:blue", "DBOS": "tab:green", "Celery": "tab:orange"}
    for ax, key in zip(axes.flat, keys, strict=False):
        for system in SYSTEMS:
            result = sweeps[key].get(system)
            if not _valid(result):
                continue
            assert result is not None
            points = sorted((p for p in result["points"] if p["label"] != "probe"),
                            key=lambda p: p["achieved"])
            xs = [p["transitions_per_s"] for p in points]
            ys = [p["e2e_ms"]["p99"] if p["e2e_ms"]["p99"] > 0 else math.nan for p in points]
            ax.plot(xs, ys, "-", color=colors[system], alpha=0.5)
            for x, y, p in zip(xs, ys, points, strict=True):
                ax.plot(x, y, "o", color=colors[system],
                        markerfacecolor=colors[system] if p["sustainable"] else "white")
            ax.plot([], [], "o-", color=colors[system], label=system)
        ax.set_title(f"{key}: {WORKLOADS[key].title}", fontsize=9)
        ax.set_xlabel("achieved step transitions/s")
        ax.set_ylabel("task end-to-end p99 (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("Throughput vs p99 latency (filled: sustainable, hollow: overloaded)",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def render(results: Mapping[str, Any]) -> str:
    parts = []
    sweeps = results.get("sweeps") or {}
    if sweeps:
        parts += ["### Maximum sustainable rate (achieved = offered, backlog flat)", "",
                  throughput_table(sweeps), "",
                  "### Latency at half of each system's maximum sustainable rate", "",
                  latency_table(sweeps, "half_point"), "",
                  "### p99 ratios at half of each system's maximum (ours / peer; < 1 = ours "
                  "lower)", "", latency_ratio_table(sweeps), "",
                  "### Latency at the maximum sustainable rate", "",
                  latency_table(sweeps, "max_point"), "",
                  "### CPU at the maximum sustainable rate", "", cpu_table(sweeps), "",
                  "### Correctness checks", "", check_table(sweeps), "",
                  "### Every point of the sweeps", "", sweep_points_table(sweeps), ""]
    if results.get("replay"):
        parts += ["### Replay", "", replay_table(results["replay"]), ""]
    if results.get("recovery"):
        parts += ["### Recovery", "", recovery_table(results["recovery"]), ""]
    if results.get("profile"):
        parts += ["### Orchestrator profile under load", "", profile_table(results["profile"]),
                  ""]
    if results.get("shards"):
        parts += ["### One event store shard against two (linear3)", "",
                  shards_table(results["shards"]), ""]
    if results.get("extra"):
        from bench.extra_report import render_extra

        parts.append(render_extra(results["extra"]))
    return "\n".join(parts)


def merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with every sweep (workload, system) that ``patch`` measured replaced."""
    merged = dict(base)
    sweeps = {k: dict(v) for k, v in (base.get("sweeps") or {}).items()}
    for key, by_system in (patch.get("sweeps") or {}).items():
        sweeps.setdefault(key, {}).update(by_system)
    merged["sweeps"] = sweeps
    for part in ("replay", "recovery", "profile", "extra"):
        if patch.get(part):
            merged[part] = patch[part]
    return merged


def main() -> int:
    """Re-render tables and plot from saved results, with re-measured parts merged in.

        PYTHONPATH=tools python -m bench.report .run/bench/results.json \\
            --patch .run/bench/results-x.json --tables t.md --plot p.png
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--patch", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, help="write the merged results JSON here")
    parser.add_argument("--tables", type=Path, help="write the Markdown tables here")
    parser.add_argument("--plot", type=Path, help="write the PNG plot here")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(args.results.read_text())
    for path in args.patch:
        results = merge(results, json.loads(path.read_text()))
        results.setdefault("meta", {}).setdefault("merged", []).append(str(path))
    tables = render(results)
    print(tables)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    if args.tables:
        args.tables.write_text(tables + "\n")
    if args.plot and results.get("sweeps"):
        plot(results["sweeps"], args.plot)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
