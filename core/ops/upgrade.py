"""`python -m core upgrade`: derived data for a database loaded by an earlier version, audited and idempotent.

Each step runs in its own transaction opened like the audited load (the load's advisory lock and
gate), touches no amount fact, records an `audit_runs` row of kind 'upgrade' when it changes anything,
and leaves the amount fingerprint verifiable. Running it again changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from core import db, lock
from core.errors import LockBroken, SchemaMissing
from core.inventory import live_counts
from core.ops import lock_record, migrate
from core.ops.loader import _LOAD_LOCK_KEY

UPGRADE_AUDIT_NAME = "inca_upgrade"
#: one step: (name, function of the step's transaction returning what it did, or None when nothing was needed)
Step = tuple[str, Callable[[Connection], str | None]]


def _record_upgrade_run(conn: Connection, step: str, load: lock.LockState) -> str:
    counts = live_counts(conn)
    counts["audit_runs"] += 1  # this run
    return str(conn.execute(
        text("""
            INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited,
                                    counts, fingerprint, based_on)
            VALUES ('upgrade', :name, 'PASS', :tag, :commit, :now, :rows, CAST(:counts AS jsonb), :fingerprint, :load)
            RETURNING audit_run_id
        """),
        {"name": f"{UPGRADE_AUDIT_NAME}:{step}", "tag": load.freeze_tag, "commit": load.git_commit,
         "now": datetime.now(UTC), "rows": counts["amount_fact"], "counts": json.dumps(counts),
         "fingerprint": load.recorded_fingerprint, "load": load.audit_run_id},
    ).scalar_one())


def record_full_lock(conn: Connection) -> str | None:
    """Record every locked relation's digest, once the lock as recorded so far is proven intact.

    What it records is what the database holds now: it can only vouch for what the earlier record
    proves (the amounts and the row counts for a database loaded before schema 008), so it refuses a
    lock that is not INTACT rather than launder a change into a new record.
    """
    state = lock.read_lock(conn, fresh=True)
    if state.state == lock.UNLOADED:
        raise SchemaMissing("nothing to upgrade: the database was never loaded; run `python -m core load`")
    if state.state != lock.INTACT:
        raise LockBroken(f"upgrade refused: the lock is {state.state} ({state.reason}); nothing was recorded. "
                         "Restore a verified backup (docs/operations.md)")
    if state.scope == lock.FULL and not state.not_covered:
        return None
    assert state.audit_run_id is not None
    conn.execute(text("SELECT inca_open_audited_load()"))
    run = _record_upgrade_run(conn, "lock", state)
    digest = lock_record.record_lock(conn, run, state.audit_run_id)
    covered = ", ".join(state.not_covered) if state.scope == lock.FULL else "every locked relation"
    return f"lock recorded for {covered} (lock digest {digest[:16]}…, audit run {run})"


UPGRADE_STEPS: tuple[Step, ...] = (
    ("lock", record_full_lock),
)


def upgrade() -> list[tuple[str, str | None]]:
    """Migrate, then run every step in its own audited transaction; returns (step, what it did)."""
    engine = db.admin_engine()
    done: list[tuple[str, str | None]] = []
    with db.translate_errors(engine.url):
        with engine.begin() as conn:
            migrate.apply(conn)
        for name, step in UPGRADE_STEPS:
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOAD_LOCK_KEY})
                done.append((name, step(conn)))
    lock.forget_cached_fingerprints()
    return done
