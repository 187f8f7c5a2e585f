"""`python -m core upgrade`: derived data a database loaded by an earlier version lacks, added once.

One audited transaction, opened like the load's (inca_open_audited_load), runs every pending step of
UPGRADE_STEPS; each step derives its rows from the locked rows already there and audits them. No step
touches an amount fact: the amount fingerprint is computed before and after and must not move, and the
run is recorded in audit_runs (kind 'upgrade', based on the load). Idempotent: a step that is not
needed is skipped, and with nothing pending nothing is written at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from core import db
from core.errors import AuditFailed, SchemaMissing
from core.ops import conditions_load, migrate
from core.ops.loader import _LOAD_LOCK_KEY

UPGRADE_AUDIT_NAME = "inca_upgrade_audit"


@dataclass(frozen=True)
class UpgradeStep:
    name: str
    needed: Callable[[Connection], bool]  # True when the database lacks what the step derives
    run: Callable[[Connection], dict[str, int]]  # writes and audits; returns row counts written


UPGRADE_STEPS: tuple[UpgradeStep, ...] = (
    UpgradeStep("condition_slots", conditions_load.missing, conditions_load.derive_and_audit),
)


@dataclass(frozen=True)
class UpgradeResult:
    changed: bool
    message: str
    steps: tuple[str, ...]
    counts: dict[str, int]
    fingerprint: str | None
    audit_run_id: str | None


def upgrade(engine: Engine | None = None) -> UpgradeResult:
    engine = engine or db.admin_engine()
    with db.translate_errors(engine.url):
        with engine.begin() as conn:
            migrate.apply(conn)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOAD_LOCK_KEY})  # never beside a load
            load = conn.execute(text("SELECT audit_run_id, freeze_tag, git_commit FROM audit_runs WHERE kind = 'load' "
                                     "ORDER BY recorded_at DESC LIMIT 1")).first()
            if load is None:
                raise SchemaMissing("the database was never loaded: run `python -m core load` (it includes every step)")
            pending = [step for step in UPGRADE_STEPS if step.needed(conn)]
            if not pending:
                return UpgradeResult(False, "up to date; nothing changed", (), {}, None, None)
            before = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            conn.execute(text("SELECT inca_open_audited_load()"))
            counts: dict[str, int] = {}
            for step in pending:
                counts |= step.run(conn)
            after = conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one()
            if after != before:
                raise AuditFailed("upgrade audit failed: the amount fingerprint moved; nothing was changed",
                                  [f"before {before}", f"after {after}"])
            run_id = conn.execute(
                text(
                    """
                    INSERT INTO audit_runs (kind, audit_name, status, freeze_tag, git_commit, generated_at,
                                            rows_audited, counts, fingerprint, based_on)
                    VALUES ('upgrade', :name, 'PASS', :tag, :commit, :generated, :rows, CAST(:counts AS jsonb),
                            :fingerprint, :based_on)
                    RETURNING audit_run_id::text
                    """
                ),
                {"name": UPGRADE_AUDIT_NAME, "tag": load.freeze_tag, "commit": load.git_commit,
                 "generated": datetime.now(UTC), "rows": sum(counts.values()),
                 "counts": json.dumps(counts | {"steps": [step.name for step in pending]}),
                 "fingerprint": after, "based_on": load.audit_run_id},
            ).scalar_one()
    names = tuple(step.name for step in pending)
    return UpgradeResult(True, f"upgraded ({', '.join(names)}); audit PASS; amount fingerprint unchanged",
                         names, counts, after, run_id)
