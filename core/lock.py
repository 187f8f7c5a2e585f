"""The lock as one state: the load's audit, what the load recorded, and what the database holds now.

What the lock covers is ONE list in the database, `inca_locked_relation` (schema 008): every table the
load writes and every materialized view a page shows. The load (and `python -m core upgrade` for a
database loaded before 008) recorded, per relation, its row count, a digest over every row and column
(`inca_relation_digest`) and a witness (file node, tuple counters), plus a combined lock digest
(`lock_seal`). The lock is INTACT only when the latest load's audit is PASS, the amount fingerprint
(audit_runs.fingerprint, unchanged since schema 002) matches, every recorded digest and row count
matches, and the record itself matches its seal.

The full proof reads every row of every locked relation. Page views must not pay it each time, and
must never trust an old proof either (no time window): every call reads the witness (a few catalog
lookups, well under a millisecond) and
- reuses this process's last proof when the witness is exactly what it was then;
- accepts the load's own proof when the witness is exactly what the load recorded (file nodes,
  counters, the database's statistics-reset time): nothing was written since it computed the digests;
- otherwise recomputes everything. A table rewrite (new file node), a restore (new file nodes), a
  statistics reset or any counted write thus falls back to the full proof.
`fresh=True` (the CLI, backups, the dashboard's "verify now") always recomputes.

On a hot standby the counters never move (replayed changes are not counted), so the witness there is
the standby's own: (system identifier, timeline, the statement's snapshot). A standby accepts no
writes; its visible content changes only when replay makes another transaction visible, which changes
every later snapshot. The full proof is bracketed by two such witnesses: only when both are equal is it
kept as the proof of that snapshot (as of its replay LSN), and reused while later calls see the same
snapshot. When replay has moved on, the full proof runs again, but a page view pays it at most once per
INCA_STANDBY_PROOF_INTERVAL_S; in between the state is UNPROVEN (never INTACT for content not proven).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, text

from core import config

INTACT, BROKEN, UNLOADED = "INTACT", "BROKEN", "UNLOADED"
#: a standby whose replay moved past the last proof, inside the rate limit: not INTACT, not yet judged again
UNPROVEN = "UNPROVEN"
FULL, AMOUNTS_ONLY = "full", "amount_fact only"
#: the lock's own tables: witnessed (a write to them moves the witness) but not digested (they hold the digests)
RECORD_TABLES = ("lock_record", "lock_seal")
UPGRADE_HINT = "run `python -m core upgrade` to record the full lock"
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
    #: "full" (every locked relation has a recorded digest) or "amount_fact only" (loaded before schema 008)
    scope: str | None = None
    #: the relations whose every row and column the lock proves, in name order
    covers: tuple[str, ...] = ()
    #: registered relations the record does not cover yet (added by a later migration): `upgrade` records them
    not_covered: tuple[str, ...] = ()
    recorded_lock_digest: str | None = None
    live_lock_digest: str | None = None
    #: every difference found by the last full proof (each one makes the lock BROKEN)
    mismatches: tuple[str, ...] = field(default_factory=tuple)
    #: the live digest of every relation the last proof read (what a backup manifest records)
    digests: dict[str, str] = field(default_factory=dict)
    #: the row count the latest audited recording holds for each digested relation
    recorded_counts: dict[str, int] = field(default_factory=dict)
    #: how this answer was reached: "full proof", "witness unchanged since the last proof", "witness as the load recorded"
    proof: str | None = None
    #: on a standby: the replay position the proof holds for ("proof as of replay LSN X"); None on a primary
    proof_replay_lsn: str | None = None

    @property
    def intact(self) -> bool:
        return self.state == INTACT

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# The witness over any set of relations: per relation its file node (changes on TRUNCATE, a rewrite by
# ALTER TABLE … TYPE, VACUUM FULL, CLUSTER, REFRESH, a restore) and the cumulative tuple counters
# (insert/update/delete; COPY counts as insert, aborted writes count too), and the database's
# statistics-reset time (pg_stat_reset and pg_stat_reset_single_table_counters both set it).
# A standby's counters never see the primary's writes (replayed, not executed): no witness there.
_WITNESS_COLUMNS = """
    current_setting('track_counts') = 'on' AND NOT pg_is_in_recovery() AS counting,
    (SELECT pg_stat_get_db_stat_reset_time(d.oid)::text FROM pg_database d WHERE d.datname = current_database())
        AS stats_reset,
    array_agg(c.relname::text ORDER BY c.relname COLLATE "C") AS tables,
    array_agg(ARRAY[c.relfilenode::bigint, pg_stat_get_tuples_inserted(c.oid), pg_stat_get_tuples_updated(c.oid),
                    pg_stat_get_tuples_deleted(c.oid)] ORDER BY c.relname COLLATE "C") AS stats
"""
# A standby's witness: whose WAL (system identifier, timeline) and the snapshot of the very statement
# (pg_current_snapshot() is the active snapshot), so it names exactly the content that statement read.
_STANDBY_COLUMNS = """
    CASE WHEN pg_is_in_recovery() THEN concat_ws('/', (SELECT system_identifier FROM pg_control_system()),
                                                 (SELECT timeline_id FROM pg_control_checkpoint()),
                                                 pg_current_snapshot()::text) END AS standby_witness,
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END AS replay_lsn
"""
_STANDBY_SELECT = "SELECT " + _STANDBY_COLUMNS
_WITNESS_SELECT = ("SELECT " + _WITNESS_COLUMNS + " FROM pg_class c WHERE c.oid IN "
                   "(SELECT to_regclass('public.' || name) FROM unnest(CAST(%(tables)s AS text[])) AS name)")


@dataclass(frozen=True)
class _Witness:
    stats_reset: str | None
    tables: tuple[str, ...]
    stats: tuple[tuple[int, int, int, int], ...]  # per table: (file node, inserted, updated, deleted)

    def as_recorded(self, recorded: dict[str, tuple[int, int, int, int]], recorded_reset: str | None) -> bool:
        """True when every witnessed relation is exactly as the load recorded it (and nothing else is locked)."""
        return (bool(recorded) and self.stats_reset == recorded_reset and set(self.tables) == set(recorded)
                and all(recorded[table] == stats for table, stats in zip(self.tables, self.stats, strict=True)))


def _witness_of(counting: bool, stats_reset: str | None, tables: list[str] | None,
                stats: list[list[int]] | None) -> _Witness | None:
    if not counting or not tables or not stats:  # counters that never move (track_counts off, standby) prove nothing
        return None
    return _Witness(stats_reset, tuple(tables), tuple(cast(tuple[int, int, int, int], tuple(int(v) for v in row))
                                                      for row in stats))


def _witness(conn: Connection, tables: tuple[str, ...]) -> _Witness | None:
    return _witness_of(*conn.exec_driver_sql(_WITNESS_SELECT, {"tables": list(tables)}).one())


# The latest load's audit run, the original audit it was based on, the latest seal of that load with its
# records, the registry, and the witness over all of them: one row, one round trip. Written in the
# driver's parameter style so compare() can send it in its pipeline and read_lock() through
# SQLAlchemy's exec_driver_sql.
LOCK_QUERY = (
    """
    WITH l AS (SELECT * FROM audit_runs WHERE kind = 'load' ORDER BY recorded_at DESC LIMIT 1),
    s AS (SELECT s.* FROM lock_seal s JOIN l ON s.load_run_id = l.audit_run_id ORDER BY s.recorded_at DESC LIMIT 1),
    rec AS (
        SELECT array_agg(r.relname ORDER BY r.relname COLLATE "C") AS names,
               array_agg(r.digest ORDER BY r.relname COLLATE "C") AS digests,
               array_agg(ARRAY[r.row_count, r.relfilenode, r.tuples_inserted, r.tuples_updated, r.tuples_deleted]
                         ORDER BY r.relname COLLATE "C") AS numbers
        FROM lock_record r JOIN s ON s.audit_run_id = r.audit_run_id
    ),
    witnessed AS (
        SELECT relname FROM inca_locked_relation
        UNION SELECT unnest(names) FROM rec WHERE names IS NOT NULL
        UNION SELECT unnest(CAST(%(record_tables)s AS text[]))
    ),
    w AS (SELECT """
    + _WITNESS_COLUMNS
    + """ FROM pg_class c WHERE c.oid IN (SELECT to_regclass('public.' || relname) FROM witnessed))
    SELECT l.audit_run_id::text AS audit_run_id, l.status, l.audit_name, l.freeze_tag, l.git_commit, l.recorded_at,
           l.fingerprint, o.audit_name AS original_name, o.status AS original_status, o.rows_audited,
           o.value_mismatches, o.type_mismatches, o.generated_at, o.freeze_tag AS original_freeze_tag,
           o.git_commit AS original_git_commit, l.counts,
           current_database() || '@' || inet_server_port() AS identity,
           s.audit_run_id::text AS seal_run_id, s.lock_digest, s.relations AS sealed_relations,
           s.stats_reset::text AS sealed_stats_reset, s.recorded_at AS sealed_at,
           rec.names AS recorded_names, rec.digests AS recorded_digests, rec.numbers AS recorded_numbers,
           (SELECT array_agg(relname ORDER BY relname COLLATE "C") FROM inca_locked_relation) AS registered,
           w.counting, w.stats_reset, w.tables, w.stats, """ + _STANDBY_COLUMNS + """
    FROM l LEFT JOIN audit_runs o ON o.audit_run_id = l.based_on
    LEFT JOIN s ON true CROSS JOIN rec CROSS JOIN w
    """
)
LOCK_PARAMS: dict[str, object] = {"record_tables": list(RECORD_TABLES)}


@dataclass(frozen=True)
class _Record:
    """What the latest recording (load or upgrade) wrote for the latest load."""

    seal_run_id: str
    lock_digest: str
    relations: int
    stats_reset: str | None
    sealed_at: datetime
    digests: dict[str, tuple[int, str]]  # relation -> (row count, digest), digested relations only
    witness: dict[str, tuple[int, int, int, int]]  # relation -> (file node, inserted, updated, deleted)


def _record_of(runs: Any) -> _Record | None:
    if runs.seal_run_id is None:
        return None
    digests: dict[str, tuple[int, str]] = {}
    witness: dict[str, tuple[int, int, int, int]] = {}
    for name, digest, numbers in zip(runs.recorded_names or [], runs.recorded_digests or [],
                                     runs.recorded_numbers or [], strict=True):
        count, node, inserted, updated, deleted = (int(v) for v in numbers)
        witness[name] = (node, inserted, updated, deleted)
        if digest is not None:
            digests[name] = (count, digest)
    return _Record(runs.seal_run_id, runs.lock_digest, int(runs.sealed_relations), runs.sealed_stats_reset,
                   runs.sealed_at, digests, witness)


@dataclass(frozen=True)
class _Proof:
    """The outcome of one full proof (or the load's own), valid while the witness stays as it was."""

    load_run_id: str
    seal_run_id: str | None
    witness: _Witness | None
    fingerprint: str
    digests: dict[str, tuple[int, str]]  # live (row count, digest) per digested relation
    lock_digest: str | None
    verified_at: str
    seconds: float | None  # None: the load's own proof, computed in its transaction
    #: on a standby: the snapshot witness the proof holds for (None: replay moved while it ran, never reused)
    standby_witness: str | None = None
    replay_lsn: str | None = None
    proved_monotonic: float = field(default_factory=time.monotonic)


_cache: dict[str, _Proof] = {}  # db identity -> the latest proof
_cache_lock = threading.Lock()


def _unbounded(conn: Connection, compute: Callable[[], T]) -> T:
    """Run `compute()` without the reading role's statement timeout, restoring it afterwards.

    INCA_STATEMENT_TIMEOUT_MS (15 s) bounds user queries; the full proof is bounded work (it reads every
    locked row once: docs/performance.md) that may take longer at market scale.
    """
    previous = conn.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    try:
        return compute()
    finally:
        conn.execute(text("SELECT set_config('statement_timeout', :value, true)"), {"value": previous})


def relation_digests(conn: Connection, relations: list[str]) -> dict[str, tuple[int, str]]:
    """(row count, digest) of each existing relation in `relations` (a missing one is left out)."""
    # LATERAL, not `(inca_relation_digest(...)).*`: PostgreSQL expands `(f(x)).*` into one call of f per
    # output column, which read every row of every relation twice (half of the load's lock record).
    rows = conn.execute(
        text("SELECT name, d.row_count, d.digest FROM unnest(CAST(:names AS text[])) AS name, "
             "LATERAL inca_relation_digest(to_regclass('public.' || name)) AS d "
             "WHERE to_regclass('public.' || name) IS NOT NULL"),
        {"names": relations},
    ).all()
    return {str(name): (int(count), str(digest)) for name, count, digest in rows}


def combined_digest(digests: dict[str, tuple[int, str]]) -> str:
    """The combined lock digest, exactly as inca_lock_digest() (schema 008) computes it from lock_record."""
    import hashlib

    lines = "\n".join(f"{name}:{count}:{digest}" for name, (count, digest) in
                      sorted(digests.items(), key=lambda item: item[0].encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _full_proof(conn: Connection, runs: Any, record: _Record | None, witness: _Witness | None) -> _Proof:
    relations = sorted(set(record.digests if record else ()) | set(runs.registered or ()))
    started = time.perf_counter()

    def compute() -> tuple[str, dict[str, tuple[int, str]]]:
        fingerprint = str(conn.execute(text("SELECT inca_amount_fact_fingerprint()")).scalar_one())
        return fingerprint, relation_digests(conn, relations)

    fingerprint, digests = _unbounded(conn, compute)
    seconds = time.perf_counter() - started
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    return _Proof(str(runs.audit_run_id), record.seal_run_id if record else None, witness, fingerprint, digests,
                  combined_digest({k: v for k, v in digests.items() if record and k in record.digests}) if record else None,
                  verified_at, seconds)


def _load_proof(runs: Any, record: _Record, witness: _Witness) -> _Proof:
    """The load's own proof: it computed the digests over exactly what it wrote, and nothing moved since."""
    verified_at = record.sealed_at.astimezone(UTC).isoformat(timespec="seconds")
    return _Proof(str(runs.audit_run_id), record.seal_run_id, witness, str(runs.fingerprint), dict(record.digests),
                  record.lock_digest, verified_at, None)


RATE_LIMITED = "rate limited"


def _standby_interval() -> float:
    return float(config.env_int("INCA_STANDBY_PROOF_INTERVAL_S"))


def _standby_proof(conn: Connection, runs: Any, record: _Record | None, fresh: bool,
                   identity: str) -> tuple[_Proof, str]:
    """A standby's proof (module docstring): reused for the same snapshot, recomputed when replay moved on,
    at most once per INCA_STANDBY_PROOF_INTERVAL_S for page views (`fresh` always recomputes)."""
    seal = record.seal_run_id if record else None
    with _cache_lock:
        cached = _cache.get(identity)
    same_load = cached is not None and cached.load_run_id == str(runs.audit_run_id) and cached.seal_run_id == seal
    if not fresh and cached is not None and same_load:
        if cached.standby_witness is not None and cached.standby_witness == runs.standby_witness:
            return cached, f"standby snapshot unchanged since the full proof at replay LSN {cached.replay_lsn}"
        if time.monotonic() - cached.proved_monotonic < _standby_interval():
            return cached, RATE_LIMITED
    before = str(runs.standby_witness)
    proof = _full_proof(conn, runs, record, None)
    after = conn.exec_driver_sql(_STANDBY_SELECT).one()
    steady = after.standby_witness == before  # nothing became visible while the proof read
    proof = dataclasses.replace(proof, standby_witness=before if steady else None, replay_lsn=str(runs.replay_lsn))
    with _cache_lock:
        _cache[identity] = proof
    return proof, f"full proof on the standby at replay LSN {runs.replay_lsn}" + (
        "" if steady else f" (replay reached {after.replay_lsn} meanwhile: the next call proves again)")


def _proof(conn: Connection, runs: Any, record: _Record | None, fresh: bool) -> tuple[_Proof, str]:
    """The proof for this lock row and how it was reached (see the module docstring)."""
    identity = str(runs.identity) + "|" + str(conn.engine.url.query.get("host", conn.engine.url.host))
    if runs.standby_witness is not None:
        return _standby_proof(conn, runs, record, fresh, identity)
    witness = _witness_of(runs.counting, runs.stats_reset, runs.tables, runs.stats)
    seal = record.seal_run_id if record else None
    if not fresh and witness is not None:
        with _cache_lock:
            cached = _cache.get(identity)
        if (cached is not None and cached.witness == witness and cached.load_run_id == str(runs.audit_run_id)
                and cached.seal_run_id == seal):
            return cached, "witness unchanged since the last full proof"
        if record is not None and witness.as_recorded(record.witness, record.stats_reset):
            proof = _load_proof(runs, record, witness)
            with _cache_lock:
                _cache[identity] = proof
            return proof, "witness exactly as the load recorded it"
    # `witness` was read before computing: a write while it runs moves it, forcing a recheck next time.
    proof = _full_proof(conn, runs, record, witness)
    with _cache_lock:
        _cache[identity] = proof
    return proof, "full proof"


def _judge(runs: Any, record: _Record | None, proof: _Proof) -> tuple[str, str, list[str], tuple[str, ...]]:
    """(state, reason, mismatches, relations registered but not recorded) for a proof against the record."""
    mismatches: list[str] = []
    if runs.status != "PASS":
        mismatches.append(f"the latest audit status is {runs.status}, not PASS")
    if proof.fingerprint != runs.fingerprint:
        mismatches.append("amount_fact content differs from the audited amount fingerprint")
    audited = {k: int(v) for k, v in (runs.counts or {}).items() if isinstance(v, int)}
    not_covered: tuple[str, ...] = ()
    if record is not None:
        if len(record.digests) != record.relations:
            mismatches.append(f"lock record holds {len(record.digests)} relations, the seal {record.relations}")
        if combined_digest(record.digests) != record.lock_digest:
            mismatches.append("the lock record differs from its seal (recorded digests were changed)")
        for name, (count, digest) in sorted(record.digests.items()):
            live = proof.digests.get(name)
            if live is None:
                mismatches.append(f"{name}: missing (recorded with {count} rows)")
                continue
            if live[0] != count:
                mismatches.append(f"{name}: {live[0]} rows, {count} recorded by the audited load")
            elif live[1] != digest:
                mismatches.append(f"{name}: content differs from its recorded digest")
            want = audited.get(name)
            if want is not None and want != count and name != "audit_runs":  # upgrades add audit runs
                mismatches.append(f"{name}: {count} rows recorded, {want} in the load's audited counts")
        not_covered = tuple(sorted(set(runs.registered or ()) - set(record.digests)))
    elif "lock_seal" in audited:
        mismatches.append("the lock record this load wrote is missing (lock_seal / lock_record deleted)")
    else:
        for name, want in sorted(audited.items()):
            live = proof.digests.get(name)
            if live is not None and live[0] != want:
                mismatches.append(f"{name}: {live[0]} rows, {want} expected by the audited load")
    if mismatches:
        return BROKEN, "; ".join(mismatches), mismatches, not_covered
    if record is None:
        return INTACT, f"amount_fact matches the audited fingerprint; only the amount fingerprint is recorded for " \
                       f"this database (loaded before schema 008): {UPGRADE_HINT}", [], not_covered
    reason = f"all {len(record.digests)} locked relations match the digests and row counts the audited load recorded"
    if not_covered:
        reason += f"; not yet recorded: {', '.join(not_covered)} ({UPGRADE_HINT})"
    return INTACT, reason, [], not_covered


def read_lock(conn: Connection, fresh: bool = False) -> LockState:
    return lock_from_row(conn, conn.exec_driver_sql(LOCK_QUERY, dict(LOCK_PARAMS)).first(), fresh)


def lock_from_row(conn: Connection, runs: Any | None, fresh: bool = False) -> LockState:
    """The lock state from a named row of LOCK_QUERY (attribute access: SQLAlchemy's Row or psycopg's
    namedtuple_row; None: no load recorded); may run the full proof."""
    if runs is None:
        return LockState(UNLOADED, None, None, None, None, None, None, None, None, None, None, None,
                         "no audited load recorded: run `python -m core load`")
    original = None
    if runs.original_name is not None:
        original = {"audit_name": runs.original_name, "status": runs.original_status, "rows_audited": runs.rows_audited,
                    "value_mismatches": runs.value_mismatches, "type_mismatches": runs.type_mismatches,
                    "generated_at": runs.generated_at.isoformat(), "freeze_tag": runs.original_freeze_tag,
                    "git_commit": runs.original_git_commit}
    record = _record_of(runs)
    # Without a record (loaded before schema 008) only the amounts and the counts were audited: the same
    # digest pass counts every row, so the counts are proven with it.
    proof, how = _proof(conn, runs, record, fresh)
    state, reason, mismatches, not_covered = _judge(runs, record, proof)
    if how == RATE_LIMITED:
        # The last proof holds for an earlier replay position only: never INTACT for what it did not read.
        how = f"proof as of replay LSN {proof.replay_lsn}; replay is now at {runs.replay_lsn}"
        if state == INTACT:
            state = UNPROVEN
            reason = (f"replay moved past the last full proof (INTACT as of replay LSN {proof.replay_lsn}, now at "
                      f"{runs.replay_lsn}): the proof runs again within {_standby_interval():g} s "
                      "(INCA_STANDBY_PROOF_INTERVAL_S)")
        else:
            reason = f"as of replay LSN {proof.replay_lsn}: {reason}"
    return LockState(state, runs.audit_run_id, runs.status, runs.audit_name, runs.freeze_tag, runs.git_commit,
                     runs.recorded_at.isoformat(), original, runs.fingerprint, proof.fingerprint, proof.verified_at,
                     None if proof.seconds is None else round(proof.seconds, 4), reason,
                     scope=FULL if record is not None else AMOUNTS_ONLY,
                     covers=tuple(sorted(record.digests)) if record is not None else ("amount_fact",),
                     not_covered=not_covered, recorded_lock_digest=record.lock_digest if record else None,
                     live_lock_digest=proof.lock_digest, mismatches=tuple(mismatches), proof=how,
                     proof_replay_lsn=proof.replay_lsn,
                     digests={k: v[1] for k, v in sorted(proof.digests.items())},
                     recorded_counts={k: v[0] for k, v in record.digests.items()} if record else {})


_unwritten_cache: dict[tuple[str, str], tuple[object, object]] = {}  # (db identity, name) -> (witness, value)


def reuse_while_unwritten(conn: Connection, name: str, tables: tuple[str, ...], compute: Callable[[], T]) -> T:
    """`compute()`, or its previous result for this database while the witness over `tables` is unchanged.

    For what is exact but costs a pass over the market and can only change with a write to the locked
    tables (the status page's row counts: ~0.5 s per million facts). Callers that must re-read (the CLI's
    `status`) call `compute()` directly.
    """
    identity = str(conn.execute(text("SELECT current_database() || '@' || inet_server_port()")).scalar_one())
    key = (identity + "|" + str(conn.engine.url.query.get("host", conn.engine.url.host)), name)
    witness: object | None = _witness(conn, tables)  # read before computing: a write meanwhile moves it
    if witness is None:  # a standby: its snapshot names what is visible (module docstring)
        witness = conn.exec_driver_sql(_STANDBY_SELECT).one().standby_witness
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
