"""The lock as one state: the load's audit, its recorded fingerprint, and the live one.

Recomputing the fingerprint reads every amount fact, which costs seconds at millions of rows,
so a result is reused for INCA_FINGERPRINT_TTL seconds per database; `fresh=True` (the CLI,
monitoring) always recomputes. Every report says when the fingerprint was last verified.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from core import config

INTACT, BROKEN, UNLOADED = "INTACT", "BROKEN", "UNLOADED"


@dataclass(frozen=True)
class LockState:
    state: str  # INTACT | BROKEN | UNLOADED
    audit_run_id: str | None
    audit_status: str | None
    audit_name: str | None
    freeze_tag: str | None
    git_commit: str | None
    loaded_at: str | None
    original_audit: dict[str, object] | None
    recorded_fingerprint: str | None
    live_fingerprint: str | None
    verified_at: str | None
    verify_seconds: float | None
    reason: str

    @property
    def intact(self) -> bool:
        return self.state == INTACT

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_cache: dict[str, tuple[float, str, str, float]] = {}  # db identity -> (monotonic, fingerprint, iso time, seconds)
_cache_lock = threading.Lock()


def _live_fingerprint(conn: Connection, fresh: bool) -> tuple[str, str, float]:
    identity = str(conn.execute(text("SELECT current_database() || '@' || inet_server_port()")).scalar_one())
    identity += "|" + str(conn.engine.url.query.get("host", conn.engine.url.host))
    ttl = config.env_int("INCA_FINGERPRINT_TTL")
    with _cache_lock:
        cached = _cache.get(identity)
    if cached and not fresh and time.monotonic() - cached[0] < ttl:
        return cached[1], cached[2], cached[3]
    started = time.perf_counter()
    fingerprint = str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
    seconds = time.perf_counter() - started
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    with _cache_lock:
        _cache[identity] = (time.monotonic(), fingerprint, verified_at, seconds)
    return fingerprint, verified_at, seconds


def forget_cached_fingerprints() -> None:
    with _cache_lock:
        _cache.clear()


def read_lock(conn: Connection, fresh: bool = False) -> LockState:
    runs = conn.execute(
        text(
            """
            SELECT l.audit_run_id::text, l.status, l.audit_name, l.freeze_tag, l.git_commit, l.recorded_at,
                   l.fingerprint, o.audit_name, o.status, o.rows_audited, o.value_mismatches, o.type_mismatches,
                   o.generated_at, o.freeze_tag, o.git_commit
            FROM audit_runs l LEFT JOIN audit_runs o ON o.audit_run_id = l.based_on
            WHERE l.kind = 'load' ORDER BY l.recorded_at DESC LIMIT 1
            """
        )
    ).first()
    if runs is None:
        return LockState(UNLOADED, None, None, None, None, None, None, None, None, None, None, None,
                         "no audited load recorded: run `python -m core load`")
    original = None
    if runs[7] is not None:
        original = {"audit_name": runs[7], "status": runs[8], "rows_audited": runs[9], "value_mismatches": runs[10],
                    "type_mismatches": runs[11], "generated_at": runs[12].isoformat(), "freeze_tag": runs[13],
                    "git_commit": runs[14]}
    live, verified_at, seconds = _live_fingerprint(conn, fresh)
    if runs[1] != "PASS":
        state, reason = BROKEN, f"the latest audit status is {runs[1]}, not PASS"
    elif live != runs[6]:
        state, reason = BROKEN, "amount_fact content differs from the audited fingerprint (changed outside the load)"
    else:
        state, reason = INTACT, "amount_fact matches the audited fingerprint"
    return LockState(state, runs[0], runs[1], runs[2], runs[3], runs[4], runs[5].isoformat(), original, runs[6],
                     live, verified_at, round(seconds, 4), reason)
