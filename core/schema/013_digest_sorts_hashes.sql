-- 013: the lock's digest (schema 008) sorts only the row hashes, in memory where they fit.
--
-- Same digest, byte for byte: every row's SHA-256 over the same canonical JSON, sorted as bytes, and
-- the SHA-256 of their concatenation. Records written by 008's function stay valid.
--
-- 008's query let the planner flatten the hashing subquery into the aggregate: at a million facts it
-- sorted evidence_ref's 3.7 M rows with their columns (1.7 GB on disk, 11 s) and hashed each row in the
-- sort's key. The fence (OFFSET 0) hashes in the scan, so the sort holds 32-byte hashes (150 MB,
-- 1.6 s); 512 MB of sort memory keeps about four million of them off the disk (PostgreSQL counts
-- ~126 bytes per sorted hash). Measured in docs/performance.md ("Issue 16 round four").
CREATE OR REPLACE FUNCTION inca_relation_digest(rel regclass, OUT row_count bigint, OUT digest text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 1
SET work_mem = '512MB' SET max_parallel_workers_per_gather = 0
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
                   'FROM (SELECT sha256(convert_to(json_build_array(%s)::text, %L)) AS h FROM %s r OFFSET 0) s',
                   '', '', 'hex', columns, 'UTF8', rel)
    INTO row_count, digest;
END
$$;
