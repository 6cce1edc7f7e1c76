import os
from pathlib import Path

from bench.procstat import TICKS
from bench.warmup import compiler_seconds


def _thread(root: Path, tid: int, name: str, utime: int, stime: int) -> None:
    task = root / "42" / "task" / str(tid)
    task.mkdir(parents=True)
    (task / "comm").write_text(name + "\n")
    # pid (comm with a space) state ppid ... utime is field 14, stime 15 (1-based).
    rest = ["S", "1", *["0"] * 9, str(utime), str(stime), *["0"] * 30]
    (task / "stat").write_text(f"{tid} ({name}) " + " ".join(rest) + "\n")


def test_compiler_seconds_sums_only_the_jit_compiler_threads(tmp_path: Path) -> None:
    _thread(tmp_path, 1, "C2 CompilerThre", 300, 20)
    _thread(tmp_path, 2, "C1 CompilerThre", 50, 30)
    _thread(tmp_path, 3, "data-plane-kafk", 9_000, 900)
    assert compiler_seconds(42, tmp_path) == (300 + 20 + 50 + 30) / TICKS


def test_compiler_seconds_of_a_process_without_a_jit_is_zero() -> None:
    assert compiler_seconds(os.getpid()) == 0.0
