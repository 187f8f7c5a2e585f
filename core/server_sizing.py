"""The embedded server's settings, sized for the machine it runs on (issue 16.4).

`sized(machine, overrides)` is pure: from the memory and cores it derives the few PostgreSQL settings
that matter for a 2-3 GB read-mostly database loaded in bulk, each with the one line of why that
`docs/operations.md` repeats. `core.embedded` writes them to `inca-sizing.conf` in the data folder
before it starts a server (never into a running one); `core.status` shows what the server runs with.

PostgreSQL's defaults (shared_buffers 128 MB, work_mem 4 MB) fit a laptop sharing memory with
everything else, not a dedicated 2.8 GB database: at 1 M facts most of it never fits in the buffers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

MB = 1024 * 1024
GB = 1024 * MB


@dataclass(frozen=True)
class Machine:
    """What the sizing reads: memory this server may use (bytes) and cores."""

    memory_bytes: int
    cpus: int


@dataclass(frozen=True)
class Sized:
    """One setting as written to the server's configuration: its value in PostgreSQL syntax and why."""

    name: str
    value: str
    why: str
    overridden: bool = False


def _cgroup_limit() -> int | None:
    """A container's memory limit (cgroup v2, then v1), when it is below the machine's."""
    for path in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            return int(raw)
    return None


def this_machine() -> Machine:
    """The machine (or container) this process runs on."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return Machine(memory_bytes=min(total, limit) if limit else total, cpus=os.cpu_count() or 1)


def _mb(value: int) -> str:
    return f"{max(1, value // MB)}MB"


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# --- what an override may say, per setting -----------------------------------------------------------

_MEMORY = re.compile(r"^(\d+)\s*(kB|MB|GB|TB)$")
_UNIT_KB = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}


def memory_kb(value: str) -> int:
    """'512MB' -> 524288 (PostgreSQL's units: kB, MB, GB, TB, powers of 1024)."""
    match = _MEMORY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size like 512MB or 2GB (units kB, MB, GB, TB)")
    return int(match.group(1)) * _UNIT_KB[match.group(2)]


def _memory(minimum_kb: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if memory_kb(value) < minimum_kb:
            raise ValueError(f"{value!r} is below PostgreSQL's minimum of {minimum_kb}kB")
        return _MEMORY.sub(r"\1\2", value.strip())
    return check


def _workers(value: str) -> str:
    if not value.strip().isdigit() or int(value) > 64:
        raise ValueError(f"{value!r} is not a whole number of workers from 0 to 64")
    return str(int(value))


def _page_cost(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number <= 100:
        raise ValueError(f"{value!r} is not a cost between 0 and 100 (1.1 for SSD, 4 for spinning disks)")
    return f"{number:g}"


#: every setting the sizing writes, with how an override of it is checked (and normalised)
CHECKS: dict[str, Callable[[str], str]] = {
    "shared_buffers": _memory(128),
    "effective_cache_size": _memory(8),
    "work_mem": _memory(64),
    "maintenance_work_mem": _memory(1024),
    "max_parallel_workers_per_gather": _workers,
    "max_parallel_maintenance_workers": _workers,
    "max_parallel_workers": _workers,
    "random_page_cost": _page_cost,
    "max_wal_size": _memory(32 * 1024),  # two 16 MB WAL segments
}
#: the settings whose values are sizes (compared by amount: 1GB is 1024MB)
MEMORY_SETTINGS = frozenset({"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
                             "max_wal_size"})
#: a setting only a server start applies (the rest a reload would take)
NEEDS_RESTART = frozenset({"shared_buffers"})


def check_override(name: str, value: str) -> str:
    """The override in PostgreSQL syntax, or ValueError saying what is wrong with it."""
    if name not in CHECKS:
        raise ValueError(f"{name!r} is not a sized setting; known: {', '.join(CHECKS)}")
    try:
        return CHECKS[name](str(value))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


# --- the sizing ----------------------------------------------------------------------------------------

#: PostgreSQL's max_connections default, which the embedded server keeps (work_mem is per sort, per session)
MAX_CONNECTIONS = 100


def sized(machine: Machine, overrides: Mapping[str, str] | None = None) -> list[Sized]:
    """The embedded server's settings for `machine`, each override (already checked) taking precedence."""
    memory, cpus = machine.memory_bytes, max(1, machine.cpus)
    shared = _clamp(memory // 4, 128 * MB, 8 * GB)
    parallel = min(4, cpus // 2)
    derived = [
        Sized("shared_buffers", _mb(shared),
              "25 % of memory (128 MB to 8 GB): the hot tables and indexes stay in the server's own cache; "
              "the rest is left to the OS page cache"),
        Sized("effective_cache_size", _mb(memory * 3 // 4),
              "75 % of memory: the planner's estimate of shared buffers plus OS cache; allocates nothing, "
              "makes index scans look as cheap as they are"),
        Sized("work_mem", _mb(_clamp((memory - shared) // (4 * MAX_CONNECTIONS), 4 * MB, 64 * MB)),
              "(memory - shared_buffers) / (4 x 100 connections), 4 to 64 MB: per sort or hash, so a "
              "comparison's joins and sorts stay in memory without many sessions exhausting it"),
        Sized("maintenance_work_mem", _mb(_clamp(memory // 16, 64 * MB, 1 * GB)),
              "1/16 of memory (64 MB to 1 GB): the audited load builds every index at once; a bigger "
              "sort area builds them in fewer passes"),
        Sized("max_parallel_workers_per_gather", str(parallel),
              "half the cores (at most 4): on 2 cores one worker plus the leader uses both, two would only "
              "queue behind each other"),
        Sized("max_parallel_maintenance_workers", str(parallel),
              "half the cores (at most 4): parallel index builds in the load, without starving the rest"),
        Sized("max_parallel_workers", str(min(cpus, 8)),
              "one per core (at most max_worker_processes, 8): no more parallel workers in all than the "
              "machine can run"),
        Sized("random_page_cost", "1.1",
              "SSD or virtual disk: a random read costs about a sequential one (4.0 assumes spinning seeks)"),
        Sized("max_wal_size", _mb(_clamp(memory // 4, 1 * GB, 4 * GB)),
              "a quarter of memory (1 to 4 GB): the bulk load's COPY and index builds checkpoint less often; "
              "WAL is recycled after each checkpoint"),
    ]
    chosen = dict(overrides or {})
    for name in ("shared_buffers", "work_mem", "maintenance_work_mem"):
        if name in chosen and memory_kb(chosen[name]) * 1024 >= memory:
            raise ConfigError(f"INCA_PG_SETTINGS: {name}={chosen[name]} is not below this machine's memory "
                              f"({memory // MB} MB); the server would not start")
    return [Sized(s.name, chosen[s.name], s.why, overridden=True) if s.name in chosen else s for s in derived]


def conf_text(settings: list[Sized]) -> str:
    """The include file's text: one `name = 'value'` per setting, its why as a comment above it."""
    lines = ["# Written by core/embedded.py before the server starts (core/server_sizing.py).",
             "# Do not edit: set INCA_PG_SETTINGS instead (docs/operations.md). A running server keeps",
             "# what it started with; shared_buffers changes only at its next start.", ""]
    for item in settings:
        lines.append(f"# {'override (INCA_PG_SETTINGS)' if item.overridden else item.why}")
        lines.append(f"{item.name} = '{item.value}'")
    return "\n".join(lines) + "\n"


def same_value(name: str, wanted: str, running: str) -> bool:
    """Whether a running server's `current_setting(name)` equals the sized value (units normalised)."""
    if name in MEMORY_SETTINGS:
        try:
            return memory_kb(wanted) == memory_kb(running)
        except ValueError:
            return False
    if name == "random_page_cost":
        try:
            return float(wanted) == float(running)
        except ValueError:
            return False
    return wanted.strip() == running.strip()
