"""The lock as one state: the load's audit, its recorded fingerprint, and the live one.

Recomputing the fingerprint reads every amount fact, which costs ~20 s per million facts, so
page views reuse a proof (INCA_FINGERPRINT_TTL seconds, then as long as a cheap witness shows no
write since; see `_live_fingerprint`); `fresh=True` (the CLI, monitoring) always recomputes. Every
report says when the fingerprint was last computed (`verified_at`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, text

from core import config

INTACT, BROKEN, UNLOADED = "INTACT", "BROKEN", "UNLOADED"
T = TypeVar("T")


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


#: the tables whose rows inca_amount_fact_fingerprint() reads (schema/002)
#: (plus, for the witness only until the digest covers them, the condition slots of schema 011)
FINGERPRINTED_TABLES = ("amount_fact", "coverage_instance", "evidence_ref", "insurer", "product", "product_variant",
                        "condition_slot", "condition_phrase")

# A cheap witness that none of those tables was written: per table its file node (changes on TRUNCATE,
# VACUUM FULL, CLUSTER) and the cumulative tuple counters (insert/update/delete; COPY counts as insert,
# aborted writes count too). A few catalog lookups, well under a millisecond at any size. Nothing can
# change a row without moving one of them, except editing the data files behind PostgreSQL's back
# (and a statistics reset followed by TRUNCATE and a re-insert of exactly as many rows, which needs the
# superuser who could as well rewrite the recorded fingerprint): `fresh=True` recomputes regardless.
_WITNESS_SELECT = """
    -- a standby's counters never see the primary's writes (replayed, not executed): no witness there
    SELECT current_setting('track_counts') = 'on' AND NOT pg_is_in_recovery() AS counting,
           array_agg(c.relname::text ORDER BY c.relname) AS tables,
           array_agg(ARRAY[c.relfilenode::bigint, pg_stat_get_tuples_inserted(c.oid),
                           pg_stat_get_tuples_updated(c.oid), pg_stat_get_tuples_deleted(c.oid)] ORDER BY c.relname)
               AS stats
    FROM pg_class c
    WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(CAST(%(tables)s AS text[])) AS name)
"""


@dataclass(frozen=True)
class _Witness:
    tables: tuple[str, ...]
    stats: tuple[tuple[int, int, int, int], ...]  # per table: (file node, inserted, updated, deleted)

    def unwritten_since_load(self, loaded_counts: dict[str, object] | None) -> bool:
        """True when every fingerprinted table holds exactly the rows the load inserted, none updated or deleted."""
        if not loaded_counts or self.tables != tuple(sorted(FINGERPRINTED_TABLES)):
            return False
        return all(inserted == loaded_counts.get(table) and updated == 0 and deleted == 0
                   for table, (_node, inserted, updated, deleted) in zip(self.tables, self.stats, strict=True))


@dataclass(frozen=True)
class _Proof:
    checked: float  # monotonic time of the last check (full recomputation or witness)
    fingerprint: str
    verified_at: str  # when the fingerprint was computed over this content
    seconds: float | None  # what computing it cost (None: computed by the load itself)
    witness: _Witness | None


_cache: dict[str, _Proof] = {}  # db identity -> the latest proof
_cache_lock = threading.Lock()


def _witness_of(counting: bool, tables: list[str] | None, stats: list[list[int]] | None) -> _Witness | None:
    if not counting or not tables or not stats:  # counters that never move (track_counts off, standby) prove nothing
        return None
    return _Witness(tuple(tables), tuple(tuple(int(value) for value in row) for row in stats))


def _witness(conn: Connection, tables: tuple[str, ...] = FINGERPRINTED_TABLES) -> _Witness | None:
    return _witness_of(*conn.exec_driver_sql(_WITNESS_SELECT, {"tables": list(tables)}).one())


def _compute(conn: Connection) -> tuple[str, float]:
    # The reading role's statement timeout (INCA_STATEMENT_TIMEOUT_MS, 15 s) bounds user queries; the
    # fingerprint is bounded work that takes ~20 s per million facts on two cores, so it runs without
    # that limit and the transaction's setting is restored afterwards.
    previous = conn.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    started = time.perf_counter()
    fingerprint = str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
    seconds = time.perf_counter() - started
    conn.execute(text("SELECT set_config('statement_timeout', :value, true)"), {"value": previous})
    return fingerprint, seconds


def _live_fingerprint(conn: Connection, fresh: bool, identity: str, recorded: str | None, loaded_at: datetime,
                      loaded_counts: dict[str, object] | None, witness: _Witness | None,
                      ) -> tuple[str, str, float | None]:
    """The live fingerprint, when it was computed, and what that cost.

    Recomputing it reads every amount fact (~20 s per million facts), so page views must not pay it:
    - `fresh=True` (CLI `status`, monitoring, backup verification, the dashboard's "verify now") always
      recomputes;
    - otherwise a proof is reused for INCA_FINGERPRINT_TTL seconds, then kept as long as the witness
      shows no write to the fingerprinted tables since it was made;
    - a process without a proof yet accepts the load's own: the load computed the fingerprint over
      exactly the rows it inserted, in its transaction, and the witness shows nothing written since
      (reported as verified at the load's time);
    - anything else (a write seen, statistics reset or disabled) recomputes.
    """
    identity += "|" + str(conn.engine.url.query.get("host", conn.engine.url.host))
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(identity)
    if not fresh:
        if cached is not None and now - cached.checked < config.env_int("INCA_FINGERPRINT_TTL"):
            return cached.fingerprint, cached.verified_at, cached.seconds
        proof = None
        if witness is not None and cached is not None and cached.witness == witness:
            proof = _Proof(now, cached.fingerprint, cached.verified_at, cached.seconds, witness)
        elif witness is not None and recorded is not None and witness.unwritten_since_load(loaded_counts):
            if cached is not None and cached.fingerprint == recorded:  # a later full check of the same content
                proof = _Proof(now, recorded, cached.verified_at, cached.seconds, witness)
            else:
                verified_at = loaded_at.astimezone(UTC).isoformat(timespec="seconds")
                proof = _Proof(now, recorded, verified_at, None, witness)
        if proof is not None:
            with _cache_lock:
                _cache[identity] = proof
            return proof.fingerprint, proof.verified_at, proof.seconds
    # `witness` was read before computing: a write while it runs moves it, forcing a recheck next time.
    fingerprint, seconds = _compute(conn)
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    with _cache_lock:
        _cache[identity] = _Proof(time.monotonic(), fingerprint, verified_at, seconds, witness)
    return fingerprint, verified_at, seconds


_unwritten_cache: dict[tuple[str, str], tuple[_Witness, object]] = {}  # (db identity, name) -> (witness, value)


def reuse_while_unwritten(conn: Connection, name: str, tables: tuple[str, ...], compute: Callable[[], T]) -> T:
    """`compute()`, or its previous result for this database while the witness over `tables` is unchanged.

    For what is exact but costs a pass over the market and can only change with a write to the locked
    tables (the status page's row counts: ~0.5 s per million facts). Callers that must re-read (the CLI's
    `status`) call `compute()` directly.
    """
    identity = str(conn.execute(text("SELECT current_database() || '@' || inet_server_port()")).scalar_one())
    key = (identity + "|" + str(conn.engine.url.query.get("host", conn.engine.url.host)), name)
    witness = _witness(conn, tables)  # read before computing: a write meanwhile moves it
    with _cache_lock:
        cached = _unwritten_cache.get(key)
    if witness is not None and cached is not None and cached[0] == witness:
        return cast(T, cached[1])
    value = compute()
    if witness is not None:
        with _cache_lock:
            _unwritten_cache[key] = (witness, value)
    return value


def forget_cached_fingerprints() -> None:
    with _cache_lock:
        _cache.clear()
        _unwritten_cache.clear()


# The latest load's audit run, the original audit it was based on, and the witness, in one row. Written
# in the driver's parameter style so compare() can send it in its pipeline (one round trip for the
# selection, the lock and the cells) and read_lock() through SQLAlchemy's exec_driver_sql.
LOCK_QUERY = (
    """
    SELECT l.audit_run_id::text AS audit_run_id, l.status, l.audit_name, l.freeze_tag, l.git_commit, l.recorded_at,
           l.fingerprint, o.audit_name AS original_name, o.status AS original_status, o.rows_audited,
           o.value_mismatches, o.type_mismatches, o.generated_at, o.freeze_tag AS original_freeze_tag,
           o.git_commit AS original_git_commit, l.counts,
           current_database() || '@' || inet_server_port() AS identity, w.counting, w.tables, w.stats
    FROM audit_runs l LEFT JOIN audit_runs o ON o.audit_run_id = l.based_on
    CROSS JOIN LATERAL ("""
    + _WITNESS_SELECT
    + """) AS w
    WHERE l.kind = 'load' ORDER BY l.recorded_at DESC LIMIT 1
    """
)
LOCK_PARAMS = {"tables": list(FINGERPRINTED_TABLES)}


def read_lock(conn: Connection, fresh: bool = False) -> LockState:
    return lock_from_row(conn, conn.exec_driver_sql(LOCK_QUERY, dict(LOCK_PARAMS)).first(), fresh)


def lock_from_row(conn: Connection, runs: Any | None, fresh: bool = False) -> LockState:
    """The lock state from a named row of LOCK_QUERY (attribute access: SQLAlchemy's Row or psycopg's
    namedtuple_row; None: no load recorded); may recompute the fingerprint."""
    if runs is None:
        return LockState(UNLOADED, None, None, None, None, None, None, None, None, None, None, None,
                         "no audited load recorded: run `python -m core load`")
    original = None
    if runs.original_name is not None:
        original = {"audit_name": runs.original_name, "status": runs.original_status, "rows_audited": runs.rows_audited,
                    "value_mismatches": runs.value_mismatches, "type_mismatches": runs.type_mismatches,
                    "generated_at": runs.generated_at.isoformat(), "freeze_tag": runs.original_freeze_tag,
                    "git_commit": runs.original_git_commit}
    live, verified_at, seconds = _live_fingerprint(conn, fresh, str(runs.identity), runs.fingerprint, runs.recorded_at,
                                                   runs.counts, _witness_of(runs.counting, runs.tables, runs.stats))
    if runs.status != "PASS":
        state, reason = BROKEN, f"the latest audit status is {runs.status}, not PASS"
    elif live != runs.fingerprint:
        state, reason = BROKEN, "amount_fact content differs from the audited fingerprint (changed outside the load)"
    else:
        state, reason = INTACT, "amount_fact matches the audited fingerprint"
    return LockState(state, runs.audit_run_id, runs.status, runs.audit_name, runs.freeze_tag, runs.git_commit,
                     runs.recorded_at.isoformat(), original, runs.fingerprint, live, verified_at,
                     None if seconds is None else round(seconds, 4), reason)
