-- 008: one lock over every locked relation (issue 17).
--
-- * `inca_locked_relation` is THE list of what the lock covers: every table the load writes and every
--   materialized view a page, export or API response can show. A migration adding a locked table adds
--   one line, `SELECT inca_lock_relation('<table>');` (trigger, SELECT for inca_read, registration).
-- * `inca_relation_digest(rel)` hashes every row and every column of one relation: a canonical JSON
--   array per row (vectors as the SHA-256 of their binary form), each line hashed, the row hashes
--   concatenated in byte order, then SHA-256. Text rendering is pinned (UTC, ISO dates) so every
--   session computes the same digest.
-- * `lock_record`: what the audited load (or `python -m core upgrade`) recorded in its own
--   transaction, per relation: row count, digest, and the witness (file node and the tuple counters
--   the relation will show once the transaction commits). `lock_seal`: one row per recording, the
--   combined lock digest over its lock_record rows and the database's statistics-reset time.
--   Neither is digested itself (they hold the digests); the seal's combined digest covers the records.
-- * The load's guard is no longer a session setting any owner could write: a gate table owned by the
--   NOLOGIN role inca_gatekeeper, written only by the SECURITY DEFINER inca_open_audited_load()
--   (EXECUTE for the owner role running this migration, the load's role, only); the lock trigger,
--   also SECURITY DEFINER, checks that the gate holds the current transaction id.
-- * audit_runs.fingerprint keeps its meaning (the amount fingerprint of 002): databases loaded
--   earlier stay verifiable.

ALTER TABLE audit_runs DROP CONSTRAINT IF EXISTS audit_runs_kind_check;
ALTER TABLE audit_runs ADD CONSTRAINT audit_runs_kind_check CHECK (kind IN ('original', 'load', 'upgrade'));

-- --- the guard -------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'inca_gatekeeper') THEN
        CREATE ROLE inca_gatekeeper NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'inca: no CREATEROLE privilege; the load gate stays owned by %', current_user;
END
$$;

CREATE TABLE inca_load_gate (
    xact       xid8 PRIMARY KEY,
    opened_by  name NOT NULL DEFAULT session_user,
    opened_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON inca_load_gate FROM PUBLIC;

CREATE OR REPLACE FUNCTION inca_open_audited_load() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    INSERT INTO public.inca_load_gate (xact) VALUES (pg_catalog.pg_current_xact_id()) ON CONFLICT DO NOTHING
$$;

CREATE OR REPLACE FUNCTION inca_refuse_unaudited_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.inca_load_gate WHERE xact = pg_catalog.pg_current_xact_id()) THEN
        RAISE EXCEPTION 'inca lock: % on % refused; the table is locked and only the audited load may write it',
                        TG_OP, TG_TABLE_NAME
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Data changes go through `python -m core load` (a new audited dataset), never by hand.';
    END IF;
    RETURN NULL;
END
$$;

-- Owned by the gatekeeper: the owner role then holds neither the gate table nor the functions that
-- write or read it; it may only EXECUTE the opening function, granted below.
DO $$
DECLARE
    loader name := current_user;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'inca_gatekeeper') THEN
        ALTER TABLE inca_load_gate OWNER TO inca_gatekeeper;
        ALTER FUNCTION inca_open_audited_load() OWNER TO inca_gatekeeper;
        ALTER FUNCTION inca_refuse_unaudited_write() OWNER TO inca_gatekeeper;
    END IF;
    REVOKE ALL ON FUNCTION inca_open_audited_load() FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION inca_open_audited_load() TO %I', loader);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'inca: could not hand the load gate to inca_gatekeeper; it stays owned by %', loader;
END
$$;

-- --- what the lock covers ----------------------------------------------------------------------------
CREATE TABLE inca_locked_relation (
    relname  text PRIMARY KEY CHECK (relname ~ '^[a-z][a-z0-9_]*$')
);

-- One line per locked relation in later migrations: lock trigger (tables), SELECT for inca_read, registration.
CREATE FUNCTION inca_lock_relation(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    kind "char";
BEGIN
    SELECT c.relkind INTO kind FROM pg_class c
    WHERE c.relname = name AND c.relnamespace = 'public'::regnamespace;
    IF kind IS NULL THEN
        RAISE EXCEPTION 'inca_lock_relation: no relation public.% ', name;
    END IF;
    IF kind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_trigger t
                                  WHERE t.tgrelid = format('public.%I', name)::regclass AND t.tgname = name || '_lock') THEN
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write()', name || '_lock', name);
    END IF;
    EXECUTE format('GRANT SELECT ON public.%I TO inca_read', name);
    INSERT INTO public.inca_locked_relation (relname) VALUES (name) ON CONFLICT DO NOTHING;
END
$$;
REVOKE ALL ON FUNCTION inca_lock_relation(text) FROM PUBLIC;

SELECT inca_lock_relation(name)
FROM unnest(ARRAY['insurer', 'product', 'product_variant', 'document', 'coverage_canonical', 'coverage_instance',
                  'evidence_ref', 'amount_fact', 'coverage_alias', 'audit_runs',
                  'catalog_raw_name', 'insurer_status_count', 'coverage_alias_vector']) AS name;

-- --- the digest ----------------------------------------------------------------------------------------
CREATE FUNCTION inca_relation_digest(rel regclass, OUT row_count bigint, OUT digest text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 1
SET work_mem = '64MB' SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    columns text;
BEGIN
    -- every live column in column order; a vector (4 KB) enters as the SHA-256 of its binary form
    SELECT string_agg(CASE WHEN t.typname = 'vector' THEN format('encode(sha256(vector_send(r.%I)), %L)', a.attname, 'hex')
                           ELSE format('r.%I', a.attname) END, ', ' ORDER BY a.attnum)
    INTO columns
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
    -- row hashes sorted as bytes: deterministic without any collation, and cheap to sort
    EXECUTE format('SELECT count(*), encode(sha256(coalesce(string_agg(h, %L::bytea ORDER BY h), %L::bytea)), %L) '
                   'FROM (SELECT sha256(convert_to(json_build_array(%s)::text, %L)) AS h FROM %s r) s',
                   '', '', 'hex', columns, 'UTF8', rel)
    INTO row_count, digest;
END
$$;

-- --- the record ------------------------------------------------------------------------------------------
CREATE TABLE lock_seal (
    audit_run_id   uuid PRIMARY KEY REFERENCES audit_runs,  -- the recording run (the load, or an upgrade)
    load_run_id    uuid NOT NULL REFERENCES audit_runs,     -- the load whose content it seals
    lock_digest    text NOT NULL CHECK (lock_digest ~ '^[0-9a-f]{64}$'),
    relations      integer NOT NULL CHECK (relations > 0),
    stats_reset    timestamptz,                             -- pg_stat_get_db_stat_reset_time() when recorded
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lock_record (
    audit_run_id      uuid NOT NULL REFERENCES lock_seal DEFERRABLE INITIALLY DEFERRED,
    relname           text NOT NULL,
    row_count         bigint NOT NULL CHECK (row_count >= 0),
    digest            text CHECK (digest ~ '^[0-9a-f]{64}$'),  -- NULL: the lock's own tables (witness only)
    relfilenode       bigint NOT NULL,
    tuples_inserted   bigint NOT NULL,
    tuples_updated    bigint NOT NULL,
    tuples_deleted    bigint NOT NULL,
    PRIMARY KEY (audit_run_id, relname)
);

-- The combined digest of one recording: every digested relation's name, row count and digest.
CREATE FUNCTION inca_lock_digest(run uuid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT encode(sha256(convert_to(coalesce(string_agg(r.relname || ':' || r.row_count || ':' || r.digest, E'\n'
                                                         ORDER BY r.relname COLLATE "C"), ''), 'UTF8')), 'hex')
    FROM public.lock_record r WHERE r.audit_run_id = run AND r.digest IS NOT NULL
$$;

CREATE TRIGGER lock_seal_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON lock_seal
    FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write();
CREATE TRIGGER lock_record_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON lock_record
    FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write();

GRANT SELECT ON inca_locked_relation, lock_seal, lock_record TO inca_read;
GRANT EXECUTE ON FUNCTION inca_relation_digest(regclass), inca_lock_digest(uuid) TO inca_read;
