"""Recording the lock (schema 008) inside an audited transaction: the load's and the upgrade's one way.

Per locked relation (`inca_locked_relation`): its row count and digest over every row and column, and
the witness it will show once this transaction commits (file node; tuple counters: what the server
counted before this transaction plus what this transaction did). The lock's own tables are recorded as
witness only, counting the rows about to be written into them. Then one seal: the combined digest.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core import lock

_WITNESS_AFTER_COMMIT = text(
    """
    SELECT name, c.relfilenode::bigint AS node,
           pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_inserted(c.oid) AS inserted,
           pg_stat_get_tuples_updated(c.oid) + pg_stat_get_xact_tuples_updated(c.oid) AS updated,
           pg_stat_get_tuples_deleted(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid) AS deleted
    FROM unnest(CAST(:names AS text[])) AS name JOIN pg_class c ON c.oid = to_regclass('public.' || name)
    """
)


def record_lock(conn: Connection, recording_run_id: str, load_run_id: str) -> str:
    """Record digests and witness of every locked relation for `load_run_id`; returns the lock digest.

    The caller's transaction must have opened the gate (inca_open_audited_load) and written its audit run.
    """
    relations = [str(name) for name in conn.execute(
        text("SELECT relname FROM inca_locked_relation ORDER BY relname COLLATE \"C\"")).scalars()]
    digests = lock.relation_digests(conn, relations)
    # the rows written below: one per relation into lock_record, one seal
    written = {"lock_record": len(digests) + len(lock.RECORD_TABLES), "lock_seal": 1}
    witness = {str(row.name): (int(row.node), int(row.inserted) + written.get(str(row.name), 0), int(row.updated),
                               int(row.deleted))
               for row in conn.execute(_WITNESS_AFTER_COMMIT, {"names": [*digests, *lock.RECORD_TABLES]})}
    conn.execute(
        text("INSERT INTO lock_record (audit_run_id, relname, row_count, digest, relfilenode, tuples_inserted, "
             "tuples_updated, tuples_deleted) VALUES (:run, :name, :rows, :digest, :node, :ins, :upd, :del)"),
        [{"run": recording_run_id, "name": name, "rows": digests[name][0] if name in digests else 0,
          "digest": digests[name][1] if name in digests else None, "node": node, "ins": ins, "upd": upd, "del": dele}
         for name, (node, ins, upd, dele) in witness.items()],
    )
    lock_digest = str(conn.execute(
        text("INSERT INTO lock_seal (audit_run_id, load_run_id, lock_digest, relations, stats_reset) "
             "SELECT :run, :load, inca_lock_digest(:run), :relations, pg_stat_get_db_stat_reset_time(d.oid) "
             "FROM pg_database d WHERE d.datname = current_database() RETURNING lock_digest"),
        {"run": recording_run_id, "load": load_run_id, "relations": len(digests)},
    ).scalar_one())
    if lock_digest != lock.combined_digest(digests):  # the SQL and Python forms must agree, or status never could
        raise RuntimeError("inca_lock_digest() and core.lock.combined_digest() disagree")
    # This transaction's counters reach the server as soon as it ends, not up to 10 s later, so readers
    # find the witness exactly as recorded right after the commit.
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    return lock_digest
