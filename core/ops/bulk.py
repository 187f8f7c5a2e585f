"""COPY of row tuples into a table, binary when the values allow it: the load's one way of writing rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date

import psycopg
from sqlalchemy import Connection, text

# Binary COPY spares the server the text parsing of every field and psycopg the text escaping: about
# 1.8x the rows per second for evidence_ref (400 k rows: 4.3 s -> 2.4 s on two cores). Only for tables
# whose columns all have one of these types and whose first row holds the matching Python types (what
# core.ops.dataset produces); jsonb and vector columns arrive as text, so their tables are copied as text.
_BINARY_COPY_TYPES: dict[str, type | tuple[type, ...]] = {"uuid": uuid.UUID, "text": str, "int4": int, "int2": int,
                                                          "date": date}


def binary_types(raw: psycopg.Connection, table: str, columns: Sequence[str], first_row: Sequence[object]
                 ) -> list[int] | None:
    """The column type oids for a binary COPY of rows like `first_row` into `table`, or None to copy as text."""
    found = raw.execute(
        "SELECT a.atttypid::int, t.typname FROM unnest(%s::text[]) WITH ORDINALITY AS c(name, position) "
        "JOIN pg_attribute a ON a.attrelid = to_regclass(%s) AND a.attname = c.name "
        "JOIN pg_type t ON t.oid = a.atttypid ORDER BY c.position",
        (list(columns), table),
    ).fetchall()
    if len(found) != len(columns) or len(first_row) != len(columns):
        return None
    for (_oid, type_name), value in zip(found, first_row, strict=True):
        expected = _BINARY_COPY_TYPES.get(type_name)
        if expected is None or (value is not None and not isinstance(value, expected)):
            return None
    return [oid for oid, _type_name in found]


def copy_rows(raw: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]],
              types: list[int] | None, freeze: bool = False) -> None:
    """One COPY statement of `rows` (table and columns are the caller's constants, never input)."""
    options = ", ".join([*(["FORMAT binary"] if types else []), *(["FREEZE"] if freeze else [])])
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN" + (f" WITH ({options})" if options else "")
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# --- deferred keys ---------------------------------------------------------------------------
# The load only ever writes an empty database, inside one transaction. Maintaining every primary key,
# unique key, foreign key and secondary index row by row while COPY runs (random uuid keys, one
# foreign-key probe per row, an HNSW insert per alias) made a million facts take ~10 minutes on two
# cores. So the keys and indexes of the tables about to be copied are dropped inside the load's
# transaction and recreated right after COPY: sorted index builds and one validating join per foreign
# key. The end state is the same schema, every constraint is still checked against every row before
# anything commits, a violation still fails the load (AuditFailed), and a failed load rolls the DDL
# back with the rows. CHECK and NOT NULL constraints and the lock triggers stay in place throughout.
_DEFERRED_SQL = text(
    """
    WITH copied AS (SELECT to_regclass(name) AS oid FROM unnest(CAST(:tables AS text[])) AS name)
    SELECT step, drop_sql, create_sql FROM (
        -- foreign keys on the copied tables, or pointing into them (they depend on the keys below)
        SELECT 1 AS step, c.conname AS name,
               format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop_sql,
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                      pg_get_constraintdef(c.oid)) AS create_sql
        FROM pg_constraint c
        WHERE c.contype = 'f' AND (c.conrelid IN (SELECT oid FROM copied) OR c.confrelid IN (SELECT oid FROM copied))
        UNION ALL
        -- primary and unique keys of the copied tables
        SELECT 2, c.conname,
               format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u') AND c.conrelid IN (SELECT oid FROM copied)
        UNION ALL
        -- every other index of the copied tables (btree, HNSW, ...)
        SELECT 3, ic.relname, format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid IN (SELECT oid FROM copied)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
    ) AS deferred
    ORDER BY step, name
    """
)


def defer_keys_and_indexes(conn: Connection, tables: list[str]) -> list[tuple[int, str]]:
    """Drop the keys and indexes of `tables` (in this transaction); returns how to recreate them."""
    deferred = conn.execute(_DEFERRED_SQL, {"tables": tables}).all()
    raw = conn.connection.driver_connection
    for _step, drop_sql, _create_sql in deferred:
        raw.execute(drop_sql)  # generated by the catalog query above (format with %I), never input
    return [(step, create_sql) for step, _drop_sql, create_sql in deferred]


def rebuild(conn: Connection, deferred: list[tuple[int, str]]) -> None:
    """Keys first (foreign keys need them), then the other indexes, then the foreign keys."""
    raw = conn.connection.driver_connection
    for _step, create_sql in sorted(deferred, key=lambda item: {2: 0, 3: 1, 1: 2}[item[0]]):
        raw.execute(create_sql)
