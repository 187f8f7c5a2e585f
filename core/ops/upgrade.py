"""`python -m core upgrade`: what a database loaded by an earlier version lacks, added once, audited.

One transaction, opened like the audited load (the load's advisory lock, then the gate), after the lock
as recorded so far is proven INTACT (an upgrade never launders a change into a new record):
1. every pending derivation step of UPGRADE_STEPS writes the rows it derives from the locked rows
   already there (condition slots, evidence findings) and audits them; no step touches an amount
   fact: the amount fingerprint is computed before and after and must not move; after any step the
   comparison cells (schema 012, which carry the condition slots) are recomputed, as the load does;
2. one `audit_runs` row of kind 'upgrade' records what was done;
3. the full lock is recorded (schema 008) over every locked relation, new ones included, so the
   result is exactly what a fresh load of this version records.
Idempotent: with nothing pending and the lock fully recorded, nothing is written at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from core import db, lock
from core.errors import AuditFailed, LockBroken, SchemaMissing
from core.inventory import live_counts
from core.ops import conditions_load, findings_load, lock_record, migrate
from core.ops.loader import _LOAD_LOCK_KEY, open_audited, refresh_cells

UPGRADE_AUDIT_NAME = "inca_upgrade_audit"


@dataclass(frozen=True)
class UpgradeStep:
    name: str
    needed: Callable[[Connection], bool]  # True when the database lacks what the step derives
    run: Callable[[Connection], dict[str, int]]  # writes and audits; returns row counts written


def _findings_needed(conn: Connection) -> bool:
    return findings_load.compute(conn) != findings_load.stored(conn)


def _write_findings(conn: Connection) -> dict[str, int]:
    return {findings_load.TABLE: findings_load.upgrade_step(conn)}


UPGRADE_STEPS: tuple[UpgradeStep, ...] = (
    UpgradeStep("condition_slots", conditions_load.missing, conditions_load.derive_and_audit),
    UpgradeStep("evidence_findings", _findings_needed, _write_findings),
)


@dataclass(frozen=True)
class UpgradeResult:
    changed: bool
    message: str
    steps: tuple[str, ...]
    counts: dict[str, int]
    fingerprint: str | None
    audit_run_id: str | None


def _record_upgrade_run(conn: Connection, steps: list[str], written: dict[str, int], load: lock.LockState) -> str:
    counts = live_counts(conn)
    counts["audit_runs"] += 1  # this run
    return str(conn.execute(
        text("""
            INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited,
                                    counts, fingerprint, dataset_sha256, based_on)
            VALUES ('upgrade', :name, 'PASS', :tag, :commit, :now, :rows, CAST(:counts AS jsonb), :fingerprint,
                    (SELECT dataset_sha256 FROM audit_runs WHERE audit_run_id = CAST(:load AS uuid)), :load)
            RETURNING audit_run_id
        """),
        {"name": UPGRADE_AUDIT_NAME, "tag": load.freeze_tag, "commit": load.git_commit, "now": datetime.now(UTC),
         "rows": counts["amount_fact"], "counts": json.dumps(counts | {"steps": steps, "written": written}),
         "fingerprint": load.recorded_fingerprint, "load": load.audit_run_id},
    ).scalar_one())


def _upgrade_in(conn: Connection) -> UpgradeResult:
    state = lock.read_lock(conn, fresh=True)
    if state.state == lock.UNLOADED:
        raise SchemaMissing("nothing to upgrade: the database was never loaded; run `python -m core load` "
                            "(it includes every step)")
    if state.state != lock.INTACT:
        raise LockBroken(f"upgrade refused: the lock is {state.state} ({state.reason}); nothing was changed. "
                         "Restore a verified backup (docs/operations.md)")
    pending = [step for step in UPGRADE_STEPS if step.needed(conn)]
    lock_pending = state.scope != lock.FULL or bool(state.not_covered)
    if not pending and not lock_pending:
        return UpgradeResult(False, "up to date; nothing changed", (), {}, None, None)
    before = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
    open_audited(conn)
    written: dict[str, int] = {}
    for step in pending:
        written |= step.run(conn)
    if pending:  # the comparison cells carry the condition slots: recomputed over what the steps wrote
        refresh_cells(conn)
    after = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
    if after != before:
        raise AuditFailed("upgrade audit failed: the amount fingerprint moved; nothing was changed",
                          [f"before {before}", f"after {after}"])
    names = [step.name for step in pending] + ["lock"]
    assert state.audit_run_id is not None
    run = _record_upgrade_run(conn, names, written, state)
    digest = lock_record.record_lock(conn, run, state.audit_run_id)
    return UpgradeResult(True, f"upgraded ({', '.join(names)}); audit PASS; amount fingerprint unchanged; "
                               f"lock recorded for every locked relation (lock digest {digest[:16]}…)",
                         tuple(names), written, after, run)


def upgrade(engine: Engine | None = None) -> UpgradeResult:
    """Migrate, then add what is pending in one audited transaction (see the module docstring)."""
    engine = engine or db.admin_engine()
    with db.translate_errors(engine.url):
        with engine.begin() as conn:
            migrate.apply(conn)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOAD_LOCK_KEY})  # never beside a load
            result = _upgrade_in(conn)
    lock.forget_cached_fingerprints()
    return result
