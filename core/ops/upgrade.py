"""`python -m core upgrade`: derived data for a database loaded by an earlier version.

Each step derives rows from what the load locked (never touching an amount fact) and returns how many
it wrote, 0 when they are already there. All steps run in ONE transaction opened with the load's own
guard; when any step wrote something, an `audit_runs` row of kind 'upgrade' records the steps, the
counts after them and the amount fingerprint (unchanged: the upgrade checks it before committing).
Running it again is a no-op: nothing written, no run recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from core import db
from core.errors import AuditFailed, SchemaMissing
from core.inventory import live_counts, loaded_run
from core.ops import findings_load, loader, migrate

UPGRADE_AUDIT_NAME = "inca_upgrade"
Step = Callable[[Connection], int]
#: (name, step): run in this order
UPGRADE_STEPS: tuple[tuple[str, Step], ...] = (
    ("evidence_findings", findings_load.upgrade_step),
)


@dataclass(frozen=True)
class UpgradeResult:
    changed: bool
    written: dict[str, int]
    audit_run_id: str | None
    message: str


def upgrade() -> UpgradeResult:
    engine = db.admin_engine()
    with db.translate_errors(engine.url):
        with engine.begin() as conn:
            migrate.apply(conn)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": loader._LOAD_LOCK_KEY})
            run = loaded_run(conn)
            if run is None:
                raise SchemaMissing("the database was never loaded: run `python -m core load` (it derives everything)")
            load_run_id, recorded_fingerprint = run
            loader.open_audited(conn)
            written = {name: step(conn) for name, step in UPGRADE_STEPS}
            if not any(written.values()):
                return UpgradeResult(False, written, None, "nothing to upgrade; nothing changed")
            fingerprint = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            if fingerprint != recorded_fingerprint:  # an upgrade never touches a fact; refuse to record otherwise
                raise AuditFailed("the amount fingerprint differs from the load's; nothing was upgraded", [])
            audit_run_id = _record(conn, load_run_id, fingerprint)
            findings_load.record_digest(conn, audit_run_id)
    summary = ", ".join(f"{name}: {count} row(s)" for name, count in written.items())
    return UpgradeResult(True, written, audit_run_id, f"upgraded ({summary}); fingerprint unchanged")


def _record(conn: Connection, load_run_id: str, fingerprint: str) -> str:
    counts = live_counts(conn)
    counts["audit_runs"] += 1  # the run written here
    return str(conn.execute(
        text(
            """
            INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at, rows_audited,
                                    insurers, counts, fingerprint, dataset_sha256, based_on)
            SELECT 'upgrade', :name, 'PASS', l.freeze_tag, l.git_commit, :generated,
                   (SELECT count(*) FROM amount_fact WHERE status = 'CONFIRMED'), l.insurers,
                   CAST(:counts AS jsonb),
                   :fingerprint, l.dataset_sha256, l.audit_run_id
            FROM audit_runs l WHERE l.audit_run_id = CAST(:load AS uuid)
            RETURNING audit_run_id
            """
        ),
        {"name": UPGRADE_AUDIT_NAME, "generated": datetime.now(UTC), "counts": json.dumps(counts),
         "fingerprint": fingerprint, "load": load_run_id},
    ).scalar_one())
